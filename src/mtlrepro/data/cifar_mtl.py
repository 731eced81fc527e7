"""cifar-mtl: CIFAR-100 as 20 one-vs-rest binary tasks, one per super-class (`coarse_labels`),
BayesAgg-MTL's CIFAR-MTL, with its 3-conv network (160 channels, reflect padding, ELU, max-pool 3,
batch-norm: a 160-d representation) and Normalize(0.5), no augmentation.

source:
  kind: url   -- the official cifar-100-python.tar.gz from `url`, checked against `md5`
                 (published: eb9058c3a382ffc7106e4002c42a8d85); file:// URLs work for a local copy
  kind: path  -- `path` is a local cifar-100-python.tar.gz (md5 checked when `md5` is set) or its
                 extracted folder (holding cifar-100-python/{train,test,meta} or {train,test,meta})
The archive is unpacked with archives.safe_extract and the pickles are read with the restricted
unpickler of safe_pickle (numeric arrays and plain data only). download writes cifar100.parquet
(one row per image: split, index, filename, labels and names, image shape) and cifar100_images.npy
(uint8 [60000, 3, 32, 32], train then test), plus the sha256 of every file read.
split: the official 50,000 / 10,000; `split.val` of the training images (paper: 0.1, i.e. 5,000),
drawn with split_seed, are the validation split.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError, sha256_file
from ..safe_pickle import load_numpy_pickle, plain_keys
from .base import DatasetSpec, Task, read_parquet, split_record, write_parquet, write_stats
from .images import ImageSplit, load_images

META_FILE, IMAGES_FILE = "cifar100.parquet", "cifar100_images.npy"
PUBLISHED_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
SIDE = 32
# CIFAR-100's 20 super-classes and their 5 classes each (the dataset's published hierarchy);
# label ids are the alphabetical positions of the names, as in the archive's `meta`.
SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
COARSE_NAMES = sorted(SUPERCLASSES)
FINE_NAMES = sorted(f for fines in SUPERCLASSES.values() for f in fines)
FINE_TO_COARSE = {FINE_NAMES.index(f): COARSE_NAMES.index(c) for c, fines in SUPERCLASSES.items() for f in fines}


def _pickle_folder(root: Path) -> Path:
    for folder in (root / "cifar-100-python", root):
        if all((folder / name).is_file() for name in ("train", "test", "meta")):
            return folder
    raise MTLReproError(f"{root}: no CIFAR-100 python files (cifar-100-python/{{train,test,meta}})")


def _read_part(path: Path, shown: str) -> tuple[np.ndarray, list[int], list[int], list[str]]:
    """One of the train/test pickles; errors name `shown` (the file, or archive:member)."""
    record = plain_keys(load_numpy_pickle(path, shown), shown)
    path = shown
    missing = [k for k in ("data", "fine_labels", "coarse_labels", "filenames") if k not in record]
    if missing:
        raise MTLReproError(f"{path}: missing key(s) {missing} in the CIFAR-100 pickle")
    data = record["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise MTLReproError(f"{path}: 'data' must be uint8 [N, 3072], got "
                            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    n = data.shape[0]
    for key in ("fine_labels", "coarse_labels", "filenames"):
        if not isinstance(record[key], (list, np.ndarray)) or len(record[key]) != n:
            raise MTLReproError(f"{path}: '{key}' must be a list of {n} entries")
    names = [f.decode("latin1") if isinstance(f, bytes) else str(f) for f in record["filenames"]]
    try:
        fine, coarse = [int(v) for v in record["fine_labels"]], [int(v) for v in record["coarse_labels"]]
    except (TypeError, ValueError) as err:
        raise MTLReproError(f"{path}: labels must be integers ({err})") from None
    return data, fine, coarse, names


def _read_meta(path: Path, shown: str) -> tuple[list[str], list[str]]:
    record = plain_keys(load_numpy_pickle(path, shown), shown)
    path = shown
    try:
        return [str(n) for n in record["fine_label_names"]], [str(n) for n in record["coarse_label_names"]]
    except KeyError as err:
        raise MTLReproError(f"{path}: missing key {err} in CIFAR-100's meta pickle") from None


def _name(names: list[str], label: int) -> str | None:
    return names[label] if 0 <= label < len(names) else None


def _brief(shown: str) -> str:
    """`archive.tar.gz:member/` or `folder/` without the leading folders (validation reports cut long values)."""
    head, sep, tail = shown.partition(":")
    return f"{Path(head).name}{sep}{tail}" if sep else f"{Path(head).name}/"


def _label_error(where: str, i: int, fine: int, coarse: int) -> str | None:
    """Names the pickle and the image whose labels are outside the sets or disagree."""
    if not 0 <= fine < len(FINE_NAMES):
        return f"{where}[{i}]: fine_label {fine} outside 0..{len(FINE_NAMES) - 1}"
    if FINE_TO_COARSE[fine] != coarse:
        return f"{where}[{i}]: coarse_label {coarse} is not the super-class of fine_label {fine}"
    return None


class CifarMTL(DatasetSpec):
    name = "cifar-mtl"
    raw_files = (META_FILE, IMAGES_FILE)

    def tasks(self, config):
        return [Task(f"is_{c}", "binary", "accuracy") for c in COARSE_NAMES]

    def _obtain(self, config: dict, workdir: Path) -> tuple[Path, dict]:
        """The folder of the pickles, and what was read (its sha256) for the manifest."""
        from ..archives import fetch, md5_file, safe_extract

        source = config["source"]
        if source["kind"] == "url":
            archive = fetch(source["url"], workdir / "cifar-100-python.tar.gz", source.get("md5"))
            origin = {"source": source["url"], "md5_verified": source.get("md5")}
        else:
            path = Path(source.get("path") or "").expanduser()
            if not source.get("path") or not path.exists():
                raise MTLReproError(f"dataset.cifar-mtl.source.path: no such file or folder: {path}")
            if path.is_dir():
                folder = _pickle_folder(path)
                return folder, {"source": str(path), "shown": f"{folder}/",
                                "source_sha256": {n: sha256_file(folder / n) for n in ("train", "test", "meta")}}
            archive, origin = path, {"source": str(path), "md5_verified": source.get("md5")}
            if source.get("md5") and (got := md5_file(path)) != source["md5"]:
                raise MTLReproError(f"checksum mismatch for {path}: expected md5 {source['md5']}, got {got}")
        origin["source_sha256"] = sha256_file(archive)
        folder = _pickle_folder(safe_extract(archive, workdir / "extracted"))
        member = folder.relative_to(workdir / "extracted").as_posix()
        origin["shown"] = f"{archive}:{member + '/' if member != '.' else ''}"  # errors name archive:member
        return folder, origin

    def download(self, config, raw_dir):
        with tempfile.TemporaryDirectory(prefix="cifar-mtl-") as work:
            folder, manifest = self._obtain(config, Path(work))
            shown = manifest.pop("shown")
            fine_names, coarse_names = _read_meta(folder / "meta", f"{shown}meta")
            brief = _brief(shown)
            parts = [(split, *_read_part(folder / split, f"{shown}{split}"), f"{brief}{split}") for split in ("train", "test")]
        rows = []
        for split, data, fine, coarse, names, where in parts:
            rows.append(pd.DataFrame({
                "split": split, "index": np.arange(len(data)), "filename": names,
                "fine_label": fine, "coarse_label": coarse,
                "fine_name": [_name(fine_names, f) for f in fine],
                "coarse_name": [_name(coarse_names, c) for c in coarse],
                "height": SIDE, "width": SIDE, "channels": 3,
                "label_error": [_label_error(where, i, f, c) for i, (f, c) in enumerate(zip(fine, coarse))]}))
        table = pd.concat(rows, ignore_index=True)
        images = np.concatenate([p[1] for p in parts]).reshape(-1, 3, SIDE, SIDE)  # R, G, B planes
        write_parquet(table, raw_dir / META_FILE)
        np.save(raw_dir / IMAGES_FILE, images, allow_pickle=False)
        return {**manifest, "images": int(len(table))}

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        table = read_parquet(raw_dir / META_FILE, ["split", "coarse_label", "fine_label"])
        images = load_images(raw_dir / IMAGES_FILE).numpy()
        if len(images) != len(table):
            raise MTLReproError(f"{raw_dir / IMAGES_FILE}: {len(images)} images for {len(table)} rows "
                                f"of {raw_dir / META_FILE}")
        train_rows = np.flatnonzero(table["split"].to_numpy() == "train")
        test_rows = np.flatnonzero(table["split"].to_numpy() == "test")
        n_val = int(round(config["split"]["val"] * len(train_rows)))
        if not 0 < n_val < len(train_rows):
            raise MTLReproError(f"dataset.cifar-mtl.split.val {config['split']['val']} leaves no train or "
                                f"no validation images out of {len(train_rows)}")
        perm = np.random.default_rng(split_seed).permutation(train_rows)
        info = {}
        for name, rows in (("train", np.sort(perm[n_val:])), ("val", np.sort(perm[:n_val])), ("test", test_rows)):
            part = table.iloc[rows][["coarse_label", "fine_label"]].reset_index(drop=True)
            part.insert(0, "example_id", rows)
            write_parquet(part, out_dir / f"{name}.parquet")
            np.save(out_dir / f"{name}_images.npy", images[rows], allow_pickle=False)
            info[name] = split_record(name, rows)
        write_stats(out_dir, {"normalize_mean": 0.5, "normalize_std": 0.5, "side": SIDE})
        return info

    def load(self, config, processed_dir, split):
        from ..augment import Pipeline

        path = processed_dir / f"{split}.parquet"
        df = read_parquet(path, ["example_id", "coarse_label"])
        coarse = df["coarse_label"].to_numpy()
        if not np.isin(coarse, np.arange(len(COARSE_NAMES))).all():
            raise MTLReproError(f"{path}: column 'coarse_label' has values outside 0..19")
        images = load_images(processed_dir / f"{split}_images.npy")
        if images.shape[0] != len(df) or tuple(images.shape[1:]) != (3, SIDE, SIDE):
            raise MTLReproError(f"{processed_dir / f'{split}_images.npy'}: shape {tuple(images.shape)} does "
                                f"not match {len(df)} images of 3x{SIDE}x{SIDE}")
        targets = torch.from_numpy((coarse[:, None] == np.arange(len(COARSE_NAMES))[None]).astype(np.float32))
        return ImageSplit(images, targets, Pipeline(mean=(0.5,) * 3, std=(0.5,) * 3))  # no augmentation

    def build_model(self, config, tasks):
        from ..models.cnn import ConvNet

        return ConvNet(tasks, in_channels=3, channels=config["model"]["channels"], kernel=config["model"]["kernel"],
                       pool=3, image_size=SIDE, padding_mode="reflect")


SPEC = CifarMTL()
