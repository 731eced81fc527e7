"""One study's report: its tables, figures and metrics summary, from its datasets' stored
evaluations, robustness runs, STL references (made from the study's own seeds) and training
logs.  Delta_m is measured against the study's `reference` (STL); InfoMTL's measures (Avg.,
Delta_p, robust score relative to the baseline) are added iff the study has a `baseline`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .. import params as P
from ..io import MTLReproError, sha256_file, write_json, write_sidecar, write_text
from . import figures, weights
from .calibration import calibration_table
from .comparison import (PUBLISHED_COMPARISON, comparison_files, comparisons, counterparts_of,
                         has_published_comparison, uncompared_of)
from .data_fraction import DataFraction, data_fraction_tables
from .fraction_comparison import fraction_comparisons
from .loader import REFERENCE_FRACTION, Loader, load_log, log_path
from .main import main_table
from .naming import CLASSIFICATION_KINDS, Roles
from .representation import representation_table
from .robustness import robustness_tables
from .staging import staged
from .stats import delta_m_stat
from .sweep import choices, chosen_note, sweep_table
from .table import Stat, Table, long_csv, render

TABLE_EXTS = ("md", "tex", "csv")


@dataclass
class DatasetReport:
    """One dataset's outputs, rendered in memory until the whole study has succeeded."""
    dataset: str
    roles: Roles
    tables: dict[str, str] = field(default_factory=dict)                     # file name -> text
    figures: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # file name -> draw(path)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)                     # every file read: sha256
    output_inputs: dict[str, dict[str, str]] = field(default_factory=dict)   # file name -> its own inputs
    main_evals: dict[str, list[dict]] = field(default_factory=dict)          # method -> 100 % evals by seed
    delta_m: dict[str, Stat] = field(default_factory=dict)                   # method -> Delta_m over seeds
    chosen: dict[str, str] = field(default_factory=dict)                     # swept method -> its chosen variant
    main_logs: dict[str, list[dict]] = field(default_factory=dict)          # method -> 100 % training logs by seed
    logs_read: dict[str, str] = field(default_factory=dict)                  # the sweep's logs: sha256
    data_fraction: DataFraction | None = None                                # the ablation's cells, where run

    def add_table(self, stem: str, shown: Sequence[Table], in_csv: Sequence[Table],
                  heading: str | None = None) -> None:
        md, tex = render(shown, heading)
        texts = {"md": md, "tex": tex, "csv": long_csv(stem, self.dataset, in_csv)}
        for ext in TABLE_EXTS:
            self.tables[f"{self.dataset}_{stem}.{ext}"] = texts[ext]


def fractions(study: P.Study) -> list[int]:
    """The data-fraction columns: the study's fractions plus 100 (the main runs); none without the ablation."""
    if not study.ablation_fractions:
        return []
    return sorted({*study.ablation_fractions, REFERENCE_FRACTION})


def robustness_settings(params: Mapping, study: P.Study) -> tuple[list[str], list[float]] | None:
    """The perturbation kinds and the strengths (0 included) of the study's robustness ablation."""
    rob = (params.get("ablations") or {}).get("robustness") or {}
    if not study.robustness_methods or not rob.get("kinds"):
        return None
    return list(rob["kinds"]), sorted({0.0, *(float(s) for s in rob.get("strengths") or [])})


def _ordered(methods: Sequence[str], study: P.Study) -> list[str]:
    """An ablation's methods in the study's order (the papers' order)."""
    return [m for m in study.methods if m in methods]


