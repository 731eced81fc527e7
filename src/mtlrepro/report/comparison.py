"""The papers' numbers (`mtlrepro.published`, each with its paper and table) beside ours, for the
datasets of a study that have a counterpart under the study's ``published`` key: our Delta_m
(qm9 vs QM9), mean accuracy over tasks in % (digits-mtl vs CIFAR-MTL, a different and smaller
dataset) or the mean of the tasks' official scores in % (tweeteval vs InfoMTL's TweetEval, one
section per published table).  A dataset the paper has no counterpart for (published.NO_COUNTERPART)
gets a section that says so and compares nothing.  report.fraction_comparison sets a counterpart's
tables of runs on fractions of the training data beside the study's data-fraction runs.  Ranks are
competition ranks per column (1 = best, ties share the best rank).  Our runs use small subsets, so only orderings are
comparable; the captions say so, with the sizes from params."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import params as P
from .. import published
from ..io import MTLReproError, sha256_file
from .calibration import task_metric
from .loader import number
from .measures import STD_DDOF, competition_ranks, spearman
from .table import Stat, csv_text, fmt, md_escape

PUBLISHED_COMPARISON = "published_comparison"
_CSV_HEADER = ["our_dataset", "published_dataset", "published_source", "published_metric", "our_metric",
               "higher_is_better", "same_dataset", "method", "paper_method", "published_value", "published_std",
               "published_by_definition", "published_rank", "ours_mean", "ours_std", "ours_n_seeds", "ours_rank"]


@dataclass
class Comparison:
    dataset: str
    counterpart: published.Counterpart
    table: published.PublishedTable
    rows: list[str]
    published: dict[str, published.Entry]
    ours: dict[str, Stat]
    published_ranks: dict[str, int]
    our_ranks: dict[str, int]
    spearman: float | None
    n_common: int
    our_label: str = ""        # what our column is (default: the counterpart's quantity)

    # what comparison_files renders (report.fraction_comparison's sections have the same two)
    def markdown(self, params: Mapping) -> str:
        return comparison_md(self, params)

    def csv_rows(self) -> list[list[Any]]:
        return comparison_rows(self)


def counterparts_of(study: P.Study) -> dict[str, published.Counterpart]:
    """The study's datasets with a published counterpart (none without a ``published`` key)."""
    if study.published is None:
        return {}
    try:
        by_dataset = published.counterparts(study.published)
    except KeyError:
        raise MTLReproError(f"params: studies.{study.name}.published is {study.published!r}, which is not a "
                            f"study of mtlrepro.published.STUDIES; known: {', '.join(published.STUDIES)}") from None
    return {ds: by_dataset[ds] for ds in study.datasets if ds in by_dataset}


def uncompared_of(study: P.Study) -> dict[str, str]:
    """The study's datasets the paper has no counterpart for -> why (none without a ``published`` key)."""
    if study.published is None:
        return {}
    counterparts_of(study)  # an unknown key fails with the params error
    reasons = published.without_counterpart(study.published)
    return {ds: reasons[ds] for ds in study.datasets if ds in reasons}


def has_published_comparison(study: P.Study) -> bool:
    """The study's report has ``published_comparison.{md,csv}``."""
    return bool(counterparts_of(study) or uncompared_of(study))


def _official_scores_pct(ev: dict) -> float:
    """The mean over the evaluation's tasks of each task's official (primary) score, in %."""
    scores = []
    for task in ev["task_order"]:
        primary = ev["tasks"][task].get("primary")
        if not isinstance(primary, str):
            raise MTLReproError(f"{ev['path']}: tasks.{task}.primary is {primary!r}, not a metric name")
        scores.append(task_metric(ev, task, primary, "published comparison"))
    return 100.0 * float(np.mean(scores))


def _our_quantity(dataset: str, quantity: str, evals: Mapping[str, list[dict]],
                  delta_m: Mapping[str, Stat]) -> dict[str, Stat]:
    """Our number `quantity` (a Counterpart's `ours`) per method from its evaluations by seed."""
    if quantity == "delta_m":
        return dict(delta_m)
    if quantity == "accuracy_pct":
        return {m: Stat([100.0 * float(np.mean([task_metric(ev, t, "accuracy", "published comparison")
                                                 for t in ev["task_order"]])) for ev in runs])
                for m, runs in evals.items()}
    if quantity == "avg_primary_pct":
        return {m: Stat([_official_scores_pct(ev) for ev in runs]) for m, runs in evals.items()}
    raise MTLReproError(f"published.STUDIES: {dataset!r} has an unknown quantity {quantity!r}")


