"""The robustness ablation of a dataset: per perturbation kind, methods x strengths tables of
the robust score (the mean primary score over tasks on the perturbed test data) and of the
relative drop against the same method and seed at strength 0 (`measures.relative_drop`: per task,
sign-adjusted, averaged over tasks, in %; positive = degradation), plus, for a study with a
Delta_p baseline among the robustness methods, the robust score relative to the baseline's seed
mean at the same kind and strength (InfoMTL's "increase in robust scores over EW")."""
from __future__ import annotations

from ..io import MTLReproError
from . import naming as N
from .measures import STD_DDOF, relative_drop, robust_score
from .stats import relative_change_stat
from .table import Column, Stat, Table


def _strength_columns(strengths, direction, style) -> list[Column]:
    return [Column(f"s{s!r}", f"{s:g}", direction, style, arrow=False, coords={"strength": s}) for s in strengths]


def _drops(robs: list[dict], kind: str, s: float, hib: dict) -> list[float]:
    out = []
    for r in robs:
        try:
            out.append(relative_drop(r["curves"][kind][s], r["curves"][kind][0.0], hib))
        except MTLReproError as err:
            raise MTLReproError(f"{r['path']} ({kind}, strength {s:g} vs 0): {err}") from None
    return out


# what a strength s is (ablations.robustness.scale, mtlrepro.robustness)
STRENGTH_TEXT = {"relative": "the perturbation's L2 norm is s times the example's input's (scale: relative)",
                 "absolute": "the perturbation has L2 norm s (scale: absolute, InfoMTL's Figures 3-4)"}


def _kind_tables(dataset, kind, strengths, robs: dict[str, list[dict]], reference: dict, seeds: str,
                 scale: str = "relative"):
    order = reference["task_order"]
    hib = {t: reference["tasks"][t]["higher_is_better"] for t in order}
    score = Table(
        title=f"{dataset}: robustness to {kind} — mean primary score",
        caption=(f"Average over tasks of the primary metric under {kind} perturbations of "
                 f"increasing strength s (columns: {STRENGTH_TEXT[scale]}), mean ± std (numpy "
                 f"ddof={STD_DDOF}) over {seeds} seeds. Best per column in bold."),
        columns=_strength_columns(strengths, N.common_direction(reference), N.mean_score_style(reference)),
        rows=list(robs), row_header="Method \\ strength", coords={"kind": kind, "quantity": "mean_score"})
    drop = Table(
        title=f"{dataset}: robustness to {kind} — relative drop (%) vs strength 0",
        caption=(f"Relative degradation vs the same method and seed at strength 0 (per task, "
                 f"sign-adjusted as in Δm, averaged over tasks; %, lower is better), mean ± std "
                 f"(numpy ddof={STD_DDOF}) over {seeds} seeds."),
        columns=_strength_columns(strengths, False, "fix2"),
        rows=list(robs), row_header="Method \\ strength", coords={"kind": kind, "quantity": "relative_drop_pct"})
    for m, runs in robs.items():
        for s in strengths:
            score.cells[(m, f"s{s!r}")] = Stat([robust_score(r["curves"][kind][s], order) for r in runs])
            drop.cells[(m, f"s{s!r}")] = Stat(_drops(runs, kind, s, hib))
    return score, drop


def _vs_baseline(dataset, roles: N.Roles, kind, strengths, score: Table, robs, seeds: str) -> Table:
    """The robust score relative to the baseline's, per seed from the cells of `score`."""
    base, method = roles.baseline_name, roles.baseline
    paths = ", ".join(str(r["path"]) for r in robs[method])
    table = Table(
        title=f"{dataset}: robustness to {kind} — robust score vs {base} (%)",
        caption=(f"Per seed, 100 (R - R_{base}) / R_{base} with R the mean primary score over tasks under {kind} "
                 f"perturbations and R_{base} {base} ({method})'s seed mean at the same strength (positive: "
                 f"a higher score than {base}'s; {base} = 0), mean ± std (numpy ddof={STD_DDOF}) over "
                 f"{seeds} seeds. Best per column in bold."),
        columns=_strength_columns(strengths, score.columns[0].higher_is_better, "fix2"),
        rows=list(score.rows), row_header="Method \\ strength",
        coords={"kind": kind, "quantity": "relative_to_baseline_pct"})
    for s in strengths:
        key = f"s{s!r}"
        base_mean = score.cells[(method, key)].mean
        for m in score.rows:
            table.cells[(m, key)] = relative_change_stat(m, score.cells[(m, key)].values, base_mean, method,
                                                         f"{paths} ({kind}, strength {s:g})")
    return table


def robustness_tables(dataset: str, roles: N.Roles, kinds: list[str], strengths: list[float],
                      robs: dict[str, list[dict]], reference: dict,
                      scale: str = "relative") -> dict[str, dict[str, Table]]:
    """`robs`: method -> its robustness runs by seed, in the study's order.  Returns
    {kind: {quantity: table}}; the tables relative to the baseline need its robustness runs, which
    the params do not require, so they are only there when it has them."""
    seeds = N.seed_counts(robs.values())
    vs_baseline = roles.baseline is not None and roles.baseline in robs
    tables: dict[str, dict[str, Table]] = {}
    for kind in kinds:
        score, drop = _kind_tables(dataset, kind, strengths, robs, reference, seeds, scale)
        tables[kind] = {"mean_score": score, "relative_drop_pct": drop}
        if vs_baseline:
            tables[kind]["relative_to_baseline_pct"] = _vs_baseline(dataset, roles, kind, strengths, score, robs, seeds)
    return tables
