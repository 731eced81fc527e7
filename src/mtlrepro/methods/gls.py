"""GLS: geometric loss strategy (Chennupati et al., 2019), the geometric mean of the task losses.

(prod_k L_k)^(1/K) is computed as exp(mean_k log L_k), which has the same value and gradient
GLS / (K L_k) for positive losses. If a loss is zero the geometric mean is 0 and locally constant
in the other losses; the true gradient w.r.t. the zero loss is infinite, so the combined loss
is returned as exactly 0 with a zero gradient instead (no NaN/inf reaches the model).
"""
import torch
from torch import Tensor

from .base import Weighting
from .si import loss_floor, safe_log


def geometric_mean_loss(losses: Tensor) -> Tensor:
    """(prod_k L_k)^(1/K)."""
    all_positive = (losses.detach() > loss_floor(losses)).all().to(losses.dtype)  # no host sync
    return safe_log(losses).mean().exp() * all_positive


class GeometricLossStrategy(Weighting):
    """Registered as "gls". No hyper-parameters."""

    name = "gls"
    needs_every_task = True  # the geometric mean is of every task's loss

    def weights(self, losses: Tensor) -> Tensor:
        # The effective per-task weights d GLS / d L_k = GLS / (K L_k).
        with torch.enable_grad():
            leaf = losses.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(geometric_mean_loss(leaf), leaf)
        return grad

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return geometric_mean_loss(losses)
