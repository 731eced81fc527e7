"""A shared encoder with one linear head per task.

The encoder is split at its first layer (`embed` then `encode_from`) so the robustness stage can
perturb the input or first-layer embedding, and gradient methods see the shared representation h.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..data.base import Task


class MTLModel(nn.Module):
    def __init__(self, rep_dim: int, tasks: Sequence[Task]):
        super().__init__()
        self.rep_dim = rep_dim
        self.heads = nn.ModuleList(nn.Linear(rep_dim, t.out_dim) for t in tasks)

    def embed(self, inputs: Any) -> Tensor:
        """The input or first-layer embedding that perturbations act on."""
        raise NotImplementedError

    def encode_from(self, x0: Tensor, inputs: Any) -> Tensor:
        raise NotImplementedError

    def example_index(self, inputs: Any, x0: Tensor) -> Tensor | None:
        """Which example each row of x0 belongs to (None: row i is example i)."""
        return None

    def perturbable(self, inputs: Any, x0: Tensor) -> Tensor | None:
        """A 0/1 mask, broadcastable to x0, of the entries a perturbation may touch (None: all)."""
        return None

    def encode(self, inputs: Any) -> Tensor:
        return self.encode_from(self.embed(inputs), inputs)

    def forward(self, inputs: Any) -> tuple[Tensor, list[Tensor]]:
        h = self.encode(inputs)
        return h, [head(h) for head in self.heads]

    def shared_parameters(self) -> list[nn.Parameter]:
        head_ids = {id(p) for p in self.heads.parameters()}
        return [p for p in self.parameters() if id(p) not in head_ids]
