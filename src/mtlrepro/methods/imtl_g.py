"""IMTL-G: the gradient-balancing half of impartial MTL (Liu et al., ICLR 2021).

Find weights alpha with sum_k alpha_k = 1 such that d = sum_k alpha_k g_k has the same
projection on every unit task gradient u_k = g_k / |g_k|: d . (u_1 - u_k) = 0 for k >= 2.
The paper's closed form alpha_{2:K} = g_1 U^T (D U^T)^{-1} (D = rows g_1 - g_k, U = rows
u_1 - u_k) is this linear system; here it is written on the Gram matrix (d . u_k =
(alpha^T M)_k / |g_k|) and solved by least squares in float64, which also covers singular cases
(linearly dependent gradients). When the gradients are clearly independent the same solution
is alpha = M^-1 n / (1^T M^-1 n) (n_k = |g_k|), from one Cholesky-checked solve, which is what
runs then. Scale: the weights sum to 1, as in the paper.

Tasks with a zero gradient have no direction to be impartial to: they get weight 0 and the
others are balanced among themselves (all zero -> zero direction).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import Aggregator
from .mgda import combine_rows, gramian

# Below these the fast solve defers to least squares: a squared Cholesky pivot of the gradients'
# correlation matrix (a gradient nearly in the span of others), and |sum alpha| / sum |alpha|.
PIVOT_TOLERANCE, SUM_TOLERANCE = 1e-8, 1e-6


def imtl_g_weights(gram: Tensor) -> Tensor:
    """Weights alpha (sum 1) equalising d . u_k over the tasks with a non-zero gradient. float64 (K,)."""
    # In numpy: a K x K problem is a few microseconds of work, and torch's per-call overhead
    # would dominate it.
    gram = gram.to(device="cpu", dtype=torch.float64).numpy()
    norms = np.sqrt(np.clip(np.diagonal(gram), 0.0, None))
    active = np.flatnonzero(norms > 0)
    weights = np.zeros(gram.shape[0])
    if len(active) == 0:
        return torch.from_numpy(weights)
    M, n = gram[np.ix_(active, active)], norms[active]
    alpha = _well_posed_weights(M, n)
    if alpha is None:
        alpha = _least_squares_weights(torch.from_numpy(M), torch.from_numpy(n)).numpy()
    weights[active] = alpha
    return torch.from_numpy(weights)


def _well_posed_weights(M: np.ndarray, n: np.ndarray) -> np.ndarray | None:
    """alpha = M^-1 n / (1^T M^-1 n) when that is well posed, else None.

    d . u_k = (M alpha)_k / n_k is the same for every k iff M alpha is proportional to n. With
    C = M / (n n^T) (unit diagonal) that is alpha = C^-1 1 / n, normalised to sum 1. A Cholesky
    factor with no tiny pivot (no gradient nearly in the span of the ones before it) and a sum
    far from 0 mean the system is regular and this solution is the least-squares one."""
    C = M / np.outer(n, n)
    try:
        pivots = np.diagonal(np.linalg.cholesky(C))
    except np.linalg.LinAlgError:
        return None
    if pivots.min() ** 2 < PIVOT_TOLERANCE:
        return None
    alpha = np.linalg.solve(C, np.ones(len(n))) / n
    total = alpha.sum()
    if not abs(total) >= SUM_TOLERANCE * np.abs(alpha).sum():
        return None
    return alpha / total


def _least_squares_weights(M: Tensor, n: Tensor) -> Tensor:
    """The defining linear system solved by least squares (covers dependent gradients)."""
    projections = M / n  # [j, k] = g_j . u_k
    system = torch.empty_like(M)
    system[0] = 1.0  # sum_k alpha_k = 1
    system[1:] = (projections[:, :1] - projections[:, 1:]).T  # d . (u_1 - u_k) = 0
    rhs = M.new_zeros(len(n), 1)
    rhs[0] = 1.0
    return torch.linalg.lstsq(system, rhs, driver="gelsd").solution[:, 0]


def imtl_g(G: Tensor) -> Tensor:
    """[K, d] -> the IMTL-G direction, [d]."""
    return combine_rows(imtl_g_weights(gramian(G)), G)


class IMTLG(Aggregator):
    """Registered as "imtl_g". No hyper-parameters. Scale: weights sum to 1."""

    name = "imtl_g"

    def combine(self, G: Tensor) -> Tensor:
        self._last = imtl_g_weights(gramian(G))
        return combine_rows(self._last, G)

    def last_weights(self) -> Tensor | None:
        return getattr(self, "_last", None)
