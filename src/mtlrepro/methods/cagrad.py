"""CAGrad (Liu et al., 2021): conflict-averse gradient descent.

    max_d min_k g_k . d   subject to   |d - g0| <= rho = c |g0|,   g0 = mean_k g_k,

with dual min_{w in simplex} F(w) = g_w . g0 + rho |g_w| (g_w = sum_k w_k g_k) and solution
d = g0 + rho u, u = g_w / |g_w|. Like the official code the result is then divided by 1 + c^2
(`rescale` = 1, default; 2 divides by 1 + c, 0 keeps it), so c = 0 gives the mean gradient:
the method's scale is the MEAN of the rows, not their sum.

Solver (exact, in float64, on the Gram matrix). |x| = min_{tau > 0} (x^2 / tau + tau) / 2 turns
the dual into min over tau of a simplex QP, and completing the square shows that QP is the
min-norm point of the shifted gradients g_k + (tau / rho) g0: MGDA's exact Wolfe solver. The
optimal tau is the root of |g_w(tau)| = tau, which is unique (|g_w(tau)| / tau is
non-increasing) and found by Brent's method. Any tau >= |g_w(tau)| gives a feasible u =
g_w / tau and dual weights w, and the duality gap F(w) - min_k g_k . d certifies the result:
above tolerance it raises instead of returning an unconverged direction. When 0 is in the hull
of the gradients the root is tau = 0; a tau small enough for the gap bound rho tau / 4 is used
(the row weights then get large, so the rows are combined in float64).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Aggregator
from .mgda import gramian, min_norm_weights

GAP_TOLERANCE = 1e-6  # on the Gram matrix normalised to unit mean diagonal (relative beyond 1)


def cagrad_weights(gram: Tensor, c: float = 0.4, rescale: int = 1) -> Tensor:
    """Row weights alpha of the CAGrad direction d = sum_k alpha_k g_k. float64 (K,)."""
    K = gram.shape[0]
    M = gram.to(torch.float64)
    alpha = torch.full((K,), 1.0 / K, dtype=torch.float64)  # g0
    scale = float(M.diagonal().mean())
    if scale > 0 and c > 0:
        M = M / scale  # = Gram of G / sqrt(scale); the row weights are unchanged by this
        b = M.sum(1) / K  # g_k . g0
        g0_norm2 = float(b.mean().clamp_min(0))
        rho = c * g0_norm2 ** 0.5
        if rho > 0:
            alpha = alpha + _dual_direction_weights(M, b, g0_norm2, rho)
    divisor = {0: 1.0, 1: 1.0 + c ** 2, 2: 1.0 + c}[rescale]
    return alpha / divisor


def _dual_direction_weights(M: Tensor, b: Tensor, g0_norm2: float, rho: float) -> Tensor:
    """Coefficients v of the optimal step d - g0 = sum_k v_k g_k (|d - g0| <= rho)."""
    ones = torch.ones_like(b)

    def solve(tau: float) -> tuple[Tensor, float]:
        shift = tau / rho  # Gram matrix of g_k + shift * g0
        shifted = M + shift * (b[:, None] * ones + ones[:, None] * b) + shift ** 2 * g0_norm2
        w = min_norm_weights(shifted, tol=0.0)
        return w, float((w @ M @ w).clamp_min(0).sqrt())

    hull = min_norm_weights(M, tol=0.0)
    hull_distance = float((hull @ M @ hull).clamp_min(0).sqrt())  # |g_w| >= this for every w
    tau_high = float(M.diagonal().max().sqrt()) * (1 + 1e-12)  # |g_w| <= max_k |g_k|
    # Below tau_low the gap bound rho tau / 4 already meets the tolerance (0 in or near the hull).
    tau_low = min(max(hull_distance, 2 * GAP_TOLERANCE / rho), tau_high)
    w, q = solve(tau_low)
    tau = tau_low
    if q > tau_low:
        from scipy.optimize import brentq  # here: scipy.optimize costs 0.3 s at every job's start

        tau = brentq(lambda t: solve(t)[1] - t, tau_low, tau_high, xtol=1e-300, rtol=1e-15)
        w, q = solve(tau)
    radius = max(q, tau)  # |u| = q / radius <= 1: always feasible

    dual = float(b @ w) + rho * q
    primal = float((b + rho * (M @ w) / radius).min())
    gap = dual - primal
    if not gap <= GAP_TOLERANCE * max(1.0, abs(dual)):
        raise RuntimeError(f"cagrad: no certified solution of the dual (duality gap {gap:.3g})")
    return rho * w / radius


def _combine(alpha: Tensor, G: Tensor) -> Tensor:
    # In float64: near tau = 0 the weights are large and the rows nearly cancel, so float32
    # round-off would be amplified.
    return (alpha.to(G.device) @ G.to(torch.float64)).to(G.dtype)


def cagrad(G: Tensor, c: float = 0.4, rescale: int = 1) -> Tensor:
    """[K, d] -> the CAGrad direction, [d]."""
    return _combine(cagrad_weights(gramian(G), c, rescale), G)


class CAGrad(Aggregator):
    """Registered as "cagrad". Hyper-parameters: c (default 0.4), rescale (0, 1 or 2; default 1)."""

    name = "cagrad"

    @classmethod
    def hparam_names(cls):
        return ("c", "rescale")

    def __init__(self, n_tasks, task_kinds=None, generator=None, level=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, level, **hparams)
        self.c = float(self.hparams.get("c", 0.4))
        self.rescale = int(self.hparams.get("rescale", 1))
        if self.c < 0 or self.rescale not in (0, 1, 2):
            raise ValueError(f"cagrad: need c >= 0 and rescale in (0, 1, 2), got c={self.c}, "
                             f"rescale={self.rescale}")

    def combine(self, G: Tensor) -> Tensor:
        self._last = cagrad_weights(gramian(G), self.c, self.rescale)
        return _combine(self._last, G)

    def last_weights(self) -> Tensor | None:
        return getattr(self, "_last", None)
