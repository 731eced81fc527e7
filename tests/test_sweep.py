"""Sweeps inside a study (mtlrepro.sweep): the variants' runs, their params and warm-up
checkpoints, the choice on validation in the report, and the DAG both tools build."""
import copy
import json

import numpy as np
import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.checks import check_methods
from mtlrepro.fingerprint import load_state
from mtlrepro.report.loader import eval_path, log_path
from mtlrepro.stages.fit import pretrain_checkpoint
from tests.conftest import CI_PARAMS
from tests import report_synthetic as R

GRID = {"power_classification": [0.005, 0.05], "pretrain_epochs": [1, 2]}


def swept(grid=GRID, dataset="digits-mtl", method="bayesagg") -> dict:
    params = P.load(CI_PARAMS)
    params["studies"]["bayesagg"]["sweep"] = {dataset: {method: copy.deepcopy(grid)}}
    return P.validate(params)


def test_a_grid_expands_into_named_variants_with_their_params():
    params = swept()
    study = P.study(params, "bayesagg")
    names = study.run_names("digits-mtl", "bayesagg")
    assert names == ["bayesagg__power_classification_0p005__pretrain_epochs_1",
                     "bayesagg__power_classification_0p005__pretrain_epochs_2",
                     "bayesagg__power_classification_0p05__pretrain_epochs_1",
                     "bayesagg__power_classification_0p05__pretrain_epochs_2"]
    assert study.run_names("qm9", "bayesagg") == ["bayesagg"]  # swept on digits-mtl only
    runs = study.runs()
    assert {r.method for r in runs if r.dataset == "digits-mtl" and r.fraction == 100} >= set(names)
    assert not any(r.method == "bayesagg" and r.dataset == "digits-mtl" for r in runs)  # not an ablation method
    hp = P.method_hparams(params, names[2])
    assert hp == {**params["method"]["bayesagg"], "power_classification": 0.05}
    assert P.base_method(params, names[2]) == "bayesagg" and P.base_method(params, "ls") == "ls"
    assert P.run_config(params, "digits-mtl", names[1])["train"]["pretrain_epochs"] == 2
    assert P.run_config(params, "digits-mtl", "ls") == params["dataset"]["digits-mtl"]
    assert P.pretrain_epochs(params, "digits-mtl") == [1, 2] and P.pretrain_epochs(params, "qm9") == [1]
    check_methods(params)


def test_a_swept_ablation_method_keeps_its_own_run():
    params = swept({"power_classification": [0.005, 0.05]}, method="ls")
    runs = P.study(params, "bayesagg").runs()
    assert P.Run("digits-mtl", "ls", 100, 0) in runs and P.Run("digits-mtl", "ls", 50, 0) in runs


@pytest.mark.parametrize("grid, dataset, method, match", [
    ({"power_classification": [0.1]}, "rotten-tomatoes", "bayesagg", "not in studies.bayesagg.datasets"),
    ({"power_classification": [0.1]}, "digits-mtl", "pcgrad", "not in studies.bayesagg.methods"),
    ({"power_classification": [0.1]}, "digits-mtl", "stl", "the reference cannot be swept"),
    ({"pretrain_epochs": [3]}, "digits-mtl", "bayesagg", "pretrain_epochs: 3 is not a whole number of epochs in 1..2"),
    ({"mode": ["Big Value"]}, "digits-mtl", "bayesagg", "lower-case words"),
])
def test_bad_grids_are_refused_by_key(grid, dataset, method, match):
    params = P.load(CI_PARAMS)
    params["studies"]["bayesagg"]["sweep"] = {dataset: {method: grid}}
    with pytest.raises(P.ParamsError, match=match):
        P.validate(params)


@pytest.mark.parametrize("grid, match", [({"nope": [1]}, r"\['nope'\] are not among what 'bayesagg' can sweep"),
                                         ({"pretrain_epochs": [1]}, r"\['pretrain_epochs'\] are not among what 'ls'")])
def test_grids_of_unknown_hyper_parameters_are_refused(grid, match):
    params = swept(grid, method="bayesagg" if "nope" in grid else "ls")
    with pytest.raises(P.ParamsError, match=match):
        check_methods(params)


