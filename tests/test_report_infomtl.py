"""A study with a Delta_p baseline (InfoMTL's, EW = ls): Avg., Delta_p over EW at the same
fraction and robust scores relative to EW's, by hand from the closed-form synthetic values."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mtlrepro import params as P
from mtlrepro import report
from tests.report_synthetic import (KINDS, SEEDS, STRENGTHS, TASKS, TXT_MEANS, TXT_METHODS, PNG_SIGNATURE,
                                    fresh_outputs, infomtl_params, info_tree, make_params, metric_value,  # noqa: F401
                                    perturbed, read_csv, run)


def hand_delta_p(values, ew):
    """InfoMTL's Delta_p for txt: sent (higher is better) counts +, err (lower is better) counts -."""
    return 100 * ((values[0] - ew[0]) / ew[0] - (values[1] - ew[1]) / ew[1]) / 2


def txt_seed_values(method, fraction):
    return [(metric_value("txt", method, fraction, s, "sent"), metric_value("txt", method, fraction, s, "err"))
            for s in SEEDS]


def test_main_table_avg_and_delta_p(info_tree):
    summary = json.loads(info_tree["summary"].read_text())
    assert list(summary) == ["txt"]  # the study's datasets only
    rows = read_csv(info_tree["tables"] / "txt_main.csv")
    assert list(dict.fromkeys(r["row"] for r in rows)) == TXT_METHODS  # the study's order
    assert list(dict.fromkeys(r["column"] for r in rows)) == ["sent (M-F1)", "err (MAE)", "Avg.", "Δp%", "Δm%"]
    cell = {(r["row"], r["column"]): r for r in rows}
    # by hand from TXT_MEANS (EW = ls: 0.80 and 1.0): infomtl +10 % on sent, 10 % lower error -> +10;
    # mt_vib -10 % on sent and a 50 % higher error (lower is better: counts -50) -> -30
    for method, expected in (("infomtl", 10.0), ("mt_vib", -30.0), ("stl", (-12.5 - 100.0) / 2)):
        assert float(cell[(method, "Δp%")]["mean"]) == pytest.approx(expected, rel=1e-9)
        assert summary["txt"][method]["delta_p"] == pytest.approx(expected, rel=1e-5)
    assert float(cell[("ls", "Δp%")]["mean"]) == 0.0 and summary["txt"]["ls"]["delta_p"] == 0.0
    assert cell[("ls", "Δp%")]["reference"] == "ls at 100% (seed mean)"
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


def test_data_fraction_against_ew_at_the_same_fraction(info_tree):
    rows = read_csv(info_tree["tables"] / "txt_data_fraction.csv")
    cell = {(r["quantity"], r["row"], int(r["fraction"])): r for r in rows}
    # the study's own fractions plus 100 (not the other study's 20 and 60); its methods in study order
    assert sorted({int(r["fraction"]) for r in rows}) == [40, 100]
    assert list(dict.fromkeys(r["row"] for r in rows)) == ["ls", "infomtl"]
    # at 40 % EW is (0.60, 2.0): +10 % on sent, 20 % lower error -> +15 (against EW at 100 % it would
    # be (-17.5 - 60) / 2 = -38.75)
    assert float(cell[("delta_p", "infomtl", 40)]["mean"]) == pytest.approx(15.0, rel=1e-9)
    assert float(cell[("delta_p", "infomtl", 100)]["mean"]) == pytest.approx(10.0, rel=1e-9)
    assert float(cell[("delta_p", "ls", 40)]["mean"]) == 0.0 and float(cell[("delta_p", "ls", 100)]["mean"]) == 0.0
    per_seed = [hand_delta_p(v, TXT_MEANS[("ls", 40)]) for v in txt_seed_values("infomtl", 40)]
    assert float(cell[("delta_p", "infomtl", 40)]["std"]) == pytest.approx(np.std(per_seed), rel=1e-9)
    assert cell[("delta_p", "infomtl", 40)]["reference"] == "ls at 40% (seed mean)"
    assert float(cell[("mean_score", "infomtl", 40)]["mean"]) == pytest.approx((0.66 + 1.6) / 2, rel=1e-12)
    assert cell[("delta_m", "infomtl", 40)]["reference"] == "txt.json"  # the 100 % reference
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


def test_robustness_relative_to_ew_at_the_same_strength(info_tree):
    rows = read_csv(info_tree["tables"] / "txt_robustness.csv")
    cell = {(r["row"], r["kind"], float(r["strength"]), r["quantity"]): r for r in rows}
    for kind in KINDS:
        for s in [0.0] + STRENGTHS:
            def robust(m):  # per seed, the mean over tasks of the perturbed primary metrics
                return [np.mean([perturbed("txt", m, seed, kind, s, t) for t in TASKS["txt"]]) for seed in SEEDS]
            ew = np.mean(robust("ls"))
            rel = [100 * (r - ew) / ew for r in robust("infomtl")]
            got = cell[("infomtl", kind, s, "relative_to_baseline_pct")]
            assert float(got["mean"]) == pytest.approx(np.mean(rel), rel=1e-9, abs=1e-12)
            assert float(got["std"]) == pytest.approx(np.std(rel), rel=1e-9)
            assert float(cell[("ls", kind, s, "relative_to_baseline_pct")]["mean"]) == 0.0
    # gaussian at 0.2 by hand: EW (k = 1.5) keeps 70 % of 0.80 and 130 % of 1.0 -> 0.93; infomtl
    # (k = 1) 0.704 and 1.08 -> 0.892: -4.086 %; at strength 0 it is (0.89 - 0.9) / 0.9 = -1.11 %
    assert float(cell[("infomtl", "gaussian", 0.2, "relative_to_baseline_pct")]["mean"]) == pytest.approx(
        100 * (0.892 - 0.93) / 0.93, rel=1e-9)
    assert float(cell[("infomtl", "gaussian", 0.0, "relative_to_baseline_pct")]["mean"]) == pytest.approx(
        100 * (0.89 - 0.9) / 0.9, rel=1e-9)
    md = (info_tree["tables"] / "txt_robustness.md").read_text()
    assert md.count("robust score vs EW (%)") == len(KINDS)


