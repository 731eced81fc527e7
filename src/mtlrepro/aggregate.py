"""The `stl-reference` and `aggregate` stages: STL references, Delta_m, tables and figures.

Conventions (all tables, figures and the metrics summary follow them):

* **Delta_m** (Maninis et al. 2019, as used by BayesAgg-MTL)::

      Delta_m% = 100 / K * sum_k (-1)^{delta_k} (M_m,k - M_s,k) / M_s,k

  with delta_k = 1 when higher is better for task k, so a *lower* Delta_m is better and a
  positive value means "worse than single-task learning on average".  M_s,k is the mean over
  seeds of the STL reference, read from the stored reference artifact (never hard-coded).
  Delta_m is computed for every seed of a method against that reference mean, then reported as
  mean +- std over seeds.  The mean over seeds of the per-seed Delta_m equals the Delta_m of
  the seed-mean (Delta_m is affine in M), so the STL row's mean is 0 by construction; it is set
  to exactly 0.0 after checking that the STL evaluations do reproduce the reference (a stale
  reference raises).  The STL row's std is the per-seed spread around its own mean.
* **std over seeds** is the population standard deviation, numpy's default ``ddof=0``
  (`STD_DDOF`), everywhere: in the reference, the tables, the figures and the summary.
* **Data-fraction Delta_m**: at fraction f, a method is compared with the STL reference at the
  same fraction f when STL itself is one of the grid's data-fraction methods (STL ran at f: the
  reference ``<reference_dir>/<dataset>_pct<f>.json``), and otherwise with the 100 % reference
  ``<reference_dir>/<dataset>.json``.  At f = 100 both rules give ``<dataset>.json``.
* **Data-fraction columns** are the grid's data fractions plus 100 (the main run,
  read from the same ``pct100`` evaluation files as the main table).
* **Mean primary score**: the plain average over tasks of each task's primary metric, per seed,
  then mean +- std over seeds.  It is only comparable across methods of the same dataset; in the
  main table it is shown as a column only where it is meaningful (every task a classification
  task sharing one primary metric, like CIFAR-MTL's "Acc."), but it is always in the
  data-fraction/robustness tables and in the summary.
* **Robustness relative drop**: the Delta_m formula applied to the perturbed metrics against
  the same method's and seed's metrics at strength 0 (per task, sign-adjusted, averaged over
  tasks, in %), so a positive drop means degradation and tasks of different scales weigh alike.
* **Best marker**: per column, the best mean among all rows (STL included) following the
  column's direction; exact ties are all marked; a column whose values are all equal, or whose
  direction is mixed, is not marked.
* Only the NaN-ness of the metrics that are used (each task's primary metric; ECE, Brier score
  and accuracy of the classification tasks for the calibration table; accuracy for the CIFAR-MTL
  comparison) is checked; other secondary metrics may legitimately be undefined.
* **Calibration** (BayesAgg-MTL's appendix C.1): for a dataset with classification tasks (task
  kind in `CLASSIFICATION_KINDS`), per seed the mean over those tasks of the evaluation's ``ece``
  (15 equal-width bins) and ``brier``, then mean +- std over seeds; lower is better.  The
  accuracy over the same tasks is shown for reference, unmarked.
* **Published comparison**: the papers' numbers (`mtlrepro.published`, each with its paper and
  table) beside ours for the datasets with a counterpart; our Delta_m (qm9 vs QM9) or mean
  accuracy over tasks in % (digits-mtl vs CIFAR-MTL, a different and smaller dataset).  Ranks are
  competition ranks per column (1 = best, ties share the best rank).  Our runs use small subsets,
  so only orderings are comparable; the captions say so and give the sizes from params.
* **Task-weight figures** (with the training logs): the first seed's ``method_log``.
  BayesAgg-MTL's ``per_dimension`` weights [K][P][d] are averaged over the P probe examples and
  drawn as one tasks x dimensions heat map per logged epoch on a shared colour scale; ``per_task``
  weights that are a flat [K] vector are drawn as lines over the logged epochs (other shapes are
  skipped).

* **Grids** (`mtlrepro.params.grids`): every dataset belongs to one grid, which gives its
  methods (and their order), its data fractions and its ablation methods; seeds, the subset seed
  and the perturbations are shared.  The "main" grid is BayesAgg-MTL's study; the
  "infomtl_study" grid is InfoMTL's (Hu et al. 2025), whose datasets get its measures as well.
* **Representation quality** (InfoMTL's Table 5), for every dataset: per seed, the evaluation's
  ``representation`` entry at 100 %: the uniformity of the shared representation (lower is
  better) and the ARI of each classification task's outputs, in % (higher is better); then
  mean +- std over seeds.

InfoMTL's measures, for the datasets of the "infomtl_study" grid only:

* **Avg.**: the mean primary score over tasks above, always a column of their main table.
* **Delta_p** (InfoMTL's average relative improvement over EW = ``ls``)::

      Delta_p% = 100 / T * sum_t (-1)^{p_t} (M_t - M_t^EW) / M_t^EW

  with p_t = 1 when *lower* is better, so a *higher* Delta_p is better: it is -Delta_m with EW's
  seed mean as the reference.  Per seed against EW's seed mean *at the same fraction*, then
  mean +- std over seeds; EW's row is exactly 0 (its per-seed values only spread around it).
* **Robust score relative to EW**: per seed, 100 (R - R^EW) / R^EW where R is the robust score
  (mean primary score over tasks on the perturbed test data) and R^EW EW's seed mean at the same
  kind and strength: InfoMTL's "increase in robust scores over EW" (positive: a higher score
  than EW's).  Only where EW is one of the grid's robustness methods.

Outputs (``aggregate``): per dataset ``<dataset>_{main,data_fraction,robustness,calibration,
representation}`` tables (.md/.tex/.csv) and ``<dataset>_{delta_m,data_fraction,robustness}.png``
(InfoMTL's datasets: the same files, with the columns, tables and panels of its measures added);
with logs ``<dataset>_training.png``, ``<dataset>_<method>_weights.png``,
``<dataset>_task_weights.png``; ``published_comparison.{md,csv}``; the metrics summary.

All outputs of `aggregate` are first rendered into hidden staging folders inside the
destination folders and only moved into place (each with its provenance sidecar, the summary
last) once every table and figure has been produced, so a failure leaves no partial outputs.
"""
from __future__ import annotations

import csv
import io as _stdio
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import params as P
from . import published
from .io import MTLReproError, read_json, sha256_file, write_json, write_sidecar, write_text
from .metrics import ECE_BINS, average_ranks

__all__ = [
    "STL_METHOD", "EW_METHOD", "STD_DDOF", "REFERENCE_FRACTION", "CLASSIFICATION_KINDS",
    "PUBLISHED_COMPARISON",
    "delta_m", "mean_std", "competition_ranks",
    "eval_path", "robustness_path", "reference_path", "reference_fractions", "reference_outputs",
    "log_path", "load_eval", "load_reference", "load_robustness", "load_log",
    "build_reference", "stl_reference", "aggregate", "aggregate_outputs",
]

STL_METHOD = "stl"
EW_METHOD = "ls"  # InfoMTL's EW (equal weighting): the Delta_p baseline
INFOMTL_GRID = "infomtl_study"  # the grid whose datasets get InfoMTL's measures
STD_DDOF = 0
CLASSIFICATION_KINDS = frozenset({"binary", "multiclass"})  # evaluation task kinds with ECE and Brier
REFERENCE_FRACTION = 100
_STALE_TOL = 1e-6  # Delta_m units (%): how far the STL row may be from 0 before the reference is stale

# Metrics whose scale is unbounded (errors, losses): shown with 4 significant digits.
_ERROR_METRICS = {"mae", "mse", "rmse", "mape", "loss", "nll", "rel", "abs_rel", "rel_err",
                  "error", "err", "l1", "l2", "ce", "cross_entropy", "logloss"}
# Bounded scores for which an average over tasks is meaningful.
_SCORE_METRICS = {"accuracy", "acc", "auc", "roc_auc", "auroc", "ap", "auprc", "f1", "macro_f1",
                  "macro_recall", "macro_f1_nonzero",
                  "micro_f1", "precision", "recall", "balanced_accuracy", "miou", "iou"}


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard deviation (numpy, ``ddof=STD_DDOF`` = 0) of a non-empty sequence."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise MTLReproError("mean_std: no values")
    return float(arr.mean()), float(arr.std(ddof=STD_DDOF))


