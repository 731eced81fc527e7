"""The training loop's protocol options: gradient-norm clipping (`train.clip_grad_norm`) and the
warm start's Adam state (`train.warm_start_optimizer`)."""
import copy

import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.data import get as get_dataset
from mtlrepro.fingerprint import load_state
from mtlrepro.grad_clip import GradClip, group_grad_norm
from mtlrepro.io import MTLReproError
from mtlrepro.methods.ls import LinearScalarization
from mtlrepro.training import TrainConfig, build_method, fit, make_optimizer, make_scheduler, method_generator
from mtlrepro.step import training_step
from mtlrepro.warm_start import apply_warm_start
from tests.conftest import CI_PARAMS

CPU = torch.device("cpu")


def _digits(digits_processed):
    params = P.load(CI_PARAMS)
    spec, config = get_dataset("digits-mtl"), params["dataset"]["digits-mtl"]
    tasks = spec.tasks(config)
    train, val = (spec.load(config, digits_processed, s) for s in ("train", "val"))
    return spec, config, tasks, train, val


class GradientRecorder:
    """An optimiser stand-in that keeps the gradients it is handed at `step` and applies none."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)

    def step(self):
        self.grads = {n: p.grad.clone() for n, p in self.model.named_parameters() if p.grad is not None}


def _step_gradients(model, method_name, hparams, tasks, inputs, targets, clip):
    """The gradients the optimiser would apply after one training step (the method rebuilt with
    the same seeded generator, so the random methods repeat their draws)."""
    model = copy.deepcopy(model)
    method = build_method(method_name, hparams, tasks, method_generator(0, CPU), [1] * len(tasks))
    recorder = GradientRecorder(model)
    training_step(model, method, tasks, inputs, targets, recorder, clip)
    return model, recorder.grads


def _group_norms(model, grads):
    heads = {f"heads.{n}" for n, _ in model.heads.named_parameters()}
    shared = [g for n, g in grads.items() if n not in heads]
    head = [g for n, g in grads.items() if n in heads]
    return {"shared": float(torch.cat([g.reshape(-1) for g in shared]).norm()),
            "heads": float(torch.cat([g.reshape(-1) for g in head]).norm())}


@pytest.mark.parametrize("method_name, hparams", [
    ("ls", {}), ("pcgrad", {}), ("mgda", {"level": "parameters"}), ("bayesagg", {"mc_samples": 16})])
def test_clipping_bounds_each_group_norm_after_the_methods_backward(digits_processed, method_name, hparams):
    spec, config, tasks, train, _ = _digits(digits_processed)
    inputs, targets = train.batch(torch.arange(64))
    torch.manual_seed(0)
    model = spec.build_model(config, tasks).eval()  # eval: batch-norm statistics do not move
    _, free = _step_gradients(model, method_name, hparams, tasks, inputs, targets, None)
    free_norms = _group_norms(model, free)
    limits = GradClip(shared=free_norms["shared"] / 4, heads=free_norms["heads"] / 3)  # both bind
    clipped_model, clipped = _step_gradients(model, method_name, hparams, tasks, inputs, targets, limits)
    norms = _group_norms(model, clipped)
    assert norms["shared"] <= limits.shared and norms["heads"] <= limits.heads
    assert norms["shared"] == pytest.approx(limits.shared, rel=1e-4)  # torch divides by norm + 1e-6
    assert norms["heads"] == pytest.approx(limits.heads, rel=1e-4)
    assert group_grad_norm(clipped_model.shared_parameters()) == pytest.approx(norms["shared"], rel=1e-6)
    heads = {f"heads.{n}" for n, _ in model.heads.named_parameters()}
    for name, g in clipped.items():  # a rescaling: every gradient keeps its direction
        scale = limits.heads / free_norms["heads"] if name in heads else limits.shared / free_norms["shared"]
        torch.testing.assert_close(g, free[name] * scale, rtol=1e-4, atol=1e-7)


def test_one_clipped_group_leaves_the_other_alone(digits_processed):
    spec, config, tasks, train, _ = _digits(digits_processed)
    inputs, targets = train.batch(torch.arange(64))
    torch.manual_seed(0)
    model = spec.build_model(config, tasks).eval()
    _, free = _step_gradients(model, "ls", {}, tasks, inputs, targets, None)
    _, clipped = _step_gradients(model, "ls", {}, tasks, inputs, targets, GradClip(heads=1e-4))
    for name, g in clipped.items():
        if not name.startswith("heads."):
            assert torch.equal(g, free[name]), name
    assert _group_norms(model, clipped)["heads"] <= 1e-4


def _fit_ls(digits_processed, train_block_update):
    spec, config, tasks, train, val = _digits(digits_processed)
    block = {**config["train"], "epochs": 2, **train_block_update}
    torch.manual_seed(0)
    model = spec.build_model(config, tasks)
    result = fit(model, LinearScalarization(len(tasks)), tasks, train, val,
                 TrainConfig.from_params(block, 0), CPU)
    return result.final_state["model"]


def test_null_limits_change_nothing_bit_for_bit(digits_processed):
    without = _fit_ls(digits_processed, {})
    with_nulls = _fit_ls(digits_processed, {"clip_grad_norm": {"shared": None, "heads": None}})
    assert all(torch.equal(without[k], with_nulls[k]) for k in without)
    clipped = _fit_ls(digits_processed, {"clip_grad_norm": {"shared": 1e-3, "heads": None}})
    assert not all(torch.equal(without[k], clipped[k]) for k in without)


@pytest.mark.parametrize("block, fragment", [
    ({"shared": -1.0}, "train.clip_grad_norm.shared must be a number > 0 or null"),
    ({"heads": "big"}, "train.clip_grad_norm.heads"),
    ({"head": 5.0}, "unknown key(s) ['head']"),
    (5.0, "train.clip_grad_norm must be a mapping"),
])
def test_bad_clip_limits_name_the_key(block, fragment):
    with pytest.raises(MTLReproError) as err:
        GradClip.from_params(block)
    assert fragment in str(err.value)


def test_bad_warm_start_optimizer_names_the_key():
    train = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "scheduler": {"name": "none"},
             "warm_start_optimizer": "kept"}
    with pytest.raises(MTLReproError, match=r"train.warm_start_optimizer must be one of \['keep', 'reset'\]"):
        TrainConfig.from_params(train, 0)


# ------------------------------------------------------------------------------------------------ warm start


class FreezesFirstHead(LinearScalarization):
    """LS that does not optimise task 0's head: its optimiser covers fewer parameters than LS's."""
    name = ""

    def learns_head(self, k):
        return k != 0


@pytest.fixture(scope="module")
def pretrain_checkpoint(digits_processed, tmp_path_factory):
    out = tmp_path_factory.mktemp("warm") / "pretrain"
    stages.pretrain(P.load(CI_PARAMS), "digits-mtl", digits_processed, 100, 0, out)
    return load_state(out / "checkpoint.pt", "pretrain checkpoint", CPU)  # weights_only=True


def _saved_moments(ckpt):
    names = [n for row in ckpt["optimizer_parameter_names"] for n in row]
    indices = [i for g in ckpt["optimizer"]["param_groups"] for i in g["params"]]
    return {n: ckpt["optimizer"]["state"][i] for n, i in zip(names, indices)}


def _warm_started(digits_processed, ckpt, policy):
    spec, config, tasks, _, _ = _digits(digits_processed)
    model = spec.build_model(config, tasks)
    method = FreezesFirstHead(len(tasks))
    cfg = TrainConfig.from_params({**config["train"], "warm_start_optimizer": policy}, 0)
    optimizer = make_optimizer(model, method, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    epoch = apply_warm_start(ckpt, model, optimizer, scheduler, cfg.warm_start_optimizer)
    assert epoch == ckpt["epoch"]
    assert optimizer.param_groups[0]["lr"] == scheduler.get_last_lr()[0]  # the schedule's place, either way
    return model, optimizer


def test_keep_loads_the_pretrain_adam_moments_by_name(digits_processed, pretrain_checkpoint):
    model, optimizer = _warm_started(digits_processed, pretrain_checkpoint, "keep")
    saved = _saved_moments(pretrain_checkpoint)
    assert set(saved) == {n for n, _ in model.named_parameters()}  # LS optimised every parameter
    for name, p in model.named_parameters():
        if name.startswith("heads.0."):  # not in this method's optimiser
            assert p not in optimizer.state
            continue
        state = optimizer.state[p]
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state[key], saved[name][key]), (name, key)
        assert bool(state["exp_avg"].abs().sum() > 0)


def test_reset_starts_from_fresh_moments(digits_processed, pretrain_checkpoint):
    model, optimizer = _warm_started(digits_processed, pretrain_checkpoint, "reset")
    assert len(optimizer.state) == 0
    # and the model's weights are the checkpoint's under both policies
    for name, value in model.state_dict().items():
        assert torch.equal(value, pretrain_checkpoint["model"][name]), name


def test_keep_refuses_a_checkpoint_without_parameter_names(digits_processed, pretrain_checkpoint):
    old = {k: v for k, v in pretrain_checkpoint.items() if k != "optimizer_parameter_names"}
    with pytest.raises(MTLReproError, match="re-run pretrain"):
        _warm_started(digits_processed, old, "keep")


def test_data_fractions_are_drawn_per_training_seed_and_nested():
    """InfoMTL's Table 6: each seed its own random subset; within a seed 20% lies inside 40%;
    per_seed: false keeps one subset for every seed."""
    from mtlrepro.stages.fit import _train_indices

    params = {"ablations": {"data_fraction": {"seed": 97, "per_seed": True}}}
    subsets = {(s, f): set(_train_indices(params, 500, f, s).tolist()) for s in (0, 1) for f in (20, 40)}
    assert subsets[(0, 20)] != subsets[(1, 20)]
    assert all(subsets[(s, 20)] <= subsets[(s, 40)] for s in (0, 1))
    assert len(subsets[(0, 20)]) == 100 and len(subsets[(0, 40)]) == 200
    params["ablations"]["data_fraction"]["per_seed"] = False
    assert _train_indices(params, 500, 20, 0).tolist() == _train_indices(params, 500, 20, 1).tolist()
    assert _train_indices(params, 500, 100, 3).tolist() == list(range(500))
