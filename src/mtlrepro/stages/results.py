"""The result stages: a study's STL reference, its tables and figures, and the index of all studies."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .. import params as P
from ..io import MTLReproError


def reference(params: dict, study: str, dataset: str, evals: Sequence[Path], out: Path) -> None:
    """The Delta_m reference of one dataset of a study: its reference method's evaluations at 100 %
    over the study's seeds, each named once."""
    from ..report import build_reference

    st = P.study(params, study)
    if dataset not in st.datasets:
        raise MTLReproError(f"studies.{study}: dataset {dataset!r} is not one of its datasets {list(st.datasets)}")
    expected = {Path(f"seed{s}.json") for s in st.seeds}
    if {Path(Path(e).name) for e in evals} != expected or len(evals) != len(expected):
        raise MTLReproError(f"reference of {study}/{dataset}: --evals must be the {st.reference} evaluations "
                            f"of seeds {list(st.seeds)}, got {[str(e) for e in evals]}")
    build_reference([Path(e) for e in evals], out)


def aggregate(params: dict, study: str, eval_dir: Path, robustness_dir: Path, reference_dir: Path,
              logs_dir: Path, tables: Path, figures: Path, summary: Path) -> None:
    from ..report import write_study

    write_study(params, P.study(params, study), eval_dir, robustness_dir, reference_dir, logs_dir,
                tables, figures, summary)


def report(params: dict, summaries: Sequence[Path], index: Path, summary: Path) -> None:
    """reports/index.md and the merged metrics summary, from each study's summary.json."""
    from ..report import write_index

    by_study = {Path(s).parent.name: Path(s) for s in summaries}
    missing = [s.name for s in P.studies(params) if s.name not in by_study]
    unknown = sorted(set(by_study) - set(params["studies"]))
    if missing or unknown or len(by_study) != len(summaries):
        raise MTLReproError(f"report: --summaries must hold reports/<study>/summary.json once for every study "
                            f"(missing {missing}, unknown {unknown})")
    write_index(params, by_study, index, summary)
