"""The papers' headline numbers in mtlrepro.published against the papers' text."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtlrepro import published
from mtlrepro.published import INFOMTL_NAMES, PAPER_NAMES, PAPERS, STUDIES, TABLES

REPO = Path(__file__).resolve().parents[1]
# the plain-text copies of the papers (shared/seeds/ beside or inside the checkout)
SEEDS_DIRS = [REPO / "shared" / "seeds", REPO.parent / "shared" / "seeds"]


def paper_lines(paper: str) -> list[str]:
    for folder in SEEDS_DIRS:
        path = folder / PAPERS[paper].seed_file
        if path.exists():
            return path.read_text(encoding="utf-8").splitlines()
    pytest.skip(f"the paper text {PAPERS[paper].seed_file} is not available here")


def std_texts(std: float) -> list[str]:
    """How a std may be printed: '3.4', '2.0', '0.3', '.06' ..."""
    out = set()
    for d in range(0, 4):
        text = f"{std:.{d}f}"
        if float(text) == std:
            out |= {text, text[1:] if text.startswith("0.") else text}
    return sorted(out, key=len, reverse=True)


def row_matches(line: str, entry: published.Entry, decimals: int) -> bool:
    """The extraction prints each cell three times: compact ('177.6±3.4'), then 'plus-or-minus'
    with the digits run together ('177.63.4'), then LaTeX ('177.6\\pm 3.4', '~{}-8.23\\pm 1.8',
    '\\mathbf{-14.96\\pm 0.1}': the only copy that keeps a minus sign); the row starts with the
    paper's method name."""
    if not line.startswith(entry.label):
        return False
    value = f"{entry.value:.{decimals}f}"
    a = re.escape(value.lstrip("-"))
    stds = "|".join(re.escape(s) for s in std_texts(entry.std))
    sign = r"-\s*" if value.startswith("-") else ""
    pad = r"(?:~\{\}|\s)*"
    pattern = (rf"{a}±(?P<s>{stds})plus-or-minus{a}(?P=s){pad}(?:\\mathbf\{{)?{pad}{sign}{a}"
               rf"\\pm\s*(?P=s)")
    return re.search(pattern, line) is not None


def check_block(lines: list[str], table: published.PublishedTable) -> None:
    """Every printed entry of `table` is a row of the paper, and the rows are consecutive lines in
    the order of `table.entries` (the paper's table order)."""
    entries = [e for e in table.entries.values() if not e.by_definition]
    starts = [i for i, line in enumerate(lines) if row_matches(line, entries[0], table.decimals)]
    assert starts, f"{table.key}: no row for {entries[0].label} {entries[0].value}"
    for start in starts:
        if all(start + j < len(lines) and row_matches(lines[start + j], e, table.decimals)
               for j, e in enumerate(entries)):
            return
    bad = [e.label for e in entries if not any(row_matches(line, e, table.decimals) for line in lines)]
    pytest.fail(f"{table.key}: rows not found as one block in the paper text; missing rows: {bad}")


# --------------------------------------------------------------------------- hard-coded checks

def test_qm9_headline_numbers():
    """Read off the paper's Table 1 (and the seed folder's README)."""
    qm9 = TABLES["bayesagg_qm9_delta_m"]
    expected = {"bayesagg": (53.2, 7.1), "ls": (177.6, 3.4), "nash_mtl": (62.0, 1.4), "imtl_g": (77.2, 9.3),
                "uw": (108.0, 22.5), "si": (77.8, 9.2), "rlw": (203.8, 3.4), "dwa": (175.3, 6.3),
                "mgda": (120.5, 2.0), "pcgrad": (125.7, 10.3), "cagrad": (112.8, 4.0), "igbv2": (67.7, 8.1),
                "aligned_mtl": (71.0, 9.6)}
    for method, (value, std) in expected.items():
        assert (qm9.entries[method].value, qm9.entries[method].std) == (value, std), method
    assert qm9.entries["stl"].value == 0.0 and qm9.entries["stl"].by_definition
    assert not qm9.higher_is_better and qm9.table == "Table 1" and qm9.dataset == "QM9"
    assert "Achituve" in qm9.source and "Table 1" in qm9.source
    # the paper's headline: BayesAgg-MTL best of the MTL methods
    assert min((e.value, m) for m, e in qm9.entries.items() if m != "stl")[1] == "bayesagg"


