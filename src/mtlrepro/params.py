"""params.yaml: loading, schema validation and cross-checks, with errors that name the key."""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import yaml

from .io import MTLReproError
from .sweep import PRETRAIN_EPOCHS, Variant, grid_variants

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
            elif err.validator in ("anyOf", "oneOf") and isinstance(err.schema, dict) and err.schema.get("description"):
                msg += f" (expected {err.schema['description']})"
            lines.append(f"  {_key_path(err)}: {msg}")
        raise ParamsError(f"{source} is invalid:\n" + "\n".join(lines))
    _cross_check(params, source)
    return params


class Run(NamedTuple):
    """One training run; its outputs are shared by every study that lists it (a run's params are
    global: the dataset block, the method block and the data-fraction seed)."""
    dataset: str
    method: str
    fraction: int
    seed: int


@dataclass(frozen=True)
class Study:
    """One published table's grid: datasets x methods x seeds at 100 %, plus its ablations.

    `reference` is the Delta_m reference (STL); `baseline`, where set, the Delta_p baseline
    (InfoMTL's EW = ls); `pretrain` whether warm-start methods get the pretrain-LS stage (a study
    without it cannot list them); `published` a key of `mtlrepro.published.STUDIES`."""
    name: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    reference: str = "stl"
    baseline: str | None = None
    pretrain: bool = True
    published: str | None = None
    fractions: tuple[int, ...] = ()
    data_fraction_methods: tuple[str, ...] = ()
    robustness_methods: tuple[str, ...] = ()
    # ((dataset, method), its variants): the swept methods (mtlrepro.sweep); the ablations use the
    # method's own params block
    sweep: tuple[tuple[tuple[str, str], tuple[Variant, ...]], ...] = ()

    @classmethod
    def from_params(cls, name: str, block: dict, seeds: Sequence[int]) -> "Study":
        ablations = block.get("ablations") or {}
        fraction = ablations.get("data_fraction") or {}
        sweep = tuple(((d, m), tuple(grid_variants(m, grid)))
                      for d, by_method in (block.get("sweep") or {}).items() for m, grid in by_method.items())
        return cls(name, tuple(block["datasets"]), tuple(block["methods"]),
                   tuple(block.get("seeds") or seeds), block.get("reference", "stl"), block.get("baseline"),
                   block.get("pretrain", True), block.get("published"), tuple(fraction.get("fractions", ())),
                   tuple(fraction.get("methods", ())),
                   tuple((ablations.get("robustness") or {}).get("methods", ())), sweep)

    def variants(self, dataset: str, method: str) -> tuple[Variant, ...]:
        """The method's variants on the dataset (none: it is not swept there)."""
        return dict(self.sweep).get((dataset, method), ())

    def run_names(self, dataset: str, method: str) -> list[str]:
        """The names the method's main runs on the dataset are trained under."""
        return [v.name for v in self.variants(dataset, method)] or [method]

    @property
    def ablation_fractions(self) -> tuple[int, ...]:
        """The data fractions below 100 % that actually run (none without methods)."""
        return self.fractions if self.data_fraction_methods else ()

    def runs(self) -> list[Run]:
        """The main runs, then the data-fraction ablation's, in table order."""
        out = [Run(d, name, 100, s) for d in self.datasets for m in self.methods for name in self.run_names(d, m)
               for s in self.seeds]
        out += [Run(d, m, f, s) for d in self.datasets for m in self.data_fraction_methods
                for f in self.ablation_fractions for s in self.seeds]
        # a swept method's ablations run with its own params block: its run at 100 % too
        ablated = {*(self.data_fraction_methods if self.ablation_fractions else ()), *self.robustness_methods}
        out += [Run(d, m, 100, s) for d in self.datasets for m in self.methods
                if m in ablated and self.variants(d, m) for s in self.seeds]
        return out

    def robustness_runs(self) -> list[Run]:
        return [Run(d, m, 100, s) for d in self.datasets for m in self.robustness_methods for s in self.seeds]


def studies(params: dict) -> list[Study]:
    return [Study.from_params(name, block, params["seeds"]) for name, block in params["studies"].items()]


def study(params: dict, name: str) -> Study:
    for s in studies(params):
        if s.name == name:
            return s
    raise ParamsError(f"studies.{name}: no such study; known: {', '.join(params['studies'])}")


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def all_datasets(params: dict) -> list[str]:
    return _unique(d for s in studies(params) for d in s.datasets)


def train_runs(params: dict) -> list[Run]:
    """Every training run of every study, each once."""
    return _unique(r for s in studies(params) for r in s.runs())


def robustness_runs(params: dict) -> list[Run]:
    return _unique(r for s in studies(params) for r in s.robustness_runs())


class Pretrain(NamedTuple):
    """One pretrain-LS warm-up checkpoint."""
    dataset: str
    fraction: int
    seed: int


def pretrain_of(run: Run) -> Pretrain:
    return Pretrain(run.dataset, run.fraction, run.seed)


def pretrain_runs(params: dict, warm_start: Iterable[str]) -> list[Pretrain]:
    """The warm-ups that the runs of warm-start methods (`mtlrepro.checks.warm_start_methods`) of
    every study start from, each once."""
    warm = set(warm_start)
    return _unique(pretrain_of(r) for r in train_runs(params) if base_method(params, r.method) in warm)


def studies_of(params: dict, run: Run) -> list[Study]:
    return [s for s in studies(params) if run in s.runs()]


