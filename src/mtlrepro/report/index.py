"""The final report job: ``reports/index.md``, a page listing each study with its settings and
relative links to its tables and figures, and the merged metrics summary ``{study: its summary}``
(DVC's metrics file).  A study's tables and figures are the ``tables/`` and ``figures/`` folders
beside its summary (`mtlrepro.layout.study_reports`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .. import params as P
from ..io import MTLReproError, read_json, sha256_file, write_json, write_sidecar, write_text
from .staging import staged
from .study import TABLE_EXTS, study_outputs


def _listed(folder: Path) -> list[Path]:
    """The report's files in `folder`: those with a provenance sidecar, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith(".provenance.json")
                  and p.with_name(p.name + ".provenance.json").exists())


def _link(path: Path, base: Path, text: str | None = None) -> str:
    return f"[{text or path.name}]({Path(os.path.relpath(path, base)).as_posix()})"


def _check_complete(params: Mapping, study: P.Study, summary: Path) -> None:
    for path in study_outputs(params, study, summary.parent / "tables", summary.parent / "figures", summary):
        if not path.exists():
            raise MTLReproError(f"missing input file: {path} (an output of study {study.name!r}; run its report first)")


def _table_lines(tables: list[Path], base: Path) -> list[str]:
    stems = list(dict.fromkeys(p.stem for p in tables))
    lines = []
    for stem in stems:
        files = {p.suffix[1:]: p for p in tables if p.stem == stem}
        order = [e for e in TABLE_EXTS if e in files] + sorted(e for e in files if e not in TABLE_EXTS)
        lines.append(f"- {stem}: " + ", ".join(_link(files[e], base, e) for e in order))
    return lines


def _study_section(study: P.Study, summary: Path, base: Path) -> list[str]:
    baseline = f"Δp baseline: {study.baseline}" if study.baseline else "no Δp baseline"
    lines = [f"## {study.name}", "",
             f"Datasets: {', '.join(study.datasets)}; methods: {', '.join(study.methods)}; "
             f"seeds: {', '.join(map(str, study.seeds))}; Δm reference: {study.reference}; {baseline}; "
             f"published comparison: {study.published or 'none'}. Metrics: {_link(summary, base)}.", "",
             "### Tables", ""]
    lines += _table_lines(_listed(summary.parent / "tables"), base) or ["- none"]
    lines += ["", "### Figures", ""]
    lines += [f"- {_link(p, base)}" for p in _listed(summary.parent / "figures")] or ["- none"]
    return lines + [""]


def write_index(params: Mapping, summaries: Mapping[str, str | os.PathLike], index_md: str | os.PathLike,
                summary_json: str | os.PathLike) -> None:
    """`summaries`: study name -> its summary.json (written by `write_study`), in the index's order.
    Writes `index_md` and `summary_json` ({study: its summary}), each with a provenance sidecar,
    both or neither."""
    index_md, summary_json = Path(index_md), Path(summary_json)
    merged, inputs, sections = {}, {}, []
    for name, path in summaries.items():
        study, path = P.study(params, name), Path(path)
        _check_complete(params, study, path)
        data = read_json(path)
        if not isinstance(data, dict):
            raise MTLReproError(f"{path}: a study summary must hold a JSON object")
        merged[name], inputs[str(path)] = data, sha256_file(path)
        sections += _study_section(study, path, index_md.parent)
    text = "\n".join(["# Reports", "",
                      "One section per study of params (`studies`): its settings, its tables (Markdown, "
                      "with the LaTeX and CSV beside it) and its figures. Every study's metrics: "
                      f"{_link(summary_json, index_md.parent)}.", "", *sections])
    slice_ = {"studies": params.get("studies"), "seeds": params.get("seeds")}
    with staged() as staging:
        path = staging.path_for(index_md)
        write_text(path, text)
        write_sidecar(path, slice_, stage="report-index", inputs=inputs)
        path = staging.path_for(summary_json)
        write_json(path, merged)
        write_sidecar(path, slice_, stage="report-index", inputs=inputs)
