"""tweeteval: the TweetEval benchmark (Barbieri et al. 2020) read from its official layout, as the
multi-task setting of InfoMTL (emotion, hate, irony, offensive, sentiment, stance), for the text
model of models/text.py.

Layout under `source.path` (github.com/cardiffnlp/tweeteval, folder `datasets/`):

    <root>/<task>/{train,val,test}_text.txt     one tweet per line
    <root>/<task>/{train,val,test}_labels.txt   one integer label per line
    <root>/<task>/mapping.txt                   "<id>\\t<name>" per line
    <root>/stance/<target>/{train,val,test}_{text,labels}.txt, <root>/stance/mapping.txt

Task names are TweetEval's: emoji, emotion, hate, irony, offensive, sentiment, stance (InfoMTL's
StanceEval: the five targets pooled, 2,620 / 294 / 1,249 tweets) or stance_<target> (one target).
Each tweet belongs to one task: its target is NaN for every other task. Two-class tasks are binary
(one logit), the others multiclass. Primary metrics follow TweetEval's scorer: macro-F1 (emoji,
emotion, hate, offensive), F1 of the ironic class (irony), macro-recall (sentiment), mean F1 of
'against' and 'favor' (stance: `macro_f1_nonzero`, class 0 being 'none').

Nothing is downloaded: source.kind is `path` only; `source.tasks` lists the tasks to read (in the
source block, so that changing them re-runs download and everything after it). download copies every configured task's files
into tweeteval.parquet (task, subset, split, line, text, label) and records their sha256;
preprocess keeps the official splits, optionally capped per task (`split.<name>`: a seeded random
subset of at most that many tweets per task; null keeps all).

Releases: TweetEval's sentiment files changed in Dec 2020 (train/val/test 45,615 / 2,000 / 12,284
now; 45,389 / 2,000 / 11,906 before, the counts of InfoMTL's Table 7). Which release a task's files
are is recognised from their line counts (`SOURCE_VERSIONS`) and recorded, per task that has a
table of releases, in the download manifest (`source_versions`) and in preprocess's split.json
(`source.versions`). Counts that match no known release are recorded as version 'unknown', with
the counts read and the known releases' counts, and are not an error: any copy in the official
layout (a subset, a later release, the tests' tiny files) is valid input, and the record says
plainly that it is not a release the study knows.

InfoMTL's full setting (for a GPU): split {train: null, val: null, test: null}; model
{max_length: 128, trainable_layers: 6 (MiniLM) / 12 (bert-base, roberta-base), train_embeddings: true}.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ..io import MTLReproError, sha256_file
from .base import (DatasetSpec, Task, read_parquet, read_stats, require_dtype, require_file, split_record,
                   write_parquet, write_stats)

SPLITS = ("train", "val", "test")
RAW_FILE = "tweeteval.parquet"
STANCE_TARGETS = ("abortion", "atheism", "climate", "feminist", "hillary")


@dataclass(frozen=True)
class TaskInfo:
    n_classes: int
    primary: str


# TweetEval's tasks: number of classes (mapping.txt) and the official score
TASK_INFO = {
    "emoji": TaskInfo(20, "macro_f1"),
    "emotion": TaskInfo(4, "macro_f1"),
    "hate": TaskInfo(2, "macro_f1"),
    "irony": TaskInfo(2, "f1"),
    "offensive": TaskInfo(2, "macro_f1"),
    "sentiment": TaskInfo(3, "macro_recall"),
    "stance": TaskInfo(3, "macro_f1_nonzero"),
    **{f"stance_{t}": TaskInfo(3, "macro_f1_nonzero") for t in STANCE_TARGETS},
}


@dataclass(frozen=True)
class SourceVersion:
    """One release of a task's files, known by its line counts."""
    name: str
    counts: tuple[int, int, int]  # train, val, test lines
    note: str


