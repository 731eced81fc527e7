"""Gradient-norm clipping of a training step, as the BayesAgg-MTL authors' code does it: one limit
on the L2 norm of the shared layers' gradient and one on the heads' (all heads together), each
applied to the gradients the method produced, before the optimiser step.

`train.clip_grad_norm: {shared: <max norm or null>, heads: <max norm or null>}` in params; null
(or a missing key, or no block) leaves that group untouched, so the step is bit-identical to one
without clipping."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .io import MTLReproError

GROUPS = ("shared", "heads")


@dataclass(frozen=True)
class GradClip:
    """Max L2 norms of the shared-layer and head gradients; None = that group is not clipped."""
    shared: float | None = None
    heads: float | None = None

    @classmethod
    def from_params(cls, block: dict | None, where: str = "train.clip_grad_norm") -> "GradClip":
        if block is None:
            return cls()
        if not isinstance(block, dict):
            raise MTLReproError(f"{where} must be a mapping {{shared: ..., heads: ...}}, got {block!r}")
        unknown = sorted(set(block) - set(GROUPS))
        if unknown:
            raise MTLReproError(f"{where}: unknown key(s) {unknown}; known: {list(GROUPS)}")
        limits = {}
        for group in GROUPS:
            value = block.get(group)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0):
                raise MTLReproError(f"{where}.{group} must be a number > 0 or null, got {value!r}")
            limits[group] = None if value is None else float(value)
        return cls(**limits)

    @property
    def active(self) -> bool:
        return self.shared is not None or self.heads is not None

    def apply(self, model) -> None:
        """Clips the gradients of `model` in place (torch's clip_grad_norm_ per group: scaled by
        max_norm / (norm + 1e-6) where the norm exceeds max_norm). Parameters without a gradient
        (heads the method sets itself) are left out of the norms."""
        for limit, params in ((self.shared, model.shared_parameters()), (self.heads, model.heads.parameters())):
            if limit is None:
                continue
            with_grad = [p for p in params if p.grad is not None]
            if with_grad:
                torch.nn.utils.clip_grad_norm_(with_grad, limit)

def group_grad_norm(params) -> float:
    """The L2 norm over the gradients of `params` (those that have one)."""
    grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0
