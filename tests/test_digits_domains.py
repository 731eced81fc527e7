"""digits-domains: seeded domain transformations of scikit-learn's digits, one 10-class task per
domain, each source image in at most one domain, a few labelled images per class and domain."""
import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.data import get
from mtlrepro.data.digits import PIXELS
from mtlrepro.data.digits_domains import transform
from mtlrepro.io import MTLReproError
from tests.conftest import CI_PARAMS, write_validation_report

DOMAINS = ["original", "rot90", "inverted", "noisy", "shifted", "flip_lr"]
TRANSFORMS = {"noise_std": 3.0, "shift": [2, -1]}
SIZES = {"train_per_class": 3, "val_per_class": 2, "test_per_class": 4}


def domains_params(domains=DOMAINS, **sizes) -> dict:
    params = P.load(CI_PARAMS)
    params["device"] = "cpu"
    split = {"domains": list(domains), "transforms": dict(TRANSFORMS), **SIZES, **sizes}
    block = {"source": {"kind": "embedded"}, "split": split,
             "model": {"channels": 8, "kernel": 3},
             "train": {"epochs": 2, "pretrain_epochs": 1, "batch_size": 32, "lr": 1.0e-3, "weight_decay": 0.0,
                       "scheduler": {"name": "none"}}}
    params["dataset"]["digits-domains"] = block
    params["studies"]["bayesagg"]["datasets"] = ["digits-domains"]
    return P.validate(params)


@pytest.fixture(scope="module")
def dd(tmp_path_factory):
    root = tmp_path_factory.mktemp("dd")
    params = domains_params()
    stages.download(params, "digits-domains", root / "raw")
    write_validation_report(root / "raw", root / "validation.json", "digits-domains")
    stages.preprocess(params, "digits-domains", root / "raw", root / "validation.json", root / "processed")
    source = pd.read_csv(root / "raw" / "digits.csv")
    parts = {s: pd.read_parquet(root / "processed" / f"{s}.parquet") for s in ("train", "val", "test")}
    return root, params, source, parts


def _images(df: pd.DataFrame) -> np.ndarray:
    return df[PIXELS].to_numpy(np.float64).reshape(-1, 8, 8)


def test_domain_images_are_the_claimed_transformations(dd):
    _, _, source, parts = dd
    df = pd.concat(parts.values(), ignore_index=True)
    src = _images(source.iloc[df["example_id"].to_numpy()])
    img = _images(df)
    assert np.array_equal(df["digit"].to_numpy(), source["digit"].to_numpy()[df["example_id"]])
    expected = {"original": lambda s: s, "rot90": lambda s: np.rot90(s, 1, axes=(1, 2)),
                "inverted": lambda s: 16 - s, "shifted": lambda s: np.roll(s, (2, -1), axis=(1, 2)),
                "flip_lr": lambda s: s[:, :, ::-1]}
    for domain, fn in expected.items():
        rows = (df["domain"] == domain).to_numpy()
        assert np.array_equal(img[rows], fn(src[rows])), domain
    assert np.array_equal(img[(df["domain"] == "rot90").to_numpy()][0],
                          np.rot90(src[(df["domain"] == "rot90").to_numpy()][0]))
    noisy = (df["domain"] == "noisy").to_numpy()
    residual = img[noisy] - src[noisy]
    assert img[noisy].min() >= 0 and img[noisy].max() <= 16
    middle = (src[noisy] >= 6) & (src[noisy] <= 10)  # far from the clipping bounds 0 and 16
    assert residual[middle].std() == pytest.approx(3.0, rel=0.15)
    assert abs(residual[middle].mean()) < 0.3


def test_transform_function_matches_numpy():
    x = np.arange(2 * 64, dtype=float).reshape(2, 8, 8) % 17
    assert np.array_equal(transform("rot270", x, {}), np.rot90(x, 3, axes=(1, 2)))
    assert np.array_equal(transform("flip_ud", x, {}), x[:, ::-1])
    a = transform("noisy", x, {"noise_std": 2.0}, np.random.default_rng(4))
    b = transform("noisy", x, {"noise_std": 2.0}, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, x)


