"""How an epoch's training rows become batches (`train.batching`).

mixed (the default): the rows shuffled and cut into batches; a batch holds every task a row is
    labelled for (single-input data: every task of every row).
one_task: multi-input MTL, as InfoMTL's authors train on TweetEval's six data sets. Each task's
    labelled rows are shuffled and cut into batches of `batch_size`, and the batches of all tasks
    are put in one shuffled order, so each task is drawn in proportion to its size (MT-DNN's
    sampling). A batch of task t carries task t's labels only, even where its rows are labelled
    for other tasks too (rotten-tomatoes): that row is in each of its tasks' streams.
    A method whose step needs every task's loss at once (gradient aggregators, GLS, IGBv2, VMTL:
    `Method.needs_every_task`) cannot step on one task's batch; it takes LibMTL's multi-input step
    instead: one batch of each task per step, from the same per-task streams, for as many steps as
    the largest task has batches (a smaller task's rows are reshuffled when they run out). The
    step's batches go through the model as one concatenated batch (LibMTL runs one forward per
    task: the same except for batch-norm statistics).

Every order comes from `generator` (seeded by the run's seed and the epoch), so an epoch's batches
are a function of the seed.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

BATCHINGS = ("mixed", "one_task")


def _labelled_rows(targets: Tensor, indices: Tensor) -> list[Tensor]:
    """Per task, the rows of `indices` labelled for it."""
    labelled = ~torch.isnan(targets[indices.to(targets.device)].cpu())
    return [indices[labelled[:, k]] for k in range(targets.shape[1])]


def _shuffled_batches(rows: Tensor, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    return list(rows[torch.randperm(len(rows), generator=generator)].split(batch_size))


def one_task_plan(targets: Tensor, indices: Tensor, batch_size: int,
                  generator: torch.Generator) -> list[list[tuple[int, Tensor]]]:
    """The epoch's steps, each one (task, rows) batch: every task's batches in one shuffled order."""
    batches = [(k, b) for k, rows in enumerate(_labelled_rows(targets, indices))
               for b in _shuffled_batches(rows, batch_size, generator)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [[batches[i]] for i in order]


def every_task_plan(targets: Tensor, indices: Tensor, batch_size: int,
                    generator: torch.Generator) -> list[list[tuple[int, Tensor]]]:
    """The epoch's steps, each one batch of every task that has labelled rows (LibMTL's
    multi-input step), for as many steps as the largest task has batches; a smaller task's rows
    are reshuffled each time its batches run out (LibMTL restarts its shuffled loader)."""
    tasks = [(k, rows) for k, rows in enumerate(_labelled_rows(targets, indices)) if len(rows)]
    n_steps = max((-(-len(rows) // batch_size) for _, rows in tasks), default=0)
    streams = []
    for k, rows in tasks:
        stream = []
        while len(stream) < n_steps:
            stream += _shuffled_batches(rows, batch_size, generator)
        streams.append((k, stream))
    return [[(k, stream[i]) for k, stream in streams] for i in range(n_steps)]


def only_own_task(targets: Tensor, row_task: Tensor) -> Tensor:
    """targets [B, K] with every label but row i's own task's (row_task[i]) set to NaN."""
    kept = torch.full_like(targets, float("nan"))
    rows = torch.arange(targets.shape[0], device=targets.device)
    row_task = row_task.to(targets.device)
    kept[rows, row_task] = targets[rows, row_task]
    return kept


def epoch_batches(split, batching: str, batch_size: int, indices: Tensor | None, generator: torch.Generator,
                  every_task: bool = False) -> Iterator[tuple[object, Tensor]]:
    """(inputs, targets) of each step of an epoch over `split`'s rows `indices` (all when None)."""
    if batching == "mixed":
        yield from split.batches(batch_size, indices=indices, generator=generator)
        return
    if batching != "one_task":
        raise ValueError(f"train.batching must be one of {BATCHINGS}, got {batching!r}")
    if indices is None:
        indices = torch.arange(len(split))
    plan = (every_task_plan if every_task else one_task_plan)(split.targets, indices.cpu(), batch_size, generator)
    for step in plan:
        rows = torch.cat([r for _, r in step])
        row_task = torch.cat([torch.full((len(r),), k, dtype=torch.long) for k, r in step])
        inputs, targets = split.batch(rows)
        yield inputs, only_own_task(targets, row_task)
