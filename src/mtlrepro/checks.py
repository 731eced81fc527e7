"""The params checks that need the dataset and method registries (and so torch): kept out of
`mtlrepro.params`, which the workflow imports while it builds the DAG."""
from __future__ import annotations

from .params import ParamsError, all_datasets, studies


def warm_start_methods() -> frozenset[str]:
    """Methods that start from the pretrain-LS checkpoint (`Method.warm_start`)."""
    from . import methods as registry

    return frozenset(n for n, cls in registry.REGISTRY.items() if cls.warm_start)


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

    for name, hparams in params["method"].items():
        if name not in registry.REGISTRY:
            raise ParamsError(f"{source}: method.{name}: unknown method; known: {', '.join(registry.names())}")
        cls = registry.REGISTRY[name]
        allowed = set(cls.hparam_names()) | ({"level"} if issubclass(cls, registry.Aggregator) else set())
        unknown = set(hparams) - allowed
        if unknown:
            raise ParamsError(f"{source}: method.{name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                              f"known: {sorted(allowed)}")
