"""`python -m mtlrepro <stage> ...`: one subcommand per pipeline stage, paths given explicitly so
each stage reads only its declared dependencies and writes only its declared outputs.

`STAGES` is the one table of stages: each names its function (imported only when it runs, so a
data job never imports the training code) and its options, which are the function's arguments."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import jobtime
from .io import MTLReproError


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device (auto, cpu, mps, cuda or cuda:N)")
    return value


def _natural(value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a non-negative integer")
    return int(value)


def _percent(value: str) -> int:
    number = _natural(value)
    if not 0 < number <= 100:
        raise argparse.ArgumentTypeError(f"{value!r} is not a percent in 1..100")
    return number


# option -> (argparse keyword arguments); a stage lists the options it takes, in its function's order
OPTIONS = {
    "study": dict(required=True), "dataset": dict(required=True), "method": dict(required=True),
    "fraction": dict(type=_percent, default=100, help="percent of the training split"),
    "seed": dict(type=_natural, required=True),
    "raw": dict(type=Path, required=True), "validation": dict(type=Path, required=True),
    "processed": dict(type=Path, required=True), "model": dict(type=Path, required=True),
    "pretrain": dict(type=Path, default=None, help="pretrain-LS folder (warm-start methods)"),
    "evals": dict(type=Path, nargs="+", required=True, help="the reference method's evaluations, one per seed"),
    "summaries": dict(type=Path, nargs="+", required=True, help="reports/<study>/summary.json of every study"),
    "device": dict(type=_device, default=None, help="override params device (auto, cpu, cuda, cuda:N)"),
    **{name: dict(type=Path, required=True) for name in (
        "out", "log", "out-json", "out-html", "eval-dir", "robustness-dir", "reference-dir", "logs-dir",
        "tables", "figures", "summary", "index")},
}


@dataclass(frozen=True)
class Stage:
    target: str               # "module:function" under mtlrepro
    options: tuple[str, ...]  # the function's arguments after params, in order
    help: str


STAGES = {
    "download": Stage("stages.data:download", ("dataset", "out"),
                      "locate/fetch raw data, verify checksums, write data/raw/<dataset>"),
    "validate": Stage("stages.data:validate", ("dataset", "raw", "out-json", "out-html"),
                      "Great Expectations suite on the raw data"),
    "preprocess": Stage("stages.data:preprocess", ("dataset", "raw", "validation", "out"),
                        "splits, normalisation statistics, Parquet"),
    "pretrain": Stage("stages.fit:pretrain", ("dataset", "processed", "fraction", "seed", "out", "device"),
                      "linear-scalarisation warm-up checkpoint"),
    "train": Stage("stages.fit:train", ("dataset", "method", "processed", "pretrain", "fraction", "seed", "out",
                                          "log", "device"), "train one dataset x method x fraction x seed"),
    "evaluate": Stage("stages.eval:evaluate", ("dataset", "method", "processed", "model", "fraction", "seed", "out",
                                               "device"), "per-task test metrics of a trained model"),
    "robustness": Stage("stages.eval:robustness", ("dataset", "method", "processed", "model", "seed", "out",
                                                   "device"),
                        "test metrics under Gaussian and fast-gradient perturbations"),
    "reference": Stage("stages.results:reference", ("study", "dataset", "evals", "out"),
                       "a study's STL reference (mean over its seeds) that Delta_m is measured against"),
    "aggregate": Stage("stages.results:aggregate", ("study", "eval-dir", "robustness-dir", "reference-dir",
                                                    "logs-dir", "tables", "figures", "summary"),
                       "one study's result tables (Markdown, LaTeX, CSV) and figures"),
    "report": Stage("stages.results:report", ("summaries", "index", "summary"),
                    "the index of every study's tables and the merged metrics summary"),
    "dvc-yaml": Stage("dvcgen:write", ("out",), "write dvc.yaml from params (the studies' runs, flat and explicit)"),
}


TORCH_STAGES = ("stages.fit", "stages.eval")  # the modules whose stages run models


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtlrepro", description=__doc__)
    sub = parser.add_subparsers(dest="stage", required=True)
    for name, stage in STAGES.items():
        p = sub.add_parser(name, help=stage.help)
        p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
        p.add_argument("--threads", type=_natural, default=int(os.environ.get("MTLREPRO_THREADS", "1")),
                       help="CPU threads for torch (default 1: the workflow runs jobs side by side)")
        for option in stage.options:
            p.add_argument(f"--{option}", **OPTIONS[option])
    return parser


def run(args: argparse.Namespace) -> None:
    from . import params as P

    params = P.load(args.params)
    stage = STAGES[args.stage]
    module, function = stage.target.split(":")
    if module in TORCH_STAGES:
        from .checks import check_methods  # the method registry, and so torch
        import torch

        check_methods(params, str(args.params))
        torch.set_num_threads(max(1, args.threads))
    call = getattr(importlib.import_module(f"{__package__}.{module}"), function)
    jobtime.begin("load" if module in TORCH_STAGES else "compute")  # a model stage marks its compute itself
    call(params, *(getattr(args, option.replace("-", "_")) for option in stage.options))


def main(argv: list[str] | None = None) -> int:
    jobtime.begin("imports")
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except MTLReproError as err:
        print(f"mtlrepro {args.stage}: error: {err}", file=sys.stderr)
        return 2
    jobtime.finish(args.stage, **{k: getattr(args, k) for k in ("dataset", "method", "fraction")
                                  if getattr(args, k, None) is not None})
    return 0


def end_process(code: int) -> None:
    """Ends a stage's process (`python -m mtlrepro`) without the interpreter's teardown, which
    with torch loaded costs about 0.9 s of CPU per job (measured on the download stage: 3.7 s ->
    2.8 s). Every output is written, closed and renamed into place before the stage returns; the
    atexit handlers (logging's flush among them) still run, and the standard streams are flushed.
    Under a profiler or tracer (cProfile, coverage), which writes its results at teardown, the
    process ends normally."""
    import atexit

    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing left to lose
            pass
    os._exit(code)


if __name__ == "__main__":
    end_process(main())
