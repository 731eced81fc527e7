"""One-task batches (train.batching: one_task), the loop's hooks under them, equal heads, the
validation task metric and early stopping."""
import math

import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.batching import epoch_batches, every_task_plan, one_task_plan, only_own_task
from mtlrepro.data.base import Task
from mtlrepro.data.digits import ImageSplit
from mtlrepro.io import MTLReproError
from mtlrepro.methods.base import Weighting
from mtlrepro.models.base import HeadSpec
from mtlrepro.models.cnn import ConvNet
from mtlrepro.stages import install_heads
from mtlrepro.training import TrainConfig, fit, validation_score

NAN = float("nan")


def multi_input(sizes=(10, 4, 6), seed=0):
    """Rows of one task each (TweetEval's layout): task k's rows carry its label only."""
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    X = torch.randn(n, 1, 8, 8, generator=g)
    Y = torch.full((n, len(sizes)), NAN)
    start = 0
    for k, size in enumerate(sizes):
        rows = slice(start, start + size)
        Y[rows, k] = (X[rows, 0, :4].mean((1, 2)) > 0).float()
        start += size
    return ImageSplit(X, Y)


def test_one_task_plan_covers_each_tasks_rows_once_in_batches_of_one_task():
    split = multi_input()
    plan = one_task_plan(split.targets, torch.arange(len(split)), 3, torch.Generator().manual_seed(1))
    assert all(len(step) == 1 for step in plan)
    seen = {k: [] for k in range(3)}
    for [(k, rows)] in plan:
        assert len(rows) <= 3
        assert not torch.isnan(split.targets[rows, k]).any()  # the batch's rows are task k's
        seen[k] += rows.tolist()
    for k, size in enumerate((10, 4, 6)):
        assert sorted(seen[k]) == sorted(torch.nonzero(~torch.isnan(split.targets[:, k]))[:, 0].tolist())
        assert sum(1 for [(t, _)] in plan if t == k) == math.ceil(size / 3)  # drawn in proportion to size
    again = one_task_plan(split.targets, torch.arange(len(split)), 3, torch.Generator().manual_seed(1))
    assert [(k, r.tolist()) for [(k, r)] in plan] == [(k, r.tolist()) for [(k, r)] in again]
    other = one_task_plan(split.targets, torch.arange(len(split)), 3, torch.Generator().manual_seed(2))
    assert [(k, r.tolist()) for [(k, r)] in plan] != [(k, r.tolist()) for [(k, r)] in other]


def test_a_row_labelled_for_two_tasks_is_in_both_streams_with_one_label_each():
    """Single-input data (rotten-tomatoes): each task's batch carries that task's labels only."""
    targets = torch.tensor([[1.0, 0.0], [0.0, NAN], [1.0, 1.0], [0.0, 1.0]])
    split = ImageSplit(torch.randn(4, 1, 8, 8), targets)
    batches = list(epoch_batches(split, "one_task", 8, None, torch.Generator().manual_seed(0)))
    assert len(batches) == 2
    for _, y in batches:
        labelled = ~torch.isnan(y)
        assert labelled.any(0).sum() == 1  # one task per batch
    by_task = {int((~torch.isnan(y)).any(0).nonzero()): y for _, y in batches}
    assert sorted(by_task[0][:, 0].tolist()) == [0.0, 0.0, 1.0, 1.0]
    assert sorted(by_task[1][:, 1].tolist()) == [0.0, 1.0, 1.0]


def test_every_task_plan_is_libmtls_multi_input_step():
    split = multi_input()
    plan = every_task_plan(split.targets, torch.arange(len(split)), 3, torch.Generator().manual_seed(1))
    assert len(plan) == math.ceil(10 / 3)  # as many steps as the largest task has batches
    assert all([k for k, _ in step] == [0, 1, 2] for step in plan)
    small = [rows.tolist() for step in plan for k, rows in step if k == 1]
    assert sorted(small[0] + small[1]) == sorted(small[2] + small[3]) == list(range(10, 14))  # reshuffled pass
    assert len(plan) == 4 and all(len(rows) <= 3 for step in plan for _, rows in step)
    _, y = next(epoch_batches(split, "one_task", 3, None, torch.Generator().manual_seed(1), every_task=True))
    assert (~torch.isnan(y)).any(0).all()


def test_only_own_task_keeps_one_label_per_row():
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = only_own_task(y, torch.tensor([1, 0]))
    assert math.isnan(out[0, 0]) and out[0, 1] == 2.0 and out[1, 0] == 3.0 and math.isnan(out[1, 1])


