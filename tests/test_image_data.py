"""cifar-mtl, utkface and chestx-ray14 on fixtures in their real formats (tests/fixtures_images.py):
each runs download -> validate -> preprocess -> train -> evaluate; corrupt and hostile inputs get
an error naming the file and leave nothing behind."""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pandas as pd
import pytest
import yaml

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.io import MTLReproError, sha256_file
from tests import fixtures_images as fx
from tests.conftest import CI_PARAMS, REPO

TRAIN = {"epochs": 2, "pretrain_epochs": 1, "batch_size": 64, "lr": 1.0e-3, "weight_decay": 0.0,
         "scheduler": {"name": "none"}}


def study_params(name: str, block: dict) -> dict:
    """CI params with one image dataset in the main grid, LS and STL."""
    params = yaml.safe_load(CI_PARAMS.read_text())
    params["studies"] = {"bayesagg": {"datasets": [name], "methods": ["stl", "ls"], "published": "bayesagg",
                                      "ablations": {"robustness": {"methods": ["ls"]}}}}
    params["dataset"][name] = {**block, "train": TRAIN}
    return P.validate(params)


def cifar_block(path, n):
    return {"source": {"kind": "path", "path": str(path), "md5": None, "url": None, "expected_images": n},
            "split": {"val": 0.1}, "model": {"channels": 8, "kernel": 3}}


def image_block(path, n, backbone, split):
    return {"source": {"kind": "path", "path": str(path), "expected_images": n}, "split": split,
            "model": {"backbone": backbone, "crop": 16, "backend": "auto", "weights": None}}


def run_dag(params, name, root, methods=("ls",)):
    stages.download(params, name, root / "raw")
    stages.validate(params, name, root / "raw", root / "v.json", root / "v.html")
    stages.preprocess(params, name, root / "raw", root / "v.json", root / "proc")
    evals = {}
    for method in methods:
        stages.train(params, name, method, root / "proc", None, 100, 0, root / method, root / f"{method}.log.json")
        stages.evaluate(params, name, method, root / "proc", root / method, 100, 0, root / f"{method}.json")
        evals[method] = json.loads((root / f"{method}.json").read_text())
    return evals


# ---------------------------------------------------------------- CIFAR-MTL


def test_cifar_mtl_runs_end_to_end_from_the_python2_archive(tmp_path):
    archive, n = fx.write_cifar(tmp_path / "src")
    params = study_params("cifar-mtl", cifar_block(archive, n))
    ev = run_dag(params, "cifar-mtl", tmp_path)["ls"]
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    assert manifest["source_sha256"] == sha256_file(archive) and manifest["images"] == n
    # the restricted unpickler read the Python-2 pickles exactly: pixels in R, G, B planes
    parts = fx.cifar_parts()
    raw = np.load(tmp_path / "raw" / "cifar100_images.npy")
    assert np.array_equal(raw[:200], parts["train"]["data"].reshape(-1, 3, 32, 32))
    split = json.loads((tmp_path / "proc" / "split.json").read_text())["splits"]
    assert {k: v["size"] for k, v in split.items()} == {"train": 180, "val": 20, "test": 100}
    test = pd.read_parquet(tmp_path / "proc" / "test.parquet")
    assert (test["coarse_label"] == [fx.FINE_TO_COARSE[f] for f in test["fine_label"]]).all()
    assert len(ev["tasks"]) == 20
    # one-vs-rest accuracy of each super-class: 1 - its error on the 100 test images
    for task, result in ev["tasks"].items():
        assert 0.0 <= result["metrics"]["accuracy"] <= 1.0 and result["primary"] == "accuracy"


