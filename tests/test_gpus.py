"""GPU assignment on a multi-GPU machine (mtlrepro.gpus), checked without a GPU: GPUs are stood in
for by their keys, and concurrent training jobs by separate processes sharing one lock folder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from mtlrepro import gpus
from mtlrepro.io import MTLReproError
from mtlrepro.training import resolve_device

SRC = Path(__file__).resolve().parents[1] / "src"

# A stand-in training job: claims one of KEYS, prints the index, holds it until stdin closes.
HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mtlrepro import gpus
    keys, directory = sys.argv[1].split(","), Path(sys.argv[2])
    print(gpus.claim(keys, directory, poll_s=0.05, timeout_s=60), flush=True)
    sys.stdin.read()
""")


def start_holder(keys: list[str], directory: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen([sys.executable, "-c", HOLDER, ",".join(keys), str(directory)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def claimed_index(proc: subprocess.Popen) -> int:
    line = proc.stdout.readline()
    assert line, f"holder exited with {proc.wait(timeout=30)} before claiming a GPU"
    return int(line)


@pytest.fixture
def holders():
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(autouse=True)
def no_locks_held():
    gpus.release_all()
    yield
    gpus.release_all()


def test_one_visible_gpu_needs_no_lock(tmp_path):
    assert gpus.claim(["GPU-only"], tmp_path / "locks") == 0
    assert not (tmp_path / "locks").exists()


def test_concurrent_jobs_get_different_gpus_and_a_third_waits(tmp_path, holders):
    keys = ["GPU-a", "GPU-b"]
    holders += [start_holder(keys, tmp_path), start_holder(keys, tmp_path)]
    assert sorted(claimed_index(p) for p in holders) == [0, 1]
    # both GPUs are taken: this process cannot get one within the timeout
    with pytest.raises(MTLReproError, match="all 2 GPUs stayed locked"):
        gpus.claim(keys, tmp_path, poll_s=0.01, timeout_s=0.05)


def test_a_killed_job_releases_its_gpu_to_a_waiting_one(tmp_path, holders):
    keys = ["GPU-a", "GPU-b", "GPU-c"]
    first = [start_holder(keys, tmp_path) for _ in keys]
    holders += first
    taken = {claimed_index(p): p for p in first}
    assert sorted(taken) == [0, 1, 2]
    waiter = start_holder(keys, tmp_path)  # finds every GPU locked and polls
    holders.append(waiter)
    taken[1].send_signal(signal.SIGKILL)  # like scancel / the OOM killer: no clean-up code runs
    taken[1].wait(timeout=30)
    assert claimed_index(waiter) == 1


def test_a_finished_job_frees_its_gpu_and_a_claim_is_kept(tmp_path, holders):
    keys = ["GPU-a", "GPU-b"]
    assert gpus.claim(keys, tmp_path) == 0
    assert gpus.claim(keys, tmp_path) == 0  # asking again keeps the same GPU
    other = start_holder(keys, tmp_path)
    holders.append(other)
    assert claimed_index(other) == 1
    gpus.release_all()
    later = start_holder(keys, tmp_path)
    holders.append(later)
    assert claimed_index(later) == 0


def test_wait_is_announced_once_and_polls(tmp_path, holders, capsys):
    keys = ["GPU-a", "GPU-b"]
    holders += [start_holder(keys, tmp_path) for _ in keys]
    for proc in holders:
        claimed_index(proc)
    naps = []
    with pytest.raises(MTLReproError):
        gpus.claim(keys, tmp_path, poll_s=0.5, timeout_s=2.0, sleep=naps.append)
    assert naps == [0.5] * 4
    assert capsys.readouterr().err.count("--resources gpu=2") == 1


def fake_cuda(monkeypatch, count: int, uuids: list[str] | None):
    props = [types.SimpleNamespace(**({"uuid": u} if uuids else {})) for u in (uuids or [None] * count)]
    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_keys_follow_uuids_else_cuda_visible_devices(monkeypatch):
    fake_cuda(monkeypatch, 2, ["GPU-1111", "GPU-2222"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert gpus.visible_gpu_keys() == ["GPU-1111", "GPU-2222"]
    fake_cuda(monkeypatch, 2, None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # a job given physical GPUs 3 and 5
    assert gpus.visible_gpu_keys() == ["3", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpus.visible_gpu_keys() == ["0", "1"]


def test_claim_cuda_device_skips_a_gpu_held_elsewhere(tmp_path, monkeypatch, holders):
    chosen = fake_cuda(monkeypatch, 2, ["GPU-1111", "GPU-2222"])
    monkeypatch.setenv("MTLREPRO_GPU_LOCK_DIR", str(tmp_path))
    other = start_holder(["GPU-1111"] + ["GPU-other"], tmp_path)  # holds GPU-1111's lock
    holders.append(other)
    assert claimed_index(other) == 0
    assert gpus.claim_cuda_device() == torch.device("cuda", 1)
    assert chosen == [1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_auto_on_cpu_takes_no_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLREPRO_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert resolve_device("auto", exclusive=True) == torch.device("cpu")
    assert not (tmp_path / "locks").exists()
