"""One function per pipeline stage. Each reads only the paths it is given and writes only its
outputs, atomically, each with a provenance record."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import data as datasets
from . import methods as method_registry
from . import params as P
from .io import MTLReproError, atomic_dir, provenance, read_json, sha256_file, write_json
from .training import (TrainConfig, build_method, derived_seed, fit, method_generator, predict,
                       resolve_device, seed_everything)


def _config(params: dict, dataset: str) -> dict:
    P.grid_of(params, dataset)  # a dataset of no grid is a typo: say so rather than train it
    return params["dataset"][dataset]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MTLReproError(f"missing {what}: {path}")
    return path


# ---------------------------------------------------------------- download / validate / preprocess


def download(params: dict, dataset: str, out_dir: Path) -> None:
    spec, config = datasets.get(dataset), _config(params, dataset)
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        manifest = spec.download(config, tmp)
        manifest["files"] = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        write_json(tmp / "manifest.json", manifest)
        write_json(tmp / "provenance.json", provenance(P.dataset_slice(params, dataset), stage="download",
                                                       wall_time_s=time.perf_counter() - t0))


def validate(params: dict, dataset: str, raw_dir: Path, out_json: Path, out_html: Path) -> None:
    from .validation import validate as run_suite

    _config(params, dataset)
    run_suite(dataset, _require_dir(raw_dir, "raw data folder"), out_json, out_html, params=None)


def preprocess(params: dict, dataset: str, raw_dir: Path, validation_json: Path, out_dir: Path) -> None:
    spec, config = datasets.get(dataset), _config(params, dataset)
    report = read_json(validation_json)
    if not report.get("success"):
        raise MTLReproError(f"{validation_json}: validation of {dataset} did not succeed; not preprocessing")
    _require_dir(raw_dir, "raw data folder")
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        splits = spec.preprocess(config, params["split_seed"], raw_dir, tmp)
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        write_json(tmp / "split.json", {"dataset": dataset, "split_seed": params["split_seed"],
                                        "splits": splits, "files_sha256": files})
        write_json(tmp / "provenance.json", provenance(P.dataset_slice(params, dataset), stage="preprocess",
                                                       wall_time_s=time.perf_counter() - t0))


# ---------------------------------------------------------------- training


def _load_splits(spec, config, processed_dir: Path, names: Sequence[str]):
    _require_dir(processed_dir, "processed data folder")
    return [spec.load(config, processed_dir, name) for name in names]


def _task_sizes(split) -> list[int]:
    return (~torch.isnan(split.targets)).sum(0).tolist()


def _train_indices(params: dict, n: int, fraction: int):
    return datasets.nested_subset(n, fraction, params["ablations"]["data_fraction"]["seed"])


def pretrain(params: dict, dataset: str, processed_dir: Path, fraction: int, seed: int, out_dir: Path,
             device_name: str | None = None) -> None:
    """The linear-scalarisation warm-up: `pretrain_epochs` of LS, stopped with its optimiser and
    scheduler state so a warm-start method continues the same schedule."""
    spec, config = datasets.get(dataset), _config(params, dataset)
    device = resolve_device(device_name or params["device"], exclusive=True)
    tasks = spec.tasks(config)
    train, val = _load_splits(spec, config, processed_dir, ["train", "val"])
    seed_everything(seed)
    model = spec.build_model(config, tasks)
    cfg = TrainConfig.from_params(config["train"], seed)
    n_epochs = config["train"]["pretrain_epochs"]
    method = build_method("ls", {}, tasks, method_generator(seed, device), _task_sizes(train))
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        state = _pretrain_state(model, method, tasks, train, val, cfg, n_epochs, device,
                                _train_indices(params, len(train), fraction), tmp)
        torch.save(state, tmp / "checkpoint.pt")
        write_json(tmp / "provenance.json", provenance(
            {**P.dataset_slice(params, dataset), "fraction": fraction}, stage="pretrain", seed=seed,
            device=str(device), epochs=n_epochs, wall_time_s=time.perf_counter() - t0))


def _pretrain_state(model, method, tasks, train, val, cfg, n_epochs, device, indices, workdir):
    from .training import make_optimizer, make_scheduler, training_step

    model.to(device)
    optimizer, scheduler = make_optimizer(model, method, cfg), None
    scheduler = make_scheduler(optimizer, cfg)
    train = train.to(device)
    for epoch in range(n_epochs):
        model.train()
        shuffle = torch.Generator().manual_seed(derived_seed(cfg.seed, epoch))
        for inputs, targets in train.batches(cfg.batch_size, indices=indices, generator=shuffle):
            training_step(model, method, tasks, inputs, targets, optimizer)
        if scheduler is not None and not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "epoch": n_epochs,
            "rng": torch.get_rng_state()}


def train(params: dict, dataset: str, method_name: str, processed_dir: Path, pretrain_dir: Path | None,
          fraction: int, seed: int, out_dir: Path, log_path: Path, device_name: str | None = None) -> None:
    spec, config = datasets.get(dataset), _config(params, dataset)
    grid = P.grid_of(params, dataset)
    if method_name not in grid.methods:
        raise MTLReproError(f"method {method_name!r} is not in the methods of {dataset}'s grid "
                            f"({grid.name}): {list(grid.methods)}")
    device = resolve_device(device_name or params["device"], exclusive=True)
    tasks = spec.tasks(config)
    train_split, val = _load_splits(spec, config, processed_dir, ["train", "val"])
    indices = _train_indices(params, len(train_split), fraction)
    hparams = P.method_hparams(params, method_name)
    # the resume checkpoint sits beside the output, which a workflow manager deletes on failure
    resume_dir = out_dir.parent / f".{out_dir.name}.resume"
    resume_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cls = method_registry.get(method_name)
    if cls.kind == "stl":  # one model per task, each with the whole budget
        results, states = [], []
        for k, task in enumerate(tasks):
            seed_everything(derived_seed(seed, k))
            model = spec.build_model(config, [task])
            gen = method_generator(derived_seed(seed, k), device)
            method = build_method(method_name, hparams, [task], gen, _task_sizes(train_split)[k:k + 1])
            single_train = _select_task(train_split, k)
            single_val = _select_task(val, k)
            result = fit(model, method, [task], single_train, single_val,
                         TrainConfig.from_params(config["train"], derived_seed(seed, k)), device,
                         checkpoint_path=resume_dir / f"task{k}.pt", train_indices=indices,
                         method_generator=gen, progress_label=f"{dataset}/stl/{task.name}/seed{seed}")
            results.append(result)
            states.append(result.best_state)
        checkpoint = {"kind": "stl", "states": states, "tasks": [t.name for t in tasks]}
        history = {t.name: r.history for t, r in zip(tasks, results)}
        best_epoch = [r.best_epoch for r in results]
        method_log: list = []
    else:
        seed_everything(seed)
        model = spec.build_model(config, tasks)
        gen = method_generator(seed, device)
        method = build_method(method_name, hparams, tasks, gen, _task_sizes(train_split))
        install_heads(model, method, tasks)
        cfg = TrainConfig.from_params(config["train"], seed)
        init = None
        if cls.warm_start:
            if pretrain_dir is None:
                raise MTLReproError(f"method {method_name!r} starts from the pretrain-LS checkpoint: "
                                    f"pass --pretrain")
            ckpt_path = _require_dir(pretrain_dir, "pretrain folder") / "checkpoint.pt"
            if not ckpt_path.exists():
                raise MTLReproError(f"missing pretrain checkpoint: {ckpt_path}")
            init = torch.load(ckpt_path, map_location=device, weights_only=False)
        epochs = cfg.epochs
        log_epochs = sorted({(init["epoch"] if init else 0) + 1, (epochs + (init["epoch"] if init else 0)) // 2, epochs})
        result = fit(model, method, tasks, train_split, val, cfg, device,
                     checkpoint_path=resume_dir / "run.pt", init_state=init, train_indices=indices,
                     method_generator=gen, progress_label=f"{dataset}/{method_name}/pct{fraction}/seed{seed}",
                     log_every_epochs=log_epochs)
        checkpoint = {"kind": "mtl", "states": [result.best_state], "tasks": [t.name for t in tasks]}
        history, best_epoch, method_log = result.history, result.best_epoch, result.method_log
    wall = time.perf_counter() - t0
    record = {**P.dataset_slice(params, dataset), "method": method_name, "method_hparams": hparams,
              "fraction": fraction, "seed": seed}
    with atomic_dir(out_dir) as tmp:
        torch.save(checkpoint, tmp / "model.pt")
        write_json(tmp / "provenance.json", provenance(record, stage="train", seed=seed, device=str(device),
                                                       best_epoch=best_epoch, wall_time_s=wall))
    write_json(log_path, {"dataset": dataset, "method": method_name, "fraction": fraction, "seed": seed,
                          "tasks": [t.name for t in tasks], "best_epoch": best_epoch, "history": history,
                          "method_log": method_log, "wall_time_s": wall,
                          "provenance": provenance(record, stage="train", device=str(device))})
    import shutil
    shutil.rmtree(resume_dir, ignore_errors=True)


def _select_task(split, k: int):
    """A view of a split with only task k's targets (STL)."""
    import copy

    view = copy.copy(split)
    view.targets = split.targets[:, k:k + 1]
    return view


