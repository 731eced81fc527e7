"""Representation quality (InfoMTL Table 5): uniformity and the task ARI against known values."""
import math

import numpy as np
import pytest
import torch

from mtlrepro.representation import task_ari, uniformity


def test_uniformity_of_antipodal_points_is_minus_four_t():
    h = torch.tensor([[3.0, 0.0], [-0.5, 0.0]])  # normalised: (1, 0) and (-1, 0), ||z_i - z_j||^2 = 4
    assert uniformity(h) == pytest.approx(-8.0)
    assert uniformity(h, t=0.5) == pytest.approx(-2.0)


def test_uniformity_square_by_hand_and_scale_invariance():
    # four points at 90 degrees: 4 adjacent pairs with squared distance 2, 2 opposite pairs with 4
    h = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -0.1]])
    expected = math.log((4 * math.exp(-2 * 2) + 2 * math.exp(-2 * 4)) / 6)
    assert uniformity(h) == pytest.approx(expected)
    assert uniformity(h * 7.0) == pytest.approx(expected)


def test_uniformity_collapsed_is_zero_and_spread_is_lower():
    collapsed = torch.ones(5, 3)
    assert uniformity(collapsed) == pytest.approx(0.0)
    spread = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    assert uniformity(spread) < -1.0


def test_uniformity_rejects_bad_input():
    with pytest.raises(ValueError):
        uniformity(torch.ones(1, 3))
    with pytest.raises(ValueError):
        uniformity(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


def test_ari_separated_clusters_is_one_and_invariant_to_label_names():
    g = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.repeat([0, 1, 2], 20)
    reps = centres[labels] + 0.1 * g.standard_normal((60, 2))
    assert task_ari(reps, labels) == pytest.approx(1.0)
    assert task_ari(reps, (labels + 1) % 3) == pytest.approx(1.0)
    assert task_ari(torch.tensor(reps), torch.tensor(labels)) == pytest.approx(1.0)


def test_ari_of_unrelated_labels_is_near_zero_and_half_split_is_known():
    g = np.random.default_rng(1)
    reps = np.r_[np.zeros((50, 1)), np.full((50, 1), 10.0)] + 0.01 * g.standard_normal((100, 1))
    random_labels = g.integers(0, 2, 100)
    assert abs(task_ari(reps, random_labels)) < 0.1
    # 1-D binary logits: clusters {0..49}, {50..99}; labels cut each cluster in half
    labels = np.r_[np.zeros(25), np.ones(25), np.zeros(25), np.ones(25)]
    # contingency [[25, 25], [25, 25]]: sum C(n_ij, 2) = 4 * 300, rows/cols 2 * C(50, 2) = 2450 each
    index, expected_index = 1200.0, 2450.0 * 2450.0 / 4950.0
    expected = (index - expected_index) / (0.5 * (2450 + 2450) - expected_index)
    assert task_ari(reps, labels) == pytest.approx(expected)


def test_ari_drops_missing_labels_and_checks_sizes():
    reps = np.r_[np.zeros((10, 2)), np.full((10, 2), 5.0)]
    labels = np.r_[np.zeros(10), np.ones(10)].astype(float)
    labels[[0, 15]] = np.nan
    assert task_ari(reps, labels) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        task_ari(reps, labels[:5])


def test_uniformity_per_task_is_over_each_tasks_own_rows_and_model():
    """Table 5 reports uniformity per task: over the rows labelled for the task, of the
    representation of the model that predicts it (STL: the task's own model)."""
    import torch

    from mtlrepro.data.base import Task
    from mtlrepro.representation import uniformity
    from mtlrepro.stages.eval import representation_quality

    g = torch.Generator().manual_seed(0)
    tasks = [Task("a", "binary", "accuracy"), Task("b", "regression", "mae")]
    targets = torch.stack([(torch.rand(12, generator=g) > 0.5).float(), torch.randn(12, generator=g)], 1)
    targets[:5, 1] = float("nan")  # b is labelled on 7 rows only
    split = type("S", (), {"targets": targets})()
    outputs = [torch.randn(12, 1, generator=g), torch.randn(12, 1, generator=g)]
    h = torch.randn(12, 4, generator=g)
    shared = representation_quality(tasks, split, outputs, [h], [[0, 1]])
    assert shared["uniformity_per_task"]["a"] == pytest.approx(uniformity(h))
    assert shared["uniformity_per_task"]["b"] == pytest.approx(uniformity(h[5:]))
    h2 = torch.randn(12, 4, generator=g)
    stl = representation_quality(tasks, split, outputs, [h, h2], [[0], [1]])
    assert stl["uniformity_per_task"]["b"] == pytest.approx(uniformity(h2[5:]))
    assert stl["uniformity"] == pytest.approx((uniformity(h) + uniformity(h2)) / 2)


def test_the_representation_table_shows_per_task_uniformity_when_every_run_records_it():
    from mtlrepro.report.representation import representation_table

    def ev(seed, per_task=True):
        rep = {"uniformity": -1.0 - seed, "ari": {"a": 0.5}}
        if per_task:
            rep["uniformity_per_task"] = {"a": -1.5 - seed, "b": -2.0}
        return {"path": f"e{seed}.json", "task_order": ["a", "b"], "tasks": {"a": {}, "b": {}}, "representation": rep}

    table = representation_table("d", {"ls": [ev(0), ev(1)]})
    assert [c.label for c in table.columns] == ["Uni.", "a Uni.", "b Uni.", "a ARI (%)"]
    assert table.cells[("ls", "uni:a")].mean == pytest.approx(-2.0) and "own labelled examples" in table.caption
    older = representation_table("d", {"ls": [ev(0), ev(1, per_task=False)]})
    assert [c.label for c in older.columns] == ["Uni.", "a ARI (%)"]
