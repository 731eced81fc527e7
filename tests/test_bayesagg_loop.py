"""BayesAgg-MTL inside the real training loop (`fit`) on real data: the first epoch's prior from
the LS warm-up, the full-data prior changing from epoch to epoch, a bit-identical resume."""
import pytest
import torch

from mtlrepro import params as P
from mtlrepro import stages
from mtlrepro.data import get as get_dataset
from mtlrepro.fingerprint import load_state
from mtlrepro.methods import _bayesagg_posterior as BP
from mtlrepro.methods.bayesagg import BayesAgg
from mtlrepro.training import TrainConfig, fit, method_generator, training_features
from tests.conftest import CI_PARAMS

CPU = torch.device("cpu")


class PriorRecorder(BayesAgg):
    """BayesAgg-MTL that keeps the prior its first step used and the prior and heads after every
    end_epoch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_step, self.epochs = None, []

    def aggregate(self, ctx):
        direction = super().aggregate(ctx)
        if self.first_step is None:  # the prior only changes at fit_prior / end_epoch
            self.first_step = {"version": self.prior_version, "prior": BP.clone_nested(self.prior)}
        return direction

    def end_epoch(self, mean_losses=None):
        super().end_epoch(mean_losses)
        self.epochs.append({"version": self.prior_version, "prior": BP.clone_nested(self.prior),
                            "heads": [(h.weight.detach().clone(), h.bias.detach().clone()) for h in self._heads]})


def _warm_fit(dataset, processed, pretrain_dir, hparams, epochs=None):
    """pretrain-LS (the CI params' warm-up) then BayesAgg-MTL through `fit` for the remaining
    epochs; returns (method, checkpoint, result, the pieces to recompute the first prior)."""
    params = P.load(CI_PARAMS)
    config = params["dataset"][dataset]
    if epochs is not None:
        config["train"]["epochs"] = epochs
    stages.pretrain(params, dataset, processed, 100, 0, pretrain_dir)
    ckpt = load_state(pretrain_dir / "checkpoint.pt", "pretrain checkpoint", CPU)
    spec = get_dataset(dataset)
    tasks = spec.tasks(config)
    train, val = (spec.load(config, processed, s) for s in ("train", "val"))
    torch.manual_seed(0)
    model = spec.build_model(config, tasks)
    method = PriorRecorder(len(tasks), [t.kind for t in tasks], generator=method_generator(0, CPU), **hparams)
    cfg = TrainConfig.from_params(config["train"], 0)
    result = fit(model, method, tasks, train, val, cfg, CPU, init_state=ckpt)
    return method, ckpt, result, (spec, config, tasks, train, cfg)


def _warm_start_posterior(ckpt, hparams, spec, config, tasks, train, cfg):
    """What the first prior must be: `full_data_posterior` called directly on the features of the
    pretrain-LS model on the training set (eval mode)."""
    model = spec.build_model(config, tasks)
    model.load_state_dict(ckpt["model"])
    model.eval()
    with torch.no_grad():
        H = torch.cat([model.encode(inputs) for inputs, _ in train.batches(cfg.batch_size)])
    T = train.targets
    features, targets = training_features(model.train(), train, None, cfg.batch_size)
    assert torch.equal(features, H) and torch.equal(targets, T) and model.training  # its mode restored
    return BayesAgg(len(tasks), [t.kind for t in tasks], **hparams).full_data_posterior(H, T, list(model.heads))


def test_first_prior_is_the_full_data_posterior_on_the_warm_start_features(digits_processed, tmp_path):
    hparams = {"mc_samples": 16, "prior_scale_classification": 1e-2}
    method, ckpt, _, pieces = _warm_fit("digits-mtl", digits_processed, tmp_path / "pre", hparams)
    expected = _warm_start_posterior(ckpt, hparams, *pieces)
    assert method.first_step["version"] == 1  # fit_prior ran once, before the first step
    for key in ("bin_mean", "bin_prec"):
        torch.testing.assert_close(method.first_step["prior"][key], expected[key], rtol=1e-12, atol=1e-12)
    assert bool(expected["bin_mean"].abs().sum() > 0)  # not the isotropic prior's zero mean


def test_without_the_option_the_first_prior_stays_isotropic(digits_processed, tmp_path):
    hparams = {"mc_samples": 16, "prior_scale_classification": 1e-2, "prior_from_warm_start": False}
    method, _, _, (_, _, tasks, _, _) = _warm_fit("digits-mtl", digits_processed, tmp_path / "pre", hparams)
    assert method.first_step["version"] == 0
    prior = method.first_step["prior"]
    D = prior["bin_mean"].shape[1]
    assert torch.equal(prior["bin_mean"], torch.zeros(len(tasks), D, dtype=prior["bin_mean"].dtype))
    eye = torch.eye(D, dtype=prior["bin_prec"].dtype) / 1e-2
    for j in range(len(tasks)):
        torch.testing.assert_close(prior["bin_prec"][j], eye)


def test_prior_from_warm_start_must_be_a_boolean():
    with pytest.raises(ValueError, match="prior_from_warm_start must be true or false"):
        BayesAgg(2, ["regression", "binary"], prior_from_warm_start="yes")


def test_qm9_full_data_prior_changes_every_epoch_and_sets_the_regression_heads(qm9_ci_processed, tmp_path):
    """Three BayesAgg-MTL epochs after a one-epoch LS warm-up on real molecules (11 regression tasks)."""
    method, _, result, (_, _, tasks, _, _) = _warm_fit("qm9", qm9_ci_processed, tmp_path / "pre", {}, epochs=4)
    assert [h["epoch"] for h in result.history] == [2, 3, 4]
    assert method.first_step["version"] == 1
    assert [e["version"] for e in method.epochs] == [2, 3, 4]
    means = [method.first_step["prior"]["reg_mean"]] + [e["prior"]["reg_mean"] for e in method.epochs]
    for before, after in zip(means, means[1:]):
        assert not torch.allclose(before, after)
    d = means[0].shape[1] - 1
    for epoch in method.epochs:  # the heads hold the full-data posterior mean after end_epoch
        for k, (weight, bias) in enumerate(epoch["heads"]):
            assert torch.equal(weight[0], epoch["prior"]["reg_mean"][k, :d].to(weight.dtype))
            assert torch.equal(bias, epoch["prior"]["reg_mean"][k, d:].to(bias.dtype))
    final = result.final_state["model"]
    for k in range(len(tasks)):
        assert torch.equal(final[f"heads.{k}.weight"], method.epochs[-1]["heads"][k][0])


def test_bayesagg_resumes_bit_identically_after_the_warm_start(digits_processed, tmp_path, monkeypatch):
    from mtlrepro.training import Interrupted

    params = P.load(CI_PARAMS)
    stages.pretrain(params, "digits-mtl", digits_processed, 100, 0, tmp_path / "pre")

    def train(name):
        stages.train(params, "digits-mtl", "bayesagg", digits_processed, tmp_path / "pre", 100, 0,
                     tmp_path / name, tmp_path / f"{name}.json")
        return torch.load(tmp_path / name / "model.pt", weights_only=True)["states"][0]

    full = train("full")
    monkeypatch.setenv("MTLREPRO_STOP_AFTER_EPOCH", "2")  # after the first BayesAgg-MTL epoch
    with pytest.raises(Interrupted):
        train("resumed")
    monkeypatch.delenv("MTLREPRO_STOP_AFTER_EPOCH")
    resumed = train("resumed")
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
