"""The validate stage: GX suites on small synthetic raw files.

digits-mtl files have the real 1,797 rows (cheap); qm9 files are small, so those tests pass
`params={"expected_rows": N}` to replace the 130,831-row count of the source.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtlrepro.io import MTLReproError, sha256_file
from mtlrepro.validation import SUITES, build_expectations, failed_path, validate

PIXELS = [f"pixel_{i:02d}" for i in range(64)]
QM9_ROWS = 40


def digits_frame(n: int = 1797) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.integers(0, 17, size=(n, 64)), columns=PIXELS)
    df["digit"] = np.arange(n) % 10
    return df


def qm9_frame(n: int = QM9_ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(n, 5, 3)).round(6)
    u0 = rng.uniform(-500, -300, n)
    u = u0 + rng.uniform(0.004, 0.012, n)
    h = u + 0.000944
    return pd.DataFrame({
        "index": np.arange(1, n + 1),
        "smiles": ["C"] * n,
        "elements": ["['C','H','H','H','H']"] * (n // 2) + ["['C', 'H', 'H', 'H', 'H']"] * (n - n // 2),
        # compact and json.dumps-style spacing, one coordinate in exponent notation
        "xyz": [json.dumps(c.tolist(), separators=(",", ":") if i % 2 else (", ", ": ")).replace(
            "0.0,", "1e-07,") for i, c in enumerate(coords)],
        "n_atoms": np.full(n, 5),
        "mu": rng.uniform(0.5, 5.0, n),
        "alpha": rng.uniform(40.0, 100.0, n),
        "homo": rng.uniform(-0.30, -0.20, n),
        "lumo": rng.uniform(-0.05, 0.10, n),
        "r2": rng.uniform(500.0, 1500.0, n),
        "zpve": rng.uniform(0.10, 0.20, n),
        "u0": u0, "u": u, "h": h, "g": h - rng.uniform(0.03, 0.05, n),
        "cv": rng.uniform(20.0, 40.0, n),
    })


def outputs(tmp_path, dataset):
    return tmp_path / "reports" / f"{dataset}.json", tmp_path / "reports" / f"{dataset}.html"


def run_digits(tmp_path, df, **kw):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    df.to_csv(raw / "digits.csv", index=False)
    out_json, out_html = outputs(tmp_path, "digits-mtl")
    return validate("digits-mtl", raw, out_json, out_html, **kw)


def run_qm9(tmp_path, df, rows=QM9_ROWS):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    df.to_parquet(raw / "qm9.parquet", index=False)
    out_json, out_html = outputs(tmp_path, "qm9")
    return validate("qm9", raw, out_json, out_html, params={"expected_rows": rows})


def assert_failed(tmp_path, dataset, err, *needles):
    message = str(err.value)
    assert dataset in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in:\n{message}"
    out_json, out_html = outputs(tmp_path, dataset)
    assert not out_json.exists() and not out_html.exists()
    report = json.loads(failed_path(out_json).read_text())
    assert report["success"] is False and report["dataset"] == dataset
    assert report["summary"]["failed"] == len(report["failures"]) > 0
    assert "FAILED" in failed_path(out_html).read_text()
    return report


# ---------------------------------------------------------------------------------- digits

def test_valid_digits_pass_and_write_reports(tmp_path):
    report = run_digits(tmp_path, digits_frame())
    out_json, out_html = outputs(tmp_path, "digits-mtl")
    on_disk = json.loads(out_json.read_text())
    assert report["success"] is True and on_disk["success"] is True
    assert on_disk["dataset"] == "digits-mtl" and on_disk["n_rows"] == 1797
    # the report names the bytes it validated: preprocess accepts it for those raw files only
    assert on_disk["raw_files_sha256"] == {"digits.csv": sha256_file(tmp_path / "raw" / "digits.csv")}
    n_expectations = len(build_expectations("digits-mtl"))
    assert len(on_disk["expectations"]) == n_expectations == on_disk["summary"]["evaluated"]
    assert on_disk["summary"]["failed"] == 0 and on_disk["failures"] == []
    first = on_disk["expectations"][0]
    assert first["type"] == "expect_table_row_count_to_equal" and first["observed_value"] == 1797
    assert {"type", "column", "kwargs", "success", "observed_value", "unexpected_count"} <= set(first)
    page = out_html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "PASSED" in page and "pixel_63" in page
    assert page.count("<tr class=") == n_expectations
    assert out_json.with_name(out_json.name + ".provenance.json").exists()
    assert not failed_path(out_json).exists() and not failed_path(out_html).exists()


def _nan_label(df):
    df["digit"] = df["digit"].astype(float)
    df.loc[5, "digit"] = np.nan
    return df


def _pixel_out_of_range(df):
    df.loc[7, "pixel_10"] = 17
    return df


def _unknown_label(df):
    df.loc[3, "digit"] = 10
    return df


def _float_pixels(df):
    df["pixel_20"] = df["pixel_20"] + 0.5
    return df


def _duplicate_image(df):
    df.loc[5, PIXELS] = df.loc[4, PIXELS].to_numpy()
    return df


CORRUPTIONS = {
    "duplicate_image": (_duplicate_image, ["expect_compound_columns_to_be_unique column=pixel_00,"]),
    "nan_label": (_nan_label, ["expect_column_values_to_not_be_null column=digit",
                               "expect_column_values_to_be_in_type_list column=digit: observed float64"]),
    "pixel_out_of_range": (_pixel_out_of_range, ["expect_column_values_to_be_between column=pixel_10",
                                                 "1 unexpected values", "[17]"]),
    "missing_column": (lambda df: df.drop(columns="pixel_33"),
                       ["expect_column_to_exist column=pixel_33", "expect_table_columns_to_match_set"]),
    "wrong_row_count": (lambda df: df.iloc[:-1],
                        ["expect_table_row_count_to_equal: observed 1796"]),
    "unknown_label": (_unknown_label, ["expect_column_values_to_be_in_set column=digit",
                                       "[10]"]),
    "non_integer_pixels": (_float_pixels, ["expect_column_values_to_be_in_type_list column=pixel_20"]),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_digits_fail_naming_the_expectation(tmp_path, corruption):
    corrupt, needles = CORRUPTIONS[corruption]
    with pytest.raises(MTLReproError) as err:
        run_digits(tmp_path, corrupt(digits_frame()))
    assert_failed(tmp_path, "digits-mtl", err, *needles)


def test_missing_class_fails(tmp_path):
    df = digits_frame()
    df.loc[df["digit"] == 7, "digit"] = 1
    with pytest.raises(MTLReproError) as err:
        run_digits(tmp_path, df)
    report = assert_failed(tmp_path, "digits-mtl", err,
                           "expect_column_distinct_values_to_equal_set column=digit", "missing [7]")
    assert report["summary"]["failed"] == 1


def test_failure_removes_stale_reports_and_success_removes_failed_ones(tmp_path):
    out_json, out_html = outputs(tmp_path, "digits-mtl")
    out_json.parent.mkdir(parents=True)
    out_json.write_text("{}")
    out_html.write_text("old")
    with pytest.raises(MTLReproError):
        run_digits(tmp_path, digits_frame().iloc[:10])
    assert not out_json.exists() and not out_html.exists()
    assert failed_path(out_json).exists()
    run_digits(tmp_path, digits_frame())
    assert out_json.exists() and out_html.exists()
    assert not failed_path(out_json).exists() and not failed_path(out_html).exists()


def test_missing_raw_file_names_the_path(tmp_path):
    out_json, out_html = outputs(tmp_path, "digits-mtl")
    with pytest.raises(MTLReproError, match=r"raw file not found: .*digits\.csv"):
        validate("digits-mtl", tmp_path / "nowhere", out_json, out_html)
    assert not out_json.exists() and not failed_path(out_json).exists()


def test_unreadable_raw_file_names_the_path(tmp_path):
    (tmp_path / "raw").mkdir()
    bad = tmp_path / "raw" / "qm9.parquet"
    bad.write_bytes(b"this is not parquet")
    out_json, out_html = outputs(tmp_path, "qm9")
    with pytest.raises(MTLReproError, match="cannot read raw file .*qm9.parquet"):
        validate("qm9", tmp_path / "raw", out_json, out_html)


def test_unknown_dataset_and_bad_params(tmp_path):
    out_json, out_html = outputs(tmp_path, "x")
    with pytest.raises(MTLReproError, match="no expectation suite for dataset 'nope'; known: .*digits-mtl"):
        validate("nope", tmp_path, out_json, out_html)
    with pytest.raises(MTLReproError, match="expected_rows"):
        validate("qm9", tmp_path, out_json, out_html, params={"expected_rows": "many"})


def test_registry_knows_the_source_sizes():
    assert SUITES["digits-mtl"].expected_rows == 1797
    assert SUITES["qm9"].expected_rows == 130_831


# ---------------------------------------------------------------------------------- qm9

def test_valid_qm9_passes(tmp_path):
    report = run_qm9(tmp_path, qm9_frame())
    assert report["success"] is True and report["n_rows"] == QM9_ROWS
    out_json, out_html = outputs(tmp_path, "qm9")
    on_disk = json.loads(out_json.read_text())
    assert on_disk["expected_rows"] == QM9_ROWS
    columns = {e["column"] for e in on_disk["expectations"] if e["type"] == "expect_column_to_exist"}
    assert columns == set(qm9_frame().columns)
    assert out_html.exists()


def _set(column, row, value):
    def corrupt(df):
        df.loc[row, column] = value
        return df
    return corrupt


def _swap(a, b):
    def corrupt(df):
        df[[a, b]] = df[[b, a]].to_numpy()
        return df
    return corrupt


QM9_CORRUPTIONS = {
    "nan_target": (_set("mu", 4, np.nan), ["expect_column_values_to_not_be_null column=mu"]),
    "negative_alpha": (_set("alpha", 2, -3.0), ["expect_column_values_to_be_between column=alpha",
                                                "[-3.0]"]),
    "homo_in_eV": (lambda df: df.assign(homo=df["homo"] * 27.211386),
                   ["expect_column_values_to_be_between column=homo"]),
    "dipole_in_atomic_units": (lambda df: df.assign(mu=df["mu"] * 0.393430),
                               ["expect_column_mean_to_be_between column=mu"]),
    "swapped_u0_u": (_swap("u0", "u"), ["expect_column_pair_values_a_to_be_greater_than_b column=u,u0"]),
    "swapped_mu_cv": (_swap("mu", "cv"), ["column=mu", "column=cv"]),
    "missing_column": (lambda df: df.drop(columns="cv"), ["expect_column_to_exist column=cv"]),
    "duplicate_index": (_set("index", 3, 1), ["expect_column_values_to_be_unique column=index"]),
    "duplicate_geometry": (lambda df: df.assign(xyz=[df["xyz"][1], *df["xyz"][1:]]),
                           ["expect_column_values_to_be_unique column=xyz"]),
    "malformed_xyz": (_set("xyz", 0, "[[0.1,0.2],[0.3,0.4,0.5]]"),
                      ["expect_column_values_to_match_regex column=xyz"]),
}


@pytest.mark.parametrize("corruption", list(QM9_CORRUPTIONS))
def test_corrupt_qm9_fails_naming_the_column(tmp_path, corruption):
    corrupt, needles = QM9_CORRUPTIONS[corruption]
    with pytest.raises(MTLReproError) as err:
        run_qm9(tmp_path, corrupt(qm9_frame()))
    assert_failed(tmp_path, "qm9", err, *needles)


def test_qm9_row_count_defaults_to_the_source_size(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    qm9_frame().to_parquet(raw / "qm9.parquet", index=False)
    out_json, out_html = outputs(tmp_path, "qm9")
    with pytest.raises(MTLReproError) as err:
        validate("qm9", raw, out_json, out_html)
    assert_failed(tmp_path, "qm9", err, f"expect_table_row_count_to_equal: observed {QM9_ROWS}")
