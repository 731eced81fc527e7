"""Synthetic input trees for the report tests: evaluations, robustness runs, references and
training logs whose values are known in closed form, so each table's numbers can be computed
independently here."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mtlrepro import params as P
from mtlrepro import report
from mtlrepro.report.loader import eval_path, log_path, reference_path, robustness_path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Two datasets: all-regression (lower is better) and all-classification (higher is better); and
# txt, of InfoMTL's study (below), with one task of each direction and values from TXT_MEANS.
TASKS = {
    "reg": {"mu": ("regression", "mae", False, 0.5), "alpha": ("regression", "mae", False, 20.0)},
    "cls": {"t1": ("binary", "accuracy", True, 0.80), "t2": ("binary", "accuracy", True, 0.70)},
    "txt": {"sent": ("binary", "macro_f1", True, None), "err": ("regression", "mae", False, None)},
}
# Methods in the papers' (non-alphabetical) order.
METHODS = ["stl", "ls", "pcgrad", "bayesagg"]
# Multiplicative effect on the error (regression); the accuracy effect is its inverse.
FACTOR = {"stl": 1.0, "ls": 1.10, "pcgrad": 1.05, "bayesagg": 0.95}
SEEDS = [0, 1, 2]
FRACTIONS = [20, 60, 100]  # params list only [20, 60]: 100 (the main run) is always added
KINDS = ["gaussian", "fgsm"]
STRENGTHS = [0.1, 0.2]

# InfoMTL's study: txt's methods in study order (ls = EW) and its own data fractions.
TXT_METHODS = ["stl", "ls", "mt_vib", "infomtl"]
TXT_FRACTIONS = [40]
# Seed means of (sent macro-F1, higher is better; err MAE, lower is better) per (method, fraction);
# the seeds spread them symmetrically, so these are the exact seed means.
TXT_MEANS = {("stl", 100): (0.70, 2.0), ("ls", 100): (0.80, 1.0), ("mt_vib", 100): (0.72, 1.5),
             ("infomtl", 100): (0.88, 0.9), ("ls", 40): (0.60, 2.0), ("infomtl", 40): (0.66, 1.6)}

# Representation quality per run: seed mean UNIFORMITY[m] (spread +-0.1) and ARI[m] + 0.1 k for the
# k-th classification task (spread +-0.02).
UNIFORMITY = {"stl": -1.5, "ls": -1.8, "pcgrad": -1.9, "bayesagg": -2.0, "gls": -1.7, "nash_mtl": -1.6,
              "mt_vib": -1.9, "infomtl": -2.6}
ARI = {"stl": 0.05, "ls": 0.10, "pcgrad": 0.12, "bayesagg": 0.20, "gls": 0.08, "nash_mtl": 0.15,
       "mt_vib": 0.09, "infomtl": 0.40}


def representation(tasks, method, seed):
    classification = [t for t, spec in tasks.items() if spec[0] != "regression"]
    return {"uniformity": UNIFORMITY[method] + 0.1 * (seed - 1),
            "ari": {t: ARI[method] + 0.1 * k + 0.02 * (seed - 1) for k, t in enumerate(classification)}}


def metric_value(ds, method, fraction, seed, task):
    if ds == "txt":
        sent, err = TXT_MEANS[(method, fraction)]
        return sent * (1 + 0.01 * (seed - 1)) if task == "sent" else err * (1 - 0.02 * (seed - 1))
    kind, _, hib, base = TASKS[ds][task]
    data_penalty = 1 + (100 - fraction) / 200
    noise = 1 + 0.01 * (seed - 1) * (1 if task in ("mu", "t1") else -1)
    if hib:
        return base / FACTOR[method] / data_penalty * noise
    return base * FACTOR[method] * data_penalty * noise


def perturbed(ds, method, seed, kind, strength, task):
    hib = TASKS[ds][task][2]
    clean = metric_value(ds, method, 100, seed, task)
    k = {"gaussian": 1.0, "fgsm": 2.0}[kind] * (1.5 if method == "ls" else 1.0)
    return clean * (1 - k * strength) if hib else clean * (1 + k * strength)


def eval_doc(ds, method, fraction, seed):
    tasks = {}
    for task, (kind, primary, hib, _) in TASKS[ds].items():
        value = metric_value(ds, method, fraction, seed, task)
        metrics = {primary: value, "mse": value ** 2} if kind == "regression" else \
            {"accuracy": value, primary: value, "auc": min(1.0, value + 0.1), "ece": 0.01, "brier": 0.02}
        tasks[task] = {"kind": kind, "primary": primary, "higher_is_better": hib, "metrics": metrics}
    return {"dataset": ds, "method": method, "seed": seed, "fraction": fraction, "tasks": tasks,
            "task_order": list(TASKS[ds]), "representation": representation(TASKS[ds], method, seed)}


def rob_doc(ds, method, seed):
    return {"dataset": ds, "method": method, "seed": seed, "task_order": list(TASKS[ds]),
            "tasks": {t: {"primary": p, "higher_is_better": h} for t, (_, p, h, _) in TASKS[ds].items()},
            "perturbations": {kind: [{"strength": s, "values": {t: perturbed(ds, method, seed, kind, s, t)
                                                                for t in TASKS[ds]}}
                                     for s in [0.0] + STRENGTHS] for kind in KINDS}}


def shared_ablations() -> dict:
    return {"data_fraction": {"seed": 97},
            "robustness": {"kinds": list(KINDS), "strengths": list(STRENGTHS), "seed": 5}}


def make_params(df_methods=("bayesagg", "ls"), rob_methods=("bayesagg", "ls"), fractions=(20, 60)) -> dict:
    """One study, "main": reg and cls x METHODS (no Delta_p baseline)."""
    main = {"datasets": ["reg", "cls"], "methods": list(METHODS), "ablations": {
        "data_fraction": {"fractions": list(fractions), "methods": list(df_methods)},
        "robustness": {"methods": list(rob_methods)}}}
    return {"seeds": list(SEEDS), "studies": {"main": main}, "ablations": shared_ablations()}


def infomtl_params(rob_methods=("infomtl", "ls")) -> dict:
    """make_params' "main" study plus InfoMTL's, "info": txt x TXT_METHODS against EW (ls)."""
    params = make_params()
    params["studies"]["info"] = {"datasets": ["txt"], "methods": list(TXT_METHODS), "baseline": "ls",
                                 "pretrain": False, "ablations": {
                                     "data_fraction": {"fractions": list(TXT_FRACTIONS), "methods": ["infomtl", "ls"]},
                                     "robustness": {"methods": list(rob_methods)}}}
    return params


def dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def build_references(d: dict, datasets, method: str = "stl") -> None:
    for ds in datasets:
        report.build_reference([eval_path(d["eval"], ds, method, 100, s) for s in SEEDS],
                               reference_path(d["ref"], ds), method=method)


def outputs(root: Path) -> dict:
    return {"tables": root / "reports" / "tables", "figures": root / "reports" / "figures",
            "summary": root / "reports" / "metrics.json"}


def build_tree(root: Path) -> dict:
    """reg and cls: every method at every fraction, robustness runs, references built."""
    d = {"params": make_params(), "study": "main", "eval": root / "eval", "rob": root / "robustness",
         "ref": root / "reference", "logs": None, **outputs(root)}
    for ds in ("reg", "cls"):
        for m in METHODS:
            for s in SEEDS:
                for f in FRACTIONS:
                    dump(eval_path(d["eval"], ds, m, f, s), eval_doc(ds, m, f, s))
                dump(robustness_path(d["rob"], ds, m, s), rob_doc(ds, m, s))
    build_references(d, ("reg", "cls"))
    return d


def add_txt(d: dict) -> dict:
    """txt's evaluations (100 % and its data fractions), robustness runs and reference; the
    params of both studies, "info" selected."""
    for (m, f) in TXT_MEANS:
        for s in SEEDS:
            dump(eval_path(d["eval"], "txt", m, f, s), eval_doc("txt", m, f, s))
    for m in ("ls", "infomtl"):
        for s in SEEDS:
            dump(robustness_path(d["rob"], "txt", m, s), rob_doc("txt", m, s))
    build_references(d, ("txt",))
    return {**d, "params": infomtl_params(), "study": "info"}


def study_of(d: dict) -> P.Study:
    return P.study(d["params"], d["study"])


def run(d: dict, params: dict | None = None) -> dict:
    """The study's report; returns the summary it wrote."""
    d = {**d, "params": params or d["params"]}
    report.write_study(d["params"], study_of(d), d["eval"], d["rob"], d["ref"], d["logs"], d["tables"],
                       d["figures"], d["summary"])
    return json.loads(d["summary"].read_text())


