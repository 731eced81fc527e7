"""VMTL (Shen et al., NeurIPS 2021): Gumbel-Softmax mixture priors over the other tasks'
posteriors, the mixture-KL upper bound, Eq. 10 cross-attention, Eq. 11 Monte-Carlo likelihood,
Eq. 12 averaged prediction, and the amortised classifier variant."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from mtlrepro import methods as registry
from mtlrepro.data.base import Task
from mtlrepro.methods._probabilistic import (gumbel_softmax_weights, kl_diag_gaussians, kl_mixture_upper_bound,
                                             mc_average_output, mixing_matrix)
from mtlrepro.methods.vmtl import classifier_kl, cross_attention_aggregate, query_class, shares_label_space
from mtlrepro.models.cnn import ConvNet
from mtlrepro.stages import install_heads
from mtlrepro.training import build_method
from mtlrepro.step import training_step


from tests.probabilistic_toys import _one_thread, assert_step_learns_and_round_trips, toy_problem  # noqa: F401


def build_model(name="vmtl", seed=1, n_tasks=3, **hparams):
    tasks = [Task(f"t{k}", "binary", "accuracy") for k in range(n_tasks)]
    torch.manual_seed(0)
    model = ConvNet(tasks, channels=8, image_size=8)
    method = registry.build(name, n_tasks, task_kinds=["binary"] * n_tasks,
                            generator=torch.Generator().manual_seed(seed), **hparams)
    install_heads(model, method, tasks)
    return model, method, tasks


# ------------------------------------------------------------------ the mixture KL bound


def _mc_kl_to_mixture(mu_q, lv_q, mu_p, lv_p, w, n=400_000):
    g = torch.Generator().manual_seed(0)
    z = mu_q + (0.5 * lv_q).exp() * torch.randn(n, mu_q.shape[-1], generator=g, dtype=torch.float64)
    log_q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()).log_prob(z).sum(1)
    comps = torch.distributions.Normal(mu_p.unsqueeze(1), (0.5 * lv_p).exp().unsqueeze(1)).log_prob(z).sum(2)
    log_mix = torch.logsumexp(comps + w.log().unsqueeze(1), 0)
    return float((log_q - log_mix).mean())


def test_mixture_kl_upper_bound_is_above_the_true_kl():
    d = torch.float64
    mu_q, lv_q = torch.tensor([0.2, -0.5], dtype=d), torch.tensor([-0.3, 0.1], dtype=d)
    mu_p = torch.tensor([[1.0, 0.0], [-1.0, -1.0], [0.2, 0.8]], dtype=d)
    lv_p = torch.tensor([[0.0, 0.5], [-0.5, 0.0], [0.3, -0.2]], dtype=d)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=d)
    bound = float(kl_mixture_upper_bound(mu_q, lv_q, mu_p, lv_p, w))
    true_kl = _mc_kl_to_mixture(mu_q, lv_q, mu_p, lv_p, w)
    assert bound >= true_kl + 0.05  # strictly above here (Jensen gap), MC error ~ 0.005
    assert bound == pytest.approx(float(sum(w[i] * kl_diag_gaussians(mu_q, lv_q, mu_p[i], lv_p[i]) for i in range(3))))


def test_mixture_kl_bound_with_one_component_is_the_closed_form():
    d = torch.float64
    mu_q, lv_q = torch.tensor([0.2, -0.5], dtype=d), torch.tensor([-0.3, 0.1], dtype=d)
    mu_p, lv_p = torch.tensor([[1.0, 0.0]], dtype=d), torch.tensor([[0.0, 0.5]], dtype=d)
    one = torch.ones(1, dtype=d)
    bound = kl_mixture_upper_bound(mu_q, lv_q, mu_p, lv_p, one)
    assert torch.equal(bound, kl_diag_gaussians(mu_q, lv_q, mu_p[0], lv_p[0]))
    assert float(bound) == pytest.approx(_mc_kl_to_mixture(mu_q, lv_q, mu_p, lv_p, one), abs=0.02)


def test_classifier_kl_aligned_classes_and_uniform_mixture_over_other_label_spaces():
    g = torch.Generator().manual_seed(3)
    mu_t, lv_t = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g) * 0.3
    mu_i, lv_i = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g) * 0.3
    assert torch.allclose(classifier_kl(mu_t, lv_t, mu_i, lv_i), kl_diag_gaussians(mu_t, lv_t, mu_i, lv_i).sum())
    mu_r, lv_r = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) * 0.3
    expected = sum(kl_diag_gaussians(mu_t[c], lv_t[c], mu_r[j], lv_r[j]) / 3 for c in range(2) for j in range(3))
    assert torch.allclose(classifier_kl(mu_t, lv_t, mu_r, lv_r), expected)


# ------------------------------------------------------------------ Gumbel-Softmax priors


def test_gumbel_softmax_weights_sum_to_one_and_concentrate_as_tau_falls():
    logits = torch.tensor([[0.5, -0.2, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    u = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    previous = torch.zeros(2)
    for tau in (10.0, 2.0, 1.0, 0.5, 0.1, 0.01):
        w = gumbel_softmax_weights(logits, tau, u)
        assert torch.allclose(w.sum(1), torch.ones(2))
        assert torch.all(w >= 0)
        assert torch.all(w.max(1).values > previous)
        previous = w.max(1).values
    g = -torch.log(-torch.log(u))
    hard = F.one_hot((torch.log_softmax(logits, 1) + g).argmax(1), 4).float()
    assert torch.allclose(gumbel_softmax_weights(logits, 0.01, u), hard, atol=1e-3)


def test_gumbel_max_frequencies_follow_pi():
    logits = torch.tensor([0.0, 1.0, -1.0])
    u = torch.rand(100_000, 3, generator=torch.Generator().manual_seed(1))
    winners = gumbel_softmax_weights(logits.expand(100_000, 3), 0.01, u).argmax(1)
    freq = torch.bincount(winners, minlength=3).float() / 100_000
    assert torch.allclose(freq, torch.softmax(logits, 0), atol=0.01)


def test_priors_exclude_the_task_itself():
    weights = torch.tensor([[0.3, 0.7], [0.4, 0.6], [0.9, 0.1]])
    full = mixing_matrix(weights)
    assert torch.equal(full.diagonal(), torch.zeros(3))
    assert torch.equal(full, torch.tensor([[0.0, 0.3, 0.7], [0.4, 0.0, 0.6], [0.9, 0.1, 0.0]]))

    model, method, _ = build_model()
    A_z, A_w = method.mixing_weights(model.heads, torch.device("cpu"))
    for A in (A_z, A_w):
        assert torch.equal(A.diagonal(), torch.zeros(3)) and torch.allclose(A.sum(1), torch.ones(3))

    # behaviour: task 1's labels shape the prior component it lends to tasks 0 and 2 (through the
    # cross-attention over D_1), never its own prior
    X, Y = toy_problem(16)
    Y2 = Y.clone()
    Y2[:, 1] = Y[torch.randperm(16, generator=torch.Generator().manual_seed(2)), 1]
    model.train()
    results = []
    for targets in (Y, Y2):
        method.random.generator.manual_seed(11)
        h, _ = model(X)
        caches = [head.pop_cache() for head in model.heads]
        method.random.generator.manual_seed(12)
        results.append(method.kl_terms(model.heads, caches, h, targets))
    (kz, kw), (kz2, kw2) = results
    assert torch.equal(kz[1], kz2[1]) and torch.equal(kw, kw2)
    assert not torch.allclose(kz[0], kz2[0]) and not torch.allclose(kz[2], kz2[2])


def test_cross_attention_by_hand():
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    labels = torch.tensor([0.0, 0.0, 1.0, float("nan")])
    f = cross_attention_aggregate(h, labels, "binary")
    assert torch.allclose(f[0], h[1]) and torch.allclose(f[1], h[0])  # the only same-class partner
    # example 2: no same-class partner -> all other labelled examples (0, 1), softmax(h2.hj / sqrt2)
    s = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    assert torch.allclose(f[2], (torch.softmax(s, 0).unsqueeze(1) * h[:2]).sum(0))
    # example 3: no task-i label -> all labelled others (0, 1, 2)
    s3 = h[3] @ h[:3].T / math.sqrt(2)
    assert torch.allclose(f[3], torch.softmax(s3, 0) @ h[:3])
    # a lone labelled example keeps its own features
    lone = cross_attention_aggregate(h[:2], torch.tensor([1.0, float("nan")]), "regression")
    assert torch.allclose(lone[0], h[0]) and torch.allclose(lone[1], h[0])


def _eq10_by_hand(h, Y, n, t, i, kinds, n_classes):
    """f(x_n, D_i) for row n's prior in task t, written out: D_i,c = the other rows labelled for
    task i with task-i label c, c = x_n's task-i label, else (same label space) its task-t label;
    all rows labelled for task i when there is no such c or no such row."""
    nan = float("nan")
    labelled_i = [m for m in range(len(h)) if m != n and not math.isnan(float(Y[m, i]))]
    same_space = "regression" not in (kinds[t], kinds[i]) and n_classes[t] == n_classes[i]
    c = float(Y[n, i]) if not math.isnan(float(Y[n, i])) else (float(Y[n, t]) if same_space else nan)
    same = [m for m in labelled_i if float(Y[m, i]) == c] if kinds[i] != "regression" else []
    keys = same or labelled_i
    if not keys:
        return h[n]
    scores = torch.stack([h[n] @ h[m] for m in keys]) / math.sqrt(h.shape[1])
    weights = torch.softmax(scores, 0)
    return sum(weights[j] * h[m] for j, m in enumerate(keys))


def _one_label_per_row():
    """12 rows, 3 tasks of 3 classes (digits-domains' layout): rows 4k..4k+3 labelled for task k only."""
    nan = float("nan")
    Y = torch.full((12, 3), nan)
    Y[0:4, 0] = torch.tensor([0.0, 1.0, 2.0, 0.0])
    Y[4:8, 1] = torch.tensor([1.0, 0.0, 0.0, 2.0])
    Y[8:12, 2] = torch.tensor([2.0, 1.0, 1.0, 0.0])
    h = torch.randn(12, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return h, Y


def test_eq10_conditions_on_the_own_task_class_of_a_row_labelled_for_one_task_only():
    h, Y = _one_label_per_row()
    t, i = 0, 1
    query = query_class(Y[:, i], Y[:, t], True)
    f = cross_attention_aggregate(h, Y[:, i], "multiclass", query)
    for n in range(4):  # task t's rows, all unlabelled for task i
        assert torch.allclose(f[n], _eq10_by_hand(h, Y, n, t, i, ["multiclass"] * 3, [3] * 3))
    # row 1 (class 1): task 1's only class-1 row is row 4; row 2 (class 2): row 7
    assert torch.allclose(f[1], h[4]) and torch.allclose(f[2], h[7])
    # row 0 (class 0) attends over task 1's class-0 rows 5 and 6 only
    s = torch.stack([h[0] @ h[5], h[0] @ h[6]]) / 2.0
    assert torch.allclose(f[0], torch.softmax(s, 0) @ h[5:7])

    # the prior input of row n depends on y_n^t ...
    Y2 = Y.clone()
    Y2[0, t] = 2.0
    f2 = cross_attention_aggregate(h, Y2[:, i], "multiclass", query_class(Y2[:, i], Y2[:, t], True))
    assert torch.allclose(f2[0], h[7]) and not torch.allclose(f2[0], f[0])
    assert torch.equal(f2[1:], f[1:])
    # ... and not on the rows unlabelled for task i (task t's other rows, task 2's rows)
    h3, Y3 = h.clone(), Y.clone()
    h3[[1, 2, 3, 8, 9]] += 5.0
    Y3[1:4, t] = torch.tensor([0.0, 0.0, 1.0])
    Y3[8:12, 2] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    f3 = cross_attention_aggregate(h3, Y3[:, i], "multiclass", query_class(Y3[:, i], Y3[:, t], True))
    assert torch.equal(f3[0], f[0])

    # before the change, a row unlabelled for task i ignored its class: all of task i's rows
    old = cross_attention_aggregate(h, Y[:, i], "multiclass")
    s_all = (h[0] @ h[4:8].T) / 2.0
    assert torch.allclose(old[0], torch.softmax(s_all, 0) @ h[4:8])


def test_query_class_only_in_a_shared_label_space():
    nan = float("nan")
    y_i, y_t = torch.tensor([1.0, nan, nan]), torch.tensor([0.0, 2.0, nan])
    # the task-i label where there is one, else the own-task label; NaN where neither
    assert torch.equal(query_class(y_i, y_t, True).nan_to_num(-1), torch.tensor([1.0, 2.0, -1.0]))
    assert torch.equal(query_class(y_i, y_t, False).nan_to_num(-1), torch.tensor([1.0, -1.0, -1.0]))
    heads = [type("H", (), {"kind": k, "n_vec": v}) for k, v in
             (("multiclass", 3), ("multiclass", 3), ("multiclass", 4), ("binary", 2), ("binary", 2), ("regression", 1))]
    assert shares_label_space(heads[0], heads[1]) and shares_label_space(heads[3], heads[4])
    assert not shares_label_space(heads[0], heads[2]) and not shares_label_space(heads[5], heads[5])


def _multiclass_model(n_tasks=3, classes=(3, 3, 3), seed=1):
    tasks = [Task(f"t{k}", "multiclass", "accuracy", c) for k, c in zip(range(n_tasks), classes)]
    torch.manual_seed(0)
    model = ConvNet(tasks, channels=8, image_size=8)
    method = registry.build("vmtl", n_tasks, task_kinds=["multiclass"] * n_tasks,
                            generator=torch.Generator().manual_seed(seed))
    install_heads(model, method, tasks)
    return model, method, tasks


def _kl_terms_and_weights(model, method, X, Y):
    model.train()
    method.random.generator.manual_seed(11)
    h, _ = model(X)
    caches = [head.pop_cache() for head in model.heads]
    method.random.generator.manual_seed(12)
    A_z, _ = method.mixing_weights(model.heads, torch.device("cpu"))
    method.random.generator.manual_seed(12)
    return method.kl_terms(model.heads, caches, h, Y), A_z, h.detach(), caches


@pytest.mark.parametrize("classes", [(3, 3, 3), (3, 3, 4)])
def test_representation_kl_on_one_label_per_row_batches_by_hand(classes):
    _, Y = _one_label_per_row()
    X, _ = toy_problem(12)
    model, method, _ = _multiclass_model(classes=classes)
    (kz, _), A_z, h, caches = _kl_terms_and_weights(model, method, X, Y)
    kinds = ["multiclass"] * 3
    with torch.no_grad():
        for t in range(3):
            rows, total = [n for n in range(12) if not math.isnan(float(Y[n, t]))], 0.0
            for n in rows:
                q = (caches[t]["mu_z"][n], caches[t]["logvar_z"][n])
                for i in (j for j in range(3) if j != t):
                    mu_p, lv_p = model.heads[i].z_posterior(_eq10_by_hand(h, Y, n, t, i, kinds, classes))
                    total = total + A_z[t, i] * kl_diag_gaussians(*q, mu_p, lv_p)
            assert torch.allclose(kz[t], total / len(rows), rtol=1e-5)

    # y_n^t shapes row n's prior (task 2 has 4 classes in the second case: no class of it to match)
    Y2 = Y.clone()
    Y2[0, 0] = 2.0
    (kz2, _), _, _, _ = _kl_terms_and_weights(model, method, X, Y2)
    assert not torch.allclose(kz2[0], kz[0])
    prior = method.representation_priors(model.heads, h, Y, 0, [1, 2])
    prior2 = method.representation_priors(model.heads, h, Y2, 0, [1, 2])
    assert not torch.allclose(prior[0][0, 0], prior2[0][0, 0])  # from task 1: conditioned on the class
    assert torch.equal(prior[0][:, 1:], prior2[0][:, 1:])       # the other rows' priors are unchanged
    assert torch.equal(prior[0][1, 0], prior2[0][1, 0]) == (classes[2] != classes[0])


def test_fully_labelled_priors_are_unchanged():
    """Every row labelled for every task: D_i,c is still chosen by x_n's task-i label, and the KL
    terms are those of the implementation before the own-task conditioning (values saved from it)."""
    model, method, _ = build_model()
    X, Y = toy_problem(16)
    (kz, kw), A_z, h, caches = _kl_terms_and_weights(model, method, X, Y)
    assert torch.allclose(kz, torch.tensor([2.913287401199341, 3.5073599815368652, 3.01850962638855]), rtol=1e-5)
    assert torch.allclose(kw, torch.tensor([257.1497802734375, 288.9034423828125, 318.8446960449219]), rtol=1e-5)
    with torch.no_grad():
        for t in range(3):
            others = [i for i in range(3) if i != t]
            mu_p, lv_p = method.representation_priors(model.heads, h, Y, t, others)
            for k, i in enumerate(others):
                f = cross_attention_aggregate(h, Y[:, i], "binary")  # x_n's own task-i label
                assert torch.allclose(mu_p[k], model.heads[i].z_posterior(f)[0])
                assert torch.allclose(lv_p[k], model.heads[i].z_posterior(f)[1])


# ------------------------------------------------------------------ likelihood and prediction


def test_mc_average_output_by_hand():
    binary = torch.tensor([[[0.0]], [[math.log(3.0)]]])  # probabilities 0.5 and 0.75
    assert float(torch.sigmoid(mc_average_output(binary, "binary"))) == pytest.approx(0.625)
    multi = torch.log(torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]]))
    assert torch.allclose(torch.softmax(mc_average_output(multi, "multiclass"), -1), torch.tensor([[0.4, 0.6]]))
    reg = torch.tensor([[[1.0]], [[3.0]]])
    assert torch.equal(mc_average_output(reg, "regression"), torch.tensor([[2.0]]))


