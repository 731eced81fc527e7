"""How tasks, metrics and the study's roles are shown: column labels, number styles, which
tasks are classification tasks, and the names of the Delta_m reference and the Delta_p baseline."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .. import params as P
from .. import published

CLASSIFICATION_KINDS = frozenset({"binary", "multiclass"})  # evaluation task kinds with ECE and Brier

# Metrics whose scale is unbounded (errors, losses): shown with 4 significant digits.
_ERROR_METRICS = {"mae", "mse", "rmse", "mape", "loss", "nll", "rel", "abs_rel", "rel_err",
                  "error", "err", "l1", "l2", "ce", "cross_entropy", "logloss"}
# Bounded scores for which an average over tasks is meaningful.
_SCORE_METRICS = {"accuracy", "acc", "auc", "roc_auc", "auroc", "ap", "auprc", "f1", "macro_f1",
                  "macro_recall", "macro_f1_nonzero",
                  "micro_f1", "precision", "recall", "balanced_accuracy", "miou", "iou"}
_METRIC_LABELS = {"mae": "MAE", "mse": "MSE", "rmse": "RMSE", "auc": "AUC", "roc_auc": "ROC-AUC",
                  "ap": "AP", "f1": "F1", "accuracy": "Acc.", "acc": "Acc.", "miou": "mIoU",
                  "macro_f1": "M-F1", "macro_recall": "M-Recall", "macro_f1_nonzero": "F1 (a.&f.)"}


@dataclass(frozen=True)
class Roles:
    """A study's reference (Delta_m: STL) and baseline (Delta_p: InfoMTL's EW, or None), with the
    names the papers give them in captions."""
    reference: str
    baseline: str | None = None

    @classmethod
    def of(cls, study: P.Study) -> "Roles":
        return cls(study.reference, study.baseline)

    @property
    def reference_name(self) -> str:
        return published.PAPER_NAMES.get(self.reference, self.reference)

    @property
    def baseline_name(self) -> str:
        if self.baseline is None:
            raise ValueError("this study has no Delta_p baseline")
        return published.INFOMTL_NAMES.get(self.baseline, self.baseline)


def metric_label(metric: str) -> str:
    return _METRIC_LABELS.get(metric.lower(), metric)


def task_label(info: Mapping) -> str:
    """A task's metric and, where its evaluation records one, the units of its errors: "MAE, meV"."""
    unit = info.get("unit")
    return f"{metric_label(info['primary'])}, {unit}" if unit else metric_label(info["primary"])


def metric_style(metric: str, kind: str | None) -> str:
    if kind == "regression" or metric.lower() in _ERROR_METRICS:
        return "sig4"
    return "fix3"


def common_direction(reference: dict) -> bool | None:
    """The tasks' shared direction (higher is better?), None when they differ."""
    dirs = {reference["tasks"][t]["higher_is_better"] for t in reference["task_order"]}
    return dirs.pop() if len(dirs) == 1 else None


def mean_score_style(reference: dict) -> str:
    styles = {metric_style(i["primary"], i.get("kind")) for i in reference["tasks"].values()}
    return "fix3" if styles == {"fix3"} else "sig4"


def average_meaningful(reference: dict, kinds: Mapping[str, str | None]) -> bool:
    """An average of the primary metric over tasks is shown in the main table only when every
    task is a classification task and all share one primary metric and direction."""
    infos = [reference["tasks"][t] for t in reference["task_order"]]
    if len({i["primary"] for i in infos}) != 1 or len({i["higher_is_better"] for i in infos}) != 1:
        return False
    task_kinds = [kinds.get(t) for t in reference["task_order"]]
    if all(k is not None for k in task_kinds):
        return all(k != "regression" for k in task_kinds)
    return infos[0]["primary"].lower() in _SCORE_METRICS


def task_kinds(reference: dict, evals: Mapping[str, list[dict]]) -> dict[str, str | None]:
    """Each task's kind as the evaluation files give it (the reference's where they do not)."""
    first = next(iter(evals.values()))[0]
    return {t: first["tasks"][t].get("kind") or reference["tasks"][t].get("kind")
            for t in reference["task_order"]}


def classification_tasks(kinds: Mapping[str, str | None]) -> list[str]:
    return [t for t, k in kinds.items() if k in CLASSIFICATION_KINDS]


def seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def seed_counts(groups) -> str:
    """'2' or '2/3': the distinct numbers of seeds behind a table's cells."""
    return "/".join(map(str, sorted({len(v) for v in groups})))
