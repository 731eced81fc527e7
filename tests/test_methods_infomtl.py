"""InfoMTL (Hu et al., AAAI 2025): TIMin heads and KL, SIMax InfoNCE, ablations, one training step."""
import math

import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.data.base import Task
from mtlrepro.methods._probabilistic import dropout, info_nce, kl_standard_normal
from mtlrepro.methods.infomtl import InfoMTLHead, has_active_dropout
from mtlrepro.models.cnn import ConvNet
from mtlrepro.stages import install_heads
from mtlrepro.step import training_step

NAMES = ["infomtl", "infomtl_no_simax", "infomtl_no_timin"]


from tests.probabilistic_toys import _one_thread, build_toy_model, toy_problem  # noqa: F401


def build_model(name, seed=1, **hparams):
    return build_toy_model(name, seed, **hparams)


# ------------------------------------------------------------------ closed forms


def test_kl_to_standard_normal_matches_monte_carlo():
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logvar = torch.tensor([-0.5, 0.3, 1.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    z = mu + (0.5 * logvar).exp() * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    mc = (log_q - log_p).mean()
    exact = kl_standard_normal(mu, logvar)
    assert float(exact) == pytest.approx(float(mc), abs=0.02)
    # the paper's formula, -1/2 (1 + log Sigma - mu^2 - Sigma), summed over dimensions
    assert torch.allclose(exact, -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum())


def test_info_nce_two_examples_by_hand():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # cosines: a1.p1 = 1, a1.p2 = 1/sqrt2, a2.p1 = 0, a2.p2 = 1/sqrt2; tau = 0.5
    r = 1 / math.sqrt(2)
    l1 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(2 * r)))
    l2 = -math.log(math.exp(2 * r) / (math.exp(0.0) + math.exp(2 * r)))
    assert float(info_nce(anchor, positive, 0.5)) == pytest.approx((l1 + l2) / 2, rel=1e-6)


def test_info_nce_three_examples_and_temperature():
    anchor = torch.eye(3, dtype=torch.float64)
    positive = torch.eye(3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.2], dtype=torch.float64).unsqueeze(1)
    for tau in (0.1, 1.0):
        expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2.0))  # cosines: identity
        assert float(info_nce(anchor, positive, tau)) == pytest.approx(expected, rel=1e-6)
    # views pointing the wrong way give a larger loss
    assert float(info_nce(anchor, positive.roll(1, 0), 1.0)) > float(info_nce(anchor, positive, 1.0))


# ------------------------------------------------------------------ the TIMin head


def _head(stochastic=True, p=0.0, seed=0, d=5, out=3):
    from mtlrepro.methods.rlw import RandomSource

    return InfoMTLHead(d, "multiclass", out, hidden=4, p_dropout=p, stochastic=stochastic,
                       source=RandomSource(torch.Generator().manual_seed(seed)))


def test_eval_is_deterministic_and_the_mean_path():
    head = _head(p=0.5).eval()
    h = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    a, b = head(h), head(h)
    mu, _ = head.distribution(h)
    assert torch.equal(a, b) and torch.equal(a, mu)


def test_train_samples_have_the_predicted_mean_and_variance():
    head = _head(p=0.0).train()
    with torch.no_grad():
        head.logvar[-1].bias += torch.tensor([-1.0, 0.0, 1.0])  # different variances per output
    h = torch.randn(1, 5, generator=torch.Generator().manual_seed(2)).expand(40_000, 5)
    with torch.no_grad():
        z = head(h)
        mu, logvar = head.distribution(h[:1])
    var = logvar.exp()[0]
    assert torch.all((z.mean(0) - mu[0]).abs() < 5 * var.sqrt() / math.sqrt(40_000))
    assert torch.allclose(z.var(0), var, rtol=0.05)


def test_train_forward_uses_the_method_generator_not_the_global_rng():
    h = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    a = _head(p=0.3, seed=7).train()(h)
    b = _head(p=0.3, seed=7).train()(h)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, _head(p=0.3, seed=8).train()(h))


# ------------------------------------------------------------------ the regulariser


