"""Representation quality (InfoMTL, Table 5): uniformity of the shared representations and the
adjusted Rand index of the task output representations against the labels. Pure functions of
arrays: they accept torch tensors or anything numpy can read, and return Python floats."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def uniformity(h: Any, t: float = 2.0) -> float:
    """log E_{i<j} exp(-t ||z_i - z_j||^2) over all pairs of the L2-normalised rows z of h
    (Wang & Isola, ICML 2020). Lower is more uniform on the hypersphere; the minimum for two
    points is -4t (antipodal). h: [N, d] with N >= 2."""
    x = _as_tensor(h)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"uniformity needs an [N, d] array with N >= 2, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("uniformity: the representations contain NaN or inf")
    z = torch.nn.functional.normalize(x, dim=1)
    sq = torch.pdist(z, p=2).pow(2)
    return float(torch.logsumexp(-t * sq, 0) - math.log(sq.numel()))


def task_ari(outputs_or_reps: Any, labels: Any, n_clusters: int | None = None, seed: int = 0,
             n_init: int = 10) -> float:
    """Adjusted Rand index between a k-means clustering of a task's output representations and
    its labels (InfoMTL Table 5, following Hu et al. 2024b). k = the number of distinct labels
    unless given; k-means with a fixed seed. Rows whose label is NaN are dropped. 1 for a
    clustering that reproduces the labels (up to renaming), about 0 for an unrelated one.

    outputs_or_reps: [N, m] (or [N]) task outputs / representations; labels: [N] class labels.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    x = _as_tensor(outputs_or_reps).numpy()
    if x.ndim == 1:
        x = x[:, None]
    y = _as_tensor(labels).numpy().reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"task_ari: {x.shape[0]} representations for {y.shape[0]} labels")
    keep = ~np.isnan(y)
    x, y = x[keep], y[keep]
    if not np.isfinite(x).all():
        raise ValueError("task_ari: the representations contain NaN or inf")
    k = int(n_clusters) if n_clusters is not None else int(np.unique(y).size)
    if k < 1 or x.shape[0] < k:
        raise ValueError(f"task_ari: cannot make {k} clusters of {x.shape[0]} examples")
    if k == 1:
        pred = np.zeros(x.shape[0], dtype=np.int64)
    else:
        pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return float(adjusted_rand_score(y.astype(np.int64), pred))
