"""Untrusted files and stale state: saved states load without running code and only for the
inputs that made them, each stage checks the hashes of the stage before it, malformed data stops
with the file and column named (exit 2), and a failed run leaves nothing behind."""
import dataclasses
import json
import shutil

import pandas as pd
import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.cli import main
from mtlrepro.data import get
from mtlrepro.fingerprint import fingerprint, pretrain_record, run_record
from mtlrepro.io import MTLReproError
from mtlrepro.training import Interrupted, resume_dir_of
from tests.conftest import CI_PARAMS, reseal_processed, write_manifest, write_validation_report


class Payload:
    """Unpickling it creates the file `marker`: code that a plain torch.load would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def ci_params(**train) -> dict:
    params = P.load(CI_PARAMS)
    params["dataset"]["digits-mtl"]["train"].update(train)
    study = params["studies"]["bayesagg"]
    study["methods"] = [*study["methods"], "bayesagg"]  # a warm-start method
    params["method"]["bayesagg"] = {}
    return params


def train(params, processed, out, method="ls", seed=0, pretrain=None):
    stages.train(params, "digits-mtl", method, processed, pretrain, 100, seed, out, out.with_suffix(".json"))
    return torch.load(out / "model.pt", weights_only=True), json.loads(out.with_suffix(".json").read_text())


def hidden_entries(folder):
    return sorted(p.name for p in folder.rglob(".*"))


# ------------------------------------------------------------------ saved states load safely


def test_the_payload_runs_when_unpickled(tmp_path):
    """The control: a plain torch.load runs the payload, so its absence below means it was refused."""
    torch.save({"x": Payload(tmp_path / "ran")}, tmp_path / "f.pt")
    torch.load(tmp_path / "f.pt", weights_only=False)
    assert (tmp_path / "ran").exists()


def test_crafted_model_file_is_refused_unopened(digits_processed, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    (tmp_path / "model").mkdir()
    torch.save({"kind": "mtl", "states": [Payload(marker)], "tasks": []}, tmp_path / "model" / "model.pt")
    code = main(["evaluate", "--params", str(CI_PARAMS), "--dataset", "digits-mtl", "--method", "ls", "--seed", "0",
                 "--processed", str(digits_processed), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "e.json")])
    err = capsys.readouterr().err
    assert code == 2 and "trained model" in err and str(tmp_path / "model" / "model.pt") in err and "refused" in err
    assert not marker.exists() and not (tmp_path / "e.json").exists()


def test_crafted_pretrain_checkpoint_is_refused_unopened(digits_processed, tmp_path):
    marker = tmp_path / "payload-ran"
    (tmp_path / "pre").mkdir()
    torch.save({"model": Payload(marker), "epoch": 1}, tmp_path / "pre" / "checkpoint.pt")
    with pytest.raises(MTLReproError, match="pretrain checkpoint .*checkpoint.pt holds more than tensors"):
        train(ci_params(), digits_processed, tmp_path / "model", "bayesagg", pretrain=tmp_path / "pre")
    assert not marker.exists() and not (tmp_path / "model").exists()


def test_crafted_resume_state_is_refused_unopened(digits_processed, tmp_path):
    marker = tmp_path / "payload-ran"
    resume = resume_dir_of(tmp_path / "model")
    resume.mkdir()
    torch.save({"model": Payload(marker), "epoch": 1}, resume / "run.pt")
    with pytest.raises(MTLReproError, match=r"resume state .*run.pt holds more than tensors"):
        train(ci_params(), digits_processed, tmp_path / "model")
    assert not marker.exists() and not (tmp_path / "model").exists()


# ------------------------------------------------------------------ states bound to their inputs


def test_stale_resume_state_is_discarded_and_the_run_equals_a_fresh_one(digits_processed, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv("MTLREPRO_STOP_AFTER_EPOCH", "2")
    with pytest.raises(Interrupted):  # a job killed mid-training
        train(ci_params(), digits_processed, tmp_path / "run")
    assert (resume_dir_of(tmp_path / "run") / "run.pt").exists()
    monkeypatch.delenv("MTLREPRO_STOP_AFTER_EPOCH")
    changed = ci_params(lr=1.0e-3)  # then params change, and the job is rerun
    rerun, rerun_log = train(changed, digits_processed, tmp_path / "run")
    assert "discarding the resume state" in capsys.readouterr().err
    fresh, fresh_log = train(changed, digits_processed, tmp_path / "fresh")
    assert rerun_log["history"] == fresh_log["history"] and len(fresh_log["history"]) == 3
    for key, value in fresh["states"][0].items():
        assert torch.equal(rerun["states"][0][key], value), key
    assert not resume_dir_of(tmp_path / "run").exists()


def test_warm_start_from_another_runs_checkpoint_is_refused(digits_processed, tmp_path):
    params = ci_params()
    stages.pretrain(params, "digits-mtl", digits_processed, 100, 1, tmp_path / "pre-seed1")
    found = torch.load(tmp_path / "pre-seed1" / "checkpoint.pt", weights_only=True)["fingerprint"]
    expected = fingerprint(pretrain_record(params, "digits-mtl", 100, 0, digits_processed))
    with pytest.raises(MTLReproError, match="pretrain checkpoint .*other inputs") as err:
        train(params, digits_processed, tmp_path / "model", "bayesagg", seed=0, pretrain=tmp_path / "pre-seed1")
    assert found in str(err.value) and expected in str(err.value) and "differing: seed" in str(err.value)


def test_evaluate_refuses_a_model_trained_with_other_params(digits_processed, tmp_path):
    params = ci_params()
    train(params, digits_processed, tmp_path / "model")
    changed = ci_params(lr=1.0e-3)
    expected = fingerprint(run_record(changed, "digits-mtl", 100, 0, digits_processed, "ls", {}))
    with pytest.raises(MTLReproError, match="trained model .*other inputs") as err:
        stages.evaluate(changed, "digits-mtl", "ls", digits_processed, tmp_path / "model", 100, 0, tmp_path / "e.json")
    found = torch.load(tmp_path / "model" / "model.pt", weights_only=True)["fingerprint"]
    assert found in str(err.value) and expected in str(err.value) and "differing: train" in str(err.value)
    with pytest.raises(MTLReproError, match="other inputs"):  # another seed's model
        stages.evaluate(params, "digits-mtl", "ls", digits_processed, tmp_path / "model", 100, 1, tmp_path / "e.json")
    assert not (tmp_path / "e.json").exists()
    stages.evaluate(params, "digits-mtl", "ls", digits_processed, tmp_path / "model", 100, 0, tmp_path / "e.json")


# ------------------------------------------------------------------ checksums that are checked


@pytest.fixture
def raw_copy(digits_processed, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(digits_processed.parent / "raw", raw)
    report = write_validation_report(raw, tmp_path / "validation.json", "digits-mtl")
    return raw, report


def _change_one_pixel(raw):
    df = pd.read_csv(raw / "digits.csv")
    df.loc[0, "pixel_10"] = (df.loc[0, "pixel_10"] + 1) % 17
    df.to_csv(raw / "digits.csv", index=False)


def test_raw_file_changed_after_download_is_refused(raw_copy, tmp_path):
    raw, report = raw_copy
    _change_one_pixel(raw)
    params = ci_params()
    for run in (lambda: stages.preprocess(params, "digits-mtl", raw, report, tmp_path / "out"),
                lambda: stages.validate(params, "digits-mtl", raw, tmp_path / "v.json", tmp_path / "v.html")):
        with pytest.raises(MTLReproError, match=r"digits.csv: sha256 .* recorded in .*manifest.json"):
            run()
    assert not (tmp_path / "out").exists() and not (tmp_path / "v.json").exists()


def test_validation_report_gates_only_the_raw_files_it_validated(raw_copy, tmp_path):
    raw, report = raw_copy
    _change_one_pixel(raw)
    write_manifest(raw)  # consistent raw files, but not the ones the report validated
    params = ci_params()
    with pytest.raises(MTLReproError, match=r"validated another digits.csv .*only gates the raw files it validated"):
        stages.preprocess(params, "digits-mtl", raw, report, tmp_path / "out")
    for content, message in (({"success": True}, "does not record which raw files"),
                             ({"success": True, "dataset": "qm9", "raw_files_sha256": {}}, "of dataset 'qm9'")):
        (tmp_path / "other.json").write_text(json.dumps({"dataset": "digits-mtl", **content}))
        with pytest.raises(MTLReproError, match=message):
            stages.preprocess(params, "digits-mtl", raw, tmp_path / "other.json", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_processed_file_changed_after_preprocess_is_refused_by_every_stage(digits_processed, tmp_path):
    processed = tmp_path / "processed"
    shutil.copytree(digits_processed, processed)
    df = pd.read_parquet(processed / "test.parquet")
    df.loc[0, "pixel_10"] += 1
    df.to_parquet(processed / "test.parquet")
    params = ci_params()
    needle = r"test.parquet: sha256 .* recorded in .*split.json"  # every stage checks every file
    with pytest.raises(MTLReproError, match=needle):
        stages.pretrain(params, "digits-mtl", processed, 100, 0, tmp_path / "pre")
    with pytest.raises(MTLReproError, match=needle):
        train(params, processed, tmp_path / "model")
    with pytest.raises(MTLReproError, match=needle):
        stages.evaluate(params, "digits-mtl", "ls", processed, tmp_path / "none", 100, 0, tmp_path / "e.json")
    with pytest.raises(MTLReproError, match=needle):
        stages.robustness(params, "digits-mtl", "ls", processed, tmp_path / "none", 0, tmp_path / "r.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


# ------------------------------------------------------------------ malformed data


MALFORMED = {  # corruption of val.parquet -> what the error says
    "float_labels": (lambda df: df.assign(digit=df["digit"].astype(float)), "column 'digit' has dtype float64"),
    "boolean_labels": (lambda df: df.assign(digit=df["digit"] == 3), "column 'digit' has dtype bool"),
    "text_pixels": (lambda df: df.assign(pixel_05=df["pixel_05"].astype(str)), "column 'pixel_05' has dtype"),
    "inf_pixel": (lambda df: df.assign(pixel_05=df["pixel_05"].astype(float).where(df.index != 4, float("inf"))),
                  "column 'pixel_05' has 1 non-finite"),
    "empty_split": (lambda df: df.iloc[:0], "no rows"),
}


def _train_cli(processed, tmp_path):
    return main(["train", "--params", str(CI_PARAMS), "--dataset", "digits-mtl", "--method", "ls", "--seed", "0",
                 "--processed", str(processed), "--out", str(tmp_path / "model"), "--log", str(tmp_path / "log.json")])


@pytest.mark.parametrize("corruption", list(MALFORMED))
def test_malformed_processed_digits_exit_2_naming_file_and_column(digits_processed, tmp_path, capsys, corruption):
    corrupt, needle = MALFORMED[corruption]
    processed = tmp_path / "processed"
    shutil.copytree(digits_processed, processed)
    corrupt(pd.read_parquet(processed / "val.parquet")).to_parquet(processed / "val.parquet")
    reseal_processed(processed)  # as if preprocess had written it: the checksums match
    assert _train_cli(processed, tmp_path) == 2
    err = capsys.readouterr().err
    assert "val.parquet" in err and needle in err, err
    assert not (tmp_path / "model").exists() and not hidden_entries(tmp_path)


@pytest.mark.parametrize("stats, needle", [({"pixel_mean": 4.8, "pixel_std": 0.0}, "pixel_std is 0.0"),
                                           ({"pixel_std": 6.0}, "missing entry pixel_mean"),
                                           ({"pixel_mean": None, "pixel_std": 6.0}, "pixel_mean is None")])
def test_bad_normalisation_statistics_exit_2(digits_processed, tmp_path, capsys, stats, needle):
    processed = tmp_path / "processed"
    shutil.copytree(digits_processed, processed)
    (processed / "stats.json").write_text(json.dumps(stats))
    reseal_processed(processed)
    assert _train_cli(processed, tmp_path) == 2
    err = capsys.readouterr().err
    assert "stats.json" in err and needle in err, err


@pytest.fixture(scope="module")
def qm9_processed(tmp_path_factory, qm9_raw_small):
    root = tmp_path_factory.mktemp("qm9processed")
    params = P.load(CI_PARAMS)
    report = write_validation_report(qm9_raw_small, root / "v.json", "qm9")
    stages.preprocess(params, "qm9", qm9_raw_small, report, root / "processed")
    return root / "processed", params["dataset"]["qm9"]


def _array_cell(column, change):
    def corrupt(df):
        cell = df.at[1, column].copy()
        df.at[1, column] = change(cell)
        return df
    return corrupt


def _nan_first(a):
    a[0] = float("nan")
    return a


def _inf_last(a):
    a[-1] = float("inf")
    return a


QM9_MALFORMED = {
    "nan_node_feature": (_array_cell("x", _nan_first), "column 'x', row 1: non-finite"),
    "inf_position": (_array_cell("pos", _inf_last), "column 'pos', row 1: non-finite"),
    "short_node_features": (_array_cell("x", lambda a: a[:-11]), "do not fit n_atoms"),
    "bond_to_no_atom": (_array_cell("edge_index", lambda a: a + 100), "atoms outside"),
    "unknown_bond_type": (_array_cell("bond_type", lambda a: a + 7), "column 'bond_type' has values outside"),
    "float_atom_count": (lambda df: df.assign(n_atoms=df["n_atoms"].astype(float)), "column 'n_atoms' has dtype"),
    "inf_target": (lambda df: df.assign(mu=df["mu"].where(df.index != 3, float("inf"))), "column 'mu' has 1 non-finite"),
}


@pytest.mark.parametrize("corruption", list(QM9_MALFORMED))
def test_malformed_molecule_graphs_name_file_and_column(qm9_processed, tmp_path, corruption):
    processed, config = qm9_processed
    corrupt, needle = QM9_MALFORMED[corruption]
    bad = tmp_path / "processed"
    shutil.copytree(processed, bad)
    corrupt(pd.read_parquet(bad / "val.parquet")).to_parquet(bad / "val.parquet")
    with pytest.raises(MTLReproError, match="val.parquet") as err:
        get("qm9").load(config, bad, "val")
    assert needle in str(err.value)


def test_qm9_target_scale_of_zero_is_refused(qm9_processed, tmp_path):
    processed, config = qm9_processed
    bad = tmp_path / "processed"
    shutil.copytree(processed, bad)
    stats = json.loads((bad / "stats.json").read_text())
    stats["targets"]["cv"]["std"] = 0.0
    (bad / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(MTLReproError, match=r"stats.json: entry targets.cv.std is 0.0, a scale must be > 0"):
        get("qm9").load(config, bad, "train")
    del stats["targets"]["mu"]["mean"]
    (bad / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(MTLReproError, match=r"stats.json: missing entry targets.mu.mean"):
        get("qm9").target_scale(bad)


def test_preprocess_refuses_splits_that_share_an_example(digits_processed, tmp_path, monkeypatch):
    spec = get("digits-mtl")
    original = type(spec).preprocess

    def leaky(self, config, split_seed, raw_dir, out_dir):
        info = original(self, config, split_seed, raw_dir, out_dir)
        train, test = (pd.read_parquet(out_dir / f"{s}.parquet") for s in ("train", "test"))
        pd.concat([test, train.iloc[:1]]).to_parquet(out_dir / "test.parquet")
        return info

    monkeypatch.setattr(type(spec), "preprocess", leaky)
    raw = digits_processed.parent / "raw"
    report = write_validation_report(raw, tmp_path / "v.json", "digits-mtl")
    with pytest.raises(MTLReproError, match=r"test.parquet and .*train.parquet share example\(s\)"):
        stages.preprocess(ci_params(), "digits-mtl", raw, report, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json"]  # no output, no temporary folder


def test_preprocess_refuses_the_same_image_in_two_splits(raw_copy, tmp_path):
    raw, _ = raw_copy
    df = pd.read_csv(raw / "digits.csv")
    pixels = [c for c in df.columns if c.startswith("pixel_")]
    same = df.index[df["digit"] == df.loc[0, "digit"]][:40]  # 40 copies of one image, one class
    df.loc[same, pixels] = df.loc[[0] * len(same), pixels].to_numpy()
    df.to_csv(raw / "digits.csv", index=False)
    write_manifest(raw)
    report = write_validation_report(raw, tmp_path / "v.json", "digits-mtl")  # as if validation were skipped
    with pytest.raises(MTLReproError, match=r"hold \d+ identical example\(s\) \(columns \['pixel_00'"):
        stages.preprocess(ci_params(), "digits-mtl", raw, report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ edges of a run


def test_batch_norm_takes_a_training_batch_of_one():
    from mtlrepro.models.cnn import ConvNet

    tasks = get("digits-mtl").tasks({})
    torch.manual_seed(0)
    model = ConvNet(tasks, channels=4)
    model.train()(torch.randn(8, 1, 8, 8))  # running statistics away from their start
    running = model.norm.running_mean.clone(), model.norm.running_var.clone()
    x = torch.randn(1, 1, 8, 8)
    h_train = model.encode(x)
    assert torch.equal(model.norm.running_mean, running[0]) and torch.equal(model.norm.running_var, running[1])
    assert torch.allclose(h_train, model.eval().encode(x))  # normalised as in eval mode


def test_a_trailing_training_batch_of_one_does_not_crash(digits_processed):
    from mtlrepro.methods.ls import LinearScalarization
    from mtlrepro.training import TrainConfig, fit

    params = P.load(CI_PARAMS)
    spec, config = get("digits-mtl"), params["dataset"]["digits-mtl"]
    tasks = spec.tasks(config)
    train_split, val = (spec.load(config, digits_processed, s) for s in ("train", "val"))
    cfg = dataclasses.replace(TrainConfig.from_params(config["train"], 0), epochs=1,
                              batch_size=len(train_split) - 1)  # batches of n - 1 and 1
    torch.manual_seed(0)
    result = fit(spec.build_model(config, tasks), LinearScalarization(len(tasks)), tasks, train_split, val, cfg,
                 torch.device("cpu"))
    assert result.best_epoch == 1


def test_a_failed_run_leaves_no_resume_state(digits_processed, tmp_path, monkeypatch):
    import mtlrepro.training as training

    calls, score = [], training.validation_score

    def fails_in_epoch_two(*args):
        calls.append(1)
        if len(calls) == 2:
            assert (resume_dir_of(tmp_path / "model") / "run.pt").exists()  # epoch 1 was checkpointed
            raise MTLReproError("a deterministic failure in epoch 2")
        return score(*args)

    monkeypatch.setattr(training, "validation_score", fails_in_epoch_two)
    with pytest.raises(MTLReproError, match="epoch 2"):
        train(ci_params(), digits_processed, tmp_path / "model")
    assert len(calls) == 2 and not hidden_entries(tmp_path) and not (tmp_path / "model").exists()


def test_split_overlap_check_compares_array_columns_by_content(tmp_path):
    """QM9's content is its arrays: the same geometry under two example ids is an overlap."""
    import numpy as np

    from mtlrepro.data.base import check_disjoint_splits

    geometry = np.arange(6, dtype=np.float32)
    for name, rows in (("train", [(1, geometry), (2, geometry + 1)]), ("val", [(3, geometry + 2)]),
                       ("test", [(4, geometry.copy())])):
        pd.DataFrame({"example_id": [r[0] for r in rows], "pos": [r[1] for r in rows]}).to_parquet(
            tmp_path / f"{name}.parquet")
    check_disjoint_splits(tmp_path)  # the ids alone are disjoint
    with pytest.raises(MTLReproError, match=r"test.parquet and .*train.parquet hold 1 identical example"):
        check_disjoint_splits(tmp_path, ["pos"])


def test_truncated_state_file_is_a_clear_error(digits_processed, tmp_path):
    train(ci_params(), digits_processed, tmp_path / "model")
    path = tmp_path / "model" / "model.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(MTLReproError, match=r"corrupt trained model .*model.pt"):
        stages.evaluate(ci_params(), "digits-mtl", "ls", digits_processed, tmp_path / "model", 100, 0,
                        tmp_path / "e.json")