def test_likelihood_is_the_monte_carlo_average_of_eq_11():
    model, method, tasks = build_model(z_samples=3, w_samples=2)
    X, Y = toy_problem(8)
    Y[0, 2] = float("nan")
    model.train()
    h, outputs = model(X)
    caches = [dict(head._cache.data) for head in model.heads]
    correction = method.mc_likelihood_correction(model.heads, caches, Y)
    loop = sum(F.binary_cross_entropy_with_logits(o[~torch.isnan(Y[:, k]), 0], Y[~torch.isnan(Y[:, k]), k])
               for k, o in enumerate(outputs))
    by_hand = 0.0
    for k, c in enumerate(caches):
        assert c["out"].shape == (3, 2, 8, 1) and torch.equal(c["out"][0, 0], outputs[k])
        keep = ~torch.isnan(Y[:, k])
        by_hand = by_hand + sum(F.binary_cross_entropy_with_logits(c["out"][l, m][keep, 0], Y[keep, k])
                                for l in range(3) for m in range(2)) / 6
    assert torch.allclose(loop + correction, by_hand, atol=1e-6)


def test_eval_is_deterministic_and_the_mean_path_when_variances_vanish():
    model, method, _ = build_model()
    X, _ = toy_problem(8)
    model.eval()
    state = method.random.generator.get_state()
    with torch.no_grad():
        a, b = model(X)[1], model(X)[1]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(method.random.generator.get_state(), state)  # eval draws never touch the stream
    with torch.no_grad():
        for head in model.heads:
            head.z_logvar.weight.zero_()
            head.z_logvar.bias.fill_(-30.0)
            head.w_logvar.fill_(-30.0)
        h, out = model(X)
        for head, o in zip(model.heads, out):
            z1 = torch.cat([head.z_mu(h), torch.ones(8, 1)], 1)
            scores = z1 @ head.w_mu.T
            assert torch.allclose(o[:, 0], scores[:, 1] - scores[:, 0], atol=1e-4)