def _check_study(params: dict, st: Study) -> list[str]:
    at, problems = f"studies.{st.name}", []
    for name in st.datasets:
        if name not in params["dataset"]:
            problems.append(f"{at}.datasets lists {name!r} but dataset.{name} is missing")
            continue
        train = params["dataset"][name]["train"]
        if train["pretrain_epochs"] >= train["epochs"]:
            problems.append(f"dataset.{name}.train.pretrain_epochs ({train['pretrain_epochs']}) must be "
                            f"smaller than epochs ({train['epochs']}): the warm-up counts inside the budget")
    for method in st.methods:
        if method not in params["method"]:
            problems.append(f"{at}.methods lists {method!r} but method.{method} is missing (use {{}} for defaults)")
    for role, needed in (("reference", st.reference), ("baseline", st.baseline)):
        if needed is not None and needed not in st.methods:
            problems.append(f"{at}.{role} is {needed!r}, which is not in {at}.methods")
    if st.reference in st.data_fraction_methods:
        problems.append(f"{at}.ablations.data_fraction.methods: {st.reference!r} cannot be listed; Delta_m at "
                        f"every fraction is measured against the stored 100% reference")
    if st.baseline and st.ablation_fractions and st.baseline not in st.data_fraction_methods:
        problems.append(f"{at}.ablations.data_fraction.methods must contain {st.baseline!r}: Delta_p at each "
                        f"fraction is measured against the baseline at that fraction")
    for (dataset, method), points in st.sweep:
        where = f"{at}.sweep.{dataset}.{method}"
        if dataset not in st.datasets:
            problems.append(f"{at}.sweep lists dataset {dataset!r}, which is not in {at}.datasets")
        if method not in st.methods:
            problems.append(f"{at}.sweep.{dataset} lists method {method!r}, which is not in {at}.methods")
        if method in (st.reference, st.baseline):
            problems.append(f"{where}: the {'reference' if method == st.reference else 'baseline'} "
                            f"cannot be swept (every Delta is measured against its one run)")
        epochs = params["dataset"].get(dataset, {}).get("train", {}).get("epochs")
        if not all(re.fullmatch(r"[a-z0-9_]+", v.name) for v in points):
            problems.append(f"{where}: values must be numbers, booleans or lower-case words (they name "
                            f"the variants' runs: {[v.name for v in points]})")
        for v in points:
            e = v.pretrain_epochs
            if e is not None and (not isinstance(e, int) or isinstance(e, bool) or e < 1
                                  or (epochs is not None and e >= epochs)):
                problems.append(f"{where}.{PRETRAIN_EPOCHS}: {e!r} is not a whole number of epochs in "
                                f"1..{epochs - 1 if epochs else 'epochs - 1'}")
                break
    for group, listed in (("data_fraction", st.data_fraction_methods), ("robustness", st.robustness_methods)):
        for method in listed:
            if method not in st.methods:
                problems.append(f"{at}.ablations.{group}.methods lists {method!r}, which is not in {at}.methods")
    return problems


def _check_schedules(params: dict) -> list[str]:
    problems = []
    for name, block in params["dataset"].items():
        train = block["train"]
        sched = train["scheduler"]
        if sched["name"] == "plateau" and sched.get("min_lr", 0.0) > train["lr"]:
            problems.append(f"dataset.{name}.train.scheduler.min_lr ({sched['min_lr']}) must not exceed "
                            f"dataset.{name}.train.lr ({train['lr']})")
    return problems


def _cross_check(params: dict, source: str) -> None:
    problems = _check_schedules(params) + [p for st in studies(params) for p in _check_study(params, st)]
    if problems:
        raise ParamsError(f"{source} is invalid:\n" + "\n".join("  " + p for p in problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML mapping with a key twice is an error, not its last value silently winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file not found: {path}")
    try:
        params = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
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


def variants(params: dict) -> dict[str, Variant]:
    """Every study's method variants by run name."""
    return _variants(json.dumps(params["studies"]))  # in order: a grid's key order names its variants


@lru_cache(maxsize=8)
def _variants(studies_json: str) -> dict[str, Variant]:  # the DAG asks once per job: parse once
    return {v.name: v for name, block in json.loads(studies_json).items()
            for _, vs in Study.from_params(name, block, [0]).sweep for v in vs}


def base_method(params: dict, name: str) -> str:
    """The method a run name trains: itself, or the method a sweep variant is a point of."""
    variant = variants(params).get(name)
    return variant.method if variant else name


def method_hparams(params: dict, method: str) -> dict:
    """A method's hyper-parameters (a sweep variant's: its method's, with the point's values)."""
    base, variant = base_method(params, method), variants(params).get(method)
    if base not in params["method"]:
        raise ParamsError(f"method.{base} is missing from params")
    return {**copy.deepcopy(params["method"][base]), **(variant.hparams if variant else {})}


def run_config(params: dict, dataset: str, method: str) -> dict:
    """The dataset block a run trains with: a sweep variant's pretrain_epochs replace the dataset's."""
    variant = variants(params).get(method)
    return warm_up_config(params, dataset, None if variant is None else variant.pretrain_epochs)


def warm_up_config(params: dict, dataset: str, pretrain_epochs: int | None) -> dict:
    """A copy of the dataset block with `pretrain_epochs` LS warm-up epochs (None: the block's own)."""
    config = copy.deepcopy(params["dataset"][dataset])
    if pretrain_epochs is not None:
        config["train"]["pretrain_epochs"] = int(pretrain_epochs)
    return config


def pretrain_epochs(params: dict, dataset: str) -> list[int]:
    """The LS warm-up epochs the dataset's pretrain checkpoints are written at: the dataset's, and
    every sweep's pretrain_epochs on it, ascending."""
    swept = {int(v.pretrain_epochs) for st in studies(params) for (d, _), vs in st.sweep if d == dataset
             for v in vs if v.pretrain_epochs is not None}
    return sorted({int(params["dataset"][dataset]["train"]["pretrain_epochs"]), *swept})


def get(params: dict, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"params key {dotted!r} is missing (at {part!r})")
        node = node[part]
    return node
