"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no
global backend switch): Delta_m per method, the ablations' curves (mean +- std over seeds) and the
validation curves of the training logs."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .naming import Roles
from .table import Stat, Table


def figure(nrows: int, ncols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=120)


def plot_delta_m(ds: str, roles: Roles, stats: Mapping[str, Stat], path: Path) -> None:
    methods = list(stats)
    fig, axes = figure(1, 1, max(5.5, 0.6 * len(methods) + 1.5), 3.8)
    ax = axes[0][0]
    means = [stats[m].mean for m in methods]
    stds = [stats[m].std for m in methods]
    colors = ["0.6" if m == roles.reference else ("tab:red" if v > 0 else "tab:blue")
              for m, v in zip(methods, means)]
    ax.bar(range(len(methods)), means, yerr=stds, capsize=3, color=colors)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
    ax.set_ylabel(f"Δm (%) vs {roles.reference_name}  (lower is better)")
    ax.set_title(f"{ds}: Δm per method (mean ± std over seeds)", fontsize="medium")
    save(fig, path)


def _axis_label(quantity: str, roles: Roles) -> str:
    """What a quantity's panel shows on its y axis."""
    if quantity == "delta_p":
        return f"Δp (%) vs {roles.baseline_name}  (higher is better)"
    if quantity == "relative_to_baseline_pct":
        return f"robust score vs {roles.baseline_name} (%)"
    return {"mean_score": "mean primary score over tasks",
            "delta_m": f"Δm (%) vs {roles.reference_name}  (lower is better)",
            "relative_drop_pct": "relative drop (%) vs strength 0"}[quantity]


def _plot_panel(ax, x: Sequence[float], table: Table, keys: Sequence[str], quantity: str, roles: Roles) -> None:
    """One line per row of `table` over the columns `keys`; every quantity but the score with its 0 line."""
    for m in table.rows:
        stats = [table.cells[(m, k)] for k in keys]
        ax.errorbar(x, [s.mean for s in stats], yerr=[s.std for s in stats], marker="o",
                    markersize=3, capsize=2, label=m)
    if quantity != "mean_score":
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(_axis_label(quantity, roles))


def plot_data_fraction(ds: str, roles: Roles, fractions: list[int], quantities: Mapping[str, Table],
                       path: Path) -> None:
    """One panel per quantity (mean score, Delta_m and, with a baseline, Delta_p)."""
    fig, axes = figure(1, len(quantities), 5 * len(quantities), 3.8)
    keys = [f"pct{f}" for f in fractions]
    for ax, (quantity, table) in zip(axes[0], quantities.items()):
        _plot_panel(ax, fractions, table, keys, quantity, roles)
        ax.set_xlabel("training data (%)")
        ax.set_xticks(fractions)
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(f"{ds}: data-fraction ablation (mean ± std over seeds)")
    save(fig, path)


def plot_robustness(ds: str, roles: Roles, strengths: list[float],
                    tables: Mapping[str, Mapping[str, Table]], path: Path) -> None:
    """A column of panels per kind, a row per quantity (score, drop and, with a baseline, the
    score relative to the baseline's)."""
    kinds = list(tables)
    n_rows = len(tables[kinds[0]])
    fig, axes = figure(n_rows, len(kinds), 4.5 * len(kinds) + 0.5, 3.25 * n_rows)
    keys = [f"s{s!r}" for s in strengths]
    for j, kind in enumerate(kinds):
        for i, (quantity, table) in enumerate(tables[kind].items()):
            _plot_panel(axes[i][j], strengths, table, keys, quantity, roles)
        axes[0][j].set_title(kind)
        axes[-1][j].set_xlabel("perturbation strength")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(f"{ds}: robustness (mean ± std over seeds)")
    save(fig, path)


def _val_curve(log: dict) -> tuple[list[int], list[float]]:
    """Validation score per epoch; STL's per-task histories are averaged over tasks."""
    history = log["history"]
    if isinstance(history, dict):
        runs = list(history.values())
        epochs = [h["epoch"] for h in runs[0]]
        return epochs, [float(np.mean([run[i]["val_score"] for run in runs])) for i in range(len(epochs))]
    return [h["epoch"] for h in history], [h["val_score"] for h in history]


def plot_training(ds: str, logs: Mapping[str, list[dict]], path: Path) -> None:
    fig, axes = figure(1, 1, 6.0, 4.0)
    ax = axes[0][0]
    for method, runs in logs.items():
        curves = [_val_curve(r) for r in runs]
        n = min(len(c[1]) for c in curves)
        values = np.array([c[1][-n:] for c in curves])
        epochs = curves[0][0][-n:]
        ax.plot(epochs, values.mean(0), label=method)
        ax.fill_between(epochs, values.mean(0) - values.std(0), values.mean(0) + values.std(0), alpha=0.2)
    ax.set_xlabel("epoch")
    # the score model selection uses: mean over tasks of z-scored MAE or error rate
    ax.set_ylabel("validation score (lower is better)")
    ax.set_title(f"{ds}: validation score, mean ± std over seeds", fontsize=10)
    ax.legend(fontsize=7)
    save(fig, path)