def fresh_outputs(d: dict, tmp_path: Path) -> dict:
    """The tree's inputs with output folders of its own under tmp_path."""
    return {**d, "tables": tmp_path / "tables", "figures": tmp_path / "figures", "summary": tmp_path / "m.json"}


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def all_outputs(d):
    return [p for root in (d["tables"], d["figures"]) if root.exists() for p in root.rglob("*")] + \
        ([d["summary"]] if d["summary"].exists() else [])


def expected_delta(ds, method, fraction):
    """Delta_m per seed against the 100 % STL reference, from the closed-form values."""
    tasks = TASKS[ds]
    ref = {t: np.mean([metric_value(ds, "stl", 100, s, t) for s in SEEDS]) for t in tasks}
    per_seed = []
    for s in SEEDS:
        terms = [(-1 if tasks[t][2] else 1) * (metric_value(ds, method, fraction, s, t) - ref[t]) / ref[t]
                 for t in tasks]
        per_seed.append(100 * np.mean(terms))
    return np.array(per_seed)


@pytest.fixture
def tree(tmp_path):
    """A full synthetic input tree of the "main" study with the STL references built."""
    return build_tree(tmp_path)


@pytest.fixture(scope="module")
def info_tree(tmp_path_factory):
    """`tree`'s inputs plus txt's, the "info" study's report written once for read-only tests."""
    d = add_txt(build_tree(tmp_path_factory.mktemp("infomtl")))
    run(d)
    return d


