"""The deep-ensemble baselines of BayesAgg-MTL's Table 5: heads on one backbone, and whole networks."""
import copy

import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.data.base import Task
from mtlrepro.models.ensemble import EnsembleHead, combine_members
from mtlrepro.models.cnn import ConvNet
from mtlrepro.stages import build_run_model, install_heads
from mtlrepro.step import task_loss, training_step

from .probabilistic_toys import _one_thread, toy_problem  # noqa: F401

TASKS = [Task("r", "regression", "mae"), Task("b", "binary", "accuracy"),
         Task("c", "multiclass", "accuracy", n_classes=3)]


def _targets(n, g):
    return torch.stack([torch.randn(n, generator=g), (torch.rand(n, generator=g) > 0.5).float(),
                        torch.randint(0, 3, (n,), generator=g).float()], 1)


def test_combined_output_is_the_members_mean_prediction():
    g = torch.Generator().manual_seed(0)
    members = {"regression": torch.randn(5, 7, 1, generator=g), "binary": 4 * torch.randn(5, 7, 1, generator=g),
               "multiclass": 4 * torch.randn(5, 7, 3, generator=g)}
    assert torch.allclose(combine_members("regression", members["regression"]), members["regression"].mean(1))
    assert torch.allclose(torch.sigmoid(combine_members("binary", members["binary"])),
                          torch.sigmoid(members["binary"]).mean(1), atol=1e-6)
    assert torch.allclose(torch.softmax(combine_members("multiclass", members["multiclass"]), -1),
                          torch.softmax(members["multiclass"], -1).mean(1), atol=1e-6)


class _Identity(torch.nn.Module):
    """A model whose representation is its input (heads are all there is to train)."""
    def __init__(self, d, tasks):
        super().__init__()
        self.rep_dim = d
        self.heads = torch.nn.ModuleList(torch.nn.Linear(d, t.out_dim) for t in tasks)

    def forward(self, x):
        return x, [head(x) for head in self.heads]

    def encode(self, x):
        return x


def test_heads_objective_is_each_heads_own_loss_linearly_scalarised():
    """Loop objective (LS of the combined outputs + the method's correction) = sum_k mean_m L_k(m),
    with NaN targets skipped; so each member's gradient is 1/M of its own loss's gradient."""
    torch.manual_seed(0)
    method = registry.build("ensemble_heads", 3, task_kinds=[t.kind for t in TASKS], heads=4)
    model = _Identity(6, TASKS)
    install_heads(model, method, TASKS)
    assert all(isinstance(h, EnsembleHead) and h.weight.shape[0] == 4 for h in model.heads)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 6, generator=g), _targets(10, g)
    y[:3, 0] = float("nan")
    reference = copy.deepcopy(model)
    training_step(model, method, TASKS, x, y, torch.optim.SGD(model.parameters(), lr=0.0))
    expected = 0.0
    for k, (task, head) in enumerate(zip(TASKS, reference.heads)):
        for m in range(4):
            out = x @ head.weight[m].T + head.bias[m]
            expected = expected + task_loss(task, out, y[:, k]) / 4
    expected.backward()
    for got, want in zip(model.heads.parameters(), reference.heads.parameters()):
        assert torch.allclose(got.grad, want.grad, atol=1e-6)


def test_network_ensemble_members_train_as_if_alone():
    """Each member's gradient in the ensemble is 1/M of the gradient it gets trained alone with LS
    on the same batch, and the prediction is the mean of the members' own predictions."""
    tasks = [Task(f"t{k}", "binary", "accuracy") for k in range(3)]
    X, Y = toy_problem(16)
    method = registry.build("ensemble_networks", 3, task_kinds=["binary"] * 3, networks=3)
    torch.manual_seed(0)
    alone = [ConvNet(tasks, channels=4, image_size=8) for _ in range(3)]
    torch.manual_seed(0)
    ensemble = method.build_model(lambda: ConvNet(tasks, channels=4, image_size=8), tasks)
    for member, twin in zip(ensemble.members, alone):  # the same initialisation, in order
        assert all(torch.equal(a, b) for a, b in zip(member.features.parameters(), twin.features.parameters()))
    ensemble.eval(), [m.eval() for m in alone]
    with torch.no_grad():
        probs = torch.stack([torch.sigmoid(torch.cat(m(X)[1], 1)) for m in alone]).mean(0)
        assert torch.allclose(torch.sigmoid(torch.cat(ensemble(X)[1], 1)), probs, atol=1e-6)
    ensemble.train()
    training_step(ensemble, method, tasks, X, Y, torch.optim.SGD(ensemble.parameters(), lr=0.0))
    ls = registry.build("ls", 3, task_kinds=["binary"] * 3)
    for m, twin in enumerate(alone):
        twin.train()
        training_step(twin, ls, tasks, X, Y, torch.optim.SGD(twin.parameters(), lr=0.0))
        for a, b in zip(ensemble.members[m].parameters(), twin.shared_parameters()):
            assert torch.allclose(a.grad * 3, b.grad, atol=1e-5)
        for k, head in enumerate(ensemble.heads):
            assert torch.allclose(head.weight.grad[m] * 3, twin.heads[k].weight.grad, atol=1e-5)


