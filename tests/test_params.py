import copy

import pytest

from mtlrepro import params as P
from mtlrepro.io import MTLReproError
from tests.conftest import CI_PARAMS, REPO


def test_default_and_ci_params_are_valid():
    for path in (REPO / "params.yaml", CI_PARAMS):
        params = P.load(path)
        P.check_methods(params, str(path))


@pytest.mark.parametrize("mutate, fragment", [
    (lambda p: p["dataset"]["qm9"]["train"].update(lrr=1), "dataset.qm9.train: unknown key"),
    (lambda p: p.update(seeds=[0, 0]), "seeds"),
    (lambda p: p["dataset"]["digits-mtl"]["train"].update(lr=-1), "dataset.digits-mtl.train.lr"),
    (lambda p: p.update(methods=["ls"]), "methods"),  # STL, the Delta_m reference, must stay
    (lambda p: p["ablations"]["robustness"].update(kinds=["salt"]), "ablations.robustness.kinds.0"),
    (lambda p: p.update(device="gpu0"), "device"),
    (lambda p: p["dataset"]["digits-mtl"]["train"].update(pretrain_epochs=50), "pretrain_epochs"),
    (lambda p: p["ablations"]["data_fraction"].update(methods=["uw"]), "ablations.data_fraction.methods lists 'uw'"),
    (lambda p: p["ablations"]["data_fraction"].update(methods=["stl"]), "'stl' cannot be listed"),
    (lambda p: p["method"].pop("ls"), "method.ls is missing"),
])
def test_bad_params_name_the_key(ci_params, write_params, mutate, fragment):
    params = copy.deepcopy(ci_params)
    mutate(params)
    with pytest.raises(P.ParamsError) as err:
        P.load(write_params(params))
    assert fragment in str(err.value)


def _study(datasets=("digits-domains",), methods=("stl", "ls", "infomtl"), df=("ls",), rob=("ls",)):
    return {"datasets": list(datasets), "methods": list(methods),
            "ablations": {"data_fraction": {"fractions": [50], "methods": list(df)},
                          "robustness": {"methods": list(rob)}}}


@pytest.mark.parametrize("study, fragment", [
    (_study(datasets=["qm9"]), "infomtl_study.datasets: 'qm9' is in the other grid too"),
    (_study(methods=["ls", "infomtl"]), "infomtl_study.methods must contain 'stl'"),
    (_study(methods=["stl", "infomtl"], df=[], rob=[]), "infomtl_study.methods must contain 'ls'"),
    (_study(df=["infomtl"]), "data_fraction.methods must contain 'ls'"),
    (_study(rob=["vmtl"]), "infomtl_study.ablations.robustness.methods lists 'vmtl'"),
    (_study(methods=["stl", "ls", "hmtl"], df=[], rob=[]), "method.hmtl is missing"),
])
def test_infomtl_study_cross_checks(ci_params, write_params, study, fragment):
    params = copy.deepcopy(ci_params)
    params["infomtl_study"] = study
    with pytest.raises(P.ParamsError) as err:
        P.load(write_params(params))
    assert fragment in str(err.value)


def test_grids_partition_the_datasets_and_warm_start_stays_in_the_main_grid(ci_params, write_params):
    params = copy.deepcopy(ci_params)
    params["infomtl_study"] = _study()
    params["dataset"]["digits-domains"] = P.load(REPO / "params.yaml")["dataset"]["digits-domains"]
    loaded = P.load(write_params(params))
    main, study = P.grids(loaded)
    assert (main.name, main.pretrain, study.name, study.pretrain) == ("main", True, "infomtl_study", False)
    assert P.all_datasets(loaded) == ["digits-mtl", "qm9", "digits-domains"]
    assert P.grid_of(loaded, "digits-domains") == study and P.grid_of(loaded, "qm9") == main
    assert study.fractions == (50,) and study.data_fraction_methods == ("ls",)
    with pytest.raises(P.ParamsError, match="'tweeteval' is in no grid"):
        P.grid_of(loaded, "tweeteval")
    loaded["infomtl_study"]["methods"].append("bayesagg")
    loaded["method"]["bayesagg"] = {}
    with pytest.raises(P.ParamsError, match="'bayesagg' starts from the pretrain-LS checkpoint"):
        P.check_methods(loaded)


def test_unknown_method_and_hyperparameter_are_rejected(ci_params):
    params = copy.deepcopy(ci_params)
    params["method"]["ls"] = {"temperature": 2}
    with pytest.raises(P.ParamsError, match=r"method.ls: unknown hyper-parameter\(s\) \['temperature'\]"):
        P.check_methods(params)
    params["method"] = {"stl": {}, "lss": {}}
    with pytest.raises(P.ParamsError, match="method.lss: unknown method"):
        P.check_methods(params)


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
