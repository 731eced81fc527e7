"""Nash-MTL: weights alpha > 0 solving G G^T alpha = 1 / alpha."""
import pytest
import torch

from mtlrepro.methods import build, combine
from mtlrepro.methods.mgda import gramian
from mtlrepro.methods.nash_mtl import nash_weights

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _random_G(seed, K, d):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, d, generator=g, dtype=torch.float64) * (torch.rand(K, 1, generator=g, dtype=torch.float64) * 10 + 0.01)


@pytest.mark.parametrize("seed", range(20))
def test_weights_solve_the_bargaining_equation(seed):
    K = 1 + seed % 7
    G = _random_G(seed, K, K + 5)
    method = build("nash_mtl", K)
    d = method.combine(G)
    alpha = method.last_weights()
    M = G @ G.T
    assert bool((alpha > 0).all())
    assert torch.allclose(M @ alpha, 1 / alpha, rtol=1e-8, atol=0)  # elementwise
    assert torch.allclose(d, alpha @ G, atol=1e-10)
    assert abs(float(d @ d) - K) < 1e-7 * K  # |d|^2 = alpha^T M alpha = K


def test_orthogonal_gradients_closed_form():
    G = torch.diag(torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64))
    alpha = nash_weights(gramian(G))
    assert torch.allclose(alpha, torch.tensor([2.0, 0.5, 0.125], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(combine("nash_mtl", G), torch.ones(3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_invariant_to_task_loss_scaling(seed):
    G = _random_G(40 + seed, 4, 9)
    scales = torch.tensor([1.0, 100.0, 0.01, 3.0], dtype=torch.float64)[:, None]
    assert torch.allclose(combine("nash_mtl", G), combine("nash_mtl", scales * G), atol=1e-9)


def test_update_every_reuses_weights():
    Gs = [_random_G(60 + i, 3, 6) for i in range(5)]
    method = build("nash_mtl", 3, update_every=3)
    outputs = [method.combine(G) for G in Gs]
    alpha0 = nash_weights(gramian(Gs[0]))
    alpha3 = nash_weights(gramian(Gs[3]))
    for i, alpha in [(0, alpha0), (1, alpha0), (2, alpha0), (3, alpha3), (4, alpha3)]:
        assert torch.allclose(outputs[i], alpha @ Gs[i], atol=1e-10), i
    # and every call recomputes by default
    fresh = build("nash_mtl", 3)
    for G in Gs:
        assert torch.allclose(fresh.combine(G), nash_weights(gramian(G)) @ G, atol=1e-10)


def test_degenerate_cases_stay_finite():
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    opposite = combine("nash_mtl", torch.stack([g, -g, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)]))
    assert torch.isfinite(opposite).all()
    with_zero = build("nash_mtl", 3)
    d = with_zero.combine(torch.stack([torch.zeros(3, dtype=torch.float64), g, 2 * torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)]))
    assert torch.isfinite(d).all() and float(with_zero.last_weights()[0]) == 0.0
    assert torch.equal(combine("nash_mtl", torch.zeros(2, 5)), torch.zeros(5))


def test_rejects_bad_update_every():
    with pytest.raises(ValueError):
        build("nash_mtl", 2, update_every=0)


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_follow_G(device):
    G = _random_G(1, 3, 20).float().to(device)
    out = build("nash_mtl", 3).combine(G)
    assert out.device == G.device and out.dtype == torch.float32
