"""Per-task test metrics: MAE/MSE for regression; accuracy, AUC, ECE (15 bins) and Brier score
for classification. Pure numpy functions of predictions and labels."""
from __future__ import annotations

import numpy as np

ECE_BINS = 15


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - target)))


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((pred - target) ** 2))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by bin mass."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def binary_metrics(prob: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """prob: P(y=1) per example; label in {0, 1}."""
    pred = (prob >= 0.5).astype(label.dtype)
    out = {"accuracy": float(np.mean(pred == label)),
           "brier": float(np.mean((prob - label) ** 2)),
           # calibration of the predicted class, as for a 2-class softmax
           "ece": expected_calibration_error(np.maximum(prob, 1 - prob), (pred == label).astype(float))}
    out["auc"] = roc_auc(prob, label)
    # class-balanced scores over the two classes (TweetEval, InfoMTL), and F1 of class 1
    hard, truth = pred.astype(int), label.astype(int)
    out["macro_f1"] = macro_f1(hard, truth, 2)
    out["macro_recall"] = macro_recall(hard, truth, 2)
    out["f1"] = class_f1(hard, truth, 1)
    return out


def multiclass_metrics(prob: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """prob: [N, C] class probabilities; label: [N] class indices."""
    label = label.astype(int)
    pred = prob.argmax(1)
    onehot = np.eye(prob.shape[1])[label]
    return {"accuracy": float(np.mean(pred == label)),
            "macro_f1": macro_f1(pred, label, prob.shape[1]),
            "macro_recall": macro_recall(pred, label, prob.shape[1]),
            "macro_f1_nonzero": macro_f1_nonzero(pred, label, prob.shape[1]),
            "brier": float(np.mean(np.sum((prob - onehot) ** 2, 1))),
            "ece": expected_calibration_error(prob.max(1), (pred == label).astype(float))}


def macro_f1(pred: np.ndarray, label: np.ndarray, n_classes: int) -> float:
    scores = []
    for c in range(n_classes):
        tp = np.sum((pred == c) & (label == c))
        fp = np.sum((pred == c) & (label != c))
        fn = np.sum((pred != c) & (label == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def macro_f1_nonzero(pred: np.ndarray, label: np.ndarray, n_classes: int) -> float:
    """Mean F1 of classes 1..C-1 that occur in pred or label, class 0 being a 'none' class:
    TweetEval's stance score (mean F1 of 'against' = 1 and 'favor' = 2)."""
    scores = [class_f1(pred, label, c) for c in range(1, n_classes)]
    scores = [v for v in scores if not np.isnan(v)]
    return float(np.mean(scores)) if scores else float("nan")


def class_f1(pred: np.ndarray, label: np.ndarray, positive: int = 1) -> float:
    """F1 of one class (TweetEval irony: the ironic class); NaN when it occurs in neither."""
    tp = np.sum((pred == positive) & (label == positive))
    fp = np.sum((pred == positive) & (label != positive))
    fn = np.sum((pred != positive) & (label == positive))
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan")


def macro_recall(pred: np.ndarray, label: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in label (SemEval-2017 sentiment's AvgRec)."""
    scores = [np.mean(pred[label == c] == c) for c in range(n_classes) if np.any(label == c)]
    return float(np.mean(scores)) if scores else float("nan")


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy.stats.rankdata's default)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return ((upper - counts + 1 + upper) / 2.0)[inverse]


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney form of the ROC AUC, ties counted half; NaN when one class is absent."""
    pos = label == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def task_metrics(kind: str, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """output: regression predictions in original units, binary P(y=1), or [N, C] probabilities."""
    keep = ~np.isnan(target)
    output, target = output[keep], target[keep]
    if kind == "regression":
        return {"mae": mae(output, target), "mse": mse(output, target)}
    if kind == "binary":
        return binary_metrics(output, target)
    if kind == "multiclass":
        return multiclass_metrics(output, target)
    raise ValueError(f"unknown task kind {kind!r}")
