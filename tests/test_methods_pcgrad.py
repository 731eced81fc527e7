"""PCGrad: projection of conflicting gradients in a random task order, then the sum."""
import pytest
import torch

from mtlrepro.methods import build, combine

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _reference_pcgrad(G: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Vector-by-vector PCGrad (Yu et al., Alg. 1) drawing the same permutations as the method."""
    K = G.shape[0]
    projected = []
    for i in range(K):
        order = torch.randperm(K, generator=generator, device=generator.device).tolist()
        g = G[i].clone()
        for j in order:
            if j != i and g @ G[j] < 0:
                g = g - (g @ G[j]) / (G[j] @ G[j]) * G[j]
        projected.append(g)
    return torch.stack(projected).sum(0)


def test_two_conflicting_tasks_are_projected_on_each_others_normal_plane():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    out = combine("pcgrad", torch.stack([g1, g2]), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, p1 + p2, atol=1e-12)
    # no modified gradient conflicts with the original of the other any more
    assert abs(float(p1 @ g2)) < 1e-12 and abs(float(p2 @ g1)) < 1e-12


@pytest.mark.parametrize("seed", range(10))
def test_pairwise_no_conflict_after_projection_two_tasks(seed):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(2, 6, generator=g, dtype=torch.float64)
    if G[0] @ G[1] > 0:
        G[1] = -G[1]
    method = build("pcgrad", 2, generator=torch.Generator().manual_seed(seed))
    out = method.combine(G)
    coefficients = method.last_weights()  # sum_i g_i^PC as weights of the original rows
    assert torch.allclose(out, coefficients @ G, atol=1e-12)
    p1 = G[0] - (G[0] @ G[1]) / (G[1] @ G[1]) * G[1]
    p2 = G[1] - (G[1] @ G[0]) / (G[0] @ G[0]) * G[0]
    assert float(p1 @ G[1]) >= -1e-12 and float(p2 @ G[0]) >= -1e-12
    assert torch.allclose(out, p1 + p2, atol=1e-12)


def test_plain_sum_without_conflicts():
    g = torch.Generator().manual_seed(1)
    G = torch.rand(5, 8, generator=g, dtype=torch.float64)  # all entries >= 0: no conflicts
    assert torch.allclose(combine("pcgrad", G, generator=torch.Generator().manual_seed(3)), G.sum(0), atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_matches_vector_reference_with_same_random_order(seed):
    g = torch.Generator().manual_seed(100 + seed)
    G = torch.randn(4, 5, generator=g, dtype=torch.float64)
    out = combine("pcgrad", G, generator=torch.Generator().manual_seed(seed))
    expected = _reference_pcgrad(G, torch.Generator().manual_seed(seed))
    assert torch.allclose(out, expected, atol=1e-10)


def test_deterministic_for_a_seed_and_order_matters():
    # g_1 conflicts with both g_2 and g_3, and projecting in the order (2, 3) or (3, 2) differs
    G = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.5]], dtype=torch.float64)
    first = combine("pcgrad", G, generator=torch.Generator().manual_seed(11))
    again = combine("pcgrad", G, generator=torch.Generator().manual_seed(11))
    assert torch.equal(first, again)
    outcomes = {tuple(combine("pcgrad", G, generator=torch.Generator().manual_seed(s)).tolist())
                for s in range(20)}
    assert len(outcomes) > 1  # the generator's order is really used


def test_draws_only_from_the_given_generator():
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])
    torch.manual_seed(0)
    before = torch.get_rng_state()
    combine("pcgrad", G, generator=torch.Generator().manual_seed(1))
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_follow_G(device):
    G = torch.randn(3, 10).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    out = build("pcgrad", 3, generator=gen).combine(G)
    assert out.device == G.device and out.dtype == G.dtype
    assert torch.isfinite(out).all()
