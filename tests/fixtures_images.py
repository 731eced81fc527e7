"""Small files in the real on-disk formats of the three image benchmarks (../shared/PROTOCOLS.md):

* `write_cifar(folder)` -> folder/cifar-100-python.tar.gz holding cifar-100-python/{train,test,meta}
  as Python-2 pickles, written opcode by opcode as Python 2's cPickle writes them (protocol 2,
  8-bit strings, numpy.core.multiarray._reconstruct): 2 training and 1 test image per fine class.
* `write_utkface(folder)` -> folder/UTKFace/ with 200x200 JPEGs named
  [age]_[gender]_[race]_[datetime].jpg.chip.jpg, plus the five known irregular names.
* `write_chestxray(folder)` -> folder with Data_Entry_2017_v2020.csv, train_val_list.txt,
  test_list.txt and images/*.png at 1024x1024 in grey, RGBA and 16-bit.

Each returns what `source.path` should name, and the number of images (`source.expected_images`).
"""
from __future__ import annotations

import io
import struct
import tarfile
from pathlib import Path

import numpy as np

from mtlrepro.data.cifar_mtl import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE
from mtlrepro.data.chestxray14 import FINDINGS

# ---------------------------------------------------------------- a Python-2 cPickle writer


def _string(value: bytes) -> bytes:
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(value)) + value  # BINSTRING


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _obj(value) -> bytes:
    if isinstance(value, np.ndarray):
        shape = b"(" + b"".join(_int(n) for n in value.shape) + b"t"
        dtype = (b"cnumpy\ndtype\n" + _string(b"u1") + _int(0) + _int(1) + b"\x87R"
                 + b"(" + _int(3) + _string(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + _int(0) + b"tb")
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85"
                + _string(b"b") + b"\x87R" + b"(" + _int(1) + shape + dtype + b"\x89"
                + _string(np.ascontiguousarray(value).tobytes()) + b"tb")
    if isinstance(value, (bytes, str)):
        return _string(value if isinstance(value, bytes) else value.encode("latin1"))
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, list):
        return b"](" + b"".join(_obj(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"}(" + b"".join(_obj(k) + _obj(v) for k, v in value.items()) + b"u"
    raise TypeError(type(value))


def py2_pickle(value) -> bytes:
    return b"\x80\x02" + _obj(value) + b"."


# ---------------------------------------------------------------- CIFAR-100


def cifar_parts(seed: int = 0, train_per_class: int = 2, test_per_class: int = 1) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    parts = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = [f for f in range(100) for _ in range(per_class)]
        colour = np.array([[(37 * FINE_TO_COARSE[f]) % 256, (91 * f) % 256, 128] for f in fine], dtype=np.int64)
        images = np.clip(colour[:, :, None] + rng.integers(-20, 21, (len(fine), 3, 1024)), 0, 255).astype(np.uint8)
        parts[split] = {"batch_label": f"{split}ing batch 1 of 1", "filenames": [f"img_{split}_{i:05d}.png" for i in range(len(fine))],
                        "fine_labels": fine, "coarse_labels": [FINE_TO_COARSE[f] for f in fine],
                        "data": images.reshape(len(fine), 3072)}
    return parts


def write_cifar_archive(path: Path, parts: dict[str, dict], extra_members: dict[str, bytes] | None = None) -> Path:
    members = {f"cifar-100-python/{k}": py2_pickle(v) for k, v in parts.items()}
    members["cifar-100-python/meta"] = py2_pickle({"fine_label_names": FINE_NAMES, "coarse_label_names": COARSE_NAMES})
    members.update(extra_members or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_cifar(folder: Path) -> tuple[Path, int]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = cifar_parts()
    archive = write_cifar_archive(folder / "cifar-100-python.tar.gz", parts)
    return archive, sum(len(p["fine_labels"]) for p in parts.values())


# ---------------------------------------------------------------- UTKFace

UTK_IRREGULAR = {  # the known irregular names: three without race, a space, a missing dot
    "39_1_20170116174525125.jpg.chip.jpg": False, "61_1_20170109142408075.jpg.chip.jpg": False,
    "61_1_20170109150557335.jpg.chip.jpg": False, "24_0_1_20170116220224657 .jpg.chip.jpg": True,
    "55_0_0_20170116232725357jpg.chip.jpg": True}  # name -> kept by the protocol


def _jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def utkface_names(per_age: int = 15, ages=(20, 30, 40, 50)) -> list[str]:
    names = []
    for a, age in enumerate(ages):
        for i in range(per_age):
            k = a * per_age + i
            names.append(f"{age}_{k % 2}_{k % 5}_201701{k:011d}.jpg.chip.jpg")
    names.append("90_1_2_20170109000000001.jpg.chip.jpg")  # an age seen once: goes to train
    return names + list(UTK_IRREGULAR)


def write_utkface(folder: Path, names: list[str] | None = None) -> tuple[Path, int]:
    root = folder / "UTKFace"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    names = names or utkface_names()
    for k, name in enumerate(names):
        base = np.array([40 + (k * 7) % 180, 90, 160 - (k * 3) % 100], dtype=np.int64)
        image = np.clip(base + rng.integers(-15, 16, (200, 200, 3)), 0, 255).astype(np.uint8)
        (root / name).write_bytes(_jpeg(image))
    return root, len(names)


# ---------------------------------------------------------------- ChestX-ray14


def _png(image: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(image.astype(np.uint16) * 257).save(buffer, format="PNG")
    elif mode == "RGBA":
        rgba = np.stack([image, image, image, np.full_like(image, 255)], -1)
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    else:
        Image.fromarray(image, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def chestxray_entries(patients: int = 12, per_patient: int = 3, test_patients: int = 4):
    rows, test = [], []
    for p in range(1, patients + 1):
        for j in range(per_patient):
            k = len(rows)
            labels = "No Finding" if k % 12 == 0 else "|".join(sorted({FINDINGS[k % 14], FINDINGS[(k + 5) % 14]}))
            rows.append((f"{p:08d}_{j:03d}.png", labels, j, p))
            if p > patients - test_patients:
                test.append(rows[-1][0])
    return rows, test


def write_chestxray(folder: Path, modes: dict[int, str] | None = None) -> tuple[Path, int]:
    """modes: row -> PIL mode of that PNG (default: rows 1 and 5 RGBA, row 2 16-bit, others L)."""
    modes = {1: "RGBA", 5: "RGBA", 2: "I;16"} if modes is None else modes
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows, test = chestxray_entries()
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Sex,View Position"]
    ramp = np.linspace(0, 1, 1024)
    for k, (name, labels, follow_up, patient) in enumerate(rows):
        lines.append(f"{name},{labels},{follow_up},{patient},{40 + patient},M,PA")
        image = (np.outer(ramp, ramp) * (80 + 10 * (k % 16)) + 40 * (labels != "No Finding")).astype(np.uint8)
        (folder / "images" / name).write_bytes(_png(image, modes.get(k, "L")))
    (folder / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    (folder / "test_list.txt").write_text("\n".join(test) + "\n")
    (folder / "train_val_list.txt").write_text("\n".join(r[0] for r in rows if r[0] not in test) + "\n")
    return folder, len(rows)
