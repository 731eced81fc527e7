"""Hyper-parameter sweeps inside a study (BayesAgg-MTL's appendix B: s and the LS warm-up epochs
chosen on the validation split).

A study's `sweep: {dataset: {method: {key: [values]}}}` makes one *variant* of the method per
point of the grid (the product of the value lists, in the order given). A variant is trained and
evaluated like a method, under its own name, `<method>__<key>_<value>...` (`bayesagg__power_regression_0p75`),
so every path, DAG node and fingerprint of it is distinct; its hyper-parameters are the method's
with the point's values, except `pretrain_epochs`, which is the number of LS warm-up epochs it
starts from (the pretrain stage writes a checkpoint at each such epoch). The report picks, per
dataset, the variant with the lowest mean best-validation score over the seeds, shows it as the
method's row (saying which values were chosen), and lists every variant in a sweep table."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

PRETRAIN_EPOCHS = "pretrain_epochs"
SEPARATOR = "__"


def _token(value: Any) -> str:
    text = format(value, "g") if isinstance(value, float) else str(value).lower()
    return text.replace("-", "m").replace("+", "").replace(".", "p")


@dataclass(frozen=True)
class Variant:
    """One point of a method's grid on one dataset."""
    name: str                          # the run's method name
    method: str                        # the swept method
    settings: tuple[tuple[str, Any], ...]

    @property
    def hparams(self) -> dict:
        """The method hyper-parameters this point sets (pretrain_epochs is not one)."""
        return {k: v for k, v in self.settings if k != PRETRAIN_EPOCHS}

    @property
    def pretrain_epochs(self) -> int | None:
        return dict(self.settings).get(PRETRAIN_EPOCHS)

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings)


def variant_name(method: str, settings: tuple[tuple[str, Any], ...]) -> str:
    return SEPARATOR.join([method, *(f"{k}_{_token(v)}" for k, v in settings)])


def grid_variants(method: str, grid: Mapping[str, list]) -> list[Variant]:
    """The grid's points in order (the last key varies fastest)."""
    keys = list(grid)
    points = itertools.product(*(grid[k] for k in keys))
    out = []
    for values in points:
        settings = tuple(zip(keys, values))
        out.append(Variant(variant_name(method, settings), method, settings))
    return out
