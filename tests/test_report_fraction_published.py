"""InfoMTL's Table 6 (Avg. and Delta_p per fraction of the training data, RoBERTa on TweetEval) set
beside a study's data-fraction runs in published_comparison.{md,csv}, from a synthetic tweeteval
study (and a rotten-tomatoes dataset, which has no counterpart): our numbers computed here from the
closed-form metrics, the paper's from published.TABLES.  No existing output changes: the golden
files (tests/test_report_golden.py) are untouched."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtlrepro import published
from mtlrepro.report.loader import eval_path
from tests.report_synthetic import (SEEDS, build_references, dump, fresh_outputs, outputs, read_csv,
                                    representation, run, shared_ablations)

# TweetEval-like tasks (all higher is better, each its own official metric) and rotten-tomatoes'.
TASKS = {"tweeteval": {"emotion": ("multiclass", "macro_f1"), "irony": ("binary", "f1"),
                       "sentiment": ("multiclass", "macro_recall")},
         "rotten-tomatoes": {"review_vs_plot": ("binary", "accuracy"), "fresh_vs_rotten": ("binary", "accuracy")}}
METHODS = ["stl", "ls", "mt_vib", "infomtl"]      # the study's order; mt_vib at 100 % only
DF_METHODS = ["ls", "infomtl"]
FRACTIONS = [20, 40, 50]                           # 20, 40: the paper has them; 50: ours only
PAPER_FRACTIONS = [20, 40, 60, 80]                 # 60, 80: the paper's only
BASE = {"stl": 0.55, "ls": 0.60, "mt_vib": 0.62, "infomtl": 0.65}
SLOPE = {"stl": 0.4, "ls": 0.4, "mt_vib": 0.4, "infomtl": 0.25}  # infomtl loses less with less data


def value(method, fraction, seed, k):
    """Task k's primary score: falls with the fraction; the seeds spread tasks 0 and 1."""
    spread = {0: 1 + 0.01 * (seed - 1), 1: 1 - 0.02 * (seed - 1)}.get(k, 1.0)
    return BASE[method] * (1 - SLOPE[method] * (100 - fraction) / 100) * (1 + 0.05 * k) * spread


def eval_doc(ds, method, fraction, seed):
    tasks = {}
    for k, (task, (kind, primary)) in enumerate(TASKS[ds].items()):
        v = value(method, fraction, seed, k)
        tasks[task] = {"kind": kind, "primary": primary, "higher_is_better": True,
                       "metrics": {primary: v, "accuracy": v, "ece": 0.01, "brier": 0.02}}
    return {"dataset": ds, "method": method, "seed": seed, "fraction": fraction, "tasks": tasks,
            "task_order": list(TASKS[ds]),
            "representation": representation({t: spec for t, spec in TASKS[ds].items()}, method, seed)}


