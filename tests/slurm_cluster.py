"""A throw-away one-node SLURM cluster on localhost for tests: munge, slurmctld and slurmd as root,
all their state, sockets, logs and configuration in one folder, on free ports, so nothing in
/etc or /var is used and a second cluster (another test run) cannot collide with this one.

The node is declared larger than the machine (SlurmdParameters=config_overrides: slurmd trusts
slurm.conf over the hardware) so the workflow's real per-rule requests (4 CPUs, 16 GB, one GPU)
schedule as they would on a cluster; without cgroups nothing enforces them. The GPU is a fake
GRES (File=/dev/null) on the `gpu` partition. There is no slurmdbd: sacct does not work, which is
what the SLURM profile's squeue status command is for.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
PACKAGES = ("slurm-wlm", "munge")
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full")


class ClusterUnavailable(Exception):
    """The machine cannot run the cluster (not root, no packages and no way to install them)."""


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def ensure_installed(timeout_s: float = 300) -> float:
    """Install Debian's slurm-wlm and munge if a daemon is missing; seconds spent installing."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("needs root to start munged, slurmctld and slurmd")
    if all(shutil.which(d) for d in DAEMONS + ("sbatch", "squeue", "scancel", "mungekey")):
        return 0.0
    if not shutil.which("apt-get"):
        raise ClusterUnavailable("SLURM is not installed and there is no apt-get to install it")
    t0 = time.perf_counter()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        update = _run(["apt-get", "update", "-qq"], timeout_s / 2, env)
        if update.returncode != 0:
            raise ClusterUnavailable(f"apt-get update failed (no Debian mirror reachable?): {update.stderr[-500:]}")
        install = _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], timeout_s, env)
    except subprocess.TimeoutExpired:
        raise ClusterUnavailable(f"installing {' '.join(PACKAGES)} took over {timeout_s:g} s") from None
    if install.returncode != 0 or not all(shutil.which(d) for d in DAEMONS):
        raise ClusterUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {install.stderr[-500:]}")
    return time.perf_counter() - t0


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalSlurm:
    """`with LocalSlurm(folder) as cluster:` starts the daemons and always stops them."""

    def __init__(self, root: Path, cpus: int = 8, memory_mb: int = 64000, gpus: int = 1,
                 min_job_age_s: int = 600):
        if gpus > len(FAKE_GPU_DEVICES):
            raise ValueError(f"at most {len(FAKE_GPU_DEVICES)} fake GPUs")
        self.root = root
        self.cpus, self.memory_mb, self.gpus, self.min_job_age_s = cpus, memory_mb, gpus, min_job_age_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = root / "etc" / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"

    @property
    def env(self) -> dict:
        """What a SLURM client (sbatch, squeue, scancel, Snakemake's plugin) needs to reach this
        cluster. The srun shim comes first on PATH: Snakemake's job step drops SLURM_* variables
        (SLURM_CONF with them) before it calls srun, which a real cluster never notices because
        its configuration sits in /etc/slurm."""
        return {"SLURM_CONF": str(self.conf), "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def _write_srun_shim(self) -> None:
        srun = shutil.which("srun")
        shim = self.root / "bin" / "srun"
        shim.parent.mkdir(parents=True, exist_ok=True)
        shim.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{srun}" "$@"\n')
        shim.chmod(0o755)

    def _write_config(self) -> None:
        for sub in ("etc", "state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ctld_port, d_port = _free_ports(2)
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        r = self.root
        self.conf.write_text(f"""\
ClusterName=mtlrepro-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/state/slurmctld.pid
SlurmdPidFile={r}/state/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
ReturnToService=2
MinJobAge={self.min_job_age_s}
KillWait=5
InactiveLimit=0
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb}{gres} State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
""")
        # one harmless character device per fake GPU: a GRES without File= leaves the node INVAL
        devices = FAKE_GPU_DEVICES[:self.gpus]
        (r / "etc" / "gres.conf").write_text("".join(f"NodeName=localhost Name=gpu File={d}\n" for d in devices))

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=dict(os.environ, **self.env))
        log.close()

    def start(self, timeout_s: float = 60) -> "LocalSlurm":
        self._write_config()
        self._write_srun_shim()
        m = self.root / "munge"
        key = _run(["mungekey", "--create", "--force", f"--keyfile={m / 'munge.key'}"], 30)
        if key.returncode != 0:
            raise RuntimeError(f"mungekey failed: {key.stderr}")
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={m / 'munge.key'}", f"--pid-file={m / 'munged.pid'}",
                               f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munge.seed'}"])
        self._wait(lambda: self.munge_socket.exists(), timeout_s, "munged to open its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.client(["sinfo", "-h"]).returncode == 0, timeout_s, "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
        self._wait(self._node_idle, timeout_s, "the node to become idle")
        return self

    def _node_idle(self) -> bool:
        state = self.client(["sinfo", "-h", "-N", "-o", "%T"]).stdout.split()
        if any(s.startswith(("drain", "down", "inval")) for s in state):
            self.client(["scontrol", "update", "nodename=localhost", "state=resume"])
        return bool(state) and all(s == "idle" for s in state)

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}:\n{self.logs()}")

    def client(self, cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return _run(cmd, timeout, dict(os.environ, **self.env))

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if path.is_file():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def stop(self, timeout_s: float = 30) -> None:
        """Cancel what is left, then stop the daemons in reverse order (never raises)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.client(["scancel", "--full", "--user", "root"], timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                    proc.wait(timeout=timeout_s)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, 9)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=timeout_s)
        self.procs.clear()

    def __enter__(self) -> "LocalSlurm":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
