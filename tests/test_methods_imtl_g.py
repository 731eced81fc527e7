"""IMTL-G: equal projections of the update on every unit task gradient."""
import pytest
import torch

from mtlrepro.methods import build, combine
from mtlrepro.methods.imtl_g import imtl_g_weights
from mtlrepro.methods.mgda import gramian

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _random_G(seed, K, d):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, d, generator=g, dtype=torch.float64) * (torch.rand(K, 1, generator=g, dtype=torch.float64) * 10 + 0.1)


@pytest.mark.parametrize("seed", range(20))
def test_equal_projections_on_unit_gradients(seed):
    K = 2 + seed % 5
    G = _random_G(seed, K, K + 3)
    d = combine("imtl_g", G)
    projections = (G / G.norm(dim=1, keepdim=True)) @ d
    assert torch.allclose(projections, projections[0].expand(K), rtol=1e-9, atol=1e-12)
    assert float(projections[0]) > 0  # a descent direction for every task
    w = imtl_g_weights(gramian(G))
    assert abs(float(w.sum()) - 1) < 1e-10 and torch.allclose(d, w @ G, atol=1e-10)


def test_paper_closed_form():
    G = _random_G(3, 3, 6)
    U = G / G.norm(dim=1, keepdim=True)
    D, Udiff = G[:1] - G[1:], U[:1] - U[1:]
    alpha_rest = G[0] @ Udiff.T @ torch.linalg.inv(D @ Udiff.T)  # alpha_{2:K} = g_1 U^T (D U^T)^-1
    alpha = torch.cat([1 - alpha_rest.sum(0, keepdim=True), alpha_rest])
    assert torch.allclose(combine("imtl_g", G), alpha @ G, atol=1e-10)


def test_hand_computed_orthogonal_case():
    G = torch.tensor([[1.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    # alpha_1 * 1 = alpha_2 * 10 and alpha_1 + alpha_2 = 1 -> alpha = (10/11, 1/11)
    assert torch.allclose(combine("imtl_g", G), torch.tensor([10 / 11, 10 / 11], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_invariant_to_task_loss_scaling(seed):
    G = _random_G(20 + seed, 4, 9)
    scales = torch.tensor([1.0, 10.0, 0.01, 3.0], dtype=torch.float64)[:, None]
    d, scaled = combine("imtl_g", G), combine("imtl_g", scales * G)
    cosine = torch.nn.functional.cosine_similarity(d, scaled, dim=0)
    assert float(cosine) > 1 - 1e-10


def test_zero_gradient_task_is_ignored():
    G = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    w = imtl_g_weights(gramian(G))
    assert float(w[0]) == 0.0
    d = combine("imtl_g", G)
    assert torch.isfinite(d).all()
    assert torch.allclose(d[0], d[1] * 1.0)  # equal projections on the two live tasks
    assert torch.equal(combine("imtl_g", torch.zeros(3, 4)), torch.zeros(4))


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_follow_G(device):
    G = _random_G(1, 3, 20).float().to(device)
    out = build("imtl_g", 3).combine(G)
    assert out.device == G.device and out.dtype == torch.float32


@pytest.mark.parametrize("K,d", [(10, 16), (20, 64), (40, 64), (40, 512)])
def test_equal_projections_at_many_tasks(K, d):
    G = _random_G(300 + K, K, d) + torch.randn(1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(d))
    d_ = combine("imtl_g", G)
    projections = (G / G.norm(dim=1, keepdim=True)) @ d_
    assert torch.allclose(projections, projections[0].expand(K), rtol=1e-8)


@pytest.mark.parametrize("seed", range(6))
def test_direct_solve_matches_least_squares(seed, monkeypatch):
    import mtlrepro.methods.imtl_g as imtl_g_module

    G = _random_G(400 + seed, 3 + 7 * seed, 5 + 10 * seed)
    direct = imtl_g_weights(gramian(G))
    monkeypatch.setattr(imtl_g_module, "_well_posed_weights", lambda M, n: None)
    assert torch.allclose(direct, imtl_g_weights(gramian(G)), rtol=1e-9, atol=1e-12)


def test_duplicated_gradient_uses_least_squares():
    # Two identical tasks make the system singular: the least-squares path splits their weight.
    G = _random_G(7, 3, 6)
    G = torch.cat([G, G[:1]])
    w = imtl_g_weights(gramian(G))
    assert torch.isfinite(w).all() and abs(float(w.sum()) - 1) < 1e-10
    assert abs(float(w[0] - w[3])) < 1e-8
    d = w @ G
    projections = (G / G.norm(dim=1, keepdim=True)) @ d
    assert torch.allclose(projections, projections[0].expand(4), rtol=1e-8)
