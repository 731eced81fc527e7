"""The deep ensembles of BayesAgg-MTL's Table 5 as models: a task head of M members, and M whole
networks run as one.

EnsembleHead: task k's M member heads, trained one by one (methods/_ensemble.py) and predicted
together: the members' average, as Lakshminarayanan et al. (2017) do: the mean value for
regression, the mean probability for classification (returned as the logit / log-probability
whose sigmoid / softmax is that mean, so the rest of the pipeline reads it as any head's output).

EnsembleMTL: M independently initialised models run as one (the deep ensemble of networks): the shared
representation is the members' representations side by side [B, M*d], and task k's head is an
ensemble head whose member m reads member m's slice with member m's own head weights. No
parameter is shared, so each member's gradients are the ones it would get trained alone on the
same batches (its share of the summed loss).

The perturbation point is each member's own first-layer embedding, side by side along the last
dimension: a perturbation of the ensemble perturbs every member's embedding (by the same relative
strength, not the same noise)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..io import MTLReproError
from .base import MTLModel


def combine_members(kind: str, members: Tensor) -> Tensor:
    """[B, M, out] member outputs -> [B, out]: the ensemble's prediction, in output units."""
    if kind == "regression":
        return members.mean(1)
    log_m = math.log(members.shape[1])
    if kind == "binary":  # logit of the mean probability: log mean sigmoid - log mean sigmoid(-x)
        return (torch.logsumexp(nn.functional.logsigmoid(members), 1)
                - torch.logsumexp(nn.functional.logsigmoid(-members), 1))
    if kind == "multiclass":  # log of the mean class probabilities (softmax returns them)
        return torch.logsumexp(torch.log_softmax(members, -1), 1) - log_m
    raise ValueError(f"unknown task kind {kind!r}")


class EnsembleHead(nn.Module):
    """Task k's M linear member heads on h [B, in_dim]. `chunked`: member m reads only its own
    slice h[:, m*d:(m+1)*d] (an ensemble of networks, whose representations are concatenated);
    otherwise every member reads all of h (many heads on one shared backbone)."""

    def __init__(self, task: Any, in_dim: int, members: int, chunked: bool = False,
                 init: Sequence[nn.Linear] | None = None):
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least 1 member, got {members}")
        if chunked and in_dim % members:
            raise ValueError(f"in_dim {in_dim} does not split into {members} members")
        self.task, self.kind, self.members, self.chunked = task, task.kind, members, chunked
        d = in_dim // members if chunked else in_dim
        self.weight = nn.Parameter(torch.empty(members, task.out_dim, d))
        self.bias = nn.Parameter(torch.empty(members, task.out_dim))
        with torch.no_grad():
            if init is not None:  # the members' own heads (their model's initialisation)
                self.weight.copy_(torch.stack([lin.weight for lin in init]))
                self.bias.copy_(torch.stack([lin.bias for lin in init]))
            else:  # each member as a fresh nn.Linear(d, out) would be: U(-1/sqrt(d), 1/sqrt(d))
                bound = 1.0 / math.sqrt(d)
                self.weight.uniform_(-bound, bound)
                self.bias.uniform_(-bound, bound)
        self._cache: dict[str, Any] = {}

    def member_outputs(self, h: Tensor) -> Tensor:
        """[B, M, out]."""
        if self.chunked:
            return torch.einsum("bmd,mod->bmo", h.reshape(h.shape[0], self.members, -1), self.weight) + self.bias
        return torch.einsum("bd,mod->bmo", h, self.weight) + self.bias

    def forward(self, h: Tensor) -> Tensor:
        members = self.member_outputs(h)
        combined = combine_members(self.kind, members)
        if self.training:
            self._cache = {"members": members, "combined": combined}
        return combined

    def pop_cache(self) -> dict[str, Any]:
        cache, self._cache = self._cache, {}
        return cache



class EnsembleMTL(MTLModel):
    def __init__(self, members: Sequence[MTLModel], tasks: Sequence[Any]):
        members = list(members)
        if not all(isinstance(head, nn.Linear) for m in members for head in m.heads):
            raise MTLReproError("ensemble_networks: the members' heads must be linear (Table 5's); remove "
                                "train.heads from the dataset's params to run it")
        if not members or len({m.rep_dim for m in members}) != 1 or {len(m.heads) for m in members} != {len(tasks)}:
            raise ValueError("an ensemble needs members with the same representation size and one head per task")
        d, n = members[0].rep_dim, len(members)
        super().__init__(d * n, [])
        self.members = nn.ModuleList(members)
        self.heads = nn.ModuleList(EnsembleHead(t, d * n, n, chunked=True, init=[m.heads[k] for m in members])
                                   for k, t in enumerate(tasks))
        for m in members:  # their heads live on in the ensemble heads: not trained twice
            m.heads = nn.ModuleList()

    def embed(self, inputs: Any) -> Tensor:
        return torch.cat([m.embed(inputs) for m in self.members], -1)

    def encode_from(self, x0: Tensor, inputs: Any) -> Tensor:
        parts = x0.chunk(len(self.members), -1)
        return torch.cat([m.encode_from(x, inputs) for m, x in zip(self.members, parts)], 1)

    def encode(self, inputs: Any) -> Tensor:  # each member's own encode (its caches, its shortcuts)
        return torch.cat([m.encode(inputs) for m in self.members], 1)

    def example_index(self, inputs: Any, x0: Tensor):
        return self.members[0].example_index(inputs, x0)

    def perturbable(self, inputs: Any, x0: Tensor):
        parts = x0.chunk(len(self.members), -1)
        masks = [m.perturbable(inputs, x) for m, x in zip(self.members, parts)]
        if all(mask is None for mask in masks):
            return None
        return torch.cat([torch.ones_like(x) if mask is None else mask.expand_as(x).to(x.dtype)
                          for mask, x in zip(masks, parts)], -1)
