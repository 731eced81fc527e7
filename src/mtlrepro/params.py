"""params.yaml: loading, schema validation and cross-checks, with errors that name the key."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Grid:
    """One grid of training runs: datasets x methods x seeds at 100%, plus its ablations.

    "main" is BayesAgg-MTL's study (top-level `datasets`, `methods`, `ablations.*.methods`; tables
    report Delta_m over STL; warm-start methods get the pretrain-LS stage). "infomtl_study" is
    InfoMTL's (the `infomtl_study` block; tables also report Avg and Delta_p over EW = ls; no
    warm-start methods, so no pretrain stage). Each grid has its own data fractions; seeds, the
    subset seed and the perturbations are shared."""
    name: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    fractions: tuple[int, ...]
    data_fraction_methods: tuple[str, ...]
    robustness_methods: tuple[str, ...]

    @property
    def pretrain(self) -> bool:
        return self.name == "main"


def grids(params: dict) -> list[Grid]:
    ablations = params["ablations"]
    out = [Grid("main", tuple(params["datasets"]), tuple(params["methods"]),
                tuple(ablations["data_fraction"]["fractions"]), tuple(ablations["data_fraction"]["methods"]),
                tuple(ablations["robustness"]["methods"]))]
    study = params.get("infomtl_study")
    if study:
        out.append(Grid("infomtl_study", tuple(study["datasets"]), tuple(study["methods"]),
                        tuple(study["ablations"]["data_fraction"]["fractions"]),
                        tuple(study["ablations"]["data_fraction"]["methods"]),
                        tuple(study["ablations"]["robustness"]["methods"])))
    return out


def all_datasets(params: dict) -> list[str]:
    return [d for g in grids(params) for d in g.datasets]


def grid_of(params: dict, dataset: str) -> Grid:
    for grid in grids(params):
        if dataset in grid.datasets:
            return grid
    raise ParamsError(f"dataset {dataset!r} is in no grid: add it to `datasets` or `infomtl_study.datasets`")


KEY_PREFIX = {"main": "", "infomtl_study": "infomtl_study."}  # where each grid's lists live in params


def _cross_check(params: dict, source: str) -> None:
    problems, seen = [], set()
    for grid in grids(params):
        at = KEY_PREFIX[grid.name]
        for name in grid.datasets:
            if name in seen:
                problems.append(f"{at}datasets: {name!r} is in the other grid too; a dataset belongs to one grid")
            seen.add(name)
            if name not in params["dataset"]:
                problems.append(f"{at}datasets lists {name!r} but dataset.{name} is missing")
                continue
            train = params["dataset"][name]["train"]
            if train["pretrain_epochs"] >= train["epochs"]:
                problems.append(f"dataset.{name}.train.pretrain_epochs ({train['pretrain_epochs']}) must be "
                                f"smaller than epochs ({train['epochs']}): the warm-up counts inside the budget")
        for method in grid.methods:
            if method not in params["method"]:
                problems.append(f"{at}methods lists {method!r} but method.{method} is missing (use {{}} for defaults)")
        if "stl" in grid.data_fraction_methods:
            problems.append(f"{at}ablations.data_fraction.methods: 'stl' cannot be listed; Delta_m at every "
                            f"fraction is measured against the stored 100% STL reference")
        for group, listed in (("data_fraction", grid.data_fraction_methods), ("robustness", grid.robustness_methods)):
            for method in listed:
                if method not in grid.methods:
                    problems.append(f"{at}ablations.{group}.methods lists {method!r}, which is not in {at}methods")
        if grid.name == "infomtl_study" and grid.datasets:  # its tables need both baselines
            for needed, why in (("stl", "the Delta_m reference"), ("ls", "EW, the Delta_p baseline")):
                if needed not in grid.methods:
                    problems.append(f"{at}methods must contain {needed!r} ({why})")
            if grid.data_fraction_methods and "ls" not in grid.data_fraction_methods:
                problems.append(f"{at}ablations.data_fraction.methods must contain 'ls': Delta_p at each "
                                f"fraction is measured against EW at that fraction")
    if problems:
        raise ParamsError(f"{source} is invalid:\n" + "\n".join("  " + p for p in problems))


def check_methods(params: dict, source: str = "params") -> None:
    """Dataset and method names and hyper-parameters exist (needs torch: kept out of `validate`)."""
    from . import data
    from . import methods as registry

    for name in all_datasets(params):
        if name not in data.names():
            raise ParamsError(f"{source}: datasets: no loader for {name!r}; known: {', '.join(data.names())}")

    for grid in grids(params):
        for name in grid.methods if not grid.pretrain else ():
            if name in registry.REGISTRY and registry.REGISTRY[name].warm_start:
                raise ParamsError(f"{source}: {grid.name}.methods: {name!r} starts from the pretrain-LS "
                                  f"checkpoint, which only the main grid builds; list it in `methods`")

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
