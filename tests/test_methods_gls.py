"""GLS: geometric mean of the task losses."""
import math

import torch

from mtlrepro.methods import build


def test_value_and_gradient():
    losses = torch.tensor([1.0, 4.0, 2.0], dtype=torch.float64, requires_grad=True)
    total = build("gls", 3).combine_losses(losses)
    assert math.isclose(float(total.detach()), 2.0, rel_tol=1e-12)  # (1 * 4 * 2)^(1/3)
    total.backward()
    expected = 2.0 / (3 * losses.detach())  # GLS / (K L_k)
    assert torch.allclose(losses.grad, expected, atol=1e-12)
    assert torch.allclose(build("gls", 3).weights(losses.detach()), expected, atol=1e-12)


def test_single_task_is_the_loss():
    losses = torch.tensor([0.7], dtype=torch.float64)
    assert math.isclose(float(build("gls", 1).combine_losses(losses)), 0.7, rel_tol=1e-12)


def test_zero_loss_gives_zero_and_finite_gradient():
    losses = torch.tensor([0.0, 3.0, 5.0], requires_grad=True)
    total = build("gls", 3).combine_losses(losses)
    total.backward()
    assert float(total.detach()) == 0.0 and torch.isfinite(losses.grad).all()
