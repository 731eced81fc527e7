"""The MTL method registry.

Every method lives in its own module and registers its class here by `name`; the training
loop asks `build(name, ...)` and never branches on method names.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import torch
from torch import Tensor

from .base import Aggregator, GradientContext, Method, SingleTask, Weighting

__all__ = ["Aggregator", "GradientContext", "Method", "SingleTask", "Weighting",
           "REGISTRY", "build", "combine", "names"]

REGISTRY: dict[str, type[Method]] = {}


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    for cls in _all_subclasses(Method):
        if cls.name:
            if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
                raise RuntimeError(f"two methods are named {cls.name!r}: "
                                   f"{REGISTRY[cls.name].__module__} and {cls.__module__}")
            REGISTRY[cls.name] = cls


_discover()


def names() -> list[str]:
    return sorted(REGISTRY)


def get(name: str) -> type[Method]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(names())}") from None


def build(name: str, n_tasks: int, task_kinds=None, generator: torch.Generator | None = None,
          **hparams: Any) -> Method:
    return get(name)(n_tasks, task_kinds=task_kinds, generator=generator, **hparams)


def combine(name: str, G: Tensor, generator: torch.Generator | None = None, **hparams: Any) -> Tensor:
    """Pure entry point: combine a per-task gradient matrix G [K, d] into one direction [d]."""
    cls = get(name)
    if not issubclass(cls, Aggregator):
        raise TypeError(f"method {name!r} is a {cls.kind}, not a gradient aggregator")
    if G.dim() != 2:
        raise ValueError(f"combine({name!r}): G must be [K, d], got shape {tuple(G.shape)}")
    return cls(G.shape[0], generator=generator, **hparams).combine(G)