class Spy(Weighting):
    """LS that records what the loop hands it."""

    name = "spy"

    def __init__(self, n_tasks, needs_every=False, **kw):
        super().__init__(n_tasks, **kw)
        self.needs_every_task = needs_every
        self.present = []

    def weights(self, losses):
        return torch.ones_like(losses)

    def combine_losses(self, losses, present=None):
        self.present.append(present.tolist())
        return losses.sum()


def _toy(tasks, head=None, seed=0):
    torch.manual_seed(seed)
    return ConvNet(tasks, channels=8, image_size=8).use_heads(head, tasks)


TASKS = [Task(f"t{k}", "binary", "accuracy") for k in range(3)]


def _cfg(**kw):
    base = dict(epochs=2, batch_size=3, lr=1e-2, weight_decay=0.0, scheduler={"name": "none"}, seed=0,
                batching="one_task")
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("needs_every", [False, True])
def test_the_loop_steps_on_the_plan_and_tells_the_method_which_tasks_are_present(needs_every):
    split = multi_input()
    spy = Spy(3, needs_every)
    fit(_toy(TASKS), spy, TASKS, split, split, _cfg(epochs=1), torch.device("cpu"))
    if needs_every:
        assert spy.present == [[True, True, True]] * math.ceil(10 / 3)
    else:
        assert len(spy.present) == math.ceil(10 / 3) + math.ceil(4 / 3) + math.ceil(6 / 3)
        assert all(sum(p) == 1 for p in spy.present)
        assert [sum(p[k] for p in spy.present) for k in range(3)] == [4, 2, 2]


def test_uw_leaves_an_absent_tasks_log_variance_alone():
    uw = registry.build("uw", 3)
    losses = torch.tensor([0.7, 0.0, 0.4], requires_grad=True)
    uw.combine_losses(losses, torch.tensor([True, False, True])).backward()
    assert uw.log_vars.grad[1] == 0.0
    assert torch.allclose(uw.log_vars.grad[[0, 2]], 0.5 - 0.5 * torch.tensor([0.7, 0.4]))


def test_epoch_losses_are_each_tasks_mean_over_its_own_steps():
    split = multi_input()
    result = fit(_toy(TASKS), registry.build("ls", 3), TASKS, split, split, _cfg(epochs=1, lr=0.0),
                 torch.device("cpu"))
    # lr 0: the model does not change, so each task's epoch loss is the mean of its batches' losses
    model = _toy(TASKS)
    model.train()
    from mtlrepro.training import derived_seed
    from mtlrepro.step import task_losses

    per_task = {k: [] for k in range(3)}
    for x, y in epoch_batches(split, "one_task", 3, None, torch.Generator().manual_seed(derived_seed(0, 0))):
        k = int((~torch.isnan(y)).any(0).nonzero())
        with torch.no_grad():
            per_task[k].append(float(task_losses(TASKS, model(x)[1], y)[k]))
    expected = [sum(v) / len(v) for v in per_task.values()]
    assert result.history[0]["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_representation_level_aggregation_is_refused_with_one_task_batches():
    split = multi_input()
    with pytest.raises(MTLReproError, match="level: parameters"):
        fit(_toy(TASKS), registry.build("pcgrad", 3), TASKS, split, split, _cfg(), torch.device("cpu"))
    # at parameter level it trains, on one batch of every task per step
    fit(_toy(TASKS), registry.build("pcgrad", 3, level="parameters"), TASKS, split, split, _cfg(epochs=1),
        torch.device("cpu"))


def test_infomtl_without_simax_and_timin_is_ew_with_equal_heads():
    """Table 4: with every method's heads equal (train.heads), InfoMTL without SIMax (alpha = 0)
    and without TIMin trains the same model as EW (ls), number for number."""
    split = multi_input(seed=3)
    head = HeadSpec(hidden_dim=None, dropout=0.2)
    runs = {}
    for name, hp in (("ls", {}), ("infomtl_no_timin", {"alpha": 0.0})):
        model = _toy(TASKS, head, seed=5)
        method = registry.build(name, 3, task_kinds=["binary"] * 3, generator=torch.Generator().manual_seed(9), **hp)
        install_heads(model, method, TASKS, head)
        torch.manual_seed(11)  # the heads' dropout draws from torch's RNG, as the encoder's would
        runs[name] = fit(model, method, TASKS, split, split, _cfg(epochs=3), torch.device("cpu"))
    a, b = runs["ls"], runs["infomtl_no_timin"]
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)
    # and the heads are the equal MLP with dropout, not linear
    assert isinstance(_toy(TASKS, head).heads[0][0], torch.nn.Dropout)
    # InfoMTL with TIMin keeps its own stochastic heads, shaped like the equal ones
    model = _toy(TASKS, head)
    install_heads(model, registry.build("infomtl", 3, task_kinds=["binary"] * 3), TASKS, head)
    assert model.heads[0].p_dropout == 0.2 and model.heads[0].mu[0].out_features == model.rep_dim


