"""A drain off the predict path hands the GIL over as it goes, and changes no statistic.

GIL hand-over is made deterministic here by a switch interval of 10 s for the duration of a
test (restored after): a thread that never blocks then keeps the GIL for good, so another
thread makes progress only when the working thread really offers it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import mlmon
from mlmon import _handover
from mlmon._handover import handing_over, handover

ROWS, FEATURES = 1000, 20


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _progress_during(work: Callable[[], None]) -> tuple[int, int]:
    """How often another thread got the GIL while ``work`` ran (the other thread sleeps
    0.1 ms between two steps), and how often it did over the whole run."""
    steps = [0]
    stop = threading.Event()

    def other() -> None:
        for _ in range(100_000):  # bounded
            if stop.is_set():
                return
            steps[0] += 1
            time.sleep(0.0001)

    t = threading.Thread(target=other)
    t.start()
    try:
        time.sleep(0.02)  # the other thread is running and sleeping
        before = steps[0]
        work()
        during = steps[0] - before
    finally:
        stop.set()
        t.join(10.0)
    return during, steps[0]


def _python_work(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(200):
            x += i
        handover()


def test_handover_offers_the_gil_only_inside_handing_over(long_switch_interval: None) -> None:
    def inside() -> None:
        with handing_over():
            _python_work(0.05)

    during, _ = _progress_during(lambda: _python_work(0.05))
    assert during == 0  # pure Python, no offer: the other thread never ran
    during, _ = _progress_during(inside)
    assert during >= 5  # an offer every slice: the other thread kept running


def test_handing_over_nests_and_restores() -> None:
    assert not _handover._state.active
    with handing_over():
        assert _handover._state.active
        with handing_over():
            assert _handover._state.active
        assert _handover._state.active
    assert not _handover._state.active

    def other() -> None:  # the state is per thread
        seen.append(_handover._state.active)

    seen: list[bool] = []
    with handing_over():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == [False]


def _monitor(name: str) -> tuple[mlmon.Monitor, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(FEATURES)]
    ref = mlmon.Reference.from_data(rng.normal(size=(2000, FEATURES)), feature_names=names)
    mon = mlmon.Monitor(name, reference=ref, flush_interval=3600.0, window=3600.0)
    w = rng.normal(size=FEATURES)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(X @ w))))

    return mon, mon.track(features="X")(predict)


def _batches(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.normal(size=(ROWS, FEATURES)) + 0.01 * i for i in range(n)]


def test_a_drain_by_snapshot_lets_a_predict_thread_run(long_switch_interval: None) -> None:
    mon, tracked = _monitor("handover_snapshot")
    try:
        with mon._drain_lock:  # nothing else drains: the background thread waits
            for X in _batches(60):
                tracked(X)
            during, _ = _progress_during(mon._drain_locked)  # what snapshot() runs
        assert mon._buffers.pending_records == 0
        assert during >= 5
        assert mon.snapshot().get("mlmon_calls_total") == 60
    finally:
        mon.close()


def test_a_drain_offers_the_gil_every_slice_of_its_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The longest stretch of the drain's own CPU time between two offers stays near a slice
    (measured in thread CPU time: a busy machine does not change it)."""
    me = threading.get_ident()
    offers: list[int] = []
    real_sleep = _handover._sleep

    def sleep(seconds: float) -> None:
        if threading.get_ident() == me:
            offers.append(time.thread_time_ns())
        real_sleep(seconds)

    monkeypatch.setattr(_handover, "_sleep", sleep)
    mon, tracked = _monitor("handover_offers")
    try:
        with mon._drain_lock:  # nothing else drains: the background thread waits
            for X in _batches(60):
                tracked(X)
            start = time.thread_time_ns()
            mon._drain_locked()  # what snapshot() and the reporter run
            end = time.thread_time_ns()
        assert mon._buffers.pending_records == 0
        stretches = np.diff([start, *offers, end])
        assert len(offers) >= 20  # 60 batches: tens of milliseconds of work
        assert stretches.max() < 2_000_000  # ns of CPU, against a slice of 0.1 ms
        inline: list[int] = []
        offers.clear()
        with mon._drain_lock:
            for X in _batches(3):
                tracked(X)
        mon._drain_inline()  # on the predict thread: never offers
        inline.extend(offers)
        assert inline == []
    finally:
        mon.close()


def _feature_samples(mon: mlmon.Monitor) -> dict[tuple[str, str], float]:
    snap = mon.snapshot()
    return {
        (s.name, dict(s.labels).get("feature", "")): s.value
        for s in snap.samples
        if s.name.startswith("mlmon_feature_")
    }


def test_handing_over_changes_no_statistic() -> None:
    batches = _batches(40)
    a, track_a = _monitor("handover_a")
    b, track_b = _monitor("handover_b")
    try:
        with a._drain_lock, b._drain_lock:
            for X in batches:
                track_a(X)
                track_b(X)
        got_a = _feature_samples(a)  # drained by snapshot(): hands the GIL over
        for _ in range(len(batches)):  # drained chunk by chunk inline: never hands over
            b._drain_inline()
        assert b._buffers.pending_records == 0
        got_b = _feature_samples(b)
        assert got_a == got_b
        X = np.concatenate(batches)
        assert got_a[("mlmon_feature_mean", "f3")] == pytest.approx(X[:, 3].mean(), rel=1e-12)
        assert got_a[("mlmon_feature_variance", "f3")] == pytest.approx(X[:, 3].var(), rel=1e-9)
        assert got_a[("mlmon_feature_min", "f3")] == X[:, 3].min()
    finally:
        a.close()
        b.close()
