"""Time of one training step of every MTL method relative to LS, on the same model and batch,
measured in one run: the digits-mtl CNN (10 binary tasks, batch 128) and the QM9 MPNN
(11 regression tasks, batch 120). CPU here; CUDA too when a GPU is present.

    python benchmarks/methods_step.py [--steps 30] [--methods ls mgda ...] [--device cpu]
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from mtlrepro import methods as registry
from mtlrepro.data import get as get_dataset
from mtlrepro.data.qm9 import TARGETS
from mtlrepro.stages import install_heads
from mtlrepro.training import build_method, make_optimizer, TrainConfig
from mtlrepro.step import training_step

SKIP = {"stl"}  # STL trains K single-task models: not a step of one MTL model


def digits_batch(batch_size: int):
    import numpy as np
    from sklearn.datasets import load_digits

    spec = get_dataset("digits-mtl")
    config = {"model": {"channels": 64, "kernel": 3}}
    tasks = spec.tasks(config)
    data = load_digits()
    x = torch.tensor((data.images[:batch_size] - 4.9) / 6.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor((data.target[:batch_size, None] == np.arange(10)[None]).astype("float32"))
    return spec, config, tasks, x, y


def qm9_batch(batch_size: int, tmp: Path):
    from mtlrepro.data.qm9 import QM9

    src = Path(md.distribution("qm9pack").locate_file("qm9pack/data")) / "qm9_part1.csv"
    df = pd.read_csv(src, nrows=batch_size + 40)
    raw = pd.DataFrame({"index": df["Index"], "smiles": df["SMILES"], "elements": df["Elements"],
                        "xyz": df["XYZ_Ang"], "n_atoms": df["N_atoms"]})
    for name, (column, _) in TARGETS.items():
        raw[name] = df[column].astype("float64")
    (tmp / "raw").mkdir(parents=True, exist_ok=True)
    (tmp / "out").mkdir(parents=True, exist_ok=True)
    raw.to_parquet(tmp / "raw" / "qm9.parquet", index=False)
    config = {"split": {"train": batch_size, "val": 20, "test": 20},
              "model": {"dim": 64, "message_passing_steps": 3, "set2set_steps": 3, "complete_graph": False}}
    spec = QM9()
    spec.preprocess(config, 0, tmp / "raw", tmp / "out")
    split = spec.load(config, tmp / "out", "train")
    inputs, targets = split.batch(torch.arange(batch_size))
    return spec, config, spec.tasks(config), inputs, targets


STUDY_HPARAMS: dict = {}


def time_method(name, spec, config, tasks, inputs, targets, device, steps, level=None):
    torch.manual_seed(0)
    model = spec.build_model(config, tasks).to(device)
    hparams = dict(STUDY_HPARAMS.get(name, {}))
    if level:
        hparams["level"] = level
    gen = torch.Generator(device=device).manual_seed(0)
    method = build_method(name, hparams, tasks, gen, [len(targets)] * len(tasks))
    install_heads(model, method, tasks)
    model.to(device)
    method.to(device)
    cfg = TrainConfig(epochs=1, batch_size=len(targets), lr=1e-3, weight_decay=0.0, scheduler={"name": "none"}, seed=0)
    opt = make_optimizer(model, method, cfg)
    inputs, targets = inputs.to(device), targets.to(device)
    model.train()
    times = []
    for i in range(steps + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        training_step(model, method, tasks, inputs, targets, opt)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda; default: cpu, and cuda too if present")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="params.yaml", help="method hyper-parameters of the study")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mtlrepro import params as P

    STUDY_HPARAMS.update(P.load(args.params)["method"])
    names = args.methods or [n for n in registry.names() if n not in SKIP]
    if "ls" not in names:
        names = ["ls", *names]
    devices = [torch.device(args.device)] if args.device else (
        [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else []))
    with tempfile.TemporaryDirectory() as tmp:
        setups = {"digits-mtl CNN (K=10, B=128)": digits_batch(128),
                  "qm9 MPNN (K=11, B=120)": qm9_batch(120, Path(tmp))}
        rows = []
        for device in devices:
            for label, (spec, config, tasks, x, y) in setups.items():
                time_method("ls", spec, config, tasks, x, y, device, 5)  # warm-up: allocator, threads
                base = time_method("ls", spec, config, tasks, x, y, device, args.steps)
                variants = [(n, None) for n in names]
                # the paper's top block: MGDA and IMTL-G on the shared parameters
                variants += [(n, "parameters") for n in ("mgda", "imtl_g") if n in names]
                for name, level in variants:
                    t = base if (name, level) == ("ls", None) else time_method(
                        name, spec, config, tasks, x, y, device, args.steps, level)
                    rows.append({"device": device.type, "setting": label,
                                 "method": name + (" (params)" if level else ""),
                                 "ms/step": 1000 * t, "x LS": t / base})
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index="method", columns=["device", "setting"], values="x LS", sort=False)
    print("step time relative to LS (same model, batch and run; median of", args.steps, "steps)")
    print(wide.round(2).to_markdown())
    print()
    print("LS ms/step:", {f"{r['device']} {r['setting']}": round(r["ms/step"], 1)
                          for r in rows if r["method"] == "ls"})


if __name__ == "__main__":
    main()