def _ours(cp: published.Counterpart, main_evals: Mapping[str, list[dict]],
          delta_m: Mapping[str, Stat]) -> dict[str, Stat]:
    return _our_quantity(cp.dataset, cp.ours, main_evals, delta_m)


def _compared(cp: published.Counterpart, table: published.PublishedTable, methods: Sequence[str],
              ours: Mapping[str, Stat], our_label: str = "", omit: Sequence[str] = ()) -> Comparison:
    """Rows: `methods` in order, then the paper's other methods (but `omit`) in its table order;
    ranks per column in the table's direction; Spearman over the methods on both sides."""
    rows = list(methods) + [m for m in table.entries if m not in methods and m not in omit]
    pub = {m: table.entries[m] for m in rows if m in table.entries}
    common = [m for m in rows if m in pub and m in ours]
    return Comparison(
        dataset=cp.dataset, counterpart=cp, table=table, rows=rows, published=pub, ours=dict(ours),
        published_ranks=competition_ranks({m: e.value for m, e in pub.items()}, table.higher_is_better),
        our_ranks=competition_ranks({m: s.mean for m, s in ours.items()}, table.higher_is_better),
        spearman=spearman([pub[m].value for m in common], [ours[m].mean for m in common]),
        n_common=len(common), our_label=our_label)


def comparison(study: P.Study, cp: published.Counterpart, main_evals: Mapping[str, list[dict]],
               delta_m: Mapping[str, Stat], table_key: str | None = None) -> Comparison:
    """Rows: the study's methods in its order, then the paper's other methods in its table order.
    The table is `table_key` (one of cp.tables), by default cp.table."""
    table = published.table(cp.table if table_key is None else table_key)
    return _compared(cp, table, study.methods, _ours(cp, main_evals, delta_m))


def comparisons(study: P.Study, cp: published.Counterpart, main_evals: Mapping[str, list[dict]],
                delta_m: Mapping[str, Stat], logs: Mapping[str, list[dict]] | None = None) -> list[Comparison]:
    """One comparison per published table of the counterpart (cp.tables), and the run-time table's
    where the counterpart has one and the training logs were read."""
    out = [comparison(study, cp, main_evals, delta_m, key) for key in cp.tables]
    timed = logs and "ls" in logs and all("wall_time_s" in log for runs in logs.values() for log in runs)
    if cp.runtime_tables and timed:  # logs written before the train stage timed itself have no section
        out.append(runtime_comparison(study, cp, logs))
    return out


def _seconds_per_epoch(log: dict) -> float:
    """A run's training time per epoch it trained (a warm start's LS epochs are not its own)."""
    epochs = len(log["history"])
    if epochs == 0:
        raise MTLReproError(f"{log['path']}: no epoch in its history")
    return number(log.get("wall_time_s"), "wall_time_s", log["path"]) / epochs


def runtime_comparison(study: P.Study, cp: published.Counterpart, logs: Mapping[str, list[dict]]) -> Comparison:
    """The paper's Table 4 (time per batch, relative to LS) beside ours: per seed, each method's
    training seconds per epoch over LS's seed mean (same data, batches and epochs, so the ratio of
    per-epoch times is the ratio of per-batch times up to the per-epoch validation)."""
    table = published.relative_runtime(*cp.runtime_tables)
    ls = float(np.mean([_seconds_per_epoch(log) for log in logs["ls"]]))
    ours = {m: Stat([_seconds_per_epoch(log) / ls for log in runs]) for m, runs in logs.items()
            if m != study.reference}
    return _compared(cp, table, [m for m in study.methods if m != study.reference], ours,
                     "training time per epoch relative to LS (LS = 1; the warm start's LS epochs excluded)",
                     omit=study.methods)


def _size_text(key: str, value) -> str:
    """One split setting: a count (10,000), a fraction (0.1), a word (qm9's `train: rest`) or all
    (null: tweeteval's uncapped official split)."""
    if value is None:
        return f"{key} all"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{key} {value}"
    return f"{key} {value:,}" if isinstance(value, int) else f"{key} {value:g}"


