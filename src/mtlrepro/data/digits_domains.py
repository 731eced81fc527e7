"""digits-domains: VMTL's setting (tasks from different input domains that share one label space,
little data each) built from scikit-learn's 1,797 handwritten digits (8x8).

Each domain is a fixed transformation of the source images and one 10-class task:

    original   the image as it is
    rot90 / rot180 / rot270   np.rot90(image, k) (counter-clockwise)
    flip_lr / flip_ud         mirrored left-right / upside-down
    inverted   16 - image (ink and background swapped; pixels are 0..16)
    noisy      image + Gaussian noise of std `split.transforms.noise_std`, clipped to 0..16 (seeded)
    shifted    cyclic translation by `split.transforms.shift` = [rows, cols] (np.roll)

Every source image is used in at most one domain (no leakage between tasks): per digit class the
images are shuffled (split_seed) and dealt to the domains in turn; within a domain each class
gives `train_per_class` training, `val_per_class` validation and `test_per_class` test images
(null: the rest of its share). An example is labelled only for its own domain's task (NaN for the
others). The domains and their transforms sit in the `split` block: they decide which source
images become which examples, so the workflow re-runs preprocess when they change. Model: the ConvNet of digits-mtl with 10-way heads. The raw file is digits-mtl's
digits.csv (same source, same checksum, same validation suite).
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError
from .base import DatasetSpec, Task, read_csv, read_parquet, split_record, write_parquet, write_stats
from .digits import N_CLASSES, PIXELS, SPEC as DIGITS, ImageSplit, digit_labels, normalised_pixels

DOMAINS = ("original", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "inverted", "noisy", "shifted")
MAX_PIXEL = 16.0
SPLITS = ("train", "val", "test")


def _domain_names(config: dict) -> list[str]:
    names = list(config["split"]["domains"])
    unknown = [d for d in names if d not in DOMAINS]
    if unknown:
        raise MTLReproError(f"dataset.digits-domains.split.domains: unknown domain(s) {unknown}; known: {', '.join(DOMAINS)}")
    if len(names) < 1 or len(set(names)) != len(names):
        raise MTLReproError(f"dataset.digits-domains.split.domains must list distinct domains, got {names}")
    return names


def domain_seed(split_seed: int, domain: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(split_seed), zlib.crc32(domain.encode())])


def transform(domain: str, images: np.ndarray, transforms: dict, rng: np.random.Generator | None = None) -> np.ndarray:
    """images [N, 8, 8] (0..16) -> the domain's images [N, 8, 8] float64."""
    x = np.asarray(images, dtype=np.float64)
    if domain == "original":
        return x.copy()
    if domain in ("rot90", "rot180", "rot270"):
        return np.rot90(x, k={"rot90": 1, "rot180": 2, "rot270": 3}[domain], axes=(1, 2)).copy()
    if domain == "flip_lr":
        return x[:, :, ::-1].copy()
    if domain == "flip_ud":
        return x[:, ::-1, :].copy()
    if domain == "inverted":
        return MAX_PIXEL - x
    if domain == "noisy":
        if rng is None:
            raise ValueError("the noisy domain needs a random generator")
        return np.clip(x + rng.normal(0.0, float(transforms["noise_std"]), size=x.shape), 0.0, MAX_PIXEL)
    if domain == "shifted":
        rows, cols = (int(v) for v in transforms["shift"])
        return np.roll(x, shift=(rows, cols), axis=(1, 2))
    raise MTLReproError(f"unknown domain {domain!r}")


def assign_domains(labels: np.ndarray, n_domains: int, split_seed: int) -> np.ndarray:
    """Domain index of every source image: per class a seeded shuffle dealt round-robin."""
    rng = np.random.default_rng(np.random.SeedSequence([int(split_seed), 0xD0]))
    owner = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        ids = rng.permutation(np.flatnonzero(labels == c))
        owner[ids] = np.arange(len(ids)) % n_domains
    return owner