def test_regularizer_is_beta_kl_plus_alpha_t_infonce():
    model, method, tasks = build_model("infomtl", alpha=0.3, beta=0.2, tau=0.5, dropout=0.0)
    X, Y = toy_problem(8)
    model.train()
    h, _ = model(X)
    caches = [dict(head._cache.data) for head in model.heads]
    reg = method.regularizer(model, X, h, Y)
    kl = sum(kl_standard_normal(c["mu"], c["logvar"]).mean() for c in caches)
    expected = 0.2 * kl + 0.3 * 3 * info_nce(h, h, 0.5)  # dropout 0: both views are h
    assert torch.allclose(reg, expected)
    assert all(not head._cache.data for head in model.heads)  # caches consumed


def test_ablations_drop_their_terms():
    X, Y = toy_problem(8)
    model, method, _ = build_model("infomtl_no_simax", beta=0.2, dropout=0.0)
    assert "alpha" not in method.hparam_names() and "tau" not in method.hparam_names()
    model.train()
    h, _ = model(X)
    caches = [dict(head._cache.data) for head in model.heads]
    reg = method.regularizer(model, X, h, Y)
    assert torch.allclose(reg, 0.2 * sum(kl_standard_normal(c["mu"], c["logvar"]).mean() for c in caches))

    model, method, _ = build_model("infomtl_no_timin", alpha=0.3, tau=0.5, dropout=0.0)
    assert "beta" not in method.hparam_names()
    assert all(head.logvar is None for head in model.heads)
    model.train()
    h, outputs = model(X)
    mu = model.heads[0].mu(h)
    assert torch.equal(outputs[0], mu[:, 1:2] - mu[:, 0:1])  # deterministic heads over the 2 classes
    assert torch.allclose(method.regularizer(model, X, h, Y), 0.3 * 3 * info_nce(h, h, 0.5))


def test_encode_view_runs_a_second_forward_pass_without_extra_dropout():
    model, method, tasks = build_model("infomtl", second_view="encode", dropout=0.5, beta=0.0)
    X, Y = toy_problem(8)
    model.eval()  # batch-norm statistics fixed: the second pass equals the first
    h = model.encode(X)
    calls = []
    original = model.encode
    model.encode = lambda inputs: calls.append(1) or original(inputs)
    reg = method.regularizer(model, X, h, Y)
    assert calls == [1]
    assert torch.allclose(reg, 0.1 * 3 * info_nce(h, h, 1.0))  # views h and encode(X), no dropout on them


def test_dropout_view_uses_two_independent_masks_and_auto_picks_the_view():
    model, method, _ = build_model("infomtl", second_view="dropout", dropout=0.5, beta=0.0, seed=4)
    X, Y = toy_problem(8)
    model.train()
    h = model.encode(X)
    reg = method.regularizer(model, X, h, Y)
    _, replayed, _ = build_model("infomtl", second_view="dropout", dropout=0.5, beta=0.0, seed=4)
    replay = replayed.random  # the same stream, positioned after building the heads
    a, b = dropout(h, 0.5, replay), dropout(h, 0.5, replay)
    assert not torch.equal(a, b)
    assert torch.allclose(reg, 0.1 * 3 * info_nce(a, b, 1.0))

    assert method.view_mode(model) == "dropout" and not has_active_dropout(model)
    auto = registry.build("infomtl", 3, task_kinds=["binary"] * 3)
    assert auto.view_mode(model) == "dropout"
    model.features.append(torch.nn.Dropout(0.1))  # an encoder with its own dropout
    assert auto.view_mode(model) == "encode"
    model.eval()
    assert auto.view_mode(model) == "dropout"


def test_hparams_defaults_and_validation():
    method = registry.build("infomtl", 2)
    assert (method.alpha, method.beta, method.tau, method.p_dropout) == (0.1, 0.01, 1.0, 0.2)
    assert method.second_view == "auto" and method.hp["hidden_dim"] is None
    with pytest.raises(ValueError):
        registry.build("infomtl", 2, tau=0.0)
    with pytest.raises(ValueError):
        registry.build("infomtl", 2, second_view="other")
    with pytest.raises(ValueError):
        registry.build("infomtl", 2, dropout=1.0)
    with pytest.raises(ValueError):
        registry.build("infomtl_no_simax", 2, alpha=0.1)


# ------------------------------------------------------------------ end to end


def test_registered_names():
    for name in NAMES:
        assert name in registry.names()
        assert registry.get(name).kind == "weighting"


