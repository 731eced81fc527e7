"""Hierarchical MTL (de Freitas et al., 2022): per-task additive-noise channels w_t = z + eps_t with
a learned information bound KL(N(z, sigma_t^2) || N(0, s_t^2))."""
import math

import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.methods._probabilistic import kl_diag_gaussians
from mtlrepro.methods.hmtl import HierarchicalMTL


from tests.probabilistic_toys import (_one_thread, assert_step_learns_and_round_trips,  # noqa: F401
                                     build_toy_model, toy_problem)


def build_model(seed=1, **hparams):
    return build_toy_model("hmtl", seed, **hparams)


def test_diagonal_gaussian_kl_matches_monte_carlo():
    mu_q = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    lv_q = torch.tensor([-0.7, 0.2, 0.5], dtype=torch.float64)
    mu_p = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    lv_p = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    z = mu_q + (0.5 * lv_q).exp() * torch.randn(
        400_000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(1).mean()
    exact = kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p)
    assert float(exact) == pytest.approx(float(mc), abs=0.02)
    assert float(kl_diag_gaussians(mu_q, lv_q, mu_q, lv_q)) == pytest.approx(0.0, abs=1e-12)


def test_train_noise_has_the_learned_variance_around_z():
    model, _, _ = build_model()
    head = model.heads[1].train()
    with torch.no_grad():
        head.noise_logvar.copy_(torch.linspace(-2.0, 1.0, model.rep_dim))
    z = torch.randn(1, model.rep_dim, generator=torch.Generator().manual_seed(5)).expand(40_000, -1)
    captured = {}
    head.predictor.register_forward_hook(lambda mod, inp, out: captured.setdefault("w", inp[0]))
    with torch.no_grad():
        head(z)
    w, var = captured["w"], head.noise_logvar.exp()
    assert torch.all((w.mean(0) - z[0]).abs() < 5 * var.sqrt() / math.sqrt(40_000))
    assert torch.allclose(w.var(0), var, rtol=0.05)


def test_eval_is_deterministic_and_noise_free():
    model, _, _ = build_model()
    X, _ = toy_problem(8)
    model.eval()
    with torch.no_grad():
        h, out = model(X)
        for head, o, o2 in zip(model.heads, out, model(X)[1]):
            assert torch.equal(o, o2) and torch.equal(o, head.predictor(h))


def test_regularizer_is_beta_times_the_information_bounds():
    model, method, _ = build_model(beta=0.3)
    X, Y = toy_problem(8)
    with torch.no_grad():
        for k, head in enumerate(model.heads):
            head.noise_logvar.fill_(0.1 * k - 0.5)
            head.prior_logvar.fill_(0.2 * k)
    model.train()
    h, _ = model(X)
    expected = 0.0
    for k in range(3):
        sigma2, s2 = math.exp(0.1 * k - 0.5), math.exp(0.2 * k)
        # KL(N(h, sigma^2) || N(0, s^2)) per dimension, summed, averaged over the batch
        per_dim = 0.5 * (sigma2 / s2 + h.pow(2) / s2 + math.log(s2) - math.log(sigma2) - 1)
        expected = expected + per_dim.sum(1).mean()
    assert torch.allclose(method.regularizer(model, X, h, Y), 0.3 * expected, rtol=1e-5)
    profiles = HierarchicalMTL.noise_profiles(model.heads)
    assert profiles.shape == (3, model.rep_dim)
    assert torch.allclose(profiles[2], torch.full((model.rep_dim,), math.exp(-0.3)))


def test_registered_name_and_defaults():
    assert "hmtl" in registry.names()
    method = registry.build("hmtl", 2)
    assert method.beta == 0.01 and method.hp["hidden_dim"] == 0
    with pytest.raises(ValueError):
        registry.build("hmtl", 2, beta=-0.1)


def test_end_to_end_step_gradients_learning_and_round_trip():
    model, method, tasks = build_model(hidden_dim=4)
    X, Y = toy_problem()
    assert_step_learns_and_round_trips(model, method, tasks, X, Y, "hmtl", hidden_dim=4)
