"""Shared pieces of the probabilistic representation methods (InfoMTL, VMTL, MT-VIB, Hierarchical
MTL): closed-form KL divergences, InfoNCE, Gumbel-Softmax mixing weights, dropout and
reparameterised draws from the method's random stream, Monte-Carlo averaged predictions, and the
base class those methods share.

Conventions
-----------
* A diagonal Gaussian is (mu, logvar) with logvar = log sigma^2; every KL is summed over the last
  (feature) dimension and returned per row.
* Every random draw goes through a `RandomSource` (the method's generator, or a private one
  seeded with 0 when none is given), drawn on the generator's device and moved to the tensor's
  device. Evaluation-time Monte-Carlo draws (VMTL, Eq. 12) use a generator re-seeded with a
  fixed seed at every forward, so predictions are a deterministic function of the weights and
  the inputs and never consume the training stream.
* Head parameters are initialised from the method's random stream too (PyTorch's nn.Linear
  default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as igbv2 does), never from the global RNG.
* Per-forward quantities (KL inputs, MC outputs) are cached in `ForwardCache` objects that a
  deep copy of the model leaves empty, so `copy.deepcopy(model)` works between steps.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Weighting
from .rlw import RandomSource

LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0
TASK_KINDS = ("regression", "binary", "multiclass")


def clamp_logvar(logvar: Tensor) -> Tensor:
    """Keeps exp(logvar) finite in float32 (sigma in [3e-7, 2.2e4])."""
    return logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


# ---------------------------------------------------------------- divergences


def kl_diag_gaussians(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p)), summed over the last dimension."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) * (-logvar_p).exp()
                  - 1.0).sum(-1)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - e^logvar) (InfoMTL,
    Implementation of TIMin; Kingma & Welling 2014, App. B), summed over the last dimension."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def kl_mixture_upper_bound(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor,
                           weights: Tensor) -> Tensor:
    """sum_i w_i KL(q || p_i) >= KL(q || sum_i w_i p_i) (KL is convex in its second argument;
    the bound VMTL uses for its mixture priors, Sec. 2.3).

    mu_q, logvar_q: [..., d]; mu_p, logvar_p: [M, ..., d] (the M components along dim 0);
    weights: [M] or [M, ...] broadcastable to the per-row KLs [M, ...]. Returns [...].
    """
    kls = kl_diag_gaussians(mu_q.unsqueeze(0), logvar_q.unsqueeze(0), mu_p, logvar_p)
    w = weights.reshape(weights.shape + (1,) * (kls.dim() - weights.dim()))
    return (w.to(kls) * kls).sum(0)


def info_nce(anchor: Tensor, positive: Tensor, tau: float) -> Tensor:
    """InfoNCE with in-batch negatives and cosine similarity (InfoMTL Eq. 2, van den Oord et al.
    2018): mean_i -log( exp(cos(a_i, p_i)/tau) / sum_j exp(cos(a_i, p_j)/tau) )."""
    a = F.normalize(anchor, dim=-1)
    p = F.normalize(positive, dim=-1)
    logits = a @ p.transpose(0, 1) / tau
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def gumbel_softmax_weights(logits: Tensor, tau: float, uniform: Tensor) -> Tensor:
    """VMTL Eq. 7: alpha = softmax((log pi + g) / tau) over the last dimension, with
    pi = softmax(logits) (learnable, normalised as in the authors' code), g = -log(-log u)."""
    tiny = torch.finfo(uniform.dtype).tiny
    u = uniform.to(logits).clamp(tiny, 1.0 - 1e-7)
    g = -torch.log(-torch.log(u))
    return torch.softmax((torch.log_softmax(logits, -1) + g) / tau, -1)


def mixing_matrix(weights: Tensor) -> Tensor:
    """[K, K-1] weights over the OTHER tasks (row t lists tasks 0..K-1 without t, in order) ->
    [K, K] with a zero diagonal: entry [t, i] is the weight of task i in task t's prior."""
    K = weights.shape[0]
    full = weights.new_zeros(K, K)
    off = ~torch.eye(K, dtype=torch.bool, device=weights.device)
    full[off] = weights.reshape(-1)
    return full


# ---------------------------------------------------------------- random draws


def dropout(x: Tensor, p: float, source: RandomSource) -> Tensor:
    """Inverted dropout with a mask from the method's stream (not torch's global RNG)."""
    if p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    keep = source.uniform(tuple(x.shape), 0.0, 1.0, device=x.device) >= p
    return x * keep.to(x.dtype) / (1.0 - p)


def reparameterize(mu: Tensor, logvar: Tensor, source: RandomSource, n: int | None = None) -> Tensor:
    """mu + sigma * eps, eps ~ N(0, I); with n, n independent draws stacked along a new dim 0."""
    shape = tuple(mu.shape) if n is None else (n,) + tuple(mu.shape)
    eps = source.normal(shape, device=mu.device, dtype=mu.dtype)
    return mu + (0.5 * logvar).exp() * eps


def eval_source(device: torch.device, seed: int) -> RandomSource:
    """A generator re-seeded at every call: evaluation draws are deterministic."""
    return RandomSource(torch.Generator(device=device).manual_seed(int(seed)))


def mc_average_output(samples: Tensor, kind: str) -> Tensor:
    """[S, B, out] per-sample task outputs -> [B, out] whose predictive probability is the
    average of the S per-sample probabilities (VMTL Eq. 12): log-probabilities for multi-class
    (softmax gives the average), the logit of the averaged probability for binary tasks (sigmoid
    gives the average), the mean prediction for regression."""
    S = samples.shape[0]
    log_s = math.log(S)
    if kind == "regression":
        return samples.mean(0)
    if kind == "binary":
        log_p = torch.logsumexp(F.logsigmoid(samples), 0) - log_s
        log_not_p = torch.logsumexp(F.logsigmoid(-samples), 0) - log_s
        return log_p - log_not_p
    return torch.logsumexp(torch.log_softmax(samples, -1), 0) - log_s


# ---------------------------------------------------------------- modules


def new_linear(d_in: int, d_out: int, source: RandomSource, bias: bool = True,
               bias_value: float | None = None, weight_scale: float = 1.0) -> nn.Linear:
    """nn.Linear initialised from the method's stream: U(-b, b), b = 1/sqrt(d_in) (PyTorch's
    default bound), without touching the global RNG. bias_value: a constant bias instead."""
    layer = nn.utils.skip_init(nn.Linear, d_in, d_out, bias=bias)
    bound = 1.0 / math.sqrt(d_in)
    with torch.no_grad():
        layer.weight.copy_(source.uniform(tuple(layer.weight.shape), -bound, bound) * weight_scale)
        if bias:
            if bias_value is None:
                layer.bias.copy_(source.uniform((d_out,), -bound, bound))
            else:
                layer.bias.fill_(bias_value)
    return layer


def new_mlp(d_in: int, d_out: int, hidden: int, source: RandomSource, activation: type = nn.ReLU,
            **last_kwargs: Any) -> nn.Module:
    """Linear (hidden = 0) or Linear-activation-Linear (one hidden layer)."""
    if not hidden:
        return new_linear(d_in, d_out, source, **last_kwargs)
    return nn.Sequential(new_linear(d_in, hidden, source), activation(),
                         new_linear(hidden, d_out, source, **last_kwargs))


class SharedRef:
    """A reference a module keeps to a method-level object (the random stream): a deep copy of
    the model shares it instead of copying it."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __deepcopy__(self, memo):
        return self


class ForwardCache:
    """Per-forward tensors a head leaves for the regularizer; a deep copy starts empty."""

    def __init__(self):
        self.data: dict[str, Any] = {}

    def put(self, **items: Any) -> None:
        self.data = dict(items)

    def pop(self) -> dict[str, Any]:
        data, self.data = self.data, {}
        return data

    def __deepcopy__(self, memo):
        return ForwardCache()


def n_score_vectors(kind: str, out_dim: int) -> int:
    """Class score vectors a Bayesian classifier keeps: 2 for binary (output = s1 - s0, so that
    sigmoid(output) = softmax(s)[1]), C for multi-class, 1 for regression."""
    if kind == "binary":
        return 2
    if kind == "multiclass":
        return out_dim
    return 1


def scores_to_output(scores: Tensor, kind: str) -> Tensor:
    """[..., n_score_vectors] -> the task output [..., out_dim]."""
    if kind == "binary":
        return scores[..., 1:2] - scores[..., 0:1]
    return scores


# ---------------------------------------------------------------- the methods' base class


class ProbabilisticWeighting(Weighting):
    """LS loss combination (sum of the task losses, as `ls`) plus probabilistic task heads
    (`build_heads`) and their extra loss terms (`regularizer`). Not registered (no name).

    Subclasses set `DEFAULTS` (hyper-parameter name -> default) and implement `build_heads` /
    `regularizer`. `self.random` is the method's random stream.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def hparam_names(cls) -> Sequence[str]:
        return tuple(cls.DEFAULTS)

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        if len(self.task_kinds) != n_tasks:
            raise ValueError(f"{self.name}: {len(self.task_kinds)} task kinds for {n_tasks} tasks")
        for k, kind in enumerate(self.task_kinds):
            if kind not in TASK_KINDS:
                raise ValueError(f"{self.name}: task {k} has kind {kind!r}; expected one of {TASK_KINDS}")
        self.hp = {**self.DEFAULTS, **hparams}
        self.random = RandomSource(generator)

    # -- hyper-parameter checks shared by the subclasses
    def _check_nonnegative(self, *keys: str) -> None:
        for key in keys:
            if not float(self.hp[key]) >= 0.0:
                raise ValueError(f"{self.name}: {key} must be >= 0, got {self.hp[key]}")

    def _check_positive(self, *keys: str) -> None:
        for key in keys:
            if not float(self.hp[key]) > 0.0:
                raise ValueError(f"{self.name}: {key} must be > 0, got {self.hp[key]}")

    def _check_optional_dim(self, *keys: str) -> None:
        for key in keys:
            value = self.hp[key]
            if value is not None and (int(value) != value or int(value) < 0):
                raise ValueError(f"{self.name}: {key} must be a non-negative integer or null, got {value}")

    def _check_tasks(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.n_tasks:
            raise ValueError(f"{self.name}: built for {self.n_tasks} tasks, got {len(tasks)}")

    # -- the loss combination of LS
    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones_like(losses)

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return losses.sum()  # an absent task's loss is 0

    # -- only a private fallback generator is state (the loop checkpoints its own)
    def state_dict(self) -> dict[str, Any]:
        return self.random.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.random.load_state_dict(state)
