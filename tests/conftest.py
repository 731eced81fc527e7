import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("MTLREPRO_PROGRESS", "0")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
CI_PARAMS = REPO / "tests" / "params-ci.yaml"


@pytest.fixture
def ci_params() -> dict:
    return yaml.safe_load(CI_PARAMS.read_text())


@pytest.fixture
def write_params(tmp_path):
    def _write(params: dict, name: str = "params.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return path
    return _write


def write_manifest(raw_dir: Path) -> None:
    """The download stage's manifest.json (the sha256 of every raw file) for a hand-made raw folder."""
    import json

    from mtlrepro.io import sha256_file

    files = {f.name: sha256_file(f) for f in sorted(Path(raw_dir).iterdir()) if f.name != "manifest.json"}
    (Path(raw_dir) / "manifest.json").write_text(json.dumps({"files": files}))


def reseal_processed(processed_dir: Path) -> None:
    """Re-records the processed files' sha256 in split.json after a test changed a file: as if
    preprocess itself had written the malformed file (its checksums then match)."""
    import json

    from mtlrepro.io import sha256_file

    path = Path(processed_dir) / "split.json"
    record = json.loads(path.read_text())
    record["files_sha256"] = {name: sha256_file(Path(processed_dir) / name) for name in record["files_sha256"]}
    path.write_text(json.dumps(record))


def write_validation_report(raw_dir: Path, path: Path, dataset: str) -> Path:
    """A passed validation report for the raw files in raw_dir (as `validate` writes it), for
    tests that skip running the Great Expectations suite."""
    import json

    from mtlrepro.data import get
    from mtlrepro.io import sha256_file

    files = {name: sha256_file(Path(raw_dir) / name) for name in get(dataset).raw_files}
    path.write_text(json.dumps({"success": True, "dataset": dataset, "raw_files_sha256": files}))
    return path


@pytest.fixture(scope="session")
def digits_processed(tmp_path_factory) -> Path:
    """digits-mtl downloaded and preprocessed once for the session (CI params)."""
    from mtlrepro import params as P, stages

    root = tmp_path_factory.mktemp("digits")
    params = P.load(CI_PARAMS)
    stages.download(params, "digits-mtl", root / "raw")
    write_validation_report(root / "raw", root / "validation.json", "digits-mtl")
    stages.preprocess(params, "digits-mtl", root / "raw", root / "validation.json", root / "processed")
    return root / "processed"


@pytest.fixture(scope="session")
def qm9_ci_processed(tmp_path_factory, qm9_raw_small) -> Path:
    """qm9 (the 400-molecule raw table) preprocessed once for the session with the CI params' split."""
    from mtlrepro import params as P, stages

    root = tmp_path_factory.mktemp("qm9ci")
    params = P.load(CI_PARAMS)
    report = write_validation_report(qm9_raw_small, root / "validation.json", "qm9")
    stages.preprocess(params, "qm9", qm9_raw_small, report, root / "processed")
    return root / "processed"


@pytest.fixture(scope="session")
def qm9_raw_small(tmp_path_factory) -> Path:
    """A 400-molecule raw QM9 table in the download stage's format (from the real package data)."""
    import importlib.metadata as md

    import pandas as pd

    from mtlrepro.data.qm9 import TARGETS

    root = tmp_path_factory.mktemp("qm9raw")
    src = Path(md.distribution("qm9pack").locate_file("qm9pack/data")) / "qm9_part1.csv"
    df = pd.read_csv(src, nrows=400)
    raw = pd.DataFrame({"index": df["Index"], "smiles": df["SMILES"], "elements": df["Elements"],
                        "xyz": df["XYZ_Ang"], "n_atoms": df["N_atoms"]})
    for name, (column, _) in TARGETS.items():
        raw[name] = df[column].astype("float64")
    raw.to_parquet(root / "qm9.parquet", index=False)
    write_manifest(root)
    return root
