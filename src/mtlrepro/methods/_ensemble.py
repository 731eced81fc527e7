"""The training side of the two deep-ensemble baselines of BayesAgg-MTL's Table 5 (their heads
and the ensemble of networks are in models/ensemble.py).

Each member is trained on its own loss, and the tasks are combined by linear scalarisation, so the
objective is sum_k mean_m L_k(member m). The loop computes L_k on the head's combined output;
`member_loss_correction` adds sum_k [mean_m L_k(member m) - L_k(combined)], which turns the loop's
objective into that one (the same correction pattern as VMTL's samples).
"""
from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from ..io import MTLReproError
from ..models.ensemble import EnsembleHead
from .ls import LinearScalarization


class MemberEnsemble(LinearScalarization):
    """LS over the tasks, each ensemble member trained on its own loss. Subclasses name the
    hyper-parameter that sets the number of members and build the members."""

    name = ""  # not a method itself
    size_hparam: ClassVar[str] = ""
    default_size: ClassVar[int] = 1

    @classmethod
    def hparam_names(cls):
        return (cls.size_hparam,)

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        hparams.setdefault(self.size_hparam, self.default_size)
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self.members = int(hparams[self.size_hparam])
        if self.members < 1:
            raise ValueError(f"{self.name}: {self.size_hparam} must be >= 1, got {self.members}")

    def regularizer(self, model, inputs, h: Tensor, targets: Tensor) -> Tensor | None:
        return member_loss_correction(model.heads, targets)

    def build_heads(self, rep_dim, tasks, head=None):
        """Members have linear heads (Table 5's): the dataset's MLP heads (`train.heads`) are refused."""
        if head is not None:
            raise MTLReproError(f"method {self.name!r}: deep ensembles' members have linear heads; "
                                f"remove train.heads from the dataset's params to run it")
        return None


def member_loss_correction(heads, targets: Tensor) -> Tensor | None:
    """sum_k [mean_m L_k(member m) - L_k(combined)] over the ensemble heads that ran in train mode."""
    from ..step import task_loss  # lazy: step imports the methods package

    total = None
    for k, head in enumerate(heads):
        cache = head.pop_cache() if isinstance(head, EnsembleHead) else {}
        if not cache:
            continue
        members, y = cache["members"], targets[:, k]
        B, M, out = members.shape
        # members flattened example-major: the labelled rows of every member, each member weighted alike
        term = (task_loss(head.task, members.reshape(B * M, out), y.repeat_interleave(M))
                - task_loss(head.task, cache["combined"], y))
        total = term if total is None else total + term
    return total