def _collect_main(study: P.Study, loader: Loader, rep: DatasetReport, logs_dir: Path | None) -> None:
    """The tables of the 100 % runs: main, calibration, representation (a swept method's row: its
    variant chosen on validation), the sweep table; and the Delta_m figure."""
    ds, ref = rep.dataset, loader.reference
    picked = _collect_sweep(study, loader, rep, logs_dir)
    rep.chosen = {m: c.chosen.name for m, c in picked.items()}
    rep.main_evals = {m: [loader.eval(rep.chosen.get(m, m), REFERENCE_FRACTION, s) for s in study.seeds]
                      for m in study.methods}
    main = main_table(ds, rep.roles, ref, rep.main_evals, note=chosen_note(picked))
    rep.summary, rep.delta_m = main.summary, main.delta_m
    rep.add_table("main", [main.table], [main.table])
    rep.figures[f"{ds}_delta_m.png"] = lambda p: figures.plot_delta_m(ds, rep.roles, main.delta_m, p)
    calibration = calibration_table(ds, ref, rep.main_evals)
    if calibration is not None:
        rep.add_table("calibration", [calibration], [calibration])
    representation = representation_table(ds, rep.main_evals)
    rep.add_table("representation", [representation], [representation])


def _collect_sweep(study: P.Study, loader: Loader, rep: DatasetReport, logs_dir: Path | None) -> dict:
    """The swept methods' choices, and the table of all their variants (validation score, test Delta_m)."""
    if not any(study.variants(rep.dataset, m) for m in study.methods):
        return {}
    if logs_dir is None:
        raise MTLReproError(f"studies.{study.name}: its sweeps are chosen on the training logs' validation "
                            f"scores: the report needs the logs folder")
    picked, read = choices(study, rep.dataset, logs_dir)
    delta = {v.name: delta_m_stat(v.name, [loader.eval(v.name, REFERENCE_FRACTION, s) for s in study.seeds],
                                  loader.reference, rep.roles.reference)
             for c in picked.values() for v in c.variants}
    table = sweep_table(rep.dataset, picked, delta)
    rep.add_table("sweep", [table], [table])
    rep.logs_read.update({path: sha256_file(path) for path in read})
    return picked


def _collect_data_fraction(study: P.Study, loader: Loader, rep: DatasetReport) -> None:
    ds, cols = rep.dataset, fractions(study)
    methods = _ordered(study.data_fraction_methods, study)
    evals = {m: {f: [loader.eval(m, f, s) for s in study.seeds] for f in cols} for m in methods}
    df = rep.data_fraction = data_fraction_tables(ds, rep.roles, methods, cols, evals, loader.reference)
    rep.add_table("data_fraction", df.shown, list(df.quantities.values()), f"{ds}: data-fraction ablation")
    rep.figures[f"{ds}_data_fraction.png"] = lambda p: figures.plot_data_fraction(ds, rep.roles, cols,
                                                                                  df.quantities, p)


def _collect_robustness(study: P.Study, loader: Loader, rep: DatasetReport, kinds, strengths,
                        scale: str = "relative") -> None:
    ds = rep.dataset
    robs = {m: [loader.robustness(m, s, kinds, strengths) for s in study.seeds]
            for m in _ordered(study.robustness_methods, study)}
    tables = robustness_tables(ds, rep.roles, kinds, strengths, robs, loader.reference, scale)
    every = [t for per_kind in tables.values() for t in per_kind.values()]
    rep.add_table("robustness", every, every, f"{ds}: robustness")
    rep.figures[f"{ds}_robustness.png"] = lambda p: figures.plot_robustness(ds, rep.roles, strengths, tables, p)


def _collect_logs(study: P.Study, logs_dir: Path, rep: DatasetReport) -> None:
    """The validation curves and the task-weight figures, each listing the logs it read."""
    ds = rep.dataset
    logs: dict[str, list[dict]] = {}
    inputs: dict[str, str] = {}
    for method in study.methods:
        run = rep.chosen.get(method, method)  # a swept method: its chosen variant's curves
        for seed in study.seeds:
            path = log_path(logs_dir, ds, run, seed)
            logs.setdefault(method, []).append(load_log(path, dataset=ds, method=run, seed=seed))
            inputs[str(path)] = sha256_file(path)
    rep.main_logs = logs
    rep.figures[f"{ds}_training.png"] = lambda p: figures.plot_training(ds, logs, p)
    rep.output_inputs[f"{ds}_training.png"] = inputs
    for name, draw, used in weights.weight_figures(ds, study.seeds[0], logs):
        rep.figures[name] = draw
        rep.output_inputs[name] = used


