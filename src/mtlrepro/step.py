"""One optimisation step of a method: the task losses of a batch, and how the method's kind turns
them into gradients (a combined loss for a `Weighting`, an aggregated direction on the shared
representation or parameters for an `Aggregator`)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .data.base import Task
from .grad_clip import GradClip
from .io import MTLReproError
from .methods.base import Aggregator, GradientContext, Method


# ---------------------------------------------------------------- losses


def task_loss(task: Task, output: Tensor, target: Tensor) -> Tensor:
    """Mean loss over the examples that have a label for this task."""
    keep = ~torch.isnan(target)
    if not bool(keep.all()):
        output, target = output[keep], target[keep]
    if target.numel() == 0:
        return output.sum() * 0.0
    if task.kind == "regression":
        return F.mse_loss(output[:, 0], target)
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(output[:, 0], target)
    if task.kind == "multiclass":
        return F.cross_entropy(output, target.long())
    raise ValueError(f"unknown task kind {task.kind!r}")


def task_losses(tasks: Sequence[Task], outputs: Sequence[Tensor], targets: Tensor) -> Tensor:
    return torch.stack([task_loss(t, o, targets[:, k]) for k, (t, o) in enumerate(zip(tasks, outputs))])


def tasks_present(targets: Tensor) -> Tensor:
    """[K] bool: the tasks with at least one labelled row in the batch."""
    return ~torch.isnan(targets).all(0)


def check_finite(losses: Tensor, tasks: Sequence[Task], where: str) -> None:
    if not bool(torch.isfinite(losses).all()):
        bad = [t.name for t, v in zip(tasks, losses.tolist()) if not math.isfinite(v)]
        raise MTLReproError(f"non-finite training loss for task(s) {bad} at {where}; "
                            f"lower the learning rate or check the inputs")


# ---------------------------------------------------------------- one training step


def training_step(model, method: Method, tasks: Sequence[Task], inputs, targets: Tensor,
                  optimizer: torch.optim.Optimizer, clip: GradClip | None = None) -> Tensor:
    """One optimisation step; returns the detached per-task losses. `clip` bounds the norms of the
    shared and head gradients the method produced, before the optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    if isinstance(method, Aggregator):
        losses = _aggregated_backward(model, method, tasks, inputs, targets)
    else:
        h, outputs = model(inputs)
        losses = task_losses(tasks, outputs, targets)
        check_finite(losses.detach(), tasks, "a training step")
        total = method.combine_losses(losses, tasks_present(targets))
        extra = method.regularizer(model, inputs, h, targets)
        if extra is not None:
            total = total + extra
        total.backward()
        losses = losses.detach()
    for k, head in enumerate(model.heads):
        if not method.learns_head(k):
            for p in head.parameters():
                p.grad = None
    if clip is not None:
        clip.apply(model)
    optimizer.step()
    return losses


def _aggregated_backward(model, method: Aggregator, tasks, inputs, targets) -> Tensor:
    h = model.encode(inputs)
    # Each head gets its own leaf copy of h, so one backward pass yields every task's dL_k/dh
    # and the heads' own gradients.
    leaves = [h.detach().requires_grad_(True) for _ in tasks]
    outputs = [head(leaf) for head, leaf in zip(model.heads, leaves)]
    losses = task_losses(tasks, outputs, targets)
    check_finite(losses.detach(), tasks, "a training step")
    losses.sum().backward()
    G = torch.stack([leaf.grad if leaf.grad is not None else torch.zeros_like(h) for leaf in leaves])
    ctx = GradientContext(G=G, h=h.detach(), targets=targets, losses=losses.detach(), heads=model.heads)
    if method.level == "representation":
        direction = method.aggregate(ctx)
        h.backward(direction)
    else:
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        rows = []
        for k in range(len(tasks)):
            grads = torch.autograd.grad(h, shared, grad_outputs=G[k], retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                   for g, p in zip(grads, shared)]))
        ctx.G = torch.stack(rows)
        direction = method.aggregate(ctx)
        offset = 0
        for p in shared:
            n = p.numel()
            p.grad = direction[offset:offset + n].view_as(p).clone()
            offset += n
    return losses.detach()
