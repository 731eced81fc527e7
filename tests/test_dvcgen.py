"""dvc.yaml is generated from params: the checked-in one is fresh, flat, and each stage depends on
the source it imports; a study added in params alone is built by both Snakemake and DVC."""
import copy

import yaml

from mtlrepro import dvcgen, params as P
from tests.conftest import CI_PARAMS, REPO
from tests.workflow_utils import copy_workflow, dvc_dag, graph, snakemake_dag


def test_checked_in_dvc_yaml_is_fresh():
    expected = dvcgen.render(P.load(REPO / "params.yaml"))
    assert (REPO / "dvc.yaml").read_text() == expected, "dvc.yaml is stale: run `python -m mtlrepro dvc-yaml`"


def test_generated_dvc_yaml_is_flat_and_explicit():
    text = (REPO / "dvc.yaml").read_text()
    assert "&" not in text.replace("&&", "") and "<<:" not in text and "*id" not in text
    stages = yaml.safe_load(text)["stages"]
    assert all("matrix" not in s for s in stages.values())
    # only warm-start methods depend on the pretrain-LS checkpoint
    assert all(item["method"] == "bayesagg" for item in stages["train_warm"]["foreach"].values())
    assert not any(d.startswith("models/pretrain") for d in stages["train"]["do"]["deps"])


def test_each_stage_depends_on_the_source_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = {name: set((s.get("do") or s)["deps"]) for name, s in stages.items()}
    assert "src/mtlrepro/report" not in deps["train"] | deps["evaluate"]  # editing tables re-runs no training
    assert "src/mtlrepro/training.py" not in deps["download"] | deps["aggregate_bayesagg"]
    assert {"src/mtlrepro/methods", "src/mtlrepro/training.py", "src/mtlrepro/models"} <= deps["train"]
    assert {"src/mtlrepro/report", "src/mtlrepro/published.py"} & deps["aggregate_bayesagg"]
    assert "src/mtlrepro/metrics.py" in deps["evaluate"]


def test_a_third_study_from_params_alone_is_built_by_both_tools(tmp_path):
    params = yaml.safe_load(CI_PARAMS.read_text())
    params["studies"]["third"] = {"datasets": ["qm9"], "methods": ["stl", "ls", "bayesagg"], "seeds": [0, 5],
                                  "ablations": {"data_fraction": {"fractions": [25], "methods": ["bayesagg"]}}}
    params["method"]["bayesagg"] = {}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    work = copy_workflow(tmp_path / "wf", path)
    smk, dvc = snakemake_dag(work), dvc_dag(work)
    smk_nodes, smk_edges = graph(smk)
    dvc_nodes, dvc_edges = graph([{**s, "input": [i for i in s["input"] if not i.startswith("src/")]} for s in dvc])
    assert smk_nodes == dvc_nodes and smk_edges == dvc_edges
    outputs = {o for j in smk for o in j["output"]}
    assert {"reports/third/summary.json", "metrics/reference/third/qm9.json",
            "models/pretrain/qm9/pct25/seed5", "models/train/qm9/bayesagg/pct25/seed5"} <= outputs
    # the qm9 LS run at seed 0 is listed by two studies and built once
    assert sum("models/train/qm9/ls/pct100/seed0" in j["output"] for j in smk) == 1
