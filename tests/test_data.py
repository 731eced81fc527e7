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
    from mtlrepro.data.qm9 import HARTREE_TO_EV, TARGETS

    params = P.validate(ci_params)
    write_validation_report(qm9_raw_small, tmp_path / "v.json", "qm9")
    stages.preprocess(params, "qm9", qm9_raw_small, tmp_path / "v.json", tmp_path / "out")
    raw = pd.read_parquet(qm9_raw_small / "qm9.parquet").set_index("index")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert len(train) == params["dataset"]["qm9"]["split"]["train"]
    # energies converted Hartree -> eV, others unchanged
    first = train.iloc[0]
    assert first["homo"] == pytest.approx(raw.loc[first["example_id"], "homo"] * HARTREE_TO_EV)
    assert first["mu"] == pytest.approx(raw.loc[first["example_id"], "mu"])
    spec = get("qm9")
    split = spec.load(params["dataset"]["qm9"], tmp_path / "out", "train")
    assert split.targets.shape == (len(train), len(TARGETS))
    assert torch.allclose(split.targets.mean(0), torch.zeros(len(TARGETS)), atol=1e-4)  # z-scored on train
    batch, _ = split.batch(torch.tensor([0, 1, 2]))
    assert batch.num_graphs == 3 and batch.x.shape[0] == sum(train["n_atoms"].iloc[:3])
    assert batch.edge_attr.shape[1] == 5 and (batch.edge_attr[:, 4] > 0.5).all()  # bond lengths in Angstrom


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
