"""SI: sum of the log task losses."""
import math

import torch

from mtlrepro.methods import build


def test_value_and_gradient():
    losses = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    total = build("si", 3).combine_losses(losses)
    assert math.isclose(float(total.detach()), math.log(0.5) + math.log(2.0) + math.log(4.0), rel_tol=1e-12)
    total.backward()
    assert torch.allclose(losses.grad, torch.tensor([2.0, 0.5, 0.25], dtype=torch.float64))
    assert torch.allclose(build("si", 3).weights(losses.detach()), losses.grad)


def test_update_invariant_to_loss_scaling():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    x, targets = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)

    def gradient(scales):
        losses = ((x @ weight - targets) ** 2).mean(0) * scales
        (grad,) = torch.autograd.grad(build("si", 3).combine_losses(losses), weight)
        return grad

    plain = gradient(torch.ones(3, dtype=torch.float64))
    scaled = gradient(torch.tensor([100.0, 0.01, 7.0], dtype=torch.float64))
    assert torch.allclose(plain, scaled, atol=1e-12)
    # while the plain sum is not invariant (the test would catch SI degenerating to LS)
    ls = lambda s: torch.autograd.grad((((x @ weight - targets) ** 2).mean(0) * s).sum(), weight)[0]
    assert not torch.allclose(ls(torch.ones(3, dtype=torch.float64)), ls(torch.tensor([100.0, 0.01, 7.0], dtype=torch.float64)))


def test_zero_loss_is_finite():
    losses = torch.tensor([0.0, 1.0], requires_grad=True)
    total = build("si", 2).combine_losses(losses)
    total.backward()
    assert math.isfinite(float(total.detach())) and torch.isfinite(losses.grad).all()
    assert float(losses.grad[0]) == 0.0 and float(losses.grad[1]) == 1.0
