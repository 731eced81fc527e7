"""CAGrad: max_d min_k g_k . d subject to |d - g0| <= c |g0|, solved through its dual."""
import math

import pytest
import torch

import mtlrepro.methods.cagrad as cagrad_module
from mtlrepro.methods import build, combine

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _random_G(seed, K, d):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, d, generator=g, dtype=torch.float64) * (torch.rand(K, 1, generator=g, dtype=torch.float64) * 3 + 0.1)


def _worst_task_gain(G, d):
    return float((G @ d).min())


def _brute_force_primal(G, c, n=200_000, seed=0):
    """max over sampled feasible d (|d - g0| <= c |g0|) of min_k g_k . d."""
    g = torch.Generator().manual_seed(seed)
    g0 = G.mean(0)
    u = torch.randn(n, G.shape[1], generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g, dtype=torch.float64) ** (1 / G.shape[1])
    d = g0 + c * g0.norm() * u
    return float((d @ G.T).min(1).values.max())


@pytest.mark.parametrize("seed", range(12))
def test_solves_the_constrained_problem(seed):
    K, d, c = 2 + seed % 2, 2 + (seed // 2) % 2, [0.2, 0.4, 0.8, 1.5][seed % 4]
    G = _random_G(seed, K, d)
    direction = combine("cagrad", G, c=c, rescale=0)
    g0 = G.mean(0)
    assert float((direction - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-9)  # feasible
    ours = _worst_task_gain(G, direction)
    sampled = _brute_force_primal(G, c)
    scale = float(G.norm(dim=1).max()) ** 2
    assert ours >= sampled - 1e-9 * scale  # nothing feasible does better ...
    assert ours <= sampled + 1e-2 * scale  # ... and the sampling gets close to it


@pytest.mark.parametrize("seed", range(6))
def test_strong_duality_with_brute_force_dual(seed):
    K, c = 3, 0.4
    G = _random_G(50 + seed, K, 4)
    g0 = G.mean(0)
    steps = 300  # simplex grid
    i, j = torch.meshgrid(torch.arange(steps + 1), torch.arange(steps + 1), indexing="ij")
    keep = i + j <= steps
    w = torch.stack([i[keep], j[keep], steps - i[keep] - j[keep]], 1).double() / steps
    gw = w @ G
    dual = gw @ g0 + c * g0.norm() * gw.norm(dim=1)  # F(w), the paper's dual objective
    primal = _worst_task_gain(G, combine("cagrad", G, c=c, rescale=0))
    scale = float(G.norm(dim=1).max()) ** 2
    assert float(dual.min()) >= primal - 1e-9 * scale  # weak duality: F(w) >= any primal value
    assert float(dual.min()) <= primal + 1e-3 * scale  # and the optimum matches (strong duality)


def test_official_form_on_a_generic_case():
    # d = g0 + c|g0| g_w / |g_w| with w the dual minimiser: checked through the primal optimality
    # and against the closed form for two orthogonal unit gradients (symmetric: w = (1/2, 1/2)).
    G = torch.eye(2, dtype=torch.float64)
    c = 0.4
    g0 = G.mean(0)
    expected = g0 + c * g0.norm() * g0 / g0.norm()
    assert torch.allclose(combine("cagrad", G, c=c, rescale=0), expected, atol=1e-10)
    assert torch.allclose(combine("cagrad", G, c=c), expected / (1 + c ** 2), atol=1e-10)  # rescale=1
    assert torch.allclose(combine("cagrad", G, c=c, rescale=2), expected / (1 + c), atol=1e-10)


def test_c_zero_is_the_mean_gradient():
    G = _random_G(3, 4, 7)
    assert torch.allclose(combine("cagrad", G, c=0.0), G.mean(0), atol=1e-12)


def test_default_c_is_0_4():
    G = _random_G(4, 3, 5)
    assert torch.allclose(combine("cagrad", G), combine("cagrad", G, c=0.4, rescale=1), atol=0)
    assert not torch.allclose(combine("cagrad", G), combine("cagrad", G, c=0.5), atol=1e-6)


def test_degenerate_zero_in_hull_is_still_optimal():
    # A task without gradient puts 0 in the hull: the optimum has min_k g_k . d = 0.
    G = torch.tensor([[0.0, 0.0], [1.0, 0.2], [-0.3, 1.0]], dtype=torch.float64)
    c = 0.5
    direction = combine("cagrad", G, c=c, rescale=0)
    g0 = G.mean(0)
    assert torch.isfinite(direction).all()
    assert float((direction - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-9)
    assert _worst_task_gain(G, direction) >= _brute_force_primal(G, c) - 1e-7


def test_unconverged_solver_raises(monkeypatch):
    # A broken inner solver must surface as an error, not as a silently wrong direction.
    monkeypatch.setattr(cagrad_module, "min_norm_weights",
                        lambda gram, tol=0.0: torch.full((gram.shape[0],), 1.0 / gram.shape[0], dtype=torch.float64))
    G = torch.tensor([[1.0, 0.0], [-0.9, 0.3], [0.2, 1.0]], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="cagrad"):
        combine("cagrad", G, c=0.4)


def test_rejects_bad_hyper_parameters():
    with pytest.raises(ValueError):
        build("cagrad", 2, c=-1.0)
    with pytest.raises(ValueError):
        build("cagrad", 2, rescale=3)


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_follow_G(device):
    G = _random_G(9, 3, 40).float().to(device)
    out = build("cagrad", 3).combine(G)
    assert out.device == G.device and out.dtype == torch.float32
    assert math.isfinite(float(out.norm()))


@pytest.mark.parametrize("K,d", [(10, 8), (10, 64), (20, 64), (40, 64), (40, 512)])
def test_primal_kkt_conditions_at_many_tasks(K, d):
    # The optimality conditions of max_{|d - g0| <= rho} min_k g_k . d, checked without any solver:
    # d - g0 = rho g_w / |g_w| for simplex weights w that only sit on the tasks attaining the min.
    G = _random_G(100 + K + d, K, d) + 0.3 * torch.randn(1, d, dtype=torch.float64,
                                                     generator=torch.Generator().manual_seed(K * d))
    c = 0.4
    method = build("cagrad", K, c=c, rescale=0)
    direction = method.combine(G)
    g0 = G.mean(0)
    rho = c * float(g0.norm())
    w = method.last_weights() - 1.0 / K  # rho w / |g_w|: the step's coefficients
    assert float(w.min()) >= -1e-12
    w = w.clamp_min(0) / w.clamp_min(0).sum()
    g_w = w @ G
    assert torch.allclose(direction - g0, rho * g_w / g_w.norm(), atol=1e-9 * float(G.norm(dim=1).max()))
    gains = G @ direction
    attained = gains[w > 1e-9]
    assert float(attained.max() - gains.min()) <= 1e-8 * float(gains.abs().max())


@pytest.mark.parametrize("seed", range(8))
def test_face_solver_matches_the_bracketing_solver(seed, monkeypatch):
    K, d = [5, 10, 20, 40][seed % 4], [3, 64][seed % 2]
    G = _random_G(200 + seed, K, d)
    fast = combine("cagrad", G)
    monkeypatch.setattr(cagrad_module, "FACE_ROUNDS", 0)  # straight to Brent's method
    assert torch.allclose(fast, combine("cagrad", G), rtol=1e-9, atol=1e-12)
