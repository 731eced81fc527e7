"""SI: the scale-invariant loss, the sum of the log task losses (baseline of the IGB paper).

d/dtheta sum_k log L_k = sum_k grad L_k / L_k, so multiplying any task loss by a constant
leaves the update unchanged.
"""
import torch
from torch import Tensor

from .base import Weighting, masked_sum

# A zero loss (a task without labels in the batch, or a perfectly fitted one) would give
# log 0 = -inf. Clamping keeps the value finite and, because clamp passes no gradient below the
# floor, gives that task zero gradient, which is what its zero loss contributes anyway.
LOSS_FLOOR = 1e-12


def loss_floor(losses: Tensor) -> float:
    return max(LOSS_FLOOR, torch.finfo(losses.dtype).tiny)


def safe_log(losses: Tensor) -> Tensor:
    """log of the losses, clamped below at a tiny positive floor."""
    return losses.clamp_min(loss_floor(losses)).log()


def scale_invariant_loss(losses: Tensor, present: Tensor | None = None) -> Tensor:
    """sum_k log L_k (over the present tasks)."""
    return masked_sum(safe_log(losses), present)


class ScaleInvariant(Weighting):
    """Registered as "si". No hyper-parameters."""

    name = "si"

    def weights(self, losses: Tensor) -> Tensor:
        # The effective per-task weights: d(sum_k log L_k)/dL_k = 1/L_k (0 at a zero loss).
        floor = loss_floor(losses)
        return torch.where(losses > floor, 1.0 / losses.clamp_min(floor), torch.zeros_like(losses))

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return scale_invariant_loss(losses, present)