def collect(params: Mapping, study: P.Study, dataset: str, eval_dir, robustness_dir, reference_dir,
            logs_dir=None) -> DatasetReport:
    """Reads and checks every input of one dataset of the study and renders its outputs in memory."""
    loader = Loader(eval_dir, robustness_dir, reference_dir, dataset)
    rep = DatasetReport(dataset, Roles.of(study))
    _collect_main(study, loader, rep, None if logs_dir is None else Path(logs_dir))
    if fractions(study):
        _collect_data_fraction(study, loader, rep)
    settings = robustness_settings(params, study)
    if settings is not None:
        scale = ((params.get("ablations") or {}).get("robustness") or {}).get("scale", "relative")
        _collect_robustness(study, loader, rep, *settings, scale)
    rep.inputs = {**loader.inputs, **rep.logs_read}
    if logs_dir is not None:
        _collect_logs(study, Path(logs_dir), rep)
    return rep


def _round(value: float, digits: int = 6) -> float:
    """6 significant digits, and floating-point round-off (|x| < 1e-12) shown as 0: diff-friendly."""
    return 0.0 if abs(value) < 1e-12 else float(f"{value:.{digits}g}")


def params_slice(params: Mapping, study: P.Study) -> dict:
    """The part of params a study's report depends on (recorded in its sidecars)."""
    return {"studies": {study.name: (params.get("studies") or {}).get(study.name)},
            "seeds": list(study.seeds), "ablations": params.get("ablations")}


def _check_study(study: P.Study) -> None:
    for key in ("datasets", "methods", "seeds"):
        if not getattr(study, key):
            raise MTLReproError(f"params: studies.{study.name}.{key} is missing or empty")
    counterparts_of(study)  # an unknown published key fails before any input is read


def study_outputs(params: Mapping, study: P.Study, tables_dir: str | os.PathLike, figures_dir: str | os.PathLike,
                  summary_path: str | os.PathLike, task_kinds: Mapping[str, Sequence[str | None]] | None = None
                  ) -> list[Path]:
    """The files `write_study` writes (sidecars not included), for the workflow's outputs: those
    params alone determines, plus ``<dataset>_calibration.*`` for the datasets whose task kinds
    (`task_kinds`: dataset -> its tasks' kinds, when given) include a classification kind.  The
    figures drawn from the training logs (``<dataset>_training.png``,
    ``<dataset>_<method>_weights.png``, ``<dataset>_task_weights.png``) depend on the logs'
    contents and are not listed."""
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    has_df, has_rob = bool(fractions(study)), robustness_settings(params, study) is not None
    out: list[Path] = []
    for ds in study.datasets:
        stems = (["main"] + (["sweep"] if any(study.variants(ds, m) for m in study.methods) else [])
                 + (["data_fraction"] if has_df else []) + (["robustness"] if has_rob else []))
        if task_kinds is not None and any(k in CLASSIFICATION_KINDS for k in task_kinds.get(ds, ())):
            stems.append("calibration")
        stems.append("representation")  # every evaluation records it
        out += [tables_dir / f"{ds}_{stem}.{ext}" for stem in stems for ext in TABLE_EXTS]
        out.append(figures_dir / f"{ds}_delta_m.png")
        out += [figures_dir / f"{ds}_data_fraction.png"] if has_df else []
        out += [figures_dir / f"{ds}_robustness.png"] if has_rob else []
    if has_published_comparison(study):
        out += [tables_dir / f"{PUBLISHED_COMPARISON}.{ext}" for ext in ("md", "csv")]
    out.append(Path(summary_path))
    return out


