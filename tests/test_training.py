"""The training module: the step of each method kind, determinism, resume, NaN handling."""
import copy

import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.data import get as get_dataset
from mtlrepro.io import MTLReproError
from mtlrepro.methods.base import Aggregator, Weighting
from mtlrepro.training import TrainConfig, fit, resolve_device
from mtlrepro.step import training_step
from tests.conftest import CI_PARAMS


class SumAggregator(Aggregator):
    """Test double: the LS direction, sum of the per-task gradients."""
    name = ""

    def combine(self, G):
        return G.sum(0)


class TwiceLS(Weighting):
    name = ""

    def weights(self, losses):
        return torch.full_like(losses, 2.0)


def _setup(digits_processed, n=64):
    params = P.load(CI_PARAMS)
    spec = get_dataset("digits-mtl")
    config = params["dataset"]["digits-mtl"]
    tasks = spec.tasks(config)
    split = spec.load(config, digits_processed, "train")
    inputs, targets = split.batch(torch.arange(n))
    return spec, config, tasks, split, inputs, targets


def _one_step(model, method, tasks, inputs, targets, lr=0.1):
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    training_step(model, method, tasks, inputs, targets, opt)
    return model


@pytest.mark.parametrize("level", ["representation", "parameters"])
def test_aggregated_step_with_sum_equals_ls_step(digits_processed, level):
    """Per-task gradients via leaf copies of h, summed, must equal back-propagating the summed loss."""
    from mtlrepro.methods.ls import LinearScalarization

    spec, config, tasks, _, inputs, targets = _setup(digits_processed)
    torch.manual_seed(0)
    model = spec.build_model(config, tasks).eval()  # eval: batch-norm statistics do not move
    ls = _one_step(model, LinearScalarization(len(tasks)), tasks, inputs, targets)
    agg = _one_step(model, SumAggregator(len(tasks), level=level), tasks, inputs, targets)
    for (name, a), b in zip(ls.named_parameters(), agg.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    # and the step really moved the shared and head parameters
    assert not torch.allclose(ls.features[0].weight, model.features[0].weight)
    assert not torch.allclose(ls.heads[3].weight, model.heads[3].weight)


def test_weighting_scales_the_gradient(digits_processed):
    from mtlrepro.methods.ls import LinearScalarization

    spec, config, tasks, _, inputs, targets = _setup(digits_processed)
    torch.manual_seed(0)
    model = spec.build_model(config, tasks).eval()
    once = _one_step(model, LinearScalarization(len(tasks)), tasks, inputs, targets, lr=0.2)
    twice = _one_step(model, TwiceLS(len(tasks)), tasks, inputs, targets, lr=0.1)
    for a, b in zip(once.parameters(), twice.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_nan_loss_stops_with_a_clear_error(digits_processed):
    from mtlrepro.methods.ls import LinearScalarization

    spec, config, tasks, _, inputs, targets = _setup(digits_processed)
    model = spec.build_model(config, tasks)
    inputs = inputs.clone()
    inputs[0, 0, 0, 0] = float("nan")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(MTLReproError, match="non-finite training loss"):
        training_step(model, LinearScalarization(len(tasks)), tasks, inputs, targets, opt)


def test_device_auto_picks_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(MTLReproError, match="CUDA is not available"):
            resolve_device("cuda")


def _train(tmp_path, digits_processed, name, seed=0):
    params = P.load(CI_PARAMS)
    out = tmp_path / name
    stages.train(params, "digits-mtl", "ls", digits_processed, None, 100, seed, out, tmp_path / f"{name}.json")
    return torch.load(out / "model.pt", weights_only=True), (tmp_path / f"{name}.json")


def test_same_seed_same_numbers_on_cpu(tmp_path, digits_processed):
    import json

    a, log_a = _train(tmp_path, digits_processed, "a")
    b, log_b = _train(tmp_path, digits_processed, "b")
    c, _ = _train(tmp_path, digits_processed, "c", seed=1)
    for key in a["states"][0]:
        assert torch.equal(a["states"][0][key], b["states"][0][key]), key
    assert json.loads(log_a.read_text())["history"] == json.loads(log_b.read_text())["history"]
    assert any(not torch.equal(a["states"][0][k], c["states"][0][k]) for k in a["states"][0])


def test_resume_after_interruption_ends_with_the_same_model(tmp_path, digits_processed, monkeypatch):
    from mtlrepro.training import Interrupted

    full, _ = _train(tmp_path, digits_processed, "full")
    monkeypatch.setenv("MTLREPRO_STOP_AFTER_EPOCH", "2")
    with pytest.raises(Interrupted):
        _train(tmp_path, digits_processed, "resumed")
    assert not (tmp_path / "resumed").exists(), "an interrupted run must leave no output"
    assert (tmp_path / ".resumed.resume" / "run.pt").exists()
    monkeypatch.delenv("MTLREPRO_STOP_AFTER_EPOCH")
    resumed, _ = _train(tmp_path, digits_processed, "resumed")
    for key in full["states"][0]:
        assert torch.equal(full["states"][0][key], resumed["states"][0][key]), key
    assert not (tmp_path / ".resumed.resume").exists(), "the resume checkpoint is removed on success"


def test_stl_trains_one_model_per_task(tmp_path, digits_processed):
    params = P.load(CI_PARAMS)
    stages.train(params, "digits-mtl", "stl", digits_processed, None, 100, 0, tmp_path / "stl", tmp_path / "stl.json")
    ckpt = torch.load(tmp_path / "stl" / "model.pt", weights_only=True)
    assert ckpt["kind"] == "stl" and len(ckpt["states"]) == 10
    assert all(state["heads.0.weight"].shape == (1, 8) for state in ckpt["states"])
    assert "heads.1.weight" not in ckpt["states"][0]


def test_warm_start_continues_from_the_pretrain_checkpoint(tmp_path, digits_processed):
    """A warm-start method loads the LS checkpoint and trains only the remaining epochs."""
    import json

    from mtlrepro.methods.ls import LinearScalarization

    params = P.load(CI_PARAMS)
    stages.pretrain(params, "digits-mtl", digits_processed, 100, 0, tmp_path / "pre")
    ckpt = torch.load(tmp_path / "pre" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == params["dataset"]["digits-mtl"]["train"]["pretrain_epochs"]

    class WarmLS(LinearScalarization):
        name = ""
        warm_start = True

    spec = get_dataset("digits-mtl")
    config = params["dataset"]["digits-mtl"]
    tasks = spec.tasks(config)
    train, val = (spec.load(config, digits_processed, s) for s in ("train", "val"))
    model = spec.build_model(config, tasks)
    cfg = TrainConfig.from_params(config["train"], 0)
    result = fit(model, WarmLS(len(tasks)), tasks, train, val, cfg, torch.device("cpu"), init_state=ckpt)
    assert [h["epoch"] for h in result.history] == list(range(ckpt["epoch"] + 1, cfg.epochs + 1))


PLATEAU = {"name": "plateau", "factor": 0.7, "patience": 5, "min_lr": 1.0e-5}  # Navon et al.'s QM9 schedule


def _plateau(lr=1.0e-3):
    from mtlrepro.training import make_scheduler

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([param], lr=lr)
    cfg = TrainConfig(epochs=300, batch_size=1, lr=lr, weight_decay=0.0, scheduler=dict(PLATEAU), seed=0)
    return optimizer, make_scheduler(optimizer, cfg)


def test_plateau_schedule_steps_on_the_validation_score_down_to_min_lr():
    optimizer, scheduler = _plateau()
    scheduler.step(1.0)                 # the best validation score so far
    for _ in range(5):                  # 5 epochs without improvement: patience, lr kept
        scheduler.step(1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0e-3)
    scheduler.step(1.0)                 # the 6th: lr x 0.7
    assert optimizer.param_groups[0]["lr"] == pytest.approx(7.0e-4)
    scheduler.step(0.5)                 # an improvement resets the count
    for _ in range(5):
        scheduler.step(0.6)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(7.0e-4)
    for _ in range(200):
        scheduler.step(0.6)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0e-5)  # never below min_lr


def test_a_warm_start_keeps_the_plateau_schedules_place():
    """BayesAgg-MTL continues the LS pre-training's schedule: its reduced lr and its counters."""
    from mtlrepro.warm_start import apply_warm_start

    optimizer, scheduler = _plateau()
    for _ in range(7):
        scheduler.step(1.0)
    state = {"model": {}, "scheduler": scheduler.state_dict(), "epoch": 7}
    optimizer2, scheduler2 = _plateau()
    model = torch.nn.Module()
    assert apply_warm_start(state, model, optimizer2, scheduler2, "reset") == 7
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(7.0e-4)
    assert scheduler2.num_bad_epochs == scheduler.num_bad_epochs and scheduler2.best == scheduler.best
