"""Aligned-MTL (Senushkin et al., CVPR 2023): align the principal components of the gradients.

With the Gram matrix M = G G^T = V Lambda V^T (numerical rank r), the aligned gradients are
G' = B G, B = sigma V_r Lambda_r^{-1/2} V_r^T, so G' = sigma V_r U_r^T: every non-zero singular
value of the gradient system becomes sigma (condition number 1), the directions (principal
components) are kept. sigma follows `scale_mode`: "min" (default) the smallest non-zero
singular value sqrt(lambda_r), "median" sqrt of the median eigenvalue (torch.median: the lower
one for an even count), "rmse" sqrt of the mean eigenvalue, as in the official code. The
update is the SUM of the aligned task gradients, 1^T G' (the official code's sum; the paper's
pre-defined task weights are all 1).

Loss scaling: whatever the task losses' scales, the aligned system has condition number 1 (no
task can dominate). A common scale of all losses only rescales the update; a per-task scale
leaves its direction unchanged when the task gradients are orthogonal (they are then the
system's independent components), but not in general: G' is sigma times the orthogonal polar
factor (G G^T)^(-1/2) G, and that of D G differs from that of G for correlated rows.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Aggregator
from .mgda import combine_rows, gramian

SCALE_MODES = ("min", "median", "rmse")


def alignment_matrix(gram: Tensor, scale_mode: str = "min", rank_tol: float | None = None) -> Tensor:
    """B with aligned gradients G' = B G. float64 (K, K).

    Eigenvalues at or below rank_tol * lambda_max (default K * float64 eps, as the official
    code's float32 rule) are treated as zero: their directions are dropped.
    """
    if scale_mode not in SCALE_MODES:
        raise ValueError(f"aligned_mtl: scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
    gram = gram.to(torch.float64)
    K = gram.shape[0]
    eigenvalues, V = torch.linalg.eigh(gram)
    rank_tol = K * torch.finfo(torch.float64).eps if rank_tol is None else rank_tol
    keep = eigenvalues > rank_tol * eigenvalues.max().clamp_min(0)
    if not bool(keep.any()):  # all gradients zero: nothing to align
        return torch.zeros_like(gram)
    eigenvalues, V = eigenvalues[keep], V[:, keep]
    sigma = {"min": eigenvalues.min(), "median": eigenvalues.median(), "rmse": eigenvalues.mean()}[scale_mode].sqrt()
    return sigma * (V / eigenvalues.sqrt()) @ V.T


def aligned_mtl_weights(gram: Tensor, scale_mode: str = "min", rank_tol: float | None = None) -> Tensor:
    """Row weights of 1^T B G. float64 (K,)."""
    return alignment_matrix(gram, scale_mode, rank_tol).sum(0)


def _rank_tol(G: Tensor) -> float:
    # Eigenvalues of a float32 system below float32 round-off are noise, not directions.
    return G.shape[0] * torch.finfo(G.dtype).eps if G.dtype.is_floating_point else None


def aligned_mtl(G: Tensor, scale_mode: str = "min") -> Tensor:
    """[K, d] -> the sum of the aligned task gradients, [d]."""
    return combine_rows(aligned_mtl_weights(gramian(G), scale_mode, _rank_tol(G)), G)


class AlignedMTL(Aggregator):
    """Registered as "aligned_mtl". Hyper-parameters: scale_mode ("min" default, "median", "rmse")."""

    name = "aligned_mtl"

    @classmethod
    def hparam_names(cls):
        return ("scale_mode",)

    def __init__(self, n_tasks, task_kinds=None, generator=None, level=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, level, **hparams)
        self.scale_mode = self.hparams.get("scale_mode", "min")
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"aligned_mtl: scale_mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")

    def combine(self, G: Tensor) -> Tensor:
        self._last = aligned_mtl_weights(gramian(G), self.scale_mode, _rank_tol(G))
        return combine_rows(self._last, G)

    def last_weights(self) -> Tensor | None:
        return getattr(self, "_last", None)
