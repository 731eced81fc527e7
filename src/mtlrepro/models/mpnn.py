"""Gilmer et al.'s MPNN as used on QM9 by Navon et al. and BayesAgg-MTL:
node embedding, NNConv + GRU message passing, Set2Set readout."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import MTLModel


class MPNN(MTLModel):
    def __init__(self, tasks, node_features: int, edge_features: int, dim: int = 64,
                 message_passing_steps: int = 3, set2set_steps: int = 3):
        from torch_geometric.nn import NNConv, Set2Set

        super().__init__(dim, tasks)
        self.steps = message_passing_steps
        self.lin0 = nn.Linear(node_features, dim)
        self.edge_net = nn.Sequential(nn.Linear(edge_features, 128), nn.ReLU(), nn.Linear(128, dim * dim))
        # The edge network's output depends only on the (fixed) edge features, so it is computed
        # once per forward pass and handed to NNConv through an identity network, rather than
        # recomputed at each message-passing step as NNConv(edge_net) would do: same model,
        # a fraction of the cost (the edge network dominates the step time).
        self.conv = NNConv(dim, dim, nn.Identity(), aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * dim, dim)

    def embed(self, batch) -> Tensor:
        return torch.relu(self.lin0(batch.x))

    def encode_from(self, x0: Tensor, batch) -> Tensor:
        out, hidden = x0, x0.unsqueeze(0)
        edge_weights = self.edge_net(batch.edge_attr)
        for _ in range(self.steps):
            message = torch.relu(self.conv(out, batch.edge_index, edge_weights))
            out, hidden = self.gru(message.unsqueeze(0), hidden)
            out = out.squeeze(0)
        return torch.relu(self.lin1(self.set2set(out, batch.batch)))

    def example_index(self, batch, x0: Tensor) -> Tensor:
        return batch.batch