def test_cifar_and_runtime_headline_numbers():
    cifar = TABLES["bayesagg_cifar_mtl_accuracy"]
    assert cifar.entries["bayesagg"].value == 59.97 and cifar.entries["bayesagg"].std == 0.4
    assert cifar.entries["ls"].value == 56.96 and cifar.entries["rlw"].value == 59.30
    assert cifar.higher_is_better and "stl" not in cifar.entries
    cx = TABLES["bayesagg_chestxray14_delta_m"]
    assert cx.entries["bayesagg"].value == -14.96 and cx.entries["igbv2"].value == -2.82
    top_c, top_q = TABLES["bayesagg_runtime_cifar_mtl_parameters"], TABLES["bayesagg_runtime_qm9_parameters"]
    rep_c, rep_q = (TABLES["bayesagg_runtime_cifar_mtl_representation"],
                    TABLES["bayesagg_runtime_qm9_representation"])
    assert (top_c.entries["ls"].value, top_q.entries["ls"].value) == (1.551, 3.932)
    assert (top_c.entries["nash_mtl"].value, top_q.entries["nash_mtl"].value) == (22.47, 45.32)
    assert (rep_c.entries["bayesagg"].value, rep_q.entries["bayesagg"].value) == (5.558, 4.177)
    assert rep_c.entries["mgda"].label == "MGDA-UB" and "appendix C.2" in rep_c.table
    utk = TABLES["bayesagg_utkface_age"]
    assert utk.entries["bayesagg"].value == 1.35 and utk.entries["stl"].value == 1.40 and utk.seeds == 8
    assert TABLES["bayesagg_utkface_gender"].entries["stl"].value == 92.32
    assert TABLES["bayesagg_utkface_ethnicity"].entries["stl"].value == 82.42
    info = TABLES["infomtl_tweeteval_avg_roberta"]
    assert info.entries["infomtl"].value == 68.50 and info.entries["ls"].value == 66.17
    assert TABLES["infomtl_tweeteval_delta_p_20pct"].entries["infomtl"].value == 4.07


def test_tables_are_well_formed():
    for key, table in TABLES.items():
        assert table.key == key and table.paper in PAPERS and table.table.startswith("Table")
        assert table.entries, key
        assert table.data or key.startswith("bayesagg_runtime"), key  # the caption says what the paper ran on
        for method, entry in table.entries.items():
            assert entry.label, (key, method)
            if method in PAPER_NAMES and not table.key.startswith("bayesagg_runtime"):
                assert entry.label == PAPER_NAMES[method] or table.paper != "bayesagg", (key, method)
    for study, by_dataset in STUDIES.items():
        for ds, cp in by_dataset.items():
            assert cp.dataset == ds and cp.table in TABLES, study
            assert cp.ours in ("delta_m", "accuracy_pct", "avg_primary_pct"), study
    bayesagg = published.counterparts("bayesagg")
    assert list(bayesagg) == ["qm9", "cifar-mtl", "chestx-ray14", "utkface", "digits-mtl"]
    assert list(published.counterparts("infomtl")) == ["tweeteval"]
    # every benchmark of the paper is compared on its own data; only digits-mtl stands in for another
    assert [ds for ds, cp in bayesagg.items() if not cp.same_dataset] == ["digits-mtl"]
    assert bayesagg["qm9"].tables[1] == "bayesagg_ensembles_qm9_delta_m"
    assert bayesagg["utkface"].tables[1] == "bayesagg_ensembles_utkface_delta_m"
    # rotten-tomatoes is none of InfoMTL's data sets: its report says so instead of comparing
    assert list(published.without_counterpart("infomtl")) == ["rotten-tomatoes"]
    assert published.without_counterpart("bayesagg") == {}
    for study, by_dataset in STUDIES.items():
        for cp in by_dataset.values():
            assert all(TABLES[k].paper == TABLES[cp.table].paper for k in cp.tables), study
    assert bayesagg["qm9"].same_dataset and not bayesagg["digits-mtl"].same_dataset
    assert "reg" not in bayesagg
    with pytest.raises(KeyError, match="known: bayesagg, infomtl"):
        published.counterparts("nope")
    with pytest.raises(KeyError):
        published.table("nope")
    # InfoMTL's tables are keyed by the study's method names, labelled with the paper's names
    info = TABLES["infomtl_tweeteval_avg_roberta"].entries
    assert INFOMTL_NAMES["ls"] == info["ls"].label == "EW"
    for m in ("mt_vib", "vmtl", "hmtl", "infomtl"):
        assert info[m].label == INFOMTL_NAMES[m]
    ablation = TABLES["infomtl_tweeteval_ablation_avg_bert"].entries
    assert [ablation[m].label for m in ("infomtl_no_simax", "infomtl_no_timin")] == \
        [INFOMTL_NAMES["infomtl_no_simax"], INFOMTL_NAMES["infomtl_no_timin"]]


