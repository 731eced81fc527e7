"""The reference stage: a study's STL evaluations of one dataset -> the Delta_m reference."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mtlrepro.io import MTLReproError
from mtlrepro.report import build_reference
from mtlrepro.report.loader import eval_path, load_reference, reference_path
from tests.report_synthetic import dump, eval_doc, metric_value


def test_build_reference_matches_numpy(tmp_path):
    files = []
    for s in [2, 0, 1]:
        p = eval_path(tmp_path, "reg", "stl", 100, s)
        dump(p, eval_doc("reg", "stl", 100, s))
        files.append(p)
    files.append(p.with_name(p.name + ".provenance.json"))  # ignored
    dump(files[-1], {"git_commit": None})
    out = tmp_path / "ref" / "reg.json"
    assert reference_path(tmp_path / "ref", "reg") == out
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
    assert load_reference(out, dataset="reg")["task_order"] == ["mu", "alpha"]
    sidecar = json.loads(out.with_name("reg.json.provenance.json").read_text())
    assert sidecar["stage"] == "reference" and sorted(sidecar["inputs"]) == sorted(map(str, files[:3]))


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

    at_fraction = eval_path(tmp_path, "reg", "stl", 60, 1)  # only the 100 % runs make a reference
    dump(at_fraction, eval_doc("reg", "stl", 60, 1))
    with pytest.raises(MTLReproError, match=f"{at_fraction}: fraction is 60"):
        build_reference([good, at_fraction], out)

    twice = tmp_path / "copy" / "seed0.json"
    dump(twice, eval_doc("reg", "stl", 100, 0))
    with pytest.raises(MTLReproError, match=f"{twice}: seed 0 appears twice"):
        build_reference([good, twice], out)
    assert not out.exists()


def test_load_reference_checks_dataset_and_fraction(tmp_path):
    files = [eval_path(tmp_path, "reg", "stl", 100, s) for s in (0, 1)]
    for s, f in enumerate(files):
        dump(f, eval_doc("reg", "stl", 100, s))
    out = tmp_path / "reg.json"
    build_reference(files, out)
    with pytest.raises(MTLReproError, match=f"{out}: dataset is 'reg' but 'cls' was expected"):
        load_reference(out, dataset="cls")
    doc = json.loads(out.read_text())
    doc["fraction"] = 60
    out.write_text(json.dumps(doc))
    with pytest.raises(MTLReproError, match=f"{out}: fraction is 60 but 100 was expected"):
        load_reference(out, dataset="reg")
