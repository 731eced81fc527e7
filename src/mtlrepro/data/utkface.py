"""utkface: UTKFace's aligned and cropped faces (200x200 JPEG) with three tasks, BayesAgg-MTL's
protocol: age regression (z-scored on the training split; MSE reported on that scale, as the
paper's 1.40 x 10^-1 STL), gender (2 classes) and race (5 classes), both CE; ResNet-18 from
scratch -> FC 256 + ELU; Resize 140 -> RandomCrop 128 + horizontal flip for training, centre
crop 128 for evaluation; inputs normalised with the training split's channel statistics.

source: {kind: path, path: <the UTKFace/ folder of [age]_[gender]_[race]_[datetime].jpg.chip.jpg
files, or a .tar.gz / .zip of it>}. No checksum is published: the manifest records the sha256
of every image read. A name whose first three `_` fields are not three integer labels (the three
known names without a race) is dropped, as the protocol says; other irregular names whose labels
parse (a space before `.jpg`, a missing dot) are kept. Both are listed by name in the manifest
and in the validation report.
split: 70/10/20 stratified by age (`split.val`, `split.test`), drawn with split_seed; ages seen
fewer than 3 times go to train. `split.resize` is the stored side (paper 140).
"""
from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError
from .base import DatasetSpec, Task, read_parquet, split_record, write_parquet, write_stats
from .images import (ImageSplit, channel_stats, decode, image_header, load_images, read_split_table,
                     source_root, store_images, write_image_table)

META_FILE, IMAGES_FILE = "utkface.parquet", "utkface_images.parquet"
REGULAR_NAME = re.compile(r"^\d{1,3}_\d_\d_\d{17}\.jpg\.chip\.jpg$")
GENDERS, RACES = (0, 1), (0, 1, 2, 3, 4)
AGE_RANGE = (1, 116)
RARE_AGE = 3  # ages seen fewer times than this go to the training split


def parse_name(name: str) -> tuple[tuple[int, int, int] | None, str | None]:
    """((age, gender, race) or None when the labels cannot be read, the issue or None)."""
    fields = name.split("_")
    try:
        labels = tuple(int(f) for f in fields[:3])
        if len(fields) < 4:  # "39_1_2017...": the third field is the date, not a race
            raise ValueError
    except ValueError:
        return None, "fewer than 3 integer labels"
    return labels, None if REGULAR_NAME.match(name) else "irregular file name"


def label_error(name: str, labels) -> str | None:
    age, gender, race = labels
    if not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        return f"{name}: age {age} outside {AGE_RANGE[0]}..{AGE_RANGE[1]}"
    if gender not in GENDERS:
        return f"{name}: gender {gender} not in {list(GENDERS)}"
    if race not in RACES:
        return f"{name}: race {race} not in {list(RACES)}"
    return None


def _image_files(root: Path, workdir: Path) -> list[Path]:
    from ..archives import safe_extract

    if root.is_file():
        root = safe_extract(root, workdir / "extracted")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith("jpg"))
    if not files:
        raise MTLReproError(f"{root}: no UTKFace images (*.jpg.chip.jpg)")
    names = [p.name for p in files]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise MTLReproError(f"{root}: image name(s) found twice: {twice[:5]}")
    return files


def _table_row(path: Path, data: bytes) -> dict:
    name = path.name
    labels, issue = parse_name(name)
    width, height, mode = image_header(data, str(path))
    age, gender, race = labels if labels else (None, None, None)
    return {"file_name": name, "age": age, "gender": gender, "race": race, "dropped": labels is None,
            "irregular_name": name if issue else None, "issue": issue,
            "label_error": label_error(name, labels) if labels else None,
            "width": width, "height": height, "mode": mode}