# -------------------------------------------------------------------------- against the paper text

@pytest.mark.parametrize("key", ["bayesagg_qm9_delta_m", "bayesagg_cifar_mtl_accuracy",
                                 "bayesagg_chestxray14_delta_m", "bayesagg_utkface_age",
                                 "bayesagg_utkface_gender", "bayesagg_utkface_ethnicity",
                                 "bayesagg_utkface_delta_m"])
def test_tables_match_the_paper_text(key):
    check_block(paper_lines("bayesagg"), TABLES[key])


def test_runtime_table_matches_the_paper_text():
    """Table 4's rows print each value four times: 'LS1.5511.5511.5511.5513.9323.9323.9323.932'."""
    lines = paper_lines("bayesagg")
    for level in ("parameters", "representation"):
        cifar, qm9 = (TABLES[f"bayesagg_runtime_{ds}_{level}"] for ds in ("cifar_mtl", "qm9"))
        assert list(cifar.entries) == list(qm9.entries)
        rows = [(cifar.entries[m].label, f"{cifar.entries[m].value:#.4g}" * 4 + f"{qm9.entries[m].value:#.4g}" * 4)
                for m in cifar.entries]
        start = lines.index("".join(rows[0]))
        for j, (label, numbers) in enumerate(rows):  # consecutive lines, in the table's order
            assert lines[start + j] in (label + numbers, label + " (Ours)" + numbers), (level, label)


def test_ensemble_table_matches_the_paper_text():
    """Table 5: one row per method with its QM9 and UTKFace cells; the extraction repeats the
    heads' and networks' counts ('Ensemble (1024102410241024 heads)')."""
    lines = paper_lines("bayesagg")
    qm9, utk = TABLES["bayesagg_ensembles_qm9_delta_m"], TABLES["bayesagg_ensembles_utkface_delta_m"]
    printed = {"ensemble_heads": "Ensemble (1024102410241024 heads)",
               "ensemble_networks": "Ensemble (10101010 networks)", "bayesagg": "BayesAgg-MTL (Ours)"}
    assert list(qm9.entries) == list(utk.entries) == list(printed)
    start = next(i for i, line in enumerate(lines) if line.startswith(printed["ensemble_heads"]))
    for j, (method, prefix) in enumerate(printed.items()):
        for table in (qm9, utk):
            entry = table.entries[method]
            assert row_matches(lines[start + j], published.Entry(prefix, entry.value, entry.std), table.decimals), \
                (table.key, method)
    # BayesAgg-MTL's row repeats its Tables 1 and 3
    assert qm9.entries["bayesagg"] == TABLES["bayesagg_qm9_delta_m"].entries["bayesagg"]
    assert utk.entries["bayesagg"] == TABLES["bayesagg_utkface_delta_m"].entries["bayesagg"]
    assert not row_matches(lines[start], published.Entry(printed["ensemble_heads"], 161.4, 13.2), 1)


