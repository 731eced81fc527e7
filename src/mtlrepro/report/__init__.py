"""The study's reports: one per study of params (its tables, figures and metrics summary), the
STL references they measure Delta_m against, and the index over every study.

Entry points (the CLI's stages):

* `build_reference(eval_files, out)`: the `reference` stage, one dataset of a study;
* `write_study(params, study, ...)` and `study_outputs(...)`: one study's report and its files;
* `write_index(params, summaries, index_md, summary_json)`: reports/index.md and the merged summary.

Modules: `measures` (Delta_m, Delta_p, relative drop and change: pure functions), `stats` (per
seed, then mean +- std), `table` (the Table model, Markdown/LaTeX and the one long CSV format),
`loader` (reading and validating the inputs), `reference`, one module per table kind (`main`,
`data_fraction`, `robustness`, `calibration`, `representation`, `comparison`), `figures` and
`weights` (matplotlib), `staging` (all-or-nothing outputs), `study` and `index`.
"""
from __future__ import annotations

from .index import write_index
from .reference import build_reference
from .study import study_outputs, write_study

__all__ = ["build_reference", "study_outputs", "write_index", "write_study"]