def params(fractions=FRACTIONS, split=None, baseline="ls"):
    block = {"datasets": ["tweeteval", "rotten-tomatoes"], "methods": list(METHODS), "pretrain": False,
             "published": "infomtl", "ablations": {}}
    if baseline:
        block["baseline"] = baseline
    if fractions:
        block["ablations"]["data_fraction"] = {"fractions": list(fractions), "methods": list(DF_METHODS)}
    return {"seeds": list(SEEDS), "ablations": shared_ablations(), "studies": {"info": block},
            "dataset": {"tweeteval": {"source": {"kind": "path"},
                                      "split": split or {"train": 1200, "val": 300, "test": 600}},
                        "rotten-tomatoes": {"source": {"kind": "embedded"}, "split": {"val": 0.1, "test": 0.2}}}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tweeteval")
    d = {"params": params(), "study": "info", "eval": root / "eval", "rob": root / "robustness",
         "ref": root / "reference", "logs": None, **outputs(root)}
    for ds in TASKS:
        for s in SEEDS:
            for m in METHODS:
                dump(eval_path(d["eval"], ds, m, 100, s), eval_doc(ds, m, 100, s))
            for m in DF_METHODS:
                for f in FRACTIONS:
                    dump(eval_path(d["eval"], ds, m, f, s), eval_doc(ds, m, f, s))
    build_references(d, TASKS)
    run(d)
    return d


# ----------------------------------------------------------------- ours, computed independently

def our_avg_pct(method, fraction):
    """Per seed: 100 x the mean over the tasks of their primary scores."""
    n = len(TASKS["tweeteval"])
    return np.array([100 * np.mean([value(method, fraction, s, k) for k in range(n)]) for s in SEEDS])


def our_delta_p(method, fraction):
    """Per seed: InfoMTL's Delta_p against EW's (ls) seed mean per task at the same fraction."""
    n = len(TASKS["tweeteval"])
    ew = [np.mean([value("ls", fraction, s, k) for s in SEEDS]) for k in range(n)]
    return np.array([100 * np.mean([(value(method, fraction, s, k) - ew[k]) / ew[k] for k in range(n)])
                     for s in SEEDS])


OURS = {"avg_primary_pct": our_avg_pct, "delta_p": our_delta_p}
TABLE6 = {"avg_primary_pct": "infomtl_tweeteval_avg_{f}pct", "delta_p": "infomtl_tweeteval_delta_p_{f}pct"}


def ranks(values):
    """Competition ranks, higher is better (1 = best, ties share the best rank)."""
    ordered = sorted(values.values(), reverse=True)
    return {m: ordered.index(v) + 1 for m, v in values.items()}


def table6_rows(tables: Path):
    source = published.TABLES["infomtl_tweeteval_avg_20pct"].source
    return [r for r in read_csv(tables / "published_comparison.csv") if r["published_source"] == source]


def section(md: str, head: str) -> str:
    (found,) = [s for s in md.split("\n## ") if s.startswith(head)]
    return found


# ---------------------------------------------------------------------------------------- tests

def test_the_counterpart_names_table6_per_fraction():
    cp = published.counterparts("infomtl")["tweeteval"]
    assert sorted(cp.fraction_tables) == PAPER_FRACTIONS
    for f, by_quantity in cp.fraction_tables.items():
        assert dict(by_quantity) == {q: k.format(f=f) for q, k in TABLE6.items()}
        assert all(published.TABLES[k].table == "Table 6" for k in by_quantity.values())
    assert not any(cp.fraction_tables for cps in published.STUDIES.values() for ds, cp in cps.items()
                   if ds != "tweeteval")


def test_csv_table6_rows_beside_our_fraction_runs(tree):
    rows = table6_rows(tree["tables"])
    assert {r["our_dataset"] for r in rows} == {"tweeteval"}  # rotten-tomatoes has no counterpart
    paper = list(published.TABLES["infomtl_tweeteval_avg_20pct"].entries)  # ls, uw, pcgrad, mt_vib, hmtl, infomtl
    for f in PAPER_FRACTIONS:
        for q, key in TABLE6.items():
            table = published.TABLES[key.format(f=f)]
            mine = [r for r in rows if r["published_metric"] == table.metric]
            # ours (the data-fraction methods, study order) first, then the paper's others in its order
            assert [r["method"] for r in mine] == DF_METHODS + [m for m in paper if m not in DF_METHODS]
            by = {r["method"]: r for r in mine}
            pub = {m: e.value for m, e in table.entries.items()}
            for m, rank in ranks(pub).items():
                assert float(by[m]["published_value"]) == pub[m] and int(by[m]["published_rank"]) == rank
                assert by[m]["paper_method"] == table.entries[m].label
            assert by["ls"]["published_by_definition"] == str(q == "delta_p")  # EW's Delta_p: 0 by definition
            assert all(f"at {f}% of our training split" in r["our_metric"] for r in mine)
            if f not in FRACTIONS:  # the paper's only: no numbers of ours
                assert all(r["ours_mean"] == "" and r["ours_rank"] == "" for r in mine)
                continue
            expected = {m: OURS[q](m, f) for m in DF_METHODS}
            for m, per_seed in expected.items():
                assert float(by[m]["ours_mean"]) == pytest.approx(per_seed.mean(), rel=1e-9, abs=1e-12)
                assert float(by[m]["ours_std"]) == pytest.approx(per_seed.std(ddof=0), rel=1e-6, abs=1e-12)
                assert int(by[m]["ours_n_seeds"]) == len(SEEDS)
            for m, rank in ranks({m: v.mean() for m, v in expected.items()}).items():
                assert int(by[m]["ours_rank"]) == rank
            assert float(by["ls"]["ours_mean"]) == (0.0 if q == "delta_p" else pytest.approx(
                expected["ls"].mean()))
            assert all(r["ours_mean"] == "" for r in mine if r["method"] not in DF_METHODS)
    # 50 % is ours only: no Table 6 row; every row is one of the 4 fractions x 2 quantities x 6 methods
    assert len(rows) == len(PAPER_FRACTIONS) * len(TABLE6) * len(paper)
    # our fraction numbers by hand at 20 %: infomtl's Avg. and its Delta_p over EW
    n20 = (1 - 0.25 * 0.8) / (1 - 0.4 * 0.8)  # infomtl's and EW's data factors at 20 %
    dp20 = published.TABLES["infomtl_tweeteval_delta_p_20pct"].metric
    by20 = {r["method"]: r for r in rows if r["published_metric"] == dp20}
    assert float(by20["infomtl"]["ours_mean"]) == pytest.approx(100 * (0.65 / 0.60 * n20 - 1), rel=1e-9)


def test_markdown_table6_section(tree):
    md = (tree["tables"] / "published_comparison.md").read_text()
    heads = [s.split("\n", 1)[0] for s in md.split("\n## ")[1:]]
    # Tables 1 and 4 as before, then Table 6 beside the fraction runs, then rotten-tomatoes' note
    assert [h.rsplit(", ", 1)[-1] for h in heads[:4]] == ["Table 1)", "Table 1)", "Table 4)", "Table 4)"]
    assert heads[4] == ("tweeteval ↔ TweetEval (6 tasks), on fractions of the training data "
                        f"({published.TABLES['infomtl_tweeteval_avg_20pct'].source})")
    assert heads[5:] == ["rotten-tomatoes: no published counterpart"] and sum("Table 6" in h for h in heads) == 1
    t6 = section(md, "tweeteval ↔ TweetEval (6 tasks), on fractions")
    caption = t6.split("\n")[2]
    assert caption.startswith("*Published, at the paper's scale: Hu et al.") and "45,389" in caption  # full splits
    assert "RoBERTa backbone, p% of the training data" in caption
    assert "Ours, at our run's scale: tweeteval" in caption and "split train 1,200, val 300, test 600" in caption
    assert "not comparable" in caption and "within a fraction" in caption and "Δp% vs EW (ls)" in caption
    assert t6.split("\n")[4] == (
        "Fractions: the paper's 20%, 40%, 60%, 80%; ours 20%, 40%, 50% (and 100%, the main runs, set beside "
        "Table 1 above); on both sides: 20%, 40%. Ours only: 50%, which the paper has no table for (our "
        "numbers are in tweeteval_data_fraction.md). Methods: the paper's ls (EW), uw (UW), pcgrad (PCGrad), "
        "mt_vib (MT-VIB), hmtl (Hierarchical MTL), infomtl (InfoMTL); ours ls, infomtl; on both sides: "
        "ls (EW), infomtl (InfoMTL).")
    assert "| Data / Method | Published Avg. (%) ↑ | Rank | Ours Avg. (%) ↑ | Rank | Published Δp% ↑ | Rank | " \
           "Ours Δp% ↑ | Rank |" in t6
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
             for r in t6.splitlines() if r.startswith("| ") and not r.startswith("| Data")}
    assert list(cells)[:6] == ["20% ls (EW)", "20% infomtl (InfoMTL)", "20% uw (UW)", "20% pcgrad (PCGrad)",
                               "20% mt_vib (MT-VIB)", "20% hmtl (Hierarchical MTL)"]
    assert len(cells) == 6 * len(PAPER_FRACTIONS) and not any(k.startswith("50%") for k in cells)
    for f in FRACTIONS[:2]:
        avg, dp = (published.TABLES[k.format(f=f)] for k in TABLE6.values())
        pub_rank = {q: ranks({m: e.value for m, e in published.TABLES[k.format(f=f)].entries.items()})
                    for q, k in TABLE6.items()}
        our_rank = {q: ranks({m: OURS[q](m, f).mean() for m in DF_METHODS}) for q in OURS}
        for m in DF_METHODS:
            a, d = our_avg_pct(m, f), our_delta_p(m, f)
            row = cells[f"{f}% {m} ({avg.entries[m].label})"]
            assert row == [f"{avg.entries[m].value:.2f}", str(pub_rank["avg_primary_pct"][m]),
                           f"{a.mean():.2f} ± {a.std():.2f}", str(our_rank["avg_primary_pct"][m]),
                           "0.00 (by definition)" if m == "ls" else f"{dp.entries[m].value:.2f}",
                           str(pub_rank["delta_p"][m]),
                           f"{0.0 if m == 'ls' else d.mean():.2f} ± {d.std():.2f}",  # EW's mean: exactly 0
                           str(our_rank["delta_p"][m])], (f, m)
    assert cells["20% infomtl (InfoMTL)"][0] == "64.83" and cells["20% infomtl (InfoMTL)"][4] == "4.07"
    # 60 %: InfoMTL 66.71 > EW 66.38 > MT-VIB 66.31 (Avg.); InfoMTL 0.50, MT-VIB 0.04, EW 0 (Δp)
    assert cells["60% ls (EW)"] == ["66.38", "2", "—", "—", "0.00 (by definition)", "3", "—", "—"]
    assert cells["40% uw (UW)"][2:4] == ["—", "—"] and cells["40% uw (UW)"][0] == "64.35"
    assert "Spearman rank correlation between the published and our column, per fraction" in t6
    assert "20%: Avg. (%) n/a (2 methods), Δp% n/a (2 methods); 40%:" in t6
    assert "(n/a: fewer than 3 methods or no spread)." in t6
    # rotten-tomatoes: only what the report already said
    reason = published.without_counterpart("infomtl")["rotten-tomatoes"]
    assert section(md, "rotten-tomatoes") == f"rotten-tomatoes: no published counterpart\n\n*{reason}.*\n"


