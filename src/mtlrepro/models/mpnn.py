"""Gilmer et al.'s MPNN as used on QM9 by Navon et al. and BayesAgg-MTL:
node embedding, NNConv + GRU message passing, Set2Set readout.

NNConv (mean aggregation) and Set2Set are written here in plain torch, as the same operations in
the same order as PyG 2.8's (scatter_add_ sums, scatter_reduce_ maxima, the same initialisation
draws), so a model has PyG's parameter names, initial weights and outputs bit for bit
(tests/test_graph_ops.py checks all three against PyG). Importing torch_geometric costs a job
about 2 s (it imports its datasets and, through them, transformers); a QM9 job no longer does."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import MTLModel


def _along_rows(index: Tensor, like: Tensor) -> Tensor:
    return index.view((-1,) + (1,) * (like.dim() - 1)).expand_as(like)


def scatter_sum(src: Tensor, index: Tensor, size: int) -> Tensor:
    """out[i] = sum of src[j] over the rows j with index[j] == i ([size, ...])."""
    return src.new_zeros((size, *src.shape[1:])).scatter_add_(0, _along_rows(index, src), src)


def scatter_mean(src: Tensor, index: Tensor, size: int) -> Tensor:
    count = src.new_zeros(size).scatter_add_(0, index, src.new_ones(src.shape[0])).clamp(min=1)
    return scatter_sum(src, index, size) / _along_rows(count, src.new_zeros((size, *src.shape[1:])))


def group_softmax(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Softmax of src's rows within each group of equal index (the max subtracted first)."""
    top = src.new_zeros((size, *src.shape[1:])).scatter_reduce_(
        0, _along_rows(index, src), src.detach(), reduce="amax", include_self=False)
    out = (src - top.index_select(0, index)).exp()
    return out / (scatter_sum(out, index, size) + 1e-16).index_select(0, index)


class _RootWeight(nn.Module):
    """The root term's weight (named as PyG's `lin`), no bias."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight.data, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight)


class MeanNNConv(nn.Module):
    """NNConv with mean aggregation and per-edge weight matrices given by the caller:
    x_i' = mean_{j -> i} x_j W_ji + x_i R + b, with W [E, in * out] for the edges (source, target)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.lin = _RootWeight(in_dim, out_dim)
        self.bias = nn.Parameter(torch.empty(out_dim))
        self.lin.reset_parameters()  # PyG draws the root weight twice (its constructor, then reset)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weights: Tensor) -> Tensor:
        weight = edge_weights.view(-1, self.in_dim, self.out_dim)
        messages = torch.matmul(x.index_select(0, edge_index[0]).unsqueeze(1), weight).squeeze(1)
        return scatter_mean(messages, edge_index[1], x.shape[0]) + self.lin(x) + self.bias


class Set2Set(nn.Module):
    """Vinyals et al.'s Set2Set readout: `steps` LSTM steps of attention over each graph's nodes."""

    def __init__(self, dim: int, processing_steps: int):
        super().__init__()
        self.dim, self.steps = dim, processing_steps
        self.lstm = nn.LSTM(2 * dim, dim)
        self.lstm.reset_parameters()  # PyG initialises its LSTM twice too

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        size = int(index.max()) + 1 if index.numel() else 0
        state = (x.new_zeros((1, size, self.dim)), x.new_zeros((1, size, self.dim)))
        q_star = x.new_zeros(size, 2 * self.dim)
        for _ in range(self.steps):
            q, state = self.lstm(q_star.unsqueeze(0), state)
            q = q.view(size, self.dim)
            attention = group_softmax((x * q[index]).sum(dim=-1, keepdim=True), index, size)
            q_star = torch.cat([q, scatter_sum(attention * x, index, size)], dim=-1)
        return q_star


class MPNN(MTLModel):
    def __init__(self, tasks, node_features: int, edge_features: int, dim: int = 64,
                 message_passing_steps: int = 3, set2set_steps: int = 3):
        super().__init__(dim, tasks)
        self.steps = message_passing_steps
        self.lin0 = nn.Linear(node_features, dim)
        self.edge_net = nn.Sequential(nn.Linear(edge_features, 128), nn.ReLU(), nn.Linear(128, dim * dim))
        # The edge network's output depends only on the (fixed) edge features, so it is computed
        # once per forward pass and handed to the convolution, rather than recomputed at each
        # message-passing step as PyG's NNConv(edge_net) does: same model, a fraction of the cost
        # (the edge network dominates the step time).
        self.conv = MeanNNConv(dim, dim)
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
