import copy

import pytest

from mtlrepro import params as P
from mtlrepro.checks import check_methods
from mtlrepro.io import MTLReproError
from tests.conftest import CI_PARAMS, REPO


def test_default_and_ci_params_are_valid():
    for path in (REPO / "params.yaml", CI_PARAMS):
        params = P.load(path)
        check_methods(params, str(path))


@pytest.mark.parametrize("mutate, fragment", [
    (lambda p: p["dataset"]["qm9"]["train"].update(lrr=1), "dataset.qm9.train: unknown key"),
    (lambda p: p.update(seeds=[0, 0]), "seeds"),
    (lambda p: p["dataset"]["digits-mtl"]["train"].update(lr=-1), "dataset.digits-mtl.train.lr"),
    (lambda p: p["studies"]["bayesagg"].update(methods=["ls"]), "studies.bayesagg.reference is 'stl'"),
    (lambda p: p["ablations"]["robustness"].update(kinds=["salt"]), "ablations.robustness.kinds.0"),
    (lambda p: p.update(device="gpu0"), "device"),
    (lambda p: p["dataset"]["digits-mtl"]["train"].update(pretrain_epochs=50), "pretrain_epochs"),
    (lambda p: p["studies"]["bayesagg"]["ablations"]["data_fraction"].update(methods=["uw"]),
     "studies.bayesagg.ablations.data_fraction.methods lists 'uw'"),
    (lambda p: p["studies"]["bayesagg"]["ablations"]["data_fraction"].update(methods=["stl"]), "'stl' cannot be listed"),
    (lambda p: p["method"].pop("ls"), "method.ls is missing"),
    (lambda p: p["studies"]["infomtl"].update(datasets=["digits-domains"]), "dataset.digits-domains is missing"),
    (lambda p: p["studies"]["infomtl"].update(baseline="uw"), "studies.infomtl.baseline is 'uw'"),
    (lambda p: p["studies"]["infomtl"]["ablations"]["data_fraction"].update(methods=["infomtl"]),
     "data_fraction.methods must contain 'ls'"),
    (lambda p: p["studies"]["infomtl"].update(colour="red"), "studies.infomtl: unknown key"),
    (lambda p: p.update(studies={}), "studies"),
    (lambda p: p["dataset"]["qm9"]["split"].update(train="all"), "dataset.qm9.split.train"),
    (lambda p: p["dataset"]["qm9"]["split"].update(order="random"), "dataset.qm9.split.order"),
    (lambda p: p["dataset"]["qm9"]["train"].update(scheduler={"name": "plateau", "factor": 0.7, "patience": 5,
                                                                "min_lr": 1.0}),
     "dataset.qm9.train.scheduler.min_lr (1.0) must not exceed dataset.qm9.train.lr"),
    (lambda p: p["dataset"]["qm9"]["train"].update(scheduler={"name": "plateau", "factor": 0.7, "patience": 5,
                                                                "min_lrr": 0}),
     "dataset.qm9.train.scheduler"),
])
def test_bad_params_name_the_key(ci_params, write_params, mutate, fragment):
    params = copy.deepcopy(ci_params)
    mutate(params)
    with pytest.raises(P.ParamsError) as err:
        P.load(write_params(params))
    assert fragment in str(err.value)


def test_duplicate_yaml_keys_are_an_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(CI_PARAMS.read_text() + "seeds: [5]\n")
    with pytest.raises(P.ParamsError, match="duplicate key 'seeds'"):
        P.load(path)


def _third_study(**overrides):
    return {"datasets": ["qm9", "digits-mtl"], "methods": ["stl", "ls", "bayesagg"], "seeds": [0, 7],
            "ablations": {"data_fraction": {"fractions": [30], "methods": ["ls", "bayesagg"]},
                          "robustness": {"methods": ["ls"]}}, **overrides}


def test_studies_expand_into_shared_runs(ci_params, write_params):
    params = copy.deepcopy(ci_params)
    params["studies"]["third"] = _third_study()
    params["method"]["bayesagg"] = {}
    loaded = P.load(write_params(params))
    third = P.study(loaded, "third")
    assert (third.seeds, third.reference, third.baseline, third.pretrain) == ((0, 7), "stl", None, True)
    assert P.study(loaded, "infomtl").seeds == tuple(loaded["seeds"])  # the top-level default
    runs = P.train_runs(loaded)
    assert len(runs) == len(set(runs))  # a run two studies list is trained once
    assert set(runs) == {r for s in P.studies(loaded) for r in s.runs()}
    assert P.Run("qm9", "ls", 100, 0) in P.study(loaded, "bayesagg").runs() and P.Run("qm9", "ls", 100, 0) in third.runs()
    assert P.Run("qm9", "bayesagg", 30, 7) in runs and P.Run("qm9", "bayesagg", 30, 1) not in runs
    assert P.all_datasets(loaded) == ["digits-mtl", "qm9", "rotten-tomatoes"]
    warm = P.pretrain_runs(loaded, {"bayesagg"})
    third_warm = {P.Pretrain(d, f, s) for d in ("qm9", "digits-mtl") for f in (100, 30) for s in (0, 7)}
    ci_warm = {P.Pretrain(d, 100, s) for d in ("qm9", "digits-mtl") for s in (0, 1)}  # the CI study's bayesagg
    assert set(warm) == third_warm | ci_warm
    with pytest.raises(P.ParamsError, match="studies.fourth: no such study"):
        P.study(loaded, "fourth")


def test_a_study_without_pretrain_refuses_warm_start_methods(ci_params, write_params):
    params = copy.deepcopy(ci_params)
    params["studies"]["third"] = _third_study(pretrain=False)
    params["method"]["bayesagg"] = {}
    loaded = P.load(write_params(params))
    with pytest.raises(P.ParamsError, match="'bayesagg' starts from the pretrain-LS checkpoint"):
        check_methods(loaded)


def test_unknown_method_and_hyperparameter_are_rejected(ci_params):
    params = copy.deepcopy(ci_params)
    params["method"]["ls"] = {"temperature": 2}
    with pytest.raises(P.ParamsError, match=r"method.ls: unknown hyper-parameter\(s\) \['temperature'\]"):
        check_methods(params)
    params["method"] = {"stl": {}, "lss": {}}
    with pytest.raises(P.ParamsError, match="method.lss: unknown method"):
        check_methods(params)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(MTLReproError, match="params file not found"):
        P.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0, 1\n")
    with pytest.raises(MTLReproError, match="not valid YAML"):
        P.load(bad)


def test_cli_exits_nonzero_on_a_params_typo(ci_params, write_params, tmp_path, capsys):
    from mtlrepro.cli import main

    params = copy.deepcopy(ci_params)
    params["seedz"] = [0]
    path = write_params(params)
    code = main(["download", "--params", str(path), "--dataset", "digits-mtl", "--out", str(tmp_path / "raw")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown key" in err and "seedz" in err
    assert not (tmp_path / "raw").exists()


def test_the_published_qm9_split_and_the_plateau_schedule_are_params(ci_params, write_params):
    params = copy.deepcopy(ci_params)
    params["dataset"]["qm9"]["split"] = {"order": "test-val-train", "test": 10000, "val": 10000, "train": "rest"}
    params["dataset"]["digits-mtl"]["train"]["scheduler"] = {"name": "plateau", "factor": 0.7, "patience": 5,
                                                             "min_lr": 1.0e-5}
    loaded = P.load(write_params(params))
    assert loaded["dataset"]["qm9"]["split"]["train"] == "rest"