# ======================================================================= calibration, task weights,
# published comparison: a second synthetic study whose datasets have published counterparts.

STUDY_TASKS = {
    "qm9": {"mu": ("regression", "mae", False, 0.5), "alpha": ("regression", "mae", False, 20.0)},
    "digits-mtl": {"is_0": ("binary", "accuracy", True, 0.96), "is_1": ("binary", "accuracy", True, 0.92),
                   "is_2": ("binary", "accuracy", True, 0.90)},
}
# study order; gls has no published number, and the papers' other methods are not run here
STUDY_METHODS = ["stl", "ls", "gls", "nash_mtl", "bayesagg"]
STUDY_FACTOR = {"stl": 1.0, "ls": 1.10, "gls": 1.02, "nash_mtl": 0.97, "bayesagg": 0.95}
# calibration: bayesagg has the lowest ECE, nash_mtl the lowest Brier score
ECE_SCALE = {"stl": 1.0, "ls": 1.3, "gls": 1.1, "nash_mtl": 0.9, "bayesagg": 0.5}
BRIER_SCALE = {"stl": 1.0, "ls": 1.2, "gls": 1.05, "nash_mtl": 0.6, "bayesagg": 0.8}
WEIGHT_EPOCHS = [6, 10, 15]
N_PROBE, N_DIMS = 3, 4


def study_value(ds, method, seed, task):
    kind, _, hib, base = STUDY_TASKS[ds][task]
    noise = 1 + 0.01 * (seed - 1) * (1 if task in ("mu", "is_0") else -1)
    return base / STUDY_FACTOR[method] * noise if hib else base * STUDY_FACTOR[method] * noise


def study_ece(method, seed, k):
    return 0.02 * ECE_SCALE[method] * (1 + 0.1 * seed) * (1 + 0.05 * k)


