"""The toy problem shared by the probabilistic-method tests: 3 binary tasks on 8x8 inputs, a tiny
ConvNet with the method's heads installed."""
import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.data.base import Task
from mtlrepro.models.cnn import ConvNet
from mtlrepro.stages import install_heads
from mtlrepro.step import training_step


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def toy_problem(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 8, 8, generator=g)
    Y = torch.stack([X[:, 0, :4, :4].mean((1, 2)) > 0, X[:, 0, 4:, 4:].mean((1, 2)) > 0,
                     X[:, 0].mean((1, 2)) > 0], 1).float()
    return X, Y


def build_toy_model(method_name, seed=1, **hparams):
    tasks = [Task(f"t{k}", "binary", "accuracy") for k in range(3)]
    torch.manual_seed(0)
    model = ConvNet(tasks, channels=8, image_size=8)
    method = registry.build(method_name, 3, task_kinds=["binary"] * 3,
                            generator=torch.Generator().manual_seed(seed), **hparams)
    install_heads(model, method, tasks)
    return model, method, tasks


def assert_step_learns_and_round_trips(model, method, tasks, X, Y, method_name, **hparams):
    """A training step leaves torch's global RNG alone (draws come from the method's generator),
    reaches every head parameter, 30 Adam steps cut the loss, and a model rebuilt with fresh
    heads of the same method loads the state dict to the same eval outputs."""
    model.train()
    rng = torch.get_rng_state()
    training_step(model, method, tasks, X, Y, torch.optim.SGD(model.parameters(), lr=0.0))
    assert torch.equal(torch.get_rng_state(), rng)
    for pname, p in model.heads.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [float(training_step(model, method, tasks, X, Y, optimizer).sum()) for _ in range(30)]
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5

    model.eval()
    with torch.no_grad():
        expected = model(X)[1]
    rebuilt = ConvNet(tasks, channels=8, image_size=8)
    install_heads(rebuilt, registry.build(method_name, 3, task_kinds=["binary"] * 3, generator=torch.Generator(),
                                          **hparams), tasks)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(expected, rebuilt(X)[1]))
