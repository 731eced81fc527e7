"""Our gradient aggregators against TorchJD's implementations of the same methods, on the same
matrices, measured in one run: time per call (ours / theirs, below 1 = ours faster) and the
cosine between the two directions, for K tasks x d dimensions, CPU and CUDA when present.

    python benchmarks/peers.py [--quick] [--methods cagrad imtl_g] [--device cpu] [--markdown FILE]

TorchJD is an optional extra (`pip install -c constraints.txt -e .[bench]`); without it, or
without the solver a peer needs (cvxpy for CAGrad and Nash-MTL), that peer is skipped with a
message. Each call gets a different matrix from a pool of POOL random matrices (as in training,
where the gradients change every step; TorchJD's Nash-MTL warm-starts from its previous weights,
ours solves from scratch). Calls alternate between ours and theirs for about CELL_SECONDS
(at least MIN_CALLS each) and a cell's time is the lower quartile of each one's call times, so
that load from other processes on a shared machine hits both alike and its spikes drop out.

What the cosine compares: directions. The scales differ by design (ours / TorchJD's): CAGrad
1 / (1 + c^2) (our `rescale` = 1; TorchJD returns the unscaled g0 + rho u), Aligned-MTL K (our
sum of the aligned gradients; TorchJD's default preference is the mean), Nash-MTL: TorchJD
divides the Gram matrix by its Frobenius norm and clips |d| at max_norm (set to 0 here, so
that the cosine compares the solutions). MGDA: TorchJD's Frank-Wolfe stops at a step below
epsilon = 1e-3, ours is Wolfe's exact min-norm point, so cosines below 1 are TorchJD's
tolerance. PCGrad draws random projection orders; its cosine uses the same orders for both
(TorchJD's torch.randperm sequence, replayed into ours), its timing each one's own draws.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from mtlrepro import methods as registry
from mtlrepro.methods.mgda import gramian
from mtlrepro.methods.pcgrad import pcgrad_coefficients

TASKS, DIMS = (2, 5, 10, 20, 40), (64, 512, 4096)
QUICK_TASKS, QUICK_DIMS = (2, 5, 20), (64, 512)
POOL, CELL_SECONDS, MIN_CALLS, MAX_CALLS = 8, 0.5, 16, 4000
METHODS = ("mgda", "pcgrad", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl")  # bayesagg: no peer
EXACT_PEERS = ("pcgrad", "cagrad", "imtl_g", "aligned_mtl")  # cosine goal > 0.999 applies


@dataclass
class Peer:
    ours: Callable[[int], Callable[[torch.Tensor], torch.Tensor]]
    theirs: Callable[[int], Callable[[torch.Tensor], torch.Tensor]]
    note: str


def _ours(name: str, **hparams):
    def build(K: int):
        return registry.build(name, K, generator=torch.Generator().manual_seed(0), **hparams).combine
    return build


def peers(aggregation) -> dict[str, Peer]:
    A = aggregation
    return {
        "mgda": Peer(_ours("mgda"), lambda K: A.MGDA(), "TorchJD: Frank-Wolfe, epsilon 1e-3"),
        "pcgrad": Peer(_ours("pcgrad"), lambda K: A.PCGrad(), "same projection orders for the cosine"),
        "cagrad": Peer(_ours("cagrad", c=0.4), lambda K: A.CAGrad(c=0.4), "ours x (1 + c^2) = theirs"),
        "imtl_g": Peer(_ours("imtl_g"), lambda K: A.IMTLG(), "same scale (weights sum to 1)"),
        "nash_mtl": Peer(_ours("nash_mtl"), lambda K: A.NashMTL(n_tasks=K, max_norm=0.0),
                         "TorchJD: 20 CCP steps (ECOS), warm-started"),
        "aligned_mtl": Peer(_ours("aligned_mtl"), lambda K: A.AlignedMTL(), "ours = K x theirs"),
    }


def matrices(K: int, d: int, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    """POOL gradient matrices: task-specific parts of different scales plus a shared component,
    so that some tasks conflict and others agree (float32, like the training loop's)."""
    g = torch.Generator().manual_seed(seed + 1000 * K + d)
    pool = []
    for _ in range(POOL):
        specific = torch.randn(K, d, generator=g) * (torch.rand(K, 1, generator=g) * 3 + 0.1)
        shared = 0.5 * torch.randn(1, d, generator=g)
        pool.append((specific + shared).to(device))
    return pool


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_call(fn, G, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn(G)
    _sync(device)
    return time.perf_counter() - start


def time_pair(ours, theirs, pool, device) -> tuple[float, float]:
    """Seconds per call of each: calls alternate (ours, theirs, theirs, ours, ...) on the same
    matrices, so that load from other processes hits both alike, and the lower quartile of each
    one's call times is kept (the machine is shared: the upper tail is other processes)."""
    for fn in (ours, theirs):
        for G in pool[:2]:
            fn(G)  # warm-up: lazy imports, solver set-up, CUDA kernels
    times: tuple[list[float], list[float]] = ([], [])
    deadline = time.perf_counter() + CELL_SECONDS
    i = 0
    while i < MAX_CALLS and (i < MIN_CALLS or time.perf_counter() < deadline):
        G = pool[i % len(pool)]
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            times[which].append(_timed_call((ours, theirs)[which], G, device))
        i += 1
    quartile = [statistics.quantiles(t, n=4)[0] for t in times]
    return quartile[0], quartile[1]


def cosine(name: str, peer: Peer, G: torch.Tensor) -> float:
    K = G.shape[0]
    if name == "pcgrad":  # TorchJD draws torch.randperm(K) once per task: replay it into ours
        torch.manual_seed(1234)
        orders = [torch.randperm(K).tolist() for _ in range(K)]
        ours = pcgrad_coefficients(gramian(G), orders).sum(0).to(G) @ G
        torch.manual_seed(1234)
        theirs = peer.theirs(K)(G)
    else:
        ours, theirs = peer.ours(K)(G), peer.theirs(K)(G)
    return float(torch.nn.functional.cosine_similarity(ours.double(), theirs.double(), dim=0))


def run(names, tasks, dims, devices, aggregation) -> list[dict]:
    table = peers(aggregation)
    rows = []
    for name in names:
        peer = table[name]
        try:
            peer.theirs(2)
        except ImportError as err:  # e.g. cvxpy missing for CAGrad / Nash-MTL
            print(f"skipping {name}: TorchJD's peer is unavailable ({err})")
            continue
        for device in devices:
            for K in tasks:
                for d in dims:
                    pool = matrices(K, d, device)
                    ours_s, theirs_s = time_pair(peer.ours(K), peer.theirs(K), pool, device)
                    rows.append({"method": name, "device": device.type, "K": K, "d": d,
                                 "ours_ms": 1e3 * ours_s, "theirs_ms": 1e3 * theirs_s,
                                 "ratio": ours_s / theirs_s, "cosine": cosine(name, peer, pool[0])})
                    r = rows[-1]
                    print(f"{name:12s} {device.type:4s} K={K:3d} d={d:5d}  ours {r['ours_ms']:8.3f} ms  "
                          f"theirs {r['theirs_ms']:8.3f} ms  ratio {r['ratio']:6.3f}  cos {r['cosine']:.6f}",
                          flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    """Markdown: the ratio (ours / theirs) per cell, then per method its worst ratio and cosine."""
    lines = []
    for device in sorted({r["device"] for r in rows}):
        sub = [r for r in rows if r["device"] == device]
        cells = sorted({(r["K"], r["d"]) for r in sub})
        lines.append(f"\n{device}: time ours / TorchJD (below 1: ours faster)\n")
        lines.append("| method | " + " | ".join(f"K={K} d={d}" for K, d in cells) + " |")
        lines.append("| --- |" + " ---: |" * len(cells))
        for name in dict.fromkeys(r["method"] for r in sub):
            by_cell = {(r["K"], r["d"]): r for r in sub if r["method"] == name}
            lines.append(f"| {name} | " + " | ".join(
                f"{by_cell[c]['ratio']:.2f}" if c in by_cell else "-" for c in cells) + " |")
        lines.append(f"\n{device}: per method\n")
        lines.append("| method | worst ratio (at K, d) | median ratio | min cosine | cosine goal > 0.999 |")
        lines.append("| --- | ---: | ---: | ---: | --- |")
        for name in dict.fromkeys(r["method"] for r in sub):
            mine = [r for r in sub if r["method"] == name]
            worst = max(mine, key=lambda r: r["ratio"])
            low = min(r["cosine"] for r in mine)
            goal = ("met" if low > 0.999 else "NOT met") if name in EXACT_PEERS else "n/a (peer is approximate)"
            lines.append(f"| {name} | {worst['ratio']:.2f} ({worst['K']}, {worst['d']}) | "
                         f"{statistics.median(r['ratio'] for r in mine):.2f} | {low:.6f} | {goal} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"K in {QUICK_TASKS}, d in {QUICK_DIMS}")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, and CUDA too when present")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: K x d problems are latency-bound, and "
                             "one thread is far less disturbed by other processes on a shared machine)")
    parser.add_argument("--markdown", help="also write the summary tables to this file")
    args = parser.parse_args(argv)
    # cvxpy warns on every Nash-MTL solve that TorchJD's problem is not DPP (a fact about the peer)
    warnings.filterwarnings("ignore", message=".*not DPP.*")
    try:
        import torchjd.aggregation as aggregation
    except ImportError:
        print("torchjd is not installed: no peer to compare with "
              "(pip install -c constraints.txt -e '.[bench]'); skipping every method")
        return 0
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices = [torch.device("cuda")] if args.device == "cuda" else devices + [torch.device("cuda")]
    tasks, dims = (QUICK_TASKS, QUICK_DIMS) if args.quick else (TASKS, DIMS)
    print(f"torch {torch.__version__}, torchjd {md.version('torchjd')}, {torch.get_num_threads()} threads")
    rows = run(args.methods, tasks, dims, devices, aggregation)
    text = summary(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
