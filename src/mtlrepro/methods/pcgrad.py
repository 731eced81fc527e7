"""PCGrad (Yu et al., 2020): project conflicting gradients, then sum.

For each task i, in a fresh random order of the other tasks j, whenever the running g_i^PC
conflicts with the original g_j (g_i^PC . g_j < 0) it is projected onto g_j's normal plane:
g_i^PC -= (g_i^PC . g_j / |g_j|^2) g_j. The result is sum_i g_i^PC (the paper's sum, the LS
scale). Each g_i^PC is tracked as coefficients over the original rows, so only the K x K Gram
matrix is touched inside the loops.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import Aggregator
from .mgda import combine_rows, gramian
from .rlw import RandomSource


def pcgrad_coefficients(gram: Tensor, orders: list[list[int]]) -> Tensor:
    """C with g_i^PC = sum_j C[i, j] g_j, given each task's projection order (float64)."""
    # In numpy: the K^2 scalar steps cost a microsecond each there, several in torch.
    gram = gram.to(device="cpu", dtype=torch.float64).numpy()
    K = gram.shape[0]
    coefficients = np.eye(K)
    for i in range(K):
        row = coefficients[i]
        for j in orders[i]:
            if j == i or gram[j, j] <= 0:  # a zero gradient cannot conflict
                continue
            conflict = float(row @ gram[:, j])
            if conflict < 0:
                row[j] -= conflict / float(gram[j, j])
    return torch.from_numpy(coefficients)


def pcgrad(G: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """[K, d] -> sum of the projected task gradients, [d]."""
    random = RandomSource(generator)
    orders = [random.permutation(G.shape[0]) for _ in range(G.shape[0])]
    return combine_rows(pcgrad_coefficients(gramian(G), orders).sum(0), G)


class PCGrad(Aggregator):
    """Registered as "pcgrad". No hyper-parameters; task orders come from the method generator."""

    name = "pcgrad"

    def __init__(self, n_tasks, task_kinds=None, generator=None, level=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, level, **hparams)
        self.random = RandomSource(generator)

    def combine(self, G: Tensor) -> Tensor:
        orders = [self.random.permutation(G.shape[0]) for _ in range(G.shape[0])]
        self._last = pcgrad_coefficients(gramian(G), orders).sum(0)
        return combine_rows(self._last, G)

    def last_weights(self) -> Tensor | None:
        return getattr(self, "_last", None)

    def state_dict(self) -> dict[str, Any]:
        return {"random": self.random.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.random.load_state_dict(state.get("random", {}))
