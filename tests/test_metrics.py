import numpy as np
import pytest

from mtlrepro import metrics


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    score = rng.random(60).round(1)  # ties on purpose
    label = (rng.random(60) < 0.4).astype(float)
    pos, neg = score[label == 1], score[label == 0]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert metrics.roc_auc(score, label) == pytest.approx(pairs)
    assert np.isnan(metrics.roc_auc(score, np.ones(60)))


def test_ece_hand_computed():
    # two bins used: confidence 0.95 (accuracy 1/2) and 0.55 (accuracy 1)
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1.0, 0.0, 1.0, 1.0])
    assert metrics.expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    assert metrics.expected_calibration_error(np.ones(5), np.ones(5)) == 0.0


def test_binary_metrics():
    prob = np.array([0.9, 0.2, 0.6, 0.4])
    label = np.array([1.0, 0.0, 0.0, 1.0])
    out = metrics.binary_metrics(prob, label)
    assert out["accuracy"] == 0.5
    assert out["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.36, 0.36]))
    assert out["auc"] == pytest.approx(0.75)


def test_multiclass_metrics_and_macro_f1():
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    label = np.array([0, 1, 1, 2])
    out = metrics.multiclass_metrics(prob, label)
    assert out["accuracy"] == 0.5
    # per class F1: c0 tp1 fp1 fn0 -> 2/3; c1 tp1 fp0 fn1 -> 2/3; c2 tp0 fp1 fn1 -> 0
    assert out["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_regression_ignores_missing_labels():
    out = metrics.task_metrics("regression", np.array([1.0, 2.0, 5.0]), np.array([1.5, np.nan, 4.0]))
    assert out["mae"] == pytest.approx(0.75) and out["mse"] == pytest.approx((0.25 + 1) / 2)


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    values = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 0.5, 2.0])
    assert np.allclose(metrics.average_ranks(values), rankdata(values))