# task -> its known releases (line counts of {train,val,test}_text.txt, stance targets pooled)
SOURCE_VERSIONS: dict[str, tuple[SourceVersion, ...]] = {
    "sentiment": (
        SourceVersion("2020-12", (45615, 2000, 12284), "the current files, changed in Dec 2020"),
        SourceVersion("first-release", (45389, 2000, 11906),
                      "the first release (2020); the counts of InfoMTL's Table 7"),
    ),
}


def recognise_version(task: str, counts: Mapping[str, int],
                      versions: Mapping[str, tuple[SourceVersion, ...]] = SOURCE_VERSIONS) -> dict | None:
    """The release of `task`'s files whose line counts are `counts` ({split: lines}): its name and
    note, or version 'unknown' with the known releases' counts; None for a task without releases."""
    known = versions.get(task)
    if not known:
        return None
    observed = {split: int(counts.get(split, 0)) for split in SPLITS}
    for version in known:
        if tuple(observed[s] for s in SPLITS) == version.counts:
            return {"version": version.name, "note": version.note, "counts": observed}
    return {"version": "unknown", "note": "line counts of no known release", "counts": observed,
            "known": {v.name: dict(zip(SPLITS, v.counts)) for v in known}}


def source_versions(counts: Mapping[tuple[str, str], int],
                    versions: Mapping[str, tuple[SourceVersion, ...]] = SOURCE_VERSIONS) -> dict:
    """{task: recognise_version(...)} for the tasks of `counts` ({(task, split): lines}) with releases."""
    out = {}
    for task in sorted({t for t, _ in counts}):
        record = recognise_version(task, {s: n for (t, s), n in counts.items() if t == task}, versions)
        if record is not None:
            out[task] = record
    return out


def task_info(name: str) -> TaskInfo:
    if name not in TASK_INFO:
        raise MTLReproError(f"dataset.tweeteval.source.tasks: unknown TweetEval task {name!r}; known: {', '.join(TASK_INFO)}")
    return TASK_INFO[name]


def _task_names(config: dict) -> list[str]:
    names = list(config["source"]["tasks"])
    if not names:
        raise MTLReproError("dataset.tweeteval.source.tasks is empty")
    if len(set(names)) != len(names):
        raise MTLReproError(f"dataset.tweeteval.source.tasks lists a task twice: {names}")
    for name in names:
        task_info(name)
    if "stance" in names and any(n.startswith("stance_") for n in names):
        raise MTLReproError("dataset.tweeteval.source.tasks: 'stance' already pools every stance_<target>; list one or the other")
    return names


def _root(config: dict) -> Path:
    path = config["source"].get("path")
    if config["source"]["kind"] != "path" or not path:
        raise MTLReproError("dataset.tweeteval.source must be {kind: path, path: <folder>}: the folder of "
                            "TweetEval's datasets/ (github.com/cardiffnlp/tweeteval); nothing is downloaded")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise MTLReproError(f"dataset.tweeteval.source.path: no such folder: {root}")
    return root


def _folders(root: Path, task: str) -> tuple[list[tuple[str, Path]], Path]:
    """[(subset, folder with the split files)] and the mapping.txt of a task."""
    if task == "stance":
        base = root / "stance"
        subsets = sorted(d for d in base.iterdir() if d.is_dir() and (d / "train_text.txt").exists()) \
            if base.is_dir() else []
        if not subsets:
            raise MTLReproError(f"{base}: no stance target folders (<target>/train_text.txt)")
        return [(d.name, d) for d in subsets], base / "mapping.txt"
    if task.startswith("stance_"):
        target = task[len("stance_"):]
        folder = root / "stance" / target
        if not folder.is_dir() and target == "hillary" and (root / "stance" / "hilary").is_dir():
            folder = root / "stance" / "hilary"  # the spelling of an early release
        return [(target, folder)], root / "stance" / "mapping.txt"
    return [("", root / task)], root / task / "mapping.txt"


def read_lines(path: Path) -> list[str]:
    """Lines split on '\\n' only (tweets may hold other Unicode line breaks), trailing blanks removed."""
    require_file(path, "TweetEval file")
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise MTLReproError(f"{path}: not UTF-8 text ({err})") from None
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip() for line in lines]


