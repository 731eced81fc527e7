"""Tests of the stl-reference and aggregate stages on synthetic evaluation trees."""
from __future__ import annotations

import copy
import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtlrepro import aggregate as agg
from mtlrepro.aggregate import (MTLReproError, build_reference, delta_m, eval_path, load_reference,
                                reference_path, robustness_path, stl_reference)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Two datasets: all-regression (lower is better) and all-classification (higher is better); and
# txt, of InfoMTL's grid (below), with one task of each direction and values from TXT_MEANS.
TASKS = {
    "reg": {"mu": ("regression", "mae", False, 0.5), "alpha": ("regression", "mae", False, 20.0)},
    "cls": {"t1": ("binary", "accuracy", True, 0.80), "t2": ("binary", "accuracy", True, 0.70)},
    "txt": {"sent": ("binary", "macro_f1", True, None), "err": ("regression", "mae", False, None)},
}
# Methods in the papers' (non-alphabetical) order.
METHODS = ["stl", "ls", "pcgrad", "bayesagg"]
# Multiplicative effect on the error (regression); the accuracy effect is its inverse.
FACTOR = {"stl": 1.0, "ls": 1.10, "pcgrad": 1.05, "bayesagg": 0.95}
SEEDS = [0, 1, 2]
FRACTIONS = [20, 60, 100]  # params list only [20, 60]: 100 (the main run) is always added
KINDS = ["gaussian", "fgsm"]
STRENGTHS = [0.1, 0.2]

# InfoMTL's grid: txt's methods in grid order (ls = EW) and its own data fractions (main: 20, 60).
TXT_METHODS = ["stl", "ls", "mt_vib", "infomtl"]
TXT_FRACTIONS = [40]
# Seed means of (sent macro-F1, higher is better; err MAE, lower is better) per (method, fraction);
# the seeds spread them symmetrically, so these are the exact seed means.
TXT_MEANS = {("stl", 100): (0.70, 2.0), ("ls", 100): (0.80, 1.0), ("mt_vib", 100): (0.72, 1.5),
             ("infomtl", 100): (0.88, 0.9), ("ls", 40): (0.60, 2.0), ("infomtl", 40): (0.66, 1.6)}

# Representation quality per run: seed mean UNIFORMITY[m] (spread +-0.1) and ARI[m] + 0.1 k for the
# k-th classification task (spread +-0.02).
UNIFORMITY = {"stl": -1.5, "ls": -1.8, "pcgrad": -1.9, "bayesagg": -2.0, "gls": -1.7, "nash_mtl": -1.6,
              "mt_vib": -1.9, "infomtl": -2.6}
ARI = {"stl": 0.05, "ls": 0.10, "pcgrad": 0.12, "bayesagg": 0.20, "gls": 0.08, "nash_mtl": 0.15,
       "mt_vib": 0.09, "infomtl": 0.40}


def representation(tasks, method, seed):
    classification = [t for t, spec in tasks.items() if spec[0] != "regression"]
    return {"uniformity": UNIFORMITY[method] + 0.1 * (seed - 1),
            "ari": {t: ARI[method] + 0.1 * k + 0.02 * (seed - 1) for k, t in enumerate(classification)}}


def metric_value(ds, method, fraction, seed, task):
    if ds == "txt":
        sent, err = TXT_MEANS[(method, fraction)]
        return sent * (1 + 0.01 * (seed - 1)) if task == "sent" else err * (1 - 0.02 * (seed - 1))
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
            {"accuracy": value, primary: value, "auc": min(1.0, value + 0.1), "ece": 0.01, "brier": 0.02}
        tasks[task] = {"kind": kind, "primary": primary, "higher_is_better": hib, "metrics": metrics}
    return {"dataset": ds, "method": method, "seed": seed, "fraction": fraction, "tasks": tasks,
            "task_order": list(TASKS[ds]), "representation": representation(TASKS[ds], method, seed)}


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
    return build_tree(tmp_path)


def build_tree(root: Path) -> dict:
    params = make_params()
    d = {"params": params, "eval": root / "eval", "rob": root / "robustness",
         "ref": root / "reference", "tables": root / "reports" / "tables",
         "figures": root / "reports" / "figures", "summary": root / "reports" / "metrics.json"}
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
    # no published counterpart for reg/cls; a calibration table for the classification dataset only
    assert not list(tree["tables"].glob("published_comparison*"))
    assert (tree["tables"] / "cls_calibration.csv").exists() and not list(tree["tables"].glob("reg_calibration*"))
    cal = read_csv(tree["tables"] / "cls_calibration.csv")
    assert [float(r["mean"]) for r in cal if r["metric"] == "ece"] == pytest.approx([0.01] * len(METHODS))
    # a grid without data fractions ran no ablation, so it gets no data-fraction table
    no_fractions = copy.deepcopy(tree["params"])
    no_fractions["ablations"]["data_fraction"]["fractions"] = []
    listed = agg.aggregate_outputs(no_fractions, tree["tables"], tree["figures"], tree["summary"])
    assert listed and not [p for p in listed if "data_fraction" in p.name]
    assert not any(r["best"] == "True" for r in cal)  # all equal: nothing marked

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


