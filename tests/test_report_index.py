"""The final report job: reports/index.md over every study and the merged metrics summary."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from mtlrepro import layout, report
from mtlrepro.io import MTLReproError
from mtlrepro.params import ParamsError
from tests.report_synthetic import add_txt, build_tree, run


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Both synthetic studies' reports in the layout's places under root/."""
    root = tmp_path_factory.mktemp("index")
    d = add_txt(build_tree(root))
    for name in ("main", "info"):
        base = root / layout.study_reports(name)
        run({**d, "study": name, "tables": base / "tables", "figures": base / "figures",
             "summary": root / layout.study_summary(name)})
    return root, d["params"]


def summaries(root):
    return {name: root / layout.study_summary(name) for name in ("main", "info")}


def test_index_links_every_output_and_merges_the_summaries(reports, tmp_path):
    root, params = reports
    index, merged = root / layout.REPORT_INDEX, root / layout.SUMMARY
    report.write_index(params, summaries(root), index, merged)
    data = json.loads(merged.read_text())
    assert list(data) == ["main", "info"]
    for name, path in summaries(root).items():
        assert data[name] == json.loads(path.read_text())
    assert list(data["main"]) == ["reg", "cls"] and list(data["info"]) == ["txt"]
    for out in (index, merged):
        sidecar = json.loads(out.with_name(out.name + ".provenance.json").read_text())
        assert sorted(sidecar["inputs"]) == sorted(str(p) for p in summaries(root).values())
    text = index.read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## main", "## info"]
    assert "Δp baseline: ls" in text and "no Δp baseline" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert all(not link.startswith("/") and (index.parent / link).exists() for link in links)
    written = {p.relative_to(root / "reports").as_posix() for p in (root / "reports").rglob("*")
               if p.is_file() and not p.name.endswith(".provenance.json")} - {"index.md"}
    assert set(links) == written  # every table, figure and summary, and nothing else
    assert ("- reg_main: [md](main/tables/reg_main.md), [tex](main/tables/reg_main.tex), "
            "[csv](main/tables/reg_main.csv)") in text


def test_index_needs_every_study_output(reports, tmp_path):
    root, params = reports
    index, merged = tmp_path / "index.md", tmp_path / "summary.json"
    missing = tmp_path / "nowhere" / "summary.json"
    with pytest.raises(MTLReproError, match=f"missing input file: {missing.parent / 'tables'}"):
        report.write_index(params, {"main": missing}, index, merged)
    with pytest.raises(ParamsError, match="studies.nope: no such study"):
        report.write_index(params, {"nope": summaries(root)["main"]}, index, merged)
    assert not index.exists() and not merged.exists()


def test_index_rejects_a_summary_that_is_not_an_object(reports, tmp_path):
    root, params = reports
    copy = tmp_path / "info"
    shutil.copytree(root / layout.study_reports("info"), copy)
    (copy / "summary.json").write_text("[1, 2]")
    with pytest.raises(MTLReproError, match=f"{copy / 'summary.json'}: a study summary must hold a JSON object"):
        report.write_index(params, {"info": copy / "summary.json"}, tmp_path / "index.md", tmp_path / "s.json")
    assert not (tmp_path / "index.md").exists()
