"""The QM9 MPNN's training epoch against PyG's reference model, measured in one run.

Ours: `mtlrepro.models.mpnn.MPNN` (edge network computed once per forward pass), batched by
`GraphSplit.batches` and stepped by the training loop's `training_step` with LS (the sum of the
11 per-task MSE losses). Peer: the standard PyG QM9 example architecture (NNConv(edge_net) +
GRU + Set2Set, one output layer for the 11 targets) fed by `torch_geometric.loader.DataLoader`,
same loss, same optimiser (Adam), same molecules and batch size. Both start from ONE set of
weights (ours copied into the peer), and their forward outputs on the same batch are compared
first: the two are the same function. An epoch includes the data loading and shuffling.

    python benchmarks/mpnn_peer.py [--molecules 300] [--batch-size 32] [--epochs 3] [--device auto]

Prints each model's epoch time (the median over epochs, ours and the peer alternating) and the
ratio ours / peer (below 1: ours faster).
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mtlrepro.data.qm9 import QM9, TARGETS
from mtlrepro.methods import build as build_method
from mtlrepro.training import resolve_device
from mtlrepro.step import training_step


class PygReferenceMPNN(nn.Module):
    """The PyG QM9 example's network: NNConv recomputes its edge network at every step."""

    def __init__(self, node_features: int, edge_features: int, dim: int, n_targets: int,
                 steps: int = 3, set2set_steps: int = 3):
        from torch_geometric.nn import NNConv, Set2Set

        super().__init__()
        self.steps = steps
        self.lin0 = nn.Linear(node_features, dim)
        edge_net = nn.Sequential(nn.Linear(edge_features, 128), nn.ReLU(), nn.Linear(128, dim * dim))
        self.conv = NNConv(dim, dim, edge_net, aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * dim, dim)
        self.lin2 = nn.Linear(dim, n_targets)

    def forward(self, data):
        out = torch.relu(self.lin0(data.x))
        h = out.unsqueeze(0)
        for _ in range(self.steps):
            m = torch.relu(self.conv(out, data.edge_index, data.edge_attr))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        out = self.set2set(out, data.batch)
        return self.lin2(torch.relu(self.lin1(out)))


def copy_weights(ours, peer: PygReferenceMPNN) -> None:
    """Ours -> peer: the same layers under other names; the 11 heads stacked into lin2."""
    state = {k: v for k, v in ours.state_dict().items() if not k.startswith(("heads.", "edge_net."))}
    for k, v in ours.edge_net.state_dict().items():
        state[f"conv.nn.{k}"] = v
    state["lin2.weight"] = torch.cat([h.weight for h in ours.heads]).detach().clone()
    state["lin2.bias"] = torch.cat([h.bias for h in ours.heads]).detach().clone()
    peer.load_state_dict(state)  # strict: every parameter of the peer is set


def qm9_train_split(n: int, config: dict, tmp: Path):
    """The first n + 40 molecules of the embedded QM9, preprocessed by our pipeline: n to train."""
    src = Path(md.distribution("qm9pack").locate_file("qm9pack/data")) / "qm9_part1.csv"
    df = pd.read_csv(src, nrows=n + 40)
    raw = pd.DataFrame({"index": df["Index"], "smiles": df["SMILES"], "elements": df["Elements"],
                        "xyz": df["XYZ_Ang"], "n_atoms": df["N_atoms"]})
    for name, (column, _) in TARGETS.items():
        raw[name] = df[column].astype("float64")
    (tmp / "raw").mkdir(parents=True)
    (tmp / "out").mkdir(parents=True)
    raw.to_parquet(tmp / "raw" / "qm9.parquet", index=False)
    spec = QM9()
    spec.preprocess(config, 0, tmp / "raw", tmp / "out")
    return spec, spec.load(config, tmp / "out", "train")


def pyg_dataset(split) -> list:
    from torch_geometric.data import Data

    return [Data(x=x, edge_index=ei, edge_attr=ea, y=split.targets[i:i + 1])
            for i, (x, ei, ea) in enumerate(split.graphs)]


def max_output_difference(ours, peer, split, data, device) -> float:
    from torch_geometric.data import Batch

    ours.eval(), peer.eval()
    with torch.no_grad():
        inputs, _ = split.batch(torch.arange(len(data)))
        _, heads = ours(inputs)
        theirs = peer(Batch.from_data_list(data).to(device))
    return float((torch.cat(heads, 1) - theirs).abs().max())


def our_epoch(model, method, tasks, split, optimizer, batch_size, seed) -> None:
    model.train()
    for inputs, targets in split.batches(batch_size, generator=torch.Generator().manual_seed(seed)):
        training_step(model, method, tasks, inputs, targets, optimizer)


def peer_epoch(model, loader, optimizer, device) -> None:
    model.train()
    for data in loader:
        data = data.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(data) - data.y) ** 2).mean(0).sum()  # LS: sum of the per-task MSEs
        loss.backward()
        optimizer.step()


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dim", type=int, default=64, help="MPNN width (PyG's example: 64)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: far less disturbed by other processes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torch_geometric.loader import DataLoader

    torch.manual_seed(0)
    device = resolve_device(args.device)
    config = {"split": {"train": args.molecules, "val": 20, "test": 20},
              "model": {"dim": args.dim, "message_passing_steps": 3, "set2set_steps": 3,
                        "complete_graph": False}}
    with tempfile.TemporaryDirectory() as tmp:
        spec, split = qm9_train_split(args.molecules, config, Path(tmp))
    tasks = spec.tasks(config)
    ours = spec.build_model(config, tasks).to(device)
    x, _, ea = split.graphs[0]
    peer = PygReferenceMPNN(x.shape[1], ea.shape[1], args.dim, len(tasks)).to(device)
    copy_weights(ours, peer)
    data = pyg_dataset(split)
    split = split.to(device)
    difference = max_output_difference(ours, peer, split, data, device)
    print(f"same weights, all {len(data)} molecules in one batch: max |ours - PyG| = {difference:.2e}")

    method = build_method("ls", len(tasks))
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-3)
    peer_opt = torch.optim.Adam(peer.parameters(), lr=1e-3)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    runs = {"ours": lambda e: our_epoch(ours, method, tasks, split, ours_opt, args.batch_size, e),
            "PyG": lambda e: peer_epoch(peer, loader, peer_opt, device)}
    times = {name: [] for name in runs}
    for epoch in range(args.epochs + 1):  # epoch 0 warms up both
        for name in (("ours", "PyG") if epoch % 2 == 0 else ("PyG", "ours")):
            seconds = _timed(lambda: runs[name](epoch), device)
            if epoch > 0:
                times[name].append(seconds)
    ours_s, peer_s = statistics.median(times["ours"]), statistics.median(times["PyG"])
    print(f"torch {torch.__version__}, torch_geometric {md.version('torch_geometric')}, device {device}, "
          f"{torch.get_num_threads()} threads; {args.molecules} molecules, batch {args.batch_size}, "
          f"width {args.dim}")
    print(f"epoch (median of {args.epochs}): ours {ours_s:.3f} s, PyG reference {peer_s:.3f} s, "
          f"ratio ours / PyG {ours_s / peer_s:.3f}")
    return 0 if difference < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
