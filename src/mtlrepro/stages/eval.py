"""The evaluation stages: test metrics of a trained model, plain and under perturbations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import data as datasets
from .. import jobtime
from .. import params as P
from ..fingerprint import run_record
from ..io import provenance, write_json
from ..training import derived_seed, predict, resolve_device
from .common import dataset_config as _config
from .fit import _load_splits, load_models, method_for_heads


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


def _trained_on_test(params, dataset, method_name, processed_dir, model_dir, device_name, fraction, seed):
    """The test split and the trained model(s) of a run, on the run's device; a model made from
    other inputs than this run's is refused."""
    spec, config = datasets.get(dataset), _config(params, dataset)
    device = resolve_device(device_name or params["device"])
    tasks = spec.tasks(config)
    (test,) = _load_splits(spec, config, processed_dir, ["test"])
    inputs = run_record(params, dataset, fraction, seed, processed_dir, method_name,
                        P.method_hparams(params, method_name))
    pairs = load_models(spec, config, tasks, model_dir, device, method_for_heads(params, method_name, tasks),
                        inputs)
    return spec, tasks, test.to(device), pairs, device


def evaluate(params: dict, dataset: str, method_name: str, processed_dir: Path, model_dir: Path,
             fraction: int, seed: int, out_json: Path, device_name: str | None = None) -> None:
    from ..metrics import task_metrics

    spec, tasks, test, pairs, device = _trained_on_test(params, dataset, method_name, processed_dir,
                                                         model_dir, device_name, fraction, seed)
    jobtime.begin("compute")
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
        if task.unit is not None:  # the units of the task's errors (QM9: meV, D, ...)
            result["tasks"][task.name]["unit"] = task.unit
    result["representation"] = representation_quality(tasks, test, outputs, reps, [ids for _, ids in pairs])
    jobtime.begin("write")
    result["provenance"] = provenance({**P.dataset_slice(params, dataset), "method": method_name,
                                       "fraction": fraction}, stage="evaluate", seed=seed, device=str(device))
    write_json(out_json, result)


def representation_quality(tasks, split, outputs, reps, rep_tasks=None) -> dict:
    """InfoMTL's Table 5: uniformity of the shared representation on the split (per model for
    STL, averaged), the same per task over the task's own labelled rows (the representation of the
    model that predicts it; `rep_tasks[i]`: the tasks of reps[i]), and the ARI of each
    classification task's outputs against its labels."""
    from ..representation import task_ari, uniformity

    targets = split.targets.cpu()
    ari = {t.name: task_ari(outputs[k], targets[:, k]) for k, t in enumerate(tasks)
           if t.kind in ("binary", "multiclass")}
    rep_of = {k: r for r, ids in zip(reps, rep_tasks or [range(len(tasks))] * len(reps)) for k in ids}
    per_task = {}
    for k, t in enumerate(tasks):
        rows = ~torch.isnan(targets[:, k])
        if k in rep_of and int(rows.sum()) >= 2:
            per_task[t.name] = uniformity(rep_of[k][rows])
    return {"uniformity": float(np.mean([uniformity(r) for r in reps])), "uniformity_per_task": per_task,
            "ari": ari}


def robustness(params: dict, dataset: str, method_name: str, processed_dir: Path, model_dir: Path,
               seed: int, out_json: Path, device_name: str | None = None) -> None:
    from ..metrics import task_metrics
    from ..robustness import perturbed_outputs

    # robustness runs on the full-data model (the workflow's pct100)
    spec, tasks, test, pairs, device = _trained_on_test(params, dataset, method_name, processed_dir,
                                                         model_dir, device_name, 100, seed)
    jobtime.begin("compute")
    settings = params["ablations"]["robustness"]
    y = original_targets(spec, processed_dir, test)
    result = {"dataset": dataset, "method": method_name, "seed": seed, "task_order": [t.name for t in tasks],
              "tasks": {t.name: {"primary": t.primary, "higher_is_better": t.higher_is_better,
                                 **({"unit": t.unit} if t.unit is not None else {})} for t in tasks},
              "perturbations": {}}
    for kind in settings["kinds"]:
        rows = []
        for strength in settings["strengths"]:
            gen = torch.Generator(device=device).manual_seed(derived_seed(settings["seed"], seed))
            outputs = perturbed_outputs(pairs, tasks, test, kind, float(strength), gen,
                                        scale=settings.get("scale", "relative"))
            preds = outputs_to_predictions(spec, tasks, processed_dir, outputs)
            rows.append({"strength": strength,
                         "values": {t.name: task_metrics(t.kind, preds[k], y[:, k])[t.primary]
                                    for k, t in enumerate(tasks)}})
        result["perturbations"][kind] = rows
    jobtime.begin("write")
    result["provenance"] = provenance({**P.dataset_slice(params, dataset), "method": method_name,
                                       "robustness": settings}, stage="robustness", seed=seed, device=str(device))
    write_json(out_json, result)