def test_cifar_official_download_path_checks_the_md5(tmp_path):
    archive, n = fx.write_cifar(tmp_path / "src")
    block = cifar_block(archive, n)
    good = {"kind": "url", "url": archive.as_uri(), "md5": __import__("mtlrepro.archives").archives.md5_file(archive),
            "path": None, "expected_images": n}
    stages.download(study_params("cifar-mtl", {**block, "source": good}), "cifar-mtl", tmp_path / "raw")
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text())["md5_verified"] == good["md5"]
    bad = {**good, "md5": "0" * 32}
    with pytest.raises(MTLReproError, match="checksum mismatch .* expected md5 0{32}"):
        stages.download(study_params("cifar-mtl", {**block, "source": bad}), "cifar-mtl", tmp_path / "raw2")
    assert not (tmp_path / "raw2").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code_and_never_runs_it(tmp_path):
    from mtlrepro.safe_pickle import load_numpy_pickle

    marker = tmp_path / "pwned"
    for k, payload in enumerate([{"data": _Payload(marker)}, [eval], np.array([object()], dtype=object)]):
        path = tmp_path / f"evil{k}"
        path.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(MTLReproError, match=f"{path}: refused or corrupt pickle"):
            load_numpy_pickle(path)
    assert not marker.exists()
    # the same payload inside a CIFAR archive stops the download, naming the pickle
    parts = fx.cifar_parts()
    archive = fx.write_cifar_archive(tmp_path / "a.tar.gz", {"test": parts["test"]},
                                     {"cifar-100-python/train": pickle.dumps({"data": _Payload(marker)}, protocol=2)})
    with pytest.raises(MTLReproError, match="a.tar.gz:cifar-100-python/train: refused or corrupt pickle: global posix.system"):
        stages.download(study_params("cifar-mtl", cifar_block(archive, 300)), "cifar-mtl", tmp_path / "raw")
    assert not marker.exists() and not (tmp_path / "raw").exists()


