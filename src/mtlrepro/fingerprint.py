"""Saved states bound to what made them, and loaded without running code.

Three kinds of file are read back with `torch.load`: the resume state of a training run
(`.<out>.resume/*.pt`), the pretrain-LS checkpoint (`checkpoint.pt`) and a trained model
(`model.pt`). Each one holds only tensors and plain containers (dicts, lists, numbers, strings),
so it loads with `weights_only=True`: a file carrying a pickled object, which could run code
when unpickled, is refused (`load_state`).

Each one also carries `fingerprint`, the sha256 of a canonical JSON record of its inputs
(`inputs`, stored beside it): the dataset's model and train blocks, the method and its
hyper-parameters, the data fraction and its seed, the training seed and the sha256 of every
processed file (`split.json`'s `files_sha256`, which also pins the split seed and the split
block). The DAG re-runs a job when the same params change; the fingerprint catches what it
cannot see: a file from another run copied in, a resume state left by a job killed before a
params change.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from .io import MTLReproError, read_json
from .params import run_config, warm_up_config

STATE_FORMAT = 1  # the layout of the saved states; a change makes older files stale


def fingerprint(record: Any) -> str:
    """sha256 of the canonical JSON of a record (keys sorted, no white space)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def processed_hashes(processed_dir: Path) -> dict:
    """The sha256 of the processed files as preprocess recorded them (`split.json`)."""
    path = Path(processed_dir) / "split.json"
    files = read_json(path).get("files_sha256")
    if not isinstance(files, dict) or not files:
        raise MTLReproError(f"{path}: no 'files_sha256' record of the processed files; re-run preprocess")
    return files


def run_record(params: dict, dataset: str, fraction: int, seed: int, processed_dir: Path,
               method: str, hparams: dict, config: dict | None = None) -> dict:
    """What a pretrain or train output depends on (the params slice the workflow declares).
    config: the dataset block the run trains with (default: the run's, a sweep variant's
    pretrain_epochs applied)."""
    config = run_config(params, dataset, method) if config is None else config
    return {"format": STATE_FORMAT, "dataset": dataset, "model": config["model"], "train": config["train"],
            "method": method, "method_hparams": hparams, "fraction": int(fraction), "seed": int(seed),
            "data_fraction_seed": params["ablations"]["data_fraction"]["seed"],
            "data_fraction_per_seed": bool(params["ablations"]["data_fraction"].get("per_seed", True)),
            "processed_sha256": processed_hashes(processed_dir)}


def pretrain_record(params: dict, dataset: str, fraction: int, seed: int, processed_dir: Path,
                    epochs: int | None = None) -> dict:
    """The pretrain-LS warm-up: linear scalarisation with no hyper-parameters, stopped after
    `epochs` (default: the dataset's pretrain_epochs)."""
    config = warm_up_config(params, dataset, epochs)
    return run_record(params, dataset, fraction, seed, processed_dir, "ls", {}, config)


def stamp(state: dict, record: dict) -> dict:
    """The state with its inputs and their fingerprint added (in place)."""
    state["inputs"] = record
    state["fingerprint"] = fingerprint(record)
    return state


def load_state(path: Path, what: str, map_location=None) -> dict:
    """A saved state of tensors and plain containers; anything else is refused unopened."""
    path = Path(path)
    if not path.is_file():
        raise MTLReproError(f"missing {what}: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        raise MTLReproError(
            f"{what} {path} holds more than tensors and plain containers and is refused: unpickling "
            f"it could run code ({reason[-1] if reason else 'weights_only load failed'}); "
            f"delete it and re-run the stage that writes it") from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise MTLReproError(f"corrupt {what} {path}: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict):
        raise MTLReproError(f"{what} {path}: expected a dict of tensors, found {type(state).__name__}")
    return state


def differing_keys(expected: dict, found: Any) -> list[str]:
    if not isinstance(found, dict):
        return sorted(expected)
    return sorted(k for k in set(expected) | set(found)
                  if fingerprint(expected.get(k)) != fingerprint(found.get(k)))


def check_inputs(state: dict, record: dict, path: Path, what: str) -> None:
    """Refuses a saved state that was made from other inputs than the current ones."""
    expected, found = fingerprint(record), state.get("fingerprint")
    if found == expected:
        return
    if found is None:
        raise MTLReproError(f"{what} {path} carries no fingerprint of its inputs (expected {expected}); "
                            f"it was written by an older mtlrepro or by hand: re-run the stage that writes it")
    raise MTLReproError(
        f"{what} {path} was made from other inputs: its fingerprint is {found}, the current params and "
        f"data give {expected} (differing: {', '.join(differing_keys(record, state.get('inputs')))}); "
        f"re-run the stage that writes it")
