"""BayesAgg-MTL (Achituve, Diamant, Netzer, Chechik, Fetaya; ICML 2024): gradient aggregation on
the shared representation h, weighting every task, example and dimension by the precision of
the gradient induced by a Bayesian posterior over the task's linear head.

Per step (``aggregate``):
  1. posterior of each head given the batch, with the full-data posterior of the previous epoch
     as prior (before the first ``end_epoch``: the full-data posterior on the warm-started
     model's features, ``prior_from_warm_start``, or the isotropic N(0, prior_scale I)):
     regression -> closed form (Eq. 2); binary / multi-class -> second-order expansion around the
     current head with the Newton-step mean and GGN precision (Eq. 8-10);
  2. mean mu_ik and diagonal variance of the per-example gradient g_ik = dloss_ik/dh_i:
     regression -> closed form (Eq. 4); classification -> Monte Carlo with `mc_samples` draws
     (Eq. 11), or Gauss-Hermite quadrature for binary tasks (``classification_moments=
     "quadrature"``);
  3. Eq. 7 with the power s: alpha_ik = lambda_ik^s / sum_k lambda_ik^s (element-wise,
     lambda = 1/Var), g_i = sum_k alpha_ik mu_ik.

Returned direction: ``g_i / B`` for every example i, shape [B, d] -- the paper's Algorithm 1
(``1/|B| sum_i g_i dh_i/dtheta``). This is on the per-example x 1/B scale of ``ctx.G``; because the
alpha's sum to one over tasks it is a task-weighted MEAN, i.e. with all precisions equal it is
``ctx.G.mean(0)`` (when no label is missing and the posterior mean equals the heads), not the
LS sum ``ctx.G.sum(0)``.

Regression heads are not learned (``learns_head(k)`` is False): after every step the batch
posterior mean is written into the head, and at ``end_epoch`` the full-data posterior mean (the
paper's prediction weights). Classification heads are learned by the optimiser as usual.

Loop contract: ``aggregate(ctx)`` after the backward pass that produced ``ctx.G`` (it writes the
regression heads in place), ``h.backward(direction)``, optimiser step without the regression
heads; ``end_epoch(mean_losses)`` once per epoch before evaluation; ``state_dict`` /
``load_state_dict`` (+ ``set_heads(model.heads)`` after a resume); ``last_weights()`` for the
last batch or ``weights_for(h, targets)`` for a fixed logging set (no side effects);
``start_from_warm_up(model, features)`` before the first step of a warm start, which calls
``fit_prior(H, T, heads)`` on the warm-started model's training features
(``prior_from_warm_start``, default) instead of starting from the isotropic prior.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from . import _bayesagg_posterior as P
from ._bayesagg_batch import (StepBatch, augment, check_context, head_dims, head_parameters,
                              prepare_batch, write_regression_heads)
from .base import Aggregator, GradientContext

_KINDS = ("regression", "binary", "multiclass")
_DEFAULTS: dict[str, Any] = {
    "power_regression": 0.9,        # s for regression tasks
    "power_classification": 5e-3,   # s for binary and multi-class tasks
    "mc_samples": 1024,             # J, Monte-Carlo draws per classification task and step
    "prior_scale": 1.0,             # variance of the isotropic prior of the full-data posterior
    # the same for classification heads; None = prior_scale. The authors' code sets it per task
    # type (CIFAR-MTL: 5e-4): logistic heads need a tighter prior than regression heads.
    "prior_scale_classification": None,
    "jitter": 1e-8,                 # first Cholesky jitter (x mean diagonal), grows x10 per retry
    "cholesky_retries": 8,
    "var_floor": 1e-12,             # absolute floor of a gradient variance
    "classification_moments": "mc", # "mc" (paper) or "quadrature" (binary tasks only)
    "quadrature_nodes": 64,
    "seed": 0,                      # seeds the generator when none is given
    # the first epoch's prior: the full-data posterior on the warm-started (LS) model's training
    # features, as the authors' code has it; False = the isotropic N(0, prior_scale I)
    "prior_from_warm_start": True,
}


class BayesAgg(Aggregator):
    name = "bayesagg"
    warm_start = True
    per_dimension_weights = True
    default_level = "representation"
    levels = ("representation",)

    @classmethod
    def hparam_names(cls) -> Sequence[str]:
        return tuple(_DEFAULTS)

    def __init__(self, n_tasks, task_kinds=None, generator=None, level=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, level=level, **hparams)
        if self.level != "representation":
            raise ValueError("bayesagg works on the shared representation only (level="
                             f"'representation'), got level={self.level!r}")
        if len(self.task_kinds) != n_tasks:
            raise ValueError(f"bayesagg: {len(self.task_kinds)} task kinds for {n_tasks} tasks")
        for k, kind in enumerate(self.task_kinds):
            if kind not in _KINDS:
                raise ValueError(f"bayesagg: task {k} has kind {kind!r}; expected one of {_KINDS}")
        hp = dict(_DEFAULTS)
        hp.update(hparams)
        self.hp = hp
        for key in ("power_regression", "power_classification"):
            if not 0.0 <= float(hp[key]) <= 1.0:
                raise ValueError(f"bayesagg: {key} must lie in [0, 1], got {hp[key]}")
        if hp["prior_scale_classification"] is None:
            hp["prior_scale_classification"] = hp["prior_scale"]
        for key in ("prior_scale", "prior_scale_classification", "jitter"):
            if not float(hp[key]) > 0:
                raise ValueError(f"bayesagg: {key} must be > 0, got {hp[key]}")
        for key in ("mc_samples", "quadrature_nodes", "cholesky_retries"):
            if int(hp[key]) < 1:
                raise ValueError(f"bayesagg: {key} must be >= 1, got {hp[key]}")
        if not isinstance(hp["prior_from_warm_start"], bool):
            raise ValueError("bayesagg: prior_from_warm_start must be true or false, got "
                             f"{hp['prior_from_warm_start']!r}")
        if hp["classification_moments"] not in ("mc", "quadrature"):
            raise ValueError("bayesagg: classification_moments must be 'mc' or 'quadrature', got "
                             f"{hp['classification_moments']!r}")
        self.reg_idx = [k for k, t in enumerate(self.task_kinds) if t == "regression"]
        self.bin_idx = [k for k, t in enumerate(self.task_kinds) if t == "binary"]
        self.mc_idx = [k for k, t in enumerate(self.task_kinds) if t == "multiclass"]
        self.powers = torch.tensor([float(hp["power_regression"]) if t == "regression"
                                    else float(hp["power_classification"])
                                    for t in self.task_kinds])
        # full-data prior (None until the first step tells us d and the class counts)
        self.prior: dict[str, Any] | None = None
        self.prior_version = 0
        self._dims: dict[str, Any] | None = None  # d, bias, class counts
        self._buf_h: list[Tensor] = []
        self._buf_t: list[Tensor] = []
        self._heads: list | None = None
        self._last: dict[str, Any] = {}
        self._consts: dict = {}

    # ------------------------------------------------------------------------------------------
    # public helpers for the training loop
    # ------------------------------------------------------------------------------------------
    def learns_head(self, k: int) -> bool:
        """False for regression tasks: their head holds the posterior mean written by this
        method and must not be updated by the optimiser."""
        return self.task_kinds[k] != "regression"

    def set_heads(self, heads) -> None:
        """Tell the method which head modules to read/write at ``end_epoch`` (only needed when
        ``end_epoch`` runs before any ``aggregate`` call, e.g. right after a resume)."""
        self._heads = list(heads)

    def last_weights(self, reduce: str = "none") -> Tensor | None:
        """The alpha of the last step: [K, B, d] (``reduce="none"``) or averaged over the
        representation dimensions, [K, B] (``reduce="dims"``, the paper's Figure 3 view)."""
        a = self._last.get("alpha")
        if a is None or reduce == "none":
            return a
        if reduce == "dims":
            return a.mean(-1)
        raise ValueError(f"last_weights: reduce must be 'none' or 'dims', got {reduce!r}")

    def last_moments(self) -> tuple[Tensor, Tensor] | None:
        """(E[g], Var[g]) of the last step, each [K, B, d], per-example (not divided by B)."""
        if "mu" not in self._last:
            return None
        return self._last["mu"], self._last["var"]

    def last_posterior(self, k: int) -> tuple[Tensor, Tensor]:
        """(mean, precision) of task k's batch posterior in the last step (float64; the mean is
        [D] or [C*D] class-major, D = d + 1 with the bias last)."""
        return self._last["posterior"][k]

    def prior_of(self, k: int) -> tuple[Tensor, Tensor]:
        """(mean, precision) of the prior task k's batch posteriors currently use."""
        if self.prior is None:
            raise RuntimeError("bayesagg: no prior yet (call aggregate once)")
        grp, j = self._where(k)
        if grp == "multiclass":
            return self.prior["mc_mean"][j], self.prior["mc_prec"][j]
        key = "reg" if grp == "regression" else "bin"
        return self.prior[f"{key}_mean"][j], self.prior[f"{key}_prec"][j]

    def set_prior(self, k: int, mean: Tensor, precision: Tensor) -> None:
        """Overwrite task k's prior (tests, or seeding the prior from an LS checkpoint)."""
        if self.prior is None:
            raise RuntimeError("bayesagg: set_prior needs the dimensions; call aggregate once")
        grp, j = self._where(k)
        if grp == "multiclass":
            self.prior["mc_mean"][j] = mean.to(self.prior["mc_mean"][j])
            self.prior["mc_prec"][j] = precision.to(self.prior["mc_prec"][j])
            return
        key = "reg" if grp == "regression" else "bin"
        self.prior[f"{key}_mean"][j] = mean.to(self.prior[f"{key}_mean"])
        self.prior[f"{key}_prec"][j] = precision.to(self.prior[f"{key}_prec"])
        if grp == "regression":
            self.prior["reg_shared"] = P.all_equal(self.prior["reg_prec"])

    def to(self, device: torch.device) -> "BayesAgg":
        if self.prior is not None:
            self.prior = P.nested_to(self.prior, device)
        self._buf_h = [t.to(device) for t in self._buf_h]
        self._buf_t = [t.to(device) for t in self._buf_t]
        return self

    # ------------------------------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------------------------------
    def combine(self, G: Tensor) -> Tensor:
        raise TypeError("bayesagg needs the representation, targets and heads: call "
                        "aggregate(GradientContext(G, h=..., targets=..., heads=...))")

    def aggregate(self, ctx: GradientContext) -> Tensor:
        """The update direction for h, [B, d] (see the module docstring for its scale). Side
        effects: regression heads <- batch posterior mean; (h, targets) buffered for the
        full-data prior; last_weights / last_moments / last_posterior updated; MC draws advance
        the generator."""
        G, h, T, heads = check_context(ctx, self.n_tasks)
        return self._step(h, T, heads, commit=True, generator=None)

    def weights_for(self, h: Tensor, targets: Tensor, heads=None, reduce: str = "none",
                    generator: torch.Generator | None = None) -> Tensor:
        """alpha for a given set of examples (e.g. a fixed logging set, the paper's Figure 3)
        under the current prior, with NO side effects: no head write, no buffering, and MC
        draws from `generator` (default: a fresh one seeded with seed + 1), never from the
        training generator. [K, B, d], or [K, B] with ``reduce="dims"``."""
        heads = list(heads) if heads is not None else self._heads
        if heads is None:
            raise RuntimeError("bayesagg.weights_for: heads unknown; pass them")
        B, d = h.shape
        if tuple(targets.shape) != (B, self.n_tasks) or len(heads) != self.n_tasks:
            raise ValueError("bayesagg.weights_for: targets must be [B, K] with K heads")
        if generator is None:
            generator = torch.Generator(device=h.device)
            generator.manual_seed(int(self.hp["seed"]) + 1)
        alpha = self._step(h, targets, heads, commit=False, generator=generator)
        return alpha.mean(-1) if reduce == "dims" else alpha

    def _step(self, h: Tensor, T: Tensor, heads, commit: bool, generator):
        B, d = h.shape
        dev = h.device
        fdt = h.dtype if h.dtype in (torch.float32, torch.float64) else torch.float32
        if commit:
            self._heads = list(heads)
            generator = self._generator(dev)
        self._ensure_dims(heads, d, dev)
        b = prepare_batch(h, T, fdt, self._dims["bias"])
        # one (task indices, E[g], Var[g]) part and posterior entries per group; the groups run in
        # this order so that the MC draws consume the generator in it
        groups = []
        if self.reg_idx:
            groups.append(self._regression_part(b, heads, commit))
        if self.bin_idx:
            groups.append(self._binary_part(b, heads, generator))
        for j, k in enumerate(self.mc_idx):
            groups.append(self._multiclass_part(b, heads, j, k, generator))
        post = {k: entry for _, entries in groups for k, entry in entries.items()}
        mu, var = P.assemble_moments([part for part, _ in groups], self.n_tasks)
        powers, rel = self._weight_consts(fdt, dev)
        alpha = P.precision_weights(mu, var, powers, None if b.all_lab else b.M.T,
                                    float(self.hp["var_floor"]), rel)
        if not commit:
            return alpha
        direction = (alpha * mu).sum(0).div_(B)
        self._last = {"alpha": alpha, "mu": mu, "var": var, "posterior": post}
        self._buf_h.append(b.X[:, :d].clone())
        self._buf_t.append(b.T.clone())
        return direction.to(h.dtype)

    def _regression_part(self, b: StepBatch, heads, commit: bool):
        """Closed-form batch posterior (Eq. 2) and gradient moments (Eq. 4) of the regression
        heads; a committed step writes the posterior mean into them."""
        idx, pr = self.reg_idx, self.prior
        Y = P.columns(b.labels(), idx)
        Mr = torch.ones_like(Y) if b.all_lab else P.columns(b.M, idx).to(b.fdt)
        shared = b.all_lab and bool(pr["reg_shared"])
        mean, prec, L = P.regression_posterior(
            b.X64, Y.to(P.LA_DTYPE), Mr.to(P.LA_DTYPE), pr["reg_mean"], pr["reg_prec"],
            shared=shared, gram_dtype=b.fdt, **self._cholesky_options(idx))
        cov = torch.cholesky_inverse(L)
        part = (idx, *P.regression_moments(b.X, Y.to(b.fdt), mean.to(b.fdt), cov.to(b.fdt), b.d))
        entries = {k: (mean[j], prec[j if prec.shape[0] > 1 else 0]) for j, k in enumerate(idx)}
        if commit:
            self._write_regression_heads(heads, mean)
        return part, entries

    def _binary_part(self, b: StepBatch, heads, generator):
        """Laplace batch posterior around the current binary heads (Eq. 8-10) and gradient
        moments by Monte Carlo (Eq. 11) or Gauss-Hermite quadrature."""
        idx, pr = self.bin_idx, self.prior
        Y = P.columns(b.labels(), idx)
        Mb = torch.ones_like(Y) if b.all_lab else P.columns(b.M, idx).to(Y.dtype)
        theta_hat = self._theta_hat(heads, idx).to(device=b.X.device, dtype=P.LA_DTYPE)
        mean, prec, L = P.binary_laplace_posterior(
            b.X64, Y.to(P.LA_DTYPE), Mb.to(P.LA_DTYPE), theta_hat, pr["bin_mean"],
            pr["bin_prec"], gram_dtype=b.fdt, **self._cholesky_options(idx))
        Y, Mb = Y.to(b.fdt), Mb.to(b.fdt)
        if self.hp["classification_moments"] == "quadrature":
            mom = P.binary_quadrature_moments(
                b.X, Y, Mb, mean.to(b.fdt), torch.cholesky_inverse(L).to(b.fdt), b.d,
                int(self.hp["quadrature_nodes"]))
        else:
            mom = P.binary_mc_moments(b.X, Y, None if b.all_lab else Mb, mean.to(b.fdt),
                                      P.tril_inverse(L).to(b.fdt), b.d,
                                      int(self.hp["mc_samples"]), generator)
        return (idx, *mom), {k: (mean[j], prec[j]) for j, k in enumerate(idx)}

    def _multiclass_part(self, b: StepBatch, heads, j: int, k: int, generator):
        """Laplace batch posterior around multi-class head k (the j-th one; Eq. 8-10) and its
        gradient moments by Monte Carlo (Eq. 11)."""
        C = self._dims["classes"][k]
        theta_hat = self._theta_hat(heads, [k])[0].to(device=b.X.device, dtype=P.LA_DTYPE)
        y = b.labels()[:, k].long()
        B = b.X.shape[0]
        mk = torch.ones(B, dtype=b.fdt, device=b.X.device) if b.all_lab else b.M[:, k].to(b.fdt)
        mean, prec, L = P.multiclass_laplace_posterior(
            b.X64, y, mk.to(P.LA_DTYPE), theta_hat, self.prior["mc_mean"][j],
            self.prior["mc_prec"][j], gram_dtype=b.fdt, **self._cholesky_options([k]))
        moments = P.multiclass_mc_moments(
            b.X, y, None if b.all_lab else mk, mean.to(b.fdt), L.to(b.fdt), C, b.d,
            int(self.hp["mc_samples"]), generator)
        return ([k], *moments), {k: (mean, prec)}

    # ------------------------------------------------------------------------------------------
    # the full-data prior
    # ------------------------------------------------------------------------------------------
    def start_from_warm_up(self, model, features) -> None:
        """With ``prior_from_warm_start`` (default): the full-data posterior on the warm-started
        model's training features (``features()``: H [N, d], T [N, K]) becomes the prior of the
        first epoch (``prior_version`` 1) and its mean the regression heads, via ``fit_prior``.
        Without it the first epoch keeps the isotropic prior."""
        if self.hp["prior_from_warm_start"]:
            H, T = features()
            self.fit_prior(H, T, model.heads)

    def end_epoch(self, mean_losses: Tensor | None = None) -> None:
        """Posterior of every head on all (h, target) pairs seen since the last call, under the
        isotropic prior N(0, prior_scale I); it becomes the prior of every batch of the next
        epoch (``prior_version`` += 1). Regression heads receive its mean."""
        if not self._buf_h:
            return
        H = torch.cat(self._buf_h)
        T = torch.cat(self._buf_t)
        self.fit_prior(H, T, self._heads)
        self._buf_h, self._buf_t = [], []

    def fit_prior(self, H: Tensor, T: Tensor, heads=None) -> None:
        """Make the posterior on (H [N, d], T [N, K]) the prior of the following batches and write
        its mean into the regression heads. ``end_epoch`` calls it on the epoch's buffers; a
        loop may also call it once before the first BayesAgg step with the features of the
        warm-start (LS) model on the training set, as the authors' code does."""
        heads = list(heads) if heads is not None else self._heads
        self.prior = self.full_data_posterior(H, T, heads)
        self.prior_version += 1
        if heads is not None:
            self._heads = heads
            if self.reg_idx:
                self._write_regression_heads(heads, self.prior["reg_mean"])

    def full_data_posterior(self, H: Tensor, T: Tensor, heads=None) -> dict[str, Any]:
        """Posterior of every head given features H [N, d] and targets T [N, K] under the
        isotropic prior (classification: Newton step from the current heads). Returns a prior
        dict (the format of ``self.prior``)."""
        d = H.shape[1]
        dev = H.device
        if self._dims is None:
            if heads is None:
                raise RuntimeError("bayesagg: full_data_posterior needs the heads first")
            self._ensure_dims(heads, d, dev)
        iso = self._isotropic_prior(d, dev)
        if (self.bin_idx or self.mc_idx) and heads is None:
            raise RuntimeError("bayesagg.end_epoch: classification heads unknown; call "
                               "set_heads(heads) first (e.g. after load_state_dict)")
        X64 = augment(H.to(P.LA_DTYPE), self._dims["bias"])
        M = ~torch.isnan(T)
        Tz = torch.where(M, T, torch.zeros_like(T)).to(P.LA_DTYPE)
        Mf = M.to(P.LA_DTYPE)
        out = dict(iso)
        if self.reg_idx:
            idx = self.reg_idx
            shared = bool(M[:, idx].all())
            mean, prec, _ = P.regression_posterior(
                X64, Tz[:, idx], Mf[:, idx], iso["reg_mean"], iso["reg_prec"], shared=shared,
                **self._cholesky_options(idx))
            out["reg_mean"] = mean
            out["reg_prec"] = prec.expand(len(idx), -1, -1).clone() if shared else prec
            out["reg_shared"] = shared or P.all_equal(prec)
        if self.bin_idx:
            idx = self.bin_idx
            theta_hat = self._theta_hat(heads, idx).to(device=dev, dtype=P.LA_DTYPE)
            mean, prec, _ = P.binary_laplace_posterior(
                X64, Tz[:, idx], Mf[:, idx], theta_hat, iso["bin_mean"], iso["bin_prec"],
                **self._cholesky_options(idx))
            out["bin_mean"], out["bin_prec"] = mean, prec
        out["mc_mean"], out["mc_prec"] = [], []
        for j, k in enumerate(self.mc_idx):
            theta_hat = self._theta_hat(heads, [k])[0].to(device=dev, dtype=P.LA_DTYPE)
            mean, prec, _ = P.multiclass_laplace_posterior(
                X64, Tz[:, k].long(), Mf[:, k], theta_hat, iso["mc_mean"][j], iso["mc_prec"][j],
                **self._cholesky_options([k]))
            out["mc_mean"].append(mean)
            out["mc_prec"].append(prec)
        return out

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        gen = self.generator
        return {
            "prior_version": self.prior_version,
            "dims": None if self._dims is None else dict(self._dims),
            "prior": None if self.prior is None else P.clone_nested(self.prior),
            "buffer_h": torch.cat(self._buf_h).clone() if self._buf_h else None,
            "buffer_targets": torch.cat(self._buf_t).clone() if self._buf_t else None,
            "generator_state": None if gen is None else gen.get_state().clone(),
            "generator_device": None if gen is None else str(gen.device),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prior_version = int(state["prior_version"])
        self._dims = None if state["dims"] is None else dict(state["dims"])
        self.prior = None if state["prior"] is None else P.clone_nested(state["prior"])
        self._buf_h = [] if state["buffer_h"] is None else [state["buffer_h"].clone()]
        self._buf_t = [] if state["buffer_targets"] is None else [state["buffer_targets"].clone()]
        if state["generator_state"] is not None:
            if self.generator is None:
                self.generator = torch.Generator(device=state["generator_device"])
            self.generator.set_state(state["generator_state"].clone())
        self._last = {}

    # ------------------------------------------------------------------------------------------
    # internals
    # ------------------------------------------------------------------------------------------
    def _ensure_dims(self, heads, d: int, dev) -> None:
        dims = head_dims(heads, self.task_kinds, d)
        if self._dims is not None and self._dims != dims:
            raise ValueError(f"bayesagg: heads/representation changed shape: {self._dims} -> {dims}")
        self._dims = dims
        if self.prior is None:
            self.prior = self._isotropic_prior(d, dev)

    def _isotropic_prior(self, d: int, dev) -> dict[str, Any]:
        D = d + 1 if self._dims["bias"] else d
        return P.isotropic_prior(D, len(self.reg_idx), len(self.bin_idx),
                                 [self._dims["classes"][k] for k in self.mc_idx],
                                 self.hp["prior_scale"], self.hp["prior_scale_classification"], dev)

    def _theta_hat(self, heads, idx) -> Tensor:
        return head_parameters(heads, idx, self._dims["bias"],
                               multiclass=self.task_kinds[idx[0]] == "multiclass")

    def _write_regression_heads(self, heads, mean: Tensor) -> None:
        write_regression_heads(heads, self.reg_idx, mean, self._dims["d"], self._dims["bias"])

    def _weight_consts(self, fdt, dev) -> tuple[Tensor, Tensor | None]:
        """(powers s_k [K], relative variance floors [K] or None), cached per dtype/device.
        The relative floor applies to Monte-Carlo tasks only (see P.MC_REL_VAR_FLOOR)."""
        key = (fdt, str(dev))
        if key not in self._consts:
            quad = self.hp["classification_moments"] == "quadrature"
            mc = [kind == "multiclass" or (kind == "binary" and not quad)
                  for kind in self.task_kinds]
            self._consts[key] = (self.powers.to(device=dev, dtype=fdt),
                                 P.relative_var_floors(mc, fdt, dev))
        return self._consts[key]

    def _cholesky_options(self, idx) -> dict[str, Any]:
        """The factorisation keywords of the P.*_posterior functions for the tasks `idx`; a
        failure names the task by its index and kind."""
        kinds = self.task_kinds
        return {"jitter": float(self.hp["jitter"]), "max_tries": int(self.hp["cholesky_retries"]),
                "describe": lambda j: f"task {idx[j]} ({kinds[idx[j]]})"}

    def _where(self, k: int):
        kind = self.task_kinds[k]
        group = {"regression": self.reg_idx, "binary": self.bin_idx, "multiclass": self.mc_idx}
        return kind, group[kind].index(k)

    def _generator(self, dev) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=dev)
            self.generator.manual_seed(int(self.hp["seed"]))
        return self.generator
