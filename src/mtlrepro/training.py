"""The training module: epochs of steps (step.py) with checkpoint/resume, model selection.

Nothing here knows a method by name: the registry builds it, and its `kind` picks how the step
back-propagates (a weighted loss, or an aggregated gradient on the shared representation or
parameters).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from . import gpus
from . import methods as method_registry
from .batching import BATCHINGS, epoch_batches
from .data.base import Split, Task
from .fingerprint import STATE_FORMAT, fingerprint, load_state
from .grad_clip import GradClip
from .io import MTLReproError, atomic_path
from .methods.base import Aggregator, Method
from .rng_state import global_rng_state, set_global_rng_state
from .step import tasks_present, training_step
from .warm_start import (WARM_START_OPTIMIZER_DEFAULT, apply_warm_start, check_optimizer_policy,
                         optimizer_parameter_names)

# ---------------------------------------------------------------- devices and seeds


def resolve_device(name: str = "auto", exclusive: bool = False) -> torch.device:
    """exclusive: a GPU of this process's own on a multi-GPU machine (training; see gpus.py)."""
    if name == "auto":
        if torch.cuda.is_available():
            return gpus.claim_cuda_device() if exclusive else torch.device("cuda")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MTLReproError(f"device {name!r} was asked for but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (epoch shuffles, method generators...)."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (int(p) + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & ((1 << 63) - 1)
    return value


# ---------------------------------------------------------------- prediction and selection


@torch.no_grad()
def predict(model, tasks: Sequence[Task], split: Split, batch_size: int = 512,
            representations: list[Tensor] | None = None) -> list[Tensor]:
    """Per-task raw outputs (regression values, logits) over a split, in split order. The shared
    representations of the same pass are appended to `representations` when a list is given."""
    model.eval()
    chunks: list[list[Tensor]] = [[] for _ in tasks]
    reps = []
    for inputs, _ in split.batches(batch_size):
        h, outputs = model(inputs)
        for k, o in enumerate(outputs):
            chunks[k].append(o.float().cpu())
        if representations is not None:
            reps.append(h.float().cpu())
    if representations is not None:
        representations.append(torch.cat(reps))
    return [torch.cat(c) for c in chunks]


@torch.no_grad()
def training_features(model, train: Split, indices: Tensor | None, batch_size: int) -> tuple[Tensor, Tensor]:
    """The shared representations H [N, d] and the targets T [N, K] of the training examples
    `indices` (all when None), in that order, computed in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    hs, ts = [], []
    for inputs, targets in train.batches(batch_size, indices=indices):
        hs.append(model.encode(inputs))
        ts.append(targets)
    model.train(was_training)
    return torch.cat(hs), torch.cat(ts)


SELECTIONS = ("score", "primary")


def validation_score(tasks: Sequence[Task], outputs: Sequence[Tensor], targets: Tensor,
                     selection: str = "score") -> float:
    """Lower is better. Model selection, early stopping and the plateau scheduler use it.

    score (the default): the mean over tasks of the MAE of the regression targets as trained
        (z-scored where the dataset z-scores them, QM9 and UTKFace: the MAE over the training std)
        or of the error rate;
    primary: the mean over tasks of 1 - the task's primary metric (`Task.primary`: macro-F1, the
        F1 of the positive class, macro-recall, AUC ...; the MAE as trained for a regression task),
        the validation task metric InfoMTL selects its models by."""
    from .metrics import task_metrics

    scores = []
    targets = targets.cpu()
    for k, (task, out) in enumerate(zip(tasks, outputs)):
        y = targets[:, k]
        keep = ~torch.isnan(y)
        out, y = out[keep], y[keep]
        if task.kind == "regression":
            scores.append((out[:, 0] - y).abs().mean().item())
        elif selection == "primary":
            prob = torch.sigmoid(out[:, 0]) if task.kind == "binary" else torch.softmax(out.float(), 1)
            value = task_metrics(task.kind, prob.double().numpy(), y.double().numpy())[task.primary]
            scores.append(1.0 - value if task.higher_is_better else value)
        elif task.kind == "binary":
            scores.append(((out[:, 0] > 0).float() != y).float().mean().item())
        else:
            scores.append((out.argmax(1) != y.long()).float().mean().item())
    return float(np.nanmean(scores)) if selection == "primary" else float(np.mean(scores))


# ---------------------------------------------------------------- the fit loop


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    scheduler: dict
    seed: int
    start_epoch: int = 0  # > 0 when continuing from the pretrain-LS checkpoint
    clip_grad_norm: GradClip = GradClip()  # max gradient norms of the shared layers and the heads
    warm_start_optimizer: str = WARM_START_OPTIMIZER_DEFAULT  # LS's Adam state at a warm start: reset | keep
    optimizer: str = "adam"          # adam | adamax (InfoMTL's)
    batching: str = "mixed"          # mixed | one_task (batching.py)
    selection: str = "score"         # the validation score: score | primary (validation_score)
    early_stopping: int | None = None  # stop after this many epochs without a better validation score

    @classmethod
    def from_params(cls, train: dict, seed: int, **overrides) -> "TrainConfig":
        """From a dataset's `train` block; every key after `scheduler` is optional."""
        stopping = train.get("early_stopping")
        cfg = cls(epochs=train["epochs"], batch_size=train["batch_size"], lr=train["lr"],
                  weight_decay=train["weight_decay"], scheduler=dict(train["scheduler"]), seed=seed,
                  clip_grad_norm=GradClip.from_params(train.get("clip_grad_norm")),
                  warm_start_optimizer=check_optimizer_policy(
                      train.get("warm_start_optimizer", WARM_START_OPTIMIZER_DEFAULT)),
                  optimizer=train.get("optimizer", "adam"), batching=train.get("batching", "mixed"),
                  selection=train.get("selection", "score"),
                  early_stopping=None if stopping is None else int(stopping["patience"]), **overrides)
        for key, value, allowed in (("optimizer", cfg.optimizer, tuple(OPTIMIZERS)),
                                    ("batching", cfg.batching, BATCHINGS), ("selection", cfg.selection, SELECTIONS)):
            if value not in allowed:
                raise MTLReproError(f"train.{key} must be one of {allowed}, got {value!r}")
        return cfg


OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}


