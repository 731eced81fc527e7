"""DWA: dynamic weight average (Liu et al., 2019, "End-to-End Multi-Task Learning with Attention").

In epoch t the weights are K * softmax(r / T) with r_k = L_k(t-1) / L_k(t-2), the ratio of the
task's mean training losses over the two previous epochs; the first two epochs use equal
weights (1 each). Weights sum to K, like LS's.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Weighting

# Guards the ratio against a zero epoch loss (a task with no labelled example in an epoch).
RATIO_FLOOR = 1e-12


def dwa_weights(last: Tensor, before_last: Tensor, temperature: float = 2.0) -> Tensor:
    """K * softmax(r / T), r = last / before_last (epoch mean losses)."""
    ratios = last / before_last.clamp_min(RATIO_FLOOR)
    return last.numel() * torch.softmax(ratios / temperature, dim=0)


class DynamicWeightAverage(Weighting):
    """Registered as "dwa". Hyper-parameters: temperature (T, default 2.0)."""

    name = "dwa"

    @classmethod
    def hparam_names(cls):
        return ("temperature",)

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self.temperature = float(self.hparams.get("temperature", 2.0))
        if self.temperature <= 0:
            raise ValueError(f"dwa: temperature must be > 0, got {self.temperature}")
        self.history: list[Tensor] = []  # the mean losses of the last two finished epochs

    def weights(self, losses: Tensor) -> Tensor:
        if len(self.history) < 2:
            return torch.ones_like(losses)
        before_last, last = self.history
        return dwa_weights(last, before_last, self.temperature).to(losses)

    def last_weights(self) -> Tensor | None:
        if len(self.history) < 2:
            return None
        return dwa_weights(self.history[1], self.history[0], self.temperature)

    def end_epoch(self, mean_losses: Tensor) -> None:
        self.history = (self.history + [mean_losses.detach().clone()])[-2:]

    def state_dict(self) -> dict[str, Any]:
        return {"history": [h.clone() for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [h.clone() for h in state["history"]]
