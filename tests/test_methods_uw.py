"""UW: sum_k 0.5 exp(-s_k) L_k + 0.5 s_k with learned log-variances s_k."""
import math

import torch

from mtlrepro.methods import build


def test_value_and_gradients():
    method = build("uw", 2)
    method.load_state_dict({"log_vars": torch.tensor([0.0, math.log(2.0)])})
    losses = torch.tensor([1.0, 2.0], requires_grad=True)
    total = method.combine_losses(losses)
    assert math.isclose(float(total.detach()), 0.5 * 1 + 0.0 + 0.5 * 0.5 * 2 + 0.5 * math.log(2.0), rel_tol=1e-6)
    total.backward()
    (s,) = method.parameters()
    assert torch.allclose(losses.grad, torch.tensor([0.5, 0.25]))  # 0.5 exp(-s)
    assert torch.allclose(s.grad, torch.tensor([0.0, 0.0]), atol=1e-7)  # -0.5 exp(-s) L + 0.5
    assert torch.allclose(method.weights(losses.detach()), torch.tensor([0.5, 0.25]))


def test_learned_log_variance_tracks_the_loss():
    method = build("uw", 2)
    (s,) = method.parameters()
    assert s.is_leaf and s.requires_grad and torch.equal(s.detach(), torch.zeros(2))
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5)
    losses = torch.tensor([0.2, 5.0])
    for _ in range(300):
        optimizer.zero_grad()
        method.combine_losses(losses).backward()
        optimizer.step()
    assert torch.allclose(s.detach(), losses.log(), atol=1e-4)  # the optimum s_k = log L_k


def test_load_state_dict_keeps_the_optimised_leaf():
    method = build("uw", 2)
    (s,) = method.parameters()
    method.load_state_dict({"log_vars": torch.tensor([1.0, 2.0])})
    assert method.parameters()[0] is s and torch.equal(s.detach(), torch.tensor([1.0, 2.0]))
