import copy

import pytest
import yaml

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
