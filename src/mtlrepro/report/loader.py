"""Reading and validating the report's inputs: evaluations, robustness runs, STL references and
training logs.  Every error names the file at fault (and the key in it); nothing is trusted that
was not checked: the identifying fields against the file's location, the tasks against the
reference's, and every number used for finiteness."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import MTLReproError, read_json, sha256_file

REFERENCE_FRACTION = 100  # the main runs' fraction; the references are built from them


def fraction_int(fraction: Any, where: str = "fraction") -> int:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise MTLReproError(f"{where}: {fraction!r} is not a number") from None
    if not value.is_integer() or not 0 < value <= 100:
        raise MTLReproError(f"{where}: {fraction!r} must be an integer percent in (0, 100]")
    return int(value)


def eval_path(eval_dir: str | os.PathLike, dataset: str, method: str, fraction: int, seed: int) -> Path:
    """``<eval_dir>/<dataset>/<method>/pct<fraction>/seed<seed>.json``."""
    return Path(eval_dir) / dataset / method / f"pct{fraction_int(fraction)}" / f"seed{int(seed)}.json"


def robustness_path(robustness_dir: str | os.PathLike, dataset: str, method: str, seed: int) -> Path:
    """``<robustness_dir>/<dataset>/<method>/seed<seed>.json``."""
    return Path(robustness_dir) / dataset / method / f"seed{int(seed)}.json"


def reference_path(reference_dir: str | os.PathLike, dataset: str) -> Path:
    """``<reference_dir>/<dataset>.json``: the STL reference at 100 %."""
    return Path(reference_dir) / f"{dataset}.json"


def log_path(logs_dir: str | os.PathLike, dataset: str, method: str, seed: int,
             fraction: int = REFERENCE_FRACTION) -> Path:
    """``<logs_dir>/<dataset>/<method>/pct<fraction>/seed<seed>.json`` (the train stage's log)."""
    return Path(logs_dir) / dataset / method / f"pct{fraction_int(fraction)}" / f"seed{int(seed)}.json"


def number(value: Any, where: str, path: Path | str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MTLReproError(f"{path}: {where} is {value!r}, not a number")
    value = float(value)
    if not math.isfinite(value):
        raise MTLReproError(f"{path}: {where} is {value} (non-finite)")
    return value


def require(data: Mapping, key: str, path: Path | str, kind: type | tuple = object) -> Any:
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
    value = require(data, key, path)
    if key in ("seed", "fraction"):
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and float(value) == float(expected)
    else:
        ok = value == expected
    if not ok:
        raise MTLReproError(f"{path}: {key} is {value!r} but {expected!r} was expected from its location")


def _json_object(path: Path, what: str, **expected: Any) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        raise MTLReproError(f"{path}: {what} must hold a JSON object")
    for key, value in expected.items():
        _check_field(data, key, value, path)
    return data


def _eval_task(name: str, task: Any, path: Path) -> dict:
    if not isinstance(task, dict):
        raise MTLReproError(f"{path}: tasks.{name} must be an object")
    primary = require(task, "primary", f"{path} (tasks.{name})", str)
    hib = require(task, "higher_is_better", f"{path} (tasks.{name})", bool)
    metrics = require(task, "metrics", f"{path} (tasks.{name})", dict)
    if primary not in metrics:
        raise MTLReproError(f"{path}: tasks.{name}.metrics has no primary metric {primary!r}")
    value = number(metrics[primary], f"tasks.{name}.metrics.{primary}", path)
    return {"primary": primary, "higher_is_better": hib, "kind": task.get("kind"),
            "value": value, "metrics": dict(metrics), "unit": _unit(task, name, path)}


def _unit(task: dict, name: str, path: Path) -> str | None:
    """The units of a task's errors where the file records them (QM9: "meV"), else None."""
    unit = task.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise MTLReproError(f"{path}: tasks.{name}.unit must be a string, not {type(unit).__name__}")
    return unit


def load_eval(path: str | os.PathLike, *, dataset: str | None = None, method: str | None = None,
              fraction: int | None = None, seed: int | None = None) -> dict:
    """Reads and validates one evaluation file; returns
    ``{"path", "dataset", "method", "seed", "fraction", "task_order", "representation",
    "tasks": {task: {"primary", "higher_is_better", "kind", "value", "metrics"}}}`` where
    ``value`` is the task's primary metric (the only metric validated here: each table checks the
    ones it uses) and ``representation`` the file's entry as it is (None when absent).  The
    identifying fields given are checked against the file's."""
    path = Path(path)
    data = _json_object(path, "an evaluation file", dataset=dataset, method=method, fraction=fraction,
                        seed=seed)
    tasks_in = require(data, "tasks", path, dict)
    if not tasks_in:
        raise MTLReproError(f"{path}: no tasks")
    tasks = {str(name): _eval_task(name, task, path) for name, task in tasks_in.items()}
    order = _task_order(data, tasks, path)
    return {"path": path, "dataset": data.get("dataset"), "method": data.get("method"),
            "seed": int(data["seed"]) if "seed" in data else None,
            "fraction": fraction_int(data["fraction"], f"{path}: fraction") if "fraction" in data else None,
            "task_order": order, "tasks": {t: tasks[t] for t in order},
            "representation": data.get("representation")}


def load_reference(path: str | os.PathLike, *, dataset: str | None = None) -> dict:
    """Reads and validates a reference written by `build_reference` (at 100 %)."""
    path = Path(path)
    data = _json_object(path, "a reference", dataset=dataset, fraction=REFERENCE_FRACTION)
    tasks = require(data, "tasks", path, dict)
    if not tasks:
        raise MTLReproError(f"{path}: no tasks")
    order = _task_order(data, tasks, path)
    for task in order:
        info = tasks[task]
        require(info, "primary", f"{path} (tasks.{task})", str)
        require(info, "higher_is_better", f"{path} (tasks.{task})", bool)
        number(require(info, "mean", f"{path} (tasks.{task})"), f"tasks.{task}.mean", path)
        number(info.get("std", 0.0), f"tasks.{task}.std", path)
    return {**data, "path": path, "task_order": order, "tasks": {t: tasks[t] for t in order}}


def _curve_point(entries: list, kind: str, strength: float, order: Sequence[str], path: Path) -> dict:
    hits = [e for e in entries if isinstance(e, dict) and "strength" in e
            and math.isclose(number(e["strength"], f"perturbations.{kind}[].strength", path),
                             strength, rel_tol=1e-9, abs_tol=1e-12)]
    if not hits:
        raise MTLReproError(f"{path}: perturbations.{kind} has no entry at strength {strength:g}")
    if len(hits) > 1:
        raise MTLReproError(f"{path}: perturbations.{kind} has {len(hits)} entries at strength {strength:g}")
    values = require(hits[0], "values", f"{path} (perturbations.{kind}, strength {strength:g})", dict)
    missing = [t for t in order if t not in values]
    if missing:
        raise MTLReproError(f"{path}: perturbations.{kind} at strength {strength:g} lacks task(s) {missing}")
    return {t: number(values[t], f"perturbations.{kind}[strength={strength:g}].values.{t}", path) for t in order}


def load_robustness(path: str | os.PathLike, *, dataset: str | None = None, method: str | None = None,
                    seed: int | None = None, kinds: Sequence[str] = (),
                    strengths: Sequence[float] = ()) -> dict:
    """Reads and validates one robustness file; returns ``{"path", "task_order", "tasks",
    "curves": {kind: {strength: {task: value}}}}`` holding, for each kind asked, strength 0 and
    every strength asked (each must be in the file)."""
    path = Path(path)
    data = _json_object(path, "a robustness file", dataset=dataset, method=method, seed=seed)
    tasks_in = require(data, "tasks", path, dict)
    if not tasks_in:
        raise MTLReproError(f"{path}: no tasks")
    tasks = {str(name): {"primary": require(task, "primary", f"{path} (tasks.{name})", str),
                         "higher_is_better": require(task, "higher_is_better", f"{path} (tasks.{name})", bool),
                         "unit": _unit(task, name, path)}
             for name, task in tasks_in.items()}
    order = _task_order(data, tasks, path)
    perts = require(data, "perturbations", path, dict)
    wanted = sorted({0.0, *(float(s) for s in strengths)})
    curves: dict[str, dict[float, dict[str, float]]] = {}
    for kind in kinds:
        if kind not in perts:
            raise MTLReproError(f"{path}: perturbation kind {kind!r} is missing (present: {sorted(perts)})")
        if not isinstance(perts[kind], list):
            raise MTLReproError(f"{path}: perturbations.{kind} must be a list")
        curves[kind] = {s: _curve_point(perts[kind], kind, s, order, path) for s in wanted}
    return {"path": path, "task_order": order, "tasks": {t: tasks[t] for t in order}, "curves": curves}


def load_log(path: str | os.PathLike, *, dataset: str | None = None, method: str | None = None,
             seed: int | None = None) -> dict:
    """Reads and validates one training log: a JSON object with ``history`` and, where present,
    ``method_log`` (a list of ``{"epoch", "kind", "weights"}``) and ``tasks`` (its task names,
    required when ``method_log`` is not empty).  The identifying fields given are checked against
    the file's.  Returns the log with ``"path"`` added and ``method_log`` always a list."""
    path = Path(path)
    data = _json_object(path, "a training log", dataset=dataset, method=method, seed=seed)
    require(data, "history", path, (list, dict))
    entries = data.get("method_log", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise MTLReproError(f"{path}: key 'method_log' has the wrong type ({type(entries).__name__})")
    for i, entry in enumerate(entries):
        where = f"{path} (method_log[{i}])"
        if not isinstance(entry, dict):
            raise MTLReproError(f"{path}: method_log[{i}] must be an object")
        epoch = number(require(entry, "epoch", where), f"method_log[{i}].epoch", path)
        if not epoch.is_integer():
            raise MTLReproError(f"{path}: method_log[{i}].epoch is {epoch}, not an integer")
        require(entry, "kind", where, str)
        require(entry, "weights", where)
    tasks = data.get("tasks")
    if entries and (not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks)):
        raise MTLReproError(f"{path}: key 'tasks' (the task names) must be a non-empty list of "
                            f"strings when method_log has entries")
    return {**data, "path": path, "method_log": entries}


def check_against_reference(path: Path, task_order: Sequence[str], tasks: Mapping, reference: dict) -> None:
    """The file's tasks, primary metrics, directions and units are the reference's (errors in eV
    against a reference in meV would give a wrong Delta_m)."""
    if sorted(task_order) != sorted(reference["task_order"]):
        raise MTLReproError(f"{path}: tasks {list(task_order)} differ from the reference's "
                            f"{reference['task_order']} ({reference['path']})")
    for task in reference["task_order"]:
        for key in ("primary", "higher_is_better", "unit"):
            if tasks[task].get(key) != reference["tasks"][task].get(key):
                raise MTLReproError(f"{path}: tasks.{task}.{key} is {tasks[task].get(key)!r} but the "
                                    f"reference {reference['path']} has {reference['tasks'][task].get(key)!r}")


class Loader:
    """Loads each input once for one dataset of a study, checked against its reference, and
    records every file's sha256 for the sidecars."""

    def __init__(self, eval_dir, robustness_dir, reference_dir, dataset: str) -> None:
        self.eval_dir, self.robustness_dir, self.dataset = eval_dir, robustness_dir, dataset
        self.inputs: dict[str, str] = {}
        self._evals: dict[Path, dict] = {}
        path = reference_path(reference_dir, dataset)
        self.reference = load_reference(path, dataset=dataset)
        self._record(path)

    def _record(self, path: Path) -> None:
        self.inputs[str(path)] = sha256_file(path)

    def eval(self, method: str, fraction: int, seed: int) -> dict:
        path = eval_path(self.eval_dir, self.dataset, method, fraction, seed)
        if path not in self._evals:
            ev = load_eval(path, dataset=self.dataset, method=method, fraction=fraction, seed=seed)
            check_against_reference(path, ev["task_order"], ev["tasks"], self.reference)
            self._record(path)
            self._evals[path] = ev
        return self._evals[path]

    def robustness(self, method: str, seed: int, kinds: Sequence[str], strengths: Sequence[float]) -> dict:
        path = robustness_path(self.robustness_dir, self.dataset, method, seed)
        rob = load_robustness(path, dataset=self.dataset, method=method, seed=seed, kinds=kinds,
                              strengths=strengths)
        check_against_reference(path, rob["task_order"], rob["tasks"], self.reference)
        self._record(path)
        return rob
