"""MGDA-UB: the result is the min-norm element of the convex hull of the task gradients."""
import pytest
import torch

from mtlrepro.methods import build, combine
from mtlrepro.methods.mgda import gramian, min_norm_weights

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _random_G(seed, K, d, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    scales = torch.rand(K, 1, generator=g, dtype=dtype) * 10
    return torch.randn(K, d, generator=g, dtype=dtype) * scales


@pytest.mark.parametrize("seed", range(40))
def test_kkt_conditions_hold(seed):
    K, d = 2 + seed % 6, 1 + (7 * seed) % 12  # includes K > d (0 often in the hull)
    G = _random_G(seed, K, d)
    if seed % 4 == 0:
        G[1] = G[0]  # duplicated task gradient
    w = min_norm_weights(gramian(G))
    g = combine("mgda", G)
    assert torch.allclose(g, w @ G, atol=1e-12)
    assert bool((w >= 0).all()) and abs(float(w.sum()) - 1) < 1e-12
    scale = float((G * G).sum(1).max())
    products, norm2 = G @ g, g @ g
    assert bool((products >= norm2 - 1e-10 * scale).all())  # g . g_k >= |g|^2 for every k
    support = w > 1e-9
    assert torch.allclose(products[support], norm2.expand(int(support.sum())), atol=1e-10 * scale)


@pytest.mark.parametrize("seed", range(10))
def test_no_convex_combination_is_shorter(seed):
    K, d = 3 + seed % 3, 4
    G = _random_G(100 + seed, K, d)
    best = combine("mgda", G).norm()
    g = torch.Generator().manual_seed(seed)
    samples = torch.distributions.Dirichlet(torch.ones(K, dtype=torch.float64)).sample((20000,))
    sparse = torch.rand(20000, K, generator=g, dtype=torch.float64) ** 8  # near faces and vertices
    candidates = torch.cat([samples, sparse / sparse.sum(1, keepdim=True), torch.eye(K, dtype=torch.float64)])
    assert float((candidates @ G).norm(dim=1).min()) >= float(best) - 1e-12
    # and the search gets close, so `best` is not trivially small because of a bug elsewhere
    assert float((candidates @ G).norm(dim=1).min()) <= float(best) + 0.05 * float(G.norm(dim=1).max())


def test_two_tasks_closed_form():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-0.5, 2.0], dtype=torch.float64)
    gamma = float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))  # Sener & Koltun, Alg. 1
    expected = gamma * g1 + (1 - gamma) * g2
    assert 0 < gamma < 1
    assert torch.allclose(combine("mgda", torch.stack([g1, g2])), expected, atol=1e-12)


def test_dominated_direction_and_zero_in_hull():
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert torch.allclose(combine("mgda", torch.stack([g, 2 * g])), g, atol=1e-12)  # the shorter one
    assert torch.allclose(combine("mgda", torch.stack([g, -g])), torch.zeros(2, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_follow_G(device):
    G = _random_G(7, 4, 30, torch.float32).to(device)
    out = build("mgda", 4).combine(G)
    assert out.device == G.device and out.dtype == torch.float32
    w = min_norm_weights(gramian(G))
    assert torch.allclose(out.cpu().double(), w @ G.cpu().double(), atol=1e-4)
