"""QM9 (130,831 molecules) from the qm9pack package: the 11 regression targets of the Navon et al.
protocol, molecules as graphs (rdkit bonds from the DFT geometry), for the NNConv + GRU + Set2Set MPNN.

qm9pack holds total energies in Hartree; preprocess turns U0, U, H and G into atomization energies
(ATOM_REFERENCE) and every target into the units of Navon et al.'s tables (UNITS: meV for homo,
lumo, zpve and the energies). Training uses the targets z-scored on the training split (MSE);
MAE is reported in UNITS. The raw file keeps the source's values and units, as validated."""
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
HARTREE_TO_EV = 27.211386246            # CODATA 2018, as PyG's QM9 (HAR2EV)
HARTREE_TO_MEV = 1000.0 * HARTREE_TO_EV
# target -> (qm9pack column, factor from the source's units to the units MAE is reported in).
# The units are those of Navon et al.'s (2022) per-target tables, which BayesAgg-MTL's Table 1
# follows: PyG's QM9 units, with meV instead of eV for homo, lumo, zpve and the four energies.
TARGETS = {
    "mu": ("Dipole_debye", 1.0),
    "alpha": ("Polarizability_bohr3", 1.0),
    "homo": ("HOMO_au", HARTREE_TO_MEV),
    "lumo": ("LUMO_au", HARTREE_TO_MEV),
    "r2": ("R2_bohr2", 1.0),
    "zpve": ("ZPVE_au", HARTREE_TO_MEV),
    "u0": ("InternalEnergy_0K_au", HARTREE_TO_MEV),    # atomization energy (see ATOM_REFERENCE)
    "u": ("InternalEnergy_298K_au", HARTREE_TO_MEV),   # atomization energy
    "h": ("Enthalphy_298K_au", HARTREE_TO_MEV),        # atomization enthalpy
    "g": ("GibbsFreeEnergy_298K_au", HARTREE_TO_MEV),  # atomization free energy
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),
}
UNITS = {"mu": "D", "alpha": "bohr^3", "homo": "meV", "lumo": "meV", "r2": "bohr^2", "zpve": "meV",
         "u0": "meV", "u": "meV", "h": "meV", "g": "meV", "cv": "cal/(mol K)"}
# The energies are atomization energies: the molecule's total energy minus the sum of its atoms'
# reference energies (the PyG targets U0_atom, U_atom, H_atom, G_atom that Navon et al. use).
# Reference energies in Hartree of the isolated atoms at the same level of theory (B3LYP/
# 6-31G(2df,p)), per element and target (U0, U at 298.15 K, H, G): the `atomref` table of the
# QM9 release (Ramakrishnan et al., "Quantum chemistry structures and properties of 134 kilo
# molecules", Sci. Data 1, 140022, 2014; its atomref data file). PyG's QM9 `atomref` holds the
# same numbers in eV; they agree with these x HARTREE_TO_EV to within 3e-5 eV.
ATOM_REFERENCE = {  # element: (U0, U, H, G)
    "H": (-0.500273, -0.498857, -0.497912, -0.510927),
    "C": (-37.846772, -37.845355, -37.844411, -37.861317),
    "N": (-54.583861, -54.582445, -54.581501, -54.598897),
    "O": (-75.064579, -75.063163, -75.062219, -75.079532),
    "F": (-99.718730, -99.717314, -99.716370, -99.733544),
}
ATOMIZED = ("u0", "u", "h", "g")  # the targets ATOM_REFERENCE's columns belong to, in order
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


SPLIT_ORDERS = {"train-val-test": ("train", "val", "test"), "test-val-train": ("test", "val", "train")}


def split_indices(sizes: dict, n: int, seed: int, where: str = "dataset.qm9.split") -> dict[str, np.ndarray]:
    """Row positions of the train, val and test splits: one permutation of the n molecules drawn
    with `seed`, cut into consecutive blocks in the order `sizes["order"]` (default train, val,
    test). `train: rest` is every molecule that val and test leave: the published protocol is
    order test-val-train, test 10,000, val 10,000, train the remaining 110,831."""
    order_name = sizes.get("order", "train-val-test")
    if order_name not in SPLIT_ORDERS:
        raise MTLReproError(f"{where}: order {order_name!r} is not one of {', '.join(SPLIT_ORDERS)}")
    counts = {"val": int(sizes["val"]), "test": int(sizes["test"])}
    rest = n - counts["val"] - counts["test"]
    counts["train"] = rest if sizes["train"] == "rest" else int(sizes["train"])
    if sum(counts.values()) > n or counts["train"] < 1:
        asked = f"val {counts['val']} + test {counts['test']} + train {sizes['train']}"
        raise MTLReproError(f"{where} asks for {asked} molecules but the source has {n}"
                            + (" (train: rest would be empty)" if sizes["train"] == "rest" else ""))
    perm = np.random.default_rng(seed).permutation(n)
    blocks, start = {}, 0
    for name in SPLIT_ORDERS[order_name]:
        blocks[name] = np.sort(perm[start:start + counts[name]])
        start += counts[name]
    return {name: blocks[name] for name in ("train", "val", "test")}