def make_optimizer(model, method: Method, cfg: TrainConfig) -> torch.optim.Optimizer:
    frozen = {id(p) for k, head in enumerate(model.heads) if not method.learns_head(k)
              for p in head.parameters()}
    params = [p for p in model.parameters() if id(p) not in frozen]
    groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    if method.parameters():  # a method's own learnable tensors are not weight-decayed
        groups.append({"params": method.parameters(), "weight_decay": 0.0})
    return OPTIMIZERS[cfg.optimizer](groups, lr=cfg.lr)


def make_scheduler(optimizer, cfg: TrainConfig):
    """The learning-rate schedule of `train.scheduler`, stepped once per epoch:
    - multistep: lr x gamma at each milestone (a fraction of `epochs`);
    - plateau: ReduceLROnPlateau (mode min, PyTorch's relative threshold 1e-4): lr x factor after
      `patience` epochs without improvement of the validation score (`validation_score`: the mean
      over tasks of the MAE of the targets as trained, z-scored where the dataset does so, or of
      the error rate), never below `min_lr` (default 0);
    - none: a constant lr."""
    spec = cfg.scheduler
    if spec["name"] == "multistep":
        milestones = sorted({max(1, int(round(m * cfg.epochs))) for m in spec["milestones"]})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=spec["gamma"])
    if spec["name"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=spec["factor"],
                                                          patience=spec["patience"],
                                                          min_lr=spec.get("min_lr", 0.0))
    return None


def check_batching(method: Method, cfg: TrainConfig) -> None:
    """One-task batches hold different tasks in different rows, so gradients w.r.t. the shared
    representation never overlap: aggregating them there would be LS. Refused (checks.py says so
    before any job runs)."""
    if cfg.batching == "one_task" and getattr(method, "level", None) == "representation":
        raise MTLReproError(representation_level_refusal(method.name, type(method).levels))


