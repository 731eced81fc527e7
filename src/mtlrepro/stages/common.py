"""What every stage checks first: the dataset is one of a study's, and the folders it reads exist."""
from __future__ import annotations

from pathlib import Path

from .. import params as P
from ..io import MTLReproError


def dataset_config(params: dict, dataset: str) -> dict:
    if dataset not in P.all_datasets(params):  # a dataset of no study is a typo: say so rather than train it
        raise MTLReproError(f"dataset {dataset!r} is in no study; add it to a study's datasets in studies.*")
    return params["dataset"][dataset]


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MTLReproError(f"missing {what}: {path}")
    return path
