"""Perturbations of the input or first-layer embedding: random Gaussian directions and the fast
gradient method (the direction that increases the loss), scaled per example by the L2 norm.

`scale` says what a strength is: "relative" (the default), ||delta_i|| = strength * ||x_i||, so one
strength means the same on every dataset and embedding; "absolute", ||delta_i|| = strength, the
fast gradient method's r = eps g / ||g||_2 (Miyato et al. 2017), as InfoMTL's Figures 3-4 read:
"scaled by the L2 norm and then applied to the embedding layer"."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .data.base import Split, Task
from .step import task_losses


def per_example_norm(x: Tensor, example: Tensor | None, n_examples: int) -> Tensor:
    """L2 norm of each example's rows of x (rows grouped by `example`; None: row = example)."""
    sq = x.reshape(x.shape[0], -1).pow(2).sum(1)
    if example is not None:
        sq = torch.zeros(n_examples, device=x.device, dtype=sq.dtype).index_add_(0, example, sq)
    return sq.sqrt()


SCALES = ("relative", "absolute")


def scale_to(direction: Tensor, x: Tensor, strength: float, example: Tensor | None, n_examples: int,
             scale: str = "relative") -> Tensor:
    """direction rescaled so that ||delta_i|| = strength * ||x_i|| ("relative") or = strength
    ("absolute") for every example i."""
    if scale not in SCALES:
        raise ValueError(f"unknown perturbation scale {scale!r}; known: {', '.join(SCALES)}")
    target = strength * per_example_norm(x, example, n_examples) if scale == "relative" else strength
    ratio = target / per_example_norm(direction, example, n_examples).clamp_min(1e-12)
    if example is not None:
        ratio = ratio[example]
    return direction * ratio.view(-1, *([1] * (x.dim() - 1)))


def perturbation(model, tasks: Sequence[Task], inputs, targets: Tensor, x0: Tensor, kind: str,
                 strength: float, generator: torch.Generator, scale: str = "relative") -> Tensor:
    example = model.example_index(inputs, x0)
    n = targets.shape[0]
    if strength == 0.0:
        return torch.zeros_like(x0)
    if kind == "gaussian":
        direction = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    elif kind == "fgsm":
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            h = model.encode_from(x, inputs)
            losses = task_losses(tasks, [head(h) for head in model.heads], targets)
            (direction,) = torch.autograd.grad(losses.sum(), x)
    else:
        raise ValueError(f"unknown perturbation kind {kind!r}")
    mask = model.perturbable(inputs, x0)
    if mask is not None:
        direction = direction * mask
    return scale_to(direction, x0, strength, example, n, scale)


@torch.no_grad()
def perturbed_outputs(pairs, tasks: Sequence[Task], split: Split, kind: str, strength: float,
                      generator: torch.Generator, batch_size: int = 512, scale: str = "relative") -> list[Tensor]:
    """Per-task head outputs over the split with every example perturbed."""
    outputs: list = [[] for _ in tasks]
    for model, task_ids in pairs:
        model.eval()
        sub = [tasks[k] for k in task_ids]
        for inputs, targets in split.batches(batch_size):
            x0 = model.embed(inputs)
            delta = perturbation(model, sub, inputs, targets[:, task_ids], x0, kind, strength, generator, scale=scale)
            h = model.encode_from(x0 + delta, inputs)
            for k, head in zip(task_ids, model.heads):
                outputs[k].append(head(h).float().cpu())
    return [torch.cat(o) for o in outputs]