def representation_level_refusal(name: str, levels: Sequence[str]) -> str:
    fix = (f"set method.{name}.level: parameters" if "parameters" in levels
           else f"{name} has no other level: use train.batching: mixed")
    return (f"method {name!r} aggregates the task gradients w.r.t. the shared representation, which with "
            f"train.batching: one_task never overlap (each row holds one task); {fix}")


class Interrupted(RuntimeError):
    """Raised by the test hook MTLREPRO_STOP_AFTER_EPOCH to simulate a killed job."""


def resume_dir_of(out_dir: Path) -> Path:
    """Where a training run keeps its resume state: beside its output, hidden."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.resume"


@contextlib.contextmanager
def resume_state_kept_on_kill(resume_dir: Path):
    """Removes the resume folder when the block ends, unless the job was killed (Interrupted,
    KeyboardInterrupt, or a signal that ends the process): only a killed job is retried with the
    same inputs, while an error would recur and its state would be stale clutter."""
    try:
        yield resume_dir
    except Interrupted:
        raise
    except Exception:
        shutil.rmtree(resume_dir, ignore_errors=True)
        raise
    shutil.rmtree(resume_dir, ignore_errors=True)


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    method_log: list[Any] = field(default_factory=list)
    wall_time_s: float = 0.0
    final_state: dict = field(default_factory=dict)  # model, optimizer, scheduler after the last epoch


def resume_fingerprint(cfg: TrainConfig, method: Method, tasks: Sequence[Task], inputs_fingerprint: str | None,
                       init_state: dict | None, train_indices: Tensor | None) -> str:
    """What a resume state must have been written for: the run's inputs (from the caller), and
    what fit itself sees (its config, method, tasks, warm start, training subset, code version)."""
    from . import __version__

    indices = None if train_indices is None else fingerprint(train_indices.tolist())
    return fingerprint({"format": STATE_FORMAT, "mtlrepro": __version__, "inputs": inputs_fingerprint,
                        "config": dataclasses.asdict(cfg), "method": [type(method).__name__, method.name],
                        "tasks": [dataclasses.asdict(t) for t in tasks], "train_indices": indices,
                        "init": None if init_state is None else init_state.get("fingerprint", "unbound")})


def _resume_state(model, optimizer, scheduler, method, method_generator, device, epoch: int,
                  best: FitResult, bound_to: str) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "method": method.state_dict(), "rng": global_rng_state(device), "epoch": epoch,
            "best": {f.name: getattr(best, f.name) for f in dataclasses.fields(best)}, "fingerprint": bound_to,
            "method_generator": method_generator.get_state() if method_generator is not None else None}


def _load_resume_state(path: Path, device, bound_to: str, label: str) -> dict | None:
    """The resume state at `path` if it was written for these inputs; a stale one is discarded."""
    if not path.exists():
        return None
    state = load_state(path, "resume state", device)
    if state.get("fingerprint") != bound_to:
        print(f"{label}: discarding the resume state {path}: it was written for other inputs "
              f"(fingerprint {state.get('fingerprint')}, now {bound_to}); training starts afresh",
              file=sys.stderr)
        return None
    return state


def _restore_resume_state(ckpt: dict, model, optimizer, scheduler, method: Method,
                          method_generator: torch.Generator | None, device) -> tuple[int, FitResult]:
    """Put everything `_resume_state` saved back in place; returns (next epoch, results so far)."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    method.load_state_dict(ckpt["method"])
    if method_generator is not None:
        method_generator.set_state(ckpt["method_generator"].to(method_generator.get_state().device))
    set_global_rng_state(ckpt["rng"], device)
    return ckpt["epoch"], FitResult(**ckpt["best"])


