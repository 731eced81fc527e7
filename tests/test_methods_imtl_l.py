"""IMTL-L: sum_k exp(s_k) L_k - s_k with learned scales s_k."""
import math

import torch

from mtlrepro.methods import build


def test_value_and_gradients():
    method = build("imtl_l", 2)
    method.load_state_dict({"log_scales": torch.tensor([0.0, math.log(3.0)])})
    losses = torch.tensor([2.0, 0.5], requires_grad=True)
    total = method.combine_losses(losses)
    assert math.isclose(float(total.detach()), 2.0 - 0.0 + 3.0 * 0.5 - math.log(3.0), rel_tol=1e-6)
    total.backward()
    (s,) = method.parameters()
    assert torch.allclose(losses.grad, torch.tensor([1.0, 3.0]))  # exp(s_k)
    assert torch.allclose(s.grad, torch.tensor([1.0, 0.5]))  # exp(s_k) L_k - 1


def test_scaled_losses_are_driven_to_one():
    method = build("imtl_l", 3)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
    losses = torch.tensor([0.1, 1.0, 10.0])
    for _ in range(2000):
        optimizer.zero_grad()
        method.combine_losses(losses).backward()
        optimizer.step()
    (s,) = method.parameters()
    assert torch.allclose(s.detach().exp() * losses, torch.ones(3), atol=1e-3)
