"""VMTL's representation-KL weight on digits-domains (VMTL's own setting, params.yaml's block):
the mean test accuracy over the 5 domains for each `kl_z_weight`, over seeds.

    python benchmarks/vmtl_kl_weight.py --work /tmp/vmtl_kl --weights 1 0.1 0.01 0.001 0 --seeds 0 1 2

About 15 s a run on one CPU thread. The paper's weight is 1; the default is 1e-3 (methods/vmtl.py).
"""
import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtlrepro import params as P  # noqa: E402
from mtlrepro import stages  # noqa: E402
from tests.conftest import write_validation_report  # noqa: E402


def digits_domains_params() -> dict:
    params = P.load(REPO / "params.yaml")
    params["device"] = "cpu"
    study = params["studies"]["bayesagg"]
    study.update(datasets=["digits-domains"], methods=["stl", "vmtl"])
    study.pop("sweep", None)
    study["ablations"] = {"data_fraction": {"fractions": [], "methods": []}, "robustness": {"methods": []}}
    return P.validate(params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.1, 0.01, 1e-3, 0.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    params, out = digits_domains_params(), args.work
    raw, proc = out / "raw", out / "processed"
    if not (proc / "train.parquet").exists():
        stages.download(params, "digits-domains", raw)
        write_validation_report(raw, out / "validation.json", "digits-domains")
        stages.preprocess(params, "digits-domains", raw, out / "validation.json", proc)
    print("kl_z_weight  mean test accuracy (std over seeds)  per seed")
    for w in args.weights:
        accs = []
        for seed in args.seeds:
            run = out / f"kz{w:g}_seed{seed}"
            p = copy.deepcopy(params)
            p["method"]["vmtl"] = {"kl_z_weight": w}
            if not (run / "eval.json").exists():
                stages.train(p, "digits-domains", "vmtl", proc, None, 100, seed, run / "model", run / "log.json")
                stages.evaluate(p, "digits-domains", "vmtl", proc, run / "model", 100, seed, run / "eval.json")
            ev = json.loads((run / "eval.json").read_text())
            accs.append(float(np.mean([ev["tasks"][d]["metrics"]["accuracy"] for d in ev["task_order"]])))
        print(f"{w:<12g} {np.mean(accs):.3f} ± {np.std(accs):.3f}   {' '.join(f'{a:.3f}' for a in accs)}", flush=True)


if __name__ == "__main__":
    main()