def test_row_matcher_rejects_wrong_numbers():
    lines = paper_lines("bayesagg")
    right = TABLES["bayesagg_qm9_delta_m"].entries["ls"]
    assert any(row_matches(line, right, 1) for line in lines)
    for wrong in (published.Entry("LS", 177.5, 3.4), published.Entry("LS", 177.6, 3.5),
                  published.Entry("LS", -177.6, 3.4), published.Entry("SI", 177.6, 3.4)):
        assert not any(row_matches(line, wrong, 1) for line in lines), wrong
    # a negative Delta_m keeps its sign only in the LaTeX cell: a positive one must not match
    cx = TABLES["bayesagg_chestxray14_delta_m"].entries["ls"]
    assert any(row_matches(line, cx, 2) for line in lines)
    assert not any(row_matches(line, published.Entry("LS", 14.62, 0.2), 2) for line in lines)


INFOMTL_BACKBONES = ("bert", "roberta")
INFOMTL_FRACTIONS = (20, 40, 60, 80)


def delta_p_text(value: float) -> str:
    """How InfoMTL prints a Delta_p: '+1.75', '-0.09', '0.00' (EW)."""
    return "0.00" if value == 0 else f"{value:+.2f}"


def infomtl_row(avg: published.PublishedTable, delta_p: published.PublishedTable, method: str) -> str:
    return f"{avg.entries[method].value:.2f} {delta_p_text(delta_p.entries[method].value)}"


def test_infomtl_headline_numbers():
    """Read off InfoMTL's Tables 1, 4 and 6 (and the seed folder's README)."""
    r_avg, r_dp = TABLES["infomtl_tweeteval_avg_roberta"], TABLES["infomtl_tweeteval_delta_p_roberta"]
    b_avg, b_dp = TABLES["infomtl_tweeteval_avg_bert"], TABLES["infomtl_tweeteval_delta_p_bert"]
    assert (r_avg.entries["infomtl"].value, r_dp.entries["infomtl"].value) == (68.50, 3.97)
    assert (b_avg.entries["infomtl"].value, b_dp.entries["infomtl"].value) == (67.51, 3.70)
    assert (r_avg.entries["ls"].value, b_avg.entries["ls"].value) == (66.17, 65.62)
    assert b_dp.entries["dwa"].value == -0.09 and b_dp.entries["ls"].by_definition
    assert max(r_avg.entries, key=lambda m: r_avg.entries[m].value) == "infomtl"
    ablation = TABLES["infomtl_tweeteval_ablation_avg_roberta"]
    assert {m: e.value for m, e in ablation.entries.items()} == {
        "infomtl": 68.50, "infomtl_no_simax": 67.59, "infomtl_no_timin": 67.55, "ls": 66.17}
    assert TABLES["infomtl_tweeteval_ablation_delta_p_bert"].entries["infomtl_no_timin"].value == 2.59
    assert TABLES["infomtl_tweeteval_delta_p_20pct"].entries["infomtl"].value == 4.07
    assert TABLES["infomtl_tweeteval_avg_80pct"].entries["uw"].value == 66.93
    assert TABLES["infomtl_tweeteval_delta_p_40pct"].entries["hmtl"].value == -5.07
    for key in ("infomtl_tweeteval_avg_roberta", "infomtl_tweeteval_ablation_avg_bert", "infomtl_tweeteval_avg_60pct"):
        assert TABLES[key].higher_is_better and "45,389 / 2,000 / 11,906" in TABLES[key].data


def test_infomtl_table1_matches_the_paper_text():
    """'Method BERT-Avg BERT-Delta_p RoBERTa-Avg RoBERTa-Delta_p', one line per method, in the
    table's order between its header and its caption."""
    lines = paper_lines("infomtl")
    first = lines.index("Methods BERT backbone RoBERTa backbone")
    caption = next(i for i, line in enumerate(lines) if line.startswith("Table 1: "))
    tables = [TABLES[f"infomtl_tweeteval_{col}_{bb}"] for bb in INFOMTL_BACKBONES for col in ("avg", "delta_p")]
    assert all(list(t.entries) == list(tables[0].entries) for t in tables)
    at = first
    for method, entry in tables[0].entries.items():
        label = {"EW": "EW (baseline)", "InfoMTL": "InfoMTL (ours)"}.get(entry.label, entry.label)
        row = f"{label} {infomtl_row(tables[0], tables[1], method)} {infomtl_row(tables[2], tables[3], method)}"
        assert row in lines[at + 1:caption], row
        at = lines.index(row, at + 1)


