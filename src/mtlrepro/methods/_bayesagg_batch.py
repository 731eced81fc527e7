"""The batch and the linear heads as a BayesAgg-MTL step reads and writes them: shape checks of
a step's inputs, the features with the bias column and the label masks, head parameters as theta
vectors (bias last, see _bayesagg_posterior) and the write-back of regression posterior means."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from . import _bayesagg_posterior as P
from .base import GradientContext


@dataclass
class StepBatch:
    """A step's inputs in the forms every task group reads."""
    X: Tensor                 # [B, D] h (+ the bias column) in the float dtype `fdt`
    X64: Tensor               # X in P.LA_DTYPE, for the posteriors
    T: Tensor                 # [B, K] detached targets, NaN = no label
    all_lab: bool             # every target present: M and Tz are None
    M: Tensor | None          # [B, K] label mask
    Tz: Tensor | None         # T with the missing labels set to 0
    fdt: torch.dtype
    d: int

    def labels(self) -> Tensor:
        return self.T if self.all_lab else self.Tz


def augment(h: Tensor, bias: bool) -> Tensor:
    """h with the constant 1 column of the heads' bias appended (h itself without a bias)."""
    if not bias:
        return h
    return torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)


def prepare_batch(h: Tensor, T: Tensor, fdt: torch.dtype, bias: bool) -> StepBatch:
    """The StepBatch of h [B, d] (in the float dtype fdt) and the targets [B, K]."""
    X = augment(h.detach().to(fdt), bias)  # [B, D]
    T = T.detach()
    nan = torch.isnan(T)
    all_lab = not bool(nan.any())  # the one host sync of a regression-only step
    M = None if all_lab else ~nan
    Tz = None if all_lab else T.masked_fill(nan, 0.0)
    return StepBatch(X, X.to(P.LA_DTYPE), T, all_lab, M, Tz, fdt, h.shape[1])


def check_context(ctx: GradientContext, n_tasks: int):
    """(G, h, targets, heads) of `ctx` once their shapes agree with each other and `n_tasks`."""
    G, h, T, heads = ctx.G, ctx.h, ctx.targets, ctx.heads
    if h is None or T is None or heads is None:
        raise ValueError("bayesagg: the GradientContext needs h, targets and heads")
    if G.dim() != 3:
        raise ValueError(f"bayesagg: G must be [K, B, d], got {tuple(G.shape)}")
    K, B, d = G.shape
    if K != n_tasks:
        raise ValueError(f"bayesagg: G has {K} tasks, the method was built for {n_tasks}")
    if tuple(h.shape) != (B, d):
        raise ValueError(f"bayesagg: h must be [{B}, {d}], got {tuple(h.shape)}")
    if tuple(T.shape) != (B, K):
        raise ValueError(f"bayesagg: targets must be [{B}, {K}], got {tuple(T.shape)}")
    if len(heads) != K:
        raise ValueError(f"bayesagg: {len(heads)} heads for {K} tasks")
    return G, h, T, heads


def head_dims(heads, task_kinds: Sequence[str], d: int) -> dict[str, Any]:
    """{"d": width of h, "bias": whether the heads have one, "classes": {task: class count} of
    the multi-class heads}, after checking the heads against d and the task kinds."""
    bias = [getattr(hd, "bias", None) is not None for hd in heads]
    if len(set(bias)) > 1:
        raise ValueError("bayesagg: either every head has a bias or none has")
    classes = {}
    for k, (hd, kind) in enumerate(zip(heads, task_kinds)):
        out_f, in_f = hd.weight.shape
        if in_f != d:
            raise ValueError(f"bayesagg: head {k} takes {in_f} features, h has {d}")
        if kind in ("regression", "binary") and out_f != 1:
            raise ValueError(f"bayesagg: task {k} ({kind}) needs a head with 1 output, "
                             f"got {out_f}")
        if kind == "multiclass":
            if out_f < 2:
                raise ValueError(f"bayesagg: task {k} (multiclass) needs >= 2 outputs")
            classes[k] = out_f
    return {"d": d, "bias": bias[0], "classes": classes}


def head_parameters(heads, idx: Sequence[int], bias: bool, multiclass: bool) -> Tensor:
    """Current head parameters [len(idx), out, D] (bias last) -> [n, D] for 1-output heads,
    [C, D] per multi-class head (returned stacked for a single index)."""
    rows = []
    for k in idx:
        W = heads[k].weight.detach()
        if bias:
            W = torch.cat([W, heads[k].bias.detach()[:, None]], dim=1)
        rows.append(W)
    if multiclass:
        return torch.stack(rows)
    return torch.cat(rows, dim=0)


def write_regression_heads(heads, reg_idx: Sequence[int], mean: Tensor, d: int,
                           bias: bool) -> None:
    """Copy the posterior means `mean` [len(reg_idx), D] into the regression heads."""
    hd0 = heads[reg_idx[0]]
    mean = mean.to(device=hd0.weight.device, dtype=hd0.weight.dtype)
    dst, src = [], []
    for j, k in enumerate(reg_idx):
        dst.append(heads[k].weight)
        src.append(mean[j:j + 1, :d])
        if bias:
            dst.append(heads[k].bias)
            src.append(mean[j, d:])
    with torch.no_grad():
        torch._foreach_copy_(dst, src)