# ======================================================================= calibration, task weights,
# published comparison: a second synthetic study whose datasets have published counterparts.

STUDY_TASKS = {
    "qm9": {"mu": ("regression", "mae", False, 0.5), "alpha": ("regression", "mae", False, 20.0)},
    "digits-mtl": {"is_0": ("binary", "accuracy", True, 0.96), "is_1": ("binary", "accuracy", True, 0.92),
                   "is_2": ("binary", "accuracy", True, 0.90)},
}
# params order; gls has no published number, and the papers' other methods are not run here
STUDY_METHODS = ["stl", "ls", "gls", "nash_mtl", "bayesagg"]
STUDY_FACTOR = {"stl": 1.0, "ls": 1.10, "gls": 1.02, "nash_mtl": 0.97, "bayesagg": 0.95}
# calibration: bayesagg has the lowest ECE, nash_mtl the lowest Brier score
ECE_SCALE = {"stl": 1.0, "ls": 1.3, "gls": 1.1, "nash_mtl": 0.9, "bayesagg": 0.5}
BRIER_SCALE = {"stl": 1.0, "ls": 1.2, "gls": 1.05, "nash_mtl": 0.6, "bayesagg": 0.8}
WEIGHT_EPOCHS = [6, 10, 15]
N_PROBE, N_DIMS = 3, 4


def study_value(ds, method, seed, task):
    kind, _, hib, base = STUDY_TASKS[ds][task]
    noise = 1 + 0.01 * (seed - 1) * (1 if task in ("mu", "is_0") else -1)
    return base / STUDY_FACTOR[method] * noise if hib else base * STUDY_FACTOR[method] * noise


def study_ece(method, seed, k):
    return 0.02 * ECE_SCALE[method] * (1 + 0.1 * seed) * (1 + 0.05 * k)


def study_brier(method, seed, k):
    return 0.05 * BRIER_SCALE[method] + 0.003 * seed + 0.001 * k


def study_eval(ds, method, seed):
    tasks = {}
    for k, (task, (kind, primary, hib, _)) in enumerate(STUDY_TASKS[ds].items()):
        value = study_value(ds, method, seed, task)
        metrics = {primary: value, "mse": value ** 2} if kind == "regression" else \
            {primary: value, "ece": study_ece(method, seed, k), "brier": study_brier(method, seed, k),
             "auc": float("nan")}  # an unused secondary metric may be NaN
        tasks[task] = {"kind": kind, "primary": primary, "higher_is_better": hib, "metrics": metrics}
    return {"dataset": ds, "method": method, "seed": seed, "fraction": 100, "tasks": tasks,
            "task_order": list(STUDY_TASKS[ds]), "representation": representation(STUDY_TASKS[ds], method, seed)}


def per_dimension_weights(ds, seed, epoch):
    k = len(STUDY_TASKS[ds])
    rng = np.random.default_rng([seed, epoch, k])
    raw = rng.random((k, N_PROBE, N_DIMS)) + 0.05
    return (raw / raw.sum(0, keepdims=True)).tolist()  # alpha sums to 1 over tasks, per dimension


def study_log(ds, method, seed):
    tasks = list(STUDY_TASKS[ds])
    k = len(tasks)
    epochs = list(range(1, 16))
    curve = [{"epoch": e, "train_loss": [1.0] * k, "val_score": 1 / e + 0.01 * seed, "lr": 1e-3} for e in epochs]
    if method == "stl":
        history, method_log = {t: curve for t in tasks}, []
    elif method == "bayesagg":
        history = curve
        method_log = [{"epoch": e, "kind": "per_dimension", "weights": per_dimension_weights(ds, seed, e)}
                      for e in WEIGHT_EPOCHS]
    elif method == "gls":  # per_task, but not a flat [K] vector: no panel
        history = curve
        method_log = [{"epoch": e, "kind": "per_task", "weights": [[1.0, 2.0]] * k} for e in WEIGHT_EPOCHS]
    else:  # ls, nash_mtl: flat [K] per_task weights
        history = curve
        method_log = [{"epoch": e, "kind": "per_task", "weights": [1.0 + 0.1 * j + 0.01 * e for j in range(k)]}
                      for e in WEIGHT_EPOCHS]
    return {"dataset": ds, "method": method, "fraction": 100, "seed": seed, "tasks": tasks, "best_epoch": 15,
            "history": history, "method_log": method_log, "wall_time_s": 1.0}


def study_params():
    return {"datasets": ["qm9", "digits-mtl"], "methods": list(STUDY_METHODS), "seeds": list(SEEDS),
            "dataset": {"qm9": {"source": {"kind": "embedded", "path": None},
                                "split": {"train": 600, "val": 200, "test": 400}},
                        "digits-mtl": {"source": {"kind": "embedded"}, "split": {"val": 0.15, "test": 0.25}}}}


def study_dirs(root: Path) -> dict:
    return {"params": study_params(), "eval": root / "eval", "rob": root / "robustness", "ref": root / "reference",
            "logs": root / "logs", "tables": root / "reports" / "tables", "figures": root / "reports" / "figures",
            "summary": root / "reports" / "metrics.json"}


