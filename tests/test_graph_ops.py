"""The MPNN's own NNConv (mean) and Set2Set against PyG's: the same parameter names, the same
initial weights from the same seed, and the same outputs and gradients, bit for bit."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mtlrepro.data.base import Task
from mtlrepro.models.base import MTLModel
from mtlrepro.models.mpnn import MPNN, group_softmax, scatter_mean, scatter_sum

pyg = pytest.importorskip("torch_geometric")
TASKS = [Task(f"t{k}", "regression", "mae") for k in range(3)]


class PygMPNN(MPNN):
    """The same network built from PyG's layers, in the same construction order."""

    def __init__(self, tasks, node_features, edge_features, dim, steps=3, set2set_steps=3):
        from torch_geometric.nn import NNConv, Set2Set

        MTLModel.__init__(self, dim, tasks)
        self.steps = steps
        self.lin0 = nn.Linear(node_features, dim)
        self.edge_net = nn.Sequential(nn.Linear(edge_features, 128), nn.ReLU(), nn.Linear(128, dim * dim))
        self.conv = NNConv(dim, dim, nn.Identity(), aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * dim, dim)


def random_graphs(seed=0, graphs=5, node_features=11, edge_features=5):
    """A batch of small graphs (node counts 1..9, one of them without edges), nodes sorted by graph."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 10, (graphs,), generator=g).tolist()
    sizes[0] = 1
    batch = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    starts = torch.tensor([0] + sizes).cumsum(0)
    edges = []
    for i, n in enumerate(sizes):
        for a in range(n):
            for b in range(n):
                if a != b and torch.rand(1, generator=g) < 0.6:
                    edges.append((starts[i] + a, starts[i] + b))
    edge_index = torch.tensor(edges, dtype=torch.long).T
    return SimpleNamespace(x=torch.randn(len(batch), node_features, generator=g), edge_index=edge_index,
                           edge_attr=torch.randn(edge_index.shape[1], edge_features, generator=g), batch=batch)


@pytest.mark.parametrize("seed", [0, 1])
def test_same_weights_outputs_and_gradients_as_pyg(seed):
    torch.manual_seed(seed)
    ours = MPNN(TASKS, 11, 5, dim=16)
    torch.manual_seed(seed)
    theirs = PygMPNN(TASKS, 11, 5, dim=16)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    data = random_graphs(seed)
    (h_ours, out_ours), (h_theirs, out_theirs) = ours(data), theirs(data)
    assert torch.equal(h_ours, h_theirs) and all(torch.equal(x, y) for x, y in zip(out_ours, out_theirs))
    sum(o.square().sum() for o in out_ours).backward()
    sum(o.square().sum() for o in out_theirs).backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_both_draw_the_same_numbers_at_initialisation():
    """What follows the model's construction gets the same random numbers either way."""
    torch.manual_seed(3)
    MPNN(TASKS, 11, 5, dim=8)
    after_ours = torch.rand(4)
    torch.manual_seed(3)
    PygMPNN(TASKS, 11, 5, dim=8)
    assert torch.equal(after_ours, torch.rand(4))


def test_scatter_ops_against_their_definitions():
    g = torch.Generator().manual_seed(0)
    src, index = torch.randn(9, 3, generator=g), torch.tensor([0, 2, 2, 0, 3, 3, 3, 0, 2])
    total = scatter_sum(src, index, 5)
    for i in range(5):
        rows = src[index == i]
        assert torch.allclose(total[i], rows.sum(0))
        assert torch.allclose(scatter_mean(src, index, 5)[i], rows.mean(0) if len(rows) else torch.zeros(3))
    soft = group_softmax(src, index, 5)
    for i in (0, 2, 3):
        assert torch.allclose(soft[index == i], torch.softmax(src[index == i], 0), atol=1e-6)


def test_a_qm9_job_never_imports_torch_geometric():
    import subprocess
    import sys

    code = ("import sys; from mtlrepro.data.qm9 import QM9; from mtlrepro.models.mpnn import MPNN; "
            "from mtlrepro.stages import fit, eval; print('torch_geometric' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