def test_single_task_uses_standard_normal_priors():
    model, method, tasks = build_model(n_tasks=1)
    X, Y = toy_problem(8)
    model.train()
    h, _ = model(X)
    caches = [head.pop_cache() for head in model.heads]
    kz, kw = method.kl_terms(model.heads, caches, h, Y[:, :1])
    from mtlrepro.methods._probabilistic import kl_standard_normal
    assert torch.allclose(kz[0], kl_standard_normal(caches[0]["mu_z"], caches[0]["logvar_z"]).mean())
    assert torch.allclose(kw[0], kl_standard_normal(caches[0]["mu_w"], caches[0]["logvar_w"]).sum())


def test_amortized_classifier_follows_the_class_means():
    model, method, tasks = build_model("vmtl_amortized", centre_momentum=0.5)
    X, Y = toy_problem(16)
    head = model.heads[0]
    assert head.generator is model.heads[2].generator and not hasattr(head, "w_mu")
    model.train()
    training_step(model, method, tasks, X, Y, torch.optim.SGD(model.parameters(), lr=0.0))
    with torch.no_grad():
        h = model.encode(X)
    for c in (0, 1):
        assert torch.allclose(head.centres[c], h[Y[:, 0] == c].mean(0), atol=1e-6)
    assert torch.equal(head.centre_seen, torch.ones(2))
    assert "heads.0.centres" in model.state_dict()
    before = head.centres.clone()
    X2, Y2 = toy_problem(16, seed=5)
    training_step(model, method, tasks, X2, Y2, torch.optim.SGD(model.parameters(), lr=0.0))
    with torch.no_grad():
        h2 = model.encode(X2)
    for c in (0, 1):  # moving average with momentum 0.5
        assert torch.allclose(head.centres[c], 0.5 * before[c] + 0.5 * h2[Y2[:, 0] == c].mean(0), atol=1e-6)
    mu_w, _ = head.w_posterior()
    assert torch.allclose(mu_w, head.generator(head.centres)[0])


