"""IMTL-L: the loss-balancing half of impartial MTL (Liu et al., ICLR 2021).

Each task k has a learned scale parameter s_k (initialised at 0) and contributes
exp(s_k) * L_k - s_k. Minimising over s_k drives the scaled loss exp(s_k) L_k towards 1 for
every task (d/ds_k = exp(s_k) L_k - 1), which is the method's point.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Weighting, masked_sum


def imtl_l_loss(losses: Tensor, log_scales: Tensor, present: Tensor | None = None) -> Tensor:
    """sum_k exp(s_k) L_k - s_k (over the present tasks)."""
    log_scales = log_scales.to(losses.dtype)
    return masked_sum(torch.exp(log_scales) * losses - log_scales, present)


class ImpartialLossWeighting(Weighting):
    """Registered as "imtl_l". No hyper-parameters; learnable `log_scales` (K,) via `parameters()`."""

    name = "imtl_l"

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self.log_scales = torch.zeros(n_tasks, requires_grad=True)

    def parameters(self) -> list[Tensor]:
        return [self.log_scales]

    def to(self, device) -> "ImpartialLossWeighting":
        # Call before building the optimiser: it replaces the leaf tensor.
        self.log_scales = self.log_scales.detach().to(device).requires_grad_(True)
        return self

    def weights(self, losses: Tensor) -> Tensor:
        return torch.exp(self.log_scales.detach()).to(losses)

    def last_weights(self) -> Tensor:
        return torch.exp(self.log_scales.detach())

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return imtl_l_loss(losses, self.log_scales, present)

    def state_dict(self) -> dict[str, Any]:
        return {"log_scales": self.log_scales.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():  # in place: the optimiser keeps its reference to the leaf
            self.log_scales.copy_(state["log_scales"])
