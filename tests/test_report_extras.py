"""Representation quality (every dataset), calibration of the classification tasks, the
task-weight figures of the training logs, and the published numbers beside ours."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mtlrepro import params as P
from mtlrepro import published, report
from mtlrepro.io import MTLReproError
from mtlrepro.report import weights
from mtlrepro.report.loader import load_log, log_path
from tests.report_synthetic import (ARI, METHODS, N_DIMS, PNG_SIGNATURE, SEEDS, STUDY_METHODS, STUDY_TASKS, TASKS,
                                    TXT_METHODS, UNIFORMITY, WEIGHT_EPOCHS, fresh_outputs, info_tree,  # noqa: F401
                                    make_params, per_dimension_weights, read_csv, run, study, study_brier,  # noqa: F401
                                    study_ece, study_value)


def rep_cells(tables, ds):
    return {(r["row"], r["quantity"], r["task"]): r for r in read_csv(tables / f"{ds}_representation.csv")}


# ----------------------------------------------------------------------------- representation

def test_representation_table_for_every_dataset(info_tree, tmp_path):
    main = {**fresh_outputs(info_tree, tmp_path), "params": make_params(), "study": "main"}
    run(main)
    seed_spread = math.sqrt(2 / 3)  # np.std of (-1, 0, +1)
    for ds, methods, tables in (("reg", METHODS, main["tables"]), ("cls", METHODS, main["tables"]),
                                ("txt", TXT_METHODS, info_tree["tables"])):
        cell = rep_cells(tables, ds)
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
    best = {(m, metric, t) for (m, metric, t), r in rep_cells(main["tables"], "cls").items() if r["best"] == "True"}
    assert best == {("bayesagg", "uniformity", ""), ("bayesagg", "ari_pct", "t1"), ("bayesagg", "ari_pct", "t2")}
    md = (info_tree["tables"] / "txt_representation.md").read_text()
    assert "| Method | Uni. ↓ | sent ARI (%) ↑ |" in md and "Table 5" in md


# ----------------------------------------------------------------------------------- calibration

def test_calibration_table_values_and_best(study):
    rows = read_csv(study["tables"] / "digits-mtl_calibration.csv")
    assert list(dict.fromkeys(r["row"] for r in rows)) == STUDY_METHODS  # the study's order
    cell = {(r["row"], r["quantity"]): r for r in rows}
    n_tasks = len(STUDY_TASKS["digits-mtl"])
    for m in STUDY_METHODS:
        ece = np.array([np.mean([study_ece(m, s, k) for k in range(n_tasks)]) for s in SEEDS])
        brier = np.array([np.mean([study_brier(m, s, k) for k in range(n_tasks)]) for s in SEEDS])
        acc = np.array([np.mean([study_value("digits-mtl", m, s, t) for t in STUDY_TASKS["digits-mtl"]])
                        for s in SEEDS])
        for metric, expected in (("ece", ece), ("brier", brier), ("accuracy", acc)):
            assert float(cell[(m, metric)]["mean"]) == pytest.approx(expected.mean(), rel=1e-12)
            assert float(cell[(m, metric)]["std"]) == pytest.approx(expected.std(ddof=0), rel=1e-9, abs=1e-15)
            assert int(cell[(m, metric)]["n"]) == 3 and int(cell[(m, metric)]["n_tasks"]) == n_tasks
    # lower is better; the two columns have different winners; accuracy is never marked
    best = {(r["row"], r["quantity"]) for r in rows if r["best"] == "True"}
    assert best == {("bayesagg", "ece"), ("nash_mtl", "brier")}
    md = (study["tables"] / "digits-mtl_calibration.md").read_text()
    bayes = next(line for line in md.splitlines() if line.startswith("| bayesagg"))
    assert bayes.count("**") == 2 and "15 bins" in md and "lower is better" in md.lower()
    tex = (study["tables"] / "digits-mtl_calibration.tex").read_text()
    assert tex.count(r"\textbf{") == 2 and r"\bottomrule" in tex


def test_no_calibration_table_for_regression_dataset(study):
    assert not list(study["tables"].glob("qm9_calibration*"))
    assert (study["tables"] / "qm9_main.csv").exists()
    outputs = report.study_outputs(study["params"], P.study(study["params"], "bayesagg"), study["tables"],
                                   study["figures"], study["summary"],
                                   task_kinds={ds: [v[0] for v in t.values()] for ds, t in STUDY_TASKS.items()})
    names = {p.name for p in outputs}
    assert {"digits-mtl_calibration.md", "digits-mtl_calibration.tex", "digits-mtl_calibration.csv",
            "published_comparison.md", "published_comparison.csv"} <= names
    assert not any(n.startswith("qm9_calibration") for n in names)
    for path in outputs:
        assert path.exists() and path.with_name(path.name + ".provenance.json").exists(), path


# ---------------------------------------------------------------------------------- task weights

def test_weight_heatmaps_only_for_per_dimension_logs(study):
    from PIL import Image

    figures = study["figures"]
    for ds in ("qm9", "digits-mtl"):
        path = figures / f"{ds}_bayesagg_weights.png"
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, path
        assert path.with_name(path.name + ".provenance.json").exists()
        with Image.open(path) as image:
            image.verify()  # a complete, decodable PNG
        # only BayesAgg-MTL logs per-dimension weights
        heatmaps = [p.name for p in figures.glob(f"{ds}_*_weights.png") if p.name != f"{ds}_task_weights.png"]
        assert heatmaps == [f"{ds}_bayesagg_weights.png"]
        assert (figures / f"{ds}_training.png").read_bytes()[:8] == PNG_SIGNATURE
    sidecar = json.loads((figures / "qm9_bayesagg_weights.png.provenance.json").read_text())
    assert list(sidecar["inputs"]) == [str(log_path(study["logs"], "qm9", "bayesagg", SEEDS[0]))]
    training = json.loads((figures / "qm9_training.png.provenance.json").read_text())
    assert sorted(training["inputs"]) == sorted(str(log_path(study["logs"], "qm9", m, s))
                                                for m in STUDY_METHODS for s in SEEDS)


def test_weight_panels_average_the_probe_examples(study):
    log = load_log(log_path(study["logs"], "digits-mtl", "bayesagg", 0), dataset="digits-mtl",
                   method="bayesagg", seed=0)
    panels = weights.per_dimension_panels(log)
    assert panels.epochs == WEIGHT_EPOCHS and panels.tasks == list(STUDY_TASKS["digits-mtl"])
    for epoch, w in zip(panels.epochs, panels.weights):
        raw = np.array(per_dimension_weights("digits-mtl", 0, epoch))
        assert w.shape == (3, N_DIMS)
        np.testing.assert_allclose(w, raw.mean(axis=1), rtol=0, atol=1e-15)
        np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-12)  # the average keeps alpha's normalisation
    assert weights.per_dimension_panels(load_log(log_path(study["logs"], "qm9", "nash_mtl", 0))) is None


def test_task_weights_figure_has_flat_per_task_methods(study):
    for ds in ("qm9", "digits-mtl"):
        data = (study["figures"] / f"{ds}_task_weights.png").read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    logs = {m: [load_log(log_path(study["logs"], "qm9", m, s)) for s in SEEDS] for m in STUDY_METHODS}
    figures = weights.weight_figures("qm9", SEEDS[0], logs)
    assert [name for name, _, _ in figures] == ["qm9_bayesagg_weights.png", "qm9_task_weights.png"]
    series = {m: weights.per_task_series(logs[m][0]) for m in STUDY_METHODS}
    assert [m for m, v in series.items() if v is not None] == ["ls", "nash_mtl"]  # gls's [K][2]: skipped
    epochs, w = series["nash_mtl"]
    assert epochs == WEIGHT_EPOCHS and w.shape == (3, 2)
    assert w[1].tolist() == pytest.approx([1.0 + 0.1 * j + 0.1 for j in range(2)])
    # no figure when no method logs flat per-task weights
    only = {m: logs[m] for m in ("stl", "gls", "bayesagg")}
    assert [n for n, _, _ in weights.weight_figures("qm9", SEEDS[0], only)] == ["qm9_bayesagg_weights.png"]


# --------------------------------------------------------------------------- published comparison

def expected_ranks(values, higher_is_better):
    """Competition ranks by sorting (1 = best, ties share the best rank)."""
    ordered = sorted(values.values(), reverse=higher_is_better)
    return {m: ordered.index(v) + 1 for m, v in values.items()}


def test_published_comparison_rows_and_ranks(study):
    rows = read_csv(study["tables"] / "published_comparison.csv")
    for ds, key, hib in (("qm9", "bayesagg_qm9_delta_m", False),
                         ("digits-mtl", "bayesagg_cifar_mtl_accuracy", True)):
        table = published.TABLES[key]
        mine = [r for r in rows if r["our_dataset"] == ds and r["published_source"] == table.source]
        methods = [r["method"] for r in mine]
        # the study's order first, then the paper's other methods in its table order
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
    qm9 = {r["method"]: r for r in rows if r["our_dataset"] == "qm9"
           and r["published_source"] == published.TABLES["bayesagg_qm9_delta_m"].source}
    # ours: Delta_m mean +- std over seeds, as in the main table
    stl = {t: np.mean([study_value("qm9", "stl", q, t) for q in SEEDS]) for t in STUDY_TASKS["qm9"]}
    exp = [100 * np.mean([(study_value("qm9", "ls", s, t) - stl[t]) / stl[t] for t in STUDY_TASKS["qm9"]])
           for s in SEEDS]
    assert float(qm9["ls"]["ours_mean"]) == pytest.approx(np.mean(exp), rel=1e-9)
    assert float(qm9["ls"]["ours_std"]) == pytest.approx(np.std(exp), rel=1e-6)
    assert [m for m in STUDY_METHODS if int(qm9[m]["ours_rank"]) == 1] == ["bayesagg"]
    assert int(qm9["ls"]["published_rank"]) == 13 and int(qm9["bayesagg"]["published_rank"]) == 2
    assert qm9["stl"]["published_by_definition"] == "True" and float(qm9["stl"]["published_value"]) == 0.0
    cifar = {r["method"]: r for r in rows if r["our_dataset"] == "digits-mtl"
             and r["published_source"] == published.TABLES["bayesagg_cifar_mtl_accuracy"].source}
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
    heads = [s.split("\n", 1)[0] for s in sections]
    # qm9: Tables 1 and 5 (the deep ensembles); digits-mtl: CIFAR-MTL's Table 2; then each one's
    # run-time section (Table 4) where the logs record the training time
    timed = sum("Table 4" in h for h in heads)
    assert [h.split(" ", 1)[0] for h in heads if "Table 4" not in h] == ["qm9", "qm9", "digits-mtl"]
    assert "Table 5" in heads[1] and timed == 2 and "relative to LS" in sections[heads.index(next(h for h in heads if "Table 4" in h))]
    qm9, digits = sections[0], [s for s, h in zip(sections, heads) if h.startswith("digits-mtl") and "Table 2" in h][0]
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


def test_no_published_comparison_without_counterpart(info_tree):
    # reg, cls and txt have no published counterpart, and neither is a dataset the papers have none for
    for name in ("main", "info"):
        st = P.study(info_tree["params"], name)
        assert not [p for p in report.study_outputs(info_tree["params"], st, info_tree["tables"],
                                                    info_tree["figures"], info_tree["summary"])
                    if p.name.startswith("published_comparison")]
    assert not list(info_tree["tables"].glob("published_comparison*"))
    assert "reg" not in published.counterparts("bayesagg") and "qm9" in published.counterparts("bayesagg")


def test_unknown_published_key_is_a_clear_error(study, tmp_path):
    params = json.loads(json.dumps(study["params"]))
    params["studies"]["bayesagg"]["published"] = "nope"
    d = {**fresh_outputs(study, tmp_path), "params": params}
    with pytest.raises(MTLReproError, match="studies.bayesagg.published is 'nope'.*known: bayesagg, infomtl"):
        run(d)
    assert not d["tables"].exists() and not d["summary"].exists()
