"""Representation quality (InfoMTL's Table 5), for every dataset: per seed, the evaluation's
``representation`` entry at 100 %: the uniformity of the shared representation (lower is better)
and the ARI of each classification task's outputs, in % (higher is better); then mean +- std."""
from __future__ import annotations

from typing import Mapping

from ..io import MTLReproError
from . import naming as N
from .loader import number, require
from .measures import STD_DDOF
from .table import Column, Stat, Table


def representation_entry(ev: dict) -> dict:
    """The evaluation's representation entry, checked: ``{"uniformity": float, "ari": {task: float}}``
    (ARI for the classification tasks, in the evaluation's task order)."""
    path = ev["path"]
    if ev.get("representation") is None:
        raise MTLReproError(f"{path}: missing key 'representation' (uniformity and ARI, needed by the "
                            f"representation table; evaluations written by the evaluate stage record it)")
    entry = require(ev, "representation", path, dict)
    uniformity = number(require(entry, "uniformity", f"{path} (representation)"), "representation.uniformity", path)
    ari = require(entry, "ari", f"{path} (representation)", dict)
    unknown = [t for t in ari if t not in ev["tasks"]]
    if unknown:
        raise MTLReproError(f"{path}: representation.ari has task(s) {unknown} that are not in tasks")
    per_task = entry.get("uniformity_per_task")  # evaluations before it was recorded have none
    if per_task is not None and not isinstance(per_task, dict):
        raise MTLReproError(f"{path}: representation.uniformity_per_task is {per_task!r}, not an object")
    return {"uniformity": uniformity,
            "uniformity_per_task": None if per_task is None else {
                t: number(per_task[t], f"representation.uniformity_per_task.{t}", path)
                for t in ev["task_order"] if t in per_task},
            "ari": {t: number(ari[t], f"representation.ari.{t}", path) for t in ev["task_order"] if t in ari}}


def representation_table(dataset: str, evals: Mapping[str, list[dict]]) -> Table:
    """Every evaluation must give the ARI of the same tasks as the first."""
    entries = {m: [(ev["path"], representation_entry(ev)) for ev in runs] for m, runs in evals.items()}
    first_path, first = next(iter(entries.values()))[0]
    ari_tasks = list(first["ari"])
    for path, entry in (e for runs in entries.values() for e in runs):
        if list(entry["ari"]) != ari_tasks:
            raise MTLReproError(f"{path}: representation.ari has the tasks {list(entry['ari'])} but "
                                f"{first_path} has {ari_tasks}")
    per_task = [list(e["uniformity_per_task"]) for _, e in (x for runs in entries.values() for x in runs)
                if e["uniformity_per_task"] is not None]
    uni_tasks = per_task[0] if per_task and len(per_task) == sum(len(r) for r in entries.values()) \
        and all(p == per_task[0] for p in per_task) else []  # shown where every run records the same tasks
    ari_text = ("; ARI (%, higher is better) = adjusted Rand index between a k-means clustering of "
                "each classification task's outputs and its labels" if ari_tasks else
                "; no classification task, so no ARI")
    table = Table(
        title=f"{dataset}: representation quality",
        caption=(f"As InfoMTL's Table 5, on the test split at 100% of the training data: Uni. = "
                 f"uniformity of the shared representation (log-mean of exp(-2 d^2) over pairs of "
                 f"normalised representations; lower is better)"
                 + ("; <task> Uni. = the same over the task's own labelled examples, as Table 5 reports it"
                    if uni_tasks else "") + f"{ari_text}; mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {N.seed_counts(evals.values())} seeds. Best per column in bold."),
        columns=[Column("uniformity", "Uni.", False, "fix3", coords={"quantity": "uniformity"})]
                + [Column(f"uni:{t}", f"{t} Uni.", False, "fix3", coords={"quantity": "uniformity", "task": t})
                   for t in uni_tasks]
                + [Column(f"ari:{t}", f"{t} ARI (%)", True, "fix2", coords={"quantity": "ari_pct", "task": t})
                   for t in ari_tasks],
        rows=list(evals))
    for m, runs in entries.items():
        table.cells[(m, "uniformity")] = Stat([e["uniformity"] for _, e in runs])
        for t in uni_tasks:
            table.cells[(m, f"uni:{t}")] = Stat([e["uniformity_per_task"][t] for _, e in runs])
        for t in ari_tasks:
            table.cells[(m, f"ari:{t}")] = Stat([100.0 * e["ari"][t] for _, e in runs])
    return table
