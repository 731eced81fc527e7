"""BayesAgg-MTL with the warm start's Adam state reset (the study's default) or kept (one Adam
optimiser across the LS warm-up, as the authors' code), through the real stages.

For each dataset: download, validate, preprocess once; per seed: the reference (`--reference`:
LS by default, which costs one run; STL costs one run per task), then for each option
pretrain-LS and BayesAgg-MTL, all evaluated on the test split. Prints Delta_m (%, lower is
better, against the reference's mean over the seeds) and the mean over tasks of the primary
metric, per run and option.

    python benchmarks/warm_start_optimizer.py --params params.yaml --seeds 0 1 --work /tmp/wso
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.report.measures import delta_m

OPTIONS = ("reset", "keep")


def study_params(base: dict, datasets: list[str], seeds: list[int], option: str, reference: str) -> dict:
    """The params with one study (the reference, BayesAgg-MTL) and `warm_start_optimizer: option`."""
    params = copy.deepcopy(base)
    params["device"] = "cpu"
    params["studies"] = {"bayesagg": {"datasets": datasets, "methods": [reference, "bayesagg"],
                                      "reference": reference, "seeds": seeds, "published": "bayesagg"}}
    for name in datasets:
        params["dataset"][name]["train"]["warm_start_optimizer"] = option
    return P.validate(params)


def prepare(params: dict, dataset: str, work: Path) -> Path:
    root = work / dataset
    if not (root / "processed").exists():
        stages.download(params, dataset, root / "raw")
        stages.validate(params, dataset, root / "raw", root / "validation.json", root / "validation.html")
        stages.preprocess(params, dataset, root / "raw", root / "validation.json", root / "processed")
    return root / "processed"


def train_and_evaluate(params: dict, dataset: str, method: str, processed: Path, run_dir: Path, seed: int,
                       pretrain: Path | None = None) -> dict:
    out = run_dir / f"eval_seed{seed}.json"
    if not out.exists():
        stages.train(params, dataset, method, processed, pretrain, 100, seed, run_dir / f"model_seed{seed}",
                     run_dir / f"log_seed{seed}.json")
        stages.evaluate(params, dataset, method, processed, run_dir / f"model_seed{seed}", 100, seed, out)
    return json.loads(out.read_text())


def primary(evaluation: dict) -> dict[str, float]:
    return {t: v["metrics"][v["primary"]] for t, v in evaluation["tasks"].items()}


def run_dataset(base: dict, dataset: str, seeds: list[int], work: Path, reference: str) -> dict:
    """{run label: [evaluation per seed]} for the reference and BayesAgg-MTL under each option."""
    runs: dict[str, list[dict]] = {}
    for option in OPTIONS:
        params = study_params(base, [dataset], seeds, option, reference)
        processed = prepare(params, dataset, work)
        for seed in seeds:
            if option == OPTIONS[0]:  # the reference does not warm-start: the option does not reach it
                runs.setdefault(reference, []).append(train_and_evaluate(
                    params, dataset, reference, processed, work / dataset / reference, seed))
            pre = work / dataset / f"pretrain_{option}" / f"seed{seed}"
            if not pre.exists():
                stages.pretrain(params, dataset, processed, 100, seed, pre)
            runs.setdefault(f"bayesagg/{option}", []).append(train_and_evaluate(
                params, dataset, "bayesagg", processed, work / dataset / f"bayesagg_{option}", seed, pre))
    return runs


def summarise(dataset: str, runs: dict[str, list[dict]], ref: str) -> list[str]:
    reference = {t: float(np.mean([primary(e)[t] for e in runs[ref]])) for t in primary(runs[ref][0])}
    higher = {t: v["higher_is_better"] for t, v in runs[ref][0]["tasks"].items()}
    lines = [f"## {dataset} (Delta_m against {ref})", "",
             "| run | Delta_m % per seed | Delta_m % mean +- std | mean primary metric |", "| --- | --- | --- | --- |"]
    for label, evaluations in runs.items():
        deltas = [delta_m(primary(e), reference, higher) for e in evaluations]
        mean_primary = np.mean([np.mean(list(primary(e).values())) for e in evaluations])
        lines.append(f"| {label} | {', '.join(f'{d:+.2f}' for d in deltas)} | "
                     f"{np.mean(deltas):+.2f} +- {np.std(deltas):.2f} | {mean_primary:.4f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--datasets", nargs="+", default=["digits-mtl", "qm9"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--reference", choices=["ls", "stl"], default="ls")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = P.load(args.params)
    t0 = time.perf_counter()
    lines = []
    for dataset in args.datasets:
        runs = run_dataset(base, dataset, args.seeds, args.work, args.reference)
        lines += summarise(dataset, runs, args.reference) + [""]
    print("\n".join(lines))
    print(f"({time.perf_counter() - t0:.0f} s; params {args.params}, seeds {args.seeds})")


if __name__ == "__main__":
    main()