def reference_energy(elements: list[str]) -> np.ndarray:
    """The sum of the atoms' reference energies (Hartree) for U0, U, H, G (ATOMIZED order)."""
    unknown = sorted(set(elements) - set(ATOM_REFERENCE))
    if unknown:
        raise MTLReproError(f"no atomic reference energy for element(s) {unknown}; QM9 has {', '.join(ATOM_REFERENCE)}")
    return np.sum([ATOM_REFERENCE[e] for e in elements], axis=0)


def reported_targets(raw: dict[str, np.ndarray], references: np.ndarray, ids: np.ndarray,
                     path: Path | str = "qm9") -> dict[str, np.ndarray]:
    """The targets in the reported units (TARGETS, UNITS) from the source's (Hartree etc.):
    the energies become atomization energies, total minus `references` [n, 4] (reference_energy
    of each molecule). A molecule is bound, so each atomization energy must be negative; a
    positive one means the energy columns or the reference table are wrong."""
    out = {}
    for target, (_, factor) in TARGETS.items():
        values = np.asarray(raw[target], dtype=np.float64)
        if target in ATOMIZED:
            values = values - references[:, ATOMIZED.index(target)]
            bad = np.flatnonzero(values >= 0)
            if bad.size:
                raise MTLReproError(f"{path}: column {target!r}: atomization energy >= 0 for molecule index "
                                    f"{int(ids[bad[0]])} ({bad.size} molecules): not a total energy in Hartree?")
        out[target] = values * factor
    return out


def _molecule_rows(df: pd.DataFrame, path: Path) -> tuple[list[dict], np.ndarray]:
    """The graph columns of each molecule and its atoms' reference energies [n, 4]."""
    rows, references = [], []
    for r in df.itertuples(index=False):
        try:
            elements = ast.literal_eval(r.elements)
            xyz = parse_xyz(r.xyz)
        except (ValueError, SyntaxError) as err:
            raise MTLReproError(f"{path}: molecule index {r.index}: unreadable elements/xyz: {err}") from None
        x, pos, edge_index, bond = molecule_graph(elements, xyz)
        rows.append({"example_id": int(r.index), "n_atoms": len(elements), "x": x.ravel(),
                     "pos": pos.ravel(), "edge_index": edge_index.ravel(), "bond_type": bond})
        references.append(reference_energy(elements))
    return rows, np.asarray(references, dtype=np.float64).reshape(-1, len(ATOMIZED))


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
        return [Task(name, "regression", "mae", unit=UNITS[name]) for name in TARGETS]

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
        parts = split_indices(config["split"], len(df), split_seed, f"dataset.qm9.split ({path})")
        stats, info = {}, {}
        for name, idx in parts.items():
            rows, references = _molecule_rows(df.iloc[idx], path)
            part = pd.DataFrame(rows)
            values = reported_targets({t: df[t].to_numpy()[idx] for t in TARGETS}, references,
                                      part["example_id"].to_numpy(), path)
            for target in TARGETS:
                part[target] = values[target]
            if name == "train":  # normalisation statistics from the training split only
                stats = {t: {"mean": float(part[t].mean()), "std": float(part[t].std(ddof=0))} for t in TARGETS}
            write_parquet(part, out_dir / f"{name}.parquet")
            info[name] = split_record(name, df["index"].to_numpy()[idx])
        write_stats(out_dir, {"targets": stats, "units": dict(UNITS),
                              "energies": "atomization energies (total minus the atoms' atomref energies)"})
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
        """(mean, std) per task, to report MAE in the units of UNITS."""
        stats = read_stats(processed_dir)
        if stats.get("units") != UNITS:  # e.g. processed before the targets became meV atomization energies
            raise MTLReproError(f"{processed_dir / 'stats.json'}: units {stats.get('units')} are not this "
                                f"version's {UNITS}: the processed data are stale; re-run preprocess "
                                f"(snakemake --forcerun preprocess, or dvc repro)")
        return ([stat_value(stats, processed_dir, "targets", t, "mean") for t in TARGETS],
                [stat_value(stats, processed_dir, "targets", t, "std", scale=True) for t in TARGETS])

    def build_model(self, config, tasks):
        from ..models.mpnn import MPNN

        m = config["model"]
        return MPNN(tasks, NODE_FEATURES, EDGE_FEATURES, dim=m["dim"],
                    message_passing_steps=m["message_passing_steps"], set2set_steps=m["set2set_steps"])


SPEC = QM9()
