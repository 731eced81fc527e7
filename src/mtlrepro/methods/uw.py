"""UW: uncertainty weighting (Kendall, Gal & Cipolla, 2018).

Each task k has a learned log-variance s_k = log sigma_k^2 (initialised at 0) and the combined
loss is sum_k 0.5 * exp(-s_k) * L_k + 0.5 * s_k. This is the paper's regression form
(L / (2 sigma^2) + log sigma) applied to every task, as the common MTL benchmark code
(LibMTL, Nash-MTL, IGB4MTL) does; learning s_k rather than sigma_k keeps the weight positive
and the optimisation unconstrained.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Weighting, masked_sum


def uncertainty_weighted_loss(losses: Tensor, log_vars: Tensor, present: Tensor | None = None) -> Tensor:
    """sum_k 0.5 exp(-s_k) L_k + 0.5 s_k (over the present tasks)."""
    log_vars = log_vars.to(losses.dtype)
    return masked_sum(0.5 * torch.exp(-log_vars) * losses + 0.5 * log_vars, present)


class UncertaintyWeighting(Weighting):
    """Registered as "uw". No hyper-parameters; learnable `log_vars` (K,) via `parameters()`."""

    name = "uw"

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self.log_vars = torch.zeros(n_tasks, requires_grad=True)

    def parameters(self) -> list[Tensor]:
        return [self.log_vars]

    def to(self, device) -> "UncertaintyWeighting":
        # Call before building the optimiser: it replaces the leaf tensor.
        self.log_vars = self.log_vars.detach().to(device).requires_grad_(True)
        return self

    def weights(self, losses: Tensor) -> Tensor:
        return 0.5 * torch.exp(-self.log_vars.detach()).to(losses)

    def last_weights(self) -> Tensor:
        return 0.5 * torch.exp(-self.log_vars.detach())

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return uncertainty_weighted_loss(losses, self.log_vars, present)

    def state_dict(self) -> dict[str, Any]:
        return {"log_vars": self.log_vars.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():  # in place: the optimiser keeps its reference to the leaf
            self.log_vars.copy_(state["log_vars"])
