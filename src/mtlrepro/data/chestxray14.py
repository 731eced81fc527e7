"""chestx-ray14: NIH ChestX-ray14 as 14 binary findings (alphabetical; `No Finding` = all zeros),
BayesAgg-MTL's protocol: ResNet-34 from ImageNet weights (a local torchvision state_dict file,
`model.weights`) with its fc replaced by FC 256 + ELU; 224-pixel inputs, RandomResizedCrop
(scale 0.08-1), horizontal flip, RandAugment m9-mstd0.5, ImageNet statistics, RandomErasing 0.25
for training; the centre crop for evaluation; per-finding AUC-ROC.

source: {kind: path, path: <folder>} holding Data_Entry_2017_v2020.csv (`Image Index`, `Finding
Labels`, `Patient ID`), train_val_list.txt, test_list.txt, and the PNGs: in images/ (or
images_NNN/images/), or still packed as images_NNN.tar.gz (unpacked with archives.safe_extract).
download copies every PNG the CSV names byte for byte into chestxray14_images.parquet (the raw copy
DVC tracks, about 45 GB for the full set) and writes chestxray14.parquet: one row per image with
its labels, patient, official split, PNG size and mode, for the validate stage.
split: the official test list; the official train_val list is split by patient (no patient in
two splits) with `split.val` of its patients as validation, drawn with split_seed (the authors'
CSVs: 69,438 / 17,086 / 25,596). Images are stored grey at `split.resize` (paper: 256, then the
224 crop); grey, RGBA and 16-bit PNGs are converted to 8-bit grey the same way (images.decode).
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError
from .base import DatasetSpec, Task, read_csv, read_parquet, require_file, split_record, write_parquet, write_stats
from .images import (ImageSplit, decode, image_header, load_images, read_split_table, source_root,
                     store_images, write_image_table)

META_FILE, IMAGES_FILE = "chestxray14.parquet", "chestxray14_images.parquet"
ENTRY_FILE = "Data_Entry_2017_v2020.csv"
LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis",
            "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax")
NO_FINDING = "No Finding"


def parse_findings(text: str) -> tuple[list[str], list[str]]:
    """(known findings, unknown names) of a `Finding Labels` entry such as `Effusion|Mass`."""
    if text == NO_FINDING:
        return [], []
    names = str(text).split("|")
    return [n for n in names if n in FINDINGS], [n for n in names if n not in FINDINGS]


def _png_paths(root: Path, workdir: Path) -> dict[str, Path]:
    from ..archives import safe_extract

    folders = [root / "images"] + sorted(root.glob("images_*/images"))
    for k, archive in enumerate(sorted(p for p in root.glob("images_*.tar.gz") if p.is_file())):
        folders += [safe_extract(archive, workdir / f"archive{k}") / "images"]
    paths: dict[str, Path] = {}
    for folder in folders:
        for png in sorted(folder.glob("*.png")) if folder.is_dir() else ():
            if png.name in paths:
                raise MTLReproError(f"{png}: image {png.name} also in {paths[png.name].parent}")
            paths[png.name] = png
    return paths


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in require_file(path, "ChestX-ray14 split list").read_text().splitlines()
            if line.strip()]


def _official_split(root: Path, images: pd.Series) -> pd.Series:
    lists = {name: set(_read_list(root / file)) for name, file in LISTS.items()}
    for name, members in lists.items():
        unknown = sorted(members - set(images))
        if unknown:
            raise MTLReproError(f"{root / LISTS[name]}: {len(unknown)} image(s) not in {ENTRY_FILE}, e.g. {unknown[:5]}")
    both = lists["train_val"] & lists["test"]
    return images.map(lambda i: "both" if i in both else "train_val" if i in lists["train_val"]
                      else "test" if i in lists["test"] else "none")


def metadata_table(root: Path) -> pd.DataFrame:
    entries = read_csv(root / ENTRY_FILE, ["Image Index", "Finding Labels", "Patient ID"], "ChestX-ray14 file")
    table = pd.DataFrame({"image_index": entries["Image Index"].astype(str),
                          "finding_labels": entries["Finding Labels"].astype(str),
                          "patient_id": pd.to_numeric(entries["Patient ID"], errors="coerce")})
    bad = table["patient_id"].isna() | (table["patient_id"] % 1 != 0)
    if bad.any():
        raise MTLReproError(f"{root / ENTRY_FILE}: column 'Patient ID' is not an integer in {int(bad.sum())} "
                            f"row(s), e.g. image {table['image_index'][bad].iloc[0]}")
    table["patient_id"] = table["patient_id"].astype("int64")
    table["split"] = _official_split(root, table["image_index"])
    unknown = [parse_findings(t)[1] for t in table["finding_labels"]]
    table["label_error"] = [f"{i}: unknown finding(s) {u}" if u else None for i, u in zip(table["image_index"], unknown)]
    table["unlisted_image"] = table["image_index"].where(~table["split"].isin(["train_val", "test"]))
    splits_of = table.groupby("patient_id")["split"].agg(lambda s: set(s) >= {"train_val", "test"})
    in_both = table["patient_id"].map(splits_of).fillna(False).astype(bool)
    table["patient_in_both_splits"] = table["patient_id"].astype(str).where(in_both)
    return table


class ChestXray14(DatasetSpec):
    name = "chestx-ray14"
    raw_files = (META_FILE, IMAGES_FILE)

    def tasks(self, config):
        return [Task(f.lower(), "binary", "auc") for f in FINDINGS]

    def download(self, config, raw_dir):
        root = source_root(config, self.name, "ChestX-ray14 folder")
        table = metadata_table(root)
        digests, shapes = {}, {}
        with tempfile.TemporaryDirectory(prefix="chestxray14-") as work:
            paths = _png_paths(root, Path(work))
            missing = [i for i in table["image_index"] if i not in paths]
            if missing:
                raise MTLReproError(f"{root}: {len(missing)} image(s) of {ENTRY_FILE} have no PNG under images/, "
                                    f"e.g. {missing[:5]}")

            def pngs():
                for name in table["image_index"]:
                    data = paths[name].read_bytes()
                    shapes[name] = image_header(data, str(paths[name]))
                    digests[name] = hashlib.sha256(data).hexdigest()
                    yield name, data

            write_image_table(raw_dir / IMAGES_FILE, pngs())
            extra = len(paths) - len(table)
        for k, column in enumerate(("width", "height", "mode")):
            table[column] = [shapes[i][k] for i in table["image_index"]]
        write_parquet(table, raw_dir / META_FILE)
        return {"source": str(root), "images": len(table), "pngs_not_in_csv": extra,
                "source_sha256": {ENTRY_FILE: _sha(root / ENTRY_FILE),
                                  **{f: _sha(root / f) for f in LISTS.values()}, "images": digests}}

    def _split(self, config, split_seed, table):
        from sklearn.model_selection import GroupShuffleSplit

        pool = np.flatnonzero(table["split"].to_numpy() == "train_val")
        groups = table["patient_id"].to_numpy()[pool]
        if len(set(groups)) < 2:
            raise MTLReproError("chestx-ray14: the train_val list needs images of at least 2 patients")
        splitter = GroupShuffleSplit(n_splits=1, test_size=config["split"]["val"], random_state=split_seed)
        train, val = next(splitter.split(pool, groups=groups))
        return {"train": np.sort(pool[train]), "val": np.sort(pool[val]),
                "test": np.flatnonzero(table["split"].to_numpy() == "test")}

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        table = read_parquet(raw_dir / META_FILE, ["image_index", "finding_labels", "patient_id", "split"])
        parts = self._split(config, split_seed, table)
        side = config["split"]["resize"]
        where, info = {}, {}
        for name, rows in parts.items():
            labels = [parse_findings(t) for t in table["finding_labels"].iloc[rows]]
            if any(unknown for _, unknown in labels):
                raise MTLReproError(f"{raw_dir / META_FILE}: unknown findings; run the validate stage")
            part = pd.DataFrame({"example_id": rows, "image_index": table["image_index"].iloc[rows].to_numpy(),
                                 "patient_id": table["patient_id"].iloc[rows].to_numpy(dtype=np.int64)})
            for f in FINDINGS:
                part[f.lower()] = [float(f in known) for known, _ in labels]
            write_parquet(part, out_dir / f"{name}.parquet")
            where.update({i: (name, k) for k, i in enumerate(part["image_index"])})
            info[name] = split_record(name, rows)
        store_images(raw_dir / IMAGES_FILE, out_dir, where, {n: len(r) for n, r in parts.items()},
                     (1, side, side), lambda data, key: decode(data, key, "grey", side))
        write_stats(out_dir, {"side": side, "mean": list(_imagenet()[0]), "std": list(_imagenet()[1])})
        return info

    def load(self, config, processed_dir, split):
        from ..augment import Pipeline, make_ops

        columns = [f.lower() for f in FINDINGS]
        df = read_split_table(processed_dir, split, columns)
        values = df[columns].to_numpy(np.float32)
        if not np.isin(values, (0.0, 1.0)).all():
            raise MTLReproError(f"{processed_dir / f'{split}.parquet'}: finding columns must be 0 or 1")
        images = load_images(processed_dir / f"{split}_images.npy")
        if images.shape[0] != len(df):
            raise MTLReproError(f"{processed_dir / f'{split}_images.npy'}: {images.shape[0]} images for {len(df)} rows")
        model, (mean, std) = config["model"], _imagenet()
        train = split == "train"
        pipeline = Pipeline(mean=mean, std=std, train=train, crop=model["crop"], train_crop="resized",
                            hflip=True, rand_augment=True, erasing=0.25, channels=3,
                            ops=make_ops(model.get("backend", "auto")))
        return ImageSplit(images, torch.from_numpy(values), pipeline)

    def build_model(self, config, tasks):
        from ..models.resnet import build_resnet_mtl

        return build_resnet_mtl(config["model"], tasks)


def _imagenet():
    from ..augment import IMAGENET_MEAN, IMAGENET_STD

    return IMAGENET_MEAN, IMAGENET_STD


def _sha(path: Path) -> str:
    from ..io import sha256_file

    return sha256_file(require_file(path, "ChestX-ray14 file"))


SPEC = ChestXray14()
