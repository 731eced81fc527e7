"""How long the study takes: the whole default study on 2 CPU cores, and Snakemake's dry run of a
full-size grid (5 datasets x 20 methods x 3 seeds with both ablations, plus InfoMTL's study on
2 text datasets x 16 methods).

    python benchmarks/study_time.py              # both (the study takes minutes)
    python benchmarks/study_time.py --dry-only   # only the full-grid dry run
    python benchmarks/study_time.py --study-only --methods stl ls --study-target-min 15

Each is printed with its target, as a ratio (< 1 meets it). The study also prints where its jobs
spend their time: per stage and dataset, the jobs' summed seconds split into the phases of
`mtlrepro.jobtime` (startup, imports, load, compute, write), so the budget shows at a glance.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FILES = ("Snakefile", "dvc.yaml", "params.yaml", "workflow", "profiles", "environment.yml")
FULL_METHODS = ["stl", "ls", "si", "rlw", "dwa", "uw", "gls", "tw", "imtl_l", "igbv2", "mgda", "pcgrad",
                "cagrad", "imtl_g", "nash_mtl", "aligned_mtl", "bayesagg", "infomtl", "vmtl", "mt_vib"]
FULL_DATASETS = ["digits-mtl", "qm9", "cifar-mtl", "utkface", "chestx-ray14"]
FULL_TEXT_DATASETS = ["rotten-tomatoes", "tweeteval"]
FULL_TEXT_METHODS = ["stl", "ls", "tw", "si", "uw", "gls", "dwa", "pcgrad", "imtl_l", "rlw", "mt_vib", "vmtl",
                     "hmtl", "infomtl", "infomtl_no_simax", "infomtl_no_timin"]  # InfoMTL's Tables 1-4


def copy_workflow(dst: Path, params: dict) -> Path:
    for name in FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


def env(tmp: Path) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp / ".cache"), "MTLREPRO_PROGRESS": "0",
            "MTLREPRO_PROFILE": str(tmp / ".profile"), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


PHASES = ("startup", "imports", "load", "compute", "write")


def job_profile(folder: Path) -> str:
    """The jobs' seconds per stage and dataset, by phase (each job's record from mtlrepro.jobtime)."""
    groups: dict = collections.defaultdict(lambda: collections.Counter())
    jobs: collections.Counter = collections.Counter()
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())
        key = (record["stage"], record.get("dataset", ""))
        groups[key].update(record["seconds"])
        jobs[key] += 1
    total = sum(sum(c.values()) for c in groups.values()) or 1.0
    lines = [f"{'stage':<11}{'dataset':<17}{'jobs':>5}{'s/job':>7}{'total s':>9}{'share':>7}  "
             + "".join(f"{p:>9}" for p in PHASES)]
    for key, seconds in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
        whole = sum(seconds.values())
        lines.append(f"{key[0]:<11}{key[1]:<17}{jobs[key]:>5}{whole / jobs[key]:>7.1f}{whole:>9.0f}"
                     f"{whole / total:>7.1%}  " + "".join(f"{seconds[p] / whole:>9.0%}" for p in PHASES))
    phase_total = {p: sum(c[p] for c in groups.values()) for p in PHASES}
    lines.append(f"{'all':<28}{sum(jobs.values()):>5}{total / max(1, sum(jobs.values())):>7.1f}{total:>9.0f}"
                 f"{1:>7.0%}  " + "".join(f"{phase_total[p] / total:>9.0%}" for p in PHASES))
    return "\n".join(lines)


def utilisation(folder: Path, wall: float, cores: int = 2) -> str:
    """How busy the cores were with mtlrepro jobs, and the longest jobs (the tail a DAG waits on)."""
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    busy = sum(sum(r["seconds"].values()) for r in records)
    longest = sorted(records, key=lambda r: -sum(r["seconds"].values()))[:5]
    names = ", ".join(f"{r['stage']} {r.get('dataset', '')} {r.get('method', '')} "
                      f"{sum(r['seconds'].values()):.0f} s".replace("  ", " ") for r in longest)
    return (f"jobs busy {busy:.0f} s of {cores} x {wall:.0f} s = {busy / (cores * wall):.0%} of the cores "
            f"(the rest: Snakemake, and cores idle where the DAG has one job ready); longest: {names}")


def full_grid_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["method"] = {m: {} for m in FULL_METHODS + FULL_TEXT_METHODS}
    template = params["dataset"]["digits-mtl"]
    for name in FULL_DATASETS:
        params["dataset"].setdefault(name, copy.deepcopy(template))
    params["studies"]["bayesagg"].update(datasets=FULL_DATASETS, methods=FULL_METHODS, ablations={
        "data_fraction": {"fractions": [20, 40, 60, 80], "methods": ["ls", "nash_mtl", "bayesagg", "infomtl", "vmtl"]},
        "robustness": {"methods": FULL_METHODS}})
    params["studies"]["infomtl"].update(datasets=FULL_TEXT_DATASETS, methods=FULL_TEXT_METHODS, ablations={
        "data_fraction": {"fractions": [20, 40, 60, 80], "methods": FULL_TEXT_METHODS[1:]},
        "robustness": {"methods": FULL_TEXT_METHODS}})
    return params


def dry_run(repeats: int = 3) -> tuple[float, int]:
    times, jobs = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(Path(tmp), full_grid_params())
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = subprocess.run([str(BIN / "snakemake"), "-n", "-q", "all"], cwd=work, env=env(work),
                                 capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if out.returncode != 0:
                sys.exit(out.stdout[-3000:] + out.stderr[-3000:])
            total = [line for line in out.stdout.splitlines() if line.startswith("total")]
            jobs = int(total[0].split()[1]) if total else 0
    return min(times), jobs


def restricted(params: dict, methods: list[str] | None) -> dict:
    """The default study with only some methods in every study (ablations keep the ones still there)."""
    if methods:
        for grid in params["studies"].values():
            grid["methods"] = [m for m in grid["methods"] if m in methods]
            for group in ("data_fraction", "robustness"):
                ablation = grid["ablations"][group]
                ablation["methods"] = [m for m in ablation["methods"] if m in methods]
    return params


def study(methods: list[str] | None = None) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        params = restricted(yaml.safe_load((REPO / "params.yaml").read_text()), methods)
        work = copy_workflow(Path(tmp), params)
        t0 = time.perf_counter()
        out = subprocess.run([str(BIN / "snakemake"), "--cores", "2", "all"], cwd=work, env=env(work),
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(out.stderr[-3000:])
        done = [line for line in out.stderr.splitlines() if "steps (100%) done" in line]
        return (elapsed, int(done[-1].split()[0]) if done else 0,
                job_profile(work / ".profile") + "\n" + utilisation(work / ".profile", elapsed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-only", action="store_true")
    parser.add_argument("--study-only", action="store_true")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="run the default study with only these methods (e.g. stl ls)")
    parser.add_argument("--study-target-min", type=float, default=20.0)
    args = parser.parse_args()
    if not args.study_only:
        seconds, jobs = dry_run()
        print(f"snakemake -n all, full grid ({len(FULL_DATASETS)} datasets x {len(FULL_METHODS)} methods x 3 seeds "
              f"+ ablations, + {len(FULL_TEXT_DATASETS)} x {len(FULL_TEXT_METHODS)} in InfoMTL's study, {jobs} jobs): {seconds:.2f} s  (target 10 s, ratio {seconds / 10:.2f})")
    if not args.dry_only:
        seconds, jobs, profile = study(args.methods)
        which = "methods " + " ".join(args.methods) if args.methods else "all methods"
        print(f"default study ({which}), snakemake --cores 2 all ({jobs} jobs): {seconds / 60:.1f} min  "
              f"(target {args.study_target_min:g} min, ratio {seconds / 60 / args.study_target_min:.2f})")
        print("where the jobs spend their time (process seconds; 2 jobs run at once):")
        print(profile)


if __name__ == "__main__":
    main()
