"""The README's SLURM command on a real scheduler: a one-node SLURM 22.05 cluster started on
localhost for this test (tests/slurm_cluster.py), a small study run through profiles/slurm as
the README says, one training job cancelled with scancel once it has written a checkpoint, and
the retried job checked to resume from that checkpoint and end with the model of an
uninterrupted run. Skips with the reason where the machine cannot run the cluster (not root,
no Debian packages). The daemons are stopped however the test ends.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.slurm_cluster import ClusterUnavailable, LocalSlurm, ensure_installed
from tests.workflow_utils import BIN, REPO, copy_workflow, tool_env


# The README's cluster command, verbatim (test_readme_documents_the_command keeps them in step).
README_COMMAND = "snakemake all --profile profiles/slurm --workflow-profile none"
# Documented in the README for small clusters: the plugin's first status check after 5 s, not 40 s.
QUICK_POLL = ["--slurm-init-seconds-before-status-checks", "5"]
# The run whose training job is cancelled: STL trains one model per task (ten on digits-mtl),
# each with its own checkpoint, so a cancel lands well inside the job.
DATASET, METHOD = "digits-mtl", "stl"
CANCELLED_MODEL = f"models/train/{DATASET}/{METHOD}/pct100/seed0"
RESUME_DIR = f"models/train/{DATASET}/{METHOD}/pct100/.seed0.resume"
JOB_COMMENT = f"rule_train_wildcards_{DATASET}_{METHOD}_100_0"  # the plugin's --comment for that job
EPOCHS = 6
# Documented in the README for nodes with fewer CPUs (this machine has 2) and for small clusters.
SITE_OPTIONS = ["--cores", "2"]
STUDY_TIMEOUT_S = 330


def tiny_study(ci_params: dict) -> dict:
    """tests/params-ci.yaml cut to one dataset (digits-mtl), methods stl and ls, one seed, no
    data-fraction runs, robustness for ls only."""
    params = yaml.safe_load(yaml.safe_dump(ci_params))
    params["seeds"] = [0]
    params["studies"] = {"bayesagg": {"datasets": [DATASET], "methods": ["stl", "ls"], "published": "bayesagg",
                                      "ablations": {"robustness": {"methods": ["ls"]}}}}
    params["dataset"] = {DATASET: params["dataset"][DATASET]}
    params["dataset"][DATASET]["train"].update(epochs=EPOCHS, pretrain_epochs=1)
    params["method"] = {m: params["method"][m] for m in ("stl", "ls")}
    return params


def test_readme_documents_the_command():
    text = (REPO / "README.md").read_text()
    section = re.split(r"\n##+ ", text.split("### On a SLURM cluster", 1)[-1], maxsplit=1)[0]
    assert README_COMMAND in section
    for option in (" ".join(QUICK_POLL), " ".join(SITE_OPTIONS), "export MTLREPRO_SLURM_GPU_PARTITION=gpu"):
        assert option in section, option


def test_no_cluster_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ClusterUnavailable, match="needs root"):
        ensure_installed()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        install_s = ensure_installed()
    except ClusterUnavailable as why:
        pytest.skip(f"no local SLURM cluster: {why}")
    print(f"slurm-wlm and munge install: {install_s:.0f} s")
    with LocalSlurm(tmp_path_factory.mktemp("slurm"), cpus=4, memory_mb=64000, gpus=2) as running:
        yield running


def stop(proc: subprocess.Popen) -> None:
    """End a Snakemake run and its children: SIGTERM (it cancels its SLURM jobs), then SIGKILL."""
    for sig, grace_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace_s)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def runs():
    """The Snakemake runs a test starts; stopped before the cluster is, however the test ends."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        stop(proc)


