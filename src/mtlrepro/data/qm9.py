"""QM9 (130,831 molecules) from the qm9pack package: the 11 regression targets of the Navon et al.
protocol, molecules as graphs (rdkit bonds from the DFT geometry), for the NNConv + GRU + Set2Set MPNN."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError
from .base import (DatasetSpec, Split, Task, check_finite_targets, read_parquet, read_stats,
                   require_dtype, split_record, stat_value, verify_checksum, write_parquet, write_stats)

SOURCE_FILES = {  # qm9pack 1.0.3
    "qm9_part1.csv": "19f0a5d595462d52cd82eef3370f3e9eb55a1f52cb14985657200349568deff3",
    "qm9_part2.csv": "2bca113fdc0b28a13563c80ed9b240e934f3da6c64c64fe74ddb4f0f36036e61",
    "qm9_part3.csv": "9c5efb5733d2af149db8d95d36ff198b4ffed12d9f7b344220a1e5877d5c6a43",
}
N_MOLECULES = 130_831
HARTREE_TO_EV = 27.211386246
# target -> (qm9pack column, factor to the units MAE is reported in: PyG's, as in Navon et al.)
TARGETS = {
    "mu": ("Dipole_debye", 1.0),                      # D
    "alpha": ("Polarizability_bohr3", 1.0),           # bohr^3
    "homo": ("HOMO_au", HARTREE_TO_EV),               # eV
    "lumo": ("LUMO_au", HARTREE_TO_EV),               # eV
    "r2": ("R2_bohr2", 1.0),                          # bohr^2
    "zpve": ("ZPVE_au", HARTREE_TO_EV),               # eV
    "u0": ("InternalEnergy_0K_au", HARTREE_TO_EV),    # eV
    "u": ("InternalEnergy_298K_au", HARTREE_TO_EV),   # eV
    "h": ("Enthalphy_298K_au", HARTREE_TO_EV),        # eV
    "g": ("GibbsFreeEnergy_298K_au", HARTREE_TO_EV),  # eV
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),         # cal/(mol K)
}
ELEMENTS = ["H", "C", "N", "O", "F"]
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
NODE_FEATURES = 11  # one-hot element (5), atomic number, aromatic, sp, sp2, sp3, attached H count
BOND_TYPES = 4      # single, double, triple, aromatic
EDGE_FEATURES = BOND_TYPES + 1  # + interatomic distance


def _source_dir(config: dict) -> Path:
    if config["source"]["kind"] == "path":
        if not config["source"].get("path"):
            raise MTLReproError("dataset.qm9.source.path must name a folder when source.kind is 'path'")
        return Path(config["source"]["path"])
    import importlib.metadata as md

    try:
        return Path(md.distribution("qm9pack").locate_file("qm9pack/data"))
    except md.PackageNotFoundError:
        raise MTLReproError("the qm9pack package is not installed (pip install qm9pack)") from None


def molecule_graph(elements: list[str], xyz: list[list[float]]):
    """Node features, positions, and directed bond edges with bond-type ids for one molecule."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds

    RDLogger.DisableLog("rdApp.*")
    block = f"{len(elements)}\n\n" + "\n".join(f"{e} {x:.10f} {y:.10f} {z:.10f}"
                                                for e, (x, y, z) in zip(elements, xyz))
    mol = Chem.MolFromXYZBlock(block)
    if mol is None:
        raise MTLReproError("rdkit could not parse a molecule's geometry")
    try:  # bond orders from the geometry; a few zwitterions need a charge guess: keep connectivity
        rdDetermineBonds.DetermineBonds(mol, charge=0)
    except Exception:
        mol = Chem.MolFromXYZBlock(block)
        rdDetermineBonds.DetermineConnectivity(mol)
        mol.UpdatePropertyCache(strict=False)
    hybrid = Chem.rdchem.HybridizationType
    x = np.zeros((mol.GetNumAtoms(), NODE_FEATURES), dtype=np.float32)
    for atom in mol.GetAtoms():
        i, sym = atom.GetIdx(), atom.GetSymbol()
        x[i, ELEMENTS.index(sym)] = 1.0
        x[i, 5] = ATOMIC_NUMBER[sym]
        x[i, 6] = float(atom.GetIsAromatic())
        x[i, 7] = float(atom.GetHybridization() == hybrid.SP)
        x[i, 8] = float(atom.GetHybridization() == hybrid.SP2)
        x[i, 9] = float(atom.GetHybridization() == hybrid.SP3)
        x[i, 10] = sum(1 for n in atom.GetNeighbors() if n.GetSymbol() == "H")
    bond_id = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2,
               Chem.BondType.AROMATIC: 3}
    src, dst, kind = [], [], []
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        t = bond_id.get(bond.GetBondType(), 0)
        src += [a, b]; dst += [b, a]; kind += [t, t]
    return x, np.asarray(xyz, dtype=np.float32), np.asarray([src, dst], dtype=np.int64), np.asarray(kind, np.int64)


