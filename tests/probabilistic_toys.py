"""The toy problem shared by the probabilistic-method tests: 3 binary tasks on 8x8 inputs, a tiny
ConvNet with the method's heads installed."""
import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.data.base import Task
from mtlrepro.models.cnn import ConvNet
from mtlrepro.stages import install_heads


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
