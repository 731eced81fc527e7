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
    assert info.entries["InfoMTL"].value == 68.50 and info.entries["ls"].value == 66.17
    assert TABLES["infomtl_tweeteval_delta_p_20pct"].entries["InfoMTL"].value == 4.07


def test_tables_are_well_formed():
    for key, table in TABLES.items():
        assert table.key == key and table.paper in PAPERS and table.table.startswith("Table")
        assert table.entries, key
        for method, entry in table.entries.items():
            assert entry.label, (key, method)
            if method in PAPER_NAMES and not table.key.startswith("bayesagg_runtime"):
                assert entry.label == PAPER_NAMES[method] or table.paper != "bayesagg", (key, method)
    for study, by_dataset in STUDIES.items():
        for ds, cp in by_dataset.items():
            assert cp.dataset == ds and cp.table in TABLES and cp.ours in ("delta_m", "accuracy_pct"), study
    bayesagg = published.counterparts("bayesagg")
    assert list(bayesagg) == ["qm9", "digits-mtl"] and published.counterparts("infomtl") == {}
    assert bayesagg["qm9"].same_dataset and not bayesagg["digits-mtl"].same_dataset
    assert "reg" not in bayesagg
    with pytest.raises(KeyError, match="known: bayesagg, infomtl"):
        published.counterparts("nope")
    with pytest.raises(KeyError):
        published.table("nope")
    # InfoMTL's names for the study's methods are the ones its tables print
    info = TABLES["infomtl_tweeteval_avg_roberta"].entries
    assert INFOMTL_NAMES["ls"] == info["ls"].label == "EW"
    assert {INFOMTL_NAMES[m] for m in ("mt_vib", "vmtl", "hmtl", "infomtl")} <= set(info)


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


def test_infomtl_table_matches_the_paper_text():
    lines = paper_lines("infomtl")
    table = TABLES["infomtl_tweeteval_avg_roberta"]
    for entry in table.entries.values():
        label = {"EW": "EW (baseline)", "InfoMTL": "InfoMTL (ours)"}.get(entry.label, entry.label)
        # 'Method BERT-Avg BERT-Delta_p RoBERTa-Avg RoBERTa-Delta_p'
        hits = [line for line in lines if line.startswith(label + " ")
                and len(line.split()) - len(label.split()) == 4
                and line.split()[-2] == f"{entry.value:.2f}"]
        assert hits, entry
    twenty = TABLES["infomtl_tweeteval_delta_p_20pct"].entries["InfoMTL"]
    assert f"InfoMTL 20% 64.83 +{twenty.value:.2f}" in lines
