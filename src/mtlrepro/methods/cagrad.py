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
non-increasing). On a fixed support of w the min-norm weights are affine in tau, so the root
is a quadratic's: the solver tries the support Wolfe finds, verifies the root it gives (the
KKT conditions of the shifted problem), and otherwise re-runs Wolfe there inside a shrinking
bracket; two to four Wolfe solves usually suffice (Brent's method on the bracket is the last
resort). Any tau >= |g_w(tau)| gives a feasible u =
g_w / tau and dual weights w, and the duality gap F(w) - min_k g_k . d certifies the result:
above tolerance it raises instead of returning an unconverged direction. When 0 is in the hull
of the gradients the root is tau = 0; a tau small enough for the gap bound rho tau / 4 is used
(the row weights then get large, so the rows are combined in float64).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import Aggregator
from .mgda import gramian, min_norm_weights

GAP_TOLERANCE = 1e-6  # on the Gram matrix normalised to unit mean diagonal (relative beyond 1)
KKT_TOLERANCE = 1e-10  # a face's root is accepted only if it is the shifted min-norm point to this
FACE_ROUNDS = 60  # Wolfe solves spent looking for the optimal face before falling back to Brent


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
        w, tau = _root_by_faces(M, b, rho, w, solve, (tau_low, tau_high))
        if w is None:  # no face gave a verified root: bracket it (always converges, slower)
            from scipy.optimize import brentq  # here: scipy.optimize costs 0.3 s at every job's start

            tau = brentq(lambda t: solve(t)[1] - t, tau_low, tau_high, xtol=1e-300, rtol=1e-15)
            w, q = solve(tau)
        else:
            q = float((w @ M @ w).clamp_min(0).sqrt())
    radius = max(q, tau)  # |u| = q / radius <= 1: always feasible

    dual = float(b @ w) + rho * q
    primal = float((b + rho * (M @ w) / radius).min())
    gap = dual - primal
    if not gap <= GAP_TOLERANCE * max(1.0, abs(dual)):
        raise RuntimeError(f"cagrad: no certified solution of the dual (duality gap {gap:.3g})")
    return rho * w / radius


def _root_by_faces(M: Tensor, b: Tensor, rho: float, w: Tensor, solve,
                   bracket: tuple[float, float]) -> tuple[Tensor | None, float]:
    """The root tau of |g_w(tau)| = tau, found face by face: on the support S of the min-norm
    weights, w(s) (s = tau / rho) is affine in s, so |g_w(s)|^2 = (rho s)^2 is a quadratic
    whose root is exact if S is the optimal support. A root is kept only if its weights are the
    shifted min-norm point there (w >= 0 and the KKT conditions). Otherwise Wolfe's solver runs
    at the face's root (or, if it has none inside the bracket, at the bracket's midpoint); the
    sign of |g_w(tau)| - tau there narrows the bracket and its support is tried next.
    `w` is the solution at the lower end. Returns (None, nan) if no face verified."""
    Mn, bn = M.numpy(), b.numpy()
    low, high = bracket  # |g_w| > tau at low, < tau at high
    for _ in range(FACE_ROUNDS):
        support = np.flatnonzero(w.numpy() > 0)
        face = _Face(Mn, bn, support)
        roots = [s for s in face.roots(rho) if low <= rho * s <= high]  # the root lies in there
        for s in roots:
            candidate = np.zeros_like(bn)
            candidate[support] = np.clip(face.p + s * face.r, 0.0, None)
            if _is_shifted_min_norm_point(Mn, bn, candidate, s):
                return torch.from_numpy(candidate), rho * s
        tau = rho * roots[0] if roots and low < rho * roots[0] < high else (low + high) / 2
        w, q = solve(tau)
        low, high = (tau, high) if q > tau else (low, tau)
    return None, float("nan")


class _Face:
    """On the affine hull of the rows in `support`: w(s) = p + s r = argmin_{sum w = 1} of
    |g_w + s g0|^2, from the KKT system [[M_S, 1], [1^T, 0]] (p, r empty if it is singular)."""

    def __init__(self, M: np.ndarray, b: np.ndarray, support: np.ndarray):
        n = len(support)
        self.M = M[np.ix_(support, support)]
        kkt = np.ones((n + 1, n + 1))
        kkt[:n, :n] = self.M
        kkt[n, n] = 0.0
        rhs = np.zeros((n + 1, 2))
        rhs[n, 0] = 1.0
        rhs[:n, 1] = -b[support]
        try:
            solution = np.linalg.solve(kkt, rhs)
        except np.linalg.LinAlgError:  # affinely dependent rows: no unique affine minimiser
            solution = np.zeros((1, 2))
            n = 0
        self.p, self.r = solution[:n, 0], solution[:n, 1]

    def roots(self, rho: float) -> list[float]:
        """Positive s with |g_w(s)| = rho s, smallest first."""
        if len(self.p) == 0:
            return []
        A, B, C = self.p @ self.M @ self.p, self.p @ self.M @ self.r, self.r @ self.M @ self.r
        a2 = C - rho ** 2  # a2 s^2 + 2 B s + A = 0
        disc = B * B - a2 * A
        if not disc >= 0:
            return []
        q = -(B + np.copysign(np.sqrt(disc), B))  # the roots q / a2 and A / q, without cancellation
        candidates = ([q / a2] if a2 != 0 else []) + ([A / q] if q != 0 else [])
        return sorted(float(s) for s in candidates if np.isfinite(s) and s > 0)


def _is_shifted_min_norm_point(M: np.ndarray, b: np.ndarray, w: np.ndarray, s: float) -> bool:
    """w >= 0 sums to 1 and h_k . h_w >= |h_w|^2 for every k (h_k = g_k + s g0): Wolfe's KKT."""
    if abs(w.sum() - 1.0) > 1e-9:
        return False
    Mw = M @ w
    slack = Mw + s * b - (w @ Mw + s * (b @ w))  # h_k . h_w - |h_w|^2
    tolerance = KKT_TOLERANCE * (1.0 + s) ** 2
    return bool(slack.min() >= -tolerance and np.abs(slack[w > 0]).max() <= tolerance)


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