def test_without_the_ablation_nothing_else_changes(tree, tmp_path):
    """The same study without its data-fraction ablation: no Table 6 section and no Table 6 rows;
    everything else the same bytes."""
    d = {**fresh_outputs(tree, tmp_path), "params": params(fractions=())}
    run(d)
    md_with = (tree["tables"] / "published_comparison.md").read_text()
    md_without = (d["tables"] / "published_comparison.md").read_text()
    t6 = "\n## " + section(md_with, "tweeteval ↔ TweetEval (6 tasks), on fractions")
    assert t6 in md_with and "on fractions of the training data" not in md_without
    assert md_with.replace(t6, "") == md_without
    source = published.TABLES["infomtl_tweeteval_avg_20pct"].source
    csv_with = read_csv(tree["tables"] / "published_comparison.csv")
    csv_without = read_csv(d["tables"] / "published_comparison.csv")
    assert [r for r in csv_with if r["published_source"] != source] == csv_without


def test_at_the_paper_scale_and_without_a_baseline(tree, tmp_path):
    """With the paper's split (TweetEval's official splits, uncapped) the caption says our runs are
    at the published sizes; a study without a Delta_p baseline has no Delta_p of ours beside the
    paper's (its Avg. still is)."""
    d = {**fresh_outputs(tree, tmp_path / "paper"), "params": params(split={"train": None, "val": None, "test": None})}
    run(d)
    caption = section((d["tables"] / "published_comparison.md").read_text(),
                      "tweeteval ↔ TweetEval (6 tasks), on fractions").split("\n")[2]
    assert "the published split's sizes, TweetEval's official splits, uncapped" in caption
    assert "Absolute numbers are comparable up to" in caption and "not comparable" not in caption
    d = {**fresh_outputs(tree, tmp_path / "nobase"), "params": params(baseline=None)}
    run(d)
    rows = table6_rows(d["tables"])
    dp20 = [r for r in rows if r["published_metric"] == published.TABLES["infomtl_tweeteval_delta_p_20pct"].metric]
    avg20 = {r["method"]: r for r in rows
             if r["published_metric"] == published.TABLES["infomtl_tweeteval_avg_20pct"].metric}
    assert dp20 and all(r["ours_mean"] == "" for r in dp20)
    assert float(avg20["infomtl"]["ours_mean"]) == pytest.approx(our_avg_pct("infomtl", 20).mean(), rel=1e-9)
    assert "none: the study has no Δp baseline" in (d["tables"] / "published_comparison.md").read_text()