def run_study(d, **overrides):
    d = {**d, **overrides}
    return agg.aggregate(d["params"], d["eval"], d["rob"], d["ref"], d["tables"], d["figures"], d["summary"],
                         logs_dir=d["logs"])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The second study's inputs, aggregated once (with its logs) for the read-only tests below."""
    d = study_dirs(tmp_path_factory.mktemp("study"))
    for ds in d["params"]["datasets"]:
        for m in STUDY_METHODS:
            for s in SEEDS:
                dump(eval_path(d["eval"], ds, m, 100, s), study_eval(ds, m, s))
                dump(agg.log_path(d["logs"], ds, m, s), study_log(ds, m, s))
    stl_reference(d["params"], d["eval"], d["ref"])
    run_study(d)
    return d


def fresh_outputs(d, tmp_path):
    """The study's inputs with output folders of its own under tmp_path."""
    return {**d, "tables": tmp_path / "tables", "figures": tmp_path / "figures", "summary": tmp_path / "m.json"}


# ----------------------------------------------------------------------------------- calibration

def test_calibration_table_values_and_best(study):
    rows = read_csv(study["tables"] / "digits-mtl_calibration.csv")
    assert list(dict.fromkeys(r["method"] for r in rows)) == STUDY_METHODS  # params order
    cell = {(r["method"], r["metric"]): r for r in rows}
    n_tasks = len(STUDY_TASKS["digits-mtl"])
    for m in STUDY_METHODS:
        ece = np.array([np.mean([study_ece(m, s, k) for k in range(n_tasks)]) for s in SEEDS])
        brier = np.array([np.mean([study_brier(m, s, k) for k in range(n_tasks)]) for s in SEEDS])
        acc = np.array([np.mean([study_value("digits-mtl", m, s, t) for t in STUDY_TASKS["digits-mtl"]])
                        for s in SEEDS])
        for metric, expected in (("ece", ece), ("brier", brier), ("accuracy", acc)):
            assert float(cell[(m, metric)]["mean"]) == pytest.approx(expected.mean(), rel=1e-12)
            assert float(cell[(m, metric)]["std"]) == pytest.approx(expected.std(ddof=0), rel=1e-9, abs=1e-15)
            assert int(cell[(m, metric)]["n_seeds"]) == 3 and int(cell[(m, metric)]["n_tasks"]) == n_tasks
    # lower is better; the two columns have different winners; accuracy is never marked
    best = {(r["method"], r["metric"]) for r in rows if r["best"] == "True"}
    assert best == {("bayesagg", "ece"), ("nash_mtl", "brier")}
    md = (study["tables"] / "digits-mtl_calibration.md").read_text()
    bayes = next(line for line in md.splitlines() if line.startswith("| bayesagg"))
    assert bayes.count("**") == 2 and "15 bins" in md and "lower is better" in md.lower()
    tex = (study["tables"] / "digits-mtl_calibration.tex").read_text()
    assert tex.count(r"\textbf{") == 2 and r"\bottomrule" in tex


def test_no_calibration_table_for_regression_dataset(study):
    assert not list(study["tables"].glob("qm9_calibration*"))
    assert (study["tables"] / "qm9_main.csv").exists()
    outputs = agg.aggregate_outputs(study["params"], study["tables"], study["figures"], study["summary"],
                                    task_kinds={ds: [v[0] for v in t.values()] for ds, t in STUDY_TASKS.items()})
    names = {p.name for p in outputs}
    assert {"digits-mtl_calibration.md", "digits-mtl_calibration.tex", "digits-mtl_calibration.csv",
            "published_comparison.md", "published_comparison.csv"} <= names
    assert not any(n.startswith("qm9_calibration") for n in names)
    for path in outputs:
        assert path.exists() and path.with_name(path.name + ".provenance.json").exists(), path


def test_calibration_missing_metric_names_the_file(study, tmp_path):
    d = fresh_outputs(study, tmp_path)
    d["eval"] = tmp_path / "eval"
    shutil.copytree(study["eval"], d["eval"])
    victim = eval_path(d["eval"], "digits-mtl", "gls", 100, 2)
    doc = study_eval("digits-mtl", "gls", 2)
    del doc["tasks"]["is_1"]["metrics"]["brier"]
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=f"{victim}.*is_1.*brier"):
        run_study(d)
    assert not d["tables"].exists() and not d["figures"].exists()


# ---------------------------------------------------------------------------------- task weights

def test_weight_heatmaps_only_for_per_dimension_logs(study):
    figures = study["figures"]
    for ds in ("qm9", "digits-mtl"):
        path = figures / f"{ds}_bayesagg_weights.png"
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, path
        assert path.with_name(path.name + ".provenance.json").exists()
        from PIL import Image
        with Image.open(path) as image:
            image.verify()  # a complete, decodable PNG
        # only BayesAgg-MTL logs per-dimension weights
        heatmaps = [p.name for p in figures.glob(f"{ds}_*_weights.png") if p.name != f"{ds}_task_weights.png"]
        assert heatmaps == [f"{ds}_bayesagg_weights.png"]
    sidecar = json.loads((figures / "qm9_bayesagg_weights.png.provenance.json").read_text())
    assert list(sidecar["inputs"]) == [str(agg.log_path(study["logs"], "qm9", "bayesagg", SEEDS[0]))]