def delta_m(values: Mapping[str, float], reference: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float:
    """Delta_m% of `values` against `reference` over the reference's tasks (lower is better).

    ``100/K * sum_k (-1)^{delta_k} (values[k] - reference[k]) / reference[k]`` with
    ``delta_k = 1`` when ``higher_is_better[k]``.  Raises MTLReproError for a task missing from
    `values` or `higher_is_better`, a task in `values` absent from `reference`, a zero
    reference value or a non-finite number.
    """
    tasks = list(reference)
    if not tasks:
        raise MTLReproError("delta_m: the reference has no tasks")
    missing = [t for t in tasks if t not in values]
    if missing:
        raise MTLReproError(f"delta_m: task(s) {missing} of the reference are missing from the values")
    extra = [t for t in values if t not in reference]
    if extra:
        raise MTLReproError(f"delta_m: task(s) {extra} are not in the reference (tasks: {tasks})")
    no_dir = [t for t in tasks if t not in higher_is_better]
    if no_dir:
        raise MTLReproError(f"delta_m: higher_is_better is missing for task(s) {no_dir}")
    total = 0.0
    for task in tasks:
        ref = float(reference[task])
        val = float(values[task])
        if not math.isfinite(ref):
            raise MTLReproError(f"delta_m: reference value for task {task!r} is {ref}")
        if not math.isfinite(val):
            raise MTLReproError(f"delta_m: value for task {task!r} is {val}")
        if ref == 0.0:
            raise MTLReproError(f"delta_m: reference value for task {task!r} is zero; the relative "
                                f"difference is undefined")
        sign = -1.0 if bool(higher_is_better[task]) else 1.0
        total += sign * (val - ref) / ref
    return 100.0 * total / len(tasks)


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------

def _fraction_int(fraction: Any, where: str = "fraction") -> int:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise MTLReproError(f"{where}: {fraction!r} is not a number") from None
    if not value.is_integer() or not 0 < value <= 100:
        raise MTLReproError(f"{where}: {fraction!r} must be an integer percent in (0, 100]")
    return int(value)


def eval_path(eval_dir: str | os.PathLike, dataset: str, method: str, fraction: int, seed: int) -> Path:
    """``<eval_dir>/<dataset>/<method>/pct<fraction>/seed<seed>.json``."""
    return Path(eval_dir) / dataset / method / f"pct{_fraction_int(fraction)}" / f"seed{int(seed)}.json"


def robustness_path(robustness_dir: str | os.PathLike, dataset: str, method: str, seed: int) -> Path:
    """``<robustness_dir>/<dataset>/<method>/seed<seed>.json``."""
    return Path(robustness_dir) / dataset / method / f"seed{int(seed)}.json"


def reference_path(reference_dir: str | os.PathLike, dataset: str,
                   fraction: int = REFERENCE_FRACTION) -> Path:
    """``<reference_dir>/<dataset>.json`` at 100 %, ``<reference_dir>/<dataset>_pct<f>.json`` else."""
    fraction = _fraction_int(fraction)
    name = f"{dataset}.json" if fraction == REFERENCE_FRACTION else f"{dataset}_pct{fraction}.json"
    return Path(reference_dir) / name


def _ablation(params: Mapping, name: str) -> dict:
    ablations = params.get("ablations") or {}
    return dict(ablations.get(name) or {})


def _with_defaults(params: Mapping) -> dict:
    """params with the keys `P.grids` reads set to empty where absent: aggregate has always
    accepted partial params (no ablations, say), which `P.grids` alone would not."""
    filled = {"data_fraction": {"fractions": [], "methods": [], **_ablation(params, "data_fraction")},
              "robustness": {"methods": [], **_ablation(params, "robustness")}}
    return {"datasets": [], "methods": [], **params, "ablations": filled}


def _datasets(params: Mapping) -> list[str]:
    """Every grid's datasets, the main grid's first."""
    return P.all_datasets(_with_defaults(params))


def _grid(params: Mapping, dataset: str) -> P.Grid:
    return P.grid_of(_with_defaults(params), dataset)


def _reports_delta_p(grid: P.Grid) -> bool:
    """Whether the grid's tables add InfoMTL's Avg. and Delta_p over EW."""
    return grid.name == INFOMTL_GRID


def _seeds(params: Mapping, group: Mapping | None = None) -> list[int]:
    seeds = (group or {}).get("seeds", params.get("seeds"))
    if not seeds:
        raise MTLReproError("params: seeds is missing or empty")
    return [int(s) for s in seeds]


def _df_fractions(grid: P.Grid) -> list[int]:
    if not grid.data_fraction_methods or not grid.fractions:  # no ablation ran: no table
        return []
    fractions = [_fraction_int(f, f"{grid.name} grid: data_fraction.fractions") for f in grid.fractions]
    return sorted({*fractions, REFERENCE_FRACTION})  # 100 % is the main run: always a column


def _has_robustness(params: Mapping, grid: P.Grid) -> bool:
    return bool(grid.robustness_methods) and bool(_ablation(params, "robustness").get("kinds"))


def reference_fractions(params: Mapping, dataset: str) -> list[int]:
    """Fractions with a stored STL reference of `dataset`: 100 always, plus every data fraction
    of its grid when STL is one of the grid's data-fraction methods (it then ran at that fraction)."""
    grid = _grid(params, dataset)
    fractions = [REFERENCE_FRACTION]
    if STL_METHOD in grid.data_fraction_methods:
        fractions += [f for f in _df_fractions(grid) if f != REFERENCE_FRACTION]
    return fractions


def _df_reference_fraction(params: Mapping, dataset: str, fraction: int) -> int:
    return fraction if fraction in reference_fractions(params, dataset) else REFERENCE_FRACTION


def reference_outputs(params: Mapping, reference_dir: str | os.PathLike,
                      datasets: Sequence[str] | None = None) -> list[Path]:
    """The files `stl_reference` writes (sidecars not included), for the workflow's outputs."""
    datasets = list(datasets) if datasets is not None else _datasets(params)
    return [reference_path(reference_dir, ds, f) for ds in datasets for f in reference_fractions(params, ds)]


def aggregate_outputs(params: Mapping, tables_dir: str | os.PathLike, figures_dir: str | os.PathLike,
                      summary_path: str | os.PathLike, *,
                      task_kinds: Mapping[str, Sequence[str | None]] | None = None) -> list[Path]:
    """The files `aggregate` writes (sidecars not included), for the workflow's outputs: those
    params alone determines (for the datasets of every grid), plus ``<dataset>_calibration.*``
    for the datasets whose task kinds (`task_kinds`: dataset -> its tasks' kinds, when given)
    include a classification kind.  The
    figures drawn from the training logs (``--logs-dir``: ``<dataset>_training.png``,
    ``<dataset>_<method>_weights.png``, ``<dataset>_task_weights.png``) depend on the logs'
    contents and are not listed."""
    out: list[Path] = []
    datasets = _datasets(params)
    for ds in datasets:
        grid = _grid(params, ds)
        has_df, has_rob = bool(_df_fractions(grid)), _has_robustness(params, grid)
        stems = ["main"] + (["data_fraction"] if has_df else []) + (["robustness"] if has_rob else [])
        if task_kinds is not None and any(k in CLASSIFICATION_KINDS for k in task_kinds.get(ds, ())):
            stems.append("calibration")
        stems.append("representation")  # every evaluation records it
        for stem in stems:
            out += [Path(tables_dir) / f"{ds}_{stem}.{ext}" for ext in ("md", "tex", "csv")]
        out.append(Path(figures_dir) / f"{ds}_delta_m.png")
        if has_df:
            out.append(Path(figures_dir) / f"{ds}_data_fraction.png")
        if has_rob:
            out.append(Path(figures_dir) / f"{ds}_robustness.png")
    if any(published.counterpart(ds) is not None for ds in datasets):
        out += [Path(tables_dir) / f"{PUBLISHED_COMPARISON}.{ext}" for ext in ("md", "csv")]
    out.append(Path(summary_path))
    return out


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------

def _number(value: Any, where: str, path: Path | str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MTLReproError(f"{path}: {where} is {value!r}, not a number")
    value = float(value)
    if not math.isfinite(value):
        raise MTLReproError(f"{path}: {where} is {value} (non-finite)")
    return value


def _require(data: Mapping, key: str, path: Path | str, kind: type | tuple = object) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise MTLReproError(f"{path}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise MTLReproError(f"{path}: key {key!r} has the wrong type ({type(value).__name__})")
    return value


def _task_order(data: Mapping, tasks: Mapping, path: Path | str) -> list[str]:
    order = data.get("task_order")
    if order is None:
        return list(tasks)
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(tasks) or len(order) != len(set(order)):
        raise MTLReproError(f"{path}: task_order {order} does not match the tasks {sorted(tasks)}")
    return [str(t) for t in order]


def _check_field(data: Mapping, key: str, expected: Any, path: Path) -> None:
    if expected is None:
        return
    value = _require(data, key, path)
    if key in ("seed", "fraction"):
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and float(value) == float(expected)
    else:
        ok = value == expected
    if not ok:
        raise MTLReproError(f"{path}: {key} is {value!r} but {expected!r} was expected from its location")


def load_eval(path: str | os.PathLike, *, dataset: str | None = None, method: str | None = None,
              fraction: int | None = None, seed: int | None = None) -> dict:
    """Reads and validates one evaluation file; returns
    ``{"path", "dataset", "method", "seed", "fraction", "task_order",
    "tasks": {task: {"primary", "higher_is_better", "kind", "value"}}}`` where ``value`` is the
    task's primary metric.  The identifying fields given are checked against the file's.
    Each task also carries ``"metrics"``, the file's metrics as they are (only the primary one is
    validated here; the calibration table checks the ones it uses), and ``"representation"`` is
    the file's entry as it is, None when absent (the representation table checks it)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise MTLReproError(f"{path}: an evaluation file must hold a JSON object")
    for key, expected in (("dataset", dataset), ("method", method), ("fraction", fraction), ("seed", seed)):
        _check_field(data, key, expected, path)
    tasks_in = _require(data, "tasks", path, dict)
    if not tasks_in:
        raise MTLReproError(f"{path}: no tasks")
    tasks = {}
    for name, task in tasks_in.items():
        if not isinstance(task, dict):
            raise MTLReproError(f"{path}: tasks.{name} must be an object")
        primary = _require(task, "primary", f"{path} (tasks.{name})", str)
        hib = _require(task, "higher_is_better", f"{path} (tasks.{name})", bool)
        metrics = _require(task, "metrics", f"{path} (tasks.{name})", dict)
        if primary not in metrics:
            raise MTLReproError(f"{path}: tasks.{name}.metrics has no primary metric {primary!r}")
        value = _number(metrics[primary], f"tasks.{name}.metrics.{primary}", path)
        tasks[str(name)] = {"primary": primary, "higher_is_better": hib, "kind": task.get("kind"),
                            "value": value, "metrics": dict(metrics)}
    order = _task_order(data, tasks, path)
    return {"path": path, "dataset": data.get("dataset"), "method": data.get("method"),
            "seed": int(data["seed"]) if "seed" in data else None,
            "fraction": _fraction_int(data["fraction"], f"{path}: fraction") if "fraction" in data else None,
            "task_order": order, "tasks": {t: tasks[t] for t in order},
            "representation": data.get("representation")}


def _reference_from_evals(evals: Sequence[dict], fraction: int) -> dict:
    first = evals[0]
    seen: dict[int, Path] = {}
    for ev in evals:
        path = ev["path"]
        if ev["method"] != STL_METHOD:
            raise MTLReproError(f"{path}: method is {ev['method']!r}, the reference needs {STL_METHOD!r}")
        if ev["fraction"] != fraction:
            raise MTLReproError(f"{path}: fraction is {ev['fraction']!r}, the reference is at {fraction}")
        if ev["dataset"] != first["dataset"]:
            raise MTLReproError(f"{path}: dataset {ev['dataset']!r} differs from {first['dataset']!r} "
                                f"in {first['path']}")
        if ev["seed"] is None:
            raise MTLReproError(f"{path}: missing key 'seed'")
        if ev["seed"] in seen:
            raise MTLReproError(f"{path}: seed {ev['seed']} appears twice (also in {seen[ev['seed']]})")
        seen[ev["seed"]] = path
        if ev["task_order"] != first["task_order"]:
            raise MTLReproError(f"{path}: tasks {ev['task_order']} differ from {first['task_order']} "
                                f"in {first['path']}")
        for task, info in ev["tasks"].items():
            ref = first["tasks"][task]
            for key in ("primary", "higher_is_better"):
                if info[key] != ref[key]:
                    raise MTLReproError(f"{path}: tasks.{task}.{key} is {info[key]!r} but "
                                        f"{ref[key]!r} in {first['path']}")
    ordered = sorted(evals, key=lambda e: e["seed"])
    tasks = {}
    for task in first["task_order"]:
        values = [e["tasks"][task]["value"] for e in ordered]
        mean, std = mean_std(values)
        tasks[task] = {"primary": first["tasks"][task]["primary"],
                       "higher_is_better": first["tasks"][task]["higher_is_better"],
                       "kind": first["tasks"][task]["kind"],
                       "mean": mean, "std": std, "values": values}
    return {"dataset": first["dataset"], "method": STL_METHOD, "fraction": fraction,
            "seeds": [e["seed"] for e in ordered], "std_ddof": STD_DDOF,
            "task_order": list(first["task_order"]), "tasks": tasks}


def build_reference(eval_files: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                    fraction: int = REFERENCE_FRACTION, params: Any = None) -> dict:
    """Builds the STL reference of one dataset from its STL evaluation files at `fraction`
    (default 100; every seed given) and writes it atomically to `out` with a provenance
    sidecar.  Files ending in ``.provenance.json`` are ignored.  Returns the reference."""
    out = Path(out)
    fraction = _fraction_int(fraction)
    files = [Path(f) for f in eval_files if not str(f).endswith(".provenance.json")]
    if not files:
        raise MTLReproError(f"no STL evaluation files given to build the reference {out}")
    evals = [load_eval(f, method=STL_METHOD, fraction=fraction) for f in files]
    reference = _reference_from_evals(evals, fraction)
    write_json(out, reference)
    write_sidecar(out, params, stage="stl-reference",
                  inputs={str(f): sha256_file(f) for f in sorted(files)})
    return reference


def load_reference(path: str | os.PathLike, *, dataset: str | None = None,
                   fraction: int | None = None) -> dict:
    """Reads and validates a reference written by `build_reference`."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise MTLReproError(f"{path}: a reference must hold a JSON object")
    _check_field(data, "dataset", dataset, path)
    _check_field(data, "fraction", fraction, path)
    tasks = _require(data, "tasks", path, dict)
    if not tasks:
        raise MTLReproError(f"{path}: no tasks")
    order = _task_order(data, tasks, path)
    for task in order:
        info = tasks[task]
        _require(info, "primary", f"{path} (tasks.{task})", str)
        _require(info, "higher_is_better", f"{path} (tasks.{task})", bool)
        _number(_require(info, "mean", f"{path} (tasks.{task})"), f"tasks.{task}.mean", path)
        _number(info.get("std", 0.0), f"tasks.{task}.std", path)
    return {**data, "path": path, "task_order": order, "tasks": {t: tasks[t] for t in order}}


def load_robustness(path: str | os.PathLike, *, dataset: str | None = None, method: str | None = None,
                    seed: int | None = None, kinds: Sequence[str] = (),
                    strengths: Sequence[float] = ()) -> dict:
    """Reads and validates one robustness file; returns ``{"path", "task_order", "tasks",
    "curves": {kind: {strength: {task: value}}}}`` holding, for each kind asked, strength 0 and
    every strength asked (each must be in the file)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise MTLReproError(f"{path}: a robustness file must hold a JSON object")
    for key, expected in (("dataset", dataset), ("method", method), ("seed", seed)):
        _check_field(data, key, expected, path)
    tasks_in = _require(data, "tasks", path, dict)
    if not tasks_in:
        raise MTLReproError(f"{path}: no tasks")
    tasks = {}
    for name, task in tasks_in.items():
        tasks[str(name)] = {"primary": _require(task, "primary", f"{path} (tasks.{name})", str),
                            "higher_is_better": _require(task, "higher_is_better",
                                                         f"{path} (tasks.{name})", bool)}
    order = _task_order(data, tasks, path)
    perts = _require(data, "perturbations", path, dict)
    wanted = sorted({0.0, *(float(s) for s in strengths)})
    curves: dict[str, dict[float, dict[str, float]]] = {}
    for kind in kinds:
        if kind not in perts:
            raise MTLReproError(f"{path}: perturbation kind {kind!r} is missing "
                                f"(present: {sorted(perts)})")
        entries = perts[kind]
        if not isinstance(entries, list):
            raise MTLReproError(f"{path}: perturbations.{kind} must be a list")
        curve: dict[float, dict[str, float]] = {}
        for strength in wanted:
            hits = [e for e in entries if isinstance(e, dict) and "strength" in e
                    and math.isclose(_number(e["strength"], f"perturbations.{kind}[].strength", path),
                                     strength, rel_tol=1e-9, abs_tol=1e-12)]
            if not hits:
                raise MTLReproError(f"{path}: perturbations.{kind} has no entry at strength {strength:g}")
            if len(hits) > 1:
                raise MTLReproError(f"{path}: perturbations.{kind} has {len(hits)} entries at "
                                    f"strength {strength:g}")
            values = _require(hits[0], "values", f"{path} (perturbations.{kind}, strength {strength:g})",
                              dict)
            missing = [t for t in order if t not in values]
            if missing:
                raise MTLReproError(f"{path}: perturbations.{kind} at strength {strength:g} lacks "
                                    f"task(s) {missing}")
            curve[strength] = {t: _number(values[t], f"perturbations.{kind}[strength={strength:g}]."
                                                     f"values.{t}", path) for t in order}
        curves[kind] = curve
    return {"path": path, "task_order": order, "tasks": {t: tasks[t] for t in order}, "curves": curves}


def _check_against_reference(path: Path, task_order: Sequence[str], tasks: Mapping, reference: dict) -> None:
    if sorted(task_order) != sorted(reference["task_order"]):
        raise MTLReproError(f"{path}: tasks {list(task_order)} differ from the reference's "
                            f"{reference['task_order']} ({reference['path']})")
    for task in reference["task_order"]:
        for key in ("primary", "higher_is_better"):
            if tasks[task][key] != reference["tasks"][task][key]:
                raise MTLReproError(f"{path}: tasks.{task}.{key} is {tasks[task][key]!r} but the "
                                    f"reference {reference['path']} has {reference['tasks'][task][key]!r}")


# --------------------------------------------------------------------------------------------
# The stl-reference stage
# --------------------------------------------------------------------------------------------

def stl_reference(params: Mapping, eval_dir: str | os.PathLike, reference_dir: str | os.PathLike,
                  datasets: Sequence[str] | None = None) -> list[Path]:
    """Writes, for each dataset (default: those of every grid), the STL reference at 100 %
    (``<reference_dir>/<dataset>.json``) and, when STL is a data-fraction method of its grid, one
    per other data fraction (``<dataset>_pct<f>.json``), from the STL evaluations of every seed in
    params.  Returns the paths written."""
    datasets = list(datasets) if datasets is not None else _datasets(params)
    df = _ablation(params, "data_fraction")
    written = []
    for ds in datasets:
        for fraction in reference_fractions(params, ds):
            seeds = _seeds(params) if fraction == REFERENCE_FRACTION else _seeds(params, df)
            files = [eval_path(eval_dir, ds, STL_METHOD, fraction, s) for s in seeds]
            for f in files:
                if not f.exists():
                    raise MTLReproError(f"missing input file: {f}")
            out = reference_path(reference_dir, ds, fraction)
            ref = build_reference(files, out, fraction=fraction, params=_params_slice(params))
            if ref["dataset"] != ds:
                raise MTLReproError(f"{files[0]}: dataset is {ref['dataset']!r}, expected {ds!r}")
            written.append(out)
    return written


# --------------------------------------------------------------------------------------------
# Table model and rendering
# --------------------------------------------------------------------------------------------

@dataclass
class _Stat:
    values: list[float]
    mean: float = 0.0
    std: float = 0.0

    def __post_init__(self) -> None:
        self.mean, self.std = mean_std(self.values)

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass
class _Column:
    key: str
    label: str            # plain text label (CSV "column" and Markdown header)
    higher_is_better: bool | None
    style: str            # "sig4", "fix3" or "fix2"
    arrow: bool = True


@dataclass
class _Table:
    title: str
    caption: str
    columns: list[_Column]
    rows: list[str]
    cells: dict[tuple[str, str], _Stat] = field(default_factory=dict)
    row_header: str = "Method"
    meta: dict[str, Any] = field(default_factory=dict)  # extra facts for the CSV
    # row -> its group: the best of a column is marked within each group (default: one group)
    groups: dict[str, Any] = field(default_factory=dict)

    def best(self) -> set[tuple[str, str]]:
        by_group: dict[Any, list[str]] = {}
        for row in self.rows:
            by_group.setdefault(self.groups.get(row), []).append(row)
        marked = set()
        for col in self.columns:
            if col.higher_is_better is None:
                continue
            for rows in by_group.values():
                entries = [(row, self.cells[(row, col.key)].mean) for row in rows
                           if (row, col.key) in self.cells]
                means = [m for _, m in entries]
                if len(entries) < 2 or max(means) == min(means):
                    continue
                target = max(means) if col.higher_is_better else min(means)
                marked |= {(row, col.key) for row, m in entries if m == target}
        return marked


def _decimals(style: str, mean: float, std: float = 0.0) -> int:
    if style == "fix2":
        return 2
    if style == "fix3":
        return 3
    magnitude = abs(mean) if mean != 0 else abs(std)
    if magnitude == 0 or not math.isfinite(magnitude):
        return 4
    return int(min(10, max(0, 3 - math.floor(math.log10(magnitude)))))


def _fmt(stat: _Stat, style: str, pm: str) -> str:
    d = _decimals(style, stat.mean, stat.std)
    mean = 0.0 if stat.mean == 0 else stat.mean  # no "-0.00"
    text_mean = f"{mean:.{d}f}"
    if text_mean.lstrip("-").strip("0.") == "":
        text_mean = text_mean.lstrip("-")
    return f"{text_mean}{pm}{stat.std:.{d}f}"


def _arrow(col: _Column, latex: bool) -> str:
    if not col.arrow or col.higher_is_better is None:
        return ""
    if latex:
        return r" $\uparrow$" if col.higher_is_better else r" $\downarrow$"
    return " ↑" if col.higher_is_better else " ↓"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    text = text.replace("Δ", "\x00")
    out = "".join(_TEX_ESCAPES.get(c, c) for c in text)
    out = out.replace("\x00", r"$\Delta$").replace("±", r"$\pm$").replace("—", "---")
    return out.replace("↓", r"$\downarrow$").replace("↑", r"$\uparrow$").replace("→", r"$\to$")


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _render_md(table: _Table, level: str = "#") -> str:
    best = table.best()
    header = [table.row_header] + [_md_escape(c.label) + _arrow(c, False) for c in table.columns]
    lines = [f"{level} {table.title}", "", f"*{table.caption}*", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|"]
    for row in table.rows:
        cells = [_md_escape(row)]
        for col in table.columns:
            stat = table.cells.get((row, col.key))
            if stat is None:
                cells.append("—")
                continue
            text = _fmt(stat, col.style, " ± ")
            cells.append(f"**{text}**" if (row, col.key) in best else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _render_tex(table: _Table) -> str:
    best = table.best()
    lines = [f"% {_tex(table.title)}", f"% {_tex(table.caption)}",
             r"% requires \usepackage{booktabs}",
             r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
             " & ".join([_tex(table.row_header)] + [_tex(c.label) + _arrow(c, True) for c in table.columns])
             + r" \\", r"\midrule"]
    for row in table.rows:
        cells = [_tex(row)]
        for col in table.columns:
            stat = table.cells.get((row, col.key))
            if stat is None:
                cells.append("--")
                continue
            text = _fmt(stat, col.style, r" $\pm$ ")
            cells.append(rf"\textbf{{{text}}}" if (row, col.key) in best else text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = _stdio.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Per-dataset computations
# --------------------------------------------------------------------------------------------

def _params_slice(params: Mapping) -> dict:
    return {k: params.get(k) for k in ("datasets", "methods", "seeds", "ablations", "infomtl_study")
            if k in params}


def _ordered(methods: Sequence[str], order: Sequence[str]) -> list[str]:
    """`methods` in the order of `order` (the papers' order); unknown ones keep their order, last."""
    methods = list(dict.fromkeys(methods))
    known = [m for m in order if m in methods]
    return known + [m for m in methods if m not in known]


def _metric_style(metric: str, kind: str | None) -> str:
    if kind == "regression" or metric.lower() in _ERROR_METRICS:
        return "sig4"
    return "fix3"


def _common_direction(reference: dict) -> bool | None:
    dirs = {reference["tasks"][t]["higher_is_better"] for t in reference["task_order"]}
    return dirs.pop() if len(dirs) == 1 else None


def _mean_score_style(reference: dict) -> str:
    styles = {_metric_style(i["primary"], i.get("kind")) for i in reference["tasks"].values()}
    return "fix3" if styles == {"fix3"} else "sig4"


def _average_meaningful(reference: dict, kinds: Mapping[str, str | None]) -> bool:
    """An average of the primary metric over tasks is shown in the main table only when every
    task is a classification task and all share one primary metric and direction."""
    infos = [reference["tasks"][t] for t in reference["task_order"]]
    if len({i["primary"] for i in infos}) != 1 or len({i["higher_is_better"] for i in infos}) != 1:
        return False
    task_kinds = [kinds.get(t) for t in reference["task_order"]]
    if all(k is not None for k in task_kinds):
        return all(k != "regression" for k in task_kinds)
    return infos[0]["primary"].lower() in _SCORE_METRICS


def _metric_label(metric: str) -> str:
    special = {"mae": "MAE", "mse": "MSE", "rmse": "RMSE", "auc": "AUC", "roc_auc": "ROC-AUC",
               "ap": "AP", "f1": "F1", "accuracy": "Acc.", "acc": "Acc.", "miou": "mIoU",
               "macro_f1": "M-F1", "macro_recall": "M-Recall", "macro_f1_nonzero": "F1 (a.&f.)"}
    return special.get(metric.lower(), metric)


def _mean_score(ev: dict, order: Sequence[str]) -> float:
    return float(np.mean([ev["tasks"][t]["value"] for t in order]))


def _seed_deltas(evals: Sequence[dict], reference: dict) -> list[float]:
    ref = {t: reference["tasks"][t]["mean"] for t in reference["task_order"]}
    hib = {t: reference["tasks"][t]["higher_is_better"] for t in reference["task_order"]}
    out = []
    for ev in evals:
        try:
            out.append(delta_m({t: ev["tasks"][t]["value"] for t in ev["task_order"]}, ref, hib))
        except MTLReproError as err:
            raise MTLReproError(f"{ev['path']} against {reference['path']}: {err}") from None
    return out


def _delta_stat(method: str, evals: Sequence[dict], reference: dict, *, baseline: str = STL_METHOD,
                sign: float = 1.0) -> _Stat:
    """`sign` x Delta_m per seed against `reference`, the seed mean of `baseline`'s evaluations:
    `baseline`'s own row at the reference's fraction is exactly 0 once shown to be (a stale
    reference raises; only STL's can be stale, EW's baseline being its own evaluations' mean)."""
    stat = _Stat([sign * d for d in _seed_deltas(evals, reference)])
    if method == baseline and reference.get("fraction") == evals[0]["fraction"]:
        if abs(stat.mean) > _STALE_TOL:
            raise MTLReproError(
                f"the STL evaluations ({', '.join(str(e['path']) for e in evals)}) give Delta_m "
                f"{stat.mean:.3g} % against {reference['path']}, not 0: the reference is stale or was "
                f"built from other seeds; rebuild it with the stl-reference stage")
        stat.mean = 0.0  # exactly 0 by construction; only round-off was removed
    return stat


def _ew_baseline(evals: Sequence[dict]) -> dict:
    """EW's seed mean per task, shaped like a reference: the Delta_p baseline at its fraction."""
    first = evals[0]
    order = first["task_order"]
    return {"path": f"EW ({EW_METHOD}) at {first['fraction']}%, mean over {_seeds_text(len(evals))}",
            "fraction": first["fraction"], "task_order": list(order),
            "tasks": {t: {"mean": mean_std([e["tasks"][t]["value"] for e in evals])[0],
                          "higher_is_better": first["tasks"][t]["higher_is_better"]} for t in order}}


def _ew_runs(runs: Mapping[str, Any], where: str) -> Any:
    if EW_METHOD not in runs:
        raise MTLReproError(f"params: {where} must contain {EW_METHOD!r}: Delta_p is measured against EW")
    return runs[EW_METHOD]


def _delta_p_stat(method: str, evals: Sequence[dict], ew: dict) -> _Stat:
    """Delta_p% per seed against EW's seed mean `ew`: Delta_m's relative differences with the sign
    flipped (p_t = 1 when lower is better), so higher is better; EW's own mean is exactly 0."""
    return _delta_stat(method, evals, ew, baseline=EW_METHOD, sign=-1.0)


def _relative_change_stat(method: str, values: Sequence[float], ew_mean: float, where: str) -> _Stat:
    """100 (v - ew_mean) / ew_mean per seed; EW's own mean is exactly 0 (only round-off removed)."""
    if ew_mean == 0.0:
        raise MTLReproError(f"{where}: EW's score is zero; the relative change is undefined")
    stat = _Stat([100.0 * (v - ew_mean) / ew_mean for v in values])
    if method == EW_METHOD:
        stat.mean = 0.0
    return stat


@dataclass
class _DatasetResult:
    dataset: str
    tables: dict[str, str] = field(default_factory=dict)      # file name -> text
    figures: dict[str, Any] = field(default_factory=dict)     # file name -> callable(path)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    # file name -> the inputs its sidecar lists, where they are not `inputs` (the log figures)
    output_inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    main_evals: dict[str, list[dict]] = field(default_factory=dict)  # method -> pct100 evals by seed
    delta_stats: dict[str, "_Stat"] = field(default_factory=dict)     # method -> Delta_m over seeds

    def add_table(self, stem: str, md: str, tex: str, csv_text: str) -> None:
        for ext, text in (("md", md), ("tex", tex), ("csv", csv_text)):
            self.tables[f"{self.dataset}_{stem}.{ext}"] = text


class _Loader:
    """Loads every input once, recording its sha256 for the sidecars."""

    def __init__(self) -> None:
        self.inputs: dict[str, str] = {}
        self._evals: dict[Path, dict] = {}

    def _record(self, path: Path) -> None:
        self.inputs[str(path)] = sha256_file(path)

    def eval(self, eval_dir, ds, method, fraction, seed, reference) -> dict:
        path = eval_path(eval_dir, ds, method, fraction, seed)
        if path not in self._evals:
            ev = load_eval(path, dataset=ds, method=method, fraction=fraction, seed=seed)
            _check_against_reference(path, ev["task_order"], ev["tasks"], reference)
            self._record(path)
            self._evals[path] = ev
        return self._evals[path]

    def reference(self, reference_dir, ds, fraction) -> dict:
        path = reference_path(reference_dir, ds, fraction)
        ref = load_reference(path, dataset=ds, fraction=fraction)
        self._record(path)
        return ref

    def robustness(self, robustness_dir, ds, method, seed, kinds, strengths, reference) -> dict:
        path = robustness_path(robustness_dir, ds, method, seed)
        rob = load_robustness(path, dataset=ds, method=method, seed=seed, kinds=kinds, strengths=strengths)
        _check_against_reference(path, rob["task_order"], rob["tasks"], reference)
        self._record(path)
        return rob


def _seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _avg_column(reference: dict, kinds: Mapping[str, str | None]) -> _Column:
    """The Avg. column, named after the tasks' primary metric when they share one."""
    order = reference["task_order"]
    metrics = {reference["tasks"][t]["primary"] for t in order}
    if len(metrics) > 1:
        return _Column("mean_score", "Avg.", _common_direction(reference), _mean_score_style(reference))
    metric = metrics.pop()
    return _Column("mean_score", f"Avg. {_metric_label(metric)}", _common_direction(reference),
                   _metric_style(metric, kinds[order[0]]))


def _main_table(ds: str, params: Mapping, reference: dict, evals: dict[str, list[dict]],
                result: _DatasetResult, ew: dict | None = None) -> tuple[_Table, dict[str, _Stat]]:
    """The main table; with `ew` (EW's seed means: an InfoMTL dataset) also Avg. and Delta_p."""
    order = reference["task_order"]
    methods = list(evals)
    kinds = _task_kinds(reference, evals)
    columns = []
    for t in order:
        info = reference["tasks"][t]
        columns.append(_Column(f"task:{t}", f"{t} ({_metric_label(info['primary'])})",
                               info["higher_is_better"], _metric_style(info["primary"], kinds[t])))
    show_avg = ew is not None or _average_meaningful(reference, kinds)  # InfoMTL's "Avg.": always
    if show_avg:
        columns.append(_avg_column(reference, kinds))
    if ew is not None:
        columns.append(_Column("delta_p", "Δp%", True, "fix2"))
    columns.append(_Column("delta_m", "Δm%", False, "fix2"))
    n_seeds = sorted({len(v) for v in evals.values()})
    table = _Table(
        title=f"{ds}: main results",
        caption=(f"Primary metric per task at 100% of the training data (↓ lower / ↑ higher is "
                 f"better{'; errors in the target units' if 'regression' in kinds.values() else ''}), "
                 f"mean ± std (numpy ddof={STD_DDOF}) over "
                 f"{'/'.join(map(str, n_seeds))} seeds"
                 + ("; Avg. = mean over tasks" if show_avg else "")
                 + (f"; Δp% = InfoMTL's average relative improvement over EW ({EW_METHOD}): per seed "
                    f"against EW's seed mean, sign-adjusted so that higher is better, EW = 0"
                    if ew is not None else "")
                 + f"; Δm% vs the STL reference {reference['path'].name} (mean over its "
                 f"{len(reference.get('seeds', []))} seeds; lower is better, STL = 0). Best per column in bold."),
        columns=columns, rows=methods)
    delta_stats = {}
    for m in methods:
        for t in order:
            table.cells[(m, f"task:{t}")] = _Stat([e["tasks"][t]["value"] for e in evals[m]])
        score = _Stat([_mean_score(e, order) for e in evals[m]])
        if show_avg:
            table.cells[(m, "mean_score")] = score
        delta_stats[m] = _delta_stat(m, evals[m], reference)
        table.cells[(m, "delta_m")] = delta_stats[m]
        result.summary[m] = {"delta_m": delta_stats[m].mean, "delta_m_std": delta_stats[m].std,
                             "mean_score": score.mean, "mean_score_std": score.std,
                             "n_seeds": score.n}
        if ew is not None:
            delta_p = table.cells[(m, "delta_p")] = _delta_p_stat(m, evals[m], ew)
            result.summary[m].update(avg=score.mean, avg_std=score.std, delta_p=delta_p.mean,
                                     delta_p_std=delta_p.std)
    return table, delta_stats


def _main_csv(ds: str, table: _Table) -> str:
    best = table.best()
    rows = []
    for m in table.rows:
        for col in table.columns:
            stat = table.cells[(m, col.key)]
            rows.append([ds, m, col.label, stat.mean, stat.std, stat.n, (m, col.key) in best])
    return _csv_text(["dataset", "method", "column", "mean", "std", "n_seeds", "best"], rows)


def _task_kinds(reference: dict, evals: Mapping[str, list[dict]]) -> dict[str, str | None]:
    """Each task's kind as the evaluation files give it (the reference's where they do not)."""
    first = next(iter(evals.values()))[0]
    return {t: first["tasks"][t].get("kind") or reference["tasks"][t].get("kind")
            for t in reference["task_order"]}


def _classification_tasks(kinds: Mapping[str, str | None]) -> list[str]:
    return [t for t, k in kinds.items() if k in CLASSIFICATION_KINDS]


def _task_metric(ev: dict, task: str, metric: str, needed_by: str) -> float:
    metrics = ev["tasks"][task]["metrics"]
    if metric not in metrics:
        raise MTLReproError(f"{ev['path']}: tasks.{task}.metrics has no {metric!r} (needed by the "
                            f"{needed_by})")
    return _number(metrics[metric], f"tasks.{task}.metrics.{metric}", ev["path"])


def _calibration_table(ds: str, reference: dict, evals: Mapping[str, list[dict]]) -> _Table | None:
    """Mean ECE and mean Brier score over the classification tasks (None when there are none),
    per seed, then mean +- std over seeds; accuracy over the same tasks for reference.  A task is
    a classification task when its evaluation ``kind`` is one of `CLASSIFICATION_KINDS`."""
    kinds = _task_kinds(reference, evals)
    tasks = _classification_tasks(kinds)
    if not tasks:
        return None
    methods = list(evals)
    n_seeds = sorted({len(v) for v in evals.values()})
    others = [t for t in kinds if t not in tasks]
    left_out = "; the other tasks are not classification tasks and are left out" if others else ""
    table = _Table(
        title=f"{ds}: calibration of the classification tasks",
        caption=(f"Per seed, the mean over the {len(tasks)} classification task(s) "
                 f"({', '.join(tasks)}{left_out}) "
                 f"of the expected calibration error (ECE, {ECE_BINS} equal-width confidence bins) and of "
                 f"the Brier score, as in BayesAgg-MTL's appendix C.1; then mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {'/'.join(map(str, n_seeds))} seeds. Lower is better; best per "
                 f"column in bold. The accuracy (mean over the same tasks) is shown for reference only "
                 f"and is not marked."),
        columns=[_Column("ece", f"mean ECE ({ECE_BINS} bins)", False, "sig4"),
                 _Column("brier", "mean Brier", False, "sig4"),
                 _Column("accuracy", "mean Acc. (reference)", None, "fix3", arrow=False)],
        rows=methods, meta={"tasks": tasks})
    for m in methods:
        for metric in ("ece", "brier", "accuracy"):
            table.cells[(m, metric)] = _Stat(
                [float(np.mean([_task_metric(ev, t, metric, "calibration table") for t in tasks]))
                 for ev in evals[m]])
    return table


def _calibration_csv(ds: str, table: _Table) -> str:
    best = table.best()
    n_tasks = len(table.meta["tasks"])
    rows = []
    for m in table.rows:
        for col in table.columns:
            stat = table.cells[(m, col.key)]
            rows.append([ds, m, col.key, stat.mean, stat.std, stat.n, n_tasks, (m, col.key) in best])
    return _csv_text(["dataset", "method", "metric", "mean", "std", "n_seeds", "n_tasks", "best"], rows)


def _representation(ev: dict) -> dict:
    """The evaluation's representation quality entry, checked: ``{"uniformity": float,
    "ari": {task: float}}`` (ARI for the classification tasks, in the evaluation's task order)."""
    path = ev["path"]
    if ev.get("representation") is None:
        raise MTLReproError(f"{path}: missing key 'representation' (uniformity and ARI, needed by the "
                            f"representation table; evaluations written by the evaluate stage record it)")
    entry = _require(ev, "representation", path, dict)
    uniformity = _number(_require(entry, "uniformity", f"{path} (representation)"),
                         "representation.uniformity", path)
    ari = _require(entry, "ari", f"{path} (representation)", dict)
    unknown = [t for t in ari if t not in ev["tasks"]]
    if unknown:
        raise MTLReproError(f"{path}: representation.ari has task(s) {unknown} that are not in tasks")
    return {"uniformity": uniformity,
            "ari": {t: _number(ari[t], f"representation.ari.{t}", path) for t in ev["task_order"] if t in ari}}


def _representation_table(ds: str, evals: Mapping[str, list[dict]]) -> _Table:
    """InfoMTL's Table 5: uniformity of the shared representation and ARI (%) of each
    classification task's outputs, mean +- std over seeds.  Every evaluation must give the ARI of
    the same tasks as the first."""
    entries = {m: [(ev["path"], _representation(ev)) for ev in runs] for m, runs in evals.items()}
    first_path, first = next(iter(entries.values()))[0]
    ari_tasks = list(first["ari"])
    for path, entry in (e for runs in entries.values() for e in runs):
        if list(entry["ari"]) != ari_tasks:
            raise MTLReproError(f"{path}: representation.ari has the tasks {list(entry['ari'])} but "
                                f"{first_path} has {ari_tasks}")
    n_seeds = sorted({len(v) for v in evals.values()})
    ari_text = ("; ARI (%, higher is better) = adjusted Rand index between a k-means clustering of "
                "each classification task's outputs and its labels" if ari_tasks else
                "; no classification task, so no ARI")
    table = _Table(
        title=f"{ds}: representation quality",
        caption=(f"As InfoMTL's Table 5, on the test split at 100% of the training data: Uni. = "
                 f"uniformity of the shared representation (log-mean of exp(-2 d^2) over pairs of "
                 f"normalised representations; lower is better){ari_text}; mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {'/'.join(map(str, n_seeds))} seeds. Best per column in bold."),
        columns=[_Column("uniformity", "Uni.", False, "fix3")]
                + [_Column(f"ari:{t}", f"{t} ARI (%)", True, "fix2") for t in ari_tasks],
        rows=list(evals))
    for m, runs in entries.items():
        table.cells[(m, "uniformity")] = _Stat([e["uniformity"] for _, e in runs])
        for t in ari_tasks:
            table.cells[(m, f"ari:{t}")] = _Stat([100.0 * e["ari"][t] for _, e in runs])
    return table


def _representation_csv(ds: str, table: _Table) -> str:
    best = table.best()
    rows = []
    for m in table.rows:
        for col in table.columns:
            stat = table.cells[(m, col.key)]
            metric, _, task = col.key.partition(":")
            rows.append([ds, m, "ari_pct" if metric == "ari" else metric, task, stat.mean, stat.std, stat.n,
                         (m, col.key) in best])
    return _csv_text(["dataset", "method", "metric", "task", "mean", "std", "n_seeds", "best"], rows)


def _data_fraction(ds: str, methods: list[str], fractions: list[int], evals: dict[str, dict[int, list[dict]]],
                   refs: dict[int, dict], main_ref: dict, ews: dict[int, dict] | None = None):
    """The data-fraction tables (methods x fractions): mean primary score and Delta_m, plus, with
    `ews` (EW's seed means per fraction: an InfoMTL dataset), Delta_p against EW at the same
    fraction, shown in InfoMTL's Table 6 layout in place of the score table.  Returns the
    Markdown, TeX and CSV texts and {quantity: table}."""
    order = main_ref["task_order"]
    direction = _common_direction(main_ref)
    seeds_n = sorted({len(v) for per in evals.values() for v in per.values()})
    cols_score = [_Column(f"pct{f}", f"{f}%", direction, _mean_score_style(main_ref), arrow=False)
                  for f in fractions]
    cols_delta = [_Column(f"pct{f}", f"{f}%", False, "fix2", arrow=False) for f in fractions]
    ref_text = ", ".join(f"{f}%→{refs[f]['path'].name}" for f in fractions)
    score = _Table(
        title=f"{ds}: data fraction — mean primary score",
        caption=(f"Average over tasks of the primary metric ("
                 f"{'higher' if direction else 'lower' if direction is not None else 'mixed directions: see per-task'}"
                 f" is better) vs the percentage of the training split used, mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {'/'.join(map(str, seeds_n))} seeds. Best per column in bold."),
        columns=cols_score, rows=methods)
    delta = _Table(
        title=f"{ds}: data fraction — Δm% vs STL",
        caption=(f"Δm% (lower is better) per seed against the STL reference at the same fraction when "
                 f"STL ran at it, else the 100% reference ({ref_text}), mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {'/'.join(map(str, seeds_n))} seeds. Best per column in bold."),
        columns=cols_delta, rows=methods)
    for m in methods:
        for f in fractions:
            score.cells[(m, f"pct{f}")] = _Stat([_mean_score(e, order) for e in evals[m][f]])
            delta.cells[(m, f"pct{f}")] = _delta_stat(m, evals[m][f], refs[f])
    quantities = {"mean_score": score, "delta_m": delta}
    shown = [score, delta]
    if ews is not None:
        delta_p = _Table(
            title=f"{ds}: data fraction — Δp% vs EW",
            caption=(f"Δp% (higher is better) per seed against EW ({EW_METHOD})'s seed mean at the same "
                     f"fraction, mean ± std (numpy ddof={STD_DDOF}) over {'/'.join(map(str, seeds_n))} "
                     f"seeds. Best per column in bold."),
            columns=[_Column(f"pct{f}", f"{f}%", True, "fix2", arrow=False) for f in fractions], rows=methods)
        for m in methods:
            for f in fractions:
                delta_p.cells[(m, f"pct{f}")] = _delta_p_stat(m, evals[m][f], ews[f])
        quantities["delta_p"] = delta_p
        shown = [_table6(ds, fractions, methods, score, delta_p, seeds_n), delta]
    md = f"# {ds}: data-fraction ablation\n\n" + "\n".join(_render_md(t, "##") for t in shown)
    tex = "\n".join(_render_tex(t) for t in shown)
    rows = []
    for quantity, table in quantities.items():
        best = table.best()
        for m in methods:
            for f in fractions:
                stat = table.cells[(m, f"pct{f}")]
                reference = {"delta_m": refs[f]["path"].name, "delta_p": f"{EW_METHOD} at {f}% (seed mean)"}
                rows.append([ds, quantity, m, f, stat.mean, stat.std, stat.n, (m, f"pct{f}") in best,
                             reference.get(quantity, "")])
    csv_text = _csv_text(["dataset", "quantity", "method", "fraction", "mean", "std", "n_seeds", "best",
                          "reference"], rows)
    return md, tex, csv_text, quantities


def _table6(ds: str, fractions: list[int], methods: list[str], score: _Table, delta_p: _Table,
            seeds_n: list[int]) -> _Table:
    """InfoMTL's Table 6 layout of the same cells: a row per (fraction, method), columns Avg. and
    Delta_p; the best is marked within each fraction (Delta_p is relative to EW at that fraction)."""
    avg = score.columns[0]
    table = _Table(
        title=f"{ds}: data fraction — Avg. and Δp% vs EW (InfoMTL's Table 6)",
        caption=(f"Per percentage of the training split used: Avg. = mean over tasks of the primary "
                 f"metric; Δp% (higher is better) per seed against EW ({EW_METHOD})'s seed mean at the "
                 f"same fraction (EW = 0); mean ± std (numpy ddof={STD_DDOF}) over "
                 f"{'/'.join(map(str, seeds_n))} seeds. Best within each fraction in bold."),
        columns=[_Column("avg", "Avg.", avg.higher_is_better, avg.style),
                 _Column("delta_p", "Δp%", True, "fix2")],
        rows=[], row_header="Data / Method")
    for f in fractions:
        for m in methods:
            row = f"{f}% {m}"
            table.rows.append(row)
            table.groups[row] = f
            table.cells[(row, "avg")] = score.cells[(m, f"pct{f}")]
            table.cells[(row, "delta_p")] = delta_p.cells[(m, f"pct{f}")]
    return table


def _robust_score(rob: dict, kind: str, strength: float, order: Sequence[str]) -> float:
    """The mean primary score over tasks on the perturbed test data (InfoMTL's robust score)."""
    return float(np.mean([rob["curves"][kind][strength][t] for t in order]))


def _robustness(ds: str, methods: list[str], kinds: list[str], strengths: list[float],
                robs: dict[str, list[dict]], main_ref: dict, vs_ew: bool = False):
    """Per kind, the mean score and the relative drop vs strength 0 (methods x strengths), plus
    with `vs_ew` (EW among `methods`: an InfoMTL dataset) the score relative to EW's.  Returns
    the Markdown, TeX and CSV texts and {kind: {quantity: table}}."""
    order = main_ref["task_order"]
    hib = {t: main_ref["tasks"][t]["higher_is_better"] for t in order}
    direction = _common_direction(main_ref)
    seeds_n = sorted({len(v) for v in robs.values()})
    tables: dict[str, dict[str, _Table]] = {}
    for kind in kinds:
        score = _Table(
            title=f"{ds}: robustness to {kind} — mean primary score",
            caption=(f"Average over tasks of the primary metric under {kind} perturbations of "
                     f"increasing strength (columns), mean ± std (numpy ddof={STD_DDOF}) over "
                     f"{'/'.join(map(str, seeds_n))} seeds. Best per column in bold."),
            columns=[_Column(f"s{s!r}", f"{s:g}", direction, _mean_score_style(main_ref), arrow=False)
                     for s in strengths],
            rows=methods, row_header="Method \\ strength")
        drop = _Table(
            title=f"{ds}: robustness to {kind} — relative drop (%) vs strength 0",
            caption=(f"Relative degradation vs the same method and seed at strength 0 (per task, "
                     f"sign-adjusted as in Δm, averaged over tasks; %, lower is better), mean ± std "
                     f"(numpy ddof={STD_DDOF}) over {'/'.join(map(str, seeds_n))} seeds."),
            columns=[_Column(f"s{s!r}", f"{s:g}", False, "fix2", arrow=False) for s in strengths],
            rows=methods, row_header="Method \\ strength")
        for m in methods:
            for s in strengths:
                score.cells[(m, f"s{s!r}")] = _Stat([_robust_score(r, kind, s, order) for r in robs[m]])
                drops = []
                for r in robs[m]:
                    try:
                        drops.append(delta_m(r["curves"][kind][s], r["curves"][kind][0.0], hib))
                    except MTLReproError as err:
                        raise MTLReproError(f"{r['path']} ({kind}, strength {s:g} vs 0): {err}") from None
                drop.cells[(m, f"s{s!r}")] = _Stat(drops)
        tables[kind] = {"mean_score": score, "relative_drop_pct": drop}
        if vs_ew:
            tables[kind]["relative_to_ew_pct"] = _robustness_vs_ew(ds, kind, strengths, score, robs, seeds_n)
    md = f"# {ds}: robustness\n\n" + "\n".join(
        _render_md(t, "##") for per_kind in tables.values() for t in per_kind.values())
    tex = "\n".join(_render_tex(t) for per_kind in tables.values() for t in per_kind.values())
    rows = []
    for kind, per_kind in tables.items():
        for quantity, table in per_kind.items():
            best = table.best()
            for m in methods:
                for s in strengths:
                    stat = table.cells[(m, f"s{s!r}")]
                    rows.append([ds, m, kind, s, quantity, stat.mean, stat.std, stat.n,
                                 (m, f"s{s!r}") in best])
    csv_text = _csv_text(["dataset", "method", "kind", "strength", "quantity", "mean", "std", "n_seeds",
                          "best"], rows)
    return md, tex, csv_text, tables


def _robustness_vs_ew(ds: str, kind: str, strengths: list[float], score: _Table,
                      robs: dict[str, list[dict]], seeds_n: list[int]) -> _Table:
    """The robust score relative to EW's at the same kind and strength (InfoMTL's "increase in
    robust scores over EW"), per seed from the cells of `score`, then mean +- std."""
    ew_paths = ", ".join(str(r["path"]) for r in robs[EW_METHOD])
    direction = score.columns[0].higher_is_better
    table = _Table(
        title=f"{ds}: robustness to {kind} — robust score vs EW (%)",
        caption=(f"Per seed, 100 (R - R_EW) / R_EW with R the mean primary score over tasks under {kind} "
                 f"perturbations and R_EW EW ({EW_METHOD})'s seed mean at the same strength (positive: "
                 f"a higher score than EW's; EW = 0), mean ± std (numpy ddof={STD_DDOF}) over "
                 f"{'/'.join(map(str, seeds_n))} seeds. Best per column in bold."),
        columns=[_Column(f"s{s!r}", f"{s:g}", direction, "fix2", arrow=False) for s in strengths],
        rows=list(score.rows), row_header="Method \\ strength")
    for s in strengths:
        key = f"s{s!r}"
        ew_mean = score.cells[(EW_METHOD, key)].mean
        for m in score.rows:
            table.cells[(m, key)] = _relative_change_stat(m, score.cells[(m, key)].values, ew_mean,
                                                          f"{ew_paths} ({kind}, strength {s:g})")
    return table


# --------------------------------------------------------------------------------------------
# Figures (matplotlib's object API on the Agg canvas: no pyplot, no global backend switch)
# --------------------------------------------------------------------------------------------

def _figure(nrows: int, ncols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=120)


def _plot_delta_m(ds: str, stats: dict[str, _Stat], path: Path) -> None:
    methods = list(stats)
    fig, axes = _figure(1, 1, max(5.5, 0.6 * len(methods) + 1.5), 3.8)
    ax = axes[0][0]
    means = [stats[m].mean for m in methods]
    stds = [stats[m].std for m in methods]
    colors = ["0.6" if m == STL_METHOD else ("tab:red" if v > 0 else "tab:blue")
              for m, v in zip(methods, means)]
    ax.bar(range(len(methods)), means, yerr=stds, capsize=3, color=colors)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
    ax.set_ylabel("Δm (%) vs STL  (lower is better)")
    ax.set_title(f"{ds}: Δm per method (mean ± std over seeds)", fontsize="medium")
    _save(fig, path)


def _plot_lines(ax, x: Sequence[float], table: _Table, keys: Sequence[str]) -> None:
    for m in table.rows:
        stats = [table.cells[(m, k)] for k in keys]
        ax.errorbar(x, [s.mean for s in stats], yerr=[s.std for s in stats], marker="o",
                    markersize=3, capsize=2, label=m)


# what each quantity's panel shows on its y axis; every quantity but the score is drawn with its 0 line
_AXIS_LABELS = {"mean_score": "mean primary score over tasks",
                "delta_m": "Δm (%) vs STL  (lower is better)",
                "delta_p": "Δp (%) vs EW  (higher is better)",
                "relative_drop_pct": "relative drop (%) vs strength 0",
                "relative_to_ew_pct": "robust score vs EW (%)"}


def _plot_panel(ax, x: Sequence[float], table: _Table, keys: Sequence[str], quantity: str) -> None:
    _plot_lines(ax, x, table, keys)
    if quantity != "mean_score":
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(_AXIS_LABELS[quantity])


def _plot_data_fraction(ds: str, fractions: list[int], quantities: Mapping[str, _Table], path: Path) -> None:
    """One panel per quantity (mean score, Delta_m and, for InfoMTL's datasets, Delta_p)."""
    fig, axes = _figure(1, len(quantities), 5 * len(quantities), 3.8)
    keys = [f"pct{f}" for f in fractions]
    for ax, (quantity, table) in zip(axes[0], quantities.items()):
        _plot_panel(ax, fractions, table, keys, quantity)
        ax.set_xlabel("training data (%)")
        ax.set_xticks(fractions)
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(f"{ds}: data-fraction ablation (mean ± std over seeds)")
    _save(fig, path)


def _plot_robustness(ds: str, strengths: list[float], tables: Mapping[str, Mapping[str, _Table]],
                     path: Path) -> None:
    """A column of panels per kind, a row per quantity (score, drop and, for InfoMTL's datasets,
    the score relative to EW's)."""
    kinds = list(tables)
    n_rows = len(tables[kinds[0]])
    fig, axes = _figure(n_rows, len(kinds), 4.5 * len(kinds) + 0.5, 3.25 * n_rows)
    keys = [f"s{s!r}" for s in strengths]
    for j, kind in enumerate(kinds):
        for i, (quantity, table) in enumerate(tables[kind].items()):
            _plot_panel(axes[i][j], strengths, table, keys, quantity)
        axes[0][j].set_title(kind)
        axes[-1][j].set_xlabel("perturbation strength")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(f"{ds}: robustness (mean ± std over seeds)")
    _save(fig, path)


# --------------------------------------------------------------------------------------------
# The aggregate stage
# --------------------------------------------------------------------------------------------

@dataclass
class _Inputs:
    """Where one dataset's computations read from: its grid, its 100 % STL reference, the folders."""
    ds: str
    params: Mapping
    grid: P.Grid
    loader: _Loader
    eval_dir: Any
    robustness_dir: Any
    reference_dir: Any
    main_ref: dict


def _collect(ds: str, params: Mapping, eval_dir, robustness_dir, reference_dir) -> _DatasetResult:
    result = _DatasetResult(ds)
    loader = _Loader()
    grid = _grid(params, ds)
    inputs = _Inputs(ds, params, grid, loader, eval_dir, robustness_dir, reference_dir,
                     loader.reference(reference_dir, ds, REFERENCE_FRACTION))
    _collect_main(inputs, result)
    if _df_fractions(grid):
        _collect_data_fraction(inputs, result)
    if _has_robustness(params, grid):
        _collect_robustness(inputs, result)
    result.inputs = loader.inputs
    return result


def _collect_main(inp: _Inputs, result: _DatasetResult) -> None:
    """The tables of the 100 % runs of every method of the grid: main, calibration, representation."""
    ds = inp.ds
    main_evals = {m: [inp.loader.eval(inp.eval_dir, ds, m, REFERENCE_FRACTION, s, inp.main_ref)
                      for s in _seeds(inp.params)] for m in inp.grid.methods}
    ew = (_ew_baseline(_ew_runs(main_evals, f"{inp.grid.name}.methods")) if _reports_delta_p(inp.grid)
          else None)
    table, delta_stats = _main_table(ds, inp.params, inp.main_ref, main_evals, result, ew)
    result.main_evals, result.delta_stats = main_evals, delta_stats
    result.add_table("main", _render_md(table), _render_tex(table), _main_csv(ds, table))
    result.figures[f"{ds}_delta_m.png"] = lambda p: _plot_delta_m(ds, delta_stats, p)

    # calibration of the classification tasks (BayesAgg-MTL's appendix C.1)
    calibration = _calibration_table(ds, inp.main_ref, main_evals)
    if calibration is not None:
        result.add_table("calibration", _render_md(calibration), _render_tex(calibration),
                         _calibration_csv(ds, calibration))

    # representation quality (InfoMTL's Table 5): every evaluation records it
    representation = _representation_table(ds, main_evals)
    result.add_table("representation", _render_md(representation), _render_tex(representation),
                     _representation_csv(ds, representation))


def _collect_data_fraction(inp: _Inputs, result: _DatasetResult) -> None:
    ds, grid, loader = inp.ds, inp.grid, inp.loader
    fractions = _df_fractions(grid)
    methods = _ordered(grid.data_fraction_methods, grid.methods)
    df_seeds = _seeds(inp.params, _ablation(inp.params, "data_fraction"))
    refs = {}
    for f in fractions:
        rf = _df_reference_fraction(inp.params, ds, f)
        refs[f] = inp.main_ref if rf == REFERENCE_FRACTION else loader.reference(inp.reference_dir, ds, rf)
        _check_against_reference(refs[f]["path"], refs[f]["task_order"], refs[f]["tasks"], inp.main_ref)
    evals = {m: {f: [loader.eval(inp.eval_dir, ds, m, f, s, inp.main_ref) for s in df_seeds] for f in fractions}
             for m in methods}
    ews = None
    if _reports_delta_p(grid):  # Delta_p at each fraction is against EW at that fraction
        ew_evals = _ew_runs(evals, f"{grid.name}.ablations.data_fraction.methods")
        ews = {f: _ew_baseline(ew_evals[f]) for f in fractions}
    md, tex, csv_text, quantities = _data_fraction(ds, methods, fractions, evals, refs, inp.main_ref, ews)
    result.add_table("data_fraction", md, tex, csv_text)
    result.figures[f"{ds}_data_fraction.png"] = lambda p: _plot_data_fraction(ds, fractions, quantities, p)


def _collect_robustness(inp: _Inputs, result: _DatasetResult) -> None:
    ds = inp.ds
    rob = _ablation(inp.params, "robustness")
    methods = _ordered(inp.grid.robustness_methods, inp.grid.methods)
    kinds = list(rob["kinds"])
    strengths = sorted({0.0, *(float(s) for s in rob.get("strengths") or [])})
    robs = {m: [inp.loader.robustness(inp.robustness_dir, ds, m, s, kinds, strengths, inp.main_ref)
                for s in _seeds(inp.params, rob)] for m in methods}
    # the scores relative to EW's need EW's robustness runs, which validation does not require
    vs_ew = _reports_delta_p(inp.grid) and EW_METHOD in methods
    md, tex, csv_text, tables = _robustness(ds, methods, kinds, strengths, robs, inp.main_ref, vs_ew)
    result.add_table("robustness", md, tex, csv_text)
    result.figures[f"{ds}_robustness.png"] = lambda p: _plot_robustness(ds, strengths, tables, p)


def _round(value: float, digits: int = 6) -> float:
    """6 significant digits, and floating-point round-off (|x| < 1e-12) shown as 0: diff-friendly."""
    return 0.0 if abs(value) < 1e-12 else float(f"{value:.{digits}g}")


class _Staging:
    """Hidden folders inside each destination; `commit` moves sidecar then artifact into place."""

    def __init__(self) -> None:
        self._dirs: dict[Path, Path] = {}
        self._created: list[Path] = []
        self.staged: list[tuple[Path, Path]] = []  # (staged artifact, final artifact)

    def path_for(self, final: Path) -> Path:
        dest = final.parent
        if dest not in self._dirs:
            missing = [p for p in [dest, *dest.parents] if not p.exists()]
            dest.mkdir(parents=True, exist_ok=True)
            self._created += missing
            self._dirs[dest] = Path(tempfile.mkdtemp(prefix=".aggregate-staging-", dir=dest))
        staged = self._dirs[dest] / final.name
        self.staged.append((staged, final))
        return staged

    def commit(self) -> None:
        for staged, final in self.staged:
            sidecar = staged.with_name(staged.name + ".provenance.json")
            if sidecar.exists():
                os.replace(sidecar, final.with_name(final.name + ".provenance.json"))
            os.replace(staged, final)

    def cleanup(self, failed: bool) -> None:
        for tmp in self._dirs.values():
            shutil.rmtree(tmp, ignore_errors=True)
        if failed:
            for path in sorted(set(self._created), key=lambda q: len(q.parts), reverse=True):
                try:
                    path.rmdir()
                except OSError:
                    pass


# --------------------------------------------------------------------------------------------
# Training logs: the validation curves and the methods' task weights (BayesAgg-MTL's Figure 3)
# --------------------------------------------------------------------------------------------

def log_path(logs_dir: str | os.PathLike, dataset: str, method: str, seed: int,
             fraction: int = REFERENCE_FRACTION) -> Path:
    """``<logs_dir>/<dataset>/<method>/pct<fraction>/seed<seed>.json`` (the train stage's log)."""
    return Path(logs_dir) / dataset / method / f"pct{_fraction_int(fraction)}" / f"seed{int(seed)}.json"


def load_log(path: str | os.PathLike, *, dataset: str | None = None, method: str | None = None,
             seed: int | None = None) -> dict:
    """Reads and validates one training log: a JSON object with ``history`` and, where present,
    ``method_log`` (a list of ``{"epoch", "kind", "weights"}``) and ``tasks`` (its task names,
    required when ``method_log`` is not empty).  The identifying fields given are checked against
    the file's.  Returns the log with ``"path"`` added and ``method_log`` always a list."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise MTLReproError(f"{path}: a training log must hold a JSON object")
    for key, expected in (("dataset", dataset), ("method", method), ("seed", seed)):
        _check_field(data, key, expected, path)
    _require(data, "history", path, (list, dict))
    entries = data.get("method_log", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise MTLReproError(f"{path}: key 'method_log' has the wrong type ({type(entries).__name__})")
    for i, entry in enumerate(entries):
        where = f"{path} (method_log[{i}])"
        if not isinstance(entry, dict):
            raise MTLReproError(f"{path}: method_log[{i}] must be an object")
        epoch = _number(_require(entry, "epoch", where), f"method_log[{i}].epoch", path)
        if not epoch.is_integer():
            raise MTLReproError(f"{path}: method_log[{i}].epoch is {epoch}, not an integer")
        _require(entry, "kind", where, str)
        _require(entry, "weights", where)
    tasks = data.get("tasks")
    if entries and (not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks)):
        raise MTLReproError(f"{path}: key 'tasks' (the task names) must be a non-empty list of "
                            f"strings when method_log has entries")
    return {**data, "path": path, "method_log": entries}


def _load_logs(params: Mapping, logs_dir: Path, ds: str) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """method -> its logs in params' seed order, and the sha256 of every log read."""
    logs: dict[str, list[dict]] = {}
    inputs: dict[str, str] = {}
    for method in _grid(params, ds).methods:
        for seed in _seeds(params):
            path = log_path(logs_dir, ds, method, seed)
            logs.setdefault(method, []).append(load_log(path, dataset=ds, method=method, seed=seed))
            inputs[str(path)] = sha256_file(path)
    return logs, inputs


def _numeric_array(value: Any, where: str, path: Path) -> np.ndarray | None:
    """`value` (nested lists of finite numbers) as a float array; None when it is ragged.
    Raises MTLReproError naming `path` for anything that is not a finite number."""
    stack = [(value, where)]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, list):
            stack.extend((v, f"{loc}[{j}]") for j, v in enumerate(item))
        else:
            _number(item, loc, path)
    try:
        return np.asarray(value, dtype=float)
    except ValueError:
        return None


@dataclass
class _WeightPanels:
    """BayesAgg-MTL's per-dimension weights of one log: [K, d] per logged epoch (probe mean)."""
    tasks: list[str]
    epochs: list[int]
    weights: list[np.ndarray]   # [K, d] each: mean over the probe examples
    n_probe: list[int]


def _per_dimension_panels(log: dict) -> _WeightPanels | None:
    """The ``per_dimension`` entries of a log's method_log, each ``[K][P][d]`` averaged over its
    P probe examples; None when there are none."""
    path = log["path"]
    panels = _WeightPanels(tasks=list(log.get("tasks") or []), epochs=[], weights=[], n_probe=[])
    for i, entry in enumerate(log["method_log"]):
        if entry["kind"] != "per_dimension":
            continue
        where = f"method_log[{i}].weights"
        w = _numeric_array(entry["weights"], where, path)
        k = len(panels.tasks)
        if w is None or w.ndim != 3 or w.shape[0] != k or 0 in w.shape:
            shape = "ragged" if w is None else list(w.shape)
            raise MTLReproError(f"{path}: {where} (epoch {int(entry['epoch'])}, per_dimension) must be "
                                f"[K][P][d] with K = {k} tasks {panels.tasks}; got shape {shape}")
        if panels.weights and w.shape[2] != panels.weights[0].shape[1]:
            raise MTLReproError(f"{path}: {where} has {w.shape[2]} dimensions but the first "
                                f"per_dimension entry has {panels.weights[0].shape[1]}")
        panels.epochs.append(int(entry["epoch"]))
        panels.weights.append(w.mean(axis=1))
        panels.n_probe.append(int(w.shape[1]))
    return panels if panels.epochs else None


def _per_task_series(log: dict) -> tuple[list[int], np.ndarray] | None:
    """The ``per_task`` entries of a log whose weights are a flat [K] vector, as (epochs, [E, K]);
    None when there are none.  Entries of other shapes are skipped."""
    path = log["path"]
    k = len(log.get("tasks") or [])
    epochs, rows = [], []
    for i, entry in enumerate(log["method_log"]):
        if entry["kind"] != "per_task":
            continue
        w = _numeric_array(entry["weights"], f"method_log[{i}].weights", path)
        if w is not None and w.ndim == 1 and w.shape[0] == k:
            epochs.append(int(entry["epoch"]))
            rows.append(w)
    return (epochs, np.stack(rows)) if rows else None


def _weight_figures(ds: str, params: Mapping, logs: Mapping[str, list[dict]]
                    ) -> list[tuple[str, Any, dict[str, str]]]:
    """(file name, draw(path), inputs) of the task-weight figures of one dataset, from the logs of
    the first seed in params: ``<ds>_<method>_weights.png`` for each method whose log has
    per_dimension weights, and ``<ds>_task_weights.png`` for the methods whose log has flat
    per_task weights (none when no method has)."""
    seed = _seeds(params)[0]
    out = []
    series: dict[str, tuple[list[int], np.ndarray, list[str]]] = {}
    series_inputs: dict[str, str] = {}
    for method in _grid(params, ds).methods:
        log = logs[method][0]
        inputs = {str(log["path"]): sha256_file(log["path"])}
        panels = _per_dimension_panels(log)
        if panels is not None:
            out.append((f"{ds}_{method}_weights.png",
                        lambda p, m=method, pn=panels: _plot_weight_heatmaps(ds, m, seed, pn, p), inputs))
        flat = _per_task_series(log)
        if flat is not None:
            series[method] = (flat[0], flat[1], list(log["tasks"]))
            series_inputs.update(inputs)
    if series:
        out.append((f"{ds}_task_weights.png", lambda p: _plot_task_weights(ds, seed, series, p), series_inputs))
    return out


def _plot_weight_heatmaps(ds: str, method: str, seed: int, panels: _WeightPanels, path: Path) -> None:
    n = len(panels.epochs)
    k, d = panels.weights[0].shape
    vmin = float(min(w.min() for w in panels.weights))
    vmax = float(max(w.max() for w in panels.weights))
    if vmax == vmin:
        vmax = vmin + 1e-9
    fig, axes = _figure(1, n, min(3.6 * n + 1.6, 22.0), max(3.0, 0.3 * k + 2.0))
    image = None
    for j, (ax, epoch, w) in enumerate(zip(axes[0], panels.epochs, panels.weights)):
        image = ax.imshow(w, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"epoch {epoch}", fontsize="medium")
        ax.set_xlabel("representation dimension")
        ax.set_yticks(range(k), panels.tasks if j == 0 else [""] * k, fontsize="small")
    fig.colorbar(image, ax=list(axes[0]), label="task weight α")
    probes = "/".join(str(p) for p in sorted(set(panels.n_probe)))
    fig.suptitle(f"{ds}: {method} per-dimension task weights (mean over {probes} probe examples), "
                 f"seed {seed}, {d} dimensions", fontsize="medium")
    _save(fig, path)


def _plot_task_weights(ds: str, seed: int, series: Mapping[str, tuple[list[int], np.ndarray, list[str]]],
                       path: Path) -> None:
    n = len(series)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(nrows, ncols, 4.4 * ncols + 0.6, 3.2 * nrows + 0.6)
    for idx, (method, (epochs, weights, tasks)) in enumerate(series.items()):
        ax = axes[idx // ncols][idx % ncols]
        for k, task in enumerate(tasks):
            ax.plot(epochs, weights[:, k], marker="o", markersize=3, label=task)
        ax.set_title(method, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.set_ylabel("task weight")
        ax.set_xticks(sorted(set(epochs)))
        ax.legend(fontsize="x-small", ncol=2 if len(tasks) > 6 else 1)
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    fig.suptitle(f"{ds}: task weights at the logged epochs, seed {seed}", fontsize="medium")
    _save(fig, path)


def _val_curve(log: dict) -> tuple[list[int], list[float]]:
    """Validation score per epoch; STL's per-task histories are averaged over tasks."""
    history = log["history"]
    if isinstance(history, dict):
        runs = list(history.values())
        epochs = [h["epoch"] for h in runs[0]]
        return epochs, [float(np.mean([run[i]["val_score"] for run in runs])) for i in range(len(epochs))]
    return [h["epoch"] for h in history], [h["val_score"] for h in history]


def _plot_training(ds: str, logs: dict[str, list[dict]], path: Path) -> None:
    fig, ax = _figure(1, 1, 6.0, 4.0)
    ax = ax[0][0] if hasattr(ax, "__getitem__") and hasattr(ax[0], "__getitem__") else ax
    for method, runs in logs.items():
        curves = [_val_curve(r) for r in runs]
        n = min(len(c[1]) for c in curves)
        values = np.array([c[1][-n:] for c in curves])
        epochs = curves[0][0][-n:]
        ax.plot(epochs, values.mean(0), label=method)
        ax.fill_between(epochs, values.mean(0) - values.std(0), values.mean(0) + values.std(0), alpha=0.2)
    ax.set_xlabel("epoch")
    # the score model selection uses: mean over tasks of z-scored MAE or error rate
    ax.set_ylabel("validation score (lower is better)")
    ax.set_title(f"{ds}: validation score, mean ± std over seeds", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path)


# --------------------------------------------------------------------------------------------
# Published numbers side by side with ours
# --------------------------------------------------------------------------------------------

PUBLISHED_COMPARISON = "published_comparison"


def competition_ranks(values: Mapping[str, float], higher_is_better: bool) -> dict[str, int]:
    """1 = best; ties share the best rank of their group ("1224" ranking)."""
    sign = -1.0 if higher_is_better else 1.0
    return {key: 1 + sum(1 for other in values.values() if sign * other < sign * v)
            for key, v in values.items()}


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 pairs or for a constant."""
    if len(a) < 3:
        return None
    ra, rb = average_ranks(np.asarray(a, dtype=float)), average_ranks(np.asarray(b, dtype=float))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _sizes_text(params: Mapping, ds: str) -> str:
    config = (params.get("dataset") or {}).get(ds) or {}
    source = (config.get("source") or {}).get("kind")
    split = config.get("split") or {}
    if not split:
        return "sizes not given in params"
    fractions = all(isinstance(v, float) and v < 1 for v in split.values())
    parts = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:g}" for k, v in split.items())
    return (f"{source + ' source, ' if source else ''}split {parts}"
            f"{' as fractions of the data set' if fractions else ' examples'}")


@dataclass
class _Comparison:
    dataset: str
    counterpart: published.Counterpart
    table: published.PublishedTable
    rows: list[str]
    published: dict[str, published.Entry]
    ours: dict[str, _Stat]
    published_ranks: dict[str, int]
    our_ranks: dict[str, int]
    spearman: float | None
    n_common: int


def _our_comparable(cp: published.Counterpart, result: _DatasetResult) -> dict[str, _Stat]:
    if cp.ours == "delta_m":
        return dict(result.delta_stats)
    if cp.ours == "accuracy_pct":
        out = {}
        for m, evals in result.main_evals.items():
            out[m] = _Stat([100.0 * float(np.mean([_task_metric(ev, t, "accuracy", "published comparison")
                                                    for t in ev["task_order"]])) for ev in evals])
        return out
    raise MTLReproError(f"published.COUNTERPARTS[{cp.dataset!r}]: unknown quantity {cp.ours!r}")


def _comparison(params: Mapping, result: _DatasetResult) -> _Comparison | None:
    cp = published.counterpart(result.dataset)
    if cp is None:
        return None
    table = published.table(cp.table)
    ours = _our_comparable(cp, result)
    order = list(_grid(params, result.dataset).methods)
    rows = order + [m for m in table.entries if m not in order]
    pub = {m: table.entries[m] for m in rows if m in table.entries}
    common = [m for m in rows if m in pub and m in ours]
    return _Comparison(
        dataset=result.dataset, counterpart=cp, table=table, rows=rows, published=pub, ours=ours,
        published_ranks=competition_ranks({m: e.value for m, e in pub.items()}, table.higher_is_better),
        our_ranks=competition_ranks({m: s.mean for m, s in ours.items()}, table.higher_is_better),
        spearman=_spearman([pub[m].value for m in common], [ours[m].mean for m in common]),
        n_common=len(common))


def _our_metric_label(cp: published.Counterpart) -> str:
    return {"delta_m": "Δm% vs STL", "accuracy_pct": "mean accuracy over tasks (%)"}[cp.ours]


def _published_text(entry: published.Entry, decimals: int) -> str:
    if entry.by_definition:
        return f"{entry.value:.{decimals}f} (by definition)"
    text = f"{entry.value:.{decimals}f}"
    if entry.std is None:
        return text
    std = f"{entry.std:g}"
    return f"{text} ± {std if '.' in std else std + '.0'}"


def _comparison_md(c: _Comparison, params: Mapping) -> str:
    cp, t = c.counterpart, c.table
    arrow = "↑" if t.higher_is_better else "↓"
    n_seeds = sorted({s.n for s in c.ours.values()})
    kind = ("the same data set" if cp.same_dataset else
            f"NOT the same data set: {c.dataset} is a different, smaller data set of the same kind as {t.dataset}")
    caption = (
        f"Not a replication at the paper's scale. Ours: {c.dataset}, {cp.description}; our runs use "
        f"{_sizes_text(params, c.dataset)}: the embedded default uses small subsets of the data. "
        f"The paper's {t.dataset}: {t.data}. Absolute numbers therefore differ and are not "
        f"comparable; only the orderings of the methods (the ranks) are. {c.dataset} vs "
        f"{t.dataset}: {kind}."
        + (f" Metric: {cp.metric_note}." if cp.metric_note else "")
        + f" Published: {t.source}, {t.metric}, as printed (± = std over {t.seeds} seeds)"
        + (f"; {t.note}" if t.note else "")
        + f". Ours: {_our_metric_label(cp)}, mean ± std (numpy ddof={STD_DDOF}) over "
        f"{'/'.join(map(str, n_seeds))} seeds; our gradient-based methods act at the level set in "
        f"params (by default the shared representation). Rank: 1 = best in its column "
        f"({'higher' if t.higher_is_better else 'lower'} is better), ties share the best rank; "
        f"— = not run here / not in the paper's table.")
    header = ["Method", f"Published: {t.dataset}, {t.metric} {arrow}", "Rank",
              f"Ours: {c.dataset}, {_our_metric_label(cp)} {arrow}", "Rank"]
    lines = [f"## {c.dataset} ↔ {t.dataset} ({t.source})", "", f"*{_md_escape(caption)}*", "",
             "| " + " | ".join(_md_escape(h) for h in header) + " |", "|:---|---:|---:|---:|---:|"]
    for m in c.rows:
        label = published.PAPER_NAMES.get(m)
        name = f"{m} ({label})" if label and label != m else m
        pub = c.published.get(m)
        ours = c.ours.get(m)
        lines.append("| " + " | ".join([
            _md_escape(name),
            _published_text(pub, t.decimals) if pub else "—",
            str(c.published_ranks[m]) if pub else "—",
            _fmt(ours, "fix2", " ± ") if ours else "—",
            str(c.our_ranks[m]) if ours else "—"]) + " |")
    rho = "n/a (fewer than 3 methods or no spread)" if c.spearman is None else f"{c.spearman:.2f}"
    lines += ["", f"Spearman rank correlation between the two columns over the {c.n_common} methods "
                  f"on both sides: {rho}.", ""]
    return "\n".join(lines)


def _comparison_rows(c: _Comparison) -> list[list[Any]]:
    rows = []
    for m in c.rows:
        pub, ours = c.published.get(m), c.ours.get(m)
        rows.append([c.dataset, c.table.dataset, c.table.source, c.table.metric, _our_metric_label(c.counterpart),
                     c.table.higher_is_better, c.counterpart.same_dataset, m,
                     pub.label if pub else published.PAPER_NAMES.get(m, ""),
                     pub.value if pub else "", pub.std if pub and pub.std is not None else "",
                     pub.by_definition if pub else "", c.published_ranks.get(m, ""),
                     ours.mean if ours else "", ours.std if ours else "", ours.n if ours else "",
                     c.our_ranks.get(m, "")])
    return rows


def _published_comparison(params: Mapping, results: Sequence[_DatasetResult]
                          ) -> tuple[str, str, dict[str, str]] | None:
    """The Markdown and CSV of the published-vs-ours tables, and their inputs; None when no
    dataset in params has a published counterpart (`published.COUNTERPARTS`)."""
    comparisons = [(c, r) for r in results if (c := _comparison(params, r)) is not None]
    if not comparisons:
        return None
    md = ("# Published numbers side by side with ours\n\n"
          "Each section sets one of our data sets beside the published table of its counterpart. "
          "The embedded default trains on small subsets (sizes in each caption, from params), so "
          "absolute numbers differ from the papers' and only the orderings of the methods are "
          "comparable.\n\n" + "\n".join(_comparison_md(c, params) for c, _ in comparisons))
    csv_text = _csv_text(
        ["our_dataset", "published_dataset", "published_source", "published_metric", "our_metric",
         "higher_is_better", "same_dataset", "method", "paper_method", "published_value", "published_std",
         "published_by_definition", "published_rank", "ours_mean", "ours_std", "ours_n_seeds", "ours_rank"],
        [row for c, _ in comparisons for row in _comparison_rows(c)])
    inputs = {k: v for _, r in comparisons for k, v in r.inputs.items()}
    inputs[str(Path(published.__file__))] = sha256_file(published.__file__)
    return md, csv_text, inputs


def aggregate(params: Mapping, eval_dir: str | os.PathLike, robustness_dir: str | os.PathLike,
              reference_dir: str | os.PathLike, tables_dir: str | os.PathLike,
              figures_dir: str | os.PathLike, summary_path: str | os.PathLike,
              logs_dir: str | os.PathLike | None = None) -> dict:
    """Reads the evaluation, robustness and reference files that params says exist (and, when
    `logs_dir` is given, the training logs ``<logs_dir>/<dataset>/<method>/pct100/seed<s>.json``
    of every method and seed) and writes, each with a provenance sidecar:

    * per dataset of every grid, ``<tables_dir>/<dataset>_{main,data_fraction,robustness}.{md,tex,csv}``
      and ``<figures_dir>/<dataset>_{delta_m,data_fraction,robustness}.png`` (the ablation ones
      when its grid has the ablation; for the "infomtl_study" grid's datasets with InfoMTL's
      Avg., Delta_p over EW and robust scores relative to EW added);
    * ``<tables_dir>/<dataset>_calibration.{md,tex,csv}`` for each dataset with classification
      tasks: mean ECE and mean Brier score over those tasks (BayesAgg-MTL's appendix C.1);
    * ``<tables_dir>/<dataset>_representation.{md,tex,csv}`` for every dataset: uniformity and
      ARI from the evaluations' ``representation`` entries (InfoMTL's Table 5);
    * ``<tables_dir>/published_comparison.{md,csv}`` when a dataset has a published counterpart
      (`published.COUNTERPARTS`: qm9 -> QM9, digits-mtl -> CIFAR-MTL): the papers' numbers beside
      ours, with each column's ranks;
    * with `logs_dir`: ``<figures_dir>/<dataset>_training.png`` (validation curves),
      ``<figures_dir>/<dataset>_<method>_weights.png`` for each method whose first-seed log has
      per-dimension weights (BayesAgg-MTL's Figure 3: one tasks x dimensions heat map per logged
      epoch, averaged over the probe examples), and ``<figures_dir>/<dataset>_task_weights.png``
      when some methods' first-seed logs have flat per-task weights;
    * the metrics summary at `summary_path`.

    Nothing is written unless everything succeeds.  Returns the summary."""
    tables_dir, figures_dir, summary_path = Path(tables_dir), Path(figures_dir), Path(summary_path)
    datasets = _datasets(params)
    if not datasets:
        raise MTLReproError("params: datasets is missing or empty")
    for grid in P.grids(_with_defaults(params)):
        if grid.datasets and not grid.methods:
            where = "methods" if grid.name == "main" else f"{grid.name}.methods"
            raise MTLReproError(f"params: {where} is missing or empty")
    results = [_collect(ds, params, eval_dir, robustness_dir, reference_dir) for ds in datasets]
    if logs_dir is not None:
        for r in results:
            logs, log_inputs = _load_logs(params, Path(logs_dir), r.dataset)
            name = f"{r.dataset}_training.png"
            r.figures[name] = lambda p, ds=r.dataset, logs=logs: _plot_training(ds, logs, p)
            r.output_inputs[name] = log_inputs
            for name, draw, inputs in _weight_figures(r.dataset, params, logs):
                r.figures[name] = draw
                r.output_inputs[name] = inputs
    comparison = _published_comparison(params, results)
    summary = {r.dataset: {m: {k: (_round(v) if isinstance(v, float) else v) for k, v in s.items()}
                           for m, s in r.summary.items()} for r in results}
    slice_ = _params_slice(params)
    staging = _Staging()
    ok = False
    try:
        for r in results:
            for name, text in r.tables.items():
                staged = staging.path_for(tables_dir / name)
                write_text(staged, text)
                write_sidecar(staged, slice_, stage="aggregate", dataset=r.dataset,
                              inputs=r.output_inputs.get(name, r.inputs))
            for name, draw in r.figures.items():
                staged = staging.path_for(figures_dir / name)
                draw(staged)
                write_sidecar(staged, slice_, stage="aggregate", dataset=r.dataset,
                              inputs=r.output_inputs.get(name, r.inputs))
        if comparison is not None:
            md, csv_text, inputs = comparison
            sizes = {ds: {k: (params.get("dataset") or {}).get(ds, {}).get(k) for k in ("source", "split")}
                     for ds in datasets if published.counterpart(ds) is not None}
            for ext, text in (("md", md), ("csv", csv_text)):
                staged = staging.path_for(tables_dir / f"{PUBLISHED_COMPARISON}.{ext}")
                write_text(staged, text)
                write_sidecar(staged, {**slice_, "dataset": sizes}, stage="aggregate", inputs=inputs)
        staged = staging.path_for(summary_path)  # last in the list: moved into place last
        write_json(staged, summary)
        write_sidecar(staged, slice_, stage="aggregate",
                      inputs={k: v for r in results for k, v in r.inputs.items()})
        staging.commit()
        ok = True
    finally:
        staging.cleanup(failed=not ok)
    return summary
