"""The calibration table (BayesAgg-MTL's appendix C.1) of a dataset with classification tasks
(evaluation ``kind`` in `naming.CLASSIFICATION_KINDS`): per seed the mean over those tasks of the
evaluation's ``ece`` (`metrics.ECE_BINS` equal-width bins) and ``brier``, then mean +- std over
seeds; lower is better.  The accuracy over the same tasks is shown for reference, unmarked."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..io import MTLReproError
from ..metrics import ECE_BINS
from . import naming as N
from .loader import number
from .measures import STD_DDOF
from .table import Column, Stat, Table


def task_metric(ev: dict, task: str, metric: str, needed_by: str) -> float:
    """A secondary metric of one task of an evaluation, checked (only the metrics used are)."""
    metrics = ev["tasks"][task]["metrics"]
    if metric not in metrics:
        raise MTLReproError(f"{ev['path']}: tasks.{task}.metrics has no {metric!r} (needed by the {needed_by})")
    return number(metrics[metric], f"tasks.{task}.metrics.{metric}", ev["path"])


def calibration_table(dataset: str, reference: dict, evals: Mapping[str, list[dict]]) -> Table | None:
    """None when the dataset has no classification task."""
    kinds = N.task_kinds(reference, evals)
    tasks = N.classification_tasks(kinds)
    if not tasks:
        return None
    others = [t for t in kinds if t not in tasks]
    left_out = "; the other tasks are not classification tasks and are left out" if others else ""
    table = Table(
        title=f"{dataset}: calibration of the classification tasks",
        caption=(f"Per seed, the mean over the {len(tasks)} classification task(s) "
                 f"({', '.join(tasks)}{left_out}) "
                 f"of the expected calibration error (ECE, {ECE_BINS} equal-width confidence bins) and of "
                 f"the Brier score, as in BayesAgg-MTL's appendix C.1; then mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {N.seed_counts(evals.values())} seeds. Lower is better; best per "
                 f"column in bold. The accuracy (mean over the same tasks) is shown for reference only "
                 f"and is not marked."),
        columns=[Column("ece", f"mean ECE ({ECE_BINS} bins)", False, "sig4", coords={"quantity": "ece"}),
                 Column("brier", "mean Brier", False, "sig4", coords={"quantity": "brier"}),
                 Column("accuracy", "mean Acc. (reference)", None, "fix3", arrow=False,
                        coords={"quantity": "accuracy"})],
        rows=list(evals), coords={"n_tasks": len(tasks)})
    for m, runs in evals.items():
        for metric in ("ece", "brier", "accuracy"):
            table.cells[(m, metric)] = Stat(
                [float(np.mean([task_metric(ev, t, metric, "calibration table") for t in tasks])) for ev in runs])
    return table