def test_weight_panels_average_the_probe_examples(study):
    log = agg.load_log(agg.log_path(study["logs"], "digits-mtl", "bayesagg", 0), dataset="digits-mtl",
                       method="bayesagg", seed=0)
    panels = agg._per_dimension_panels(log)
    assert panels.epochs == WEIGHT_EPOCHS and panels.tasks == list(STUDY_TASKS["digits-mtl"])
    for epoch, w in zip(panels.epochs, panels.weights):
        raw = np.array(per_dimension_weights("digits-mtl", 0, epoch))
        assert w.shape == (3, N_DIMS)
        np.testing.assert_allclose(w, raw.mean(axis=1), rtol=0, atol=1e-15)
        np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-12)  # the average keeps alpha's normalisation
    assert agg._per_dimension_panels(agg.load_log(agg.log_path(study["logs"], "qm9", "nash_mtl", 0))) is None


def test_task_weights_figure_has_flat_per_task_methods(study):
    for ds in ("qm9", "digits-mtl"):
        data = (study["figures"] / f"{ds}_task_weights.png").read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    logs, _ = agg._load_logs(study["params"], study["logs"], "qm9")
    figures = agg._weight_figures("qm9", study["params"], logs)
    assert [name for name, _, _ in figures] == ["qm9_bayesagg_weights.png", "qm9_task_weights.png"]
    series = {m: agg._per_task_series(logs[m][0]) for m in STUDY_METHODS}
    assert [m for m, v in series.items() if v is not None] == ["ls", "nash_mtl"]  # gls's [K][2]: skipped
    epochs, weights = series["nash_mtl"]
    assert epochs == WEIGHT_EPOCHS and weights.shape == (3, 2)
    assert weights[1].tolist() == pytest.approx([1.0 + 0.1 * j + 0.1 for j in range(2)])
    # no figure when no method logs flat per-task weights
    only = {**study["params"], "methods": ["stl", "gls", "bayesagg"]}
    assert [n for n, _, _ in agg._weight_figures("qm9", only, logs)] == ["qm9_bayesagg_weights.png"]


def test_missing_log_names_it_and_writes_nothing(study, tmp_path):
    d = fresh_outputs(study, tmp_path)
    d["logs"] = tmp_path / "logs"
    shutil.copytree(study["logs"], d["logs"])
    victim = agg.log_path(d["logs"], "digits-mtl", "nash_mtl", 1)
    victim.unlink()
    with pytest.raises(MTLReproError, match=str(victim)):
        run_study(d)
    assert not d["tables"].exists() and not d["figures"].exists() and not d["summary"].exists()


@pytest.mark.parametrize("mutate,match", [
    (lambda log: log["method_log"][1].update(weights=[[[0.5] * N_DIMS] * N_PROBE] * 2), r"method_log\[1\].*K = 3"),
    (lambda log: log["method_log"][0]["weights"][0][0].__setitem__(2, "x"), r"method_log\[0\]\.weights\[0\]\[0\]\[2\]"),
    (lambda log: log["method_log"][2]["weights"][1][1].__setitem__(0, float("nan")), "non-finite"),
    (lambda log: log.pop("tasks"), "'tasks'"),
    (lambda log: log.update(method="ls"), "method"),
])
def test_bad_log_raises_naming_the_file(tmp_path, mutate, match):
    log = study_log("digits-mtl", "bayesagg", 0)
    mutate(log)
    path = agg.log_path(tmp_path, "digits-mtl", "bayesagg", 0)
    dump(path, log)
    with pytest.raises(MTLReproError, match=f"{path}.*{match}"):
        agg._per_dimension_panels(agg.load_log(path, dataset="digits-mtl", method="bayesagg", seed=0))


