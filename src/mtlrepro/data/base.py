"""What a dataset provides to the stages: its tasks, raw files, preprocessing, loading, model."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..io import MTLReproError, atomic_path, sha256_file, write_json


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "regression" | "binary" | "multiclass"
    primary: str  # the metric Delta_m uses: "mae" | "accuracy" | "auc" | "f1"
    n_classes: int = 1
    unit: str | None = None  # of a regression target's reported errors (e.g. "meV"); shown in tables

    @property
    def higher_is_better(self) -> bool:
        return self.primary not in ("mae", "mse", "rmse")

    @property
    def out_dim(self) -> int:
        return self.n_classes if self.kind == "multiclass" else 1


class Split:
    """One split held in memory: inputs plus a [N, K] float target matrix (NaN = no label).

    Subclasses implement `batch(indices)` returning (inputs, targets) on `device`.
    """

    targets: Tensor

    def __len__(self) -> int:
        return self.targets.shape[0]

    def batch(self, indices: Tensor) -> tuple[Any, Tensor]:
        raise NotImplementedError

    def to(self, device: torch.device) -> "Split":
        raise NotImplementedError

    def batches(self, batch_size: int, indices: Tensor | None = None,
                generator: torch.Generator | None = None) -> Iterator[tuple[Any, Tensor]]:
        """Mini-batches over `indices` (all by default), shuffled when a generator is given."""
        if indices is None:
            indices = torch.arange(len(self))
        if generator is not None:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        for start in range(0, len(indices), batch_size):
            yield self.batch(indices[start:start + batch_size])


class DatasetSpec:
    """A benchmark. Subclasses are registered by `name` in `mtlrepro.data`."""

    name: ClassVar[str] = ""
    raw_files: ClassVar[Sequence[str]] = ()
    # processed columns that say what an example is: no two splits may hold the same content
    content_columns: ClassVar[Sequence[str]] = ()

    def tasks(self, config: dict) -> list[Task]:
        raise NotImplementedError

    def download(self, config: dict, raw_dir: Path) -> dict:
        """Writes the raw files into raw_dir (already a fresh temporary folder); returns a manifest."""
        raise NotImplementedError

    def preprocess(self, config: dict, split_seed: int, raw_dir: Path, out_dir: Path) -> dict:
        """Writes {train,val,test}.parquet and stats.json into out_dir; returns split info."""
        raise NotImplementedError

    def source_facts(self, config: dict, raw_dir: Path) -> dict:
        """Facts about the source of the raw files (which release they are ...), recorded in
        preprocess's split.json under `source`; {} (the default) records none."""
        return {}

    def load(self, config: dict, processed_dir: Path, split: str) -> Split:
        raise NotImplementedError

    def build_model(self, config: dict, tasks: Sequence[Task]) -> torch.nn.Module:
        raise NotImplementedError

    def target_scale(self, processed_dir: Path) -> tuple[list[float], list[float]] | None:
        """(mean, std) per task when regression targets are z-scored for training, else None."""
        return None


# ---------------------------------------------------------------- helpers shared by datasets

def require_file(path: Path, what: str = "input file") -> Path:
    if not path.exists():
        raise MTLReproError(f"missing {what}: {path}")
    return path


def verify_checksum(path: Path, expected: str | None) -> str:
    require_file(path, "source file")
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        raise MTLReproError(f"checksum mismatch for {path}: expected sha256 {expected}, got {digest}")
    return digest


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, engine="pyarrow", index=False)


