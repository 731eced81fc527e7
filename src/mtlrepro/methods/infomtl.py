"""InfoMTL (Hu, Wei, Zhou & Hu, AAAI 2025): an information-theoretic multi-task representation
learning framework, max sum_t [I(Y_t; Z_t) - beta I(X; Z_t)] + alpha I(X; Z) (Eq. 6).

The paper releases no code; this is our implementation of its text, with the details it leaves
open taken from the same authors' public code for the two components it says it follows (SPC,
Hu et al. 2024a, for TIMin; CIFM, Hu et al. 2024b, for the InfoNCE of SIMax).

SIMax (Eq. 2): cross-entropy per task + alpha * InfoNCE between the shared representation z and
  a second view z+ of it made by dropout, with in-batch negatives, cosine similarity and
  temperature tau.
TIMin (Eq. 4-5): a stochastic head per task maps the shared representation to a diagonal
  Gaussian in the task's output space R^{|Y_t|} (mean and log-variance each by an MLP with one
  hidden layer), the prediction is made from a reparameterised sample z_t = mu + sigma * eps
  (the mean at evaluation), and beta * KL(q(z_t|z) || N(0, I)) compresses it.

The total loss of a step is  sum_t CE_t + beta * sum_t mean_n KL_t,n + alpha * T * InfoNCE,
i.e. T times the paper's  E_t[CE_t + beta KL_t] + alpha InfoNCE  (Eq. 2 + Eq. 4 with E_t the mean
over tasks): the task losses are combined by the plain sum as the `ls` baseline does (so that
`infomtl` with alpha = beta = 0 is LS with the same heads), and the regulariser is scaled so that
alpha and beta keep the paper's meaning relative to the task losses.

Hyper-parameters (defaults: the paper's Table 8, RoBERTa column, the backbone of its headline
results):
  alpha        0.1   weight of InfoNCE (searched in {0.001, 0.01, 0.1, 1}; BERT: 0.01)
  beta         0.01  weight of the KL terms (same grid; BERT: 1)
  tau          1.0   InfoNCE temperature (searched in {0.1, 1}; BERT: 0.1)
  dropout      0.2   dropout rate (searched in {0, 0.2}; BERT: 0) -- the rate of the head-input
                     dropout of the authors' task modules and of the two InfoNCE views here
  hidden_dim   null  hidden width of the mean / log-variance MLPs (null: the representation
                     width; 0: a single linear layer, as in the SPC code)
  second_view  "dropout"  how z+ is made: "dropout" -- both views are independent dropout masks
                     on the same representation h (no second forward pass; with dropout = 0 the
                     two views coincide); "encode" -- z+ = dropout(model.encode(inputs)), a second
                     forward pass of the encoder as in the CIFM code, which picks up dropout inside
                     the encoder (note: in train mode batch-norm running statistics are then
                     updated twice per step).

Choices the paper leaves open (documented deviations / interpretations):
* The heads apply dropout to their input in train mode before the mean branch only, as SPC's
  StochasticTaskModule does; the two InfoNCE views use fresh masks (independent of the heads').
  All masks come from the method's generator.
* The KL is the analytic KL summed over the output dimensions (the paper's formula); SPC's code
  averages over dimensions instead. It is averaged over all examples of the batch (the
  compression term is over p(x), whether or not the example has a label for the task).
* The MLP activation is ReLU (not stated in the paper).
* Binary tasks use a 1-dimensional output space (one logit, sigmoid), multi-class tasks a
  C-dimensional one (softmax), regression a 1-dimensional one (the prediction itself).

Ablations, registered separately: `infomtl_no_simax` (alpha = 0: no InfoNCE, no tau or
second_view hyper-parameter) and `infomtl_no_timin` (deterministic heads -- the mean branch only,
same architecture and dropout -- and no KL; no beta). Without both it is EW/LS (`ls`), up to the
head architecture.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from ._probabilistic import (ForwardCache, ProbabilisticWeighting, SharedRef, clamp_logvar, dropout,
                             info_nce, kl_standard_normal, new_mlp, reparameterize)
from .rlw import RandomSource

_SECOND_VIEWS = ("dropout", "encode")


class InfoMTLHead(nn.Module):
    """h [B, d] -> task output [B, out_dim]. Stochastic (TIMin): mean and log-variance MLPs, a
    reparameterised sample in train mode, the mean in eval mode. Deterministic: the mean MLP."""

    def __init__(self, rep_dim: int, out_dim: int, hidden: int, p_dropout: float, stochastic: bool,
                 source: RandomSource):
        super().__init__()
        self.mu = new_mlp(rep_dim, out_dim, hidden, source)
        self.logvar = new_mlp(rep_dim, out_dim, hidden, source) if stochastic else None
        self.p_dropout = float(p_dropout)
        self._random = SharedRef(source)
        self._cache = ForwardCache()

    @property
    def stochastic(self) -> bool:
        return self.logvar is not None

    def distribution(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z_t | z) without dropout."""
        if self.logvar is None:
            raise RuntimeError("a deterministic InfoMTL head has no distribution")
        return self.mu(h), clamp_logvar(self.logvar(h))

    def forward(self, h: Tensor) -> Tensor:
        if not self.training:
            return self.mu(h)
        source = self._random.value
        mu = self.mu(dropout(h, self.p_dropout, source))
        if self.logvar is None:
            return mu
        logvar = clamp_logvar(self.logvar(h))
        self._cache.put(mu=mu, logvar=logvar)
        return reparameterize(mu, logvar, source)

    def pop_cache(self) -> dict[str, Any]:
        return self._cache.pop()