def snakemake(args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.Popen:
    log = open(cwd / f"snakemake-{len(list(cwd.glob('snakemake-*.log')))}.log", "w")
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    proc.log_path = Path(log.name)
    log.close()
    proc.deadline = time.monotonic() + timeout
    return proc


def finish(proc: subprocess.Popen) -> str:
    try:
        proc.wait(timeout=max(1.0, proc.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"snakemake ran past its time limit:\n{proc.log_path.read_text()[-4000:]}")
    return proc.log_path.read_text()


def checkpoint_epochs(resume_dir: Path, seen: dict) -> dict[str, int]:
    """{task file: epoch} of the checkpoints written since the last call (`seen`: name -> mtime)."""
    fresh = {}
    for path in sorted(resume_dir.glob("task*.pt")):
        try:
            mtime = path.stat().st_mtime_ns
            if seen.get(path.name) != mtime:
                fresh[path.name] = int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
                seen[path.name] = mtime
        except (OSError, EOFError, RuntimeError, KeyError):
            pass  # replaced or removed while being read: the next call sees it
    return fresh


def running_job(cluster: LocalSlurm, comment: str) -> str | None:
    out = cluster.client(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"]).stdout
    return next((line.split("|")[0] for line in out.splitlines() if line.split("|", 1)[-1] == comment), None)


def cancel_mid_training(cluster, proc, resume_dir: Path) -> tuple[str, dict, list]:
    """scancel the STL job once its second task has a checkpoint, then record every checkpoint
    the retry writes until the run ends: (job id, {task: epoch} at the cancel, [(task, epoch)])."""
    seen: dict = {}
    at_cancel: dict[str, int] = {}
    job_id, after = None, []
    while proc.poll() is None and time.monotonic() < proc.deadline:
        fresh = checkpoint_epochs(resume_dir, seen)
        if job_id is None:
            at_cancel.update(fresh)
            if "task1.pt" in at_cancel:
                job_id = running_job(cluster, JOB_COMMENT)
                if job_id is not None:
                    assert cluster.client(["scancel", job_id]).returncode == 0
                    time.sleep(2.0)  # a write in flight when the signal came lands before we look
                    at_cancel.update(checkpoint_epochs(resume_dir, seen))
        else:
            after += sorted(fresh.items())
        time.sleep(0.05)
    assert job_id is not None, f"the {METHOD} training job was never seen running with a checkpoint"
    return job_id, at_cancel, after


def model_tensors(model_dir: Path) -> list[dict]:
    return torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)["states"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a backstop only: every subprocess has its own limit; a run takes ~3 min
def test_readme_command_runs_the_study_and_a_cancelled_training_resumes(cluster, runs, tmp_path):
    t0 = time.monotonic()
    ci_params = yaml.safe_load((REPO / "tests" / "params-ci.yaml").read_text())
    work = copy_workflow(tmp_path / "study")
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny_study(ci_params)))
    env = {k: v for k, v in tool_env(work).items() if not k.startswith("MTLREPRO_SLURM_")}
    env.update(cluster.env, PYTHONPATH=str(work / "src"), MTLREPRO_SLURM_GPU_PARTITION="gpu")  # as the README
    env["PATH"] = f"{cluster.env['PATH'].split(os.pathsep)[0]}{os.pathsep}{tool_env(work)['PATH']}"  # shim, venv
    cmd = README_COMMAND.split() + SITE_OPTIONS + QUICK_POLL + ["--configfile", "tiny.yaml"]
    proc = snakemake([str(BIN / cmd[0]), *cmd[1:]], work, env, STUDY_TIMEOUT_S)
    runs.append(proc)
    job_id, at_cancel, after = cancel_mid_training(cluster, proc, work / RESUME_DIR)
    log = finish(proc)
    assert proc.returncode == 0, log[-6000:]
    study_s = time.monotonic() - t0

    # the cancel hit the job mid-training, and SLURM and Snakemake saw it cancelled
    assert len(at_cancel) < 10 or min(at_cancel.values()) < EPOCHS, at_cancel  # digits-mtl: 10 tasks
    state = cluster.client(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"]).stdout.strip()
    assert state == "CANCELLED", state
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in log, log[-4000:]
    # the retry resumed: no (task, epoch) checkpoint was written twice, and it did write some
    assert after, "the retried job wrote no checkpoint"
    for task, epoch in after:
        assert epoch > at_cancel.get(task, 0), (task, epoch, at_cancel)
    # every stage ran, the quick ones locally, the rest as SLURM jobs; evaluations were grouped
    for out in ("reports/summary.json", "reports/bayesagg/tables", f"metrics/reference/bayesagg/{DATASET}.json",
                f"metrics/robustness/{DATASET}/ls/seed0.json"):
        assert (work / out).exists(), out
    submitted = re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/logs/slurm/(\w+?)/", log)
    assert any(name.startswith("group_evaluation") for name in submitted), submitted
    assert {"rule_evaluate", "rule_robustness", "rule_reference"}.isdisjoint(submitted), submitted
    assert {"rule_download", "rule_validate", "rule_aggregate", "rule_report"}.isdisjoint(submitted), submitted

    # the same run without SLURM and without interruption, on the same thread count
    ref_dir = copy_workflow(tmp_path / "uninterrupted")
    (ref_dir / "tiny.yaml").write_text(yaml.safe_dump(tiny_study(ci_params)))
    ref_env = dict(tool_env(ref_dir), PYTHONPATH=str(ref_dir / "src"))
    ref = snakemake([str(BIN / "snakemake"), CANCELLED_MODEL, "--cores", "2", "--workflow-profile", "none",
                     "--set-threads", "pretrain=2", "train=2", "--configfile=tiny.yaml"], ref_dir, ref_env, 240)
    runs.append(ref)
    ref_log = finish(ref)
    assert ref.returncode == 0, ref_log[-4000:]
    resumed, uninterrupted = model_tensors(work / CANCELLED_MODEL), model_tensors(ref_dir / CANCELLED_MODEL)
    assert [list(s) for s in resumed] == [list(s) for s in uninterrupted]
    for a, b in zip(resumed, uninterrupted):
        for name in a:
            assert torch.equal(a[name], b[name]), name
    print(f"study through SLURM: {study_s:.0f} s; checkpoints at the cancel {at_cancel}; after it {after}")
