"""The warm start of a method from the pretrain-LS checkpoint (BayesAgg-MTL's LS warm-up).

It always keeps the weights and the position in the learning-rate schedule. What it does with
LS's Adam state is `train.warm_start_optimizer`:
- `reset` (the default): fresh Adam moments. A method's update has its own scale (BayesAgg-MTL's
  is a task-weighted mean, 1/K of LS's sum), and moments carried over would shrink its steps for
  the ~1/(1 - beta2) = 1000 steps the second moment remembers.
- `keep`: one Adam optimiser across the warm-up, as the BayesAgg-MTL authors' code has it: every
  parameter the method's optimiser updates gets LS's moments and step count, matched by name.
  Parameters the method does not optimise (BayesAgg-MTL's regression heads) are left out.
"""
from __future__ import annotations

from typing import Callable

import torch

from .io import MTLReproError

WARM_START_OPTIMIZER_DEFAULT = "reset"


def optimizer_parameter_names(model, optimizer: torch.optim.Optimizer) -> list[list[str]]:
    """The name of every parameter of every group of `optimizer`, in its order: the model's
    parameter names, `method.<i>` for a method's own tensors. A pretrain checkpoint records them
    so that its Adam state can be matched to another optimiser over the same model."""
    names = {id(p): name for name, p in model.named_parameters()}
    out, extra = [], 0
    for group in optimizer.param_groups:
        row = []
        for p in group["params"]:
            if id(p) not in names:
                names[id(p)] = f"method.{extra}"
                extra += 1
            row.append(names[id(p)])
        out.append(row)
    return out


def _state_by_name(state: dict, names: list[list[str]]) -> dict[str, dict]:
    """{parameter name: its per-parameter optimiser state} of an optimiser's state_dict."""
    indices = [i for group in state["param_groups"] for i in group["params"]]
    flat = [n for row in names for n in row]
    if len(indices) != len(flat):
        raise MTLReproError(f"the pretrain checkpoint names {len(flat)} optimiser parameters but its "
                            f"optimiser state has {len(indices)}: re-run pretrain")
    return {n: state["state"][i] for n, i in zip(flat, indices) if i in state["state"]}


def _reset_optimizer(init_state: dict, model, optimizer) -> None:
    """Fresh moments: nothing to load."""


def _keep_optimizer(init_state: dict, model, optimizer) -> None:
    names = init_state.get("optimizer_parameter_names")
    if names is None:
        raise MTLReproError("train.warm_start_optimizer is 'keep' but the pretrain checkpoint does not "
                            "record its optimiser's parameter names (optimizer_parameter_names): it was "
                            "written by an older mtlrepro; re-run pretrain")
    saved = _state_by_name(init_state["optimizer"], names)
    current = optimizer.state_dict()
    own_names = [n for row in optimizer_parameter_names(model, optimizer) for n in row]
    own_indices = [i for group in current["param_groups"] for i in group["params"]]
    for name, index in zip(own_names, own_indices):
        if name in saved:
            current["state"][index] = saved[name]
    optimizer.load_state_dict(current)  # casts each state to its parameter's device and dtype


OPTIMIZER_POLICIES: dict[str, Callable[[dict, object, torch.optim.Optimizer], None]] = {
    "reset": _reset_optimizer, "keep": _keep_optimizer}


def check_optimizer_policy(name: str, where: str = "train.warm_start_optimizer") -> str:
    if name not in OPTIMIZER_POLICIES:
        raise MTLReproError(f"{where} must be one of {sorted(OPTIMIZER_POLICIES)}, got {name!r}")
    return name


def apply_warm_start(init_state: dict, model, optimizer, scheduler, optimizer_policy: str) -> int:
    """Continue from a pretrain checkpoint: its weights, its place in the schedule, and its Adam
    state as `optimizer_policy` says (`reset` or `keep`, see the module docstring). Returns the
    epoch the checkpoint ended at."""
    model.load_state_dict(init_state["model"])
    if scheduler is not None and init_state.get("scheduler") is not None:
        scheduler.load_state_dict(init_state["scheduler"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr
    OPTIMIZER_POLICIES[check_optimizer_policy(optimizer_policy)](init_state, model, optimizer)
    return init_state["epoch"]