def _train_epoch(model, method: Method, tasks: Sequence[Task], train: Split, optimizer, cfg: TrainConfig,
                 epoch: int, train_indices: Tensor | None) -> Tensor:
    """One pass over the training examples, in an order fixed by the seed and the epoch; returns the
    per-task losses averaged over its steps."""
    model.train()
    shuffle = torch.Generator().manual_seed(derived_seed(cfg.seed, epoch))
    totals, counts = None, None
    clip = cfg.clip_grad_norm if cfg.clip_grad_norm.active else None
    for inputs, targets in epoch_batches(train, cfg.batching, cfg.batch_size, train_indices, shuffle,
                                         every_task=method.needs_every_task):
        losses = training_step(model, method, tasks, inputs, targets, optimizer, clip)
        present = tasks_present(targets).to(losses.dtype)
        totals = losses if totals is None else totals + losses
        counts = present if counts is None else counts + present
    if totals is None:
        raise MTLReproError("an epoch had no training batch: the training split has no labelled row")
    return totals / counts.clamp_min(1)  # each task's mean over the steps that held it


def _record_epoch(model, method: Method, tasks: Sequence[Task], val: Split, optimizer, scheduler, cfg: TrainConfig,
                  epoch: int, mean_losses: Tensor, best: FitResult, log_every_epochs: Sequence[int]) -> float:
    """What follows the steps of epoch `epoch` (0-based): the method's end of epoch, validation,
    the scheduler step, and the epoch's entries in `best` (history, method log, best weights).
    Returns the validation score."""
    method.end_epoch(mean_losses)
    outputs = predict(model, tasks, val)
    score = validation_score(tasks, outputs, val.targets, cfg.selection)
    if scheduler is not None:
        scheduler.step(score) if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else scheduler.step()
    record = {"epoch": epoch + 1, "train_loss": mean_losses.tolist(), "val_score": score,
              "lr": optimizer.param_groups[0]["lr"]}
    if epoch + 1 in set(log_every_epochs):
        logged = method_weights(model, method, val)
        if logged is not None:
            best.method_log.append({"epoch": epoch + 1, **logged})
    best.history.append(record)
    if score < best.best_score:
        best.best_score, best.best_epoch = score, epoch + 1
        best.best_state = copy.deepcopy(model.state_dict())
    return score


def _starting_point(model, method: Method, tasks, train: Split, optimizer, scheduler, cfg: TrainConfig,
                    device, init_state: dict | None, checkpoint_path: Path | None, train_indices,
                    method_generator, inputs_fingerprint: str | None, label: str) -> tuple[int, FitResult, str]:
    """(first epoch, results so far, resume fingerprint): a resume state written for these inputs
    if there is one; else the warm start from `init_state`, after which the method sees the
    warm-started model (`start_from_warm_up`, before the first step); else cfg.start_epoch."""
    start = cfg.start_epoch
    best = FitResult(best_state=copy.deepcopy(model.state_dict()), best_epoch=-1, best_score=math.inf)
    if init_state is not None:
        start = apply_warm_start(init_state, model, optimizer, scheduler, cfg.warm_start_optimizer)
    bound_to = resume_fingerprint(cfg, method, tasks, inputs_fingerprint, init_state, train_indices)
    ckpt = None if checkpoint_path is None else _load_resume_state(checkpoint_path, device, bound_to, label)
    if ckpt is not None:
        start, best = _restore_resume_state(ckpt, model, optimizer, scheduler, method, method_generator,
                                            device)
    elif init_state is not None:
        method.start_from_warm_up(model, lambda: training_features(model, train, train_indices, cfg.batch_size))
    return start, best, bound_to


