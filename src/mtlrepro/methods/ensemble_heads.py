"""Deep ensemble of task heads on one shared backbone (BayesAgg-MTL's Table 5, "Ensemble (1024
heads)"): every task has `heads` linear heads, each trained on its own loss; the tasks are combined
by linear scalarisation and the heads' predictions averaged (models/ensemble.py)."""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ..models.ensemble import EnsembleHead
from ._ensemble import MemberEnsemble


class EnsembleHeads(MemberEnsemble):
    name = "ensemble_heads"
    size_hparam = "heads"
    default_size = 1024

    def build_heads(self, rep_dim: int, tasks: Sequence[Any], head=None) -> nn.ModuleList:
        super().build_heads(rep_dim, tasks, head)  # refuses the dataset's MLP heads
        return nn.ModuleList(EnsembleHead(t, rep_dim, self.members) for t in tasks)