def test_robustness_without_ew_has_no_ew_column(info_tree, tmp_path):
    d = {**fresh_outputs(info_tree, tmp_path), "params": infomtl_params(rob_methods=("infomtl",))}
    run(d)
    rows = read_csv(d["tables"] / "txt_robustness.csv")
    assert {r["quantity"] for r in rows} == {"mean_score", "relative_drop_pct"}


def test_a_studys_outputs_do_not_depend_on_the_other_studies(info_tree, tmp_path):
    """The "main" study's report, with and without InfoMTL's study in params: the same bytes."""
    outs = {}
    for name, params in (("alone", make_params()), ("both", infomtl_params())):
        d = {**fresh_outputs(info_tree, tmp_path / name), "params": params, "study": "main"}
        outs[name] = (d, run(d))
    (alone, summary_alone), (both, summary_both) = outs["alone"], outs["both"]
    names = sorted(p.name for p in alone["tables"].iterdir() if not p.name.endswith(".provenance.json"))
    stems = {"reg": ("main", "data_fraction", "robustness", "representation"),
             "cls": ("main", "data_fraction", "robustness", "representation", "calibration")}
    assert names == sorted(f"{ds}_{stem}.{ext}" for ds in stems for stem in stems[ds] for ext in ("md", "tex", "csv"))
    for name in names:
        assert (alone["tables"] / name).read_bytes() == (both["tables"] / name).read_bytes(), name
    assert summary_alone == summary_both
    # the outputs listed are the ones written, for InfoMTL's study too
    info = P.study(info_tree["params"], "info")
    listed = report.study_outputs(info_tree["params"], info, info_tree["tables"], info_tree["figures"],
                                  info_tree["summary"], task_kinds={ds: [v[0] for v in t.values()]
                                                                    for ds, t in TASKS.items()})
    assert {p.name for p in listed} >= {f"txt_{stem}.{ext}" for stem in ("main", "data_fraction", "robustness",
                                                                          "representation", "calibration")
                                        for ext in ("md", "tex", "csv")}
    for path in listed:
        assert path.exists() and path.with_name(path.name + ".provenance.json").exists(), path
    written = {p for p in info_tree["tables"].iterdir() if not p.name.endswith(".provenance.json")}
    assert written == {p for p in listed if p.parent == info_tree["tables"]}


def test_tweeteval_is_set_beside_infomtl_tables_1_and_4_and_rotten_tomatoes_is_not():
    """Ours: the mean over tasks of each task's official score, in %; a section per published table
    (Table 1 RoBERTa and BERT, Table 4 RoBERTa and BERT), labelled with the paper's names."""
    from types import SimpleNamespace

    from mtlrepro.report import comparison as C
    from mtlrepro.report.table import Stat

    scores = {"ls": (0.60, 0.70), "infomtl": (0.66, 0.72), "infomtl_no_simax": (0.64, 0.70)}  # two tasks
    evals = {m: [{"path": f"{m}/seed{s}.json", "task_order": ["irony", "sentiment"],
                  "tasks": {"irony": {"primary": "f1", "metrics": {"f1": a + 0.01 * s}},
                            "sentiment": {"primary": "macro_recall", "metrics": {"macro_recall": b}}}}
                 for s in (0, 1)] for m, (a, b) in scores.items()}
    study = SimpleNamespace(name="infomtl", published="infomtl", datasets=["tweeteval", "rotten-tomatoes"],
                            methods=list(scores))
    cp = C.counterparts_of(study)["tweeteval"]
    comps = C.comparisons(study, cp, evals, {})
    assert [c.table.key for c in comps] == ["infomtl_tweeteval_avg_roberta", "infomtl_tweeteval_avg_bert",
                                            "infomtl_tweeteval_ablation_avg_roberta",
                                            "infomtl_tweeteval_ablation_avg_bert"]
    ours = comps[0].ours
    assert ours["infomtl"].mean == pytest.approx(100 * (0.665 + 0.72) / 2)
    assert isinstance(ours["ls"], Stat) and ours["ls"].n == 2
    assert comps[0].our_ranks == {"infomtl": 1, "infomtl_no_simax": 2, "ls": 3}
    assert comps[2].n_common == 3 and comps[2].spearman == pytest.approx(1.0)  # Table 4 has all three
    assert "infomtl_no_simax" not in comps[0].published  # not a row of Table 1
    params = {"dataset": {"tweeteval": {"source": {"kind": "path"}, "split": {"train": None, "val": None, "test": None}}}}
    md, csv, _ = C.comparison_files(params, comps, {}, C.uncompared_of(study))
    assert "| ls (EW) | 66.17 | " in md and "| ls (w/o SIMax & TIMin) | 66.17 | " in md
    assert "| infomtl_no_simax (w/o SIMax) | 67.59 | " in md
    assert "At the paper's data scale" in md and "TweetEval's official splits, uncapped" in md
    assert "split train all, val all, test all" in md and "no std printed" in md
    assert "## rotten-tomatoes: no published counterpart" in md and "not one of InfoMTL's data sets" in md
    assert csv.count("\n") == 1 + sum(len(c.rows) for c in comps) and "rotten-tomatoes" not in csv
