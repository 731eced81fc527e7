"""The whole DAG on a tiny params file: through Snakemake, adopted by DVC, and through `dvc repro`
and `dvc exp run` in a throwaway git repository."""
import json
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import CI_PARAMS
from tests.workflow_utils import BIN, copy_workflow, tool_env, write_dvc_yaml

pytestmark = pytest.mark.slow


def sh(cmd, cwd, timeout=900):
    out = subprocess.run(cmd, cwd=cwd, env=tool_env(cwd), capture_output=True, text=True, timeout=timeout,
                         shell=isinstance(cmd, str))
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


def git_repo(work):
    sh("git init -q && git add -A && git commit -qm study", work)
    sh([str(BIN / "dvc"), "init", "-q"], work)
    sh([str(BIN / "dvc"), "remote", "add", "-d", "local", str(work.parent / "storage")], work)
    sh("git add -A && git commit -qm dvc", work)


def check_tables(work, params):
    from mtlrepro import params as P

    merged = json.loads((work / "reports" / "summary.json").read_text())
    index = (work / "reports" / "index.md").read_text()
    for study in P.studies(params):
        tables = work / "reports" / study.name / "tables"
        summary = json.loads((work / "reports" / study.name / "summary.json").read_text())
        assert merged[study.name] == summary and f"{study.name}/tables/" in index
        for dataset in study.datasets:
            check_dataset(work, study, dataset, tables, summary)


def check_dataset(work, grid, dataset, tables, summary):
    main = (tables / f"{dataset}_main.md").read_text()
    for method in grid.methods:
        assert f"{method}" in main.lower()
    assert (tables / f"{dataset}_main.tex").read_text().count("\\\\") >= len(grid.methods)
    assert summary[dataset]["stl"]["delta_m"] == 0.0
    assert set(summary[dataset]) == set(grid.methods)
    figures = ["delta_m", "training"] + ["data_fraction"] * bool(grid.ablation_fractions)
    for figure in figures + ["robustness"] * bool(grid.robustness_methods):
        png = work / "reports" / grid.name / "figures" / f"{dataset}_{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tables / f"{dataset}_representation.csv").exists()
    # Delta_m really is measured against the stored STL reference
    reference = json.loads((work / "metrics" / "reference" / grid.name / f"{dataset}.json").read_text())
    ls = [json.loads((work / "metrics" / "eval" / dataset / "ls" / "pct100" / f"seed{s}.json").read_text())
          for s in grid.seeds]
    for ev in ls:  # InfoMTL's representation quality: uniformity is a log-mean of exp(-t d^2) <= 0
        assert ev["representation"]["uniformity"] <= 0.0
    deltas = []
    for ev in ls:
        terms = []
        for task, ref in reference["tasks"].items():
            value = ev["tasks"][task]["metrics"][ref["primary"]]
            sign = -1 if ref["higher_is_better"] else 1
            terms.append(sign * (value - ref["mean"]) / ref["mean"])
        deltas.append(100 * sum(terms) / len(terms))
    assert summary[dataset]["ls"]["delta_m"] == pytest.approx(sum(deltas) / len(deltas), rel=1e-4, abs=1e-6)
    if grid.baseline == "ls":  # Avg and Delta_p over EW (= ls) as well
        assert summary[dataset]["ls"]["delta_p"] == pytest.approx(0.0, abs=1e-9)
        avg = [sum(ev["tasks"][t]["metrics"][ev["tasks"][t]["primary"]] for t in ev["task_order"])
               / len(ev["task_order"]) for ev in ls]
        assert summary[dataset]["ls"]["avg"] == pytest.approx(sum(avg) / len(avg), rel=1e-4)


def test_snakemake_then_dvc_adopts_the_outputs(tmp_path):
    work = copy_workflow(tmp_path / "study", CI_PARAMS)
    params = yaml.safe_load(CI_PARAMS.read_text())
    sh([str(BIN / "snakemake"), "--cores", "2", "all"], work)
    check_tables(work, params)
    # every artifact has its provenance
    prov = json.loads((work / "models" / "train" / "qm9" / "ls" / "pct100" / "seed0" / "provenance.json").read_text())
    assert prov["seed"] == 0 and prov["device"] == "cpu" and prov["packages"]["torch"]
    assert prov["params"]["config"] == params["dataset"]["qm9"]
    # nothing left to do, and a second run is a no-op
    assert "Nothing to be done" in sh([str(BIN / "snakemake"), "--cores", "2", "all"], work)
    # Snakemake's own HTML report holds every study's tables and figures, by study
    sh([str(BIN / "snakemake"), "--report", "reports/study.html"], work)
    html = (work / "reports" / "study.html").read_text(errors="replace")
    for study in params["studies"]:
        assert study in html
    assert "digits-mtl_main.md" in html and "qm9_delta_m.png" in html
    # one command adopts the Snakemake outputs into DVC, which then sees the pipeline up to date
    git_repo(work)
    sh([str(BIN / "dvc"), "commit", "--force", "--quiet"], work)
    status = sh([str(BIN / "dvc"), "status"], work)
    assert "up to date" in status, status


def test_dvc_repro_exp_and_remote(tmp_path):
    params = yaml.safe_load(CI_PARAMS.read_text())
    params["studies"]["bayesagg"]["datasets"] = ["digits-mtl"]
    del params["studies"]["infomtl"]  # Snakemake's test runs it; DVC runs the same stages here
    params["seeds"] = [0]
    work = copy_workflow(tmp_path / "study")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_dvc_yaml(work)
    git_repo(work)
    sh([str(BIN / "dvc"), "repro", "--quiet"], work)
    check_tables(work, params)
    assert "up to date" in sh([str(BIN / "dvc"), "status"], work)
    sh("git add -A && git commit -qm results", work)
    # changing a parameter: DVC sees which stages it invalidates, and diffs the params
    params["dataset"]["digits-mtl"]["train"]["lr"] = 0.01
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = sh([str(BIN / "dvc"), "params", "diff"], work)
    assert "dataset.digits-mtl.train.lr" in diff and "0.003" in diff and "0.01" in diff
    status = sh([str(BIN / "dvc"), "status"], work)
    assert "train@digits-mtl-ls-pct100-seed0" in status and "download@digits-mtl" not in status
    sh("git checkout -q params.yaml", work)
    # an experiment with one value changed, compared in `dvc exp show`
    sh([str(BIN / "dvc"), "exp", "run", "--quiet", "-S", "dataset.digits-mtl.train.epochs=4", "--name", "longer"], work)
    shown = sh([str(BIN / "dvc"), "exp", "show", "--json"], work)
    assert "longer" in shown and "dataset.digits-mtl.train.epochs" not in shown or '"epochs": 4' in shown
    # push to the local remote, lose the outputs, pull them back without recomputing
    sh([str(BIN / "dvc"), "push", "--quiet"], work)
    shutil.rmtree(work / "models")
    shutil.rmtree(work / "reports" / "bayesagg" / "tables")
    sh([str(BIN / "dvc"), "pull", "--quiet"], work)
    assert (work / "reports" / "bayesagg" / "tables" / "digits-mtl_main.md").exists()
    assert "up to date" in sh([str(BIN / "dvc"), "status"], work)
