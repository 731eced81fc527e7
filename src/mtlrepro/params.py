"""params.yaml: loading, schema validation and cross-checks, with errors that name the key."""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .io import MTLReproError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.json"


class ParamsError(MTLReproError):
    pass


@lru_cache(maxsize=1)
def _schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise ParamsError(f"params schema not found at {SCHEMA_PATH}")
    return json.loads(SCHEMA_PATH.read_text())


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(params: dict, source: str = "params") -> dict:
    """Checks params against the JSON schema and the cross-key rules; returns them unchanged."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:10]:
            msg = err.message
            if err.validator == "additionalProperties":
                msg = "unknown key: " + msg
            lines.append(f"  {_key_path(err)}: {msg}")
        raise ParamsError(f"{source} is invalid:\n" + "\n".join(lines))
    _cross_check(params, source)
    return params


def _cross_check(params: dict, source: str) -> None:
    problems = []
    for name in params["datasets"]:
        if name not in params["dataset"]:
            problems.append(f"datasets lists {name!r} but dataset.{name} is missing")
        else:
            train = params["dataset"][name]["train"]
            if train["pretrain_epochs"] >= train["epochs"]:
                problems.append(f"dataset.{name}.train.pretrain_epochs ({train['pretrain_epochs']}) must be "
                                f"smaller than epochs ({train['epochs']}): the warm-up counts inside the budget")
    for method in params["methods"]:
        if method not in params["method"]:
            problems.append(f"methods lists {method!r} but method.{method} is missing (use {{}} for defaults)")
    if "stl" in params["ablations"]["data_fraction"]["methods"]:
        problems.append("ablations.data_fraction.methods: 'stl' cannot be listed; Delta_m at every "
                        "fraction is measured against the stored 100% STL reference")
    for group in ("data_fraction", "robustness"):
        for method in params["ablations"][group]["methods"]:
            if method not in params["methods"]:
                problems.append(f"ablations.{group}.methods lists {method!r}, which is not in methods")
    if problems:
        raise ParamsError(f"{source} is invalid:\n" + "\n".join("  " + p for p in problems))


def check_methods(params: dict, source: str = "params") -> None:
    """Dataset and method names and hyper-parameters exist (needs torch: kept out of `validate`)."""
    from . import data
    from . import methods as registry

    for name in params["datasets"]:
        if name not in data.names():
            raise ParamsError(f"{source}: datasets: no loader for {name!r}; known: {', '.join(data.names())}")

    for name, hparams in params["method"].items():
        if name not in registry.REGISTRY:
            raise ParamsError(f"{source}: method.{name}: unknown method; known: {', '.join(registry.names())}")
        cls = registry.REGISTRY[name]
        allowed = set(cls.hparam_names()) | ({"level"} if issubclass(cls, registry.Aggregator) else set())
        unknown = set(hparams) - allowed
        if unknown:
            raise ParamsError(f"{source}: method.{name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                              f"known: {sorted(allowed)}")


def load(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file not found: {path}")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path} must hold a mapping at the top level")
    return validate(params, str(path))


def dataset_slice(params: dict, dataset: str) -> dict:
    """The part of params one dataset's stages depend on (recorded in sidecars)."""
    if dataset not in params["dataset"]:
        raise ParamsError(f"dataset.{dataset} is missing from params")
    return {"split_seed": params["split_seed"], "dataset": dataset,
            "config": copy.deepcopy(params["dataset"][dataset])}


def method_hparams(params: dict, method: str) -> dict:
    if method not in params["method"]:
        raise ParamsError(f"method.{method} is missing from params")
    return copy.deepcopy(params["method"][method])


def get(params: dict, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"params key {dotted!r} is missing (at {part!r})")
        node = node[part]
    return node
