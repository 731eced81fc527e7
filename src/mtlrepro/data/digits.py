"""digits-mtl: scikit-learn's 1,797 handwritten digits (8x8) as 10 one-vs-rest binary tasks,
the small sibling of CIFAR-MTL (20 one-vs-rest super-class tasks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError
from .base import (DatasetSpec, Split, Task, check_finite_targets, read_csv, read_parquet,
                   read_stats, require_dtype, split_record, stat_value, verify_checksum, write_parquet,
                   write_stats)

SOURCE_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
PIXELS = [f"pixel_{i:02d}" for i in range(64)]
N_CLASSES = 10


def digit_labels(df: pd.DataFrame, path: Path) -> np.ndarray:
    """The `digit` column, once the pixels and labels are checked finite numbers and the labels
    integers 0..9 (not floats or booleans that happen to compare equal)."""
    check_finite_targets(df, PIXELS + ["digit"], path)
    require_dtype(df, ["digit"], path, "integer")
    labels = df["digit"].to_numpy()
    if not np.isin(labels, np.arange(N_CLASSES)).all():
        raise MTLReproError(f"{path}: column 'digit' has values outside 0..9")
    return labels


def normalised_pixels(df: pd.DataFrame, processed_dir: Path) -> np.ndarray:
    """[N, 64] float32 pixels z-scored with the training split's stats.json."""
    stats = read_stats(processed_dir)
    mean = stat_value(stats, processed_dir, "pixel_mean")
    std = stat_value(stats, processed_dir, "pixel_std", scale=True)
    return ((df[PIXELS].to_numpy(np.float32) - mean) / std).astype(np.float32)


def _source_path() -> Path:
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


class ImageSplit(Split):
    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def batch(self, indices):
        return self.images[indices], self.targets[indices]

    def to(self, device):
        return ImageSplit(self.images.to(device), self.targets.to(device))


def per_class_subset(ids: np.ndarray, labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` of `ids` for each label (all of a label with fewer), drawn by one seeded permutation."""
    order = ids[np.random.default_rng(seed).permutation(len(ids))]
    keep = [order[labels[order] == c][:per_class] for c in np.unique(labels[ids])]
    return np.sort(np.concatenate(keep))


class DigitsMTL(DatasetSpec):
    name = "digits-mtl"
    raw_files = ("digits.csv",)
    content_columns = tuple(PIXELS)

    def tasks(self, config):
        return [Task(f"is_{d}", "binary", "accuracy") for d in range(N_CLASSES)]

    def download(self, config, raw_dir):
        source = _source_path()
        digest = verify_checksum(source, SOURCE_SHA256)
        table = np.loadtxt(source, delimiter=",", dtype=np.int64)
        df = pd.DataFrame(table[:, :64], columns=PIXELS)
        df["digit"] = table[:, 64]
        df.to_csv(raw_dir / "digits.csv", index=False)
        return {"source": str(source), "source_sha256": digest, "rows": len(df)}

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        from sklearn.model_selection import train_test_split

        path = raw_dir / "digits.csv"
        df = read_csv(path, PIXELS + ["digit"])
        digit_labels(df, path)
        ids = np.arange(len(df))
        split = config["split"]
        train_val, test = train_test_split(ids, test_size=split["test"], random_state=split_seed,
                                           stratify=df["digit"])
        train, val = train_test_split(train_val, test_size=split["val"] / (1 - split["test"]),
                                      random_state=split_seed, stratify=df["digit"].iloc[train_val])
        if split.get("train_per_class") is not None:  # fewer labelled images: harder tasks, as CIFAR-MTL's
            train = per_class_subset(train, df["digit"].to_numpy(), int(split["train_per_class"]), split_seed)
        pixels = df[PIXELS].to_numpy(dtype=np.float64)
        mean, std = pixels[train].mean(), pixels[train].std()  # train split only
        info = {}
        for name, idx in (("train", np.sort(train)), ("val", np.sort(val)), ("test", np.sort(test))):
            part = df.iloc[idx].reset_index(drop=True)
            part.insert(0, "example_id", idx)
            write_parquet(part, out_dir / f"{name}.parquet")
            info[name] = split_record(name, idx)
        write_stats(out_dir, {"pixel_mean": float(mean), "pixel_std": float(std)})
        return info

    def load(self, config, processed_dir, split):
        path = processed_dir / f"{split}.parquet"
        df = read_parquet(path, PIXELS + ["digit"])
        labels = digit_labels(df, path)
        images = normalised_pixels(df, processed_dir)
        images = torch.from_numpy(images).reshape(-1, 1, 8, 8)
        targets = torch.from_numpy((labels[:, None] == np.arange(N_CLASSES)[None]).astype(np.float32))
        return ImageSplit(images, targets)

    def build_model(self, config, tasks):
        from ..models.cnn import ConvNet

        return ConvNet(tasks, in_channels=1, channels=config["model"]["channels"],
                       kernel=config["model"]["kernel"], pool=2, image_size=8)


SPEC = DigitsMTL()
