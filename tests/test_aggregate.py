"""Tests of the stl-reference and aggregate stages on synthetic evaluation trees."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mtlrepro import aggregate as agg
from mtlrepro.aggregate import (MTLReproError, build_reference, delta_m, eval_path, load_reference,
                                reference_path, robustness_path, stl_reference)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Two datasets: all-regression (lower is better) and all-classification (higher is better).
TASKS = {
    "reg": {"mu": ("regression", "mae", False, 0.5), "alpha": ("regression", "mae", False, 20.0)},
    "cls": {"t1": ("binary", "accuracy", True, 0.80), "t2": ("binary", "accuracy", True, 0.70)},
}
# Methods in the papers' (non-alphabetical) order.
METHODS = ["stl", "ls", "pcgrad", "bayesagg"]
# Multiplicative effect on the error (regression); the accuracy effect is its inverse.
FACTOR = {"stl": 1.0, "ls": 1.10, "pcgrad": 1.05, "bayesagg": 0.95}
SEEDS = [0, 1, 2]
FRACTIONS = [20, 60, 100]  # params list only [20, 60]: 100 (the main run) is always added
KINDS = ["gaussian", "fgsm"]
STRENGTHS = [0.1, 0.2]


def metric_value(ds, method, fraction, seed, task):
    kind, _, hib, base = TASKS[ds][task]
    data_penalty = 1 + (100 - fraction) / 200
    noise = 1 + 0.01 * (seed - 1) * (1 if task in ("mu", "t1") else -1)
    if hib:
        return base / FACTOR[method] / data_penalty * noise
    return base * FACTOR[method] * data_penalty * noise


def perturbed(ds, method, seed, kind, strength, task):
    hib = TASKS[ds][task][2]
    clean = metric_value(ds, method, 100, seed, task)
    k = {"gaussian": 1.0, "fgsm": 2.0}[kind] * (1.5 if method == "ls" else 1.0)
    return clean * (1 - k * strength) if hib else clean * (1 + k * strength)


def eval_doc(ds, method, fraction, seed):
    tasks = {}
    for task, (kind, primary, hib, _) in TASKS[ds].items():
        value = metric_value(ds, method, fraction, seed, task)
        metrics = {primary: value, "mse": value ** 2} if kind == "regression" else \
            {primary: value, "auc": min(1.0, value + 0.1), "ece": 0.01, "brier": 0.02}
        tasks[task] = {"kind": kind, "primary": primary, "higher_is_better": hib, "metrics": metrics}
    return {"dataset": ds, "method": method, "seed": seed, "fraction": fraction, "tasks": tasks,
            "task_order": list(TASKS[ds])}


def rob_doc(ds, method, seed):
    return {"dataset": ds, "method": method, "seed": seed, "task_order": list(TASKS[ds]),
            "tasks": {t: {"primary": p, "higher_is_better": h} for t, (_, p, h, _) in TASKS[ds].items()},
            "perturbations": {kind: [{"strength": s, "values": {t: perturbed(ds, method, seed, kind, s, t)
                                                                for t in TASKS[ds]}}
                                     for s in [0.0] + STRENGTHS] for kind in KINDS}}


def make_params(df_methods=("ls", "stl"), rob_methods=("bayesagg", "ls")):
    return {"datasets": ["reg", "cls"], "methods": list(METHODS), "seeds": list(SEEDS),
            "ablations": {"data_fraction": {"fractions": [20, 60], "seed": 97, "methods": list(df_methods)},
                          "robustness": {"methods": list(rob_methods), "kinds": list(KINDS),
                                         "strengths": list(STRENGTHS), "seed": 5}}}


def dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def tree(tmp_path):
    """A full synthetic input tree with the STL references built; returns a dict of paths."""
    params = make_params()
    d = {"params": params, "eval": tmp_path / "eval", "rob": tmp_path / "robustness",
         "ref": tmp_path / "reference", "tables": tmp_path / "reports" / "tables",
         "figures": tmp_path / "reports" / "figures", "summary": tmp_path / "reports" / "metrics.json"}
    for ds in params["datasets"]:
        for m in METHODS:
            for s in SEEDS:
                dump(eval_path(d["eval"], ds, m, 100, s), eval_doc(ds, m, 100, s))
                for f in FRACTIONS:
                    dump(eval_path(d["eval"], ds, m, f, s), eval_doc(ds, m, f, s))
                dump(robustness_path(d["rob"], ds, m, s), rob_doc(ds, m, s))
    stl_reference(params, d["eval"], d["ref"])
    return d


def run(d, params=None):
    return agg.aggregate(params or d["params"], d["eval"], d["rob"], d["ref"], d["tables"], d["figures"],
                         d["summary"])


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def all_outputs(d):
    return [p for root in (d["tables"], d["figures"]) if root.exists() for p in root.rglob("*")] + \
        ([d["summary"]] if d["summary"].exists() else [])


# ------------------------------------------------------------------------------------ delta_m

def test_delta_m_lower_is_better():
    # an error 20 % above STL is 20 % worse
    assert delta_m({"a": 1.2}, {"a": 1.0}, {"a": False}) == pytest.approx(20.0)
    assert delta_m({"a": 0.5}, {"a": 1.0}, {"a": False}) == pytest.approx(-50.0)


def test_delta_m_higher_is_better():
    # an accuracy 10 % below STL is 10 % worse: positive Delta_m
    assert delta_m({"b": 0.9}, {"b": 1.0}, {"b": True}) == pytest.approx(10.0)
    assert delta_m({"b": 0.88}, {"b": 0.80}, {"b": True}) == pytest.approx(-10.0)


def test_delta_m_mixed_tasks_average():
    values = {"a": 0.8, "b": 1.1, "c": 3.0}
    ref = {"a": 1.0, "b": 1.0, "c": 2.0}
    hib = {"a": False, "b": True, "c": False}
    # a: -20 %, b: -10 %, c: +50 % -> mean 20/3
    assert delta_m(values, ref, hib) == pytest.approx((-20 - 10 + 50) / 3)
    assert delta_m(ref, ref, hib) == 0.0


@pytest.mark.parametrize("values,ref,hib,match", [
    ({"a": 1.0}, {"a": 1.0, "b": 2.0}, {"a": True, "b": True}, "missing"),
    ({"a": 1.0, "z": 1.0}, {"a": 1.0}, {"a": True}, "not in the reference"),
    ({"a": 1.0}, {"a": 1.0}, {}, "higher_is_better"),
    ({"a": 1.0}, {"a": 0.0}, {"a": True}, "zero"),
    ({"a": float("nan")}, {"a": 1.0}, {"a": True}, "nan"),
])
def test_delta_m_errors(values, ref, hib, match):
    with pytest.raises(MTLReproError, match=match):
        delta_m(values, ref, hib)


# ---------------------------------------------------------------------------------- reference

def test_build_reference_matches_numpy(tmp_path):
    files = []
    for s in [2, 0, 1]:
        p = eval_path(tmp_path, "reg", "stl", 100, s)
        dump(p, eval_doc("reg", "stl", 100, s))
        files.append(p)
    files.append(p.with_name(p.name + ".provenance.json"))  # ignored
    dump(files[-1], {"git_commit": None})
    out = tmp_path / "ref" / "reg.json"
    ref = build_reference(files, out)
    assert out.exists() and out.with_name("reg.json.provenance.json").exists()
    stored = json.loads(out.read_text())
    assert stored == json.loads(json.dumps(ref))
    assert stored["method"] == "stl" and stored["fraction"] == 100 and stored["seeds"] == [0, 1, 2]
    assert stored["task_order"] == ["mu", "alpha"]
    for task in ("mu", "alpha"):
        vals = np.array([metric_value("reg", "stl", 100, s, task) for s in [0, 1, 2]])
        assert stored["tasks"][task]["values"] == pytest.approx(list(vals), abs=0)
        assert stored["tasks"][task]["mean"] == vals.mean()
        assert stored["tasks"][task]["std"] == vals.std(ddof=0)  # the documented convention
        assert stored["tasks"][task]["primary"] == "mae" and stored["tasks"][task]["higher_is_better"] is False
    assert load_reference(out, dataset="reg", fraction=100)["task_order"] == ["mu", "alpha"]


def test_build_reference_errors(tmp_path):
    out = tmp_path / "ref.json"
    with pytest.raises(MTLReproError, match="no STL evaluation files"):
        build_reference([], out)
    good = eval_path(tmp_path, "reg", "stl", 100, 0)
    dump(good, eval_doc("reg", "stl", 100, 0))

    bad = eval_path(tmp_path, "reg", "stl", 100, 1)
    doc = eval_doc("reg", "stl", 100, 1)
    del doc["tasks"]["alpha"]
    doc["task_order"] = ["mu"]
    dump(bad, doc)
    with pytest.raises(MTLReproError, match=str(bad)):
        build_reference([good, bad], out)

    doc = eval_doc("reg", "stl", 100, 1)
    doc["tasks"]["mu"]["metrics"]["mae"] = float("nan")
    dump(bad, doc)
    with pytest.raises(MTLReproError, match=f"{bad}.*non-finite"):
        build_reference([good, bad], out)

    missing = eval_path(tmp_path, "reg", "stl", 100, 7)
    with pytest.raises(MTLReproError, match=str(missing)):
        build_reference([good, missing], out)

    wrong = eval_path(tmp_path, "reg", "ls", 100, 1)
    dump(wrong, eval_doc("reg", "ls", 100, 1))
    with pytest.raises(MTLReproError, match=str(wrong)):
        build_reference([good, wrong], out)
    assert not out.exists()


def test_stl_reference_per_fraction(tree):
    assert reference_path(tree["ref"], "reg") == tree["ref"] / "reg.json"
    for ds in ("reg", "cls"):
        for f in (20, 60):
            ref = load_reference(tree["ref"] / f"{ds}_pct{f}.json", dataset=ds, fraction=f)
            task = next(iter(TASKS[ds]))
            assert ref["tasks"][task]["mean"] == pytest.approx(
                np.mean([metric_value(ds, "stl", f, s, task) for s in SEEDS]), rel=1e-12)
    assert not (tree["ref"] / "reg_pct100.json").exists()
    assert agg.reference_outputs(tree["params"], tree["ref"]) == [
        tree["ref"] / n for n in ("reg.json", "reg_pct20.json", "reg_pct60.json",
                                  "cls.json", "cls_pct20.json", "cls_pct60.json")]


# ----------------------------------------------------------------------------------- aggregate

def expected_delta(ds, method, fraction, ref_fraction):
    tasks = TASKS[ds]
    ref = {t: np.mean([metric_value(ds, "stl", ref_fraction, s, t) for s in SEEDS]) for t in tasks}
    per_seed = []
    for s in SEEDS:
        terms = [(-1 if tasks[t][2] else 1) * (metric_value(ds, method, fraction, s, t) - ref[t]) / ref[t]
                 for t in tasks]
        per_seed.append(100 * np.mean(terms))
    return np.array(per_seed)


def test_aggregate_outputs_and_numbers(tree):
    summary = run(tree)
    for path in agg.aggregate_outputs(tree["params"], tree["tables"], tree["figures"], tree["summary"]):
        assert path.exists(), path
        assert path.with_name(path.name + ".provenance.json").exists(), path
    # no staging leftovers
    assert not [p for p in all_outputs(tree) if p.name.startswith(".")]

    rows = read_csv(tree["tables"] / "reg_main.csv")
    assert list(rows[0]) == ["dataset", "method", "column", "mean", "std", "n_seeds", "best"]
    by = {(r["method"], r["column"]): r for r in rows}
    # methods in params order
    assert list(dict.fromkeys(r["method"] for r in rows)) == METHODS
    # STL's Delta_m is exactly 0, in the CSV and the summary
    assert float(by[("stl", "Δm%")]["mean"]) == 0.0
    assert summary["reg"]["stl"]["delta_m"] == 0.0 and summary["cls"]["stl"]["delta_m"] == 0.0
    # per-task mean +- std equal numpy's (ddof=0)
    vals = np.array([metric_value("reg", "ls", 100, s, "mu") for s in SEEDS])
    assert float(by[("ls", "mu (MAE)")]["mean"]) == vals.mean()
    assert float(by[("ls", "mu (MAE)")]["std"]) == vals.std(ddof=0)
    assert int(by[("ls", "mu (MAE)")]["n_seeds"]) == 3
    # Delta_m per seed, then mean +- std
    exp = expected_delta("reg", "ls", 100, 100)
    assert float(by[("ls", "Δm%")]["mean"]) == pytest.approx(exp.mean(), rel=1e-12)
    assert float(by[("ls", "Δm%")]["std"]) == pytest.approx(exp.std(ddof=0), rel=1e-9)
    assert exp.mean() == pytest.approx(10.0)  # errors 10 % above STL
    assert summary["reg"]["ls"]["delta_m"] == pytest.approx(10.0, rel=1e-5)
    assert summary["cls"]["bayesagg"]["delta_m"] == pytest.approx(expected_delta("cls", "bayesagg", 100, 100).mean(),
                                                                   rel=1e-5)
    # best markers: lower is better (MAE) and higher is better (accuracy) -> bayesagg both times
    best = {(r["method"], r["column"]) for r in rows if r["best"] == "True"}
    assert best == {("bayesagg", "mu (MAE)"), ("bayesagg", "alpha (MAE)"), ("bayesagg", "Δm%")}
    cls_rows = read_csv(tree["tables"] / "cls_main.csv")
    cls_best = {(r["method"], r["column"]) for r in cls_rows if r["best"] == "True"}
    assert cls_best == {("bayesagg", "t1 (Acc.)"), ("bayesagg", "t2 (Acc.)"), ("bayesagg", "Avg. Acc."),
                        ("bayesagg", "Δm%")}
    # the average column only where meaningful
    assert "Avg. Acc." in {r["column"] for r in cls_rows}
    assert not any(r["column"].startswith("Avg.") for r in rows)

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

    # summary is flat per dataset/method and JSON-clean
    stored = json.loads(tree["summary"].read_text())
    assert list(stored) == ["reg", "cls"] and list(stored["reg"]) == METHODS
    assert set(stored["reg"]["ls"]) >= {"delta_m", "delta_m_std", "mean_score"}


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
    # params order (stl before ls) although the ablation lists ls first
    assert list(dict.fromkeys(r["method"] for r in rows)) == ["stl", "ls"]
    cell = {(r["quantity"], r["method"], int(r["fraction"])): r for r in rows}
    assert sorted({int(r["fraction"]) for r in rows}) == FRACTIONS
    for f in FRACTIONS:
        # STL ran at every fraction: compared with the STL reference at the same fraction
        assert float(cell[("delta_m", "stl", f)]["mean"]) == 0.0
        exp = expected_delta("reg", "ls", f, f)
        assert float(cell[("delta_m", "ls", f)]["mean"]) == pytest.approx(exp.mean(), rel=1e-12)
        assert cell[("delta_m", "ls", f)]["reference"] == ("reg.json" if f == 100 else f"reg_pct{f}.json")
        scores = [np.mean([metric_value("reg", "ls", f, s, t) for t in TASKS["reg"]]) for s in SEEDS]
        assert float(cell[("mean_score", "ls", f)]["mean"]) == pytest.approx(np.mean(scores), rel=1e-12)
        assert float(cell[("mean_score", "ls", f)]["std"]) == pytest.approx(np.std(scores), rel=1e-9)
    md = (tree["tables"] / "reg_data_fraction.md").read_text()
    assert "## reg: data fraction — mean primary score" in md and "## reg: data fraction — Δm% vs STL" in md
    assert md.count(r"\begin{tabular}") == 0
    assert (tree["tables"] / "reg_data_fraction.tex").read_text().count(r"\begin{tabular}") == 2


def test_data_fraction_without_stl_uses_full_reference(tree):
    params = make_params(df_methods=("ls", "bayesagg"))
    run(tree, params)
    rows = read_csv(tree["tables"] / "reg_data_fraction.csv")
    cell = {(r["quantity"], r["method"], int(r["fraction"])): r for r in rows}
    exp = expected_delta("reg", "ls", 20, 100)
    assert float(cell[("delta_m", "ls", 20)]["mean"]) == pytest.approx(exp.mean(), rel=1e-12)
    assert cell[("delta_m", "ls", 20)]["reference"] == "reg.json"
    assert list(dict.fromkeys(r["method"] for r in rows)) == ["ls", "bayesagg"]


def test_robustness_table(tree):
    run(tree)
    rows = read_csv(tree["tables"] / "cls_robustness.csv")
    assert list(dict.fromkeys(r["method"] for r in rows)) == ["ls", "bayesagg"]  # params order
    cell = {(r["method"], r["kind"], float(r["strength"]), r["quantity"]): r for r in rows}
    for m in ("ls", "bayesagg"):
        for kind in KINDS:
            assert float(cell[(m, kind, 0.0, "relative_drop_pct")]["mean"]) == 0.0
            for s in STRENGTHS:
                scores = [np.mean([perturbed("cls", m, seed, kind, s, t) for t in TASKS["cls"]])
                          for seed in SEEDS]
                r = cell[(m, kind, s, "mean_score")]
                assert float(r["mean"]) == pytest.approx(np.mean(scores), rel=1e-12)
                assert float(r["std"]) == pytest.approx(np.std(scores), rel=1e-9)
                k = {"gaussian": 1.0, "fgsm": 2.0}[kind] * (1.5 if m == "ls" else 1.0)
                assert float(cell[(m, kind, s, "relative_drop_pct")]["mean"]) == pytest.approx(100 * k * s)
    # ls degrades more -> bayesagg best on the drop and the score at strength 0.2
    assert cell[("bayesagg", "fgsm", 0.2, "relative_drop_pct")]["best"] == "True"
    assert cell[("ls", "fgsm", 0.2, "relative_drop_pct")]["best"] == "False"
    assert cell[("bayesagg", "fgsm", 0.2, "mean_score")]["best"] == "True"
    md = (tree["tables"] / "cls_robustness.md").read_text()
    assert "gaussian" in md and "fgsm" in md and "relative drop" in md


# ---------------------------------------------------------------------------------- failures

def test_missing_file_names_it_and_writes_nothing(tree):
    victim = robustness_path(tree["rob"], "cls", "ls", 2)
    victim.unlink()
    with pytest.raises(MTLReproError, match=str(victim)):
        run(tree)
    assert all_outputs(tree) == []


def test_missing_eval_file(tree):
    victim = eval_path(tree["eval"], "reg", "pcgrad", 100, 1)
    victim.unlink()
    with pytest.raises(MTLReproError, match=str(victim)):
        run(tree)
    assert all_outputs(tree) == []


def test_missing_reference(tree):
    victim = tree["ref"] / "cls.json"
    victim.unlink()
    with pytest.raises(MTLReproError, match=str(victim)):
        run(tree)


def test_nan_metric_raises(tree):
    victim = eval_path(tree["eval"], "cls", "ls", 60, 0)
    doc = eval_doc("cls", "ls", 60, 0)
    doc["tasks"]["t2"]["metrics"]["accuracy"] = float("nan")
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=f"{victim}.*t2"):
        run(tree)
    assert all_outputs(tree) == []


def test_nan_robustness_value_raises(tree):
    victim = robustness_path(tree["rob"], "reg", "bayesagg", 0)
    doc = rob_doc("reg", "bayesagg", 0)
    doc["perturbations"]["fgsm"][1]["values"]["mu"] = float("nan")
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=str(victim)):
        run(tree)


def test_task_mismatch_with_reference(tree):
    victim = eval_path(tree["eval"], "reg", "ls", 100, 0)
    doc = eval_doc("reg", "ls", 100, 0)
    doc["tasks"]["mu"]["higher_is_better"] = True
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=str(victim)):
        run(tree)


def test_stale_reference_raises(tree):
    victim = eval_path(tree["eval"], "reg", "stl", 100, 1)
    doc = eval_doc("reg", "stl", 100, 1)
    doc["tasks"]["mu"]["metrics"]["mae"] *= 2
    dump(victim, doc)
    with pytest.raises(MTLReproError, match="stale"):
        run(tree)


def test_failure_midway_leaves_no_partial_outputs(tree, monkeypatch):
    # the last dataset's robustness figure fails after every table has been rendered
    def boom(ds, *args, **kwargs):
        if ds == "cls":
            raise RuntimeError("simulated crash while drawing")
        return original(ds, *args, **kwargs)

    original = agg._plot_robustness
    monkeypatch.setattr(agg, "_plot_robustness", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        run(tree)
    assert all_outputs(tree) == []
    assert not tree["tables"].exists() and not tree["figures"].exists()

    monkeypatch.setattr(agg, "_plot_robustness", original)
    run(tree)
    assert (tree["tables"] / "reg_main.md").exists() and tree["summary"].exists()


def test_formatting_significant_digits():
    s = agg._Stat([1234.5678, 1234.5678])
    assert agg._fmt(s, "sig4", " ± ") == "1235 ± 0"
    s = agg._Stat([0.012345, 0.012345])
    assert agg._fmt(s, "sig4", " ± ") == "0.01235 ± 0.00000"
    assert agg._fmt(agg._Stat([0.97, 0.95]), "fix3", " ± ") == "0.960 ± 0.010"
    assert agg._fmt(agg._Stat([-1e-12, 1e-12]), "fix2", " ± ") == "0.00 ± 0.00"
    assert math.isclose(agg.mean_std([1.0, 3.0])[1], 1.0)  # ddof=0
