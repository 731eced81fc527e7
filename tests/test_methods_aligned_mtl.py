"""Aligned-MTL: the aligned gradient system has equal singular values (condition number 1)."""
import pytest
import torch

from mtlrepro.methods import build, combine
from mtlrepro.methods.aligned_mtl import alignment_matrix
from mtlrepro.methods.mgda import gramian

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _random_G(seed, K, d):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, d, generator=g, dtype=torch.float64) * (torch.rand(K, 1, generator=g, dtype=torch.float64) * 10 + 0.1)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_system_has_equal_singular_values(seed, scale_mode):
    K = 2 + seed % 4
    G = _random_G(seed, K, K + 4)
    singular = torch.linalg.svdvals(G)  # descending
    sigma = {"min": singular[-1],
             "median": torch.median(singular ** 2).sqrt(),  # lower median for even K, as torch.median
             "rmse": (singular ** 2).mean().sqrt()}[scale_mode]
    aligned = alignment_matrix(gramian(G), scale_mode) @ G
    assert torch.allclose(torch.linalg.svdvals(aligned), sigma.expand(K), rtol=1e-9)
    # same row space (principal directions kept), and the update is the sum of aligned rows
    assert torch.allclose(aligned @ torch.linalg.pinv(G) @ G, aligned, atol=1e-9 * float(sigma))
    out = combine("aligned_mtl", G, scale_mode=scale_mode)
    assert torch.allclose(out, aligned.sum(0), atol=1e-9 * float(sigma))


def test_default_scale_mode_is_min():
    G = _random_G(3, 3, 6)
    assert torch.allclose(combine("aligned_mtl", G), combine("aligned_mtl", G, scale_mode="min"), atol=0)


def test_hand_computed_case():
    G = torch.tensor([[1.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    assert torch.allclose(combine("aligned_mtl", G), torch.tensor([1.0, 1.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(combine("aligned_mtl", G, scale_mode="rmse"),
                          torch.full((2,), (50.5) ** 0.5, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_condition_number_one_whatever_the_loss_scales(seed):
    # Dominating gradients: rescaling task losses cannot unbalance the aligned system.
    G = _random_G(20 + seed, 4, 9)
    scales = torch.tensor([1.0, 100.0, 0.01, 3.0], dtype=torch.float64)[:, None]
    singular = torch.linalg.svdvals(alignment_matrix(gramian(scales * G)) @ (scales * G))
    assert float(singular.max() / singular.min()) < 1 + 1e-8


def test_invariant_to_task_loss_scaling_of_independent_components():
    # When the task gradients are the system's independent (orthogonal) components, the
    # aligned update direction ignores each task's loss scale; a common scale of all the
    # losses only rescales the update.
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(8, 3, generator=g, dtype=torch.float64))
    G = Q.T * torch.tensor([[0.5], [2.0], [7.0]], dtype=torch.float64)
    scales = torch.tensor([[10.0], [0.1], [3.0]], dtype=torch.float64)
    d, scaled = combine("aligned_mtl", G), combine("aligned_mtl", scales * G)
    assert float(torch.nn.functional.cosine_similarity(d, scaled, dim=0)) > 1 - 1e-12
    correlated = _random_G(5, 3, 8)
    assert torch.allclose(combine("aligned_mtl", 5.0 * correlated), 5.0 * combine("aligned_mtl", correlated), atol=1e-9)


def test_rank_deficient_and_zero_gradients():
    G = _random_G(7, 5, 3)  # K > d: rank 3
    aligned = alignment_matrix(gramian(G)) @ G
    singular = torch.linalg.svdvals(aligned)  # 3 of them
    assert torch.allclose(singular, torch.linalg.svdvals(G)[-1].expand(3), rtol=1e-8)
    G[0] = 0
    assert torch.isfinite(combine("aligned_mtl", G)).all()
    assert torch.equal(combine("aligned_mtl", torch.zeros(3, 4)), torch.zeros(4))


def test_rejects_unknown_scale_mode():
    with pytest.raises(ValueError):
        build("aligned_mtl", 2, scale_mode="max")


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_follow_G(device):
    G = _random_G(1, 3, 20).float().to(device)
    out = build("aligned_mtl", 3).combine(G)
    assert out.device == G.device and out.dtype == torch.float32
