"""MT-VIB: the multi-task variational information bottleneck (Qian, Chen & Gechter, 2020,
arXiv:2007.00339; the VIB of Alemi et al., ICLR 2017, on a representation shared by all tasks).

A stochastic bottleneck shared by every task, z ~ q(z|x) = N(mu(h), diag sigma^2(h)) (mu and
log sigma^2 linear maps of the shared representation h), task heads (linear) on z, and the loss

    sum_t L_t(head_t(z)) + beta * mean_n KL(q(z|x_n) || N(0, I)),

with one reparameterised z per example in train mode (the same draw for every task) and z = mu(h)
at evaluation. This is the form of MT-VIB that de Freitas et al. (2022) re-implement as their
baseline (public code of "Compressed Hierarchical Representations for MTL", models/mtvib.py:
linear adapters for the mean and log-variance, linear predictors, loss = prediction losses +
beta * KL, the mean at evaluation).

Qian et al. additionally weight the task losses by learned task-dependent (homoscedastic)
uncertainties; `task_uncertainty: true` does that with UW's form (sum_t 0.5 exp(-s_t) L_t +
0.5 s_t, learnable s_t, see uw.py). Off by default: the brief's MT-VIB and the re-implementation
above sum the task losses as LS does.

Hyper-parameters:
  beta              1e-3  KL weight (Alemi et al.'s standard VIB value; not given for MT-VIB in
                          the InfoMTL paper)
  latent_dim        null  width of z (null: the representation width)
  task_uncertainty  false learned task-uncertainty weighting of the task losses (Qian et al.)

The KL is summed over latent dimensions and averaged over the batch (per-example weight beta, as
in the reference code whose losses are sums over the batch).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ._probabilistic import (ForwardCache, ProbabilisticWeighting, SharedRef, clamp_logvar,
                             kl_standard_normal, new_linear, reparameterize)
from .rlw import RandomSource
from .uw import uncertainty_weighted_loss


class VIBBottleneck(nn.Module):
    """The shared stochastic encoder head h -> z. In train mode the draw is cached for the
    tensor h it was made from, so every task head called with the same h sees the same z."""

    def __init__(self, rep_dim: int, latent_dim: int, source: RandomSource):
        super().__init__()
        self.mu = new_linear(rep_dim, latent_dim, source)
        self.logvar = new_linear(rep_dim, latent_dim, source)
        self._random = SharedRef(source)
        self._cache = ForwardCache()

    def distribution(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.mu(h), clamp_logvar(self.logvar(h))

    def forward(self, h: Tensor) -> Tensor:
        if not self.training:
            return self.mu(h)
        cached = self._cache.data
        if cached.get("h") is h:
            return cached["z"]
        mu, logvar = self.distribution(h)
        z = reparameterize(mu, logvar, self._random.value)
        self._cache.put(h=h, z=z, mu=mu, logvar=logvar)
        return z

    def pop_cache(self) -> dict[str, Any]:
        return self._cache.pop()


class MTVIBHead(nn.Module):
    """Task head on the shared bottleneck: predictor(z)."""

    def __init__(self, bottleneck: VIBBottleneck, latent_dim: int, out_dim: int, source: RandomSource):
        super().__init__()
        self.bottleneck = bottleneck  # shared by all heads
        self.predictor = new_linear(latent_dim, out_dim, source)

    def forward(self, h: Tensor) -> Tensor:
        return self.predictor(self.bottleneck(h))


class MTVIB(ProbabilisticWeighting):
    name = "mt_vib"
    DEFAULTS = {"beta": 1e-3, "latent_dim": None, "task_uncertainty": False}

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self._check_nonnegative("beta")
        self._check_optional_dim("latent_dim")
        if self.hp["latent_dim"] == 0:
            raise ValueError(f"{self.name}: latent_dim must be >= 1")
        self.beta = float(self.hp["beta"])
        self.task_uncertainty = bool(self.hp["task_uncertainty"])
        self.log_vars = torch.zeros(n_tasks, requires_grad=True) if self.task_uncertainty else None

    def build_heads(self, rep_dim: int, tasks: Sequence[Any], head=None) -> nn.ModuleList:
        self._check_tasks(tasks)
        latent = rep_dim if self.hp["latent_dim"] is None else int(self.hp["latent_dim"])
        bottleneck = VIBBottleneck(rep_dim, latent, self.random)
        return nn.ModuleList(MTVIBHead(bottleneck, latent, t.out_dim, self.random) for t in tasks)

    def regularizer(self, model, inputs, h: Tensor, targets: Tensor) -> Tensor | None:
        bottleneck = getattr(model.heads[0], "bottleneck", None)
        cache = bottleneck.pop_cache() if isinstance(bottleneck, VIBBottleneck) else {}
        if not cache or self.beta == 0.0:
            return None
        return self.beta * kl_standard_normal(cache["mu"], cache["logvar"]).mean()

    # ------------------------------------------------ optional task-uncertainty weighting

    def parameters(self) -> list[Tensor]:
        return [self.log_vars] if self.log_vars is not None else []

    def to(self, device) -> "MTVIB":
        if self.log_vars is not None:  # call before building the optimiser (replaces the leaf)
            self.log_vars = self.log_vars.detach().to(device).requires_grad_(True)
        return self

    def weights(self, losses: Tensor) -> Tensor:
        if self.log_vars is None:
            return torch.ones_like(losses)
        return 0.5 * torch.exp(-self.log_vars.detach()).to(losses)

    def last_weights(self) -> Tensor | None:
        """For the training log: the task weights 0.5 exp(-s_t) when task_uncertainty is on."""
        return None if self.log_vars is None else 0.5 * torch.exp(-self.log_vars.detach())

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        if self.log_vars is None:
            return losses.sum()
        return uncertainty_weighted_loss(losses, self.log_vars, present)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.log_vars is not None:
            state["log_vars"] = self.log_vars.detach().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.log_vars is not None and "log_vars" in state:
            with torch.no_grad():
                self.log_vars.copy_(state["log_vars"])
