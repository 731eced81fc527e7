"""Dataset registry: each benchmark module registers its DatasetSpec subclass by name."""
from __future__ import annotations

import importlib

from .base import DatasetSpec, Split, Task, nested_subset

__all__ = ["DatasetSpec", "Split", "Task", "get", "names", "nested_subset"]

# name -> module; imported on demand so a digits job never pays for torch-geometric or rdkit.
_MODULES = {"digits-mtl": "digits", "qm9": "qm9"}
_MODULES.update({"rotten-tomatoes": "rotten_tomatoes", "tweeteval": "tweeteval",
                 "digits-domains": "digits_domains"})
_MODULES.update({"cifar-mtl": "cifar_mtl", "utkface": "utkface", "chestx-ray14": "chestxray14"})


def names() -> list[str]:
    return list(_MODULES)


def get(name: str) -> DatasetSpec:
    if name not in _MODULES:
        from ..io import MTLReproError
        raise MTLReproError(f"unknown dataset {name!r}; known: {', '.join(_MODULES)}")
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return module.SPEC
