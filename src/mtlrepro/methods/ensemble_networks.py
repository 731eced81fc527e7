"""Deep ensemble of whole networks (BayesAgg-MTL's Table 5, "Ensemble (10 networks)"): `networks`
independently initialised copies of the dataset's model, backbone and heads, each trained on its
own linear-scalarisation loss, predictions averaged. The copies run as one model
(models/ensemble.py: their representations side by side, each head reading its own network's), so
the training loop, evaluation and checkpoints treat the ensemble as any other model; the copies
share the batches and never each other's parameters."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ._ensemble import MemberEnsemble


class EnsembleNetworks(MemberEnsemble):
    name = "ensemble_networks"
    size_hparam = "networks"
    default_size = 10

    def build_model(self, build: Callable, tasks: Sequence[Any]):
        from ..models.ensemble import EnsembleMTL

        return EnsembleMTL([build() for _ in range(self.members)], tasks)
