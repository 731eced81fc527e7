"""Snakemake and DVC describe the same study: same jobs, same outputs, same edges, same commands."""
import subprocess

import pytest

from tests.conftest import CI_PARAMS, REPO
from tests.workflow_utils import BIN, copy_workflow, dvc_dag, graph, parse_command, snakemake_dag, tool_env


def _swept_ci_params(tmp_path):
    """The CI params with BayesAgg-MTL swept on digits-mtl over s and the warm-up's length."""
    import yaml

    params = yaml.safe_load(CI_PARAMS.read_text())
    params["studies"]["bayesagg"]["sweep"] = {"digits-mtl": {"bayesagg": {
        "power_classification": [0.005, 0.05], "pretrain_epochs": [1, 2]}}}
    path = tmp_path / "swept.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.parametrize("params", [REPO / "params.yaml", CI_PARAMS, "swept"], ids=["default", "ci", "swept"])
def test_snakemake_and_dvc_build_the_same_dag(tmp_path, params):
    params = _swept_ci_params(tmp_path) if params == "swept" else params
    work = copy_workflow(tmp_path / "wf", params)
    smk, dvc = snakemake_dag(work), dvc_dag(work)
    smk_nodes, smk_edges = graph(smk)
    dvc_nodes, dvc_edges = graph([{**s, "input": [i for i in s["input"] if not i.startswith("src/")]}
                                  for s in dvc])
    assert len(smk) == len(dvc)
    assert smk_nodes == dvc_nodes
    assert smk_edges == dvc_edges
    assert len(smk_edges) > len(smk)  # a real DAG, not a list of independent jobs
    # the same commands with the same paths
    smk_cmds = {frozenset(j["output"]): parse_command(j["cmd"]) for j in smk}
    dvc_cmds = {frozenset(s["output"]): parse_command(s["cmd"]) for s in dvc}
    assert smk_cmds == dvc_cmds


def test_snakemake_lint_passes(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    out = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=work, env=tool_env(work),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Congratulations" in out.stdout + out.stderr


@pytest.mark.parametrize("swept", [False, True], ids=["ci", "swept"])
def test_dvc_repro_dry_runs(tmp_path, swept):
    work = copy_workflow(tmp_path / "wf", _swept_ci_params(tmp_path) if swept else CI_PARAMS)
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=work, env=tool_env(work), check=True)
    out = subprocess.run([str(BIN / "dvc"), "repro", "--dry", "--force"], cwd=work, env=tool_env(work),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Running stage 'report'" in out.stdout and "Running stage 'aggregate_infomtl'" in out.stdout


def _typo_in_schema(params):
    params["dataset"]["qm9"]["train"]["epoch"] = 3
    return "epoch"


def _unknown_method_in_a_study(params):
    params["studies"]["bayesagg"]["methods"].append("lss")
    params["method"]["lss"] = {}
    return "unknown method"


@pytest.mark.parametrize("break_params", [_typo_in_schema, _unknown_method_in_a_study])
def test_snakemake_rejects_bad_params_when_it_builds_the_dag(tmp_path, break_params):
    import yaml

    params = yaml.safe_load(CI_PARAMS.read_text())
    expected = break_params(params)
    work = copy_workflow(tmp_path / "wf")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    out = subprocess.run([str(BIN / "snakemake"), "-n", "all"], cwd=work, env=tool_env(work),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert expected in out.stderr + out.stdout
    assert "KeyError" not in out.stderr + out.stdout
