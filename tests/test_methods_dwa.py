"""DWA: K softmax(r / T), r_k = L_k(t-1) / L_k(t-2) from epoch mean losses."""
import math

import pytest
import torch

from mtlrepro.methods import build


def test_equal_weights_for_the_first_two_epochs_then_loss_ratios():
    method = build("dwa", 2)
    losses = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    for epoch_mean in ([4.0, 1.0], [2.0, 1.0]):  # epochs 0 and 1
        (grad,) = torch.autograd.grad(method.combine_losses(losses), losses)
        assert torch.allclose(grad, torch.ones(2, dtype=torch.float64))
        method.end_epoch(torch.tensor(epoch_mean, dtype=torch.float64))
    # epoch 2: r = (2/4, 1/1) = (0.5, 1.0), T = 2
    e1, e2 = math.exp(0.25), math.exp(0.5)
    expected = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], dtype=torch.float64)
    (grad,) = torch.autograd.grad(method.combine_losses(losses), losses)
    assert torch.allclose(grad, expected, atol=1e-12)
    assert abs(float(grad.sum()) - 2) < 1e-12
    # epoch 3 uses only the last two epochs: r = (1/2, 3/1)
    method.end_epoch(torch.tensor([1.0, 3.0], dtype=torch.float64))
    e1, e2 = math.exp(0.25), math.exp(1.5)
    expected = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], dtype=torch.float64)
    assert torch.allclose(method.weights(losses.detach()), expected, atol=1e-12)


def test_temperature_hyper_parameter():
    method = build("dwa", 2, temperature=1.0)
    method.end_epoch(torch.tensor([1.0, 1.0]))
    method.end_epoch(torch.tensor([1.0, 2.0]))
    e1, e2 = math.exp(1.0), math.exp(2.0)
    assert torch.allclose(method.weights(torch.ones(2)), torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]))
    with pytest.raises(ValueError):
        build("dwa", 2, temperature=0.0)


def test_zero_epoch_loss_is_finite():
    method = build("dwa", 2)
    method.end_epoch(torch.tensor([0.0, 1.0]))
    method.end_epoch(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(method.weights(torch.ones(2))).all()
