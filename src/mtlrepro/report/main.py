"""The main table of a dataset: each method's primary metric per task at 100 % of the training
data, Delta_m% against the stored STL reference and, for a study with a Delta_p baseline
(InfoMTL's), InfoMTL's Avg. (mean score over tasks) and Delta_p% over the baseline.

Avg. is shown only where it is meaningful (every task a classification task sharing one primary
metric, like CIFAR-MTL's "Acc."), and always in a study with a baseline; the summary always has
each method's mean score."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from . import naming as N
from .measures import STD_DDOF
from .stats import baseline_means, baseline_runs, delta_m_stat, delta_p_stat, mean_score_stat
from .table import Column, Stat, Table


@dataclass
class MainResult:
    table: Table
    delta_m: dict[str, Stat]                  # method -> Delta_m over seeds
    summary: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> its numbers


def _avg_column(reference: dict, kinds: Mapping[str, str | None]) -> Column:
    """The Avg. column, named after the tasks' primary metric when they share one."""
    order = reference["task_order"]
    metrics = {reference["tasks"][t]["primary"] for t in order}
    coords = {"quantity": "mean_score"}
    if len(metrics) > 1:
        return Column("mean_score", "Avg.", N.common_direction(reference), N.mean_score_style(reference),
                      coords=coords)
    metric = metrics.pop()
    return Column("mean_score", f"Avg. {N.metric_label(metric)}", N.common_direction(reference),
                  N.metric_style(metric, kinds[order[0]]), coords=coords)


def _columns(reference: dict, kinds, roles: N.Roles, show_avg: bool) -> list[Column]:
    columns = []
    for t in reference["task_order"]:
        info = reference["tasks"][t]
        columns.append(Column(f"task:{t}", f"{t} ({N.task_label(info)})", info["higher_is_better"],
                              N.metric_style(info["primary"], kinds[t]), coords={"quantity": "primary", "task": t}))
    if show_avg:
        columns.append(_avg_column(reference, kinds))
    if roles.baseline is not None:
        columns.append(Column("delta_p", "Δp%", True, "fix2",
                              coords={"quantity": "delta_p", "reference": f"{roles.baseline} at 100% (seed mean)"}))
    columns.append(Column("delta_m", "Δm%", False, "fix2",
                          coords={"quantity": "delta_m", "reference": reference["path"].name}))
    return columns


def _caption(reference: dict, kinds, roles: N.Roles, show_avg: bool, n_seeds: str) -> str:
    ref = roles.reference_name
    delta_p = ""
    if roles.baseline is not None:
        base = roles.baseline_name
        delta_p = (f"; Δp% = InfoMTL's average relative improvement over {base} ({roles.baseline}): per seed "
                   f"against {base}'s seed mean, sign-adjusted so that higher is better, {base} = 0")
    return (f"Primary metric per task at 100% of the training data (↓ lower / ↑ higher is "
            f"better{'; errors in the target units' if 'regression' in kinds.values() else ''}), "
            f"mean ± std (numpy ddof={STD_DDOF}) over {n_seeds} seeds"
            + ("; Avg. = mean over tasks" if show_avg else "") + delta_p
            + f"; Δm% vs the {ref} reference {reference['path'].name} (mean over its "
            f"{len(reference.get('seeds', []))} seeds; lower is better, {ref} = 0). Best per column in bold.")


def main_table(dataset: str, roles: N.Roles, reference: dict, evals: dict[str, list[dict]],
               note: str = "") -> MainResult:
    """`evals`: method -> its evaluations at 100 % by seed, in the study's order; `note` ends the caption."""
    order = reference["task_order"]
    baseline = None
    if roles.baseline is not None:  # Delta_p against the baseline's seed means at 100 %
        baseline = baseline_means(baseline_runs(evals, roles.baseline, "main table"), roles.baseline)
    kinds = N.task_kinds(reference, evals)
    show_avg = baseline is not None or N.average_meaningful(reference, kinds)  # InfoMTL's Avg.: always
    table = Table(title=f"{dataset}: main results",
                  caption=_caption(reference, kinds, roles, show_avg, N.seed_counts(evals.values())) + note,
                  columns=_columns(reference, kinds, roles, show_avg), rows=list(evals))
    result = MainResult(table, {})
    for m, runs in evals.items():
        for t in order:
            table.cells[(m, f"task:{t}")] = Stat([e["tasks"][t]["value"] for e in runs])
        score = mean_score_stat(runs, order)
        if show_avg:
            table.cells[(m, "mean_score")] = score
        delta = result.delta_m[m] = table.cells[(m, "delta_m")] = delta_m_stat(m, runs, reference, roles.reference)
        result.summary[m] = {"delta_m": delta.mean, "delta_m_std": delta.std,
                             "mean_score": score.mean, "mean_score_std": score.std, "n_seeds": score.n}
        if baseline is not None:
            dp = table.cells[(m, "delta_p")] = delta_p_stat(m, runs, baseline, roles.baseline)
            result.summary[m].update(avg=score.mean, avg_std=score.std, delta_p=dp.mean, delta_p_std=dp.std)
    table.caption += spread_and_noise(result.delta_m, roles.reference)
    return result


def spread_and_noise(delta_m: Mapping[str, Stat], reference: str) -> str:
    """Whether the table tells its methods apart: the spread of the methods' mean Delta_m (their
    std, the reference left out) against the seed noise (the methods' mean std over seeds)."""
    rows = [d for m, d in delta_m.items() if m != reference and d.n > 1]
    if len(rows) < 2:
        return ""
    spread = float(np.std([d.mean for d in rows]))
    noise = float(np.mean([d.std for d in rows]))
    ratio = f"{spread / noise:.1f}x the noise" if noise > 0 else "no seed noise"
    return (f" Δm% spread between the {len(rows)} methods (the std of their means) {spread:.2f}; "
            f"seed noise (their mean std over seeds) {noise:.2f}: the spread is {ratio}.")
