"""Bad or missing inputs: a clear error naming the file (and key), and no partial outputs."""
from __future__ import annotations

import shutil

import pytest

from mtlrepro.io import MTLReproError
from mtlrepro.report import figures, weights
from mtlrepro.report.loader import eval_path, log_path, robustness_path
from tests.report_synthetic import (N_DIMS, N_PROBE, all_outputs, dump, eval_doc, fresh_outputs, rob_doc,  # noqa: F401
                                    run, study, study_eval, study_log, tree)


def test_missing_file_names_it_and_writes_nothing(tree):
    victim = robustness_path(tree["rob"], "cls", "ls", 2)
    victim.unlink()
    with pytest.raises(MTLReproError, match=str(victim)):
        run(tree)
    assert all_outputs(tree) == []


def test_missing_eval_file(tree):
    victim = eval_path(tree["eval"], "reg", "pcgrad", 100, 1)
    victim.unlink()
    with pytest.raises(MTLReproError, match=f"missing input file: {victim}"):
        run(tree)
    assert all_outputs(tree) == []


def test_missing_reference(tree):
    victim = tree["ref"] / "cls.json"
    victim.unlink()
    with pytest.raises(MTLReproError, match=str(victim)):
        run(tree)
    assert all_outputs(tree) == []


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
    with pytest.raises(MTLReproError, match=f"{victim}.*fgsm.*mu.*non-finite"):
        run(tree)


def test_eval_in_the_wrong_place_raises(tree):
    victim = eval_path(tree["eval"], "reg", "ls", 100, 1)
    dump(victim, eval_doc("reg", "ls", 100, 2))
    with pytest.raises(MTLReproError, match=f"{victim}: seed is 2 but 1 was expected from its location"):
        run(tree)


def test_task_mismatch_with_reference(tree):
    victim = eval_path(tree["eval"], "reg", "ls", 100, 0)
    doc = eval_doc("reg", "ls", 100, 0)
    doc["tasks"]["mu"]["higher_is_better"] = True
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=f"{victim}: tasks.mu.higher_is_better is True but the reference"):
        run(tree)


def test_stale_reference_raises(tree):
    victim = eval_path(tree["eval"], "reg", "stl", 100, 1)
    doc = eval_doc("reg", "stl", 100, 1)
    doc["tasks"]["mu"]["metrics"]["mae"] *= 2
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=f"stale.*{tree['ref'] / 'reg.json'}|{tree['ref'] / 'reg.json'}.*stale"):
        run(tree)
    assert all_outputs(tree) == []


def test_missing_representation_names_the_file(tree):
    victim = eval_path(tree["eval"], "cls", "pcgrad", 100, 1)
    doc = eval_doc("cls", "pcgrad", 100, 1)
    del doc["representation"]
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=f"{victim}: missing key 'representation'"):
        run(tree)
    assert all_outputs(tree) == []


def test_failure_midway_leaves_no_partial_outputs(tree, monkeypatch):
    # the last dataset's robustness figure fails after every table has been rendered
    def boom(ds, *args, **kwargs):
        if ds == "cls":
            raise RuntimeError("simulated crash while drawing")
        return original(ds, *args, **kwargs)

    original = figures.plot_robustness
    monkeypatch.setattr(figures, "plot_robustness", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        run(tree)
    assert all_outputs(tree) == []
    assert not tree["tables"].exists() and not tree["figures"].exists()

    monkeypatch.setattr(figures, "plot_robustness", original)
    run(tree)
    assert (tree["tables"] / "reg_main.md").exists() and tree["summary"].exists()


def test_calibration_missing_metric_names_the_file(study, tmp_path):
    d = fresh_outputs(study, tmp_path)
    d["eval"] = tmp_path / "eval"
    shutil.copytree(study["eval"], d["eval"])
    victim = eval_path(d["eval"], "digits-mtl", "gls", 100, 2)
    doc = study_eval("digits-mtl", "gls", 2)
    del doc["tasks"]["is_1"]["metrics"]["brier"]
    dump(victim, doc)
    with pytest.raises(MTLReproError, match=f"{victim}.*is_1.*brier"):
        run(d)
    assert not d["tables"].exists() and not d["figures"].exists()


def test_missing_log_names_it_and_writes_nothing(study, tmp_path):
    d = fresh_outputs(study, tmp_path)
    d["logs"] = tmp_path / "logs"
    shutil.copytree(study["logs"], d["logs"])
    victim = log_path(d["logs"], "digits-mtl", "nash_mtl", 1)
    victim.unlink()
    with pytest.raises(MTLReproError, match=str(victim)):
        run(d)
    assert not d["tables"].exists() and not d["figures"].exists() and not d["summary"].exists()


@pytest.mark.parametrize("mutate,match", [
    (lambda log: log["method_log"][1].update(weights=[[[0.5] * N_DIMS] * N_PROBE] * 2), r"method_log\[1\].*K = 3"),
    (lambda log: log["method_log"][0]["weights"][0][0].__setitem__(2, "x"), r"method_log\[0\]\.weights\[0\]\[0\]\[2\]"),
    (lambda log: log["method_log"][2]["weights"][1][1].__setitem__(0, float("nan")), "non-finite"),
    (lambda log: log.pop("tasks"), "'tasks'"),
    (lambda log: log.update(method="ls"), "method"),
])
def test_bad_log_raises_naming_the_file(tmp_path, mutate, match):
    from mtlrepro.report.loader import load_log

    log = study_log("digits-mtl", "bayesagg", 0)
    mutate(log)
    path = log_path(tmp_path, "digits-mtl", "bayesagg", 0)
    dump(path, log)
    with pytest.raises(MTLReproError, match=f"{path}.*{match}"):
        weights.per_dimension_panels(load_log(path, dataset="digits-mtl", method="bayesagg", seed=0))


def test_weight_figure_failure_leaves_no_partial_outputs(study, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while drawing the weights")

    monkeypatch.setattr(weights, "plot_weight_heatmaps", boom)
    d = fresh_outputs(study, tmp_path)
    with pytest.raises(RuntimeError, match="simulated"):
        run(d)
    assert not d["tables"].exists() and not d["figures"].exists() and not d["summary"].exists()
