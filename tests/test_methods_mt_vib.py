"""MT-VIB: a shared stochastic bottleneck with beta * KL(q(z|x) || N(0, I)), heads on z."""
import copy
import math

import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.methods._probabilistic import kl_standard_normal
from mtlrepro.step import training_step


from tests.probabilistic_toys import (_one_thread, assert_step_learns_and_round_trips,  # noqa: F401
                                     build_toy_model, toy_problem)


def build_model(seed=1, **hparams):
    return build_toy_model("mt_vib", seed, **hparams)


def test_kl_closed_form_matches_monte_carlo():
    mu = torch.tensor([[1.0, -0.3, 0.0, 0.7]], dtype=torch.float64)
    logvar = torch.tensor([[0.4, -1.2, 0.0, -0.2]], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    std = (0.5 * logvar).exp()
    z = mu + std * torch.randn(400_000, 4, generator=g, dtype=torch.float64)
    mc = (torch.distributions.Normal(mu, std).log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    assert float(kl_standard_normal(mu, logvar)[0]) == pytest.approx(float(mc), abs=0.02)
    assert float(kl_standard_normal(torch.zeros(1, 4), torch.zeros(1, 4))[0]) == 0.0


def test_one_shared_draw_per_forward_for_every_task():
    model, method, _ = build_model()
    X, _ = toy_problem(8)
    model.train()
    h = model.encode(X)
    z = [head.bottleneck(h) for head in model.heads]
    assert z[0] is z[1] is z[2]
    assert model.heads[0].bottleneck is model.heads[2].bottleneck
    h2 = model.encode(X)  # a new forward: a new draw
    assert not torch.equal(model.heads[0].bottleneck(h2), z[0])


def test_eval_is_deterministic_and_the_mean_path():
    model, _, _ = build_model()
    X, _ = toy_problem(8)
    model.eval()
    with torch.no_grad():
        h, out = model(X)
        again = model(X)[1]
        for head, o, o2 in zip(model.heads, out, again):
            assert torch.equal(o, o2)
            assert torch.equal(o, head.predictor(head.bottleneck.mu(h)))


def test_train_samples_have_the_predicted_mean_and_variance():
    model, _, _ = build_model()
    bottleneck = model.heads[0].bottleneck.train()
    h = torch.randn(1, model.rep_dim, generator=torch.Generator().manual_seed(4)).expand(40_000, -1)
    with torch.no_grad():
        z = bottleneck(h)
        mu, logvar = bottleneck.distribution(h[:1])
    var = logvar.exp()[0]
    assert torch.all((z.mean(0) - mu[0]).abs() < 5 * var.sqrt() / math.sqrt(40_000))
    assert torch.allclose(z.var(0), var, rtol=0.05)


def test_regularizer_is_beta_times_the_mean_kl():
    model, method, _ = build_model(beta=0.05)
    X, Y = toy_problem(8)
    model.train()
    h, _ = model(X)
    cache = dict(model.heads[0].bottleneck._cache.data)
    reg = method.regularizer(model, X, h, Y)
    assert torch.allclose(reg, 0.05 * kl_standard_normal(cache["mu"], cache["logvar"]).mean())
    assert method.regularizer(model, X, h, Y) is None  # the cache was consumed


def test_task_uncertainty_option_learns_log_variances_and_resumes():
    model, method, tasks = build_model(task_uncertainty=True)
    (s,) = method.parameters()
    losses = torch.tensor([1.0, 2.0, 0.5], requires_grad=True)
    total = method.combine_losses(losses)
    assert torch.allclose(total, (0.5 * losses).sum())
    X, Y = toy_problem(8)
    model.train()
    training_step(model, method, tasks, X, Y, torch.optim.SGD(list(model.parameters()) + [s], lr=0.1))
    assert s.grad is not None and s.grad.abs().sum() > 0 and not torch.equal(s.detach(), torch.zeros(3))
    other = registry.build("mt_vib", 3, task_kinds=["binary"] * 3, task_uncertainty=True)
    other.load_state_dict(copy.deepcopy(method.state_dict()))
    assert torch.equal(other.parameters()[0].detach(), s.detach())
    assert registry.build("mt_vib", 3).parameters() == []


def test_registered_name_and_defaults():
    assert "mt_vib" in registry.names()
    method = registry.build("mt_vib", 2)
    assert method.beta == 1e-3 and method.hp["latent_dim"] is None
    with pytest.raises(ValueError):
        registry.build("mt_vib", 2, beta=-1.0)


def test_end_to_end_step_gradients_learning_and_round_trip():
    model, method, tasks = build_model(latent_dim=6)
    X, Y = toy_problem()
    assert_step_learns_and_round_trips(model, method, tasks, X, Y, "mt_vib", latent_dim=6)
