"""A study's tables and figures (no Delta_p baseline: BayesAgg-MTL's kind) on a synthetic tree
whose numbers are known in closed form: main, data fraction, robustness, calibration."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from mtlrepro import params as P
from mtlrepro import report
from mtlrepro.report.table import LONG_FIELDS
from tests.report_synthetic import (FRACTIONS, KINDS, METHODS, PNG_SIGNATURE, SEEDS, STRENGTHS, TASKS, all_outputs,
                                    build_references, expected_delta, make_params, metric_value, perturbed, read_csv,
                                    run, study_of, tree)  # noqa: F401  (tree: a fixture)


def outputs_of(d, params=None, **kwargs):
    params = params or d["params"]
    return report.study_outputs(params, P.study(params, d["study"]), d["tables"], d["figures"], d["summary"], **kwargs)


def test_outputs_listed_and_written(tree):
    run(tree)
    for path in outputs_of(tree):
        assert path.exists(), path
        assert path.with_name(path.name + ".provenance.json").exists(), path
    assert not [p for p in all_outputs(tree) if p.name.startswith(".")]  # no staging leftovers
    # no published counterpart for reg/cls; a calibration table for the classification dataset only
    assert not list(tree["tables"].glob("published_comparison*"))
    assert (tree["tables"] / "cls_calibration.csv").exists() and not list(tree["tables"].glob("reg_calibration*"))
    cal = read_csv(tree["tables"] / "cls_calibration.csv")
    assert [float(r["mean"]) for r in cal if r["quantity"] == "ece"] == pytest.approx([0.01] * len(METHODS))
    assert not any(r["best"] == "True" for r in cal)  # all equal: nothing marked
    # a study without data fractions runs no ablation, so it gets no data-fraction table
    listed = outputs_of(tree, make_params(fractions=()))
    assert listed and not [p for p in listed if "data_fraction" in p.name]
    sidecar = json.loads((tree["tables"] / "reg_main.md.provenance.json").read_text())
    assert sidecar["stage"] == "report" and sidecar["params"]["studies"]["main"]["methods"] == METHODS
    assert str(tree["ref"] / "reg.json") in sidecar["inputs"]


def test_main_table_numbers(tree):
    summary = run(tree)
    rows = read_csv(tree["tables"] / "reg_main.csv")
    assert list(rows[0]) == list(LONG_FIELDS)
    assert {r["table"] for r in rows} == {"main"} and {r["dataset"] for r in rows} == {"reg"}
    by = {(r["row"], r["column"]): r for r in rows}
    assert list(dict.fromkeys(r["row"] for r in rows)) == METHODS  # the study's order
    # STL's Delta_m is exactly 0, in the CSV and the summary
    assert float(by[("stl", "Δm%")]["mean"]) == 0.0
    assert summary["reg"]["stl"]["delta_m"] == 0.0 and summary["cls"]["stl"]["delta_m"] == 0.0
    # per-task mean +- std equal numpy's (ddof=0)
    vals = np.array([metric_value("reg", "ls", 100, s, "mu") for s in SEEDS])
    mu = by[("ls", "mu (MAE)")]
    assert float(mu["mean"]) == vals.mean() and float(mu["std"]) == vals.std(ddof=0) and int(mu["n"]) == 3
    assert (mu["quantity"], mu["task"]) == ("primary", "mu")
    # Delta_m per seed, then mean +- std
    exp = expected_delta("reg", "ls", 100)
    assert float(by[("ls", "Δm%")]["mean"]) == pytest.approx(exp.mean(), rel=1e-12)
    assert float(by[("ls", "Δm%")]["std"]) == pytest.approx(exp.std(ddof=0), rel=1e-9)
    assert by[("ls", "Δm%")]["reference"] == "reg.json" and by[("ls", "Δm%")]["quantity"] == "delta_m"
    assert exp.mean() == pytest.approx(10.0)  # errors 10 % above STL
    assert summary["reg"]["ls"]["delta_m"] == pytest.approx(10.0, rel=1e-5)
    assert summary["cls"]["bayesagg"]["delta_m"] == pytest.approx(expected_delta("cls", "bayesagg", 100).mean(),
                                                                   rel=1e-5)
    # best markers: lower is better (MAE) and higher is better (accuracy) -> bayesagg both times
    best = {(r["row"], r["column"]) for r in rows if r["best"] == "True"}
    assert best == {("bayesagg", "mu (MAE)"), ("bayesagg", "alpha (MAE)"), ("bayesagg", "Δm%")}
    cls_rows = read_csv(tree["tables"] / "cls_main.csv")
    cls_best = {(r["row"], r["column"]) for r in cls_rows if r["best"] == "True"}
    assert cls_best == {("bayesagg", "t1 (Acc.)"), ("bayesagg", "t2 (Acc.)"), ("bayesagg", "Avg. Acc."),
                        ("bayesagg", "Δm%")}
    # the average column only where meaningful; no Delta_p without a baseline
    assert "Avg. Acc." in {r["column"] for r in cls_rows}
    assert not any(r["column"].startswith("Avg.") for r in rows)
    assert not [r for r in cls_rows if r["column"] == "Δp%"]
    # summary is flat per dataset/method and JSON-clean
    stored = json.loads(tree["summary"].read_text())
    assert list(stored) == ["reg", "cls"] and list(stored["reg"]) == METHODS
    assert set(stored["reg"]["ls"]) == {"delta_m", "delta_m_std", "mean_score", "mean_score_std", "n_seeds"}


def test_main_table_markdown_and_latex(tree):
    run(tree)
    md = (tree["tables"] / "reg_main.md").read_text()
    lines = md.splitlines()
    assert lines[0].startswith("# reg") and "mean ± std" in lines[2] and "STL reference" in lines[2]
    table_rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Method")]
    assert [line.split("|")[1].strip() for line in table_rows] == METHODS
    bayes = next(line for line in table_rows if line.startswith("| bayesagg"))
    assert bayes.count("**") == 6  # three bold cells
    stl = next(line for line in table_rows if line.startswith("| stl"))
    assert stl.split("|")[-2].strip().startswith("0.00 ±")
    mu_mean = np.mean([metric_value("reg", "ls", 100, s, "mu") for s in SEEDS])
    assert f"{mu_mean:.4f}" in md  # 4 significant digits for MAE of order 0.5
    tex = (tree["tables"] / "reg_main.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\textbf{" in tex
    assert r"$\pm$" in tex and r"$\Delta$m\%" in tex


def test_figures_are_pngs(tree):
    run(tree)
    for ds in ("reg", "cls"):
        for name in ("delta_m", "data_fraction", "robustness"):
            path = tree["figures"] / f"{ds}_{name}.png"
            data = path.read_bytes()
            assert data[:8] == PNG_SIGNATURE, path
            assert len(data) > 5000, path


def test_data_fraction_table(tree):
    run(tree)
    rows = read_csv(tree["tables"] / "reg_data_fraction.csv")
    # the study's order (ls before bayesagg) although the ablation lists bayesagg first
    assert list(dict.fromkeys(r["row"] for r in rows)) == ["ls", "bayesagg"]
    cell = {(r["quantity"], r["row"], int(r["fraction"])): r for r in rows}
    assert sorted({int(r["fraction"]) for r in rows}) == FRACTIONS
    assert {r["quantity"] for r in rows} == {"mean_score", "delta_m"}
    for f in FRACTIONS:
        # every fraction against the stored 100 % reference
        for m in ("ls", "bayesagg"):
            exp = expected_delta("reg", m, f)
            assert float(cell[("delta_m", m, f)]["mean"]) == pytest.approx(exp.mean(), rel=1e-12)
            assert float(cell[("delta_m", m, f)]["std"]) == pytest.approx(exp.std(), rel=1e-9)
            assert cell[("delta_m", m, f)]["reference"] == "reg.json"
        scores = [np.mean([metric_value("reg", "ls", f, s, t) for t in TASKS["reg"]]) for s in SEEDS]
        assert float(cell[("mean_score", "ls", f)]["mean"]) == pytest.approx(np.mean(scores), rel=1e-12)
        assert float(cell[("mean_score", "ls", f)]["std"]) == pytest.approx(np.std(scores), rel=1e-9)
        assert cell[("mean_score", "ls", f)]["column"] == f"{f}%"
    # 20 % of the data: a 40 % higher error than at 100 %, on top of the method's factor
    assert float(cell[("delta_m", "ls", 20)]["mean"]) == pytest.approx(100 * (1.10 * 1.4 - 1), rel=1e-9)
    md = (tree["tables"] / "reg_data_fraction.md").read_text()
    assert "## reg: data fraction — mean primary score" in md and "## reg: data fraction — Δm% vs STL" in md
    assert "20%→reg.json, 60%→reg.json, 100%→reg.json" in md
    assert md.count(r"\begin{tabular}") == 0
    assert (tree["tables"] / "reg_data_fraction.tex").read_text().count(r"\begin{tabular}") == 2


def test_robustness_table(tree):
    run(tree)
    rows = read_csv(tree["tables"] / "cls_robustness.csv")
    assert list(dict.fromkeys(r["row"] for r in rows)) == ["ls", "bayesagg"]  # the study's order
    cell = {(r["row"], r["kind"], float(r["strength"]), r["quantity"]): r for r in rows}
    for m in ("ls", "bayesagg"):
        for kind in KINDS:
            assert float(cell[(m, kind, 0.0, "relative_drop_pct")]["mean"]) == 0.0
            for s in STRENGTHS:
                scores = [np.mean([perturbed("cls", m, seed, kind, s, t) for t in TASKS["cls"]]) for seed in SEEDS]
                r = cell[(m, kind, s, "mean_score")]
                assert float(r["mean"]) == pytest.approx(np.mean(scores), rel=1e-12)
                assert float(r["std"]) == pytest.approx(np.std(scores), rel=1e-9)
                k = {"gaussian": 1.0, "fgsm": 2.0}[kind] * (1.5 if m == "ls" else 1.0)
                assert float(cell[(m, kind, s, "relative_drop_pct")]["mean"]) == pytest.approx(100 * k * s)
    # ls degrades more -> bayesagg best on the drop and the score at strength 0.2
    assert cell[("bayesagg", "fgsm", 0.2, "relative_drop_pct")]["best"] == "True"
    assert cell[("ls", "fgsm", 0.2, "relative_drop_pct")]["best"] == "False"
    assert cell[("bayesagg", "fgsm", 0.2, "mean_score")]["best"] == "True"
    assert {r["quantity"] for r in rows} == {"mean_score", "relative_drop_pct"}  # no baseline: no EW table
    md = (tree["tables"] / "cls_robustness.md").read_text()
    assert "gaussian" in md and "fgsm" in md and "relative drop" in md


def test_no_robustness_table_without_kinds(tree):
    params = copy.deepcopy(tree["params"])
    params["ablations"]["robustness"]["kinds"] = []
    run(tree, params)
    assert not list(tree["tables"].glob("*robustness*")) and not list(tree["figures"].glob("*robustness*"))
    assert not [p for p in outputs_of(tree, params) if "robustness" in p.name]


def test_study_with_a_reference_other_than_stl(tree):
    """Delta_m against the study's `reference`: with ls as the reference, ls's row is 0."""
    params = copy.deepcopy(tree["params"])
    params["studies"]["main"]["reference"] = "ls"
    build_references(tree, ("reg", "cls"), method="ls")
    summary = run(tree, params)
    assert summary["reg"]["ls"]["delta_m"] == 0.0
    # pcgrad's errors are 1.05 / 1.10 of ls's
    assert summary["reg"]["pcgrad"]["delta_m"] == pytest.approx(100 * (1.05 / 1.10 - 1), rel=1e-5)
    assert study_of({**tree, "params": params}).reference == "ls"


def _record_units(d, units):
    """The reg evaluations and robustness runs record the units of their errors (as QM9's do)."""
    from mtlrepro.report.loader import eval_path, robustness_path

    paths = [eval_path(d["eval"], "reg", m, f, s) for m in METHODS for f in FRACTIONS for s in SEEDS]
    paths += [robustness_path(d["rob"], "reg", m, s) for m in METHODS for s in SEEDS]
    for path in paths:
        doc = json.loads(path.read_text())
        for task, unit in units.items():
            doc["tasks"][task]["unit"] = unit
        path.write_text(json.dumps(doc))
    build_references(d, ("reg",))


def test_main_table_headers_show_the_units_of_the_errors(tree):
    _record_units(tree, {"mu": "D", "alpha": "meV"})
    run(tree)
    md = (tree["tables"] / "reg_main.md").read_text()
    assert "mu (MAE, D)" in md and "alpha (MAE, meV)" in md
    assert "t1 (Acc.)" in (tree["tables"] / "cls_main.md").read_text()  # no units recorded: none shown


def test_an_evaluation_in_other_units_than_the_reference_is_refused(tree):
    from mtlrepro.io import MTLReproError
    from mtlrepro.report.loader import eval_path

    _record_units(tree, {"mu": "D", "alpha": "meV"})
    path = eval_path(tree["eval"], "reg", "ls", 100, 0)
    doc = json.loads(path.read_text())
    doc["tasks"]["alpha"]["unit"] = "eV"
    path.write_text(json.dumps(doc))
    with pytest.raises(MTLReproError, match="tasks.alpha.unit is 'eV' but the reference .* has 'meV'"):
        run(tree)