def sizes_text(params: Mapping, ds: str) -> str:
    config = (params.get("dataset") or {}).get(ds) or {}
    source = (config.get("source") or {}).get("kind")
    split = config.get("split") or {}
    if not split:
        return "sizes not given in params"
    fractions = all(isinstance(v, float) and v < 1 for v in split.values())
    parts = ", ".join(_size_text(k, v) for k, v in split.items())
    return (f"{source + ' source, ' if source else ''}split {parts}"
            f"{' as fractions of the data set' if fractions else ' examples'}")


# our quantities (a Counterpart's `ours`; "delta_p" in its fraction_tables): what each is, and its
# column header in a fraction comparison
_QUANTITY_LABELS = {"delta_m": "Δm% vs STL", "accuracy_pct": "mean accuracy over tasks (%)",
                    "avg_primary_pct": "Avg. of the tasks' official scores (%)"}
_QUANTITY_SHORT = {"delta_m": "Δm%", "accuracy_pct": "accuracy (%)", "avg_primary_pct": "Avg. (%)",
                   "delta_p": "Δp%"}


def _our_metric_label(c: Comparison) -> str:
    return c.our_label or _QUANTITY_LABELS[c.counterpart.ours]


def _published_text(entry: published.Entry, decimals: int) -> str:
    if entry.by_definition:
        return f"{entry.value:.{decimals}f} (by definition)"
    text = f"{entry.value:.{decimals}f}"
    if entry.std is None:
        return text
    std = f"{entry.std:g}"
    return f"{text} ± {std if '.' in std else std + '.0'}"


def at_paper_scale(cp: published.Counterpart, params: Mapping) -> bool:
    """Our runs have the published table's split sizes (params' split is the counterpart's paper_split)."""
    split = ((params.get("dataset") or {}).get(cp.dataset) or {}).get("split")
    return cp.paper_split is not None and split is not None and dict(split) == dict(cp.paper_split)


def _scale_text(c: Comparison, params: Mapping) -> str:
    cp, t = c.counterpart, c.table
    if at_paper_scale(cp, params):
        return (f"At the paper's data scale. Ours: {c.dataset}, {cp.description}; our runs use "
                f"{sizes_text(params, c.dataset)}: the published split's sizes, {cp.split_origin}. "
                f"The paper's {t.dataset}: {t.data}. Absolute numbers are comparable up to "
                f"the split, the seeds and the differences the params file lists.")
    return (f"Not a replication at the paper's scale. Ours: {c.dataset}, {cp.description}; our runs use "
            f"{sizes_text(params, c.dataset)}: the embedded default uses small subsets of the data. "
            f"The paper's {t.dataset}: {t.data}. Absolute numbers therefore differ and are not "
            f"comparable; only the orderings of the methods (the ranks) are.")


def _spread_text(t: published.PublishedTable) -> str:
    if any(e.std is not None for e in t.entries.values()):
        return f"± = std over {t.seeds} seeds"
    return f"means over {t.seeds} seeds, no std printed" if t.seeds else "no std printed"


def _caption(c: Comparison, params: Mapping) -> str:
    cp, t = c.counterpart, c.table
    n_seeds = sorted({s.n for s in c.ours.values()})
    kind = ("the same data set" if cp.same_dataset else
            f"NOT the same data set: {c.dataset} is a different, smaller data set of the same kind as {t.dataset}")
    return (
        _scale_text(c, params) + f" {c.dataset} vs {t.dataset}: {kind}."
        + (f" Metric: {cp.metric_note}." if cp.metric_note else "")
        + f" Published: {t.source}, {t.metric}, as printed ({_spread_text(t)})"
        + (f"; {t.note}" if t.note else "")
        + f". Ours: {_our_metric_label(c)}, mean ± std (numpy ddof={STD_DDOF}) over "
        f"{'/'.join(map(str, n_seeds))} seeds; our gradient-based methods act at the level set in "
        f"params (by default the shared representation). Rank: 1 = best in its column "
        f"({'higher' if t.higher_is_better else 'lower'} is better), ties share the best rank; "
        f"— = not run here / not in the paper's table.")


def _paper_name(c: Comparison, m: str) -> str:
    """The method's name in the compared table, else in the paper's naming ('' if none)."""
    entry = c.published.get(m)
    return entry.label if entry else published.METHOD_NAMES[c.table.paper].get(m, "")


