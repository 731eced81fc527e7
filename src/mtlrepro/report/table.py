"""One table model (rows x columns of mean +- std over seeds) and its three renderings:
Markdown, LaTeX (booktabs) and the one long CSV format that every table of the report shares.

Best marker: per column, the best mean among all rows (the reference included) following the
column's direction; exact ties are all marked; a column whose values are all equal, or whose
direction is mixed (None), is not marked.  With `groups`, the best is marked within each group.

The long CSV has one line per cell, with the header `LONG_FIELDS`: the table's stem, the
dataset, the row and column labels as shown, the cell's coordinates (`quantity`, `task`,
`fraction`, `kind`, `strength`, `n_tasks`, `reference`: empty where they do not apply), and the
cell's mean, std, number of seeds and best marker.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .measures import mean_std

LONG_FIELDS = ("table", "dataset", "row", "column", "quantity", "task", "fraction", "kind", "strength",
               "mean", "std", "n", "n_tasks", "best", "reference")
_COORDS = frozenset(LONG_FIELDS) - {"table", "dataset", "row", "column", "mean", "std", "n", "best"}


@dataclass
class Stat:
    """Per-seed values and their mean +- std (ddof 0)."""
    values: list[float]
    mean: float = 0.0
    std: float = 0.0

    def __post_init__(self) -> None:
        self.mean, self.std = mean_std(self.values)

    @property
    def n(self) -> int:
        return len(self.values)


@dataclass
class Column:
    key: str
    label: str                      # as shown (Markdown header, the CSV's "column")
    higher_is_better: bool | None   # None: not marked
    style: str                      # "sig4" (4 significant digits), "fix3" or "fix2" decimals
    arrow: bool = True
    coords: dict[str, Any] = field(default_factory=dict)  # this column's cells' CSV coordinates


@dataclass
class Table:
    title: str
    caption: str
    columns: list[Column]
    rows: list[str]
    cells: dict[tuple[str, str], Stat] = field(default_factory=dict)
    row_header: str = "Method"
    coords: dict[str, Any] = field(default_factory=dict)  # every cell's CSV coordinates
    groups: dict[str, Any] = field(default_factory=dict)  # row -> its group (default: one group)

    def best(self) -> set[tuple[str, str]]:
        by_group: dict[Any, list[str]] = {}
        for row in self.rows:
            by_group.setdefault(self.groups.get(row), []).append(row)
        marked = set()
        for col in self.columns:
            if col.higher_is_better is None:
                continue
            for rows in by_group.values():
                entries = [(row, self.cells[(row, col.key)].mean) for row in rows
                           if (row, col.key) in self.cells]
                means = [m for _, m in entries]
                if len(entries) < 2 or max(means) == min(means):
                    continue
                target = max(means) if col.higher_is_better else min(means)
                marked |= {(row, col.key) for row, m in entries if m == target}
        return marked


def _decimals(style: str, mean: float, std: float = 0.0) -> int:
    if style == "fix2":
        return 2
    if style == "fix3":
        return 3
    magnitude = abs(mean) if mean != 0 else abs(std)
    if magnitude == 0 or not math.isfinite(magnitude):
        return 4
    return int(min(10, max(0, 3 - math.floor(math.log10(magnitude)))))


def fmt(stat: Stat, style: str, pm: str) -> str:
    """``mean<pm>std`` with the style's decimals; never "-0.00"."""
    d = _decimals(style, stat.mean, stat.std)
    mean = 0.0 if stat.mean == 0 else stat.mean
    text_mean = f"{mean:.{d}f}"
    if text_mean.lstrip("-").strip("0.") == "":
        text_mean = text_mean.lstrip("-")
    return f"{text_mean}{pm}{stat.std:.{d}f}"


def _arrow(col: Column, latex: bool) -> str:
    if not col.arrow or col.higher_is_better is None:
        return ""
    if latex:
        return r" $\uparrow$" if col.higher_is_better else r" $\downarrow$"
    return " ↑" if col.higher_is_better else " ↓"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex(text: str) -> str:
    text = text.replace("Δ", "\x00")
    out = "".join(_TEX_ESCAPES.get(c, c) for c in text)
    out = out.replace("\x00", r"$\Delta$").replace("±", r"$\pm$").replace("—", "---")
    return out.replace("↓", r"$\downarrow$").replace("↑", r"$\uparrow$").replace("→", r"$\to$")


def md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def render_md(table: Table, level: str = "#") -> str:
    best = table.best()
    header = [table.row_header] + [md_escape(c.label) + _arrow(c, False) for c in table.columns]
    lines = [f"{level} {table.title}", "", f"*{table.caption}*", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|"]
    for row in table.rows:
        cells = [md_escape(row)] + _value_cells(table, row, best, "—", " ± ", "**{}**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _value_cells(table: Table, row: str, best, missing: str, pm: str, bold: str) -> list[str]:
    """A row's formatted cells in one renderer's spelling: its missing mark, its ± and its bold."""
    cells = []
    for col in table.columns:
        stat = table.cells.get((row, col.key))
        if stat is None:
            cells.append(missing)
            continue
        text = fmt(stat, col.style, pm)
        cells.append(bold.format(text) if (row, col.key) in best else text)
    return cells


def render_tex(table: Table) -> str:
    best = table.best()
    lines = [f"% {tex(table.title)}", f"% {tex(table.caption)}",
             r"% requires \usepackage{booktabs}",
             r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
             " & ".join([tex(table.row_header)] + [tex(c.label) + _arrow(c, True) for c in table.columns])
             + r" \\", r"\midrule"]
    for row in table.rows:
        cells = [tex(row)] + _value_cells(table, row, best, "--", r" $\pm$ ", r"\textbf{{{}}}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with floats as their shortest round-tripping repr."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return buf.getvalue()


def _long_records(stem: str, dataset: str, table: Table) -> Iterable[list[Any]]:
    best = table.best()
    for row in table.rows:
        for col in table.columns:
            stat = table.cells.get((row, col.key))
            if stat is None:
                continue
            coords = {**table.coords, **col.coords}
            unknown = set(coords) - _COORDS
            if unknown:  # a programming error, not bad input
                raise ValueError(f"{table.title}: unknown CSV coordinates {sorted(unknown)}")
            record = {"table": stem, "dataset": dataset, "row": row, "column": col.label, **coords,
                      "mean": stat.mean, "std": stat.std, "n": stat.n, "best": (row, col.key) in best}
            yield [record.get(name, "") for name in LONG_FIELDS]


def long_csv(stem: str, dataset: str, tables: Sequence[Table]) -> str:
    """Every cell of `tables` (one file's tables) in the long format, table by table, row by row."""
    return csv_text(LONG_FIELDS, [r for t in tables for r in _long_records(stem, dataset, t)])


def render(tables: Sequence[Table], heading: str | None = None) -> tuple[str, str]:
    """The Markdown and LaTeX of one file's tables: a single table as a document, several under
    a `heading` as sections."""
    if heading is None:
        (table,) = tables
        return render_md(table), render_tex(table)
    md = f"# {heading}\n\n" + "\n".join(render_md(t, "##") for t in tables)
    return md, "\n".join(render_tex(t) for t in tables)