def test_infomtl_table4_matches_the_paper_text():
    """The ablation's rows run together on the line before its caption."""
    lines = paper_lines("infomtl")
    caption = lines.index("Table 4: Ablation results (%) of our InfoMTL.")
    line = next(lines[i] for i in range(caption - 1, 0, -1) if lines[i].strip())
    tables = [TABLES[f"infomtl_tweeteval_ablation_{col}_{bb}"] for bb in INFOMTL_BACKBONES for col in ("avg", "delta_p")]
    rows = [f"{e.label} {infomtl_row(tables[0], tables[1], m)} {infomtl_row(tables[2], tables[3], m)}"
            for m, e in tables[0].entries.items()]
    pattern = r"\s+".join(re.escape(part) for row in rows for part in row.split())
    assert re.search(rf"↑\s+{pattern}$", line), rows  # after the header's last "Delta_p ↑"


def test_infomtl_table6_matches_the_paper_text():
    """'EW 20% 62.43 0.00', then '\\hdashlineUW 20% 61.78 -1.59' ...: consecutive lines per fraction."""
    lines = [line.removeprefix("\\hdashline") for line in paper_lines("infomtl")]
    for pct in INFOMTL_FRACTIONS:
        avg, dp = TABLES[f"infomtl_tweeteval_avg_{pct}pct"], TABLES[f"infomtl_tweeteval_delta_p_{pct}pct"]
        assert list(avg.entries) == list(dp.entries) and avg.table == dp.table == "Table 6"
        rows = [f"{e.label} {pct}% {infomtl_row(avg, dp, m)}" for m, e in avg.entries.items()]
        start = lines.index(rows[0])
        assert lines[start:start + len(rows)] == rows, pct


def test_infomtl_row_checks_reject_wrong_numbers():
    lines = paper_lines("infomtl")
    assert "SI 65.67 +0.06 67.16 +1.75" in lines
    assert "SI 65.67 +0.06 67.16 +1.76" not in lines and "SI 65.67 0.06 67.16 +1.75" not in lines
    assert delta_p_text(-0.09) == "-0.09" and delta_p_text(0.0) == "0.00" and delta_p_text(1.5) == "+1.50"


def test_runtime_table_is_set_beside_our_training_time_per_epoch_relative_to_ls():
    """Table 4 relative to LS (representation-level methods from its bottom block) beside our
    per-epoch training time over LS's, from the training logs (a warm start's LS epochs excluded)."""
    from mtlrepro import params as P
    from mtlrepro.report.comparison import comparisons

    study = P.Study("s", ("qm9",), ("stl", "ls", "mgda", "bayesagg"), (0, 1))
    cp = published.counterparts("bayesagg")["qm9"]

    def log(seconds, epochs, seed):
        return {"path": f"log{seed}.json", "wall_time_s": seconds, "history": [{}] * epochs}

    logs = {"stl": [log(99.0, 10, s) for s in (0, 1)], "ls": [log(20.0, 10, 0), log(30.0, 10, 1)],
            "mgda": [log(40.0, 10, 0), log(60.0, 10, 1)], "bayesagg": [log(15.0, 5, 0), log(15.0, 5, 1)]}
    evals = {m: [] for m in study.methods}
    runtime = comparisons(study, cp, evals, {}, logs)[-1]
    assert runtime.table.metric.startswith("time per batch relative to LS")
    assert runtime.ours["mgda"].values == pytest.approx([40 / 10 / 2.5, 60 / 10 / 2.5])  # LS: 2.5 s an epoch
    assert runtime.ours["bayesagg"].mean == pytest.approx(3.0 / 2.5)                   # its own 5 epochs
    assert "stl" not in runtime.ours
    top, bottom = TABLES["bayesagg_runtime_qm9_parameters"], TABLES["bayesagg_runtime_qm9_representation"]
    ls = top.entries["ls"].value
    assert runtime.published["mgda"].value == pytest.approx(bottom.entries["mgda"].value / ls)   # MGDA-UB
    assert runtime.published["pcgrad"].value == pytest.approx(top.entries["pcgrad"].value / ls)
    assert runtime.published["ls"].value == 1.0
    # without timed logs (older logs, or none read) there is no run-time section
    assert len(comparisons(study, cp, evals, {}, None)) == len(cp.tables)