def _method_name(c: Comparison, m: str) -> str:
    """``ls (EW)``: ours, and the paper's name where it differs."""
    label = _paper_name(c, m)
    return f"{m} ({label})" if label and label != m else m


def _cells(c: Comparison, m: str) -> list[str]:
    """A method's published value and rank, our mean ± std and rank ("—" where a side has none)."""
    pub, ours = c.published.get(m), c.ours.get(m)
    return [_published_text(pub, c.table.decimals) if pub else "—",
            str(c.published_ranks[m]) if pub else "—",
            fmt(ours, "fix2", " ± ") if ours else "—",
            str(c.our_ranks[m]) if ours else "—"]


def _row_md(c: Comparison, m: str) -> str:
    return "| " + " | ".join([md_escape(_method_name(c, m)), *_cells(c, m)]) + " |"


def _rho_text(c: Comparison) -> str:
    return "n/a (fewer than 3 methods or no spread)" if c.spearman is None else f"{c.spearman:.2f}"


def comparison_md(c: Comparison, params: Mapping) -> str:
    t = c.table
    arrow = "↑" if t.higher_is_better else "↓"
    header = ["Method", f"Published: {t.dataset}, {t.metric} {arrow}", "Rank",
              f"Ours: {c.dataset}, {_our_metric_label(c)} {arrow}", "Rank"]
    lines = [f"## {c.dataset} ↔ {t.dataset} ({t.source})", "", f"*{md_escape(_caption(c, params))}*", "",
             "| " + " | ".join(md_escape(h) for h in header) + " |", "|:---|---:|---:|---:|---:|"]
    lines += [_row_md(c, m) for m in c.rows]
    lines += ["", f"Spearman rank correlation between the two columns over the {c.n_common} methods "
                  f"on both sides: {_rho_text(c)}.", ""]
    return "\n".join(lines)


def comparison_rows(c: Comparison) -> list[list[Any]]:
    rows = []
    for m in c.rows:
        pub, ours = c.published.get(m), c.ours.get(m)
        rows.append([c.dataset, c.table.dataset, c.table.source, c.table.metric, _our_metric_label(c),
                     c.table.higher_is_better, c.counterpart.same_dataset, m,
                     _paper_name(c, m),
                     pub.value if pub else "", pub.std if pub and pub.std is not None else "",
                     pub.by_definition if pub else "", c.published_ranks.get(m, ""),
                     ours.mean if ours else "", ours.std if ours else "", ours.n if ours else "",
                     c.our_ranks.get(m, "")])
    return rows


def _uncompared_md(dataset: str, reason: str) -> str:
    return f"## {dataset}: no published counterpart\n\n*{md_escape(reason)}.*\n"


def _intro(params: Mapping, comparisons: Sequence[Any]) -> str:
    if not comparisons:
        return "None of this study's data sets has a counterpart in the paper's tables: nothing is compared."
    intro = ("Each section sets one of our data sets beside the published table of its counterpart. "
             "The embedded default trains on small subsets (sizes in each caption, from params), so "
             "absolute numbers differ from the papers' and only the orderings of the methods are "
             "comparable.")
    if any(at_paper_scale(c.counterpart, params) for c in comparisons):
        intro += " A caption that begins 'At the paper's data scale' is of runs with the published split's sizes."
    return intro


def comparison_files(params: Mapping, comparisons: Sequence[Any],
                     inputs: Mapping[str, str],
                     uncompared: Mapping[str, str] | None = None) -> tuple[str, str, dict[str, str]]:
    """The Markdown and CSV of a study's published-vs-ours sections (and, for each dataset of
    `uncompared`, a section saying why it has no counterpart; the CSV has no rows for it), and
    their inputs (the datasets' `inputs` and published.py)."""
    sections = [c.markdown(params) for c in comparisons]
    sections += [_uncompared_md(ds, reason) for ds, reason in (uncompared or {}).items()]
    md = "# Published numbers side by side with ours\n\n" + _intro(params, comparisons) + "\n\n" + "\n".join(sections)
    csv = csv_text(_CSV_HEADER, [row for c in comparisons for row in c.csv_rows()])
    source = Path(published.__file__)
    return md, csv, {**inputs, str(source): sha256_file(source)}
