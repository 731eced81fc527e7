"""profiles/slurm reads its site settings from MTLREPRO_SLURM_* (README "On a SLURM cluster"):
what each setting turns into, checked through Snakemake's own profile parser and a dry run."""
from __future__ import annotations

import re
import subprocess

import pytest
from snakemake.profiles import ProfileConfigFileParser

from tests.conftest import CI_PARAMS, REPO
from tests.workflow_utils import BIN, copy_workflow, tool_env

SITE_VARS = ("ACCOUNT", "PARTITION", "GPU_PARTITION", "GPUS", "STATUS")


def parsed_profile(monkeypatch, **site) -> dict:
    for name in SITE_VARS:
        monkeypatch.delenv(f"MTLREPRO_SLURM_{name}", raising=False)
    for name, value in site.items():
        monkeypatch.setenv(f"MTLREPRO_SLURM_{name}", value)
    with open(REPO / "profiles" / "slurm" / "config.yaml") as stream:
        return ProfileConfigFileParser().parse(stream)


def test_defaults_ask_one_gpu_poll_with_squeue_and_name_no_account(monkeypatch):
    profile = parsed_profile(monkeypatch)
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    assert {"pretrain:gpu=1", "train:gpu=1"} <= set(profile["set-resources"])
    assert not any(r.startswith(("slurm_account", "slurm_partition")) for r in profile["default-resources"])
    assert not any("slurm_partition" in r for r in profile["set-resources"])
    assert "train=4" in profile["set-threads"]


def test_site_settings_reach_the_resources(monkeypatch):
    profile = parsed_profile(monkeypatch, ACCOUNT="my_lab", PARTITION="batch", GPU_PARTITION="a100",
                             STATUS="sacct")
    assert {"slurm_account=my_lab", "slurm_partition=batch"} <= set(profile["default-resources"])
    assert {"train:slurm_partition=a100", "pretrain:slurm_partition=a100"} <= set(profile["set-resources"])
    assert profile["slurm-status-command"] == "sacct"


def test_a_cluster_without_gpus_asks_for_none(monkeypatch):
    profile = parsed_profile(monkeypatch, GPUS="0", GPU_PARTITION="a100")
    assert {"pretrain:gpu=0", "train:gpu=0"} <= set(profile["set-resources"])
    assert not any("slurm_partition" in r for r in profile["set-resources"])  # CPU partition for all


def test_short_jobs_are_grouped_and_training_is_not(monkeypatch):
    profile = parsed_profile(monkeypatch)
    groups = dict(entry.split("=") for entry in profile["groups"])
    assert groups == {"evaluate": "evaluation", "robustness": "evaluation", "reference": "evaluation"}
    assert profile["group-components"] == ["evaluation=16"]


@pytest.mark.slow
def test_readme_command_keeps_the_local_profile_out(tmp_path, monkeypatch):
    """A dry run of the README command: training asks for the profile's 4 threads (not the local
    profile's 2 cores), and no GPU when MTLREPRO_SLURM_GPUS=0."""
    work = copy_workflow(tmp_path / "wf", CI_PARAMS)
    env = dict(tool_env(work), MTLREPRO_SLURM_GPUS="0")
    out = subprocess.run([str(BIN / "snakemake"), "all", "--profile", "profiles/slurm", "--workflow-profile", "none",
                          "-n"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    train_jobs = re.findall(r"\nrule train:\n(.*?)\n\n", text, flags=re.S)
    assert train_jobs
    for job in train_jobs:
        assert "threads: 4" in job and "gpu=1" not in job, job
