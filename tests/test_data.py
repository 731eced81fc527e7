import json

import numpy as np
import pandas as pd
import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.data import get, nested_subset
from tests.conftest import CI_PARAMS, write_validation_report


def test_nested_subsets_are_nested_and_seeded():
    sizes = {}
    prev = None
    for f in (20, 40, 60, 80, 100):
        idx = set(nested_subset(1000, f, seed=3).tolist())
        sizes[f] = len(idx)
        if prev is not None:
            assert prev <= idx
        prev = idx
    assert sizes == {20: 200, 40: 400, 60: 600, 80: 800, 100: 1000}
    assert torch.equal(nested_subset(1000, 40, 3), nested_subset(1000, 40, 3))
    assert not torch.equal(nested_subset(1000, 40, 3), nested_subset(1000, 40, 4))


def test_digits_splits_are_disjoint_stratified_and_normalised_on_train(digits_processed):
    split = json.loads((digits_processed / "split.json").read_text())
    assert sum(s["size"] for s in split["splits"].values()) == 1797
    ids = {s: set(pd.read_parquet(digits_processed / f"{s}.parquet")["example_id"]) for s in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    train = pd.read_parquet(digits_processed / "train.parquet")
    stats = json.loads((digits_processed / "stats.json").read_text())
    pixels = train[[f"pixel_{i:02d}" for i in range(64)]].to_numpy(float)
    assert stats["pixel_mean"] == pytest.approx(pixels.mean()) and stats["pixel_std"] == pytest.approx(pixels.std())
    # stratified: every class keeps its share of the whole data set
    full = pd.concat(pd.read_parquet(digits_processed / f"{s}.parquet") for s in ("train", "val", "test"))
    share = train["digit"].value_counts(normalize=True).sort_index()
    assert np.allclose(share, full["digit"].value_counts(normalize=True).sort_index(), atol=0.003)
    spec = get("digits-mtl")
    loaded = spec.load(P.load(CI_PARAMS)["dataset"]["digits-mtl"], digits_processed, "train")
    assert loaded.images.mean().abs() < 1e-4 and (loaded.images.std() - 1).abs() < 1e-2
    assert torch.equal(loaded.targets.sum(1), torch.ones(len(loaded)))  # one-vs-rest of one label


def test_preprocess_is_deterministic(tmp_path, digits_processed):
    params = P.load(CI_PARAMS)
    raw = digits_processed.parent / "raw"
    stages.preprocess(params, "digits-mtl", raw, digits_processed.parent / "validation.json", tmp_path / "again")
    a = json.loads((digits_processed / "split.json").read_text())
    b = json.loads((tmp_path / "again" / "split.json").read_text())
    assert a == b


def test_molecule_graph_of_known_molecules():
    from mtlrepro.data.qm9 import molecule_graph

    # methane: 4 C-H single bonds, both directions
    x, pos, edges, bond = molecule_graph(["C", "H", "H", "H", "H"],
                                         [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                          [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])
    assert edges.shape == (2, 8) and set(bond.tolist()) == {0}
    assert x[0, 1] == 1 and x[0, 5] == 6 and x[0, 9] == 1 and x[0, 10] == 4  # C, Z=6, sp3, 4 H
    # ethyne: a C#C triple bond
    x, pos, edges, bond = molecule_graph(["C", "C", "H", "H"],
                                         [[0, 0, 0.6], [0, 0, -0.6], [0, 0, 1.66], [0, 0, -1.66]])
    cc = [i for i in range(edges.shape[1]) if {edges[0, i], edges[1, i]} == {0, 1}]
    assert len(cc) == 2 and all(bond[i] == 2 for i in cc)
    assert x[0, 7] == 1  # sp


def test_qm9_preprocess_and_load(tmp_path, qm9_raw_small, ci_params):
    import ast

    from mtlrepro.data.qm9 import HARTREE_TO_MEV, TARGETS, reference_energy

    params = P.validate(ci_params)
    write_validation_report(qm9_raw_small, tmp_path / "v.json", "qm9")
    stages.preprocess(params, "qm9", qm9_raw_small, tmp_path / "v.json", tmp_path / "out")
    raw = pd.read_parquet(qm9_raw_small / "qm9.parquet").set_index("index")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert len(train) == params["dataset"]["qm9"]["split"]["train"]
    # Hartree -> meV (Navon et al.'s units), energies as atomization energies, others unchanged
    first = train.iloc[0]
    source = raw.loc[first["example_id"]]
    assert first["homo"] == pytest.approx(source["homo"] * HARTREE_TO_MEV)
    atoms = reference_energy(ast.literal_eval(source["elements"]))
    assert first["u0"] == pytest.approx((source["u0"] - atoms[0]) * HARTREE_TO_MEV)
    assert first["g"] == pytest.approx((source["g"] - atoms[3]) * HARTREE_TO_MEV)
    assert first["mu"] == pytest.approx(source["mu"])
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["units"]["u0"] == "meV" and stats["units"]["alpha"] == "bohr^3"
    assert [t.unit for t in get("qm9").tasks(params["dataset"]["qm9"])][:3] == ["D", "bohr^3", "meV"]
    spec = get("qm9")
    split = spec.load(params["dataset"]["qm9"], tmp_path / "out", "train")
    assert split.targets.shape == (len(train), len(TARGETS))
    assert torch.allclose(split.targets.mean(0), torch.zeros(len(TARGETS)), atol=1e-4)  # z-scored on train
    batch, _ = split.batch(torch.tensor([0, 1, 2]))
    assert batch.num_graphs == 3 and batch.x.shape[0] == sum(train["n_atoms"].iloc[:3])
    assert batch.edge_attr.shape[1] == 5 and (batch.edge_attr[:, 4] > 0.5).all()  # bond lengths in Angstrom


# The first three molecules of QM9 (dsgdb9nsd_000001-3: methane, ammonia, water). Total energies
# (Hartree) as in qm9pack's qm9_part1.csv; atom reference energies (Hartree) from the QM9 release's
# atomref table (B3LYP/6-31G(2df,p)), H -0.500273, C -37.846772, N -54.583861, O -75.064579 for U0
# and H -0.498857 / -0.497912 / -0.510927, C -37.845355 / -37.844411 / -37.861317 for U / H / G.
# Atomization energies worked out by hand, in Hartree:
#   CH4 U0: -40.478930 - (-37.846772 + 4 x -0.500273) = -40.478930 + 39.847864 = -0.631066
#   NH3 U0: -56.525887 - (-54.583861 + 3 x -0.500273) = -56.525887 + 56.084680 = -0.441207
#   H2O U0: -76.404702 - (-75.064579 + 2 x -0.500273) = -76.404702 + 76.065125 = -0.339577
#   CH4 U:  -40.476062 - (-37.845355 + 4 x -0.498857) = -40.476062 + 39.840783 = -0.635279
#   CH4 H:  -40.475117 - (-37.844411 + 4 x -0.497912) = -40.475117 + 39.836059 = -0.639058
#   CH4 G:  -40.498597 - (-37.861317 + 4 x -0.510927) = -40.498597 + 39.905025 = -0.593572
# (x 27.211386 eV: CH4 U0 -17.1722 eV, the U0_atom of PyG's first QM9 molecule.)
FIRST_MOLECULES_HARTREE = {1: {"u0": -0.631066, "u": -0.635279, "h": -0.639058, "g": -0.593572},
                           2: {"u0": -0.441207}, 3: {"u0": -0.339577}}
CODATA_HARTREE_IN_MEV = 27211.386246


def test_qm9_atomization_energies_of_the_first_molecules():
    import ast
    import importlib.metadata as md
    from pathlib import Path

    from mtlrepro.data.qm9 import TARGETS, reference_energy, reported_targets

    csv = Path(md.distribution("qm9pack").locate_file("qm9pack/data")) / "qm9_part1.csv"
    df = pd.read_csv(csv, nrows=3, usecols=["Index", "Elements"] + [c for c, _ in TARGETS.values()])
    references = np.array([reference_energy(ast.literal_eval(e)) for e in df["Elements"]])
    values = reported_targets({t: df[c].to_numpy() for t, (c, _) in TARGETS.items()}, references,
                              df["Index"].to_numpy())
    for index, expected in FIRST_MOLECULES_HARTREE.items():
        row = int(np.flatnonzero(df["Index"].to_numpy() == index)[0])
        for target, hartree in expected.items():
            assert values[target][row] == pytest.approx(hartree * CODATA_HARTREE_IN_MEV, abs=0.05), (index, target)
    assert values["zpve"][0] == pytest.approx(0.044749 * CODATA_HARTREE_IN_MEV)  # not an energy: meV only
    assert values["cv"][0] == pytest.approx(6.469)


def test_qm9_atom_reference_table_matches_pyg_in_ev():
    """The atomref numbers (Hartree) against PyG's QM9 `atomref` table (eV), transcribed separately:
    H, C, N, O, F for U0, U, H, G."""
    from mtlrepro.data.qm9 import ATOM_REFERENCE

    pyg_ev = {"H": (-13.61312172, -13.5745904, -13.54887564, -13.90303183),
              "C": (-1029.86312267, -1029.82456413, -1029.79887659, -1030.25891228),
              "N": (-1485.30251237, -1485.26398105, -1485.2382935, -1485.71166277),
              "O": (-2042.61123593, -2042.5727046, -2042.54701705, -2043.01812778),
              "F": (-2713.48485589, -2713.44632457, -2713.42063702, -2713.88796536)}
    for element, ev in pyg_ev.items():
        ours = np.asarray(ATOM_REFERENCE[element]) * CODATA_HARTREE_IN_MEV / 1000
        assert np.allclose(ours, ev, rtol=0, atol=3e-5), element


def test_a_positive_atomization_energy_is_refused():
    from mtlrepro.data.qm9 import TARGETS, reference_energy, reported_targets
    from mtlrepro.io import MTLReproError

    raw = {t: np.array([1.0]) for t in TARGETS}  # u0 etc. not total energies in Hartree
    with pytest.raises(MTLReproError, match="column 'u0': atomization energy >= 0 for molecule index 7"):
        reported_targets(raw, reference_energy(["C", "H", "H", "H", "H"])[None, :], np.array([7]), "qm9.parquet")


def test_qm9_split_options():
    from mtlrepro.data.qm9 import split_indices
    from mtlrepro.io import MTLReproError

    n, seed = 130_831, 11
    perm = np.random.default_rng(seed).permutation(n)
    published = split_indices({"order": "test-val-train", "test": 10000, "val": 10000, "train": "rest"}, n, seed)
    assert {k: len(v) for k, v in published.items()} == {"train": 110_831, "val": 10_000, "test": 10_000}
    assert np.array_equal(published["test"], np.sort(perm[:10000]))      # the first 10,000 of one shuffle
    assert np.array_equal(published["val"], np.sort(perm[10000:20000]))  # the next 10,000
    assert len(np.unique(np.concatenate(list(published.values())))) == n
    small = split_indices({"train": 6, "val": 2, "test": 4}, 100, seed)  # the default order: train first
    rng = np.random.default_rng(seed).permutation(100)
    assert np.array_equal(small["train"], np.sort(rng[:6])) and np.array_equal(small["test"], np.sort(rng[8:12]))
    with pytest.raises(MTLReproError, match="dataset.qm9.split asks for"):
        split_indices({"train": 90, "val": 10, "test": 10}, 100, seed)
    with pytest.raises(MTLReproError, match="train: rest would be empty"):
        split_indices({"train": "rest", "val": 50, "test": 50}, 100, seed)


def test_qm9_complete_graph_option(tmp_path, qm9_raw_small, ci_params):
    params = P.validate(ci_params)
    write_validation_report(qm9_raw_small, tmp_path / "v.json", "qm9")
    stages.preprocess(params, "qm9", qm9_raw_small, tmp_path / "v.json", tmp_path / "out")
    config = dict(params["dataset"]["qm9"], model={**params["dataset"]["qm9"]["model"], "complete_graph": True})
    split = get("qm9").load(config, tmp_path / "out", "val")
    x, edge_index, edge_attr = split.graphs[0]
    n = x.shape[0]
    assert edge_index.shape[1] == n * (n - 1)
    assert edge_attr[:, :4].sum() < edge_index.shape[1]  # non-bonded pairs carry no bond type


def test_xyz_strings_that_are_not_json_parse():
    """qm9pack writes "0." and "1." in some molecules (index 4, 23, 24, 486, 59818)."""
    from mtlrepro.data.qm9 import parse_xyz

    assert parse_xyz("[[0.5995394918,0.,1.],[-0.59,0.,1.]]") == [[0.5995394918, 0.0, 1.0], [-0.59, 0.0, 1.0]]
    assert parse_xyz("[[1.2*^-6,0,2]]") == [[1.2e-6, 0, 2]]


def test_qm9_processed_by_an_older_version_is_refused(tmp_path, qm9_raw_small, ci_params):
    """Processed data whose stats.json has other units (the eV totals of before) are stale."""
    from mtlrepro.io import MTLReproError

    params = P.validate(ci_params)
    write_validation_report(qm9_raw_small, tmp_path / "v.json", "qm9")
    stages.preprocess(params, "qm9", qm9_raw_small, tmp_path / "v.json", tmp_path / "out")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    stats["units"] = {"mu": "D", "alpha": "bohr^3", "r2": "bohr^2", "cv": "cal/(mol K)", "other": "eV"}
    (tmp_path / "out" / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(MTLReproError, match="stats.json: units .* the processed data are stale"):
        get("qm9").target_scale(tmp_path / "out")


def test_digits_training_images_per_class_are_a_seeded_stratified_subset(tmp_path, digits_processed):
    """split.train_per_class keeps that many training images of each digit, from the full training
    split (val and test unchanged), the same for the same split_seed."""
    import copy

    params = P.load(CI_PARAMS)
    params["dataset"]["digits-mtl"]["split"]["train_per_class"] = 7
    raw = digits_processed.parent / "raw"
    out = tmp_path / "processed"
    stages.preprocess(params, "digits-mtl", raw, digits_processed.parent / "validation.json", out)
    full = pd.read_parquet(digits_processed / "train.parquet")
    small = pd.read_parquet(out / "train.parquet")
    assert small["digit"].value_counts().to_dict() == {d: 7 for d in range(10)}
    assert set(small["example_id"]) <= set(full["example_id"])
    for split in ("val", "test"):
        assert pd.read_parquet(out / f"{split}.parquet").equals(pd.read_parquet(digits_processed / f"{split}.parquet"))
    again = tmp_path / "again"
    stages.preprocess(copy.deepcopy(params), "digits-mtl", raw, digits_processed.parent / "validation.json", again)
    assert pd.read_parquet(again / "train.parquet").equals(small)
