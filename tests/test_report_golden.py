"""The report package against the outputs of the code it replaced (tests/data/report_golden/):
the same Markdown and LaTeX bytes, and the same numbers in the CSVs and the summary, per study.
Deliberate changes since, applied to the expected files: the published comparison's section for
BayesAgg-MTL's Table 5 (deep ensembles) after its Table 1 section, the main tables' last caption
sentence (the methods' spread against the seed noise), rotten-tomatoes' no-counterpart note
naming InfoMTL's Table 6 too, and the robustness captions saying what a strength is (the scale)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from mtlrepro import params as P
from mtlrepro import report

GOLDEN = Path(__file__).resolve().parent / "data" / "report_golden"
INPUTS, EXPECTED = GOLDEN / "inputs", GOLDEN / "expected"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """Each study's report written from the golden inputs (the old references serve both studies:
    they were made from the same seeds), then the index over both."""
    params = P.load(GOLDEN / "params.yaml")
    out = tmp_path_factory.mktemp("golden")
    for st in P.studies(params):
        d = out / st.name
        report.write_study(params, st, INPUTS / "eval", INPUTS / "robustness", INPUTS / "reference",
                           INPUTS / "train_logs", d / "tables", d / "figures", d / "summary.json")
    return params, out


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def expected_paths(study: P.Study, exts: tuple[str, ...]) -> dict[str, Path]:
    """The old outputs that belong to the study: its datasets' tables, and the published comparison
    (all of whose sections were of the bayesagg study's datasets); for the infomtl study, the
    published comparison that says rotten-tomatoes has no counterpart in InfoMTL's tables (written
    since the old code, in expected/infomtl/)."""
    paths = {p.name: p for p in sorted((EXPECTED / "tables").iterdir()) if p.suffix[1:] in exts}
    own = {n: p for n, p in paths.items() if any(n.startswith(f"{ds}_") for ds in study.datasets)}
    if study.published == "bayesagg":
        own.update({n: p for n, p in paths.items() if n.startswith("published_comparison")})
    if study.published == "infomtl":
        own.update({p.name: p for p in sorted((EXPECTED / "infomtl").iterdir()) if p.suffix[1:] in exts})
    return own


@pytest.mark.parametrize("name", ["bayesagg", "infomtl"])
def test_markdown_and_latex_are_byte_identical(golden, name):
    params, out = golden
    st = P.study(params, name)
    tables = out / name / "tables"
    written = sorted(p.name for p in tables.iterdir() if p.suffix in (".md", ".tex"))
    expected = expected_paths(st, ("md", "tex"))
    assert written == sorted(expected) and expected
    for file, path in expected.items():
        assert (tables / file).read_bytes() == path.read_bytes(), file


# The old CSVs' five shapes: each cell's key and its numbers, to set beside the long format's.
def old_cells(stem: str, rows: list[dict]) -> dict:
    cells = {}
    for r in rows:
        nums = (float(r["mean"]), float(r["std"]), int(r["n_seeds"]), r["best"])
        if stem == "main":
            cells[(r["dataset"], r["method"], r["column"])] = nums
        elif stem == "calibration":
            cells[(r["dataset"], r["method"], r["metric"])] = (*nums, int(r["n_tasks"]))
        elif stem == "representation":
            cells[(r["dataset"], r["method"], r["metric"], r["task"])] = nums
        elif stem == "data_fraction":
            cells[(r["dataset"], r["quantity"], r["method"], int(r["fraction"]))] = (*nums, r["reference"])
        else:
            quantity = {"relative_to_ew_pct": "relative_to_baseline_pct"}.get(r["quantity"], r["quantity"])
            cells[(r["dataset"], r["method"], r["kind"], float(r["strength"]), quantity)] = nums
    return cells


def new_cells(stem: str, rows: list[dict]) -> dict:
    cells = {}
    for r in rows:
        assert r["table"] == stem
        nums = (float(r["mean"]), float(r["std"]), int(r["n"]), r["best"])
        if stem == "main":
            cells[(r["dataset"], r["row"], r["column"])] = nums
        elif stem == "calibration":
            cells[(r["dataset"], r["row"], r["quantity"])] = (*nums, int(r["n_tasks"]))
        elif stem == "representation":
            cells[(r["dataset"], r["row"], r["quantity"], r["task"])] = nums
        elif stem == "data_fraction":
            cells[(r["dataset"], r["quantity"], r["row"], int(r["fraction"]))] = \
                (*nums, r["reference"] if r["quantity"] != "mean_score" else "")
        else:
            cells[(r["dataset"], r["row"], r["kind"], float(r["strength"]), r["quantity"])] = nums
    return cells


@pytest.mark.parametrize("name", ["bayesagg", "infomtl"])
def test_csvs_hold_the_same_numbers(golden, name):
    params, out = golden
    st = P.study(params, name)
    tables = out / name / "tables"
    files = expected_paths(st, ("csv",))
    assert sorted(p.name for p in tables.glob("*.csv")) == sorted(files)
    for file, path in files.items():
        old, new = read_csv(path.read_text()), read_csv((tables / file).read_text())
        if file.startswith("published_comparison"):  # its own shape, unchanged
            assert new == old and (tables / file).read_text().startswith("our_dataset,")
            continue
        stem = file.removesuffix(".csv").split("_", 1)[1]
        assert list(new[0]) == list(report.table.LONG_FIELDS)
        assert new_cells(stem, new) == old_cells(stem, old), file
        assert len(new) == len(old), file


def test_summaries_are_the_old_ones_per_study(golden):
    params, out = golden
    old = json.loads((EXPECTED / "summary.json").read_text())
    for st in P.studies(params):
        assert json.loads((out / st.name / "summary.json").read_text()) == {ds: old[ds] for ds in st.datasets}
    # the index merges them, one key per study, and links every file of each study
    index = out / "index.md"
    report.write_index(params, {st.name: out / st.name / "summary.json" for st in P.studies(params)}, index,
                       out / "summary.json")
    merged = json.loads((out / "summary.json").read_text())
    assert merged == {"bayesagg": {ds: old[ds] for ds in ("digits-mtl", "qm9")},
                      "infomtl": {"rotten-tomatoes": old["rotten-tomatoes"]}}
    text = index.read_text()
    links = [part.split(")", 1)[0] for part in text.split("](")[1:]]
    assert all((out / link).exists() for link in links)
    for st in P.studies(params):
        for path in (out / st.name).rglob("*"):
            if path.is_file() and not path.name.endswith(".provenance.json"):
                assert path.relative_to(out).as_posix() in links, path


def test_figures_are_the_old_ones_and_valid_pngs(golden):
    from PIL import Image

    params, out = golden
    expected = (EXPECTED / "figures.txt").read_text().split()
    written = []
    for st in P.studies(params):
        for path in sorted((out / st.name / "figures").glob("*.png")):
            assert path.read_bytes()[:8] == PNG_SIGNATURE, path
            with Image.open(path) as image:
                image.verify()
            assert path.with_name(path.name + ".provenance.json").exists()
            assert any(path.name.startswith(f"{ds}_") for ds in st.datasets), path
            written.append(path.name)
    assert sorted(written) == sorted(expected)


def test_robustness_captions_say_what_a_strength_is(tmp_path):
    """The captions follow ablations.robustness.scale: relative (the default) or InfoMTL's absolute."""
    import copy

    params = copy.deepcopy(P.load(GOLDEN / "params.yaml"))
    params["ablations"]["robustness"]["scale"] = "absolute"
    st = P.study(params, "infomtl")
    report.write_study(params, st, INPUTS / "eval", INPUTS / "robustness", INPUTS / "reference",
                       INPUTS / "train_logs", tmp_path / "tables", tmp_path / "figures", tmp_path / "summary.json")
    text = (tmp_path / "tables" / "rotten-tomatoes_robustness.md").read_text()
    assert "the perturbation has L2 norm s (scale: absolute" in text
    assert "(scale: relative)" in (EXPECTED / "tables" / "rotten-tomatoes_robustness.md").read_text()