def study_brier(method, seed, k):
    return 0.05 * BRIER_SCALE[method] + 0.003 * seed + 0.001 * k


def study_eval(ds, method, seed):
    tasks = {}
    for k, (task, (kind, primary, hib, _)) in enumerate(STUDY_TASKS[ds].items()):
        value = study_value(ds, method, seed, task)
        metrics = {primary: value, "mse": value ** 2} if kind == "regression" else \
            {primary: value, "ece": study_ece(method, seed, k), "brier": study_brier(method, seed, k),
             "auc": float("nan")}  # an unused secondary metric may be NaN
        tasks[task] = {"kind": kind, "primary": primary, "higher_is_better": hib, "metrics": metrics}
    return {"dataset": ds, "method": method, "seed": seed, "fraction": 100, "tasks": tasks,
            "task_order": list(STUDY_TASKS[ds]), "representation": representation(STUDY_TASKS[ds], method, seed)}


def per_dimension_weights(ds, seed, epoch):
    k = len(STUDY_TASKS[ds])
    rng = np.random.default_rng([seed, epoch, k])
    raw = rng.random((k, N_PROBE, N_DIMS)) + 0.05
    return (raw / raw.sum(0, keepdims=True)).tolist()  # alpha sums to 1 over tasks, per dimension


def study_log(ds, method, seed):
    tasks = list(STUDY_TASKS[ds])
    k = len(tasks)
    epochs = list(range(1, 16))
    curve = [{"epoch": e, "train_loss": [1.0] * k, "val_score": 1 / e + 0.01 * seed, "lr": 1e-3} for e in epochs]
    if method == "stl":
        history, method_log = {t: curve for t in tasks}, []
    elif method == "bayesagg":
        history = curve
        method_log = [{"epoch": e, "kind": "per_dimension", "weights": per_dimension_weights(ds, seed, e)}
                      for e in WEIGHT_EPOCHS]
    elif method == "gls":  # per_task, but not a flat [K] vector: no panel
        history = curve
        method_log = [{"epoch": e, "kind": "per_task", "weights": [[1.0, 2.0]] * k} for e in WEIGHT_EPOCHS]
    else:  # ls, nash_mtl: flat [K] per_task weights
        history = curve
        method_log = [{"epoch": e, "kind": "per_task", "weights": [1.0 + 0.1 * j + 0.01 * e for j in range(k)]}
                      for e in WEIGHT_EPOCHS]
    return {"dataset": ds, "method": method, "fraction": 100, "seed": seed, "tasks": tasks, "best_epoch": 15,
            "history": history, "method_log": method_log, "wall_time_s": 1.0}


def study_params(methods=STUDY_METHODS) -> dict:
    """The "bayesagg" study (published key "bayesagg": qm9 -> QM9, digits-mtl -> CIFAR-MTL), no ablations."""
    return {"seeds": list(SEEDS), "ablations": shared_ablations(),
            "studies": {"bayesagg": {"datasets": ["qm9", "digits-mtl"], "methods": list(methods),
                                     "published": "bayesagg"}},
            "dataset": {"qm9": {"source": {"kind": "embedded", "path": None},
                                "split": {"train": 600, "val": 200, "test": 400}},
                        "digits-mtl": {"source": {"kind": "embedded"}, "split": {"val": 0.15, "test": 0.25}}}}


def build_study(root: Path) -> dict:
    """The second study's evaluations, logs and references (no ablation runs)."""
    d = {"params": study_params(), "study": "bayesagg", "eval": root / "eval", "rob": root / "robustness",
         "ref": root / "reference", "logs": root / "logs", **outputs(root)}
    for ds in STUDY_TASKS:
        for m in STUDY_METHODS:
            for s in SEEDS:
                dump(eval_path(d["eval"], ds, m, 100, s), study_eval(ds, m, s))
                dump(log_path(d["logs"], ds, m, s), study_log(ds, m, s))
    build_references(d, STUDY_TASKS)
    return d


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The second study's report, written once (with its logs) for the read-only tests."""
    d = build_study(tmp_path_factory.mktemp("study"))
    run(d)
    return d