class InfoMTL(ProbabilisticWeighting):
    name = "infomtl"
    DEFAULTS = {"alpha": 0.1, "beta": 0.01, "tau": 1.0, "dropout": 0.2, "hidden_dim": None,
                "second_view": "dropout"}
    simax = True
    timin = True

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        hp = self.hp
        self.alpha = float(hp.get("alpha", 0.0)) if self.simax else 0.0
        self.beta = float(hp.get("beta", 0.0)) if self.timin else 0.0
        self.tau = float(hp.get("tau", 1.0))
        self.p_dropout = float(hp["dropout"])
        self.second_view = hp.get("second_view", "dropout")
        self._check_nonnegative(*[k for k in ("alpha", "beta") if k in hp])
        if not self.tau > 0:
            raise ValueError(f"{self.name}: tau must be > 0, got {self.tau}")
        if not 0.0 <= self.p_dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must lie in [0, 1), got {self.p_dropout}")
        self._check_optional_dim("hidden_dim")
        if self.second_view not in _SECOND_VIEWS:
            raise ValueError(f"{self.name}: second_view must be one of {_SECOND_VIEWS}, "
                             f"got {self.second_view!r}")

    def build_heads(self, rep_dim: int, tasks: Sequence[Any]) -> nn.ModuleList:
        self._check_tasks(tasks)
        hidden = rep_dim if self.hp["hidden_dim"] is None else int(self.hp["hidden_dim"])
        return nn.ModuleList(InfoMTLHead(rep_dim, t.out_dim, hidden, self.p_dropout, self.timin, self.random)
                             for t in tasks)

    def kl_term(self, heads) -> Tensor | None:
        """beta * sum_t mean_n KL(q(z_t|z_n) || N(0, I)) from the heads' last train forward."""
        total = None
        for head in heads:
            cache = head.pop_cache() if isinstance(head, InfoMTLHead) else {}
            if not cache or self.beta == 0.0:
                continue
            kl = kl_standard_normal(cache["mu"], cache["logvar"]).mean()
            total = kl if total is None else total + kl
        return None if total is None else self.beta * total

    def infonce_term(self, model, inputs, h: Tensor) -> Tensor | None:
        """alpha * T * InfoNCE(dropout(h), dropout(h+)) (SIMax, Eq. 2)."""
        if self.alpha == 0.0:
            return None
        positive = model.encode(inputs) if self.second_view == "encode" else h
        anchor_view = dropout(h, self.p_dropout, self.random)
        positive_view = dropout(positive, self.p_dropout, self.random)
        return self.alpha * self.n_tasks * info_nce(anchor_view, positive_view, self.tau)

    def regularizer(self, model, inputs, h: Tensor, targets: Tensor) -> Tensor | None:
        terms = [t for t in (self.kl_term(model.heads), self.infonce_term(model, inputs, h)) if t is not None]
        if not terms:
            return None
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total


class InfoMTLNoSIMax(InfoMTL):
    """InfoMTL w/o SIMax (Table 4): alpha = 0, TIMin heads and KL only."""

    name = "infomtl_no_simax"
    DEFAULTS = {"beta": 0.01, "dropout": 0.2, "hidden_dim": None}
    simax = False


class InfoMTLNoTIMin(InfoMTL):
    """InfoMTL w/o TIMin (Table 4): deterministic heads (the mean MLP), no KL; SIMax kept."""

    name = "infomtl_no_timin"
    DEFAULTS = {"alpha": 0.1, "tau": 1.0, "dropout": 0.2, "hidden_dim": None, "second_view": "dropout"}
    timin = False