def test_truncated_cifar_pickle_names_the_file(tmp_path):
    parts = fx.cifar_parts()
    whole = fx.py2_pickle(parts["train"])
    archive = fx.write_cifar_archive(tmp_path / "a.tar.gz", {"test": parts["test"]},
                                     {"cifar-100-python/train": whole[: len(whole) // 2]})
    with pytest.raises(MTLReproError, match=r"a.tar.gz:cifar-100-python/train: .*corrupt pickle"):
        stages.download(study_params("cifar-mtl", cifar_block(archive, 300)), "cifar-mtl", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_cifar_label_outside_the_set_fails_validation(tmp_path):
    parts = fx.cifar_parts()
    parts["train"]["fine_labels"][5] = 100
    archive = fx.write_cifar_archive(tmp_path / "a.tar.gz", parts)
    params = study_params("cifar-mtl", cifar_block(archive, 300))
    stages.download(params, "cifar-mtl", tmp_path / "raw")
    with pytest.raises(MTLReproError, match=r"cifar100.parquet(.|\n)*column=fine_label: .*unexpected values.*\[100\]") as err:
        stages.validate(params, "cifar-mtl", tmp_path / "raw", tmp_path / "v.json", tmp_path / "v.html")
    assert "fine_label,coarse_label" in str(err.value)  # the hierarchy check fails too
    assert "a.tar.gz:cifar-100-python/train[5]: fine_label 100 outside 0..99" in str(err.value)  # names the file
    assert not (tmp_path / "v.json").exists()


def _tar_with(path, info: tarfile.TarInfo, data: bytes = b""):
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("cifar-100-python/meta")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"abc"))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize("member, kind, message", [
    ("../outside", tarfile.REGTYPE, "climbs out of the target folder"),
    ("/etc/evil", tarfile.REGTYPE, "absolute path"),
    ("cifar-100-python/train", tarfile.SYMTYPE, "is a link"),
    ("cifar-100-python/dev", tarfile.CHRTYPE, "not a regular file or folder"),
])
def test_hostile_archive_members_are_refused_before_anything_is_written(tmp_path, member, kind, message):
    from mtlrepro.archives import safe_extract

    info = tarfile.TarInfo(member)
    info.type = kind
    info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    archive = _tar_with(tmp_path / "evil.tar.gz", info, b"x" if kind == tarfile.REGTYPE else b"")
    with pytest.raises(MTLReproError, match=f"evil.tar.gz: .*{member!r}.*{message}"):
        safe_extract(archive, tmp_path / "out" / "x")
    assert not (tmp_path / "out" / "x").exists() and not (tmp_path / "out" / "outside").exists()
    with pytest.raises(MTLReproError, match=message):  # and through the download stage
        stages.download(study_params("cifar-mtl", cifar_block(archive, 300)), "cifar-mtl", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_zip_members_are_checked_too(tmp_path):
    import zipfile

    from mtlrepro.archives import safe_extract

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("UTKFace/a.txt", "hello")
    assert (safe_extract(good, tmp_path / "g") / "UTKFace" / "a.txt").read_text() == "hello"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../../escape.txt", "bad")
    with pytest.raises(MTLReproError, match="escape.txt.*climbs out"):
        safe_extract(evil, tmp_path / "e")
    assert not (tmp_path / "e").exists() and not (tmp_path.parent / "escape.txt").exists()


# ---------------------------------------------------------------- UTKFace


def test_utkface_runs_end_to_end_through_the_cli(tmp_path, write_params):
    folder, n = fx.write_utkface(tmp_path / "src")
    params = study_params("utkface", image_block(folder, n, "resnet18", {"val": 0.1, "test": 0.2, "resize": 20}))
    path = write_params(params)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "mtlrepro", args[0], "--params", str(path), "--dataset",
                              "utkface", *args[1:]], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]

    cli("download", "--out", "raw")
    cli("validate", "--raw", "raw", "--out-json", "v.json", "--out-html", "v.html")
    cli("preprocess", "--raw", "raw", "--validation", "v.json", "--out", "proc")
    cli("train", "--method", "ls", "--seed", "0", "--processed", "proc", "--out", "ls", "--log", "ls.log.json")
    cli("evaluate", "--method", "ls", "--seed", "0", "--processed", "proc", "--model", "ls", "--out", "ls.json")
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    dropped = sorted(k for k, kept in fx.UTK_IRREGULAR.items() if not kept)
    assert sorted(manifest["dropped"]) == dropped
    assert sorted(manifest["irregular_kept"]) == sorted(k for k, kept in fx.UTK_IRREGULAR.items() if kept)
    report = json.loads((tmp_path / "v.json").read_text())
    named = [e for e in report["expectations"] if e["column"] == "irregular_name" and e["type"].endswith("be_null")][0]
    assert sorted(named["partial_unexpected_list"]) == sorted(fx.UTK_IRREGULAR)  # reported by name
    parts = {s: pd.read_parquet(tmp_path / "proc" / f"{s}.parquet") for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == n - len(dropped)
    assert not set().union(*[set(p["file_name"]) for p in parts.values()]) & set(dropped)
    assert {24, 55, 90} <= set(parts["train"]["age"])  # ages seen fewer than 3 times go to train
    assert len(parts["test"]) == 12 and sorted(parts["test"]["age"].value_counts()) == [3, 3, 3, 3]  # stratified
    stats = json.loads((tmp_path / "proc" / "stats.json").read_text())
    assert stats["age_mean"] == pytest.approx(parts["train"]["age"].mean())
    ev = json.loads((tmp_path / "ls.json").read_text())["tasks"]
    assert set(ev) == {"age", "gender", "race"} and ev["age"]["primary"] == "mse" and not ev["age"]["higher_is_better"]
    assert ev["race"]["primary"] == "accuracy" and ev["gender"]["kind"] == "multiclass"


def test_utkface_label_outside_the_set_names_the_file(tmp_path):
    names = fx.utkface_names() + ["33_2_1_20170109000000002.jpg.chip.jpg"]
    folder, n = fx.write_utkface(tmp_path / "src", names)
    params = study_params("utkface", image_block(folder, n, "resnet18", {"val": 0.1, "test": 0.2, "resize": 20}))
    stages.download(params, "utkface", tmp_path / "raw")
    with pytest.raises(MTLReproError, match=r"label_error: .*33_2_1_20170109000000002.jpg.chip.jpg: gender 2"):
        stages.validate(params, "utkface", tmp_path / "raw", tmp_path / "v.json", tmp_path / "v.html")


def test_utkface_from_a_zip_archive(tmp_path):
    import shutil

    folder, n = fx.write_utkface(tmp_path / "src")
    archive = shutil.make_archive(str(tmp_path / "UTKFace"), "zip", tmp_path / "src")
    params = study_params("utkface", image_block(archive, n, "resnet18", {"val": 0.1, "test": 0.2, "resize": 20}))
    stages.download(params, "utkface", tmp_path / "raw")
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text())["images"] == n


# ---------------------------------------------------------------- ChestX-ray14


def test_chestxray14_runs_end_to_end(tmp_path):
    from mtlrepro.data.chestxray14 import FINDINGS

    folder, n = fx.write_chestxray(tmp_path / "src")
    params = study_params("chestx-ray14", image_block(folder, n, "resnet34", {"val": 0.25, "resize": 20}))
    ev = run_dag(params, "chestx-ray14", tmp_path)["ls"]
    parts = {s: pd.read_parquet(tmp_path / "proc" / f"{s}.parquet") for s in ("train", "val", "test")}
    patients = {s: set(p["patient_id"]) for s, p in parts.items()}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] | patients["val"]) & patients["test"]
    rows, test_list = fx.chestxray_entries()
    assert sorted(parts["test"]["image_index"]) == sorted(test_list)
    labels = dict((r[0], r[1]) for r in rows)
    for _, row in parts["train"].iterrows():  # multi-hot of the findings, No Finding = all zeros
        expected = [float(f in labels[row["image_index"]].split("|")) for f in FINDINGS]
        assert row[[f.lower() for f in FINDINGS]].tolist() == expected
    assert [t["primary"] for t in ev["tasks"].values()] == ["auc"] * 14
    assert all(0.0 <= t["metrics"]["auc"] <= 1.0 for t in ev["tasks"].values())


