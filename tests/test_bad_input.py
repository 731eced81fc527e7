"""Bad inputs get a clear error naming the file or column, a non-zero exit, no partial output."""
import shutil

import pandas as pd
import pytest

from mtlrepro.cli import main
from tests.conftest import CI_PARAMS, reseal_processed


def run(*args):
    return main([args[0], "--params", str(CI_PARAMS), *args[1:]])


def test_preprocess_missing_raw_file(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "manifest.json").write_text('{"files": {"digits.csv": "%s"}}' % ("0" * 64))
    (tmp_path / "v.json").write_text('{"success": true}')
    code = run("preprocess", "--dataset", "digits-mtl", "--raw", str(tmp_path / "raw"),
               "--validation", str(tmp_path / "v.json"), "--out", str(tmp_path / "out"))
    assert code == 2
    err = capsys.readouterr().err
    assert "missing raw file" in err and "digits.csv" in err
    assert not (tmp_path / "out").exists()


def test_preprocess_refuses_a_failed_validation(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "v.json").write_text('{"success": false}')
    code = run("preprocess", "--dataset", "digits-mtl", "--raw", str(tmp_path / "raw"),
               "--validation", str(tmp_path / "v.json"), "--out", str(tmp_path / "out"))
    assert code == 2 and "did not succeed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _copy_processed(digits_processed, tmp_path):
    dst = tmp_path / "processed"
    shutil.copytree(digits_processed, dst)
    return dst


def _train(processed, tmp_path):
    return run("train", "--dataset", "digits-mtl", "--method", "ls", "--seed", "0",
               "--processed", str(processed), "--out", str(tmp_path / "model"), "--log", str(tmp_path / "log.json"))


def test_corrupt_parquet(digits_processed, tmp_path, capsys):
    processed = _copy_processed(digits_processed, tmp_path)
    (processed / "train.parquet").write_bytes(b"PAR1 this is not parquet")
    reseal_processed(processed)
    assert _train(processed, tmp_path) == 2
    err = capsys.readouterr().err
    assert "corrupt Parquet file" in err and "train.parquet" in err
    assert not (tmp_path / "model").exists() and not (tmp_path / "log.json").exists()


def test_missing_column(digits_processed, tmp_path, capsys):
    processed = _copy_processed(digits_processed, tmp_path)
    df = pd.read_parquet(processed / "train.parquet").drop(columns=["pixel_07"])
    df.to_parquet(processed / "train.parquet")
    reseal_processed(processed)
    assert _train(processed, tmp_path) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['pixel_07']" in err and "train.parquet" in err
    assert not (tmp_path / "model").exists()


def test_nan_in_labels(digits_processed, tmp_path, capsys):
    processed = _copy_processed(digits_processed, tmp_path)
    df = pd.read_parquet(processed / "val.parquet")
    df["digit"] = df["digit"].astype(float)
    df.loc[3, "digit"] = float("nan")
    df.to_parquet(processed / "val.parquet")
    reseal_processed(processed)
    assert _train(processed, tmp_path) == 2
    err = capsys.readouterr().err
    assert "column 'digit'" in err and "non-finite" in err and "val.parquet" in err
    assert not (tmp_path / "model").exists()


def test_evaluate_missing_model(digits_processed, tmp_path, capsys):
    code = run("evaluate", "--dataset", "digits-mtl", "--method", "ls", "--seed", "0",
               "--processed", str(digits_processed), "--model", str(tmp_path / "none"),
               "--out", str(tmp_path / "e.json"))
    assert code == 2 and "missing trained model folder" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_download_checksum_mismatch(tmp_path, monkeypatch, capsys):
    import mtlrepro.data.digits as digits

    monkeypatch.setattr(digits, "SOURCE_SHA256", "0" * 64)
    code = run("download", "--dataset", "digits-mtl", "--out", str(tmp_path / "raw"))
    assert code == 2 and "checksum mismatch" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists()
    assert not list(tmp_path.iterdir()), "no temporary folder is left behind"


def test_unknown_dataset(tmp_path, capsys):
    code = run("download", "--dataset", "mnist", "--out", str(tmp_path / "raw"))
    assert code == 2 and "unknown dataset 'mnist'" in capsys.readouterr().err
