"""The study's measures as small pure functions of numbers; the reference or baseline they are
measured against is always an argument (never read from a global or a method name).

* ``delta_m`` (Maninis et al. 2019, as used by BayesAgg-MTL), lower is better::

      Delta_m% = 100 / K * sum_k (-1)^{delta_k} (M_m,k - M_s,k) / M_s,k,  delta_k = 1 if higher is better

* ``delta_p`` (InfoMTL's average relative improvement over a baseline), higher is better: the
  same relative differences with the sign flipped, i.e. ``-delta_m`` against the baseline.
* ``relative_drop``: ``delta_m`` of perturbed metrics against the same run at strength 0.
* ``robust_score``: InfoMTL's robust score, the mean primary score over tasks on perturbed data.
* ``relative_change``: ``100 (v - b) / b``, InfoMTL's "increase in robust score over EW".

Standard deviations over seeds are numpy's population std (``ddof = STD_DDOF = 0``) everywhere.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..io import MTLReproError
from ..metrics import average_ranks

STD_DDOF = 0


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard deviation (numpy, ``ddof=STD_DDOF`` = 0) of a non-empty sequence."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise MTLReproError("mean_std: no values")
    return float(arr.mean()), float(arr.std(ddof=STD_DDOF))


def _check_tasks(values: Mapping[str, float], reference: Mapping[str, float],
                 higher_is_better: Mapping[str, bool]) -> list[str]:
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
    return tasks


def delta_m(values: Mapping[str, float], reference: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float:
    """Delta_m% of `values` against `reference` over the reference's tasks (lower is better).

    Raises MTLReproError for a task missing from `values` or `higher_is_better`, a task in
    `values` absent from `reference`, a zero reference value or a non-finite number."""
    total = 0.0
    tasks = _check_tasks(values, reference, higher_is_better)
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


def delta_p(values: Mapping[str, float], baseline: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float:
    """InfoMTL's Delta_p% of `values` against `baseline` (higher is better): ``-delta_m``."""
    return -delta_m(values, baseline, higher_is_better)


def relative_drop(perturbed: Mapping[str, float], clean: Mapping[str, float],
                  higher_is_better: Mapping[str, bool]) -> float:
    """The degradation (%) of `perturbed` against the same run's `clean` metrics: positive is worse."""
    return delta_m(perturbed, clean, higher_is_better)


def mean_score(values: Mapping[str, float], order: Sequence[str]) -> float:
    """The plain mean over tasks of each task's primary metric (InfoMTL's Avg. / robust score)."""
    return float(np.mean([values[t] for t in order]))


robust_score = mean_score  # InfoMTL's robust score: the mean score on perturbed test data


def relative_change(value: float, baseline: float, where: str) -> float:
    """``100 (value - baseline) / baseline``; `where` names the baseline in the zero error."""
    if baseline == 0.0:
        raise MTLReproError(f"{where}: the baseline's score is zero; the relative change is undefined")
    return 100.0 * (value - baseline) / baseline


def competition_ranks(values: Mapping[str, float], higher_is_better: bool) -> dict[str, int]:
    """1 = best; ties share the best rank of their group ("1224" ranking)."""
    sign = -1.0 if higher_is_better else 1.0
    return {key: 1 + sum(1 for other in values.values() if sign * other < sign * v)
            for key, v in values.items()}


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 pairs or for a constant."""
    if len(a) < 3:
        return None
    ra, rb = average_ranks(np.asarray(a, dtype=float)), average_ranks(np.asarray(b, dtype=float))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])