def test_source_images_are_disjoint_across_domains_and_splits(dd):
    _, _, _, parts = dd
    ids = pd.concat(parts.values())["example_id"]
    assert not ids.duplicated().any()


def test_per_domain_per_class_counts(dd):
    _, _, _, parts = dd
    for split, n in (("train", 3), ("val", 2), ("test", 4)):
        counts = parts[split].groupby(["domain", "digit"]).size()
        assert len(counts) == len(DOMAINS) * 10 and (counts == n).all(), split


def test_targets_label_only_the_own_domain(dd):
    root, params, _, parts = dd
    spec, config = get("digits-domains"), params["dataset"]["digits-domains"]
    tasks = spec.tasks(config)
    assert [(t.name, t.kind, t.out_dim, t.primary) for t in tasks] == [(d, "multiclass", 10, "accuracy") for d in DOMAINS]
    split = spec.load(config, root / "processed", "train")
    y = split.targets.numpy()
    df = parts["train"]
    assert (~np.isnan(y)).sum(1).tolist() == [1] * len(df)
    column = df["domain"].map(DOMAINS.index).to_numpy()
    assert np.array_equal(y[np.arange(len(df)), column], df["digit"].to_numpy(np.float32))
    assert split.images.shape == (len(df), 1, 8, 8)
    assert split.images.mean().abs() < 1e-4  # normalised with train statistics
    model = spec.build_model(config, tasks)
    h, outputs = model(split.images[:5])
    assert [o.shape for o in outputs] == [(5, 10)] * len(DOMAINS)


def test_deterministic_and_seeded(dd, tmp_path):
    root, params, _, _ = dd
    stages.preprocess(params, "digits-domains", root / "raw", root / "validation.json", tmp_path / "again")
    assert pd.read_parquet(tmp_path / "again" / "train.parquet").equals(pd.read_parquet(root / "processed" / "train.parquet"))
    assert pd.read_parquet(tmp_path / "again" / "test.parquet").equals(pd.read_parquet(root / "processed" / "test.parquet"))
    other = copy.deepcopy(params)
    other["split_seed"] += 1
    stages.preprocess(other, "digits-domains", root / "raw", root / "validation.json", tmp_path / "other")
    assert (json.loads((tmp_path / "other" / "split.json").read_text())["splits"]
            != json.loads((root / "processed" / "split.json").read_text())["splits"])


def test_too_many_images_per_class_is_refused(dd, tmp_path):
    root, _, _, _ = dd
    params = domains_params(train_per_class=20, val_per_class=5, test_per_class=10)
    with pytest.raises(MTLReproError, match=r"dataset.digits-domains.split asks for 35 images of digit \d"):
        stages.preprocess(params, "digits-domains", root / "raw", root / "validation.json", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    config = copy.deepcopy(domains_params()["dataset"]["digits-domains"])
    config["split"]["domains"] = ["original", "rot45"]
    with pytest.raises(MTLReproError, match=r"split.domains: unknown domain\(s\) \['rot45'\]"):
        get("digits-domains").tasks(config)


def test_test_per_class_null_takes_the_rest_of_each_share(dd, tmp_path):
    root, _, source, _ = dd
    params = domains_params(domains=["original", "inverted"], train_per_class=5, val_per_class=5, test_per_class=None)
    stages.preprocess(params, "digits-domains", root / "raw", root / "validation.json", tmp_path / "out")
    total = sum(len(pd.read_parquet(tmp_path / "out" / f"{s}.parquet")) for s in ("train", "val", "test"))
    assert total == len(source) == 1797


def test_validation_suite_and_training(dd, tmp_path):
    from mtlrepro.validation import validate

    root, params, _, _ = dd
    assert validate("digits-domains", root / "raw", tmp_path / "v.json", tmp_path / "v.html")["success"]
    stages.train(params, "digits-domains", "ls", root / "processed", None, 100, 0, tmp_path / "model", tmp_path / "log.json")
    stages.evaluate(params, "digits-domains", "ls", root / "processed", tmp_path / "model", 100, 0, tmp_path / "eval.json")
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["task_order"] == DOMAINS
    assert all(0 <= ev["tasks"][d]["metrics"]["accuracy"] <= 1 for d in DOMAINS)
