"""IGBv2: improvable gap balancing with reinforcement learning (Dai et al., UAI 2023).

The combined loss is sum_k w_k log L_k: SI's log losses, re-weighted by w (constants for the
backward pass, sum_k w_k = K). The paper casts the choice of w as a continuous-control problem
and learns it with soft actor-critic (SAC), following the official IGB4MTL code:

* state: the K task losses of the current batch; action: w = K * softmax(u), u ~ N(mu, sigma)
  from the actor;
* reward of the transition (previous batch -> this batch), once the "base losses" exist:
  min_k (L_k(prev) - L_k(now)) / L_k(base), the smallest improvement of the improvable gap,
  with L(base) the mean training losses of epoch `base_epoch` (0-indexed, default 1);
* epochs before `warmup_epochs` (default 5) use random weights K * softmax(N(0, I)) to explore;
  the actor picks the weights afterwards;
* from epoch `update_after_epochs` (default 3) on, every `update_every` (default 50) steps the
  agent runs int(update_every * k / 2) SAC updates on batches of int(batch_size * k / 2)
  transitions drawn from a replay buffer of `buffer_size` (default 10 000),
  k = 1 + buffer fill fraction;
* SAC as in the reference: actor and twin critics are 2-layer MLPs of `hidden_dim` (128) units,
  Adam at `sac_lr` (3e-4), gamma 0.99, Polyak tau 0.005, learned temperature (initially 0.2,
  target entropy -K), no terminal states. The actor's log-probability keeps the reference's
  tanh-squashing correction even though the action is squashed by a softmax.

Differences from the reference, all deliberate: every random draw (network initialisation,
exploration noise, replay sampling) comes from the method generator; epochs are counted by
`end_epoch` calls instead of a steps-per-epoch constant; the reference's learning-rate
"reward scale" is dropped because it is always 1 there (it divides the learning rate by itself).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Weighting
from .rlw import RandomSource, random_loss_weights
from .si import loss_floor, safe_log

DEFAULTS = {
    "base_epoch": 1,
    "warmup_epochs": 5,
    "update_after_epochs": 3,
    "update_every": 50,
    "sac_lr": 3e-4,
    "buffer_size": 10_000,
    "batch_size": 256,
    "hidden_dim": 128,
}
GAMMA, TAU, INIT_TEMPERATURE = 0.99, 0.005, 0.2
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def weighted_log_loss(losses: Tensor, weights: Tensor) -> Tensor:
    """sum_k w_k log L_k, the weights treated as constants."""
    return (weights.detach().to(losses) * safe_log(losses)).sum()


def gap_reward(previous: Tensor, current: Tensor, base: Tensor) -> Tensor:
    """min_k (L_k(prev) - L_k(now)) / L_k(base)."""
    return ((previous - current) / base).min()


# ------------------------------------------------------------------ a small functional SAC


def _init_mlp(sizes: list[int], random: RandomSource) -> list[Tensor]:
    # PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from our generator.
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        params += [random.uniform((fan_out, fan_in), -bound, bound),
                   random.uniform((fan_out,), -bound, bound)]
    return params


def _mlp(x: Tensor, params: list[Tensor], last_relu: bool) -> Tensor:
    n_layers = len(params) // 2
    for i in range(n_layers):
        x = F.linear(x, params[2 * i], params[2 * i + 1])
        if i < n_layers - 1 or last_relu:
            x = F.relu(x)
    return x


class SoftActorCritic:
    """Actor (trunk + mean and log-std heads), twin critics with Polyak targets, learned temperature."""

    def __init__(self, state: dict[str, Any], lr: float, device):
        def leaves(tensors):
            return [t.detach().to(device).clone().requires_grad_(True) for t in tensors]

        self.n_tasks = state["actor"][-1].shape[0]
        self.actor = leaves(state["actor"])
        self.critics = [leaves(c) for c in state["critics"]]
        self.targets = [[t.detach().to(device).clone() for t in c] for c in state["targets"]]
        self.log_temperature = leaves([state["log_temperature"]])[0]
        self.optimizers = {
            "actor": torch.optim.Adam(self.actor, lr=lr),
            "critic": torch.optim.Adam(self.critics[0] + self.critics[1], lr=lr),
            "temperature": torch.optim.Adam([self.log_temperature], lr=lr),
        }
        for key, opt_state in state.get("optimizers", {}).items():
            self.optimizers[key].load_state_dict(copy.deepcopy(opt_state))

    @staticmethod
    def initial_state(n_tasks: int, hidden: int, random: RandomSource) -> dict[str, Any]:
        actor = (_init_mlp([n_tasks, hidden, hidden], random) + _init_mlp([hidden, n_tasks], random)
                 + _init_mlp([hidden, n_tasks], random))
        critics = [_init_mlp([2 * n_tasks, hidden, hidden, 1], random) for _ in range(2)]
        return {"actor": actor, "critics": critics, "targets": [list(c) for c in critics],
                "log_temperature": torch.tensor(math.log(INIT_TEMPERATURE))}

    def state_dict(self) -> dict[str, Any]:
        return {"actor": [p.detach().clone() for p in self.actor],
                "critics": [[p.detach().clone() for p in c] for c in self.critics],
                "targets": [[p.clone() for p in c] for c in self.targets],
                "log_temperature": self.log_temperature.detach().clone(),
                "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()}}

    def policy(self, states: Tensor, noise: Tensor, actor=None) -> tuple[Tensor, Tensor]:
        """Actions K * softmax(mu + sigma * noise) and their log-probabilities."""
        actor = self.actor if actor is None else actor
        hidden = _mlp(states, actor[:4], last_relu=True)
        mean = F.linear(hidden, actor[4], actor[5])
        log_std = F.linear(hidden, actor[6], actor[7]).clamp(LOG_STD_MIN, LOG_STD_MAX)
        pre_squash = mean + log_std.exp() * noise
        actions = self.n_tasks * torch.softmax(pre_squash, dim=-1)
        gaussian = -(0.5 * noise ** 2 + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)
        squash = (2 * (math.log(2) - pre_squash - F.softplus(-2 * pre_squash))).sum(-1)
        return actions, gaussian - squash

    def q_value(self, critic: list[Tensor], states: Tensor, actions: Tensor) -> Tensor:
        return _mlp(torch.cat([states, actions], dim=-1), critic, last_relu=False).squeeze(-1)

    def act(self, state: Tensor, random: RandomSource) -> Tensor:
        noise = random.normal((1, self.n_tasks), device=state.device)
        with torch.no_grad():
            actions, _ = self.policy(state[None], noise)
        return actions[0]

    def update(self, batch: tuple[Tensor, Tensor, Tensor, Tensor], random: RandomSource) -> None:
        states, actions, rewards, next_states = batch
        temperature = self.log_temperature.detach().exp()
        with torch.enable_grad():
            with torch.no_grad():
                noise = random.normal(next_states.shape, device=next_states.device)
                next_actions, next_log_prob = self.policy(next_states, noise)
                next_q = torch.minimum(self.q_value(self.targets[0], next_states, next_actions),
                                       self.q_value(self.targets[1], next_states, next_actions))
                target = rewards + GAMMA * (next_q - temperature * next_log_prob)
            critic_loss = sum(F.mse_loss(self.q_value(c, states, actions), target) for c in self.critics)
            self._step("critic", critic_loss)

            # Policy step against frozen critics.
            noise = random.normal(states.shape, device=states.device)
            new_actions, log_prob = self.policy(states, noise)
            frozen = [[p.detach() for p in c] for c in self.critics]
            new_q = torch.minimum(self.q_value(frozen[0], states, new_actions),
                                  self.q_value(frozen[1], states, new_actions))
            self._step("actor", (temperature * log_prob - new_q).mean())

            target_entropy = -float(self.n_tasks)
            self._step("temperature", -(self.log_temperature * (log_prob.detach() + target_entropy)).mean())
        with torch.no_grad():
            for critic, target_net in zip(self.critics, self.targets):
                for p, t in zip(critic, target_net):
                    t.mul_(1 - TAU).add_(TAU * p)

    def _step(self, key: str, loss: Tensor) -> None:
        optimizer = self.optimizers[key]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


class ReplayBuffer:
    def __init__(self, capacity: int, n_tasks: int, device):
        self.capacity, self.ptr, self.size = capacity, 0, 0
        self.data = {"states": torch.zeros(capacity, n_tasks, device=device),
                     "actions": torch.zeros(capacity, n_tasks, device=device),
                     "rewards": torch.zeros(capacity, device=device),
                     "next_states": torch.zeros(capacity, n_tasks, device=device)}

    def add(self, state: Tensor, action: Tensor, reward: Tensor, next_state: Tensor) -> None:
        for key, value in zip(("states", "actions", "rewards", "next_states"),
                              (state, action, reward, next_state)):
            self.data[key][self.ptr] = value
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, random: RandomSource):
        index = random.integers(self.size, n, device=self.data["states"].device)
        return tuple(self.data[k][index] for k in ("states", "actions", "rewards", "next_states"))

    def state_dict(self) -> dict[str, Any]:
        return {"ptr": self.ptr, "size": self.size, **{k: v.clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ptr, self.size = state["ptr"], state["size"]
        device = self.data["states"].device
        self.data = {k: state[k].to(device).clone() for k in self.data}


# ------------------------------------------------------------------ the method


class ImprovableGapBalancingV2(Weighting):
    """Registered as "igbv2". Hyper-parameters (defaults from the official code): base_epoch=1,
    warmup_epochs=5, update_after_epochs=3, update_every=50, sac_lr=3e-4, buffer_size=10000,
    batch_size=256, hidden_dim=128.

    Call `combine_losses` (or `weights`) exactly once per step: each call is one RL step.
    """

    needs_every_task = True  # its state and reward are of the whole loss vector

    name = "igbv2"

    @classmethod
    def hparam_names(cls):
        return tuple(DEFAULTS)

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self.config = {**DEFAULTS, **self.hparams}
        self.random = RandomSource(generator)
        self.device = torch.device("cpu")
        initial = SoftActorCritic.initial_state(n_tasks, int(self.config["hidden_dim"]), self.random)
        self.agent = SoftActorCritic(initial, float(self.config["sac_lr"]), self.device)
        self.buffer = ReplayBuffer(int(self.config["buffer_size"]), n_tasks, self.device)
        self.step = 0  # combine_losses calls so far
        self.epoch = 0  # end_epoch calls so far (the index of the running epoch)
        self.base_losses: Tensor | None = None
        self.previous: tuple[Tensor, Tensor] | None = None  # (losses, weights) of the last step

    def weights(self, losses: Tensor) -> Tensor:
        current = losses.detach().to(self.device, torch.float32)
        if self.previous is not None and self.base_losses is not None:
            previous_losses, previous_weights = self.previous
            reward = gap_reward(previous_losses, current, self.base_losses)
            self.buffer.add(previous_losses, previous_weights, reward, current)
        if (self.epoch >= self.config["update_after_epochs"] and self.buffer.size > 0
                and self.step % self.config["update_every"] == 0):
            fill = 1 + self.buffer.size / self.buffer.capacity  # more and larger updates as it fills
            for _ in range(int(self.config["update_every"] * fill / 2)):
                batch = self.buffer.sample(int(self.config["batch_size"] * fill / 2), self.random)
                self.agent.update(batch, self.random)
        if self.epoch < self.config["warmup_epochs"]:
            weights = self.n_tasks * random_loss_weights(self.n_tasks, self.random, self.device)
        else:
            weights = self.agent.act(current, self.random)
        self.previous = (current, weights)
        self.step += 1
        return weights.to(losses)

    def last_weights(self) -> Tensor | None:
        return None if self.previous is None else self.previous[1]

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return weighted_log_loss(losses, self.weights(losses.detach()))

    def end_epoch(self, mean_losses: Tensor) -> None:
        if self.epoch == self.config["base_epoch"]:
            mean = mean_losses.detach().to(self.device, torch.float32)
            self.base_losses = mean.clamp_min(loss_floor(mean))
        self.epoch += 1

    def to(self, device) -> "ImprovableGapBalancingV2":
        state = self.state_dict()
        self.device = torch.device(device)
        self.load_state_dict(state)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch,
                "base_losses": None if self.base_losses is None else self.base_losses.clone(),
                "previous": None if self.previous is None else tuple(t.clone() for t in self.previous),
                "agent": self.agent.state_dict(), "buffer": self.buffer.state_dict(),
                "random": self.random.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.epoch = state["step"], state["epoch"]
        self.base_losses = None if state["base_losses"] is None else state["base_losses"].to(self.device).clone()
        self.previous = (None if state["previous"] is None
                         else tuple(t.to(self.device).clone() for t in state["previous"]))
        self.agent = SoftActorCritic(state["agent"], float(self.config["sac_lr"]), self.device)
        self.buffer = ReplayBuffer(int(self.config["buffer_size"]), self.n_tasks, self.device)
        self.buffer.load_state_dict(state["buffer"])
        self.random.load_state_dict(state["random"])
