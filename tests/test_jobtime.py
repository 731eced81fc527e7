"""The per-job time profile (mtlrepro.jobtime) that benchmarks/study_time.py prints."""
import json
import os
import subprocess
import sys
import time

from tests.conftest import CI_PARAMS


def _download(tmp_path, env):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mtlrepro", "download", "--params", str(CI_PARAMS), "--dataset",
                    "digits-mtl", "--out", str(tmp_path / "raw")], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def test_a_job_records_its_phases_which_add_up_to_its_lifetime(tmp_path):
    folder = tmp_path / "profile"
    wall = _download(tmp_path, {**os.environ, "MTLREPRO_PROFILE": str(folder)})
    (record,) = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert record["stage"] == "download" and record["dataset"] == "digits-mtl"
    seconds = record["seconds"]
    assert set(seconds) == {"startup", "imports", "compute"} and min(seconds.values()) >= 0
    # the phases cover the process from its start (to /proc's 10 ms) to the record
    assert wall - 0.5 < sum(seconds.values()) <= wall + 0.05
    assert not list(folder.glob(".*"))  # written atomically: no temp file left


def test_nothing_is_recorded_without_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MTLREPRO_PROFILE"}
    _download(tmp_path, env)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
