"""Helpers that read the Snakemake and DVC DAGs of a copy of the workflow."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "dvc.yaml", "params.yaml", "workflow", "profiles", "environment.yml", "src", ".gitignore")
BIN = Path(sys.executable).parent


def tool_env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(XDG_CACHE_HOME=str(tmp / ".cache"), DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="False",
               MTLREPRO_PROGRESS="0", PATH=f"{BIN}:{env.get('PATH', '')}",
               GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.org",
               GIT_COMMITTER_NAME="ci", GIT_COMMITTER_EMAIL="ci@example.org")
    return env


def copy_workflow(dst: Path, params: Path | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dst / name)
    if params is not None:
        shutil.copy(params, dst / "params.yaml")
        write_dvc_yaml(dst)
    return dst


def write_dvc_yaml(work: Path) -> None:
    """dvc.yaml for the copy's params, as `python -m mtlrepro dvc-yaml` writes it."""
    from mtlrepro import dvcgen, params as P

    dvcgen.write(P.load(work / "params.yaml"), work / "dvc.yaml")


def parse_command(cmd: str) -> tuple[str, dict]:
    """`python -m mtlrepro STAGE --k v ...` -> (stage, {k: v}) without the runner-only options."""
    cmd = re.sub(r"\s+2>\s*\S+\s*$", "", " ".join(cmd.split()))
    words = shlex.split(cmd)
    assert words[:3] == ["python", "-m", "mtlrepro"], cmd
    args: dict = {}
    for word in words[4:]:  # an option takes every word up to the next option
        if word.startswith("--"):
            key = word
            args[key] = ()
        else:
            args[key] = (*args[key], word)
    args = {k: v[0] if len(v) == 1 else v for k, v in args.items()}
    args.pop("--threads", None)
    if args.get("--params") == "params.yaml":
        args.pop("--params")
    return words[3], args


def snakemake_dag(workdir: Path, *extra: str) -> list[dict]:
    """The jobs of `snakemake -n -p --forceall all` (then `extra`, e.g. --configfile FILE)."""
    out = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--forceall", "all", *extra], cwd=workdir,
                         env=tool_env(workdir), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs, job = [], None
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        if line.startswith("rule ") or line.startswith("localrule "):
            job = {"rule": line.split()[1].rstrip(":"), "input": [], "output": [], "cmd": None}
            jobs.append(job)
        elif job is not None and line.startswith("    input: "):
            job["input"] = line[len("    input: "):].split(", ")
        elif job is not None and line.startswith("    output: "):
            job["output"] = line[len("    output: "):].split(", ")
        elif job is not None and line.startswith("Shell command: "):
            job["cmd"] = line[len("Shell command: "):]
    return [j for j in jobs if j["rule"] != "all"]


def dvc_dag(workdir: Path) -> list[dict]:
    if not (workdir / ".dvc").exists():
        subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=workdir, env=tool_env(workdir), check=True)
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(workdir)) as repo:
        return [{"stage": s.addressing, "cmd": s.cmd,
                 "input": [d.def_path for d in s.deps if not isinstance(d, ParamsDependency)],
                 "output": [o.def_path for o in s.outs]} for s in repo.index.stages]


def graph(jobs: list[dict]) -> tuple[set, set]:
    """Nodes: each job's set of outputs. Edges: producer -> consumer, where a consumer's input is a
    producer's output or a folder holding it (DVC's rule for directory dependencies)."""
    nodes = {frozenset(j["output"]) for j in jobs}
    producers = [(frozenset(j["output"]), out) for j in jobs for out in j["output"]]
    edges = set()
    for job in jobs:
        consumer = frozenset(job["output"])
        for dep in job["input"]:
            for node, out in producers:
                if out == dep or out.startswith(dep.rstrip("/") + "/"):
                    edges.add((node, consumer))
    return nodes, edges