def test_grey_rgba_and_16_bit_pngs_decode_to_the_same_grey(tmp_path):
    from mtlrepro.data.images import decode

    ramp = np.linspace(0, 1, 64)
    grey = (np.outer(ramp, ramp) * 200 + 20).astype(np.uint8)
    decoded = [decode(fx._png(grey, mode), mode, "grey", None)[0] for mode in ("L", "RGBA", "I;16")]
    for image in decoded:
        assert np.array_equal(image, grey)
    small = decode(fx._png(grey, "RGBA"), "x", "grey", 16)
    assert small.shape == (1, 16, 16) and small.dtype == np.uint8


def test_bad_png_names_the_file_and_writes_nothing(tmp_path):
    folder, n = fx.write_chestxray(tmp_path / "src")
    png = folder / "images" / "00000002_001.png"
    png.write_bytes(png.read_bytes()[:200])
    params = study_params("chestx-ray14", image_block(folder, n, "resnet34", {"val": 0.25, "resize": 20}))
    with pytest.raises(MTLReproError, match="00000002_001.png: not a readable image"):
        stages.download(params, "chestx-ray14", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_chestxray_split_lists_and_patients_are_validated(tmp_path):
    folder, n = fx.write_chestxray(tmp_path / "src")
    lists = (folder / "train_val_list.txt").read_text().splitlines()
    # one image of patient 1 moves to the test list, and one image is in neither list
    (folder / "train_val_list.txt").write_text("\n".join(lists[2:]) + "\n")
    with open(folder / "test_list.txt", "a") as fh:
        fh.write(lists[0] + "\n")
    params = study_params("chestx-ray14", image_block(folder, n, "resnet34", {"val": 0.25, "resize": 20}))
    stages.download(params, "chestx-ray14", tmp_path / "raw")
    with pytest.raises(MTLReproError) as err:
        stages.validate(params, "chestx-ray14", tmp_path / "raw", tmp_path / "v.json", tmp_path / "v.html")
    message = str(err.value)
    assert f"unlisted_image: 1 unexpected values" in message and lists[1] in message
    assert "patient_in_both_splits" in message and '"1"' in message