def test_primary_selection_scores_one_minus_the_task_metric():
    tasks = [Task("a", "binary", "f1"), Task("b", "multiclass", "macro_recall", n_classes=3)]
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 2.0], [0.0, 2.0]])
    binary = torch.tensor([[2.0], [1.0], [-1.0], [-2.0]])  # predicts 1, 1, 0, 0
    multi = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 3.0, 0], [0, 0, 3.0]])  # 0, 1, 1, 2
    f1 = 2 * 1 / (2 * 1 + 1 + 1)  # tp 1, fp 1, fn 1
    recall = (1 + 1 + 0.5) / 3
    assert validation_score(tasks, [binary, multi], y, "primary") == pytest.approx(
        ((1 - f1) + (1 - recall)) / 2)
    assert validation_score(tasks, [binary, multi], y) == pytest.approx((0.5 + 0.25) / 2)  # error rates


def test_early_stopping_stops_after_patience_epochs_without_a_better_score():
    split = multi_input()
    # lr 0: no epoch improves on the first, so training stops after 1 + patience epochs
    result = fit(_toy(TASKS), registry.build("ls", 3), TASKS, split, split,
                 _cfg(epochs=10, lr=0.0, early_stopping=2), torch.device("cpu"))
    assert result.best_epoch == 1 and len(result.history) == 3


def test_adamax_is_the_optimiser_when_asked():
    from mtlrepro.training import make_optimizer

    cfg = TrainConfig.from_params({"epochs": 1, "batch_size": 2, "lr": 5e-5, "weight_decay": 0.0,
                                   "scheduler": {"name": "none"}, "optimizer": "adamax"}, seed=0)
    assert isinstance(make_optimizer(_toy(TASKS), registry.build("ls", 3), cfg), torch.optim.Adamax)
    with pytest.raises(MTLReproError, match="train.batching"):
        TrainConfig.from_params({"epochs": 1, "batch_size": 2, "lr": 5e-5, "weight_decay": 0.0,
                                 "scheduler": {"name": "none"}, "batching": "by_task"}, seed=0)


def test_an_aggregator_defaults_to_the_shared_parameters_with_one_task_batches():
    from mtlrepro.training import build_method

    assert build_method("pcgrad", {}, TASKS, torch.Generator(), [1] * 3, "one_task").level == "parameters"
    assert build_method("pcgrad", {}, TASKS, torch.Generator(), [1] * 3).level == "representation"
    assert build_method("pcgrad", {"level": "representation"}, TASKS, torch.Generator(), [1] * 3,
                        "one_task").level == "representation"  # explicit: kept, and refused by fit and checks


def test_params_validation_refuses_representation_level_on_one_task_data():
    """The default params run rotten-tomatoes with one-task batches: PCGrad there defaults to the
    shared parameters; an explicit representation level, and BayesAgg-MTL (it has no other), stop
    validation with the key named."""
    import copy

    from mtlrepro import params as P
    from mtlrepro.checks import check_methods
    from mtlrepro.params import ParamsError
    from tests.conftest import REPO

    params = P.load(REPO / "params.yaml")
    assert params["dataset"]["rotten-tomatoes"]["train"]["batching"] == "one_task"
    params["studies"]["infomtl"]["methods"] = list(params["studies"]["infomtl"]["methods"]) + ["pcgrad"]
    check_methods(params)
    explicit = copy.deepcopy(params)
    explicit["method"]["pcgrad"] = {"level": "representation"}
    with pytest.raises(ParamsError, match="set method.pcgrad.level: parameters"):
        check_methods(explicit)
    params["studies"]["infomtl"]["methods"].append("bayesagg")
    params["studies"]["infomtl"]["pretrain"] = True  # BayesAgg-MTL's warm start
    with pytest.raises(ParamsError, match="bayesagg has no other level"):
        check_methods(params)
