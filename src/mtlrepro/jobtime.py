"""Where a stage's process spends its time, recorded only when MTLREPRO_PROFILE names a folder
(benchmarks/study_time.py sets it): one JSON per process with the seconds of each phase,

    startup  process start -> the CLI's main (the interpreter, mtlrepro's own imports)
    imports  the stage's module, torch and the method registry
    load     the inputs: data splits, checkpoints, pre-trained weights
    compute  training, evaluation, validation, tables
    write    the outputs and their sidecars

A phase runs from its `begin` to the next one; the last ends when the process writes the record.
Without MTLREPRO_PROFILE every call is a no-op."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

_folder = os.environ.get("MTLREPRO_PROFILE")
_phases: dict[str, float] = {}
_current: list = []   # [phase name, its start (time.time())]
_imported = time.time()
_started = _imported  # the process's start (wall clock), set by the first `begin`


def _process_start() -> float:
    """When this process started (wall clock, to 10 ms): Linux's /proc, else the import of this module."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return _imported


def begin(phase: str) -> None:
    if _folder is None:
        return
    now = time.time()
    if not _current:
        global _started
        _started = _process_start()
        _current[:] = ["startup", _started]
    _phases[_current[0]] = _phases.get(_current[0], 0.0) + now - _current[1]
    _current[:] = [phase, now]


def finish(stage: str, **labels) -> None:
    """Write this process's record (stage, labels such as dataset and method, phase seconds)."""
    if _folder is None or not _current:
        return
    begin("end")
    folder = Path(_folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, **labels, "started": round(_started, 3),
              "seconds": {k: round(v, 4) for k, v in _phases.items()}}
    tmp = folder / f".{os.getpid()}-{time.time_ns()}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(tmp.with_name(tmp.name[1:-4] + ".json"))
