"""RLW: random loss weighting (Lin et al., 2022).

Each step draws z ~ N(0, I_K) and weights the losses by softmax(z), so the weights are positive
and sum to 1 (the LibMTL convention: one unit of total weight, not K).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Weighting

PRIVATE_SEED = 0


class RandomSource:
    """The random stream of one method: the loop's generator, or a private seeded one.

    Random methods never touch the global RNG. The loop checkpoints its own generator, so only a
    private fallback generator (used when none was passed) is part of the method's state.
    """

    def __init__(self, generator: torch.Generator | None):
        self.owned = generator is None
        self.generator = torch.Generator().manual_seed(PRIVATE_SEED) if self.owned else generator

    def normal(self, shape, device=None, dtype=None) -> Tensor:
        # Draw where the generator lives (a CUDA generator cannot fill a CPU tensor and vice
        # versa), then move: the stream is the same whatever device the result is used on.
        draws = torch.randn(shape, generator=self.generator, device=self.generator.device, dtype=dtype)
        return draws.to(device) if device is not None else draws

    def uniform(self, shape, low: float, high: float, device=None) -> Tensor:
        draws = torch.rand(shape, generator=self.generator, device=self.generator.device)
        draws = low + (high - low) * draws
        return draws.to(device) if device is not None else draws

    def permutation(self, n: int) -> list[int]:
        return torch.randperm(n, generator=self.generator, device=self.generator.device).tolist()

    def integers(self, high: int, size: int, device=None) -> Tensor:
        draws = torch.randint(0, high, (size,), generator=self.generator, device=self.generator.device)
        return draws.to(device) if device is not None else draws

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()} if self.owned else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.owned and "generator" in state:
            self.generator.set_state(state["generator"])


def random_loss_weights(n_tasks: int, source: RandomSource, device=None, dtype=None) -> Tensor:
    """softmax(z), z ~ N(0, I): positive weights summing to 1."""
    return torch.softmax(source.normal((n_tasks,), device, dtype), dim=0)


class RandomLossWeighting(Weighting):
    """Registered as "rlw". No hyper-parameters; draws from the method generator.

    Call `combine_losses` (or `weights`) exactly once per step: each call is a new draw.
    """

    name = "rlw"

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self.random = RandomSource(generator)
        self._last: Tensor | None = None

    def weights(self, losses: Tensor) -> Tensor:
        self._last = random_loss_weights(self.n_tasks, self.random, losses.device, losses.dtype)
        return self._last

    def last_weights(self) -> Tensor | None:
        return self._last

    def state_dict(self) -> dict[str, Any]:
        return {"random": self.random.state_dict(),
                "last": None if self._last is None else self._last.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.random.load_state_dict(state.get("random", {}))
        self._last = state.get("last")
