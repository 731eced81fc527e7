"""A counterpart's published tables of runs on fractions of the training data
(`Counterpart.fraction_tables`: InfoMTL's Table 6, Avg. and Delta_p) beside the study's data-fraction
runs (report.data_fraction's cells): one section with a row per fraction and method, where the
study runs that ablation. The cells, ranks and captions are report.comparison's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .. import params as P
from .. import published
from .comparison import (_QUANTITY_LABELS, _QUANTITY_SHORT, Comparison, _cells, _compared, _method_name,
                         _our_quantity, _spread_text, at_paper_scale, comparison_rows, sizes_text)
from .data_fraction import DataFraction
from .loader import REFERENCE_FRACTION
from .measures import STD_DDOF
from .table import Stat, md_escape


@dataclass
class FractionComparison:
    """The paper's tables of runs on fractions of the training data (cp.fraction_tables) beside the
    study's data-fraction runs: per fraction of the paper's, one Comparison per quantity."""
    dataset: str
    counterpart: published.Counterpart
    quantities: list[str]                          # cp.fraction_tables' quantities, in its order
    by_fraction: dict[int, dict[str, Comparison]]  # the paper's fractions, ascending -> quantity -> ...
    our_fractions: list[int]                       # the study's data-fraction columns (100 included)
    methods: list[str]                             # our data-fraction methods, in the study's order
    baseline: str | None                           # the study's Delta_p baseline

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for per in self.by_fraction.values() for c in per.values()]

    def markdown(self, params: Mapping) -> str:
        return fraction_comparison_md(self, params)

    def csv_rows(self) -> list[list[Any]]:
        return [row for c in self.comparisons for row in comparison_rows(c)]


def _fraction_label(quantity: str, fraction: int, baseline: str | None) -> str:
    """Our column of a fraction comparison: the quantity at that fraction of our training split."""
    what = (_delta_p_label(baseline) if quantity == "delta_p" else _QUANTITY_LABELS[quantity])
    return f"{what}, at {fraction}% of our training split"


def _delta_p_label(baseline: str | None) -> str:
    if baseline is None:
        return "Δp% (none: the study has no Δp baseline)"
    return f"Δp% vs {published.INFOMTL_NAMES.get(baseline, baseline)} ({baseline}) at the same fraction"


def fraction_comparison(study: P.Study, cp: published.Counterpart, df: DataFraction) -> FractionComparison:
    """The counterpart's fraction tables beside the data-fraction runs `df`: our Delta_p (and any
    quantity of df's tables) is df's cell; any other quantity (`ours`'s Avg. in %) is computed from
    df's evaluations at that fraction as for the main comparison."""
    quantities = list(dict.fromkeys(q for per in cp.fraction_tables.values() for q in per))
    by_fraction: dict[int, dict[str, Comparison]] = {}
    for f in sorted(cp.fraction_tables):
        ran = f in df.fractions
        by_fraction[f] = {}
        for q, key in cp.fraction_tables[f].items():
            if not ran:
                ours: dict[str, Stat] = {}
            elif q in df.quantities:
                ours = {m: stat for m in df.methods if (stat := df.stat(q, m, f)) is not None}
            elif q == "delta_p":  # no Delta_p table: the study has no baseline
                ours = {}
            else:
                ours = _our_quantity(cp.dataset, q, {m: df.evals[m][f] for m in df.methods}, {})
            by_fraction[f][q] = _compared(cp, published.table(key), df.methods, ours,
                                          _fraction_label(q, f, study.baseline))
    return FractionComparison(cp.dataset, cp, quantities, by_fraction, list(df.fractions), list(df.methods),
                              study.baseline)


def _pcts(fractions: Sequence[int]) -> str:
    return ", ".join(f"{f}%" for f in fractions) or "none"


def _fraction_caption(fc: FractionComparison, params: Mapping) -> str:
    cp, comps = fc.counterpart, fc.comparisons
    t = comps[0].table
    # each table's metric with its fraction written p%: one text per quantity
    metrics = list(dict.fromkeys(c.table.metric.replace(f"{f}%", "p%")
                                 for f, per in fc.by_fraction.items() for c in per.values()))
    sizes = sizes_text(params, fc.dataset)
    if at_paper_scale(cp, params):
        ours = (f"our runs use {sizes}: the published split's sizes, {cp.split_origin}, each data-fraction run "
                f"on p% of its training split. Absolute numbers are comparable up to the subsets, the seeds "
                f"and the differences the params file lists")
    else:
        ours = (f"our runs use {sizes}: the embedded default uses small subsets of the data, each data-fraction "
                f"run on p% of that training split. Absolute numbers therefore differ and are not comparable; "
                f"only the orderings of the methods within a fraction (the ranks) are")
    n_seeds = sorted({s.n for c in comps for s in c.ours.values()})
    our_quantities = "; ".join(_delta_p_label(fc.baseline) if q == "delta_p" else _QUANTITY_LABELS[q]
                               for q in fc.quantities)
    return (
        f"Published, at the paper's scale: {t.source}: {'; '.join(metrics)}, as printed ({_spread_text(t)}"
        + (f"; {t.note}" if t.note else "")
        + f"); the paper's {t.dataset}: {t.data}, a run at p% trained on p% of those training sets. "
        f"Ours, at our run's scale: {fc.dataset}, {cp.description}; {ours}."
        + (f" Metric: {cp.metric_note}." if cp.metric_note else "")
        + f" Ours: {our_quantities}, of the runs in {fc.dataset}_data_fraction.md; mean ± std (numpy "
        f"ddof={STD_DDOF}) over {'/'.join(map(str, n_seeds)) or 'no'} seeds. Rank: 1 = best within its "
        f"fraction and column (higher is better unless the column's arrow says otherwise), ties share the "
        f"best rank; — = not run here / not in the paper's table.")


def _fraction_coverage(fc: FractionComparison) -> str:
    """Which fractions and methods each side has."""
    ours_fs = [f for f in fc.our_fractions if f != REFERENCE_FRACTION]
    paper_fs = list(fc.by_fraction)
    first = fc.comparisons[0]
    paper_methods = list(dict.fromkeys(m for c in fc.comparisons for m in c.table.entries))  # its order
    both = [m for m in fc.methods if m in paper_methods]
    main_table = published.table(fc.counterpart.table).table
    text = (f"Fractions: the paper's {_pcts(paper_fs)}; ours {_pcts(ours_fs)}"
            + (f" (and {REFERENCE_FRACTION}%, the main runs, set beside {main_table} above)"
               if REFERENCE_FRACTION in fc.our_fractions else "")
            + f"; on both sides: {_pcts([f for f in paper_fs if f in ours_fs])}.")
    only_ours = [f for f in ours_fs if f not in paper_fs]
    if only_ours:
        text += (f" Ours only: {_pcts(only_ours)}, which the paper has no table for (our numbers are in "
                 f"{fc.dataset}_data_fraction.md).")
    return (text + f" Methods: the paper's {', '.join(_method_name(first, m) for m in paper_methods)}; "
            f"ours {', '.join(fc.methods)}; on both sides: "
            f"{', '.join(_method_name(first, m) for m in both) or 'none'}.")


def fraction_comparison_md(fc: FractionComparison, params: Mapping) -> str:
    """One section: a row per (the paper's fraction, method), for each quantity the published value
    and rank beside our mean ± std and rank at that fraction; Spearman per fraction and quantity."""
    t = fc.comparisons[0].table
    header = ["Data / Method"]
    for q in fc.quantities:
        c = next(per[q] for per in fc.by_fraction.values() if q in per)
        arrow = "↑" if c.table.higher_is_better else "↓"
        header += [f"Published {_QUANTITY_SHORT[q]} {arrow}", "Rank", f"Ours {_QUANTITY_SHORT[q]} {arrow}", "Rank"]
    lines = [f"## {fc.dataset} ↔ {t.dataset}, on fractions of the training data ({t.source})", "",
             f"*{md_escape(_fraction_caption(fc, params))}*", "", md_escape(_fraction_coverage(fc)), "",
             "| " + " | ".join(md_escape(h) for h in header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    rhos = []
    for f, per in fc.by_fraction.items():
        rows = list(dict.fromkeys(m for c in per.values() for m in c.rows))
        for m in rows:
            name = _method_name(next(iter(per.values())), m)
            cells = [x for q in fc.quantities for x in (_cells(per[q], m) if q in per else ["—"] * 4)]
            lines.append("| " + " | ".join([md_escape(f"{f}% {name}"), *cells]) + " |")
        rhos.append(f"{f}%: " + ", ".join(
            f"{_QUANTITY_SHORT[q]} {'n/a' if c.spearman is None else f'{c.spearman:.2f}'} ({c.n_common} methods)"
            for q, c in per.items()))
    none = any(c.spearman is None for c in fc.comparisons)
    lines += ["", "Spearman rank correlation between the published and our column, per fraction over the "
                  "methods on both sides: " + "; ".join(rhos)
              + (" (n/a: fewer than 3 methods or no spread)" if none else "") + ".", ""]
    return "\n".join(lines)


def fraction_comparisons(study: P.Study, cp: published.Counterpart, df: DataFraction | None) -> list[FractionComparison]:
    """The section of `cp`'s fraction tables where it has some and the study ran the ablation."""
    return [fraction_comparison(study, cp, df)] if cp.fraction_tables and df is not None else []
