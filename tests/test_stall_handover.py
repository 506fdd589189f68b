"""A drain off the predict path keeps the GIL for predict calls, and changes no statistic.

Background work (``handing_over``) shortens the process-wide switch interval, so a thread that
wants the GIL gets it within the short interval; the interval is restored after. GIL hand-over
is made deterministic here by a switch interval of 10 s for the duration of a test (restored
after): a thread that never blocks then keeps the GIL for good, so another thread makes
progress only when the working thread lets it (the short interval does).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import mlmon
from mlmon import _handover
from mlmon._handover import SWITCH_S, handing_over, handover

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


def test_background_work_lets_other_threads_have_the_gil(long_switch_interval: None) -> None:
    def inside() -> None:
        with handing_over():
            _python_work(0.05)

    during, _ = _progress_during(lambda: _python_work(0.05))
    assert during == 0  # pure Python under a 10 s interval: the other thread never ran
    during, _ = _progress_during(inside)
    assert during >= 5  # the short interval: the other thread kept running
    assert sys.getswitchinterval() == 10.0


def test_the_switch_interval_is_short_inside_and_restored_after() -> None:
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with handing_over():
            assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
            with handing_over():  # nested on one thread
                assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
            assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
        assert sys.getswitchinterval() == 0.005
        with handing_over(False):  # a block done on a caller's behalf: left alone
            assert sys.getswitchinterval() == 0.005

        # Two threads' blocks overlap: restored when the last one ends.
        entered, leave = threading.Event(), threading.Event()

        def other() -> None:
            with handing_over():
                entered.set()
                leave.wait(10.0)

        t = threading.Thread(target=other)
        t.start()
        assert entered.wait(10.0)
        with handing_over():
            assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
        assert sys.getswitchinterval() == pytest.approx(SWITCH_S)  # the other block goes on
        leave.set()
        t.join(10.0)
        assert sys.getswitchinterval() == 0.005

        # Someone sets their own interval meanwhile: theirs stays.
        with handing_over():
            sys.setswitchinterval(0.002)
        assert sys.getswitchinterval() == 0.002
        # Already shorter than ours: never touched.
        sys.setswitchinterval(0.00005)
        with handing_over():
            assert sys.getswitchinterval() == pytest.approx(0.00005)
        assert sys.getswitchinterval() == pytest.approx(0.00005)
    finally:
        sys.setswitchinterval(old)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_during_background_work_gets_the_interval_back() -> None:
    old = sys.getswitchinterval()
    r, w = os.pipe()
    entered, leave = threading.Event(), threading.Event()

    def reporter() -> None:  # a background cycle in progress when the process forks
        with handing_over():
            entered.set()
            leave.wait(10.0)

    t = threading.Thread(target=reporter)
    try:
        sys.setswitchinterval(0.005)
        t.start()
        assert entered.wait(10.0)
        _handover.BUSY[-1] = 1  # a call in flight on the parent's thread
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                ok = sys.getswitchinterval() == 0.005 and not _handover.BUSY
                with handing_over():  # the child's own background work
                    ok = ok and abs(sys.getswitchinterval() - SWITCH_S) < 1e-9
                ok = ok and sys.getswitchinterval() == 0.005
                os.write(w, b"1" if ok else b"0")
                os._exit(0)
        finally:
            _handover.BUSY.pop(-1, None)
        _, status = os.waitpid(pid, 0)
        assert os.read(r, 1) == b"1"
        assert status == 0
        assert sys.getswitchinterval() == pytest.approx(SWITCH_S)  # the parent's cycle goes on
        leave.set()
        t.join(10.0)
        assert sys.getswitchinterval() == 0.005
    finally:
        leave.set()
        t.join(10.0)
        os.close(r)
        os.close(w)
        sys.setswitchinterval(old)


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


def test_a_pause_point_waits_for_the_calls_in_flight() -> None:
    _handover.BUSY[-1] = 1
    try:
        t0 = time.perf_counter()
        handover()  # outside handing_over: never waits
        assert time.perf_counter() - t0 < _handover.PAUSE_S / 2
        with handing_over():
            t0 = time.perf_counter()
            handover()  # the call never ends: the pause runs out
            waited = time.perf_counter() - t0
            assert waited >= _handover.PAUSE_S * 0.9
            t0 = time.perf_counter()
            for _ in range(100):
                handover()  # after a pause that ran out: work on, no pause
            assert time.perf_counter() - t0 < _handover.PAUSE_S
            assert not _handover._parked[0]
            with _handover.waiting():  # a no-op on the background thread itself
                assert not _handover._waiters
    finally:
        _handover.BUSY.pop(-1, None)

    # A call that ends wakes the paused drain at once.
    _handover._state.timed_out = -(1 << 62)
    _handover.BUSY[-2] = 1

    def end_call() -> None:
        for _ in range(10_000):  # bounded: until the drain is parked
            if _handover._parked[0]:
                break
            time.sleep(0.00001)
        _handover.BUSY.pop(-2, None)
        _handover.call_ended()

    saved, _handover.PAUSE_S = _handover.PAUSE_S, 5.0
    t = threading.Thread(target=end_call)
    try:
        with handing_over():
            t.start()
            t0 = time.perf_counter()
            handover()
            assert time.perf_counter() - t0 < 2.0  # woken, not the 5 s pause
    finally:
        _handover.PAUSE_S = saved
        t.join(10.0)
        _handover.BUSY.pop(-2, None)


def test_calls_with_features_register_while_they_run() -> None:
    mon = mlmon.Monitor("handover_busy", flush_interval=3600.0, window=3600.0)
    seen: list[int] = []

    def predict(X: np.ndarray) -> np.ndarray:
        seen.append(len(_handover.BUSY))
        if X[0, 0] < 0:
            raise KeyError("the user's own")
        return X[:, 0]

    try:
        tracked = mon.track(features="X")(predict)
        plain = mon.track(ids="ids")(lambda X, ids: (seen.append(len(_handover.BUSY)), X[:, 0])[1])
        tracked(np.ones((3, 2)))
        with pytest.raises(KeyError):
            tracked(-np.ones((3, 2)))
        plain(np.ones((3, 2)), ids=[1, 2, 3])
        assert seen == [1, 1, 0]  # a call without features does not register
        assert not _handover.BUSY  # removed after a return and after a raise
        assert mon.snapshot().get("mlmon_calls_total") == 3
    finally:
        mon.close()


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


def _drain_on_thread(monkeypatch: pytest.MonkeyPatch, thread_name: str, batches: int, **run: bool) -> tuple[list[float], int]:
    """Fill a monitor with ``batches`` batches, drain it on a thread named ``thread_name``, and
    return the switch interval at each chunk's reduction, and how often the drain offered the
    GIL between chunks (``time.sleep(0)``)."""
    intervals: list[float] = []
    offers: list[int] = []
    real_sleep = time.sleep
    drainer: list[int] = []

    def sleep(seconds: float) -> None:
        if drainer and threading.get_ident() == drainer[0]:
            offers.append(1)
        real_sleep(seconds)

    monkeypatch.setattr("mlmon.drain.time.sleep", sleep)
    mon, tracked = _monitor(f"handover_{thread_name}")
    real_reduce = mon._drain.reduce

    def reduce(*args: object) -> None:
        # The interval is process-wide (the monitor's own reporter may be in its cycle too):
        # whether this drain is background work is the thread's own state.
        intervals.append(sys.getswitchinterval() if _handover._state.active else 0.0)
        real_reduce(*args)

    monkeypatch.setattr(mon._drain, "reduce", reduce)

    def drain() -> None:
        drainer.append(threading.get_ident())
        mon._drain.run(**run)

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
    return intervals, len(offers)


def test_a_drain_on_the_reporter_thread_runs_under_the_short_interval(
    monkeypatch: pytest.MonkeyPatch, long_switch_interval: None
) -> None:
    intervals, offers = _drain_on_thread(monkeypatch, "mlmon-reporter-test", 60)
    assert len(intervals) >= 20  # 60 batches of 160 KB: about 30 chunks of 256 KiB
    assert intervals == [pytest.approx(SWITCH_S)] * len(intervals)
    assert offers == 0
    assert sys.getswitchinterval() == 10.0


def test_elsewhere_a_drain_offers_the_gil_between_chunks_only(monkeypatch: pytest.MonkeyPatch, long_switch_interval: None) -> None:
    intervals, offers = _drain_on_thread(monkeypatch, "a-web-worker", 60)
    assert set(intervals) == {0.0}  # the caller's own time: not background work
    assert 20 <= offers <= 31  # 60 batches of 160 KB: 30 chunks of about 256 KiB
    intervals, offers = _drain_on_thread(monkeypatch, "a-web-worker", 60, hand_over=True)
    assert intervals == [pytest.approx(SWITCH_S)] * len(intervals)
    assert offers == 0


class _CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[bool] = []

    def wait(self, timeout: float | None = None) -> bool:
        got = super().wait(timeout)
        self.waits.append(got)
        return got


def test_a_background_drain_pauses_while_a_call_with_features_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    ended = _CountingEvent()
    monkeypatch.setattr(_handover, "_ended", ended)
    mon, tracked = _monitor("handover_pause")
    inside, release = threading.Event(), threading.Event()
    slow = mon.track(features="X")(lambda X: (inside.set(), release.wait(30.0)))
    try:
        with mon._drain_lock:
            for X in _batches(20):
                tracked(X)
        caller = threading.Thread(target=slow, args=(np.ones((10, FEATURES)),))
        caller.start()
        assert inside.wait(10.0)
        done = threading.Event()

        def drain() -> None:
            with mon._drain_lock:
                mon._drain.run(hand_over=True)
            done.set()

        t = threading.Thread(target=drain, name="mlmon-reporter-test")
        t.start()
        assert done.wait(30.0)  # a call that does not end pauses the drain, never stops it
        assert ended.waits and not any(ended.waits)  # paused, each pause ran out
        release.set()
        caller.join(10.0)
        t.join(10.0)
        assert not _handover.BUSY
        ended.waits.clear()
        with mon._drain_lock:
            for X in _batches(20):
                tracked(X)
            mon._drain.run(hand_over=True)  # no call in flight: no pause
        assert ended.waits == []
        assert mon.snapshot().get("mlmon_calls_total") == 41
    finally:
        release.set()
        mon.close()


def test_the_inline_drain_never_pauses_nor_changes_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    ended = _CountingEvent()
    monkeypatch.setattr(_handover, "_ended", ended)
    offers: list[int] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        offers.append(threading.get_ident())
        real_sleep(seconds)

    mon, tracked = _monitor("handover_inline")
    old = sys.getswitchinterval()
    _handover.BUSY[-3] = 1  # a call in flight elsewhere
    try:
        with mon._drain_lock:
            for X in _batches(6):
                tracked(X)
        monkeypatch.setattr("mlmon.drain.time.sleep", sleep)
        with handing_over():  # even inside: the inline drain is the caller's own time
            for _ in range(3):
                mon._drain.run(chunks=1)
        for _ in range(3):
            mon._drain.run(chunks=1)
            assert sys.getswitchinterval() == old
        assert threading.get_ident() not in offers
        assert ended.waits == []
        assert mon._buffers.pending_records == 0
    finally:
        _handover.BUSY.pop(-3, None)
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


@pytest.mark.parametrize("bad", [0, -1e-4, 0.5, float("nan"), float("inf"), True, "0.001", [1e-4]])
def test_the_background_switch_interval_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="switch interval"):
        mlmon.set_background_switch_interval(bad)  # type: ignore[arg-type]
    assert _handover._target[0] == SWITCH_S  # unchanged


def test_the_background_switch_interval_can_be_changed_or_left_alone() -> None:
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        mlmon.set_background_switch_interval(0.0005)
        with handing_over():
            assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert sys.getswitchinterval() == 0.005
        mlmon.set_background_switch_interval(None)
        with handing_over():
            assert sys.getswitchinterval() == 0.005  # left alone
            assert not _handover.interval_is_short()
        assert sys.getswitchinterval() == 0.005
    finally:
        mlmon.set_background_switch_interval(SWITCH_S)
        sys.setswitchinterval(old)


def test_a_wait_inside_background_work_gives_the_interval_back() -> None:
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with _handover.blocking():  # outside background work: a no-op
            assert sys.getswitchinterval() == 0.005
        with handing_over():
            assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
            with _handover.blocking():
                assert sys.getswitchinterval() == 0.005
                assert not _handover._state.active
            assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
            assert _handover._state.active
        assert sys.getswitchinterval() == 0.005
    finally:
        sys.setswitchinterval(old)


def test_a_reporter_cycle_emits_with_the_interval_given_back() -> None:
    seen: list[float] = []

    class Probe(mlmon.emitters.InMemoryEmitter):
        def emit(self, snapshot: mlmon.Snapshot) -> None:
            seen.append(sys.getswitchinterval())
            super().emit(snapshot)

    old = sys.getswitchinterval()
    mon = mlmon.Monitor("handover_emit", emitters=[Probe()], flush_interval=3600.0, window=3600.0)
    try:
        sys.setswitchinterval(0.005)
        mon.track(lambda x: x)(1.0)
        with handing_over():  # as the reporter's tick runs it
            mon.flush()
        assert seen == [0.005]
    finally:
        mon.close()
        sys.setswitchinterval(old)


def test_the_stack_walk_sees_every_frame_of_a_blocked_thread() -> None:
    """``tracking._stacks`` walks each thread's ``f_back`` chain in one C-level pass: it gives
    the same frames as a Python walk of a thread that does not move."""
    from mlmon.tracking import _stacks

    entered, release = threading.Event(), threading.Event()

    def inner() -> None:
        entered.set()
        release.wait(10.0)

    def outer() -> None:
        inner()

    t = threading.Thread(target=outer)
    t.start()
    try:
        assert entered.wait(10.0)
        top = sys._current_frames()[t.ident]  # type: ignore[index]
        want = []
        f = top
        while f is not None:
            want.append(f.f_code)
            f = f.f_back
        (got,) = [s for s in _stacks() if s[0].f_code is top.f_code and any(x.f_code.co_name == "outer" for x in s)]
        assert [x.f_code for x in got] == want
        assert [x.f_code.co_name for x in got][want.index(inner.__code__):][:2] == ["inner", "outer"]
    finally:
        release.set()
        t.join(10.0)


def test_the_stack_walk_leaves_no_reference_cycle() -> None:
    """The walk's frames never hold the walk's result: nothing is left for the cyclic collector
    (a cycle would keep the reporter's frames, and the monitor they name, alive until it runs)."""
    import gc

    from mlmon.tracking import sync_calls_in_flight

    mon = mlmon.Monitor("handover_cycles", flush_interval=3600.0, window=3600.0)
    release = threading.Event()
    t = threading.Thread(target=mon.track(lambda: release.wait(10.0)))
    t.start()
    try:
        for _ in range(200):  # bounded: until the call is in flight
            if sync_calls_in_flight(mon._buffers):
                break
            time.sleep(0.005)
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                assert len(sync_calls_in_flight(mon._buffers)) == 1
            assert gc.collect() == 0
        finally:
            gc.enable()
    finally:
        release.set()
        t.join(10.0)
        mon.close()
