"""A shared encoder with one linear head per task.

The encoder is split at its first layer (`embed` then `encode_from`) so the robustness stage can
perturb the input or first-layer embedding, and gradient methods see the shared representation h.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..data.base import Task


@dataclass(frozen=True)
class HeadSpec:
    """The task heads of every method on a dataset (`train.heads`), so that methods differ in
    their objective only: dropout on the representation, then a linear layer, or an MLP with one
    hidden layer (ReLU) of `hidden_dim` units (null: the representation's width).
    Probabilistic methods shape their heads' deterministic branch the same way (InfoMTL)."""

    hidden_dim: int | None = 0
    dropout: float = 0.0

    @classmethod
    def from_params(cls, block: dict | None) -> "HeadSpec | None":
        if block is None:
            return None
        spec = cls(hidden_dim=block.get("hidden_dim", 0), dropout=float(block.get("dropout", 0.0)))
        if spec.hidden_dim is not None and (int(spec.hidden_dim) != spec.hidden_dim or spec.hidden_dim < 0):
            raise ValueError(f"train.heads.hidden_dim must be a non-negative integer or null, got {spec.hidden_dim}")
        if not 0.0 <= spec.dropout < 1.0:
            raise ValueError(f"train.heads.dropout must lie in [0, 1), got {spec.dropout}")
        return spec

    def hidden(self, rep_dim: int) -> int:
        return rep_dim if self.hidden_dim is None else int(self.hidden_dim)

    def build(self, rep_dim: int, out_dim: int) -> nn.Module:
        hidden = self.hidden(rep_dim)
        layers = [nn.Dropout(self.dropout)] if self.dropout > 0 else []
        layers += [nn.Linear(rep_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)] if hidden \
            else [nn.Linear(rep_dim, out_dim)]
        return nn.Sequential(*layers)


class MTLModel(nn.Module):
    def __init__(self, rep_dim: int, tasks: Sequence[Task]):
        super().__init__()
        self.rep_dim = rep_dim
        self.heads = nn.ModuleList(nn.Linear(rep_dim, t.out_dim) for t in tasks)

    def use_heads(self, spec: HeadSpec | None, tasks: Sequence[Task]) -> "MTLModel":
        """Replaces the linear heads by `spec`'s (None keeps them), drawn from torch's global RNG."""
        if spec is not None:
            self.heads = nn.ModuleList(spec.build(self.rep_dim, t.out_dim) for t in tasks)
        return self

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
