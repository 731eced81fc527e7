"""The data-fraction ablation of a dataset (methods x fractions, the study's fractions plus 100,
the main runs): the mean primary score and Delta_m% against the stored 100 % STL reference and,
for a study with a Delta_p baseline, Delta_p% against the baseline at the same fraction, shown in
InfoMTL's Table 6 layout (a row per fraction and method) in place of the score table.  The
published Table 6 itself is set beside these cells in published_comparison (report.fraction_comparison)."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import naming as N
from .measures import STD_DDOF
from .stats import baseline_means, baseline_runs, delta_m_stat, delta_p_stat, mean_score_stat
from .table import Column, Stat, Table


@dataclass
class DataFraction:
    quantities: dict[str, Table]  # quantity -> methods x fractions: the CSV's and the figure's
    shown: list[Table]            # the Markdown/LaTeX tables
    methods: list[str] = field(default_factory=list)    # the rows, in the study's order
    fractions: list[int] = field(default_factory=list)  # the columns: the study's fractions and 100
    evals: dict[str, dict[int, list[dict]]] = field(default_factory=dict)  # method -> fraction -> by seed

    def stat(self, quantity: str, method: str, fraction: int) -> Stat | None:
        """One cell of a quantity's table ("mean_score", "delta_m", "delta_p"); None where the
        table or the cell is absent (no Delta_p without a baseline)."""
        table = self.quantities.get(quantity)
        return None if table is None else table.cells.get((method, f"pct{fraction}"))


def _fraction_columns(fractions, direction, style, reference: str | None = None) -> list[Column]:
    return [Column(f"pct{f}", f"{f}%", direction, style, arrow=False,
                   coords={"fraction": f, **({"reference": reference.format(f=f)} if reference else {})})
            for f in fractions]


def _score_and_delta(dataset, roles: N.Roles, methods, fractions, evals, reference: dict, seeds: str):
    order = reference["task_order"]
    direction = N.common_direction(reference)
    ref_name = reference["path"].name
    ref_text = ", ".join(f"{f}%→{ref_name}" for f in fractions)
    score = Table(
        title=f"{dataset}: data fraction — mean primary score",
        caption=(f"Average over tasks of the primary metric ("
                 f"{'higher' if direction else 'lower' if direction is not None else 'mixed directions: see per-task'}"
                 f" is better) vs the percentage of the training split used, mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {seeds} seeds. Best per column in bold."),
        columns=_fraction_columns(fractions, direction, N.mean_score_style(reference)), rows=list(methods),
        coords={"quantity": "mean_score"})
    ref = roles.reference_name
    delta = Table(
        title=f"{dataset}: data fraction — Δm% vs {ref}",
        caption=(f"Δm% (lower is better) per seed against the {ref} reference at the same fraction when "
                 f"{ref} ran at it, else the 100% reference ({ref_text}), mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {seeds} seeds. Best per column in bold."),
        columns=_fraction_columns(fractions, False, "fix2", ref_name), rows=list(methods),
        coords={"quantity": "delta_m"})
    for m in methods:
        for f in fractions:
            score.cells[(m, f"pct{f}")] = mean_score_stat(evals[m][f], order)
            delta.cells[(m, f"pct{f}")] = delta_m_stat(m, evals[m][f], reference, roles.reference)
    return score, delta


def _delta_p(dataset, roles: N.Roles, methods, fractions, evals, seeds: str) -> Table:
    """Delta_p% at each fraction against the baseline's seed mean at that fraction."""
    base_runs = baseline_runs(evals, roles.baseline, "data-fraction ablation")
    table = Table(
        title=f"{dataset}: data fraction — Δp% vs {roles.baseline_name}",
        caption=(f"Δp% (higher is better) per seed against {roles.baseline_name} ({roles.baseline})'s seed "
                 f"mean at the same fraction, mean ± std (numpy ddof={STD_DDOF}) over {seeds} "
                 f"seeds. Best per column in bold."),
        columns=_fraction_columns(fractions, True, "fix2", f"{roles.baseline} at {{f}}% (seed mean)"),
        rows=list(methods), coords={"quantity": "delta_p"})
    for f in fractions:
        baseline = baseline_means(base_runs[f], roles.baseline)
        for m in methods:
            table.cells[(m, f"pct{f}")] = delta_p_stat(m, evals[m][f], baseline, roles.baseline)
    return table


def _table6(dataset, roles: N.Roles, fractions, methods, score: Table, delta_p: Table, seeds: str) -> Table:
    """InfoMTL's Table 6 layout of the same cells: a row per (fraction, method), columns Avg. and
    Delta_p; the best is marked within each fraction (Delta_p is relative to the baseline there)."""
    avg = score.columns[0]
    base = roles.baseline_name
    table = Table(
        title=f"{dataset}: data fraction — Avg. and Δp% vs {base} (InfoMTL's Table 6)",
        caption=(f"Per percentage of the training split used: Avg. = mean over tasks of the primary "
                 f"metric; Δp% (higher is better) per seed against {base} ({roles.baseline})'s seed mean at the "
                 f"same fraction ({base} = 0); mean ± std (numpy ddof={STD_DDOF}) over "
                 f"{seeds} seeds. Best within each fraction in bold."),
        columns=[Column("avg", "Avg.", avg.higher_is_better, avg.style), Column("delta_p", "Δp%", True, "fix2")],
        rows=[], row_header="Data / Method")
    for f in fractions:
        for m in methods:
            row = f"{f}% {m}"
            table.rows.append(row)
            table.groups[row] = f
            table.cells[(row, "avg")] = score.cells[(m, f"pct{f}")]
            table.cells[(row, "delta_p")] = delta_p.cells[(m, f"pct{f}")]
    return table


def data_fraction_tables(dataset: str, roles: N.Roles, methods: list[str], fractions: list[int],
                         evals: dict[str, dict[int, list[dict]]], reference: dict) -> DataFraction:
    """`evals`: method -> fraction -> its evaluations by seed; `reference`: the 100 % STL reference."""
    seeds = N.seed_counts(v for per in evals.values() for v in per.values())
    score, delta = _score_and_delta(dataset, roles, methods, fractions, evals, reference, seeds)
    runs = {"methods": list(methods), "fractions": list(fractions), "evals": evals}
    if roles.baseline is None:
        return DataFraction({"mean_score": score, "delta_m": delta}, [score, delta], **runs)
    delta_p = _delta_p(dataset, roles, methods, fractions, evals, seeds)
    return DataFraction({"mean_score": score, "delta_m": delta, "delta_p": delta_p},
                        [_table6(dataset, roles, fractions, methods, score, delta_p, seeds), delta], **runs)