def fit(model, method: Method, tasks: Sequence[Task], train: Split, val: Split, cfg: TrainConfig,
        device: torch.device, checkpoint_path: Path | None = None, init_state: dict | None = None,
        train_indices: Tensor | None = None, method_generator: torch.Generator | None = None,
        progress_label: str = "train", log_every_epochs: Sequence[int] = (),
        until_epoch: int | None = None, inputs_fingerprint: str | None = None) -> FitResult:
    """Trains from cfg.start_epoch to cfg.epochs (or stops after `until_epoch`, the LS warm-up, with
    the schedule still set for cfg.epochs), keeping the weights of the best validation epoch.

    init_state: a pretrain checkpoint (model, optimizer, scheduler) to continue from.
    checkpoint_path: written atomically after every epoch; if it exists and was written for the
        same inputs (inputs_fingerprint and fit's own arguments), training resumes from it.
    """
    from tqdm.auto import tqdm

    check_batching(method, cfg)
    model.to(device)
    method.to(device)
    optimizer = make_optimizer(model, method, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    train = train.to(device)
    val = val.to(device)
    start, best, bound_to = _starting_point(
        model, method, tasks, train, optimizer, scheduler, cfg, device, init_state, checkpoint_path,
        train_indices, method_generator, inputs_fingerprint, progress_label)
    stop_after = int(os.environ.get("MTLREPRO_STOP_AFTER_EPOCH", "-1"))
    t0 = time.perf_counter() - best.wall_time_s
    bar = tqdm(range(start, until_epoch or cfg.epochs), desc=progress_label, leave=False, mininterval=1.0,
               disable=os.environ.get("MTLREPRO_PROGRESS", "1") == "0")
    for epoch in bar:
        if cfg.early_stopping is not None and best.best_epoch > 0 and epoch - best.best_epoch >= cfg.early_stopping:
            break  # checked before the epoch, so that a resume after the last epoch stops too
        mean_losses = _train_epoch(model, method, tasks, train, optimizer, cfg, epoch, train_indices)
        score = _record_epoch(model, method, tasks, val, optimizer, scheduler, cfg, epoch, mean_losses, best,
                              log_every_epochs)
        bar.set_postfix(loss=f"{mean_losses.sum().item():.4f}", val=f"{score:.4f}")
        best.wall_time_s = time.perf_counter() - t0
        if checkpoint_path is not None:
            state = _resume_state(model, optimizer, scheduler, method, method_generator, device, epoch + 1,
                                  best, bound_to)
            with atomic_path(checkpoint_path) as tmp:
                torch.save(state, tmp)
        if epoch + 1 == stop_after:
            raise Interrupted(f"stopped after epoch {epoch + 1} (MTLREPRO_STOP_AFTER_EPOCH)")
    bar.close()
    best.final_state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "optimizer_parameter_names": optimizer_parameter_names(model, optimizer),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None}
    if best.best_epoch < 0:
        raise MTLReproError(f"{progress_label}: no epoch was trained (start {start} >= epochs {cfg.epochs})")
    return best


PROBE_EXAMPLES = 8


@torch.no_grad()
def method_weights(model, method: Method, val: Split) -> dict | None:
    """What a method weighs the tasks by, for a log: BayesAgg-MTL's per-task, per-dimension
    weights on a fixed probe of validation examples (the paper's Figure 3), else the task
    weights of the method's last step."""
    if method.per_dimension_weights:
        inputs, targets = val.batch(torch.arange(min(PROBE_EXAMPLES, len(val))))
        was_training = model.training
        model.eval()
        h = model.encode(inputs)
        model.train(was_training)
        w = method.weights_for(h, targets, model.heads, reduce="none")
        return {"kind": "per_dimension", "weights": w.float().cpu().tolist()}  # [K, probe, d]
    w = method.last_weights()
    return None if w is None else {"kind": "per_task", "weights": w.detach().float().cpu().tolist()}


def method_generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derived_seed(seed, 0xA11))
    return gen


def build_method(name: str, hparams: dict, tasks: Sequence[Task], generator: torch.Generator,
                 task_sizes: Sequence[int], batching: str = "mixed") -> Method:
    """The method `name` for `tasks`; `batching` (train.batching) sets an aggregator's default level."""
    cls = method_registry.get(name)
    hparams = dict(hparams)
    if "task_sizes" in cls.hparam_names():
        hparams.setdefault("task_sizes", list(task_sizes))
    if issubclass(cls, Aggregator) and hparams.get("level") is None:
        hparams["level"] = cls.default_level_for(batching)
    return method_registry.build(name, len(tasks), task_kinds=[t.kind for t in tasks],
                                 generator=generator, **hparams)
