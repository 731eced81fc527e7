"""Each stage checks the hashes that the stage before it recorded, so a file changed in between
(by hand, by another tool, by a partial copy) stops the pipeline instead of flowing on.

* download writes `manifest.json` with the sha256 of every raw file; validate and preprocess
  check them (`verify_raw`).
* validate records the sha256 of the raw files it validated; preprocess accepts a report only
  for those same files (`check_validation_covers`): a report gates the files it validated.
* preprocess writes `split.json` with the sha256 of every processed file; pretrain, train,
  evaluate and robustness check them (`verify_processed`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .io import MTLReproError, read_json, sha256_file


def verify_files(folder: Path, recorded: dict, record_path: Path, kind: str) -> None:
    """Every file listed in a record exists in `folder` with the recorded sha256."""
    if not isinstance(recorded, dict) or not recorded:
        raise MTLReproError(f"{record_path}: no record of the {kind} files' sha256; re-run the stage that wrote it")
    for name, digest in sorted(recorded.items()):
        path = Path(folder) / name
        if not path.is_file():
            raise MTLReproError(f"missing {kind} file {path} (listed in {record_path})")
        actual = sha256_file(path)
        if actual != digest:
            raise MTLReproError(f"{path}: sha256 {actual} differs from {digest} recorded in {record_path}: "
                                f"the file changed after it was written; re-run the stage that writes it")


def verify_raw(raw_dir: Path) -> dict:
    """{name: sha256} of the raw files, checked against download's manifest.json."""
    manifest_path = Path(raw_dir) / "manifest.json"
    files = read_json(manifest_path).get("files")
    verify_files(raw_dir, files, manifest_path, "raw")
    return files


def verify_processed(processed_dir: Path) -> dict:
    """{name: sha256} of the processed files, checked against preprocess's split.json."""
    split_path = Path(processed_dir) / "split.json"
    files = read_json(split_path).get("files_sha256")
    verify_files(processed_dir, files, split_path, "processed")
    return files


def check_validation_covers(report: dict, report_path: Path, dataset: str, raw_files: dict,
                            needed: Sequence[str], raw_dir: Path) -> None:
    """The validation report is for `dataset` and validated exactly these raw files."""
    if report.get("dataset") != dataset:
        raise MTLReproError(f"{report_path}: a validation report of dataset {report.get('dataset')!r}, "
                            f"not {dataset!r}")
    validated = report.get("raw_files_sha256")
    if not isinstance(validated, dict) or not validated:
        raise MTLReproError(f"{report_path} does not record which raw files it validated (raw_files_sha256); "
                            f"re-run validate")
    for name in needed:
        if name not in validated:
            raise MTLReproError(f"{report_path} did not validate the raw file {name}; re-run validate")
        if validated[name] != raw_files.get(name):
            raise MTLReproError(
                f"{report_path} validated another {name} (sha256 {validated[name]}) than "
                f"{Path(raw_dir) / name} (sha256 {raw_files.get(name)}): a report only gates the raw files "
                f"it validated; re-run validate")