@pytest.mark.parametrize("name", NAMES)
def test_end_to_end_step_gradients_learning_and_round_trip(name):
    model, method, tasks = build_model(name)
    X, Y = toy_problem()
    model.train()
    rng = torch.get_rng_state()
    training_step(model, method, tasks, X, Y, torch.optim.SGD(model.parameters(), lr=0.0))
    assert torch.equal(torch.get_rng_state(), rng)  # every draw from the method's generator
    for pname, p in model.heads.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    assert model.features[0].weight.grad.abs().sum() > 0

    optimizer = torch.optim.Adam(list(model.parameters()) + method.parameters(), lr=1e-2)
    losses = [float(training_step(model, method, tasks, X, Y, optimizer).sum()) for _ in range(30)]
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5

    model.eval()
    with torch.no_grad():
        expected = model(X)[1]
        assert all(torch.equal(a, b) for a, b in zip(expected, model(X)[1]))
    rebuilt_model = ConvNet(tasks, channels=8, image_size=8)
    install_heads(rebuilt_model, registry.build(name, 3, task_kinds=["binary"] * 3, generator=torch.Generator()),
                  tasks)
    rebuilt_model.load_state_dict(model.state_dict())
    rebuilt_model.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(expected, rebuilt_model(X)[1]))


def test_mixed_task_kinds_output_spaces():
    tasks = [Task("r", "regression", "mae"), Task("b", "binary", "accuracy"), Task("m", "multiclass", "accuracy", 4)]
    torch.manual_seed(0)
    model = ConvNet(tasks, channels=8, image_size=8)
    method = registry.build("infomtl", 3, task_kinds=[t.kind for t in tasks], generator=torch.Generator().manual_seed(0))
    install_heads(model, method, tasks)
    X, _ = toy_problem(16)
    g = torch.Generator().manual_seed(1)
    Y = torch.stack([torch.randn(16, generator=g), torch.randint(0, 2, (16,), generator=g).float(),
                     torch.randint(0, 4, (16,), generator=g).float()], 1)
    Y[:4, 1] = float("nan")
    model.train()
    h, outputs = model(X)
    assert [o.shape for o in outputs] == [(16, 1), (16, 1), (16, 4)]  # z_t lives in the output space R^|Y_t|
    # z_t lives in R^|Y_t|: 2 dimensions for the binary task, whose output is z[1] - z[0]
    assert [head._cache.data["logvar"].shape for head in model.heads] == [(16, 1), (16, 2), (16, 4)]
    losses = training_step(model, method, tasks, X, Y, torch.optim.Adam(model.parameters(), lr=1e-2))
    assert torch.isfinite(losses).all()


def test_binary_task_predicts_over_its_two_classes():
    """R^{|Y_t|}: the binary head's mean lives in R^2 and its output is the logit whose sigmoid is
    the softmax's probability of class 1."""
    from mtlrepro.methods.rlw import RandomSource

    head = InfoMTLHead(5, "binary", 1, hidden=4, p_dropout=0.0, stochastic=True,
                       source=RandomSource(torch.Generator().manual_seed(0))).eval()
    h = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    mu, logvar = head.distribution(h)
    assert mu.shape == logvar.shape == (6, 2)
    out = head(h)
    assert out.shape == (6, 1)
    assert torch.allclose(torch.sigmoid(out[:, 0]), torch.softmax(mu, 1)[:, 1], atol=1e-6)


def test_kl_is_averaged_over_each_tasks_own_rows():
    """TIMin's KL of task t is the mean over the rows labelled for t: rows of other tasks (NaN)
    change nothing, computed here from the heads' caches by hand."""
    model, method, tasks = build_model("infomtl", alpha=0.0, beta=0.5, dropout=0.0)
    X, Y = toy_problem(8)
    Y = Y.clone()
    Y[:5, 0] = float("nan")   # task 0: rows 5..7 only
    Y[5:, 1] = float("nan")   # task 1: rows 0..4 only
    model.train()
    h, _ = model(X)
    caches = [dict(head._cache.data) for head in model.heads]
    reg = method.regularizer(model, X, h, Y)
    expected = 0.0
    for k, c in enumerate(caches):
        own = ~torch.isnan(Y[:, k])
        expected = expected + kl_standard_normal(c["mu"][own], c["logvar"][own]).mean()
    assert torch.allclose(reg, 0.5 * expected)
    everything = sum(kl_standard_normal(c["mu"], c["logvar"]).mean() for c in caches)
    assert not torch.allclose(reg, 0.5 * everything)