class DigitsDomains(DatasetSpec):
    name = "digits-domains"
    raw_files = ("digits.csv",)
    content_columns = ("domain", *PIXELS)

    def tasks(self, config):
        return [Task(d, "multiclass", "accuracy", n_classes=N_CLASSES) for d in _domain_names(config)]

    def download(self, config, raw_dir):
        return DIGITS.download(config, raw_dir)  # the same source file and raw table as digits-mtl

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        path = raw_dir / "digits.csv"
        df = read_csv(path, PIXELS + ["digit"])
        labels = digit_labels(df, path)
        domains = _domain_names(config)
        sizes = config["split"]
        wanted = {s: sizes[f"{s}_per_class"] for s in SPLITS}
        owner = assign_domains(labels, len(domains), split_seed)
        images = df[PIXELS].to_numpy(np.float64).reshape(-1, 8, 8)
        parts: dict[str, list[pd.DataFrame]] = {s: [] for s in SPLITS}
        for d, domain in enumerate(domains):
            chosen = {s: [] for s in SPLITS}
            for c in range(N_CLASSES):
                ids = np.flatnonzero((owner == d) & (labels == c))  # in shuffled order below
                ids = ids[np.random.default_rng(domain_seed(split_seed, f"{domain}/{c}")).permutation(len(ids))]
                need = wanted["train"] + wanted["val"] + (wanted["test"] or 0)
                if need > len(ids) or (wanted["test"] is None and wanted["train"] + wanted["val"] >= len(ids)):
                    raise MTLReproError(
                        f"dataset.digits-domains.split asks for {need} images of digit {c} per domain but "
                        f"{len(domains)} domains leave {len(ids)} for domain {domain!r}")
                bounds = np.cumsum([0, wanted["train"], wanted["val"]])
                chosen["train"].append(ids[bounds[0]:bounds[1]])
                chosen["val"].append(ids[bounds[1]:bounds[2]])
                chosen["test"].append(ids[bounds[2]:] if wanted["test"] is None else ids[bounds[2]:bounds[2] + wanted["test"]])
            rng = np.random.default_rng(domain_seed(split_seed, domain))
            for split in SPLITS:
                idx = np.sort(np.concatenate(chosen[split]))
                pixels = transform(domain, images[idx], config["split"]["transforms"], rng).reshape(len(idx), 64)
                part = pd.DataFrame(pixels, columns=PIXELS)
                part.insert(0, "digit", labels[idx])
                part.insert(0, "domain", domain)
                part.insert(0, "example_id", idx)
                parts[split].append(part)
        info, stats = {}, {}
        for split in SPLITS:
            part = pd.concat(parts[split], ignore_index=True)
            if split == "train":  # normalisation statistics from the training split only
                pixels = part[PIXELS].to_numpy(np.float64)
                stats = {"pixel_mean": float(pixels.mean()), "pixel_std": float(pixels.std())}
            write_parquet(part, out_dir / f"{split}.parquet")
            info[split] = split_record(split, part["example_id"].to_numpy())
        stats["counts"] = {s: {d: int(n) for d, n in pd.concat(parts[s])["domain"].value_counts().items()}
                           for s in SPLITS}
        write_stats(out_dir, stats)
        return info

    def load(self, config, processed_dir, split):
        path = processed_dir / f"{split}.parquet"
        df = read_parquet(path, ["domain", "digit"] + PIXELS)
        domains = _domain_names(config)
        unknown = sorted(set(df["domain"].astype(str)) - set(domains))
        if unknown:
            raise MTLReproError(f"{path}: column 'domain' has domains {unknown} not in dataset.digits-domains.split.domains")
        labels = digit_labels(df, path)
        images = torch.from_numpy(normalised_pixels(df, processed_dir)).reshape(-1, 1, 8, 8)
        targets = np.full((len(df), len(domains)), np.nan, dtype=np.float32)
        column = df["domain"].map({d: k for k, d in enumerate(domains)}).to_numpy(dtype=np.int64)
        targets[np.arange(len(df)), column] = labels
        return ImageSplit(images, torch.from_numpy(targets))

    def build_model(self, config, tasks):
        from ..models.cnn import ConvNet

        return ConvNet(tasks, in_channels=1, channels=config["model"]["channels"],
                       kernel=config["model"]["kernel"], pool=2, image_size=8)


SPEC = DigitsDomains()
