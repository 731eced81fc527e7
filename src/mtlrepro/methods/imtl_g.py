"""IMTL-G: the gradient-balancing half of impartial MTL (Liu et al., ICLR 2021).

Find weights alpha with sum_k alpha_k = 1 such that d = sum_k alpha_k g_k has the same
projection on every unit task gradient u_k = g_k / |g_k|: d . (u_1 - u_k) = 0 for k >= 2.
The paper's closed form alpha_{2:K} = g_1 U^T (D U^T)^{-1} (D = rows g_1 - g_k, U = rows
u_1 - u_k) is this linear system; here it is written on the Gram matrix (d . u_k =
(alpha^T M)_k / |g_k|) and solved by least squares in float64, which also covers singular cases
(linearly dependent gradients). Scale: the weights sum to 1, as in the paper.

Tasks with a zero gradient have no direction to be impartial to: they get weight 0 and the
others are balanced among themselves (all zero -> zero direction).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Aggregator
from .mgda import combine_rows, gramian


def imtl_g_weights(gram: Tensor) -> Tensor:
    """Weights alpha (sum 1) equalising d . u_k over the tasks with a non-zero gradient. float64 (K,)."""
    gram = gram.to(torch.float64)
    K = gram.shape[0]
    norms = gram.diagonal().clamp_min(0).sqrt()
    active = torch.nonzero(norms > 0).flatten()
    weights = gram.new_zeros(K)
    if len(active) == 0:
        return weights
    M, n = gram[active][:, active], norms[active]
    projections = M / n  # [j, k] = g_j . u_k
    system = torch.empty_like(M)
    system[0] = 1.0  # sum_k alpha_k = 1
    system[1:] = (projections[:, :1] - projections[:, 1:]).T  # d . (u_1 - u_k) = 0
    rhs = gram.new_zeros(len(active), 1)
    rhs[0] = 1.0
    weights[active] = torch.linalg.lstsq(system, rhs, driver="gelsd").solution[:, 0]
    return weights


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
