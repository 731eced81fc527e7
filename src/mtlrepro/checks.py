"""The params checks that need the dataset and method registries (and so torch): kept out of
`mtlrepro.params`, which the workflow imports while it builds the DAG."""
from __future__ import annotations

from .params import ParamsError, all_datasets, studies
from .sweep import PRETRAIN_EPOCHS


def warm_start_methods() -> frozenset[str]:
    """Methods that start from the pretrain-LS checkpoint (`Method.warm_start`)."""
    from . import methods as registry

    return frozenset(n for n, cls in registry.REGISTRY.items() if cls.warm_start)


def _allowed_hparams(registry, cls) -> set[str]:
    return set(cls.hparam_names()) | ({"level"} if issubclass(cls, registry.Aggregator) else set())


def _check_batching(params: dict, st, dataset: str, registry, source: str) -> None:
    """One-task batches put each task on rows of its own: gradients w.r.t. the shared
    representation never overlap there, so a representation-level aggregator would be LS."""
    if params["dataset"].get(dataset, {}).get("train", {}).get("batching", "mixed") != "one_task":
        return
    from .training import representation_level_refusal

    for name in st.methods:
        cls = registry.REGISTRY.get(name)
        if cls is None or cls.kind != "aggregator":
            continue
        level = params["method"].get(name, {}).get("level") or cls.default_level_for("one_task")
        if level == "representation":
            raise ParamsError(f"{source}: dataset.{dataset}.train.batching is one_task (studies.{st.name}): "
                              + representation_level_refusal(name, cls.levels))


def check_methods(params: dict, source: str = "params") -> None:
    """Dataset and method names and hyper-parameters exist (needs torch: kept out of `validate`)."""
    from . import data
    from . import methods as registry

    for name in all_datasets(params):
        if name not in data.names():
            raise ParamsError(f"{source}: studies: no loader for dataset {name!r}; known: {', '.join(data.names())}")
    for st in studies(params):
        for name in st.methods:
            if name not in registry.REGISTRY:
                raise ParamsError(f"{source}: studies.{st.name}.methods: unknown method {name!r}; "
                                  f"known: {', '.join(registry.names())}")
            if not st.pretrain and registry.REGISTRY[name].warm_start:
                raise ParamsError(f"{source}: studies.{st.name}.methods: {name!r} starts from the pretrain-LS "
                                  f"checkpoint, which this study turns off (pretrain: false)")

        for dataset in st.datasets:
            _check_batching(params, st, dataset, registry, source)

        for (dataset, method), points in st.sweep:
            if method not in registry.REGISTRY:
                continue  # reported above: the sweep's method is in studies.*.methods
            cls = registry.REGISTRY[method]
            allowed = _allowed_hparams(registry, cls) | ({PRETRAIN_EPOCHS} if cls.warm_start else set())
            unknown = sorted({k for v in points for k, _ in v.settings} - allowed)
            if unknown:
                raise ParamsError(f"{source}: studies.{st.name}.sweep.{dataset}.{method}: {unknown} are not "
                                  f"among what {method!r} can sweep: {sorted(allowed)}")

    for name, hparams in params["method"].items():
        if name not in registry.REGISTRY:
            raise ParamsError(f"{source}: method.{name}: unknown method; known: {', '.join(registry.names())}")
        cls = registry.REGISTRY[name]
        allowed = _allowed_hparams(registry, cls)
        unknown = set(hparams) - allowed
        if unknown:
            raise ParamsError(f"{source}: method.{name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                              f"known: {sorted(allowed)}")