def _stage_dataset(staging, rep: DatasetReport, tables_dir: Path, figures_dir: Path, slice_: dict) -> None:
    for name, text in rep.tables.items():
        path = staging.path_for(tables_dir / name)
        write_text(path, text)
        write_sidecar(path, slice_, stage="report", dataset=rep.dataset, inputs=rep.output_inputs.get(name, rep.inputs))
    for name, draw in rep.figures.items():
        path = staging.path_for(figures_dir / name)
        draw(path)
        write_sidecar(path, slice_, stage="report", dataset=rep.dataset, inputs=rep.output_inputs.get(name, rep.inputs))


def _published_files(params: Mapping, study: P.Study, reports: Sequence[DatasetReport]):
    """(md, csv, inputs, the compared datasets' sizes) or None without counterparts (or datasets
    the paper has none for)."""
    by_dataset = {r.dataset: r for r in reports}
    cps = counterparts_of(study)
    if not has_published_comparison(study):
        return None
    comps = [c for ds, cp in cps.items()
             for c in comparisons(study, cp, by_dataset[ds].main_evals, by_dataset[ds].delta_m, by_dataset[ds].main_logs)
             + fraction_comparisons(study, cp, by_dataset[ds].data_fraction)]
    inputs = {k: v for ds in cps for k, v in {**by_dataset[ds].inputs,  # and the logs the run times come from
                                               **by_dataset[ds].output_inputs.get(f"{ds}_training.png", {})}.items()}
    sizes = {ds: {k: (params.get("dataset") or {}).get(ds, {}).get(k) for k in ("source", "split")} for ds in cps}
    return (*comparison_files(params, comps, inputs, uncompared_of(study)), sizes)


def write_study(params: Mapping, study: P.Study, eval_dir, robustness_dir, reference_dir, logs_dir,
                tables_dir, figures_dir, summary_path) -> None:
    """Reads the study's evaluations (``<eval_dir>/<dataset>/<method>/pct<f>/seed<s>.json``),
    robustness runs, references (``<reference_dir>/<dataset>.json``) and, unless `logs_dir` is
    None, training logs, and writes each with a provenance sidecar: per dataset the tables
    ``<tables_dir>/<dataset>_{main,data_fraction,robustness,calibration,representation}.{md,tex,csv}``
    (the ablations' where the study runs them, calibration where there are classification tasks),
    the figures ``<figures_dir>/<dataset>_{delta_m,data_fraction,robustness,training}.png`` and the
    task-weight figures; ``published_comparison.{md,csv}`` where the study's ``published`` key
    gives counterparts; the metrics summary {dataset: {method: numbers}} at `summary_path`.
    Nothing is written unless everything succeeds."""
    _check_study(study)
    reports = [collect(params, study, ds, eval_dir, robustness_dir, reference_dir, logs_dir) for ds in study.datasets]
    published = _published_files(params, study, reports)
    summary = {r.dataset: {m: {k: (_round(v) if isinstance(v, float) else v) for k, v in s.items()}
                           for m, s in r.summary.items()} for r in reports}
    tables_dir, figures_dir, slice_ = Path(tables_dir), Path(figures_dir), params_slice(params, study)
    with staged() as staging:
        for rep in reports:
            _stage_dataset(staging, rep, tables_dir, figures_dir, slice_)
        if published is not None:
            md, csv, inputs, sizes = published
            for ext, text in (("md", md), ("csv", csv)):
                path = staging.path_for(tables_dir / f"{PUBLISHED_COMPARISON}.{ext}")
                write_text(path, text)
                write_sidecar(path, {**slice_, "dataset": sizes}, stage="report", inputs=inputs)
        path = staging.path_for(Path(summary_path))  # staged last: moved into place last
        write_json(path, summary)
        write_sidecar(path, slice_, stage="report", inputs={k: v for r in reports for k, v in r.inputs.items()})
