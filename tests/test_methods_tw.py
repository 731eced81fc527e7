"""TW: weights proportional to the labelled training examples of each task."""
import pytest
import torch

from mtlrepro.methods import build


def test_weights_are_example_shares():
    method = build("tw", 3, task_sizes=[10, 30, 60])
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    total = method.combine_losses(losses)
    assert torch.isclose(total, torch.tensor(0.1 * 1 + 0.3 * 2 + 0.6 * 3, dtype=torch.float64))
    total.backward()
    assert torch.allclose(losses.grad, torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64))


def test_task_sizes_are_required_and_checked():
    assert "task_sizes" in build("tw", 2, task_sizes=[1, 1]).hparam_names()
    with pytest.raises(ValueError):
        build("tw", 2)
    with pytest.raises(ValueError):
        build("tw", 3, task_sizes=[1, 2])
    with pytest.raises(ValueError):
        build("tw", 2, task_sizes=[0, 0])