def _method_for_heads(params: dict, method_name: str, tasks):
    """The method object, rebuilt only so that it can rebuild its task heads for loading."""
    hparams = P.method_hparams(params, method_name)
    return build_method(method_name, hparams, tasks, torch.Generator(), [1] * len(tasks))


def install_heads(model, method, tasks) -> None:
    heads = method.build_heads(model.rep_dim, tasks)
    if heads is not None:
        if len(heads) != len(tasks):
            raise MTLReproError(f"method {method.name!r} built {len(heads)} heads for {len(tasks)} tasks")
        model.heads = heads


def load_models(spec, config, tasks, model_dir: Path, device, method=None):
    """[(model, task indices)] from a train output: one shared model, or one per task for STL."""
    path = _require_dir(model_dir, "trained model folder") / "model.pt"
    if not path.exists():
        raise MTLReproError(f"missing trained model: {path}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:
        raise MTLReproError(f"corrupt model file {path}: {err}") from None
    if ckpt["tasks"] != [t.name for t in tasks]:
        raise MTLReproError(f"{path}: tasks {ckpt['tasks']} do not match the dataset's {[t.name for t in tasks]}")
    if ckpt["kind"] == "stl":
        pairs = []
        for k, state in enumerate(ckpt["states"]):
            model = spec.build_model(config, [tasks[k]])
            model.load_state_dict(state)
            pairs.append((model.to(device).eval(), [k]))
        return pairs
    model = spec.build_model(config, tasks)
    if method is not None:
        install_heads(model, method, tasks)
    model.load_state_dict(ckpt["states"][0])
    return [(model.to(device).eval(), list(range(len(tasks))))]


# ---------------------------------------------------------------- evaluation


def outputs_to_predictions(spec, tasks, processed_dir, outputs: list[torch.Tensor]) -> list[np.ndarray]:
    """Raw head outputs -> regression values in original units / class probabilities."""
    scale = spec.target_scale(processed_dir)
    preds = []
    for k, (task, out) in enumerate(zip(tasks, outputs)):
        if task.kind == "regression":
            value = out[:, 0].double().numpy()
            if scale is not None:
                value = value * scale[1][k] + scale[0][k]
            preds.append(value)
        elif task.kind == "binary":
            preds.append(torch.sigmoid(out[:, 0].double()).numpy())
        else:
            preds.append(torch.softmax(out.double(), 1).numpy())
    return preds


def original_targets(spec, processed_dir, split) -> np.ndarray:
    y = split.targets.cpu().double().numpy()
    scale = spec.target_scale(processed_dir)
    if scale is not None:
        y = y * np.asarray(scale[1]) + np.asarray(scale[0])
    return y


def model_outputs(pairs, tasks, split, representations: list | None = None) -> list[torch.Tensor]:
    """Per-task outputs over the split; each model's shared representations go to `representations`."""
    outputs: list = [None] * len(tasks)
    for model, task_ids in pairs:
        for k, out in zip(task_ids, predict(model, [tasks[k] for k in task_ids], split,
                                            representations=representations)):
            outputs[k] = out
    return outputs


def _trained_on_test(params, dataset, method_name, processed_dir, model_dir, device_name):
    """The test split and the trained model(s) of a run, on the run's device."""
    spec, config = datasets.get(dataset), _config(params, dataset)
    device = resolve_device(device_name or params["device"])
    tasks = spec.tasks(config)
    (test,) = _load_splits(spec, config, processed_dir, ["test"])
    pairs = load_models(spec, config, tasks, model_dir, device, _method_for_heads(params, method_name, tasks))
    return spec, tasks, test.to(device), pairs, device


def evaluate(params: dict, dataset: str, method_name: str, processed_dir: Path, model_dir: Path,
             fraction: int, seed: int, out_json: Path, device_name: str | None = None) -> None:
    from .metrics import task_metrics

    spec, tasks, test, pairs, device = _trained_on_test(params, dataset, method_name, processed_dir,
                                                         model_dir, device_name)
    reps: list = []
    outputs = model_outputs(pairs, tasks, test, reps)
    preds = outputs_to_predictions(spec, tasks, processed_dir, outputs)
    y = original_targets(spec, processed_dir, test)
    result = {"dataset": dataset, "method": method_name, "seed": seed, "fraction": fraction,
              "task_order": [t.name for t in tasks], "tasks": {}}
    for k, task in enumerate(tasks):
        values = task_metrics(task.kind, preds[k], y[:, k])
        result["tasks"][task.name] = {"kind": task.kind, "primary": task.primary,
                                      "higher_is_better": task.higher_is_better, "metrics": values}
    result["representation"] = representation_quality(tasks, test, outputs, reps)
    result["provenance"] = provenance({**P.dataset_slice(params, dataset), "method": method_name,
                                       "fraction": fraction}, stage="evaluate", seed=seed, device=str(device))
    write_json(out_json, result)


def representation_quality(tasks, split, outputs, reps) -> dict:
    """InfoMTL's Table 5: uniformity of the shared representation on the split (per model for
    STL, averaged) and the ARI of each classification task's outputs against its labels."""
    from .representation import task_ari, uniformity

    targets = split.targets.cpu()
    ari = {t.name: task_ari(outputs[k], targets[:, k]) for k, t in enumerate(tasks)
           if t.kind in ("binary", "multiclass")}
    return {"uniformity": float(np.mean([uniformity(r) for r in reps])), "ari": ari}


def robustness(params: dict, dataset: str, method_name: str, processed_dir: Path, model_dir: Path,
               seed: int, out_json: Path, device_name: str | None = None) -> None:
    from .metrics import task_metrics
    from .robustness import perturbed_outputs

    spec, tasks, test, pairs, device = _trained_on_test(params, dataset, method_name, processed_dir,
                                                         model_dir, device_name)
    settings = params["ablations"]["robustness"]
    y = original_targets(spec, processed_dir, test)
    result = {"dataset": dataset, "method": method_name, "seed": seed, "task_order": [t.name for t in tasks],
              "tasks": {t.name: {"primary": t.primary, "higher_is_better": t.higher_is_better} for t in tasks},
              "perturbations": {}}
    for kind in settings["kinds"]:
        rows = []
        for strength in settings["strengths"]:
            gen = torch.Generator(device=device).manual_seed(derived_seed(settings["seed"], seed))
            outputs = perturbed_outputs(pairs, tasks, test, kind, float(strength), gen)
            preds = outputs_to_predictions(spec, tasks, processed_dir, outputs)
            rows.append({"strength": strength,
                         "values": {t.name: task_metrics(t.kind, preds[k], y[:, k])[t.primary]
                                    for k, t in enumerate(tasks)}})
        result["perturbations"][kind] = rows
    result["provenance"] = provenance({**P.dataset_slice(params, dataset), "method": method_name,
                                       "robustness": settings}, stage="robustness", seed=seed, device=str(device))
    write_json(out_json, result)
