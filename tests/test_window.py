"""Rolling windows: rotation is equivalent to recomputing on the trailing slices."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon.window import RollingWindow


class Count:
    def __init__(self) -> None:
        self.n = 0

    def merge(self, other: object) -> None:
        assert isinstance(other, Count)
        self.n += other.n

    def reset(self) -> None:
        self.n = 0


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=7.0), st.integers(min_value=1, max_value=5)),
        max_size=60,
    ),
    read_gap=st.floats(min_value=0.0, max_value=30.0),
)
def test_window_equals_sum_over_trailing_slices(steps: list[tuple[float, int]], read_gap: float) -> None:
    window, slices = 10.0, 5
    width = window / slices
    w = RollingWindow(Count, window=window, slices=slices, now=0.0)
    t = 0.0
    seen: list[tuple[int, int]] = []  # (slice index, count)
    for dt, n in steps:
        t += dt
        w.current(t).n += n
        seen.append((int(t // width), n))
    now = t + read_gap
    head = int(now // width)
    expected = sum(n for idx, n in seen if idx > head - slices)
    assert w.merged(now).n == expected


def test_time_going_backwards_neither_rotates_nor_breaks() -> None:
    w = RollingWindow(Count, window=10.0, slices=10, now=100.0)
    w.current(105.0).n += 1
    w.current(50.0).n += 2  # the clock jumped back: same slice, nothing lost
    assert w.merged(50.0).n == 3
    assert w.merged(105.5).n == 3
    assert w.covered(50.0) > 0


def test_suspension_longer_than_window_clears_once() -> None:
    w = RollingWindow(Count, window=10.0, slices=10, now=0.0)
    w.current(1.0).n += 5
    assert w.merged(1e9).n == 0  # a process suspended for years: no loop over slices
    w.current(1e9).n += 1
    assert w.merged(1e9 + 0.5).n == 1


def test_covered_grows_to_the_window_then_stays_within_one_slice() -> None:
    w = RollingWindow(Count, window=10.0, slices=10, now=0.0)
    assert w.covered(2.5) == pytest.approx(2.5)
    assert 9.0 <= w.covered(55.5) <= 10.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0.0}, "window"),
        ({"window": -1.0}, "window"),
        ({"window": math.inf}, "window"),
        ({"window": 10.0, "slices": 1}, "slices"),
    ],
)
def test_invalid_window_configuration_raises(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RollingWindow(Count, **kwargs)  # type: ignore[arg-type]