def graph_arrays(r, path: Path, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One processed molecule's node features [n, 11], positions [n, 3], bonds [2, E] and bond
    types [E], checked: finite numbers, consistent sizes, bonds between its atoms, known types."""
    def column(name, dtype, per_row):
        try:
            values = np.array(getattr(r, name), dtype=dtype)  # a copy: parquet arrays are read-only
        except (TypeError, ValueError) as err:
            raise MTLReproError(f"{path}: column {name!r}, row {row}: not numbers ({err})") from None
        if values.ndim != 1 or (per_row and values.size % per_row):
            raise MTLReproError(f"{path}: column {name!r}, row {row}: {values.size} values, not a multiple of {per_row}")
        if not np.isfinite(values).all():
            raise MTLReproError(f"{path}: column {name!r}, row {row}: non-finite value(s) (NaN or inf)")
        return values

    n = r.n_atoms
    x, pos = column("x", np.float32, NODE_FEATURES), column("pos", np.float32, 3)
    bonds, kinds = column("edge_index", np.int64, 2), column("bond_type", np.int64, 1)
    if x.size != n * NODE_FEATURES or pos.size != n * 3:
        raise MTLReproError(f"{path}: row {row}: columns 'x' ({x.size}) and 'pos' ({pos.size}) do not fit "
                            f"n_atoms = {n} ({NODE_FEATURES} features, 3 coordinates per atom)")
    bonds = bonds.reshape(2, -1)
    if bonds.shape[1] != kinds.size or (bonds.size and (bonds.min() < 0 or bonds.max() >= n)):
        raise MTLReproError(f"{path}: row {row}: column 'edge_index' has {bonds.shape[1]} bonds for "
                            f"{kinds.size} 'bond_type' values, or atoms outside 0..{n - 1}")
    if kinds.size and (kinds.min() < 0 or kinds.max() >= BOND_TYPES):
        raise MTLReproError(f"{path}: row {row}: column 'bond_type' has values outside 0..{BOND_TYPES - 1}")
    return x.reshape(n, NODE_FEATURES), pos.reshape(n, 3), bonds, kinds


def parse_xyz(text: str) -> list[list[float]]:
    """qm9pack's coordinate lists: Python-style literals ("0." and "1." occur, so not JSON),
    with Mathematica exponents ("1.2*^-6") in a few molecules."""
    return ast.literal_eval(text.replace("*^", "e"))


@dataclass
class GraphBatch:
    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    batch: torch.Tensor
    num_graphs: int

    def to(self, device):
        return GraphBatch(self.x.to(device), self.edge_index.to(device), self.edge_attr.to(device),
                          self.batch.to(device), self.num_graphs)


class GraphSplit(Split):
    def __init__(self, graphs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], targets, device=None):
        self.graphs, self.targets, self.device = graphs, targets, device

    def batch(self, indices):
        xs, eis, eas, owner, offset = [], [], [], [], 0
        for j, i in enumerate(indices.tolist()):
            x, ei, ea = self.graphs[i]
            xs.append(x); eis.append(ei + offset); eas.append(ea)
            owner.append(torch.full((x.shape[0],), j, dtype=torch.long))
            offset += x.shape[0]
        batch = GraphBatch(torch.cat(xs), torch.cat(eis, 1), torch.cat(eas), torch.cat(owner), len(xs))
        if self.device is not None:
            batch = batch.to(self.device)
        return batch, self.targets[indices.to(self.targets.device)]

    def to(self, device):
        # graphs stay on the CPU and are moved batch by batch; targets move now
        return GraphSplit(self.graphs, self.targets.to(device), device)


class QM9(DatasetSpec):
    name = "qm9"
    raw_files = ("qm9.parquet",)
    content_columns = ("x", "pos")

    def tasks(self, config):
        return [Task(name, "regression", "mae") for name in TARGETS]

    def download(self, config, raw_dir):
        source = _source_dir(config)
        frames, digests = [], {}
        for fname, expected in SOURCE_FILES.items():
            path = source / fname
            digests[fname] = verify_checksum(path, expected if config["source"]["kind"] == "embedded" else None)
            columns = ["Index", "SMILES", "Elements", "XYZ_Ang", "N_atoms"] + [c for c, _ in TARGETS.values()]
            try:
                frames.append(pd.read_csv(path, usecols=columns))
            except ValueError as err:
                raise MTLReproError(f"{path}: {err}") from None
        df = pd.concat(frames, ignore_index=True)
        raw = pd.DataFrame({"index": df["Index"], "smiles": df["SMILES"], "elements": df["Elements"],
                            "xyz": df["XYZ_Ang"], "n_atoms": df["N_atoms"]})
        for name, (column, _) in TARGETS.items():
            raw[name] = df[column].astype("float64")  # raw units of the source (Hartree etc.)
        raw.to_parquet(raw_dir / "qm9.parquet", engine="pyarrow", index=False)
        return {"source": str(source), "source_sha256": digests, "rows": len(raw)}

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        path = raw_dir / "qm9.parquet"
        df = read_parquet(path, ["index", "elements", "xyz"] + list(TARGETS))
        require_dtype(df, ["index"], path, "integer")
        check_finite_targets(df, list(TARGETS), path)
        sizes = config["split"]
        total = sizes["train"] + sizes["val"] + sizes["test"]
        if total > len(df):
            raise MTLReproError(f"dataset.qm9.split asks for {total} molecules but {path} has {len(df)}")
        perm = np.random.default_rng(split_seed).permutation(len(df))
        bounds = np.cumsum([0, sizes["train"], sizes["val"], sizes["test"]])
        parts = {name: np.sort(perm[bounds[i]:bounds[i + 1]]) for i, name in enumerate(("train", "val", "test"))}
        stats, info = {}, {}
        for name, idx in parts.items():
            rows = []
            for r in df.iloc[idx].itertuples(index=False):
                try:
                    elements = ast.literal_eval(r.elements)
                    xyz = parse_xyz(r.xyz)
                except (ValueError, SyntaxError) as err:
                    raise MTLReproError(f"{path}: molecule index {r.index}: unreadable elements/xyz: {err}") from None
                x, pos, edge_index, bond = molecule_graph(elements, xyz)
                rows.append({"example_id": int(r.index), "n_atoms": len(elements), "x": x.ravel(),
                             "pos": pos.ravel(), "edge_index": edge_index.ravel(), "bond_type": bond})
            part = pd.DataFrame(rows)
            for target, (_, factor) in TARGETS.items():
                part[target] = df[target].to_numpy()[idx] * factor
            if name == "train":  # normalisation statistics from the training split only
                stats = {t: {"mean": float(part[t].mean()), "std": float(part[t].std(ddof=0))} for t in TARGETS}
            write_parquet(part, out_dir / f"{name}.parquet")
            info[name] = split_record(name, df["index"].to_numpy()[idx])
        write_stats(out_dir, {"targets": stats, "units": {"mu": "D", "alpha": "bohr^3", "r2": "bohr^2",
                                                         "cv": "cal/(mol K)", "other": "eV"}})
        return info

    def load(self, config, processed_dir, split):
        path = processed_dir / f"{split}.parquet"
        df = read_parquet(path, ["n_atoms", "x", "pos", "edge_index", "bond_type"] + list(TARGETS))
        check_finite_targets(df, list(TARGETS), path)
        require_dtype(df, ["n_atoms"], path, "integer")
        if (df["n_atoms"] < 1).any():
            raise MTLReproError(f"{path}: column 'n_atoms' has values below 1")
        mean, std = self.target_scale(processed_dir)
        complete = config["model"]["complete_graph"]
        graphs = []
        for row, r in enumerate(df.itertuples(index=False)):
            n = int(r.n_atoms)
            x, pos, bonds, kinds = (torch.from_numpy(a) for a in graph_arrays(r, path, row))
            if complete:  # every ordered pair, bond one-hot where bonded (Navon et al.'s transform)
                ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
                mask = ii != jj
                edge_index = torch.stack([ii[mask], jj[mask]])
                onehot = torch.zeros(n, n, BOND_TYPES)
                onehot[bonds[0], bonds[1], kinds] = 1.0
                bond_attr = onehot[edge_index[0], edge_index[1]]
            else:
                edge_index = bonds
                bond_attr = torch.nn.functional.one_hot(kinds, BOND_TYPES).float()
            dist = (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=1, keepdim=True)
            graphs.append((x, edge_index, torch.cat([bond_attr, dist], 1)))
        targets = np.stack([(df[t].to_numpy() - mean[k]) / std[k] for k, t in enumerate(TARGETS)], 1)
        return GraphSplit(graphs, torch.from_numpy(targets.astype(np.float32)))

    def target_scale(self, processed_dir):
        """(mean, std) per task, to report MAE in the original units."""
        stats = read_stats(processed_dir)
        return ([stat_value(stats, processed_dir, "targets", t, "mean") for t in TARGETS],
                [stat_value(stats, processed_dir, "targets", t, "std", scale=True) for t in TARGETS])

    def build_model(self, config, tasks):
        from ..models.mpnn import MPNN

        m = config["model"]
        return MPNN(tasks, NODE_FEATURES, EDGE_FEATURES, dim=m["dim"],
                    message_passing_steps=m["message_passing_steps"], set2set_steps=m["set2set_steps"])


SPEC = QM9()
