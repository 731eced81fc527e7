"""TW: task weighting by the share of labelled training examples.

w_k = n_k / sum_j n_j, with n_k the number of labelled training examples of task k (the loop
passes them as the `task_sizes` hyper-parameter). The weights sum to 1, so equal task sizes give
LS / K.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .base import Weighting


def task_size_weights(task_sizes: Sequence[float] | Tensor) -> Tensor:
    """n_k / sum_j n_j."""
    sizes = torch.as_tensor(task_sizes, dtype=torch.float64)
    if sizes.dim() != 1 or bool((sizes < 0).any()) or float(sizes.sum()) <= 0:
        raise ValueError(f"tw: task_sizes must be non-negative counts with a positive sum, "
                         f"got {sizes.tolist()}")
    return sizes / sizes.sum()


class TaskSizeWeighting(Weighting):
    """Registered as "tw". Hyper-parameters: task_sizes (required, one count per task)."""

    name = "tw"

    @classmethod
    def hparam_names(cls):
        return ("task_sizes",)

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        if self.hparams.get("task_sizes") is None:
            raise ValueError("tw: the task_sizes hyper-parameter (labelled examples per task) is required")
        self.task_weights = task_size_weights(self.hparams["task_sizes"])
        if self.task_weights.numel() != n_tasks:
            raise ValueError(f"tw: got {self.task_weights.numel()} task_sizes for {n_tasks} tasks")

    def weights(self, losses: Tensor) -> Tensor:
        return self.task_weights.to(losses)

    def last_weights(self) -> Tensor:
        return self.task_weights
