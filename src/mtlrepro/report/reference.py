"""The `reference` stage: a study's STL evaluations of one dataset (every seed of the study, at
100 % of the training data) -> the reference that Delta_m is measured against: per task the
mean and std (ddof 0) over seeds of the primary metric, with the per-seed values."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..io import MTLReproError, sha256_file, write_json, write_sidecar
from .loader import REFERENCE_FRACTION, load_eval
from .measures import STD_DDOF, mean_std


def _check_consistent(evals: Sequence[dict], method: str) -> None:
    """One dataset, each seed once, the same tasks with the same primary metric and direction."""
    first = evals[0]
    seen: dict[int, Path] = {}
    for ev in evals:
        path = ev["path"]
        if ev["method"] != method:
            raise MTLReproError(f"{path}: method is {ev['method']!r}, the reference needs {method!r}")
        if ev["fraction"] != REFERENCE_FRACTION:
            raise MTLReproError(f"{path}: fraction is {ev['fraction']!r}, the reference is at {REFERENCE_FRACTION}")
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
            for key in ("primary", "higher_is_better", "unit"):
                if info.get(key) != ref.get(key):
                    raise MTLReproError(f"{path}: tasks.{task}.{key} is {info.get(key)!r} but "
                                        f"{ref.get(key)!r} in {first['path']}")


def reference_from_evals(evals: Sequence[dict], method: str = "stl") -> dict:
    """The reference of `method`'s evaluations (checked to be one dataset's, each seed once)."""
    _check_consistent(evals, method)
    first = evals[0]
    ordered = sorted(evals, key=lambda e: e["seed"])
    tasks = {}
    for task in first["task_order"]:
        values = [e["tasks"][task]["value"] for e in ordered]
        mean, std = mean_std(values)
        tasks[task] = {"primary": first["tasks"][task]["primary"],
                       "higher_is_better": first["tasks"][task]["higher_is_better"],
                       "kind": first["tasks"][task]["kind"],
                       "mean": mean, "std": std, "values": values}
        if first["tasks"][task].get("unit"):  # the units of the errors, for the tables' headers
            tasks[task]["unit"] = first["tasks"][task]["unit"]
    return {"dataset": first["dataset"], "method": method, "fraction": REFERENCE_FRACTION,
            "seeds": [e["seed"] for e in ordered], "std_ddof": STD_DDOF,
            "task_order": list(first["task_order"]), "tasks": tasks}


def build_reference(eval_files: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                    method: str = "stl", params: Any = None) -> dict:
    """Builds the reference of one dataset from its `method` (STL) evaluation files at 100 %, one
    per seed of the study, and writes it atomically to `out` with a provenance sidecar (`params`:
    the params slice it records).  Files ending in ``.provenance.json`` are ignored.  Returns the
    reference."""
    out = Path(out)
    files = [Path(f) for f in eval_files if not str(f).endswith(".provenance.json")]
    if not files:
        raise MTLReproError(f"no STL evaluation files given to build the reference {out}")
    evals = [load_eval(f, method=method, fraction=REFERENCE_FRACTION) for f in files]
    reference = reference_from_evals(evals, method)
    write_json(out, reference)
    write_sidecar(out, params, stage="reference", inputs={str(f): sha256_file(f) for f in sorted(files)})
    return reference
