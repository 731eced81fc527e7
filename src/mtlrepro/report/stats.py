"""The measures per seed, then mean +- std over seeds (`Stat`), for the tables: each seed's
evaluation against a reference (Delta_m: the stored STL reference) or a baseline (Delta_p: the
baseline method's seed mean at the same fraction).  The reference's or baseline's own row is
exactly 0 once shown to be (only round-off is removed); a stale STL reference raises."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..io import MTLReproError
from . import measures
from .naming import seeds_text
from .table import Stat

_STALE_TOL = 1e-6  # Delta_m units (%): how far the reference's row may be from 0 before it is stale


def _seed_values(ev: dict) -> dict[str, float]:
    return {t: ev["tasks"][t]["value"] for t in ev["task_order"]}


def _per_seed(evals: Sequence[dict], reference: dict, measure: Callable) -> list[float]:
    ref = {t: reference["tasks"][t]["mean"] for t in reference["task_order"]}
    hib = {t: reference["tasks"][t]["higher_is_better"] for t in reference["task_order"]}
    out = []
    for ev in evals:
        try:
            out.append(measure(_seed_values(ev), ref, hib))
        except MTLReproError as err:
            raise MTLReproError(f"{ev['path']} against {reference['path']}: {err}") from None
    return out


def _zero_own_row(stat: Stat, method: str, own: str, evals: Sequence[dict], reference: dict) -> Stat:
    """`own`'s row against its own seed mean at its fraction is 0 up to round-off: set it to 0,
    after checking that it is (else the stored reference does not come from these evaluations)."""
    if method == own and reference.get("fraction") == evals[0]["fraction"]:
        if abs(stat.mean) > _STALE_TOL:
            raise MTLReproError(
                f"the {own} evaluations ({', '.join(str(e['path']) for e in evals)}) give Δm "
                f"{stat.mean:.3g} % against {reference['path']}, not 0: the reference is stale or was "
                f"built from other seeds; rebuild it with the reference stage")
        stat.mean = 0.0
    return stat


def delta_m_stat(method: str, evals: Sequence[dict], reference: dict, reference_method: str) -> Stat:
    """Delta_m% per seed of `method`'s evaluations against the stored `reference`."""
    stat = Stat(_per_seed(evals, reference, measures.delta_m))
    return _zero_own_row(stat, method, reference_method, evals, reference)


def delta_p_stat(method: str, evals: Sequence[dict], baseline: dict, baseline_method: str) -> Stat:
    """Delta_p% per seed against `baseline`, the baseline method's seed means (`baseline_means`)."""
    stat = Stat(_per_seed(evals, baseline, measures.delta_p))
    return _zero_own_row(stat, method, baseline_method, evals, baseline)


def baseline_means(evals: Sequence[dict], method: str) -> dict:
    """`method`'s seed mean per task, shaped like a reference: the Delta_p baseline at its fraction."""
    first = evals[0]
    order = first["task_order"]
    return {"path": f"{method} at {first['fraction']}%, mean over {seeds_text(len(evals))}",
            "fraction": first["fraction"], "task_order": list(order),
            "tasks": {t: {"mean": measures.mean_std([e["tasks"][t]["value"] for e in evals])[0],
                          "higher_is_better": first["tasks"][t]["higher_is_better"]} for t in order}}


def baseline_runs(runs: Mapping[str, Any], method: str, what: str) -> Any:
    """The baseline method's entry of `runs` (method -> its runs)."""
    if method not in runs:
        raise MTLReproError(f"the {what} has no runs of {method!r}, the study's Delta_p baseline "
                            f"(studies.<name>.baseline): Delta_p is measured against it")
    return runs[method]


def mean_score_stat(evals: Sequence[dict], order: Sequence[str]) -> Stat:
    """The mean primary score over tasks per seed (InfoMTL's Avg.)."""
    return Stat([measures.mean_score(_seed_values(e), order) for e in evals])


def relative_change_stat(method: str, values: Sequence[float], baseline_mean: float,
                         baseline_method: str, where: str) -> Stat:
    """100 (v - baseline_mean) / baseline_mean per seed; the baseline's own mean is exactly 0."""
    stat = Stat([measures.relative_change(v, baseline_mean, where) for v in values])
    if method == baseline_method:
        stat.mean = 0.0
    return stat
