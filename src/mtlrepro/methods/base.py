"""The two kinds of MTL method the training loop knows about.

A method never touches the model, the optimiser or the data: the loop hands it task losses
(a `Weighting`) or the matrix of per-task gradients (an `Aggregator`) and gets back one scalar
loss or one update direction. That keeps every method a small, unit-testable object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor


class Method:
    """Common state handling. Subclasses set `name` and `kind`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "weighting", "aggregator" or "stl"
    # True for methods that start from the pretrain-LS checkpoint (BayesAgg-MTL).
    warm_start: ClassVar[bool] = False
    # True for methods whose step needs every task's loss or gradient at once (aggregators, GLS):
    # with one-task batches (train.batching: one_task) their step holds one batch of each task.
    needs_every_task: ClassVar[bool] = False

    def __init__(self, n_tasks: int, task_kinds: Sequence[str] | None = None,
                 generator: torch.Generator | None = None, **hparams: Any):
        if n_tasks < 1:
            raise ValueError(f"{self.name}: n_tasks must be >= 1, got {n_tasks}")
        self.n_tasks = n_tasks
        self.task_kinds = list(task_kinds) if task_kinds is not None else ["regression"] * n_tasks
        self.generator = generator
        unknown = set(hparams) - set(self.hparam_names())
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown hyper-parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.hparam_names())}")
        self.hparams = hparams

    @classmethod
    def hparam_names(cls) -> Sequence[str]:
        return ()

    def parameters(self) -> list[Tensor]:
        """Learnable tensors the optimiser must update too (UW's log-variances, IMTL-L's scales)."""
        return []

    def to(self, device: torch.device) -> "Method":
        return self

    def build_model(self, build: Callable[[], Any], tasks: Sequence[Any]) -> Any:
        """The run's model from `build()`, which returns a fresh, randomly initialised copy of the
        dataset's model for `tasks`. Default: one copy; a deep ensemble of networks builds several."""
        return build()

    def build_heads(self, rep_dim: int, tasks: Sequence[Any], head: Any = None) -> "torch.nn.ModuleList | None":
        """Task heads replacing the model's heads (probabilistic representation methods: a
        stochastic task module per task, h [B, d] -> the task's output, sampling in train mode and
        deterministic in eval mode). None keeps the model's heads. They are saved with the model.
        head: the dataset's `train.heads` (models.base.HeadSpec), None when its heads are linear."""
        return None

    def regularizer(self, model: Any, inputs: Any, h: Tensor, targets: Tensor) -> Tensor | None:
        """Extra loss terms added to the combined task losses (KL terms, InfoNCE...), or None.
        Called after the heads ran on h in the same step, so heads may cache what they computed."""
        return None

    def learns_head(self, k: int) -> bool:
        """False for task heads the method sets itself (BayesAgg-MTL's regression posterior mean)."""
        return True

    def start_from_warm_up(self, model: Any, features: Callable[[], tuple[Tensor, Tensor]]) -> None:
        """Called once before the first step of a run that continues from the pretrain-LS
        checkpoint (a warm-start method; not on a resume, which restores the method's state).
        `features()` computes the warm-started model's shared representations H [N, d] and the
        targets T [N, K] of the training examples (eval mode, no grad); only a method that needs
        them calls it (BayesAgg-MTL's first full-data prior). Default: nothing."""

    def end_epoch(self, mean_losses: Tensor) -> None:
        """Called with the epoch's mean training loss per task (DWA, IGBv2 use it)."""

    def last_weights(self) -> Tensor | None:
        """The task weights [K] of the last step, for the training log; None for a method without."""
        return None

    # Methods that weigh each example and dimension (BayesAgg-MTL) log those weights instead:
    # `weights_for(h, targets, heads, reduce="none") -> [K, B, d]` on a fixed validation probe.
    per_dimension_weights: ClassVar[bool] = False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Weighting(Method):
    """Loss weighting: K task losses -> one scalar to back-propagate."""

    kind = "weighting"

    def weights(self, losses: Tensor) -> Tensor:
        raise NotImplementedError

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        """Default: a weighted sum with weights treated as constants.

        present: [K] bool, the tasks with a labelled row in the batch (None: all). An absent task's
        loss is 0 with no gradient; a method whose combination has per-task terms besides the
        losses (UW's log-variances...) leaves those out for absent tasks."""
        return masked_sum(self.weights(losses.detach()).to(losses) * losses, present)


def masked_sum(terms: Tensor, present: Tensor | None) -> Tensor:
    """sum of the per-task terms [K] of the present tasks (all when present is None)."""
    if present is None:
        return terms.sum()
    return torch.where(present.to(terms.device), terms, torch.zeros_like(terms)).sum()


@dataclass
class GradientContext:
    """What an aggregator may look at in one step.

    G: per-task gradients of the task losses with respect to the aggregated tensor,
       shape [K, *shape] (shape = [B, d] for the shared representation h, or [P] for the
       flattened shared parameters).
    h: the shared representation of the batch, detached, [B, d] (None at parameter level).
    targets: [B, K] task targets of the batch (NaN where a task has no label).
    losses: [K] task losses of the step, detached.
    heads: the task heads (BayesAgg-MTL reads their weights), or None.
    """

    G: Tensor
    h: Tensor | None = None
    targets: Tensor | None = None
    losses: Tensor | None = None
    heads: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class Aggregator(Method):
    """Gradient combination: per-task gradient matrix G [K, d] -> one direction [d].

    `level` is "representation" (gradients w.r.t. the shared representation h, the "-UB"
    variants) or "parameters" (gradients w.r.t. the shared parameters).
    """

    kind = "aggregator"
    default_level: ClassVar[str] = "representation"
    levels: ClassVar[tuple[str, ...]] = ("representation", "parameters")  # the levels it can work at
    needs_every_task = True

    @classmethod
    def default_level_for(cls, batching: str) -> str:
        """The level when none is given: `default_level`, but the shared parameters with one-task
        batches (train.batching), where gradients w.r.t. the representation sit on different rows
        for different tasks and never overlap (LibMTL's default level, too)."""
        return "parameters" if batching == "one_task" and "parameters" in cls.levels else cls.default_level

    def __init__(self, n_tasks, task_kinds=None, generator=None, level: str | None = None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self.level = level or self.default_level
        if self.level not in ("representation", "parameters"):
            raise ValueError(f"method {self.name!r}: level must be 'representation' or "
                             f"'parameters', got {self.level!r}")

    def combine(self, G: Tensor) -> Tensor:
        """[K, d] -> [d]."""
        raise NotImplementedError

    def aggregate(self, ctx: GradientContext) -> Tensor:
        """Returns a tensor shaped like one task's gradient (ctx.G[0])."""
        K = ctx.G.shape[0]
        return self.combine(ctx.G.reshape(K, -1)).reshape(ctx.G.shape[1:])


class SingleTask(Method):
    """STL: one model per task, trained alone with the same budget."""

    kind = "stl"

    def combine_losses(self, losses: Tensor, present: Tensor | None = None) -> Tensor:
        return losses.sum()
