"""The methods' task weights from the training logs (BayesAgg-MTL's Figure 3), from the logs of
the study's first seed: BayesAgg-MTL's ``per_dimension`` weights [K][P][d] averaged over the P
probe examples and drawn as one tasks x dimensions heat map per logged epoch on a shared colour
scale; ``per_task`` weights that are a flat [K] vector drawn as lines over the logged epochs
(other shapes are skipped)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..io import MTLReproError, sha256_file
from .figures import figure, save
from .loader import number


def _numeric_array(value: Any, where: str, path: Path) -> np.ndarray | None:
    """`value` (nested lists of finite numbers) as a float array; None when it is ragged.
    Raises MTLReproError naming `path` for anything that is not a finite number."""
    stack = [(value, where)]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, list):
            stack.extend((v, f"{loc}[{j}]") for j, v in enumerate(item))
        else:
            number(item, loc, path)
    try:
        return np.asarray(value, dtype=float)
    except ValueError:
        return None


@dataclass
class WeightPanels:
    """BayesAgg-MTL's per-dimension weights of one log: [K, d] per logged epoch (probe mean)."""
    tasks: list[str]
    epochs: list[int]
    weights: list[np.ndarray]   # [K, d] each: mean over the probe examples
    n_probe: list[int]


def per_dimension_panels(log: dict) -> WeightPanels | None:
    """The ``per_dimension`` entries of a log's method_log, each ``[K][P][d]`` averaged over its
    P probe examples; None when there are none."""
    path = log["path"]
    panels = WeightPanels(tasks=list(log.get("tasks") or []), epochs=[], weights=[], n_probe=[])
    for i, entry in enumerate(log["method_log"]):
        if entry["kind"] != "per_dimension":
            continue
        where = f"method_log[{i}].weights"
        w = _numeric_array(entry["weights"], where, path)
        k = len(panels.tasks)
        if w is None or w.ndim != 3 or w.shape[0] != k or 0 in w.shape:
            shape = "ragged" if w is None else list(w.shape)
            raise MTLReproError(f"{path}: {where} (epoch {int(entry['epoch'])}, per_dimension) must be "
                                f"[K][P][d] with K = {k} tasks {panels.tasks}; got shape {shape}")
        if panels.weights and w.shape[2] != panels.weights[0].shape[1]:
            raise MTLReproError(f"{path}: {where} has {w.shape[2]} dimensions but the first "
                                f"per_dimension entry has {panels.weights[0].shape[1]}")
        panels.epochs.append(int(entry["epoch"]))
        panels.weights.append(w.mean(axis=1))
        panels.n_probe.append(int(w.shape[1]))
    return panels if panels.epochs else None


def per_task_series(log: dict) -> tuple[list[int], np.ndarray] | None:
    """The ``per_task`` entries of a log whose weights are a flat [K] vector, as (epochs, [E, K]);
    None when there are none.  Entries of other shapes are skipped."""
    path = log["path"]
    k = len(log.get("tasks") or [])
    epochs, rows = [], []
    for i, entry in enumerate(log["method_log"]):
        if entry["kind"] != "per_task":
            continue
        w = _numeric_array(entry["weights"], f"method_log[{i}].weights", path)
        if w is not None and w.ndim == 1 and w.shape[0] == k:
            epochs.append(int(entry["epoch"]))
            rows.append(w)
    return (epochs, np.stack(rows)) if rows else None


def weight_figures(ds: str, seed: int, logs: Mapping[str, list[dict]]
                   ) -> list[tuple[str, Callable[[Path], None], dict[str, str]]]:
    """(file name, draw(path), inputs) of one dataset's task-weight figures from each method's
    log of `seed` (the first of its runs in `logs`): ``<ds>_<method>_weights.png`` per method
    whose log has per_dimension weights, ``<ds>_task_weights.png`` for the methods whose log has
    flat per_task weights (none when no method has)."""
    out = []
    series: dict[str, tuple[list[int], np.ndarray, list[str]]] = {}
    series_inputs: dict[str, str] = {}
    for method, runs in logs.items():
        log = runs[0]
        inputs = {str(log["path"]): sha256_file(log["path"])}
        panels = per_dimension_panels(log)
        if panels is not None:
            out.append((f"{ds}_{method}_weights.png",
                        lambda p, m=method, pn=panels: plot_weight_heatmaps(ds, m, seed, pn, p), inputs))
        flat = per_task_series(log)
        if flat is not None:
            series[method] = (flat[0], flat[1], list(log["tasks"]))
            series_inputs.update(inputs)
    if series:
        out.append((f"{ds}_task_weights.png", lambda p: plot_task_weights(ds, seed, series, p), series_inputs))
    return out


def plot_weight_heatmaps(ds: str, method: str, seed: int, panels: WeightPanels, path: Path) -> None:
    n = len(panels.epochs)
    k, d = panels.weights[0].shape
    vmin = float(min(w.min() for w in panels.weights))
    vmax = float(max(w.max() for w in panels.weights))
    if vmax == vmin:
        vmax = vmin + 1e-9
    fig, axes = figure(1, n, min(3.6 * n + 1.6, 22.0), max(3.0, 0.3 * k + 2.0))
    image = None
    for j, (ax, epoch, w) in enumerate(zip(axes[0], panels.epochs, panels.weights)):
        image = ax.imshow(w, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"epoch {epoch}", fontsize="medium")
        ax.set_xlabel("representation dimension")
        ax.set_yticks(range(k), panels.tasks if j == 0 else [""] * k, fontsize="small")
    fig.colorbar(image, ax=list(axes[0]), label="task weight α")
    probes = "/".join(str(p) for p in sorted(set(panels.n_probe)))
    fig.suptitle(f"{ds}: {method} per-dimension task weights (mean over {probes} probe examples), "
                 f"seed {seed}, {d} dimensions", fontsize="medium")
    save(fig, path)


def plot_task_weights(ds: str, seed: int, series: Mapping[str, tuple[list[int], np.ndarray, Sequence[str]]],
                      path: Path) -> None:
    n = len(series)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = figure(nrows, ncols, 4.4 * ncols + 0.6, 3.2 * nrows + 0.6)
    for idx, (method, (epochs, weights, tasks)) in enumerate(series.items()):
        ax = axes[idx // ncols][idx % ncols]
        for k, task in enumerate(tasks):
            ax.plot(epochs, weights[:, k], marker="o", markersize=3, label=task)
        ax.set_title(method, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.set_ylabel("task weight")
        ax.set_xticks(sorted(set(epochs)))
        ax.legend(fontsize="x-small", ncol=2 if len(tasks) > 6 else 1)
    for idx in range(n, nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    fig.suptitle(f"{ds}: task weights at the logged epochs, seed {seed}", fontsize="medium")
    save(fig, path)