class UTKFace(DatasetSpec):
    name = "utkface"
    raw_files = (META_FILE, IMAGES_FILE)

    def tasks(self, config):
        return [Task("age", "regression", "mse", unit="z-scored"), Task("gender", "multiclass", "accuracy", 2),
                Task("race", "multiclass", "accuracy", 5)]

    def download(self, config, raw_dir):
        root = source_root(config, self.name, "UTKFace folder or archive")
        rows, digests = [], {}
        with tempfile.TemporaryDirectory(prefix="utkface-") as work:
            files = _image_files(root, Path(work))

            def images():
                for path in files:
                    data = path.read_bytes()
                    rows.append(_table_row(path, data))
                    digests[path.name] = hashlib.sha256(data).hexdigest()
                    yield path.name, data

            write_image_table(raw_dir / IMAGES_FILE, images())
        table = pd.DataFrame(rows)
        for column in ("age", "gender", "race"):
            table[column] = table[column].astype("Int64")
        write_parquet(table, raw_dir / META_FILE)
        odd = table[table["issue"].notna()]
        return {"source": str(root), "images": len(table), "source_sha256": digests,
                "dropped": odd.loc[odd["dropped"], "file_name"].tolist(),
                "irregular_kept": odd.loc[~odd["dropped"], "file_name"].tolist()}

    def _split(self, config, split_seed, table):
        from sklearn.model_selection import train_test_split

        ages = table["age"].to_numpy()
        counts = pd.Series(ages).value_counts()
        rare = np.isin(ages, counts.index[counts < RARE_AGE])
        ids = np.flatnonzero(~rare)
        split = config["split"]
        try:
            train_val, test = train_test_split(ids, test_size=split["test"], random_state=split_seed,
                                               stratify=ages[ids])
            train, val = train_test_split(train_val, test_size=split["val"] / (1 - split["test"]),
                                          random_state=split_seed, stratify=ages[train_val])
        except ValueError as err:
            raise MTLReproError(f"dataset.utkface.split: cannot stratify {len(ids)} images by age: {err}") from None
        return {"train": np.sort(np.concatenate([train, np.flatnonzero(rare)])), "val": np.sort(val),
                "test": np.sort(test)}

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        full = read_parquet(raw_dir / META_FILE, ["file_name", "age", "gender", "race", "dropped"])
        table = full[~full["dropped"].astype(bool)].reset_index(drop=True)
        parts = self._split(config, split_seed, table)
        side = config["split"]["resize"]
        where, info = {}, {}
        for name, rows in parts.items():
            part = table.iloc[rows][["file_name", "age", "gender", "race"]].reset_index(drop=True)
            part.insert(0, "example_id", rows)
            write_parquet(part.astype({"age": "int64", "gender": "int64", "race": "int64"}), out_dir / f"{name}.parquet")
            where.update({f: (name, i) for i, f in enumerate(part["file_name"])})
            info[name] = split_record(name, rows)
        store_images(raw_dir / IMAGES_FILE, out_dir, where, {n: len(r) for n, r in parts.items()},
                     (3, side, side), lambda data, key: decode(data, key, "rgb", side))
        mean, std = channel_stats(np.load(out_dir / "train_images.npy", mmap_mode="r"))
        train_ages = table["age"].to_numpy(float)[parts["train"]]
        write_stats(out_dir, {"channel_mean": mean, "channel_std": std, "age_mean": float(train_ages.mean()),
                              "age_std": float(train_ages.std()), "side": side,
                              "dropped": full.loc[full["dropped"].astype(bool), "file_name"].tolist()})
        return info

    def load(self, config, processed_dir, split):
        from ..augment import Pipeline, make_ops
        from .base import read_stats

        df = read_split_table(processed_dir, split, ["age", "gender", "race"])
        path = processed_dir / f"{split}.parquet"
        for column, allowed in (("gender", GENDERS), ("race", RACES)):
            if not np.isin(df[column].to_numpy(), allowed).all():
                raise MTLReproError(f"{path}: column {column!r} has values outside {list(allowed)}")
        stats = read_stats(processed_dir)
        images = load_images(processed_dir / f"{split}_images.npy")
        if images.shape[0] != len(df):
            raise MTLReproError(f"{processed_dir / f'{split}_images.npy'}: {images.shape[0]} images for {len(df)} rows")
        age = (df["age"].to_numpy(np.float32) - stats["age_mean"]) / stats["age_std"]
        targets = torch.from_numpy(np.stack([age, df["gender"].to_numpy(np.float32),
                                             df["race"].to_numpy(np.float32)], 1).astype(np.float32))
        model = config["model"]
        pipeline = Pipeline(mean=stats["channel_mean"], std=stats["channel_std"], train=split == "train",
                            crop=model["crop"], train_crop="random", hflip=True,
                            ops=make_ops(model.get("backend", "auto")))
        return ImageSplit(images, targets, pipeline)

    def build_model(self, config, tasks):
        from ..models.resnet import build_resnet_mtl

        return build_resnet_mtl(config["model"], tasks)


SPEC = UTKFace()
