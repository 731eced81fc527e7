"""The sweeps of a study (mtlrepro.sweep): per dataset and swept method, the variant chosen on the
validation split, and the table of every variant.

A variant's validation score is, per seed, the best epoch's validation score of its training log
(the score the loop selects epochs by: lower is better); the chosen variant has the lowest mean
over the study's seeds (the first in grid order on a tie). The main table's row of the method is
the chosen variant's runs; the test split never takes part in the choice."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .. import params as P
from ..io import MTLReproError
from ..sweep import Variant
from .loader import load_log, log_path, number
from .table import Column, Stat, Table


@dataclass
class Choice:
    method: str
    variants: tuple[Variant, ...]
    validation: dict[str, Stat]   # variant name -> best validation score over seeds
    chosen: Variant


def best_validation_score(log: dict) -> float:
    """The validation score of the log's best epoch: the `history` entry whose `epoch` (1-based,
    counted from the start of the budget, so a warm start's first is pretrain_epochs + 1) is
    `best_epoch`."""
    path, history, best = log["path"], log["history"], log.get("best_epoch")
    entries = [h for h in history if isinstance(h, dict) and h.get("epoch") == best]
    if isinstance(best, bool) or not isinstance(best, int) or len(entries) != 1:
        raise MTLReproError(f"{path}: best_epoch {best!r} is not an epoch of its history")
    return number(entries[0].get("val_score"), f"history (epoch {best}).val_score", path)


def choices(study: P.Study, dataset: str, logs_dir: Path) -> tuple[dict[str, Choice], dict[str, str]]:
    """(swept method -> its choice, every training log read -> its dataset-relative name)."""
    out, read = {}, {}
    for method in study.methods:
        variants = study.variants(dataset, method)
        if not variants:
            continue
        scores = {}
        for v in variants:
            values = []
            for seed in study.seeds:
                path = log_path(logs_dir, dataset, v.name, seed)
                values.append(best_validation_score(load_log(path, dataset=dataset, method=v.name, seed=seed)))
                read[str(path)] = v.name
            scores[v.name] = Stat(values)
        chosen = min(variants, key=lambda v: (scores[v.name].mean, variants.index(v)))
        out[method] = Choice(method, variants, scores, chosen)
    return out, read


def chosen_note(picked: Mapping[str, Choice]) -> str:
    """The main table's caption words on the swept methods."""
    if not picked:
        return ""
    parts = [f"{m}: {c.chosen.describe()} (of {len(c.variants)})" for m, c in picked.items()]
    return " Swept methods, chosen on the validation split: " + "; ".join(parts) + "."


def sweep_table(dataset: str, picked: Mapping[str, Choice], delta_m: Mapping[str, Stat]) -> Table:
    """Every variant: its settings, validation score (the choice's criterion) and test Delta_m."""
    rows, cells = [], {}
    for c in picked.values():
        for v in c.variants:
            row = f"{c.method}: {v.describe()}" + ("  (chosen)" if v == c.chosen else "")
            rows.append(row)
            cells[(row, "validation")] = c.validation[v.name]
            if v.name in delta_m:
                cells[(row, "delta_m")] = delta_m[v.name]
    columns = [Column("validation", "validation score (best epoch)", False, "sig4", coords={"quantity": "val_score"}),
               Column("delta_m", "test Δm%", None, "fix2", coords={"quantity": "delta_m"})]
    table = Table(title=f"{dataset}: hyper-parameter sweeps",
                  caption=("Each variant's validation score (the best epoch's, lower is better; the choice's "
                           "criterion, marked best) and its test Δm% (not used to choose; unmarked), mean ± std "
                           "over the seeds."),
                  columns=columns, rows=rows, cells=cells, row_header="Variant")
    table.groups = {row: row.split(":")[0] for row in rows}
    return table