@pytest.mark.parametrize("name, hparams", [("ensemble_heads", {"heads": 5}), ("ensemble_networks", {"networks": 2})])
def test_ensembles_learn_and_reload_through_the_run_model(name, hparams):
    tasks = [Task(f"t{k}", "binary", "accuracy") for k in range(3)]
    X, Y = toy_problem(32)

    class Spec:
        @staticmethod
        def build_model(config, tasks):
            return ConvNet(tasks, channels=8, image_size=8)

    build = lambda: registry.build(name, 3, task_kinds=["binary"] * 3, **hparams)  # noqa: E731
    torch.manual_seed(0)
    model = build_run_model(Spec, {}, tasks, build())
    method = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [float(training_step(model, method, tasks, X, Y, optimizer).sum()) for _ in range(30)]
    assert sum(losses[-5:]) < 0.75 * sum(losses[:5])
    rebuilt = build_run_model(Spec, {}, tasks, build())
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(X)[1], rebuilt(X)[1]))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="heads"):
        registry.build("ensemble_heads", 2, heads=0)
    with pytest.raises(ValueError, match="networks"):
        registry.build("ensemble_networks", 2, networks=0)


def test_network_ensemble_through_the_train_and_evaluate_stages(tmp_path, digits_processed):
    """The stages train, save, reload and evaluate the ensemble as one model: its test accuracy is
    the one of the members' averaged probabilities, recomputed here from standalone digits models
    that hold the saved members' weights."""
    import json

    import numpy as np

    from mtlrepro import params as P
    from mtlrepro import stages
    from mtlrepro.data import get
    from mtlrepro.fingerprint import load_state
    from tests.conftest import CI_PARAMS

    params = P.load(CI_PARAMS)
    params["studies"]["bayesagg"]["methods"].append("ensemble_networks")
    params["method"]["ensemble_networks"] = {"networks": 2}
    model_dir, ev = tmp_path / "model", tmp_path / "eval.json"
    stages.train(params, "digits-mtl", "ensemble_networks", digits_processed, None, 100, 0, model_dir,
                 tmp_path / "log.json")
    stages.evaluate(params, "digits-mtl", "ensemble_networks", digits_processed, model_dir, 100, 0, ev)

    spec, config = get("digits-mtl"), params["dataset"]["digits-mtl"]
    tasks = spec.tasks(config)
    state = load_state(model_dir / "model.pt", "model", torch.device("cpu"))["states"][0]
    test = spec.load(config, digits_processed, "test")
    probs = []
    for m in range(2):
        member = spec.build_model(config, tasks)
        weights = {k[len(f"members.{m}."):]: v for k, v in state.items() if k.startswith(f"members.{m}.")}
        for k in range(len(tasks)):
            weights[f"heads.{k}.weight"] = state[f"heads.{k}.weight"][m]
            weights[f"heads.{k}.bias"] = state[f"heads.{k}.bias"][m]
        member.load_state_dict(weights)
        member.eval()
        with torch.no_grad():
            probs.append(torch.sigmoid(torch.cat(member(test.images)[1], 1)))
    predicted = (torch.stack(probs).mean(0) > 0.5).double().numpy()
    result = json.loads(ev.read_text())
    for k, task in enumerate(tasks):
        expected = float(np.mean(predicted[:, k] == test.targets[:, k].double().numpy()))
        assert result["tasks"][task.name]["metrics"]["accuracy"] == pytest.approx(expected, abs=1e-12), task.name


@pytest.mark.parametrize("name, hparams", [("ensemble_heads", {"heads": 2}), ("ensemble_networks", {"networks": 2})])
def test_ensembles_refuse_the_datasets_mlp_heads(name, hparams):
    """Table 5's members have linear heads: with train.heads set, the run stops naming the key."""
    from mtlrepro.io import MTLReproError

    tasks = [Task(f"t{k}", "binary", "accuracy") for k in range(3)]

    class Spec:
        @staticmethod
        def build_model(config, tasks):
            return ConvNet(tasks, channels=8, image_size=8)

    method = registry.build(name, 3, task_kinds=["binary"] * 3, **hparams)
    with pytest.raises(MTLReproError, match="train.heads"):
        build_run_model(Spec, {"train": {"heads": {"hidden_dim": 4, "dropout": 0.1}}}, tasks, method)