def test_weight_figure_failure_leaves_no_partial_outputs(study, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while drawing the weights")

    monkeypatch.setattr(agg, "_plot_weight_heatmaps", boom)
    d = fresh_outputs(study, tmp_path)
    with pytest.raises(RuntimeError, match="simulated"):
        run_study(d)
    assert not d["tables"].exists() and not d["figures"].exists() and not d["summary"].exists()


# --------------------------------------------------------------------------- published comparison

def expected_ranks(values, higher_is_better):
    """Competition ranks by sorting (1 = best, ties share the best rank)."""
    ordered = sorted(values.values(), reverse=higher_is_better)
    return {m: ordered.index(v) + 1 for m, v in values.items()}


def test_published_comparison_rows_and_ranks(study):
    from mtlrepro import published

    rows = read_csv(study["tables"] / "published_comparison.csv")
    for ds, key, hib in (("qm9", "bayesagg_qm9_delta_m", False),
                         ("digits-mtl", "bayesagg_cifar_mtl_accuracy", True)):
        table = published.TABLES[key]
        mine = [r for r in rows if r["our_dataset"] == ds]
        methods = [r["method"] for r in mine]
        # params order first, then the paper's other methods in its table order
        assert methods[:len(STUDY_METHODS)] == STUDY_METHODS
        assert methods[len(STUDY_METHODS):] == [m for m in table.entries if m not in STUDY_METHODS]
        by = {r["method"]: r for r in mine}
        pub = {m: e.value for m, e in table.entries.items()}
        for m, rank in expected_ranks(pub, hib).items():
            assert int(by[m]["published_rank"]) == rank and float(by[m]["published_value"]) == pub[m]
        ours_values = {m: float(by[m]["ours_mean"]) for m in STUDY_METHODS}
        for m, rank in expected_ranks(ours_values, hib).items():
            assert int(by[m]["ours_rank"]) == rank
        # the papers' other methods were not run here, gls is not in the paper: empty cells
        assert by["gls"]["published_value"] == "" and by["gls"]["published_rank"] == ""
        assert all(by[m]["ours_mean"] == "" and by[m]["ours_rank"] == "" for m in methods[len(STUDY_METHODS):])
        assert {r["published_dataset"] for r in mine} == {table.dataset}
    qm9 = {r["method"]: r for r in rows if r["our_dataset"] == "qm9"}
    # ours: Delta_m mean +- std over seeds, as in the main table
    exp = [100 * np.mean([(study_value("qm9", "ls", s, t) - np.mean([study_value("qm9", "stl", q, t)
                                                                      for q in SEEDS]))
                          / np.mean([study_value("qm9", "stl", q, t) for q in SEEDS]) for t in STUDY_TASKS["qm9"]])
           for s in SEEDS]
    assert float(qm9["ls"]["ours_mean"]) == pytest.approx(np.mean(exp), rel=1e-9)
    assert float(qm9["ls"]["ours_std"]) == pytest.approx(np.std(exp), rel=1e-6)
    assert [m for m in STUDY_METHODS if int(qm9[m]["ours_rank"]) == 1] == ["bayesagg"]
    assert int(qm9["ls"]["published_rank"]) == 13 and int(qm9["bayesagg"]["published_rank"]) == 2
    assert qm9["stl"]["published_by_definition"] == "True" and float(qm9["stl"]["published_value"]) == 0.0
    cifar = {r["method"]: r for r in rows if r["our_dataset"] == "digits-mtl"}
    # 56.59 twice: Nash-MTL and CAGrad share rank 9, the next is 11
    assert int(cifar["nash_mtl"]["published_rank"]) == int(cifar["cagrad"]["published_rank"]) == 9
    assert int(cifar["aligned_mtl"]["published_rank"]) == 11
    assert cifar["stl"]["published_value"] == "" and cifar["stl"]["ours_rank"] != ""
    acc = [100 * np.mean([study_value("digits-mtl", "bayesagg", s, t) for t in STUDY_TASKS["digits-mtl"]])
           for s in SEEDS]
    assert float(cifar["bayesagg"]["ours_mean"]) == pytest.approx(np.mean(acc), rel=1e-12)


def test_published_comparison_markdown(study):
    md = (study["tables"] / "published_comparison.md").read_text()
    sections = md.split("\n## ")[1:]
    assert [s.split(" ", 1)[0] for s in sections] == ["qm9", "digits-mtl"]
    qm9, digits = sections
    # the caption says plainly that the data are small subsets, with the sizes from params
    assert "small subsets" in qm9 and "train 600, val 200, test 400" in qm9
    assert "only the orderings" in qm9 and "not comparable" in qm9
    assert "val 0.15, test 0.25" in digits and "NOT" in digits and "CIFAR-MTL" in digits
    assert "different, smaller data set" in digits
    assert "Table 1" in qm9 and "Table 2" in digits and "Achituve" in qm9
    rows = [line for line in qm9.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    assert [r.split("|")[1].strip().split(" ")[0] for r in rows][:len(STUDY_METHODS)] == STUDY_METHODS
    cells = {r.split("|")[1].strip().split(" ")[0]: [c.strip() for c in r.split("|")[2:-1]] for r in rows}
    assert cells["bayesagg"][0] == "53.2 ± 7.1" and cells["ls"][0] == "177.6 ± 3.4"
    assert cells["mgda"][0] == "120.5 ± 2.0" and cells["stl"][:2] == ["0.0 (by definition)", "1"]
    assert cells["gls"][:2] == ["—", "—"] and cells["si"][2:] == ["—", "—"] and cells["si"][0] == "77.8 ± 9.2"
    assert "Spearman" in qm9
    sidecar = json.loads((study["tables"] / "published_comparison.md.provenance.json").read_text())
    assert any(k.endswith("published.py") for k in sidecar["inputs"])
    assert sidecar["params"]["dataset"]["qm9"]["split"] == {"train": 600, "val": 200, "test": 400}


def test_no_published_comparison_without_counterpart(tree):
    # reg and cls have no published counterpart (the files' absence after a run: see
    # test_aggregate_outputs_and_numbers)
    assert not [p for p in agg.aggregate_outputs(tree["params"], tree["tables"], tree["figures"], tree["summary"])
                if p.name.startswith("published_comparison")]
    assert agg.published.counterpart("reg") is None and agg.published.counterpart("qm9") is not None


def test_competition_ranks():
    assert agg.competition_ranks({"a": 3.0, "b": 1.0, "c": 3.0, "d": 5.0}, False) == {"a": 2, "b": 1, "c": 2, "d": 4}
    assert agg.competition_ranks({"a": 3.0, "b": 1.0, "c": 3.0, "d": 5.0}, True) == {"a": 2, "b": 4, "c": 2, "d": 1}


# ======================================================================= InfoMTL's grid (infomtl_study)
# txt is the infomtl_study grid's dataset beside the main grid's reg and cls (the `tree` fixture).

def infomtl_params(rob_methods=("infomtl", "ls")):
    params = make_params()
    params["infomtl_study"] = {"datasets": ["txt"], "methods": list(TXT_METHODS), "ablations": {
        "data_fraction": {"fractions": list(TXT_FRACTIONS), "methods": ["infomtl", "ls"]},
        "robustness": {"methods": list(rob_methods)}}}
    return params


@pytest.fixture(scope="module")
def info_tree(tmp_path_factory):
    """`tree`'s inputs plus txt's evaluations (100 % and its data fractions), robustness runs and
    reference, aggregated once for the read-only tests below (the others write elsewhere)."""
    d = build_tree(tmp_path_factory.mktemp("infomtl"))
    for (m, f) in TXT_MEANS:
        for s in SEEDS:
            dump(eval_path(d["eval"], "txt", m, f, s), eval_doc("txt", m, f, s))
    for m in ("ls", "infomtl"):
        for s in SEEDS:
            dump(robustness_path(d["rob"], "txt", m, s), rob_doc("txt", m, s))
    params = infomtl_params()
    assert stl_reference(params, d["eval"], d["ref"], datasets=["txt"]) == [d["ref"] / "txt.json"]
    d = {**d, "params": params}
    run(d)
    return d


def stored_summary(d):
    return json.loads(d["summary"].read_text())


def hand_delta_p(values, ew):
    """InfoMTL's Delta_p for txt: sent (higher is better) counts +, err (lower is better) counts -."""
    return 100 * ((values[0] - ew[0]) / ew[0] - (values[1] - ew[1]) / ew[1]) / 2


def txt_seed_values(method, fraction):
    return [(metric_value("txt", method, fraction, s, "sent"), metric_value("txt", method, fraction, s, "err"))
            for s in SEEDS]


def test_infomtl_main_table_avg_and_delta_p(info_tree):
    summary = stored_summary(info_tree)
    rows = read_csv(info_tree["tables"] / "txt_main.csv")
    assert list(dict.fromkeys(r["method"] for r in rows)) == TXT_METHODS  # the grid's order
    assert list(dict.fromkeys(r["column"] for r in rows)) == ["sent (M-F1)", "err (MAE)", "Avg.", "Δp%", "Δm%"]
    cell = {(r["method"], r["column"]): r for r in rows}
    # by hand from TXT_MEANS (EW = ls: 0.80 and 1.0): infomtl +10 % on sent, 10 % lower error -> +10;
    # mt_vib -10 % on sent and a 50 % higher error (lower is better: counts -50) -> -30
    for method, expected in (("infomtl", 10.0), ("mt_vib", -30.0), ("stl", (-12.5 - 100.0) / 2)):
        assert float(cell[(method, "Δp%")]["mean"]) == pytest.approx(expected, rel=1e-9)
        assert summary["txt"][method]["delta_p"] == pytest.approx(expected, rel=1e-5)
    assert float(cell[("ls", "Δp%")]["mean"]) == 0.0 and summary["txt"]["ls"]["delta_p"] == 0.0
    # per seed against EW's seed mean, then the std over seeds
    per_seed = [hand_delta_p(v, TXT_MEANS[("ls", 100)]) for v in txt_seed_values("infomtl", 100)]
    assert float(cell[("infomtl", "Δp%")]["std"]) == pytest.approx(np.std(per_seed), rel=1e-9)
    assert float(cell[("infomtl", "Δp%")]["std"]) > 0
    # Avg. = mean over tasks of the primary metric: (0.88 + 0.9) / 2
    avgs = [(sent + err) / 2 for sent, err in txt_seed_values("infomtl", 100)]
    assert float(cell[("infomtl", "Avg.")]["mean"]) == pytest.approx(0.89, rel=1e-12)
    assert float(cell[("infomtl", "Avg.")]["std"]) == pytest.approx(np.std(avgs), rel=1e-9)
    assert summary["txt"]["infomtl"]["avg"] == pytest.approx(0.89, rel=1e-5)
    # Delta_m vs STL is kept, and so is the rest of the summary
    assert float(cell[("stl", "Δm%")]["mean"]) == 0.0
    assert {"delta_m", "delta_m_std", "mean_score", "avg", "avg_std", "delta_p", "delta_p_std"} <= set(
        summary["txt"]["infomtl"])
    # Delta_p: higher is better; Avg. over tasks of both directions: not marked
    assert cell[("infomtl", "Δp%")]["best"] == "True" and cell[("infomtl", "Avg.")]["best"] == "False"
    md = (info_tree["tables"] / "txt_main.md").read_text()
    assert "| Avg. | Δp% ↑ | Δm% ↓ |" in md and "EW (ls)" in md


def test_infomtl_data_fraction_against_ew_at_the_same_fraction(info_tree):
    rows = read_csv(info_tree["tables"] / "txt_data_fraction.csv")
    cell = {(r["quantity"], r["method"], int(r["fraction"])): r for r in rows}
    # the grid's own fractions plus 100 (not the main grid's 20 and 60); its methods in grid order
    assert sorted({int(r["fraction"]) for r in rows}) == [40, 100]
    assert list(dict.fromkeys(r["method"] for r in rows)) == ["ls", "infomtl"]
    # at 40 % EW is (0.60, 2.0): +10 % on sent, 20 % lower error -> +15 (against EW at 100 % it would
    # be (-17.5 - 60) / 2 = -38.75)
    assert float(cell[("delta_p", "infomtl", 40)]["mean"]) == pytest.approx(15.0, rel=1e-9)
    assert float(cell[("delta_p", "infomtl", 100)]["mean"]) == pytest.approx(10.0, rel=1e-9)
    assert float(cell[("delta_p", "ls", 40)]["mean"]) == 0.0 and float(cell[("delta_p", "ls", 100)]["mean"]) == 0.0
    per_seed = [hand_delta_p(v, TXT_MEANS[("ls", 40)]) for v in txt_seed_values("infomtl", 40)]
    assert float(cell[("delta_p", "infomtl", 40)]["std"]) == pytest.approx(np.std(per_seed), rel=1e-9)
    assert cell[("delta_p", "infomtl", 40)]["reference"] == "ls at 40% (seed mean)"
    assert float(cell[("mean_score", "infomtl", 40)]["mean"]) == pytest.approx((0.66 + 1.6) / 2, rel=1e-12)
    assert cell[("delta_m", "infomtl", 40)]["reference"] == "txt.json"  # STL did not run at 40 %
    # InfoMTL's Table 6 layout: a row per (fraction, method), the best marked within each fraction
    md = (info_tree["tables"] / "txt_data_fraction.md").read_text()
    section = md.split("## ")[1]
    assert "Table 6" in section.splitlines()[0]
    table_rows = [line for line in section.splitlines() if line.startswith("| ") and "Data / Method" not in line]
    assert [r.split("|")[1].strip() for r in table_rows] == ["40% ls", "40% infomtl", "100% ls", "100% infomtl"]
    bold = [r.split("|")[1].strip() for r in table_rows if "**" in r]
    assert bold == ["40% infomtl", "100% infomtl"]
    assert "## txt: data fraction — Δm% vs STL" in md
    assert (info_tree["tables"] / "txt_data_fraction.tex").read_text().count(r"\begin{tabular}") == 2
    assert (info_tree["figures"] / "txt_data_fraction.png").read_bytes()[:8] == PNG_SIGNATURE


def test_infomtl_robustness_relative_to_ew_at_the_same_strength(info_tree):
    rows = read_csv(info_tree["tables"] / "txt_robustness.csv")
    cell = {(r["method"], r["kind"], float(r["strength"]), r["quantity"]): r for r in rows}
    for kind in KINDS:
        for s in [0.0] + STRENGTHS:
            def robust(m):  # per seed, the mean over tasks of the perturbed primary metrics
                return [np.mean([perturbed("txt", m, seed, kind, s, t) for t in TASKS["txt"]]) for seed in SEEDS]
            ew = np.mean(robust("ls"))
            rel = [100 * (r - ew) / ew for r in robust("infomtl")]
            got = cell[("infomtl", kind, s, "relative_to_ew_pct")]
            assert float(got["mean"]) == pytest.approx(np.mean(rel), rel=1e-9, abs=1e-12)
            assert float(got["std"]) == pytest.approx(np.std(rel), rel=1e-9)
            assert float(cell[("ls", kind, s, "relative_to_ew_pct")]["mean"]) == 0.0
    # gaussian at 0.2 by hand: EW (k = 1.5) keeps 70 % of 0.80 and 130 % of 1.0 -> 0.93; infomtl
    # (k = 1) 0.704 and 1.08 -> 0.892: -4.086 %; at strength 0 it is (0.89 - 0.9) / 0.9 = -1.11 %
    assert float(cell[("infomtl", "gaussian", 0.2, "relative_to_ew_pct")]["mean"]) == pytest.approx(
        100 * (0.892 - 0.93) / 0.93, rel=1e-9)
    assert float(cell[("infomtl", "gaussian", 0.0, "relative_to_ew_pct")]["mean"]) == pytest.approx(
        100 * (0.89 - 0.9) / 0.9, rel=1e-9)
    md = (info_tree["tables"] / "txt_robustness.md").read_text()
    assert md.count("robust score vs EW (%)") == len(KINDS)
    # the main grid's datasets get no EW column
    assert not [r for r in read_csv(info_tree["tables"] / "cls_robustness.csv")
                if r["quantity"] == "relative_to_ew_pct"]


def test_infomtl_robustness_without_ew_has_no_ew_column(info_tree, tmp_path):
    d = {**fresh_outputs(info_tree, tmp_path), "params": infomtl_params(rob_methods=("infomtl",))}
    run(d)
    rows = read_csv(d["tables"] / "txt_robustness.csv")
    assert {r["quantity"] for r in rows} == {"mean_score", "relative_drop_pct"}


def rep_cells(d, ds):
    return {(r["method"], r["metric"], r["task"]): r for r in read_csv(d["tables"] / f"{ds}_representation.csv")}


def test_representation_table_for_every_dataset(info_tree):
    seed_spread = math.sqrt(2 / 3)  # np.std of (-1, 0, +1)
    for ds, methods in (("reg", METHODS), ("cls", METHODS), ("txt", TXT_METHODS)):
        cell = rep_cells(info_tree, ds)
        assert list(dict.fromkeys(m for m, _, _ in cell)) == methods
        classification = [t for t, spec in TASKS[ds].items() if spec[0] != "regression"]
        assert {(metric, task) for _, metric, task in cell} == \
            {("uniformity", "")} | {("ari_pct", t) for t in classification}
        for m in methods:
            uni = cell[(m, "uniformity", "")]
            assert float(uni["mean"]) == pytest.approx(UNIFORMITY[m], rel=1e-12)
            assert float(uni["std"]) == pytest.approx(0.1 * seed_spread, rel=1e-9)
            for k, t in enumerate(classification):
                ari = cell[(m, "ari_pct", t)]
                assert float(ari["mean"]) == pytest.approx(100 * (ARI[m] + 0.1 * k), rel=1e-12)
                assert float(ari["std"]) == pytest.approx(2.0 * seed_spread, rel=1e-9)
    # lower uniformity and higher ARI are better
    best = {(m, metric, t) for (m, metric, t), r in rep_cells(info_tree, "cls").items() if r["best"] == "True"}
    assert best == {("bayesagg", "uniformity", ""), ("bayesagg", "ari_pct", "t1"), ("bayesagg", "ari_pct", "t2")}
    md = (info_tree["tables"] / "txt_representation.md").read_text()
    assert "| Method | Uni. ↓ | sent ARI (%) ↑ |" in md and "Table 5" in md


def test_missing_representation_names_the_file(tree):
    victim = eval_path(tree["eval"], "cls", "pcgrad", 100, 1)
    doc = eval_doc("cls", "pcgrad", 100, 1)
    del doc["representation"]
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=f"{victim}: missing key 'representation'"):
        run(tree)
    assert all_outputs(tree) == []


def test_main_grid_outputs_unchanged_by_the_infomtl_grid(info_tree, tmp_path):
    main_only = {**fresh_outputs(info_tree, tmp_path), "params": make_params()}
    summary_main = run(main_only)
    summary_both = stored_summary(info_tree)
    # the main grid's datasets: the same files, the same bytes, the same summary
    names = sorted(p.name for p in main_only["tables"].iterdir() if not p.name.endswith(".provenance.json"))
    stems = {"reg": ("main", "data_fraction", "robustness", "representation"),
             "cls": ("main", "data_fraction", "robustness", "representation", "calibration")}
    assert names == sorted(f"{ds}_{stem}.{ext}" for ds in stems for stem in stems[ds] for ext in ("md", "tex", "csv"))
    for name in names:
        assert (main_only["tables"] / name).read_bytes() == (info_tree["tables"] / name).read_bytes(), name
    assert {ds: summary_both[ds] for ds in ("reg", "cls")} == summary_main
    assert set(summary_main["reg"]["ls"]) == {"delta_m", "delta_m_std", "mean_score", "mean_score_std", "n_seeds"}
    assert not [r for r in read_csv(main_only["tables"] / "cls_main.csv") if r["column"] in ("Avg.", "Δp%")]
    assert {r["quantity"] for r in read_csv(main_only["tables"] / "reg_data_fraction.csv")} == {"mean_score", "delta_m"}
    # the outputs listed are the ones written, txt's included
    listed = agg.aggregate_outputs(info_tree["params"], info_tree["tables"], info_tree["figures"],
                                   info_tree["summary"], task_kinds={ds: [v[0] for v in t.values()]
                                                                      for ds, t in TASKS.items()})
    assert {p.name for p in listed} >= {f"txt_{stem}.{ext}" for stem in ("main", "data_fraction", "robustness",
                                                                          "representation")
                                        for ext in ("md", "tex", "csv")}
    for path in listed:
        assert path.exists() and path.with_name(path.name + ".provenance.json").exists(), path
    written = {p for p in info_tree["tables"].iterdir() if not p.name.endswith(".provenance.json")}
    assert written == {p for p in listed if p.parent == info_tree["tables"]}
    assert agg.reference_outputs(info_tree["params"], info_tree["ref"])[-1] == info_tree["ref"] / "txt.json"
    assert agg.reference_fractions(info_tree["params"], "txt") == [100]