def test_the_warm_up_writes_a_checkpoint_at_each_length_as_separate_runs_would(tmp_path, digits_processed):
    """One pretrain run with lengths [1, 2] writes checkpoint.pt (1, the dataset's) and
    checkpoint-2epochs.pt, each bit-identical to a warm-up of that length alone; a variant trains
    from its own length's checkpoint."""
    params = swept()
    stages.pretrain(params, "digits-mtl", digits_processed, 100, 0, tmp_path / "both")
    config = params["dataset"]["digits-mtl"]
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["checkpoint-2epochs.pt", "checkpoint.pt",
                                                                    "provenance.json"]
    for length in (1, 2):
        alone = P.load(CI_PARAMS)
        alone["dataset"]["digits-mtl"]["train"]["pretrain_epochs"] = length
        stages.pretrain(alone, "digits-mtl", digits_processed, 100, 0, tmp_path / f"alone{length}")
        a = load_state(pretrain_checkpoint(tmp_path / "both", config, length), "ckpt")
        b = load_state(tmp_path / f"alone{length}" / "checkpoint.pt", "ckpt")
        assert a["epoch"] == b["epoch"] == length
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
        assert a["inputs"]["train"]["pretrain_epochs"] == length

    variant = P.study(params, "bayesagg").run_names("digits-mtl", "bayesagg")[1]  # pretrain_epochs 2
    log = tmp_path / "log.json"
    stages.train(params, "digits-mtl", variant, digits_processed, tmp_path / "both", 100, 0, tmp_path / "m", log)
    history = json.loads(log.read_text())["history"]
    assert [h["epoch"] for h in history] == [3]  # 2 LS epochs, then BayesAgg-MTL's third
    # a checkpoint from another length is refused by its record
    (tmp_path / "both" / "checkpoint-2epochs.pt").unlink()
    (tmp_path / "alone1" / "checkpoint.pt").rename(tmp_path / "both" / "checkpoint-2epochs.pt")
    with pytest.raises(Exception, match="pretrain checkpoint"):
        stages.train(params, "digits-mtl", variant, digits_processed, tmp_path / "both", 100, 0, tmp_path / "m2",
                     tmp_path / "log2.json")


# ------------------------------------------------------------------------------ the report

VARIANTS = {"bayesagg__power_regression_0p5": ("pcgrad", [0.30, 0.28, 0.32]),   # (evals like, val scores)
            "bayesagg__power_regression_0p9": ("ls", [0.20, 0.26, 0.20])}


def _log(ds, method, seed, val):
    # a warm start's history begins after the warm-up (epochs 4 and 5 of the budget); best_epoch
    # is the 1-based epoch of the budget, as the train stage writes it
    return {"dataset": ds, "method": method, "seed": seed, "fraction": 100, "tasks": list(R.TASKS[ds]),
            "best_epoch": 5, "method_log": [],
            "history": [{"epoch": 4, "train_loss": [1.0, 1.0], "val_score": val + 1.0, "lr": 1e-3},
                        {"epoch": 5, "train_loss": [0.5, 0.5], "val_score": val, "lr": 1e-3}]}


def test_the_report_shows_the_variant_chosen_on_validation(tmp_path):
    d = R.build_tree(tmp_path)
    d["params"]["studies"]["main"]["sweep"] = {"reg": {"bayesagg": {"power_regression": [0.5, 0.9]}}}
    d["logs"] = tmp_path / "logs"
    for name, (like, scores) in VARIANTS.items():
        for s, val in zip(R.SEEDS, scores):
            R.dump(eval_path(d["eval"], "reg", name, 100, s), {**R.eval_doc("reg", like, 100, s), "method": name})
            R.dump(log_path(d["logs"], "reg", name, s), _log("reg", name, s, val))
    for ds in ("reg", "cls"):
        for m in R.METHODS:
            for s in R.SEEDS:
                R.dump(log_path(d["logs"], ds, m, s), _log(ds, m, s, 0.5))
    summary = R.run(d)
    # the chosen variant (lower mean validation score: 0.22 < 0.30) is bayesagg's row, on test
    assert summary["reg"]["bayesagg"]["delta_m"] == pytest.approx(R.expected_delta("reg", "ls", 100).mean(), abs=1e-5)
    main = (d["tables"] / "reg_main.md").read_text()
    assert "bayesagg: power_regression=0.9 (of 2)" in main
    rows = [r for r in R.read_csv(d["tables"] / "reg_sweep.csv")]
    val = {r["row"]: float(r["mean"]) for r in rows if r["quantity"] == "val_score"}
    assert val == pytest.approx({"bayesagg: power_regression=0.5": np.mean(VARIANTS["bayesagg__power_regression_0p5"][1]),
                                 "bayesagg: power_regression=0.9  (chosen)": np.mean(VARIANTS["bayesagg__power_regression_0p9"][1])})
    delta = {r["row"]: float(r["mean"]) for r in rows if r["quantity"] == "delta_m"}
    assert delta["bayesagg: power_regression=0.5"] == pytest.approx(R.expected_delta("reg", "pcgrad", 100).mean(), abs=1e-5)
    assert not (d["tables"] / "cls_sweep.md").exists()  # cls has no sweep


def test_the_best_validation_score_is_read_at_the_logged_best_epoch():
    from mtlrepro.io import MTLReproError
    from mtlrepro.report.sweep import best_validation_score

    log = {**_log("reg", "bayesagg", 0, 0.3), "path": "log.json"}
    assert best_validation_score(log) == pytest.approx(0.3)
    for bad in (3, 6, True, None):  # not an epoch of the history (3: inside the warm-up)
        with pytest.raises(MTLReproError, match="not an epoch of its history"):
            best_validation_score({**log, "best_epoch": bad})
