"""One GPU per training process on a machine with several: an exclusive file lock per GPU.

`snakemake --cores 8 --resources gpu=2 all` lets two training jobs run at once, but Snakemake
does not say *which* GPU a job holds, and CUDA's default device is the first one for everybody.
So a training process that resolves `device: auto` takes an exclusive `flock` on one lock file
per visible GPU, the first free one, and trains on that GPU. The lock lives as long as the
process: the kernel releases it when the process exits or is killed (SIGKILL, scancel, OOM), so
no lock outlives its holder and nothing needs cleaning up.

- Visible GPUs are the ones torch sees, so CUDA_VISIBLE_DEVICES (set by SLURM for the GPUs it
  gave a job) is respected. With one visible GPU there is nothing to choose and no lock is taken.
- A lock is named by the GPU's identity (its UUID when torch reports one, else its entry in
  CUDA_VISIBLE_DEVICES, else its index), so two jobs that each see "their" GPU as cuda:0 do not
  contend for one lock.
- When every GPU is taken (more training jobs than GPUs: `--resources gpu=N` was not given), the
  process waits for one to be released rather than sharing a GPU.
- Lock folder: $MTLREPRO_GPU_LOCK_DIR, else <tmp>/mtlrepro-gpu-locks-<uid>; it must be local
  to the machine whose GPUs it guards (not a shared network folder).
"""
from __future__ import annotations

import fcntl
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from .io import MTLReproError

# Open lock files of this process, by GPU key: holding the descriptor holds the lock.
_HELD: dict[str, int] = {}


def lock_dir() -> Path:
    configured = os.environ.get("MTLREPRO_GPU_LOCK_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"mtlrepro-gpu-locks-{os.getuid()}"


def _lock_file(directory: Path, key: str) -> Path:
    # keys are UUIDs or indices; anything else is reduced to a safe file name
    return directory / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.lock"


def try_lock(directory: Path, key: str) -> bool:
    """Take the lock of GPU `key` without waiting; True if this process holds it now."""
    if key in _HELD:
        return True
    directory.mkdir(parents=True, exist_ok=True)
    path = _lock_file(directory, key)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise MTLReproError(f"cannot open the GPU lock file {path}: {err} "
                            f"(set MTLREPRO_GPU_LOCK_DIR to a writable local folder)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a human looking at the folder
    _HELD[key] = fd
    return True


def release_all() -> None:
    """Drop every lock this process holds (the process's exit does the same)."""
    for fd in _HELD.values():
        os.close(fd)
    _HELD.clear()


def claim(keys: Sequence[str], directory: Path | None = None, poll_s: float = 1.0,
          timeout_s: float | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """The index (into `keys`) of the GPU this process gets, locked until the process ends.

    One key: index 0, no lock. Several: the first whose lock is free; if none is, wait (polling
    every `poll_s`) until one is released, or raise after `timeout_s` (None: wait for ever).
    """
    if not keys:
        raise MTLReproError("no GPU to claim: the list of visible GPUs is empty")
    if len(keys) == 1:
        return 0
    directory = lock_dir() if directory is None else directory
    for index, key in enumerate(keys):  # a GPU this process already holds stays its GPU
        if key in _HELD:
            return index
    waited, announced = 0.0, False
    while True:
        for index, key in enumerate(keys):
            if try_lock(directory, key):
                return index
        if timeout_s is not None and waited >= timeout_s:
            raise MTLReproError(f"all {len(keys)} GPUs stayed locked by other processes for {timeout_s:g} s "
                                f"(lock folder {directory})")
        if not announced:
            print(f"mtlrepro: all {len(keys)} GPUs are held by other jobs; waiting for one "
                  f"(run Snakemake with --resources gpu={len(keys)} to avoid this)", file=sys.stderr)
            announced = True
        sleep(poll_s)
        waited += poll_s


def visible_gpu_keys() -> list[str]:
    """A stable identity for each GPU torch can see, in torch's index order."""
    import torch

    count = torch.cuda.device_count()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    keys = []
    for index in range(count):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            keys.append(str(uuid))
        elif len(visible) == count:
            keys.append(visible[index])
        else:
            keys.append(str(index))
    return keys


def claim_cuda_device():
    """torch.device of a GPU of its own for this process (call only when CUDA is available)."""
    import torch

    index = claim(visible_gpu_keys())
    torch.cuda.set_device(index)
    return torch.device("cuda", index)