def test_task_sizes_come_from_the_loop_and_scale_the_classifier_kl():
    tasks = [Task(f"t{k}", "binary", "accuracy") for k in range(3)]
    method = build_method("vmtl", {}, tasks, torch.Generator(), [10, 20, 40])
    assert method.hp["task_sizes"] == [10, 20, 40]
    model, method, _ = build_model(task_sizes=[10, 20, 40])
    X, Y = toy_problem(8)
    model.train()
    method.random.generator.manual_seed(3)
    h, _ = model(X)
    caches = [dict(head._cache.data) for head in model.heads]
    method.random.generator.manual_seed(4)
    terms = method.loss_terms(model.heads, h, Y)
    method.random.generator.manual_seed(4)
    kz, kw = method.kl_terms(model.heads, caches, h, Y)
    assert torch.allclose(terms["kl_w"], (kw / torch.tensor([10.0, 20.0, 40.0])).sum())
    assert torch.allclose(terms["kl_z"], 1e-3 * kz.sum())


# ------------------------------------------------------------------ end to end


def test_registered_names_and_hparams():
    for name in ("vmtl", "vmtl_amortized"):
        assert name in registry.names() and registry.get(name).kind == "weighting"
    assert "centre_momentum" in registry.get("vmtl_amortized").hparam_names()
    assert "centre_momentum" not in registry.get("vmtl").hparam_names()
    with pytest.raises(ValueError):
        registry.build("vmtl", 2, z_samples=0)
    with pytest.raises(ValueError):
        registry.build("vmtl", 2, task_sizes=[1])
    with pytest.raises(ValueError):
        registry.build("vmtl", 2, tau=0.0)


