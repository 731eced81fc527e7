"""`python -m mtlrepro <stage> ...`: one subcommand per pipeline stage, paths given explicitly so
each stage reads only its declared dependencies and writes only its declared outputs."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .io import MTLReproError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("MTLREPRO_THREADS", "1")),
                   help="CPU threads for torch (default 1: the workflow runs jobs side by side)")


def _run_args(p, *, method=False, fraction=False, seed=False):
    p.add_argument("--dataset", required=True)
    if method:
        p.add_argument("--method", required=True)
    if fraction:
        p.add_argument("--fraction", type=int, default=100, help="percent of the training split")
    if seed:
        p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default=None, help="override params device (auto, cpu, cuda, cuda:N)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtlrepro", description=__doc__)
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("download", help="locate/fetch raw data, verify checksums, write data/raw/<dataset>")
    _common(p); p.add_argument("--dataset", required=True); p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("validate", help="Great Expectations suite on the raw data")
    _common(p); p.add_argument("--dataset", required=True); p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--out-json", type=Path, required=True); p.add_argument("--out-html", type=Path, required=True)

    p = sub.add_parser("preprocess", help="splits, normalisation statistics, Parquet")
    _common(p); p.add_argument("--dataset", required=True); p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--validation", type=Path, required=True); p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("pretrain", help="linear-scalarisation warm-up checkpoint")
    _common(p); _run_args(p, fraction=True, seed=True)
    p.add_argument("--processed", type=Path, required=True); p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("train", help="train one dataset x method x fraction x seed")
    _common(p); _run_args(p, method=True, fraction=True, seed=True)
    p.add_argument("--processed", type=Path, required=True)
    p.add_argument("--pretrain", type=Path, default=None, help="pretrain-LS folder (warm-start methods)")
    p.add_argument("--out", type=Path, required=True); p.add_argument("--log", type=Path, required=True)

    p = sub.add_parser("evaluate", help="per-task test metrics of a trained model")
    _common(p); _run_args(p, method=True, fraction=True, seed=True)
    p.add_argument("--processed", type=Path, required=True); p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("robustness", help="test metrics under Gaussian and fast-gradient perturbations")
    _common(p); _run_args(p, method=True, seed=True)
    p.add_argument("--processed", type=Path, required=True); p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("reference", help="the STL reference (mean over seeds) that Delta_m is measured against")
    _common(p); p.add_argument("--dataset", required=True)
    p.add_argument("--evals", type=Path, required=True, help="folder of STL evaluations at 100%%")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("aggregate", help="result tables (Markdown, LaTeX, CSV) and figures")
    _common(p)
    for name in ("eval-dir", "robustness-dir", "reference-dir", "logs-dir", "tables", "figures", "summary"):
        p.add_argument(f"--{name}", type=Path, required=True)
    return parser


def run(args: argparse.Namespace) -> None:
    from . import params as P

    params = P.load(args.params)
    P.check_methods(params, str(args.params))
    import torch

    torch.set_num_threads(max(1, args.threads))
    from . import stages

    stage = args.stage
    if stage == "download":
        stages.download(params, args.dataset, args.out)
    elif stage == "validate":
        stages.validate(params, args.dataset, args.raw, args.out_json, args.out_html)
    elif stage == "preprocess":
        stages.preprocess(params, args.dataset, args.raw, args.validation, args.out)
    elif stage == "pretrain":
        stages.pretrain(params, args.dataset, args.processed, args.fraction, args.seed, args.out, args.device)
    elif stage == "train":
        stages.train(params, args.dataset, args.method, args.processed, args.pretrain, args.fraction,
                     args.seed, args.out, args.log, args.device)
    elif stage == "evaluate":
        stages.evaluate(params, args.dataset, args.method, args.processed, args.model, args.fraction,
                        args.seed, args.out, args.device)
    elif stage == "robustness":
        stages.robustness(params, args.dataset, args.method, args.processed, args.model, args.seed,
                          args.out, args.device)
    elif stage == "reference":
        from .aggregate import build_reference

        files = [args.evals / f"seed{s}.json" for s in params["seeds"]]
        build_reference(files, args.out)
    elif stage == "aggregate":
        from .aggregate import aggregate

        aggregate(params, args.eval_dir, args.robustness_dir, args.reference_dir, args.tables,
                  args.figures, args.summary, logs_dir=args.logs_dir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except MTLReproError as err:
        print(f"mtlrepro {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