def read_csv(path: Path, columns: Sequence[str], what: str = "raw file", **read_kwargs) -> pd.DataFrame:
    """A CSV with the columns a stage needs; errors name the file and the missing columns."""
    require_file(path, what)
    try:
        df = pd.read_csv(path, **read_kwargs)
    except Exception as err:
        raise MTLReproError(f"cannot read {path}: {err}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MTLReproError(f"{path}: missing column(s) {missing}")
    if len(df) == 0:
        raise MTLReproError(f"{path}: no rows")
    return df


def read_parquet(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    require_file(path, "processed file")
    try:
        df = pd.read_parquet(path, engine="pyarrow")
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise MTLReproError(f"corrupt Parquet file {path}: {err}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MTLReproError(f"{path}: missing column(s) {missing}")
    if len(df) == 0:
        raise MTLReproError(f"{path}: no rows (an empty split)")
    return df


def require_dtype(df: pd.DataFrame, columns: Sequence[str], path: Path, kind: str) -> None:
    """Columns of integers (kind "integer": labels, counts, ids), of numbers ("number": integers
    or floats; booleans are neither) or of text ("string")."""
    api = pd.api.types
    wants = {"integer": "integers", "number": "numbers (integers or floats)", "string": "text"}
    for col in columns:
        dtype = df[col].dtype
        if kind == "string":
            ok = api.is_string_dtype(df[col])  # object columns: every value a str
        else:
            ok = not api.is_bool_dtype(dtype) and (api.is_integer_dtype(dtype) if kind == "integer"
                                                   else api.is_numeric_dtype(dtype))
        if not ok:
            raise MTLReproError(f"{path}: column {col!r} has dtype {dtype}, expected {wants[kind]}")


def check_finite_targets(df: pd.DataFrame, columns: Sequence[str], path: Path, allow_nan=False) -> None:
    require_dtype(df, columns, path, "number")
    for col in columns:
        values = df[col].to_numpy(dtype=float)
        bad = ~np.isfinite(values) if not allow_nan else np.isinf(values)
        if bad.any():
            raise MTLReproError(f"{path}: column {col!r} has {int(bad.sum())} non-finite value(s) "
                                f"(first at row {int(np.flatnonzero(bad)[0])})")


def split_record(name: str, indices: np.ndarray) -> dict:
    import hashlib

    return {"size": int(len(indices)),
            "ids_sha256": hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()}


def write_stats(out_dir: Path, stats: dict) -> None:
    write_json(out_dir / "stats.json", stats)


def read_stats(processed_dir: Path) -> dict:
    path = require_file(processed_dir / "stats.json", "processed file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MTLReproError(f"corrupt JSON in {path}: {err}") from None


def stat_value(stats: dict, processed_dir: Path, *keys: str, scale: bool = False) -> float:
    """One normalisation statistic of stats.json: present, a finite number, and > 0 for a scale
    (a zero standard deviation would divide by zero)."""
    value: Any = stats
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise MTLReproError(f"{processed_dir / 'stats.json'}: missing entry {'.'.join(keys)}")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise MTLReproError(f"{processed_dir / 'stats.json'}: entry {'.'.join(keys)} is {value!r}, "
                            f"not a finite number")
    if scale and value <= 0:
        raise MTLReproError(f"{processed_dir / 'stats.json'}: entry {'.'.join(keys)} is {value}, "
                            f"a scale must be > 0")
    return float(value)


def _content_keys(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One hash per row of the content columns (arrays, e.g. a molecule's positions, by the
    digest of their bytes)."""
    import hashlib

    frame = df[list(columns)].copy()
    for col in columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: hashlib.sha256(v.tobytes()).hexdigest()
                                        if isinstance(v, np.ndarray) else v)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def check_disjoint_splits(out_dir: Path, content_columns: Sequence[str] = (),
                          splits: Sequence[str] = ("train", "val", "test")) -> None:
    """Each example in one split only: example ids unique within a split and disjoint across
    splits, and no content (the spec's content columns) in two splits."""
    seen_ids: dict[str, set] = {}
    seen_content: dict[str, set] = {}
    for name in splits:
        path = out_dir / f"{name}.parquet"
        df = read_parquet(path, ["example_id", *content_columns])
        ids = df["example_id"]
        if ids.duplicated().any():
            raise MTLReproError(f"{path}: column 'example_id' repeats example(s) "
                                f"{sorted(ids[ids.duplicated()].unique().tolist())[:5]}")
        keys = set(_content_keys(df, content_columns).tolist()) if content_columns else set()
        for other in seen_ids:
            shared = seen_ids[other] & set(ids.tolist())
            if shared:
                raise MTLReproError(f"{path} and {out_dir / f'{other}.parquet'} share example(s) "
                                    f"{sorted(shared)[:5]} (column 'example_id'): the splits overlap")
            if keys & seen_content[other]:
                raise MTLReproError(f"{path} and {out_dir / f'{other}.parquet'} hold "
                                    f"{len(keys & seen_content[other])} identical example(s) "
                                    f"(columns {list(content_columns)}): the splits overlap")
        seen_ids[name], seen_content[name] = set(ids.tolist()), keys


def nested_subset(n: int, fraction: int, seed: int) -> Tensor:
    """Indices of `fraction` percent of range(n): the first entries of one seeded permutation,
    so every smaller fraction is contained in every larger one."""
    if not 0 < fraction <= 100:
        raise MTLReproError(f"data fraction must be in (0, 100], got {fraction}")
    if fraction == 100:
        return torch.arange(n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    keep = max(1, round(n * fraction / 100))
    return perm[:keep].sort().values
