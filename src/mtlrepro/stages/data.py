"""The data stages: download, validate, preprocess. Each reads only the paths it is given and
writes only its outputs, atomically, each with a provenance record."""
from __future__ import annotations

import time
from pathlib import Path

from .. import data as datasets
from .. import params as P
from ..checksums import check_validation_covers, verify_processed, verify_raw
from ..data.base import check_disjoint_splits
from ..io import MTLReproError, atomic_dir, provenance, read_json, sha256_file, write_json
from .common import dataset_config as _config
from .common import require_dir as _require_dir


def download(params: dict, dataset: str, out_dir: Path) -> None:
    spec, config = datasets.get(dataset), _config(params, dataset)
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        manifest = spec.download(config, tmp)
        manifest["files"] = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        write_json(tmp / "manifest.json", manifest)
        write_json(tmp / "provenance.json", provenance(P.dataset_slice(params, dataset), stage="download",
                                                       wall_time_s=time.perf_counter() - t0))


def validate(params: dict, dataset: str, raw_dir: Path, out_json: Path, out_html: Path) -> None:
    from ..validation import validate as run_suite

    expected = _config(params, dataset)["source"].get("expected_images")  # a copy smaller than the release
    raw_files = verify_raw(_require_dir(raw_dir, "raw data folder"))
    run_suite(dataset, raw_dir, out_json, out_html,
              params=None if expected is None else {"expected_rows": expected}, raw_files_sha256=raw_files)


def preprocess(params: dict, dataset: str, raw_dir: Path, validation_json: Path, out_dir: Path) -> None:
    spec, config = datasets.get(dataset), _config(params, dataset)
    report = read_json(validation_json)
    if not report.get("success"):
        raise MTLReproError(f"{validation_json}: validation of {dataset} did not succeed; not preprocessing")
    raw_files = verify_raw(_require_dir(raw_dir, "raw data folder"))
    check_validation_covers(report, validation_json, dataset, raw_files, spec.raw_files, raw_dir)
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        splits = spec.preprocess(config, params["split_seed"], raw_dir, tmp)
        check_disjoint_splits(tmp, spec.content_columns)
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        record = {"dataset": dataset, "split_seed": params["split_seed"], "splits": splits, "files_sha256": files}
        facts = spec.source_facts(config, raw_dir)
        write_json(tmp / "split.json", {**record, "source": facts} if facts else record)
        write_json(tmp / "provenance.json", provenance(P.dataset_slice(params, dataset), stage="preprocess",
                                                       wall_time_s=time.perf_counter() - t0))
