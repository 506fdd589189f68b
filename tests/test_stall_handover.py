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


def _offers_of_drain(monkeypatch: pytest.MonkeyPatch, thread_name: str, batches: int, **run: bool) -> tuple[list[int], int, int]:
    """Fill a monitor with ``batches`` batches, drain it on a thread named ``thread_name``, and
    return the drain thread's CPU time at each offer of the GIL, at the start and at the end."""
    offers: list[int] = []
    real_sleep = time.sleep
    drainer: list[int] = []

    def sleep(seconds: float) -> None:
        if drainer and threading.get_ident() == drainer[0]:
            offers.append(time.thread_time_ns())
        real_sleep(seconds)

    monkeypatch.setattr(_handover, "_sleep", sleep)
    monkeypatch.setattr("mlmon.drain.time.sleep", sleep)
    mon, tracked = _monitor(f"handover_{thread_name}")
    span: list[int] = []

    def drain() -> None:
        drainer.append(threading.get_ident())
        span.append(time.thread_time_ns())
        mon._drain.run(**run)
        span.append(time.thread_time_ns())

    try:
        with mon._drain_lock:  # nothing else drains: the background thread waits
            for X in _batches(batches):
                tracked(X)
            t = threading.Thread(target=drain, name=thread_name)
            t.start()
            t.join(60.0)
        assert mon._buffers.pending_records == 0
        assert mon.snapshot().get("mlmon_calls_total") == batches
    finally:
        mon.close()
    return offers, span[0], span[1]


def test_a_drain_on_the_reporter_thread_offers_the_gil_every_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The longest stretch of the drain's own CPU time between two offers stays near a slice
    (measured in thread CPU time: a busy machine does not change it)."""
    offers, start, end = _offers_of_drain(monkeypatch, "mlmon-reporter-test", 60)
    stretches = np.diff([start, *offers, end])
    assert len(offers) >= 40  # 60 batches: tens of milliseconds of work, 30 chunks
    assert stretches.max() < 2_000_000  # ns of CPU, against a slice of 0.05 ms


def test_elsewhere_a_drain_offers_the_gil_between_chunks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    offers, _, _ = _offers_of_drain(monkeypatch, "a-web-worker", 60)
    assert 20 <= len(offers) <= 31  # 60 batches of 160 KB: 30 chunks of about 256 KiB
    offers, _, _ = _offers_of_drain(monkeypatch, "a-web-worker", 60, hand_over=True)
    assert len(offers) >= 40


def test_the_inline_drain_never_offers_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    offers: list[int] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        offers.append(threading.get_ident())
        real_sleep(seconds)

    mon, tracked = _monitor("handover_inline")
    try:
        with mon._drain_lock:
            for X in _batches(6):
                tracked(X)
        monkeypatch.setattr(_handover, "_sleep", sleep)
        monkeypatch.setattr("mlmon.drain.time.sleep", sleep)
        with handing_over():  # even inside: the inline drain is the caller's own time
            for _ in range(3):
                mon._drain.run(chunks=1)
        assert threading.get_ident() not in offers
        assert mon._buffers.pending_records == 0
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
        with a._drain_lock:
            a._drain.run(hand_over=True)  # hands the GIL over every slice
        assert a._buffers.pending_records == 0
        got_a = _feature_samples(a)
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
