"""Linear scalarisation (LS, also EW): the plain sum of the task losses."""
import torch
from torch import Tensor

from .base import Weighting


class LinearScalarization(Weighting):
    name = "ls"

    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones_like(losses)

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return losses.sum()  # an absent task's loss is 0