def read_mapping(path: Path, n_classes: int) -> list[str]:
    names = {}
    for i, line in enumerate(read_lines(path)):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split(None, 1)
        try:
            label = int(parts[0])
        except ValueError:
            raise MTLReproError(f"{path}: line {i + 1}: expected '<id>\\t<name>', got {line!r}") from None
        names[label] = parts[1].strip() if len(parts) > 1 else str(label)
    if sorted(names) != list(range(n_classes)):
        raise MTLReproError(f"{path}: expected labels 0..{n_classes - 1}, found {sorted(names)}")
    return [names[k] for k in range(n_classes)]


def read_split(folder: Path, split: str, n_classes: int) -> tuple[list[str], list[int]]:
    text_path, label_path = folder / f"{split}_text.txt", folder / f"{split}_labels.txt"
    texts, raw_labels = read_lines(text_path), read_lines(label_path)
    if len(texts) != len(raw_labels):
        raise MTLReproError(f"{text_path} has {len(texts)} lines but {label_path} has {len(raw_labels)}")
    labels = []
    for i, value in enumerate(raw_labels):
        try:
            label = int(value.strip())
        except ValueError:
            raise MTLReproError(f"{label_path}: line {i + 1}: not an integer label: {value!r}") from None
        if not 0 <= label < n_classes:
            raise MTLReproError(f"{label_path}: line {i + 1}: label {label} outside 0..{n_classes - 1}")
        labels.append(label)
    for i, text in enumerate(texts):
        if not text.strip():
            raise MTLReproError(f"{text_path}: line {i + 1}: empty tweet")
    return texts, labels


def _cap(indices: np.ndarray, cap: int | None, seed: int, task: str, split: str) -> np.ndarray:
    if cap is None or cap >= len(indices):
        return indices
    seq = np.random.SeedSequence([int(seed), zlib.crc32(task.encode()), SPLITS.index(split)])
    pick = np.random.default_rng(seq).choice(len(indices), size=cap, replace=False)
    return np.sort(indices[pick])


