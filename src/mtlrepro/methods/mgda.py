"""MGDA-UB (Sener & Koltun, 2018): the minimum-norm point of the convex hull of the task gradients.

d = sum_k w_k g_k with w = argmin_{w in simplex} |sum_k w_k g_k|^2. The returned direction is
that min-norm point itself (the paper's scale; no gradient normalisation). At level
"representation" (the default) this is MGDA-UB.

The QP only needs the K x K Gram matrix. It is solved exactly, up to round-off, by Wolfe's
min-norm-point algorithm (1976), an active-set method that ends when the KKT conditions hold:
g . g_k >= |g|^2 for every k, with equality on the support of w.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import Aggregator


def gramian(G: Tensor) -> Tensor:
    """G G^T in float64, as a CPU tensor.

    The K x K matrix is formed on G's device (the only O(K^2 d) work) in float64, so that its
    round-off cannot fake negative eigenvalues or break the solvers' certificates; the small
    solvers that read it run on the host, where their many tiny steps are cheap.
    """
    rows = G.to(torch.float64)
    return (rows @ rows.T).cpu()


def combine_rows(weights: Tensor, G: Tensor) -> Tensor:
    """sum_k w_k G_k on G's device and dtype."""
    return weights.to(device=G.device, dtype=G.dtype) @ G


def _affine_minimizer(gram: np.ndarray) -> np.ndarray:
    """argmin_{sum mu = 1} mu^T gram mu, from its KKT system (least squares if singular)."""
    n = gram.shape[0]
    kkt = np.ones((n + 1, n + 1))
    kkt[:n, :n] = gram
    kkt[n, n] = 0.0
    rhs = np.zeros(n + 1)
    rhs[n] = 1.0
    # LU first (10x cheaper than least squares at K = 40); least squares where the support is
    # (nearly) affinely dependent and the LU solution does not solve the system
    try:
        solution = np.linalg.solve(kkt, rhs)
        if not np.isfinite(solution).all() or np.abs(kkt @ solution - rhs).max() > 1e-9:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    mu = solution[:n]
    return mu / mu.sum()


def _two_point_weights(gram: np.ndarray) -> np.ndarray:
    """argmin over t in [0, 1] of |t g_1 + (1 - t) g_2|^2."""
    curvature = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]  # |g_1 - g_2|^2
    t = 1.0 if curvature <= 0 else min(1.0, max(0.0, (gram[1, 1] - gram[0, 1]) / curvature))
    return np.array([t, 1.0 - t])


def min_norm_weights(gram: Tensor, tol: float = 1e-12, max_iter: int | None = None) -> Tensor:
    """Simplex weights w minimising w^T gram w (Wolfe's algorithm). Returns float64 CPU (K,)."""
    gram = gram.to(device="cpu", dtype=torch.float64).numpy()
    K = gram.shape[0]
    scale = float(gram.diagonal().max())
    if scale <= 0:  # every gradient is zero: any point is the min-norm one
        return torch.full((K,), 1.0 / K, dtype=torch.float64)
    gram = gram / scale  # so that `tol` is relative to the largest squared gradient norm
    if K == 2:  # the segment's closest point to 0, in closed form
        return torch.from_numpy(_two_point_weights(gram))
    max_iter = max_iter or 50 * K + 100

    support = [int(gram.diagonal().argmin())]
    lam = np.ones(1)
    previous_norm2 = np.inf
    for _ in range(max_iter):
        products = gram[:, support] @ lam  # g_k . g for every k
        norm2 = float(lam @ products[support])
        j = int(products.argmin())
        if products[j] >= norm2 - tol or j in support:  # KKT hold (up to round-off)
            break
        if norm2 >= previous_norm2:  # each major cycle shrinks |g|; no progress = round-off floor
            break
        previous_norm2 = norm2
        support.append(j)
        lam = np.append(lam, 0.0)
        while True:  # minor cycle: move to the affine minimizer while staying in the hull
            mu = _affine_minimizer(gram[np.ix_(support, support)])
            if (mu > 0).all():
                lam = mu
                break
            leaving = mu <= 0
            theta = float((lam[leaving] / (lam[leaving] - mu[leaving])).min())
            lam = lam + theta * (mu - lam)
            keep = lam > 1e-15
            keep[int(np.where(leaving, lam, np.inf).argmin())] = False  # the blocking point leaves
            support = [s for s, k in zip(support, keep) if k]
            lam = lam[keep] / lam[keep].sum()
    else:
        raise RuntimeError(f"mgda: Wolfe's min-norm algorithm did not converge in {max_iter} iterations")

    weights = np.zeros(K)
    weights[support] = lam
    return torch.from_numpy(weights)


def mgda(G: Tensor) -> Tensor:
    """[K, d] -> the min-norm element of the convex hull of the rows, [d]."""
    return combine_rows(min_norm_weights(gramian(G)), G)


class MGDA(Aggregator):
    """Registered as "mgda". No hyper-parameters. Scale: the min-norm point (weights sum to 1)."""

    name = "mgda"

    def combine(self, G: Tensor) -> Tensor:
        self._last = min_norm_weights(gramian(G))
        return combine_rows(self._last, G)

    def last_weights(self) -> Tensor | None:
        return getattr(self, "_last", None)
