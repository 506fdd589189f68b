"""Outcomes: totals, per-prediction rates over the window, name rules and bounds."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from mlmon._component import CallBatch
from mlmon.outcomes import OutcomeComponent
from mlmon.snapshot import CATALOG


def read(comp: OutcomeComponent, now: float) -> dict[tuple[str, str], float]:
    out = {}
    for name, value, labels in comp.samples(now):
        out[(name, labels.get("outcome", labels.get("buffer", "")))] = float(value)
    return out


def rows(comp: OutcomeComponent, n: int, now: float) -> None:
    comp.ingest(CallBatch(now=now, wall=0.0, outputs=[None], ids=[None], rows=[n]))


@pytest.fixture
def comp() -> OutcomeComponent:
    return OutcomeComponent(window=10.0, slices=10, now=0.0)


def test_each_id_counts_one_outcome(comp: OutcomeComponent) -> None:
    rows(comp, 10, 0.5)
    comp.log("click", ids=["a", "b", "c"], now=1.0)
    comp.log("click", now=1.5)  # no ids: one outcome
    got = read(comp, 2.0)
    assert got[("mlmon_outcome_total", "click")] == 4.0
    assert got[("mlmon_outcome_rate", "click")] == 0.4


def test_value_is_added_per_id_or_summed_from_a_batch(comp: OutcomeComponent) -> None:
    rows(comp, 4, 0.5)
    comp.log("revenue", ids=[1, 2], value=2.5, now=1.0)
    comp.log("revenue", ids=[3, 4], value=np.array([1.0, 4.0]), now=1.0)
    comp.log("revenue", value=[1.0, 1.0], now=1.0)
    assert read(comp, 1.0)[("mlmon_outcome_total", "revenue")] == 12.0
    assert read(comp, 1.0)[("mlmon_outcome_rate", "revenue")] == 3.0


def test_rate_covers_only_the_window_and_the_total_is_cumulative(comp: OutcomeComponent) -> None:
    rows(comp, 10, 0.5)
    comp.log("click", ids=range(5), now=0.5)
    rows(comp, 20, 12.0)
    comp.log("click", ids=range(2), now=12.0)
    got = read(comp, 12.5)
    assert got[("mlmon_outcome_total", "click")] == 7.0
    assert got[("mlmon_outcome_rate", "click")] == 0.1


def test_rate_is_absent_without_predictions_in_the_window(comp: OutcomeComponent) -> None:
    comp.log("click", now=1.0)
    got = read(comp, 1.0)
    assert ("mlmon_outcome_rate", "click") not in got
    assert got[("mlmon_outcome_total", "click")] == 1.0


@pytest.mark.parametrize("name", ["", "a b", "a.b", "ünï", "x" * 65, None, 3, "a\nb"])
def test_invalid_names_raise(comp: OutcomeComponent, name: Any) -> None:
    with pytest.raises(ValueError, match="outcome name"):
        comp.log(name, now=0.0)


def test_names_beyond_the_limit_are_dropped_and_counted() -> None:
    comp = OutcomeComponent(window=10.0, now=0.0, max_names=2)
    for name in ["a", "b", "c", "a"]:
        comp.log(name, ids=[1, 2], now=0.0)
    got = read(comp, 0.0)
    assert ("mlmon_outcome_total", "c") not in got
    assert got[("mlmon_outcome_total", "a")] == 4.0
    assert got[("mlmon_dropped_total", "outcomes")] == 2.0


def test_non_finite_values_are_dropped_and_counted(comp: OutcomeComponent) -> None:
    comp.log("revenue", ids=[1, 2, 3], value=[1.0, math.nan, math.inf], now=0.0)
    comp.log("revenue", value="a lot", now=0.0)
    got = read(comp, 0.0)
    assert got[("mlmon_outcome_total", "revenue")] == 1.0
    assert got[("mlmon_dropped_total", "outcomes")] == 3.0


def test_value_batch_of_another_length_than_ids_raises(comp: OutcomeComponent) -> None:
    with pytest.raises(ValueError, match="as long as ids"):
        comp.log("revenue", ids=[1, 2], value=[1.0], now=0.0)


def test_reset_forgets_everything(comp: OutcomeComponent) -> None:
    rows(comp, 3, 0.0)
    comp.log("click", now=0.0)
    comp.reset()
    assert read(comp, 0.0) == {("mlmon_dropped_total", "outcomes"): 0.0}


def test_metric_names_are_in_the_catalog(comp: OutcomeComponent) -> None:
    rows(comp, 3, 0.0)
    comp.log("click", now=0.0)
    for name, _, labels in comp.samples(0.0):
        assert set(labels) <= set(CATALOG[name].labels)


def test_bad_max_names_raises() -> None:
    with pytest.raises(ValueError, match="max_names"):
        OutcomeComponent(window=1.0, max_names=0)


def test_outcome_values_are_never_parsed_from_strings_and_huge_ints_are_dropped() -> None:
    comp = OutcomeComponent(window=60.0, now=0.0)
    comp.log("revenue", ids=["a", "b", "c"], value=[1.5, "3", 10**400])
    comp.log("revenue", ids=["d"], value="2")
    values = {(n, lab.get("outcome", lab.get("buffer"))): v for n, v, lab in comp.samples(1.0)}
    assert values[("mlmon_outcome_total", "revenue")] == 1.5
    assert values[("mlmon_dropped_total", "outcomes")] == 3