class TweetEval(DatasetSpec):
    name = "tweeteval"
    raw_files = (RAW_FILE,)
    content_columns = ()  # the official splits are kept as published: ids are checked, not texts
    versions = SOURCE_VERSIONS  # the known releases; tests set their own

    def tasks(self, config):
        out = []
        for name in _task_names(config):
            info = task_info(name)
            kind = "binary" if info.n_classes == 2 else "multiclass"
            out.append(Task(name, kind, info.primary, n_classes=1 if kind == "binary" else info.n_classes))
        return out

    def download(self, config, raw_dir):
        root = _root(config)
        frames, digests, mappings = [], {}, {}
        for task in _task_names(config):
            n_classes = task_info(task).n_classes
            folders, mapping_path = _folders(root, task)
            mappings[task] = read_mapping(mapping_path, n_classes)
            digests[str(mapping_path.relative_to(root))] = sha256_file(mapping_path)
            for subset, folder in folders:
                for split in SPLITS:
                    texts, labels = read_split(folder, split, n_classes)
                    for kind in ("text", "labels"):
                        f = folder / f"{split}_{kind}.txt"
                        digests[str(f.relative_to(root))] = sha256_file(f)
                    frames.append(pd.DataFrame({"task": task, "subset": subset, "split": split,
                                                "line": np.arange(len(texts), dtype=np.int64),
                                                "text": texts, "label": np.asarray(labels, dtype=np.int64)}))
        raw = pd.concat(frames, ignore_index=True)
        raw.to_parquet(raw_dir / RAW_FILE, engine="pyarrow", index=False)
        counts = {key: int(n) for key, n in raw.groupby(["task", "split"]).size().items()}
        return {"source": str(root), "source_sha256": digests, "rows": len(raw), "label_names": mappings,
                "counts": {f"{t}/{s}": n for (t, s), n in counts.items()},
                "source_versions": source_versions(counts, self.versions)}

    def source_facts(self, config, raw_dir):
        """The release of each configured task's files, from the raw table's line counts."""
        path = raw_dir / RAW_FILE
        df = read_parquet(path, ["task", "split"])
        df = df[df["task"].isin(_task_names(config))]
        counts = {key: int(n) for key, n in df.groupby(["task", "split"]).size().items()}
        found = source_versions(counts, self.versions)
        return {"versions": found} if found else {}

    def preprocess(self, config, split_seed, raw_dir, out_dir):
        from ..models.text import save_tokens, tokenizer_record

        path = raw_dir / RAW_FILE
        df = read_parquet(path, ["task", "subset", "split", "line", "text", "label"])
        require_dtype(df, ["task", "split", "text"], path, "string")
        require_dtype(df, ["line", "label"], path, "integer")
        names = _task_names(config)
        missing = [t for t in names if t not in set(df["task"])]
        if missing:
            raise MTLReproError(f"{path}: no rows for task(s) {missing} (download again after changing tasks)")
        df = df[df["task"].isin(names)]
        if df["text"].isna().any() or (df["text"].astype(str).str.strip() == "").any():
            raise MTLReproError(f"{path}: column 'text' has empty values")
        for task in names:
            labels = df.loc[df["task"] == task, "label"]
            if labels.isna().any() or not labels.between(0, task_info(task).n_classes - 1).all():
                raise MTLReproError(f"{path}: column 'label' of task {task!r} has values outside "
                                    f"0..{task_info(task).n_classes - 1}")
        example_id = df.index.to_numpy()  # the row in the raw file
        df = df.reset_index(drop=True).assign(example_id=example_id)
        caps = config["split"]
        info, counts = {}, {}
        for split in SPLITS:
            keep = []
            for task in names:
                rows = np.flatnonzero(((df["task"] == task) & (df["split"] == split)).to_numpy())
                if len(rows) == 0:
                    raise MTLReproError(f"{path}: task {task!r} has no {split} rows")
                keep.append(_cap(rows, caps.get(split), split_seed, task, split))
            part = df.iloc[np.concatenate(keep)].reset_index(drop=True)
            part = part[["example_id", "task", "subset", "line", "text", "label"]]
            write_parquet(part, out_dir / f"{split}.parquet")
            save_tokens(part["text"].astype(str).tolist(), config["model"], out_dir, split)
            info[split] = split_record(split, part["example_id"].to_numpy())
            counts[split] = {t: int(n) for t, n in part["task"].value_counts().items()}
        write_stats(out_dir, {"tasks": names, "counts": counts, "tokenizer": tokenizer_record(config["model"])})
        return info

    def load(self, config, processed_dir, split):
        from ..models.text import TextSplit, load_tokens

        path = processed_dir / f"{split}.parquet"
        df = read_parquet(path, ["task", "text", "label"])
        require_dtype(df, ["task", "text"], path, "string")
        require_dtype(df, ["label"], path, "integer")
        names = _task_names(config)
        unknown = sorted(set(df["task"]) - set(names))
        if unknown:
            raise MTLReproError(f"{path}: column 'task' has tasks {unknown} not in dataset.tweeteval.source.tasks")
        if df["text"].isna().any() or (df["text"].astype(str).str.strip() == "").any():
            raise MTLReproError(f"{path}: column 'text' has empty values")
        labels = df["label"].to_numpy(dtype=np.float64)
        targets = np.full((len(df), len(names)), np.nan)
        for k, task in enumerate(names):
            rows = (df["task"] == task).to_numpy()
            values = labels[rows]
            if np.isnan(values).any() or not np.isin(values, np.arange(task_info(task).n_classes)).all():
                raise MTLReproError(f"{path}: column 'label' of task {task!r} has values outside "
                                    f"0..{task_info(task).n_classes - 1}")
            targets[rows, k] = values
        input_ids, mask = load_tokens(config["model"], processed_dir, split, len(df),
                                      read_stats(processed_dir).get("tokenizer"))
        return TextSplit(input_ids, mask, torch.from_numpy(targets.astype(np.float32)))

    def build_model(self, config, tasks):
        from ..models.text import build_text_model

        return build_text_model(config["model"], tasks)


SPEC = TweetEval()
