"""Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution of the tasks.

The update d = sum_k alpha_k g_k uses alpha > 0 solving G G^T alpha = 1 / alpha elementwise,
i.e. every task gets g_k . d = 1 / alpha_k. That is the stationarity condition of the strictly
convex f(alpha) = 1/2 alpha^T M alpha - sum_k log alpha_k, minimised here exactly by damped
Newton in float64 (the official code instead runs a few CCP steps of a cvxpy problem). The scale
is the paper's: |d|^2 = alpha^T M alpha = K. (The official implementation also divides M by its
Frobenius norm, which multiplies alpha by sqrt(|M|_F), and clips |d| at 1; neither is done here.)

Scaling task k's gradient by c_k > 0 divides alpha_k by c_k and leaves d unchanged. The solver
uses that: it works on the correlation matrix of the gradients (unit diagonal) and rescales,
so its accuracy does not depend on the gradients' magnitudes. Tasks with a zero gradient get
alpha_k = 0 (they have no direction and their equation has no solution). When 0 is in the
cone of the gradients (e.g. g_1 = -g_2) no exact solution exists: f is unbounded below and
Newton's iterates diverge. Only then is the problem re-solved with a ridge RIDGE * I added to
the correlation matrix, which keeps the weights finite (about 1 / sqrt(RIDGE)) while the
degenerate directions cancel in d. A solve that still fails raises.

Weights are recomputed every `update_every` calls (default 1) and reused in between, as in the
official code.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Aggregator
from .mgda import combine_rows, gramian

RIDGE = 1e-8
_DECREMENT_TOL, _RESIDUAL_TOL, _DIVERGED, _MAX_ITER = 1e-24, 1e-6, 1e7, 500


def _newton_solve(A: Tensor) -> Tensor | None:
    """alpha > 0 with A alpha = 1 / alpha (A symmetric PSD), or None if Newton finds none. float64."""
    def objective(a):
        return 0.5 * a @ A @ a - torch.log(a).sum()

    alpha = torch.ones(A.shape[0], dtype=torch.float64)
    for _ in range(_MAX_ITER):
        grad = A @ alpha - 1.0 / alpha
        step = -torch.linalg.solve(A + torch.diag(1.0 / alpha ** 2), grad)
        decrement = float(-(grad @ step))  # affine-invariant: ~ twice the suboptimality
        if decrement <= _DECREMENT_TOL:
            break
        if float(alpha.max()) > _DIVERGED:  # f unbounded below: no solution exists
            return None
        negative = step < 0  # stay inside alpha > 0
        size = min(1.0, 0.99 * float((-alpha[negative] / step[negative]).min())) if bool(negative.any()) else 1.0
        # f is self-concordant: once the decrement is below 1/16 full Newton steps converge
        # quadratically (and f's changes drown in round-off); before that, backtrack on f.
        if decrement >= 1 / 16:
            current = objective(alpha)
            while objective(alpha + size * step) > current - 0.25 * size * decrement and size > 1e-12:
                size /= 2
        alpha = alpha + size * step
    residual = float((alpha * (A @ alpha) - 1.0).abs().max())  # alpha_k (A alpha)_k = 1 at the solution
    return alpha if residual <= _RESIDUAL_TOL else None


def nash_weights(gram: Tensor) -> Tensor:
    """alpha >= 0 with (G G^T alpha)_k = 1 / alpha_k for every task with a non-zero gradient. float64 (K,)."""
    gram = gram.to(torch.float64)
    norms = gram.diagonal().clamp_min(0).sqrt()
    active = torch.nonzero(norms > 0).flatten()
    weights = gram.new_zeros(gram.shape[0])
    if len(active) == 0:
        return weights
    n = norms[active]
    correlation = gram[active][:, active] / n[:, None] / n[None, :]
    solution = _newton_solve(correlation)
    if solution is None:  # 0 in the cone of the gradients: solve the ridged problem instead
        solution = _newton_solve(correlation + RIDGE * torch.eye(len(active), dtype=torch.float64))
    if solution is None:
        raise RuntimeError("nash_mtl: Newton's method did not solve G G^T alpha = 1/alpha")
    weights[active] = solution / n  # alpha_k = alpha~_k / |g_k|
    return weights


def nash_mtl(G: Tensor) -> Tensor:
    """[K, d] -> the Nash bargaining direction, [d]."""
    return combine_rows(nash_weights(gramian(G)), G)


class NashMTL(Aggregator):
    """Registered as "nash_mtl". Hyper-parameters: update_every (default 1). Scale: |d| = sqrt(K)."""

    name = "nash_mtl"

    @classmethod
    def hparam_names(cls):
        return ("update_every",)

    def __init__(self, n_tasks, task_kinds=None, generator=None, level=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, level, **hparams)
        self.update_every = int(self.hparams.get("update_every", 1))
        if self.update_every < 1:
            raise ValueError(f"nash_mtl: update_every must be >= 1, got {self.update_every}")
        self.step = 0
        self.alpha: Tensor | None = None

    def combine(self, G: Tensor) -> Tensor:
        if self.alpha is None or self.step % self.update_every == 0:
            self.alpha = nash_weights(gramian(G))
        self.step += 1
        return combine_rows(self.alpha, G)

    def last_weights(self) -> Tensor | None:
        return self.alpha

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "alpha": None if self.alpha is None else self.alpha.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.alpha = None if state["alpha"] is None else state["alpha"].clone()