@pytest.mark.parametrize("name", ["vmtl", "vmtl_amortized"])
def test_end_to_end_step_gradients_learning_and_round_trip(name):
    model, method, tasks = build_model(name, task_sizes=[1000] * 3)
    X, Y = toy_problem()
    model.train()
    if name == "vmtl_amortized":  # class means from a first pass, so every class vector differs
        training_step(model, method, tasks, X, Y, torch.optim.SGD(model.parameters(), lr=0.0))
    assert_step_learns_and_round_trips(model, method, tasks, X, Y, name)
    assert copy.deepcopy(model) is not None  # caches and the shared stream survive a deep copy


@pytest.mark.parametrize("name", ["vmtl", "vmtl_amortized"])
def test_mixed_task_kinds_and_missing_labels(name):
    tasks = [Task("r", "regression", "mae"), Task("b", "binary", "accuracy"), Task("m", "multiclass", "accuracy", 3)]
    torch.manual_seed(0)
    model = ConvNet(tasks, channels=8, image_size=8)
    method = registry.build(name, 3, task_kinds=[t.kind for t in tasks], generator=torch.Generator().manual_seed(0),
                            z_samples=4, w_samples=3)
    install_heads(model, method, tasks)
    assert [head.n_vec for head in model.heads] == [1, 2, 3]
    X, _ = toy_problem(24)
    g = torch.Generator().manual_seed(1)
    Y = torch.stack([torch.randn(24, generator=g), torch.randint(0, 2, (24,), generator=g).float(),
                     torch.randint(0, 3, (24,), generator=g).float()], 1)
    Y[:5, 0] = float("nan")
    Y[3:9, 2] = float("nan")
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        losses = training_step(model, method, tasks, X, Y, optimizer)
        assert torch.isfinite(losses).all()
    model.eval()
    with torch.no_grad():
        out = model(X)[1]
    assert [o.shape for o in out] == [(24, 1), (24, 1), (24, 3)]
    assert torch.allclose(torch.logsumexp(out[2], 1), torch.zeros(24), atol=1e-5)  # log of averaged probabilities
