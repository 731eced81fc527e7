"""One module per group of pipeline stages, each importing only what its stages need (a data job
never imports the training code). `stages.<name>` loads the function's module on first use."""
from __future__ import annotations

import importlib

_WHERE = {"download": "data", "validate": "data", "preprocess": "data",
          "pretrain": "fit", "train": "fit", "install_heads": "fit", "build_run_model": "fit", "load_models": "fit",
          "evaluate": "eval", "robustness": "eval", "reference": "results", "aggregate": "results",
          "report": "results"}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
