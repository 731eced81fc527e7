"""The training stages: pretrain (the LS warm-up) and train (one dataset x method x fraction x seed)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import data as datasets
from .. import jobtime
from .. import methods as method_registry
from .. import params as P
from ..checksums import verify_processed
from ..fingerprint import check_inputs, fingerprint, load_state, pretrain_record, run_record, stamp
from ..io import MTLReproError, atomic_dir, provenance, write_json
from ..models.base import HeadSpec
from ..training import (TrainConfig, build_method, derived_seed, fit, method_generator, resolve_device,
                        resume_dir_of, resume_state_kept_on_kill, seed_everything)
from .common import dataset_config as _config
from .common import require_dir as _require_dir


def _load_splits(spec, config, processed_dir: Path, names: Sequence[str]):
    verify_processed(_require_dir(processed_dir, "processed data folder"))
    return [spec.load(config, processed_dir, name) for name in names]


def _task_sizes(inp: "_Inputs") -> list[int]:
    """Each task's labelled rows in the run's training subset (TW's weights, VMTL's N_t)."""
    targets = inp.train.targets if inp.indices is None else inp.train.targets[inp.indices]
    return (~torch.isnan(targets)).sum(0).tolist()


def _train_indices(params: dict, n: int, fraction: int, seed: int):
    """The run's training subset: nested across fractions (20% inside 40% ...); drawn anew for
    each training seed (`per_seed`, InfoMTL's Table 6) or one subset for every seed."""
    return datasets.nested_subset(n, fraction, subset_seed(params, seed))


def subset_seed(params: dict, seed: int) -> int:
    block = params["ablations"]["data_fraction"]
    return derived_seed(block["seed"], seed) if block.get("per_seed", True) else int(block["seed"])


@dataclass
class _Inputs:
    """What every training stage reads: the dataset's spec and config, its splits, the run's subset."""
    spec: Any
    config: dict
    tasks: list
    train: Any
    val: Any
    indices: Any
    device: torch.device
    processed_dir: Path


def _inputs(params: dict, dataset: str, processed_dir: Path, fraction: int, seed: int, device_name: str | None,
            method: str | None = None) -> _Inputs:
    _config(params, dataset)  # a dataset of no study is refused
    spec, config = datasets.get(dataset), P.run_config(params, dataset, method or "")
    train, val = _load_splits(spec, config, processed_dir, ["train", "val"])
    return _Inputs(spec, config, spec.tasks(config), train, val, _train_indices(params, len(train), fraction, seed),
                   resolve_device(device_name or params["device"], exclusive=True), processed_dir)


def pretrain_checkpoint(pretrain_dir: Path, config: dict, epochs: int | None = None) -> Path:
    """The warm-up checkpoint after `epochs` LS epochs: checkpoint.pt at the dataset's
    pretrain_epochs (the default), checkpoint-<n>epochs.pt at a sweep's other values."""
    default = int(config["train"]["pretrain_epochs"])
    n = default if epochs is None else int(epochs)
    return Path(pretrain_dir) / ("checkpoint.pt" if n == default else f"checkpoint-{n}epochs.pt")


def pretrain(params: dict, dataset: str, processed_dir: Path, fraction: int, seed: int, out_dir: Path,
             device_name: str | None = None) -> None:
    """The linear-scalarisation warm-up: `fit` of LS stopped after `pretrain_epochs`, with its optimiser
    and scheduler state, so a warm-start method continues the same schedule. With a sweep over
    the warm-up's length, one run writes a checkpoint at each length (P.pretrain_epochs): it stops
    at each, and continues from its resume state, which is bit-identical to not stopping."""
    inp = _inputs(params, dataset, processed_dir, fraction, seed, device_name)
    seed_everything(seed)
    model = dataset_model(inp.spec, inp.config, inp.tasks)
    method = build_method("ls", {}, inp.tasks, method_generator(seed, inp.device), _task_sizes(inp))
    cfg = TrainConfig.from_params(inp.config["train"], seed)
    jobtime.begin("compute")
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        lengths = P.pretrain_epochs(params, dataset)
        resume = tmp / ".resume.pt" if len(lengths) > 1 else None  # how one run stops and goes on
        for n_epochs in lengths:
            result = fit(model, method, inp.tasks, inp.train, inp.val, cfg, inp.device,
                         checkpoint_path=resume, train_indices=inp.indices, until_epoch=n_epochs,
                         progress_label=f"{dataset}/pretrain/pct{fraction}/seed{seed}")
            state = stamp({**result.final_state, "epoch": n_epochs},
                          pretrain_record(params, dataset, fraction, seed, processed_dir, n_epochs))
            torch.save(state, pretrain_checkpoint(tmp, inp.config, n_epochs))
        jobtime.begin("write")
        if resume is not None:
            resume.unlink()
        write_json(tmp / "provenance.json", provenance(
            {**P.dataset_slice(params, dataset), "fraction": fraction}, stage="pretrain", seed=seed,
            device=str(inp.device), epochs=lengths,
            wall_time_s=time.perf_counter() - t0))


def _check_listed(params: dict, dataset: str, method: str) -> None:
    if not any(dataset in s.datasets and (method in s.methods or any(method in s.run_names(dataset, m)
                                                                      for m in s.methods))
               for s in P.studies(params)):
        raise MTLReproError(f"method {method!r} on {dataset!r} is in no study: list both in one of "
                            f"studies.{{{', '.join(params['studies'])}}}")


def _fit_stl(inp: _Inputs, hparams: dict, seed: int, inputs: dict, resume_dir: Path, label: str) -> dict:
    """STL: one single-task `fit` per task, each with the whole budget and its own seed."""
    results = []
    for k, task in enumerate(inp.tasks):
        seed_everything(derived_seed(seed, k))
        model = dataset_model(inp.spec, inp.config, [task])
        gen = method_generator(derived_seed(seed, k), inp.device)
        method = build_method("stl", hparams, [task], gen, _task_sizes(inp)[k:k + 1])
        results.append(fit(model, method, [task], _select_task(inp.train, k), _select_task(inp.val, k),
                           TrainConfig.from_params(inp.config["train"], derived_seed(seed, k)), inp.device,
                           checkpoint_path=resume_dir / f"task{k}.pt", train_indices=inp.indices,
                           inputs_fingerprint=fingerprint(inputs), method_generator=gen, progress_label=f"{label}/{task.name}"))
    return {"checkpoint": {"kind": "stl", "states": [r.best_state for r in results],
                           "tasks": [t.name for t in inp.tasks]},
            "history": {t.name: r.history for t, r in zip(inp.tasks, results)},
            "best_epoch": [r.best_epoch for r in results], "method_log": []}


def _warm_start(method_name: str, checkpoint: Path | None, device, expected: dict) -> dict:
    """The pretrain-LS state `checkpoint`, refused unless it was made from `expected` (its pretrain record)."""
    if checkpoint is None:
        raise MTLReproError(f"method {method_name!r} starts from the pretrain-LS checkpoint: pass --pretrain")
    _require_dir(checkpoint.parent, "pretrain folder")
    state = load_state(checkpoint, "pretrain checkpoint", device)
    check_inputs(state, expected, checkpoint, "pretrain checkpoint")
    return state


def _fit_mtl(inp: _Inputs, method_name: str, hparams: dict, seed: int, inputs: dict, warm_inputs: dict,
             pretrain: Path | None, resume_dir: Path, label: str) -> dict:
    """method_name: the method (a sweep variant's method); pretrain: the warm-up checkpoint."""
    seed_everything(seed)
    gen = method_generator(seed, inp.device)
    cfg = TrainConfig.from_params(inp.config["train"], seed)
    # no method's constructor draws from the global RNG: the model's initialisation is unchanged
    method = build_method(method_name, hparams, inp.tasks, gen, _task_sizes(inp), cfg.batching)
    model = build_run_model(inp.spec, inp.config, inp.tasks, method)
    init = _warm_start(method_name, pretrain, inp.device, warm_inputs) if method.warm_start else None
    start = init["epoch"] if init else 0
    result = fit(model, method, inp.tasks, inp.train, inp.val, cfg, inp.device,
                 checkpoint_path=resume_dir / "run.pt", init_state=init, train_indices=inp.indices,
                 inputs_fingerprint=fingerprint(inputs), method_generator=gen, progress_label=label,
                 log_every_epochs=sorted({start + 1, (cfg.epochs + start) // 2, cfg.epochs}))
    return {"checkpoint": {"kind": "mtl", "states": [result.best_state], "tasks": [t.name for t in inp.tasks]},
            "history": result.history, "best_epoch": result.best_epoch, "method_log": result.method_log}


def train(params: dict, dataset: str, method_name: str, processed_dir: Path, pretrain_dir: Path | None,
          fraction: int, seed: int, out_dir: Path, log_path: Path, device_name: str | None = None) -> None:
    """One training run. Its resume state is kept only when the job is killed (for the retry)."""
    _check_listed(params, dataset, method_name)
    # the resume state sits beside the output, which a workflow manager deletes on failure
    with resume_state_kept_on_kill(resume_dir_of(out_dir)) as resume_dir:
        resume_dir.mkdir(parents=True, exist_ok=True)
        _train_run(params, dataset, method_name, processed_dir, pretrain_dir, fraction, seed, out_dir,
                   log_path, device_name, resume_dir)


def _train_run(params: dict, dataset: str, method_name: str, processed_dir: Path, pretrain_dir: Path | None,
               fraction: int, seed: int, out_dir: Path, log_path: Path, device_name: str | None,
               resume_dir: Path) -> None:
    inp = _inputs(params, dataset, processed_dir, fraction, seed, device_name, method_name)
    hparams = P.method_hparams(params, method_name)
    inputs = run_record(params, dataset, fraction, seed, processed_dir, method_name, hparams)
    label = f"{dataset}/{method_name}/pct{fraction}/seed{seed}"
    jobtime.begin("compute")  # model building and the warm-start checkpoint count here (cheap)
    t0 = time.perf_counter()
    base = P.base_method(params, method_name)
    if method_registry.get(base).kind == "stl":
        run = _fit_stl(inp, hparams, seed, inputs, resume_dir, label)
    else:
        warm_up = int(inp.config["train"]["pretrain_epochs"])  # a sweep variant's own
        checkpoint = (None if pretrain_dir is None
                      else pretrain_checkpoint(pretrain_dir, params["dataset"][dataset], warm_up))
        run = _fit_mtl(inp, base, hparams, seed, inputs,
                       pretrain_record(params, dataset, fraction, seed, processed_dir, warm_up), checkpoint,
                       resume_dir, label)
    wall = time.perf_counter() - t0
    jobtime.begin("write")
    record = {**P.dataset_slice(params, dataset), "method": method_name, "method_hparams": hparams,
              "fraction": fraction, "seed": seed}
    with atomic_dir(out_dir) as tmp:
        torch.save(stamp(run["checkpoint"], inputs), tmp / "model.pt")
        write_json(tmp / "provenance.json", provenance(record, stage="train", seed=seed, device=str(inp.device),
                                                       best_epoch=run["best_epoch"], wall_time_s=wall))
    write_json(log_path, {"dataset": dataset, "method": method_name, "fraction": fraction, "seed": seed,
                          "tasks": [t.name for t in inp.tasks], "best_epoch": run["best_epoch"],
                          "history": run["history"], "method_log": run["method_log"], "wall_time_s": wall,
                          "provenance": provenance(record, stage="train", device=str(inp.device))})


def _select_task(split, k: int):
    """A view of a split with only task k's targets (STL)."""
    view = copy.copy(split)
    view.targets = split.targets[:, k:k + 1]
    return view


def method_for_heads(params: dict, method_name: str, tasks):
    """The method object, rebuilt only so that it can rebuild its task heads for loading."""
    hparams = P.method_hparams(params, method_name)
    return build_method(P.base_method(params, method_name), hparams, tasks, torch.Generator(), [1] * len(tasks))


def dataset_model(spec, config, tasks):
    """The dataset's model for `tasks`, with the task heads of `train.heads` (linear when absent)."""
    return spec.build_model(config, tasks).use_heads(head_spec(config), tasks)


def head_spec(config) -> HeadSpec | None:
    try:
        return HeadSpec.from_params(config.get("train", {}).get("heads"))
    except ValueError as err:
        raise MTLReproError(str(err)) from None


def build_run_model(spec, config, tasks, method):
    """The model a method trains: the dataset's model (or the method's ensemble of them) with the
    method's task heads."""
    model = method.build_model(lambda: dataset_model(spec, config, tasks), tasks)
    install_heads(model, method, tasks, head_spec(config))
    return model


def install_heads(model, method, tasks, head: HeadSpec | None = None) -> None:
    heads = method.build_heads(model.rep_dim, tasks, head)
    if heads is not None:
        if len(heads) != len(tasks):
            raise MTLReproError(f"method {method.name!r} built {len(heads)} heads for {len(tasks)} tasks")
        model.heads = heads


def load_models(spec, config, tasks, model_dir: Path, device, method=None, inputs: dict | None = None):
    """[(model, task indices)] from a train output: one shared model, or one per task for STL.
    inputs: the record of the run the caller expects (fingerprint.run_record); another is refused."""
    path = _require_dir(model_dir, "trained model folder") / "model.pt"
    ckpt = load_state(path, "trained model", device)
    if inputs is not None:
        check_inputs(ckpt, inputs, path, "trained model")
    if ckpt.get("tasks") != [t.name for t in tasks]:
        raise MTLReproError(f"{path}: tasks {ckpt.get('tasks')} do not match the dataset's {[t.name for t in tasks]}")
    if ckpt.get("kind") == "stl":
        pairs = []
        for k, state in enumerate(ckpt["states"]):
            model = dataset_model(spec, config, [tasks[k]])
            model.load_state_dict(state)
            pairs.append((model.to(device).eval(), [k]))
        return pairs
    model = dataset_model(spec, config, tasks) if method is None else build_run_model(spec, config, tasks, method)
    model.load_state_dict(ckpt["states"][0])
    return [(model.to(device).eval(), list(range(len(tasks))))]
