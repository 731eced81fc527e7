"""The measures (Delta_m, Delta_p, relative drop and change, ranks) and the number formatting,
against hand-computed values."""
from __future__ import annotations

import math

import pytest

from mtlrepro.io import MTLReproError
from mtlrepro.report import measures
from mtlrepro.report.measures import competition_ranks, delta_m, delta_p, mean_std, relative_change, relative_drop
from mtlrepro.report.table import Stat, fmt


def test_delta_m_lower_is_better():
    # an error 20 % above STL is 20 % worse
    assert delta_m({"a": 1.2}, {"a": 1.0}, {"a": False}) == pytest.approx(20.0)
    assert delta_m({"a": 0.5}, {"a": 1.0}, {"a": False}) == pytest.approx(-50.0)


def test_delta_m_higher_is_better():
    # an accuracy 10 % below STL is 10 % worse: positive Delta_m
    assert delta_m({"b": 0.9}, {"b": 1.0}, {"b": True}) == pytest.approx(10.0)
    assert delta_m({"b": 0.88}, {"b": 0.80}, {"b": True}) == pytest.approx(-10.0)


def test_delta_m_mixed_tasks_average():
    values = {"a": 0.8, "b": 1.1, "c": 3.0}
    ref = {"a": 1.0, "b": 1.0, "c": 2.0}
    hib = {"a": False, "b": True, "c": False}
    # a: -20 %, b: -10 %, c: +50 % -> mean 20/3
    assert delta_m(values, ref, hib) == pytest.approx((-20 - 10 + 50) / 3)
    assert delta_m(ref, ref, hib) == 0.0


@pytest.mark.parametrize("values,ref,hib,match", [
    ({"a": 1.0}, {"a": 1.0, "b": 2.0}, {"a": True, "b": True}, "missing"),
    ({"a": 1.0, "z": 1.0}, {"a": 1.0}, {"a": True}, "not in the reference"),
    ({"a": 1.0}, {"a": 1.0}, {}, "higher_is_better"),
    ({"a": 1.0}, {"a": 0.0}, {"a": True}, "zero"),
    ({"a": float("nan")}, {"a": 1.0}, {"a": True}, "nan"),
])
def test_delta_m_errors(values, ref, hib, match):
    with pytest.raises(MTLReproError, match=match):
        delta_m(values, ref, hib)


def test_delta_p_is_infomtls_improvement_over_the_baseline():
    # InfoMTL's definition: +(M - B)/B for higher-is-better tasks, -(M - B)/B for lower-is-better
    values, ew, hib = {"f1": 0.88, "mae": 0.9}, {"f1": 0.80, "mae": 1.0}, {"f1": True, "mae": False}
    assert delta_p(values, ew, hib) == pytest.approx(100 * ((0.88 - 0.8) / 0.8 - (0.9 - 1.0) / 1.0) / 2)
    assert delta_p(values, ew, hib) == pytest.approx(10.0)
    assert delta_p(ew, ew, hib) == 0.0
    assert delta_p(values, ew, hib) == -delta_m(values, ew, hib)


def test_relative_drop_and_change():
    # an accuracy falling from 0.8 to 0.6 and an error rising from 1 to 1.5: 25 % and 50 % worse
    assert relative_drop({"a": 0.6, "e": 1.5}, {"a": 0.8, "e": 1.0}, {"a": True, "e": False}) == pytest.approx(37.5)
    assert relative_change(0.892, 0.93, "EW") == pytest.approx(100 * (0.892 - 0.93) / 0.93)
    with pytest.raises(MTLReproError, match="EW: the baseline's score is zero"):
        relative_change(1.0, 0.0, "EW")
    assert measures.robust_score({"a": 0.6, "e": 1.5}, ["a", "e"]) == pytest.approx(1.05)


def test_competition_ranks():
    assert competition_ranks({"a": 3.0, "b": 1.0, "c": 3.0, "d": 5.0}, False) == {"a": 2, "b": 1, "c": 2, "d": 4}
    assert competition_ranks({"a": 3.0, "b": 1.0, "c": 3.0, "d": 5.0}, True) == {"a": 2, "b": 4, "c": 2, "d": 1}


def test_spearman():
    assert measures.spearman([1.0, 2.0, 3.0], [10.0, 30.0, 20.0]) == pytest.approx(0.5)
    assert measures.spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert measures.spearman([1.0, 2.0], [1.0, 2.0]) is None  # fewer than 3 pairs
    assert measures.spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) is None  # no spread


def test_formatting_significant_digits():
    s = Stat([1234.5678, 1234.5678])
    assert fmt(s, "sig4", " ± ") == "1235 ± 0"
    s = Stat([0.012345, 0.012345])
    assert fmt(s, "sig4", " ± ") == "0.01235 ± 0.00000"
    assert fmt(Stat([0.97, 0.95]), "fix3", " ± ") == "0.960 ± 0.010"
    assert fmt(Stat([-1e-12, 1e-12]), "fix2", " ± ") == "0.00 ± 0.00"
    assert math.isclose(mean_std([1.0, 3.0])[1], 1.0)  # ddof=0
    with pytest.raises(MTLReproError, match="no values"):
        mean_std([])


def test_main_caption_sets_the_methods_spread_against_the_seed_noise():
    import numpy as np

    from mtlrepro.report.main import spread_and_noise
    from mtlrepro.report.table import Stat

    delta = {"stl": Stat([0.0, 0.0]), "ls": Stat([1.0, 3.0]), "a": Stat([5.0, 7.0]), "b": Stat([10.0, 10.0])}
    means, stds = [2.0, 6.0, 10.0], [1.0, 1.0, 0.0]  # stl, the reference, left out
    text = spread_and_noise(delta, "stl")
    assert f"{np.std(means):.2f}" in text and f"{np.mean(stds):.2f}" in text
    assert f"{np.std(means) / np.mean(stds):.1f}x the noise" in text and "3 methods" in text
    assert spread_and_noise({"stl": Stat([0.0]), "ls": Stat([1.0, 2.0])}, "stl") == ""
