"""What the three image benchmarks (cifar-mtl, utkface, chestx-ray14) share.

Raw folders hold a small metadata table (what the validate stage reads) beside the images:
encoded image files are copied byte for byte into `<name>_images.parquet` (columns `key`,
`data`), so a raw folder is a few flat files that the download stage can checksum, however many
images the source has. Processed folders hold `{split}.parquet` (ids, targets) and
`{split}_images.npy`: uint8 [N, C, H, W] at the size the protocol resizes to, memory-mapped when
loaded (np.load without pickles). Decoding uses PIL; every decoding error names the image.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ..io import MTLReproError, atomic_path
from .base import Split, read_parquet

IMAGE_COLUMNS = ("key", "data")
ROW_GROUP = 256


def source_root(config: dict, dataset: str, what: str) -> Path:
    """The folder (or archive) named by `source.path` for `source.kind: path`."""
    source = config["source"]
    path = source.get("path")
    if source.get("kind") != "path" or not path:
        raise MTLReproError(f"dataset.{dataset}.source must be {{kind: path, path: <{what}>}}")
    root = Path(path).expanduser()
    if not root.exists():
        raise MTLReproError(f"dataset.{dataset}.source.path: no such file or folder: {root}")
    return root


def _pil():
    from PIL import Image

    return Image


def image_header(data: bytes, name: str) -> tuple[int, int, str]:
    """(width, height, PIL mode) of an encoded image, after PIL's integrity check of the file."""
    Image = _pil()
    try:
        with Image.open(io.BytesIO(data)) as im:
            size, mode = im.size, im.mode
            im.verify()  # PNG: every chunk's CRC; catches truncated and corrupted files
    except Exception as err:  # UnidentifiedImageError, OSError, SyntaxError (bad chunks)...
        raise MTLReproError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None
    return size[0], size[1], mode


def _as_grey(im) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNGs: the top 8 bits
        values = np.asarray(im, dtype=np.float64)
        return np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"), dtype=np.uint8)  # RGB/RGBA/P/LA: ITU-R 601 luma, alpha dropped


def decode(data: bytes, name: str, colour: str, size: int | None) -> np.ndarray:
    """uint8 [C, H, W]: grey (C = 1) or RGB (C = 3), resized to size x size (bilinear) if given."""
    Image = _pil()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if colour == "grey":
                grey = _as_grey(im)
                im2 = Image.fromarray(grey)
                if size is not None and im2.size != (size, size):
                    im2 = im2.resize((size, size), Image.BILINEAR)
                return np.asarray(im2, dtype=np.uint8)[None]
            rgb = im.convert("RGB")
            if size is not None and rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    except MTLReproError:
        raise
    except Exception as err:
        raise MTLReproError(f"{name}: cannot decode image ({type(err).__name__}: {err})") from None


def write_image_table(path: Path, items: Iterable[tuple[str, bytes]]) -> int:
    """Encoded images (key, bytes) into a Parquet file, ROW_GROUP images a row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("key", pa.string()), ("data", pa.binary())])
    n = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            keys, blobs = [], []
            for key, blob in items:
                keys.append(key)
                blobs.append(blob)
                if len(keys) == ROW_GROUP:
                    writer.write_table(pa.table({"key": keys, "data": blobs}, schema=schema))
                    n, keys, blobs = n + len(keys), [], []
            if keys:
                writer.write_table(pa.table({"key": keys, "data": blobs}, schema=schema))
                n += len(keys)
    return n


def iter_image_table(path: Path) -> Iterator[list[tuple[str, bytes]]]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise MTLReproError(f"missing raw file: {path}")
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=ROW_GROUP, columns=list(IMAGE_COLUMNS)):
            yield list(zip(batch.column("key").to_pylist(), batch.column("data").to_pylist()))
    except MTLReproError:
        raise
    except Exception as err:
        raise MTLReproError(f"corrupt Parquet file {path}: {err}") from None


def store_images(raw_table: Path, out_dir: Path, where: dict[str, tuple[str, int]], sizes: dict[str, int],
                 shape: tuple[int, int, int], decoder: Callable[[bytes, str], np.ndarray]) -> None:
    """Decodes every image of `raw_table` whose key is in `where` (key -> (split, row)) into
    `{split}_images.npy` (uint8 [n, *shape]), several images at a time (PIL decodes without the GIL)."""
    arrays = {split: np.lib.format.open_memmap(out_dir / f"{split}_images.npy", mode="w+", dtype=np.uint8,
                                               shape=(n, *shape)) for split, n in sizes.items()}
    filled = {split: np.zeros(n, dtype=bool) for split, n in sizes.items()}
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for chunk in iter_image_table(raw_table):
            chunk = [(k, b) for k, b in chunk if k in where]
            for (key, _), image in zip(chunk, pool.map(lambda kb: decoder(kb[1], f"{raw_table}:{kb[0]}"), chunk)):
                split, row = where[key]
                if image.shape != shape:
                    raise MTLReproError(f"{raw_table}:{key}: decoded to shape {image.shape}, expected {shape}")
                arrays[split][row] = image
                filled[split][row] = True
    for split, done in filled.items():
        if not done.all():
            missing = [k for k, (s, r) in where.items() if s == split and not done[r]]
            raise MTLReproError(f"{raw_table}: {len(missing)} image(s) of the {split} split are missing, "
                                f"e.g. {missing[:5]}")
        arrays[split].flush()
    del arrays


def load_images(path: Path) -> Tensor:
    """uint8 [N, C, H, W] from a processed `{split}_images.npy` (no pickles allowed)."""
    if not path.is_file():
        raise MTLReproError(f"missing processed file: {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:
        raise MTLReproError(f"corrupt image array {path}: {err}") from None
    if array.dtype != np.uint8 or array.ndim != 4:
        raise MTLReproError(f"{path}: expected uint8 [N, C, H, W], got {array.dtype} {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array))


def read_split_table(processed_dir: Path, split: str, columns: Sequence[str]):
    return read_parquet(processed_dir / f"{split}.parquet", ["example_id", *columns])


class ImageSplit(Split):
    """uint8 images held on the device, turned into network inputs batch by batch by `pipeline`."""

    def __init__(self, images: Tensor, targets: Tensor, pipeline: Callable[[Tensor], Tensor]):
        if images.shape[0] != targets.shape[0]:
            raise ValueError("images and targets disagree in length")
        self.images, self.targets, self.pipeline = images, targets, pipeline

    def batch(self, indices: Tensor):
        rows = indices.to(self.images.device)
        return self.pipeline(self.images[rows]), self.targets[indices.to(self.targets.device)]

    def to(self, device) -> "ImageSplit":
        return ImageSplit(self.images.to(device), self.targets.to(device), self.pipeline)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 [N, C, H, W] images in [0, 1] (train split only)."""
    c = images.shape[1]
    total, sq, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].astype(np.float64) / 255.0
        total += part.sum(axis=(0, 2, 3))
        sq += (part ** 2).sum(axis=(0, 2, 3))
        count += part.shape[0] * part.shape[2] * part.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(sq / max(count, 1) - mean ** 2, 1e-12))
    return mean.tolist(), std.tolist()
