"""IGBv2: SAC-learned weights on the log losses, rewarded by the smallest improvable-gap gain."""
import math

import torch

from mtlrepro.methods import build

SMALL = dict(hidden_dim=8, batch_size=8, buffer_size=64, update_every=3, warmup_epochs=2,
             update_after_epochs=1, base_epoch=0)


def _parameters(method):
    return torch.cat([p.detach().flatten() for p in method.agent.actor])


def test_combined_loss_is_weighted_log_losses():
    method = build("igbv2", 3, generator=torch.Generator().manual_seed(0), **SMALL)
    losses = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    total = method.combine_losses(losses)
    weights = method.last_weights().double()
    assert torch.allclose(total, (weights * losses.detach().log()).sum())
    total.backward()
    assert torch.allclose(losses.grad, weights / losses.detach())  # weights are constants
    assert bool((weights > 0).all()) and abs(float(weights.sum()) - 3) < 1e-5  # K * softmax


def test_warmup_weights_are_random_and_reproducible():
    def run(seed):
        method = build("igbv2", 3, generator=torch.Generator().manual_seed(seed), **SMALL)
        return torch.stack([method.weights(torch.ones(3)) for _ in range(4)])

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    draws = run(1)
    assert not torch.allclose(draws[0], draws[1])


def test_reward_is_the_smallest_relative_gap_improvement():
    method = build("igbv2", 2, generator=torch.Generator().manual_seed(0), **SMALL)
    method.weights(torch.tensor([1.0, 1.0]))
    method.end_epoch(torch.tensor([2.0, 4.0]))  # epoch 0 = base_epoch: base losses (2, 4)
    assert method.buffer.size == 0  # no transition before the base losses exist
    used = method.weights(torch.tensor([1.0, 2.0]))
    method.weights(torch.tensor([0.5, 1.6]))
    # the last step of epoch 0 links to the first of epoch 1: (1, 1) -> (1, 2), gains
    # (0 / 2, -1 / 4) -> reward -0.25; then (1, 2) -> (0.5, 1.6): (0.5 / 2, 0.4 / 4) -> 0.1
    assert method.buffer.size == 2
    rewards = method.buffer.data["rewards"][:2]
    assert torch.allclose(rewards, torch.tensor([-0.25, 0.1]))
    assert torch.allclose(method.buffer.data["states"][1], torch.tensor([1.0, 2.0]))
    assert torch.allclose(method.buffer.data["next_states"][1], torch.tensor([0.5, 1.6]))
    assert torch.equal(method.buffer.data["actions"][1], used)  # the action taken in that state


def test_agent_trains_only_after_update_after_epochs_and_on_schedule():
    method = build("igbv2", 2, generator=torch.Generator().manual_seed(0), **SMALL)
    losses = torch.tensor([1.0, 2.0])
    method.end_epoch(losses)  # epoch 0 ends: base losses set, epoch index 1 = update_after
    start = _parameters(method)
    method.weights(losses)  # step 0: empty buffer -> no update
    method.weights(losses * 0.9)  # step 1: first transition
    assert torch.equal(_parameters(method), start)
    method.weights(losses * 0.8)  # step 2: not a multiple of update_every
    assert torch.equal(_parameters(method), start)
    method.weights(losses * 0.7)  # step 3: SAC updates run
    assert not torch.equal(_parameters(method), start)


def test_actor_picks_the_weights_after_warmup():
    method = build("igbv2", 3, generator=torch.Generator().manual_seed(0), **SMALL)
    for _ in range(2):  # warmup_epochs = 2
        method.weights(torch.ones(3))
        method.end_epoch(torch.ones(3))
    calls = []
    original = method.agent.act
    method.agent.act = lambda state, random: calls.append(state) or original(state, random)
    weights = method.weights(torch.tensor([1.0, 2.0, 3.0]))
    assert len(calls) == 1 and torch.equal(calls[0], torch.tensor([1.0, 2.0, 3.0]))
    assert bool((weights > 0).all()) and abs(float(weights.sum()) - 3) < 1e-5


def test_zero_loss_is_finite():
    method = build("igbv2", 2, generator=torch.Generator().manual_seed(0), **SMALL)
    losses = torch.tensor([0.0, 1.0], requires_grad=True)
    total = method.combine_losses(losses)
    total.backward()
    assert math.isfinite(float(total.detach())) and torch.isfinite(losses.grad).all()
