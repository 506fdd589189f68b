"""Monitor and track: configuration, decorator and context-manager semantics, counting, faults."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import mlmon
import mlmon.monitor
from mlmon.buffers import BACK_TO_BACK_NS
from mlmon.testing import FakeClock, InMemoryEmitter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mon(clock: FakeClock) -> Iterator[mlmon.Monitor]:
    m = mlmon.Monitor("test", clock=clock, window=60.0, flush_interval=10.0, latency_budget=0.1)
    yield m
    m.close()


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name"),
        ({"name": "fraud model"}, "name"),
        ({"name": "a.b"}, "name"),
        ({"name": 3}, "name"),
        ({"name": "m", "window": 0}, "window"),
        ({"name": "m", "window": -5.0}, "window"),
        ({"name": "m", "window": float("nan")}, "window"),
        ({"name": "m", "flush_interval": 0}, "flush_interval"),
        ({"name": "m", "window": 10.0, "flush_interval": 20.0}, "flush_interval"),
        ({"name": "m", "latency_budget": -1.0}, "latency_budget"),
        ({"name": "m", "version": "a\nb"}, "version"),
        ({"name": "m", "max_buffered_calls": 1}, "max_buffered_calls"),
    ],
)
def test_invalid_configuration_raises_value_error_naming_the_field(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mlmon.Monitor(**kwargs)


def test_unknown_emitter_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="emitters"):
        mlmon.Monitor("m", emitters=["statsd://localhost"])  # type: ignore[list-item]


def test_duplicate_emitter_names_raise() -> None:
    with pytest.raises(ValueError, match="unique"):
        mlmon.Monitor("m", emitters=[InMemoryEmitter(), InMemoryEmitter()])


def test_disabled_monitor_returns_the_function_itself() -> None:
    m = mlmon.Monitor("m", enabled=False)

    def f(x: int) -> int:
        return x

    assert m.track(f) is f
    m.close()


# -- decorator ------------------------------------------------------------------------------


def test_decorator_keeps_name_doc_and_signature(mon: mlmon.Monitor) -> None:
    def predict(x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Scores."""
        return x

    wrapped = mon.track(predict)
    assert wrapped.__name__ == "predict" and wrapped.__doc__ == "Scores."
    assert inspect.signature(wrapped) == inspect.signature(predict)
    assert mon.track(features="x")(predict).__wrapped__ is predict  # type: ignore[attr-defined]


def test_user_exception_reaches_caller_unchanged_and_is_counted(mon: mlmon.Monitor) -> None:
    err = KeyError("missing")

    @mon.track
    def predict(x: int) -> int:
        if x < 0:
            raise err
        return x

    for x in (1, -1, 2, -1):
        try:
            predict(x)
        except KeyError as caught:
            assert caught is err
    snap = mon.snapshot()
    assert snap.get("mlmon_calls_total") == 4
    assert snap.get("mlmon_errors_total", error_type="KeyError") == 2
    assert snap.get("mlmon_error_ratio") == 0.5


def test_base_exceptions_are_recorded_and_reraised(mon: mlmon.Monitor) -> None:
    @mon.track
    def predict() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict()
    assert mon.snapshot().get("mlmon_errors_total", error_type="KeyboardInterrupt") == 1


def test_rows_count_batch_sizes(mon: mlmon.Monitor) -> None:
    @mon.track
    def predict(n: int) -> Any:
        return np.zeros(n) if n != 1 else 0.5

    for n in (200, 1, 7):
        predict(n)
    snap = mon.snapshot()
    assert (snap.get("mlmon_calls_total"), snap.get("mlmon_rows_total")) == (3, 208)


def test_rows_come_from_features_when_named(mon: mlmon.Monitor) -> None:
    @mon.track(features="X", outputs=False)
    def predict(X: Any) -> None:
        return None

    predict(np.ones((5, 3)))
    predict(X=[[1, 2], [3, 4]])
    assert mon.snapshot().get("mlmon_rows_total") == 7


def test_features_argument_must_exist(mon: mlmon.Monitor) -> None:
    with pytest.raises(ValueError, match="no argument 'rows'"):
        mon.track(features="rows")(lambda X: X)


def test_decorator_rejects_values_where_names_are_expected(mon: mlmon.Monitor) -> None:
    with pytest.raises(TypeError, match="argument names"):
        mon.track(features=np.ones(3))(lambda X: X)


def test_output_extractor_failure_is_counted_not_raised(mon: mlmon.Monitor) -> None:
    @mon.track(outputs=lambda r: r["missing"])
    def predict(x: int) -> dict[str, int]:
        return {"score": x}

    assert predict(3) == {"score": 3}
    snap = mon.snapshot()
    assert snap.get("mlmon_calls_total") == 1
    assert snap.get("mlmon_internal_errors_total", stage="outputs") == 1


def test_async_functions_are_tracked(mon: mlmon.Monitor, clock: FakeClock) -> None:
    @mon.track
    async def predict(x: float) -> float:
        await asyncio.sleep(0)
        clock.advance(0.2)
        if x < 0:
            raise ValueError(x)
        return x

    assert inspect.iscoroutinefunction(predict)

    async def main() -> None:
        await asyncio.gather(predict(1.0), predict(2.0))
        with pytest.raises(ValueError):
            await predict(-1.0)

    asyncio.run(main())
    snap = mon.snapshot()
    assert snap.get("mlmon_calls_total") == 3
    assert snap.get("mlmon_errors_total", error_type="ValueError") == 1
    assert snap.get("mlmon_slow_calls_total") == 3
    assert snap.get("mlmon_inflight_calls") == 0


# -- context manager ------------------------------------------------------------------------


def test_context_manager_records_outputs_and_generates_ids(mon: mlmon.Monitor) -> None:
    with mon.track(features=np.ones((4, 2))) as call:
        first = call.ids
        call.outputs(np.array([0.1, 0.2, 0.3, 0.4]))
    with mon.track() as call2:
        call2.outputs([1.0, 2.0])
        second = call2.ids
    assert len(first) == 4 and len(second) == 2
    assert not set(first) & set(second)
    assert mon.snapshot().get("mlmon_rows_total") == 6


def test_context_manager_keeps_given_ids(mon: mlmon.Monitor) -> None:
    with mon.track(ids=["a", "b"]) as call:
        pass
    assert call.ids == ["a", "b"]


def test_context_manager_counts_and_propagates_errors(mon: mlmon.Monitor) -> None:
    with pytest.raises(ZeroDivisionError), mon.track():
        1 / 0  # noqa: B018
    snap = mon.snapshot()
    assert snap.get("mlmon_errors_total", error_type="ZeroDivisionError") == 1
    assert snap.get("mlmon_inflight_calls") == 0


# -- latency, window, clocks ----------------------------------------------------------------


def test_latency_quantiles_and_budget(mon: mlmon.Monitor, clock: FakeClock) -> None:
    @mon.track
    def predict(seconds: float) -> float:
        clock.advance(seconds)
        return seconds

    durations = [0.01] * 90 + [0.05] * 9 + [0.5]
    for d in durations:
        predict(d)
    snap = mon.snapshot()
    assert snap.get("mlmon_latency_seconds", quantile="0.5") == pytest.approx(0.01, rel=0.01)
    assert snap.get("mlmon_latency_seconds", quantile="0.9") == pytest.approx(0.01, rel=0.01)
    assert snap.get("mlmon_latency_seconds", quantile="0.99") == pytest.approx(0.05, rel=0.01)
    assert snap.get("mlmon_latency_seconds", quantile="1") == pytest.approx(0.5)
    assert snap.get("mlmon_latency_seconds_mean") == pytest.approx(sum(durations) / 100)
    assert snap.get("mlmon_slow_calls_total") == 1
    assert snap.get("mlmon_availability_ratio") == 0.99
    # cumulative buckets: le=0.01 holds the 90 fastest, +Inf all, _sum the total
    assert snap.get("mlmon_latency_seconds_bucket", le="0.01") == 90
    assert snap.get("mlmon_latency_seconds_bucket", le="0.05") == 99
    assert snap.get("mlmon_latency_seconds_bucket", le="+Inf") == 100
    assert snap.get("mlmon_latency_seconds_count") == 100
    assert snap.get("mlmon_latency_seconds_sum") == pytest.approx(sum(durations))


def test_window_forgets_old_calls_but_totals_do_not(mon: mlmon.Monitor, clock: FakeClock) -> None:
    predict = mon.track(lambda: 1.0)
    for _ in range(30):
        predict()
    clock.advance(30.0)
    snap = mon.snapshot()
    assert snap.get("mlmon_calls_per_second") == pytest.approx(1.0)
    clock.advance(61.0)
    for _ in range(6):
        predict()
    clock.advance(6.0)
    snap = mon.snapshot()
    assert snap.get("mlmon_calls_total") == 36
    assert snap.get("mlmon_calls_per_second") == pytest.approx(6 / snap.window)
    assert 54.0 <= snap.window <= 60.0


def test_clock_going_backwards_gives_no_negative_duration(mon: mlmon.Monitor, clock: FakeClock) -> None:
    @mon.track
    def predict() -> float:
        clock.advance(-5.0)
        return 1.0

    predict()
    predict()
    snap = mon.snapshot()
    assert snap.get("mlmon_latency_seconds", quantile="0") is None  # only the listed quantiles
    assert snap.get("mlmon_latency_seconds", quantile="1") == 0.0
    assert snap.get("mlmon_latency_seconds_sum") == 0.0
    assert snap.get("mlmon_calls_total") == 2
    assert snap.get("mlmon_calls_per_second") >= 0


def test_hung_call_is_visible_while_it_hangs(mon: mlmon.Monitor, clock: FakeClock) -> None:
    release = threading.Event()
    started = threading.Event()

    @mon.track
    def predict() -> int:
        started.set()
        release.wait(10)
        return 1

    t = threading.Thread(target=predict)
    t.start()
    assert started.wait(10)
    clock.advance(42.0)
    snap = mon.snapshot()
    assert snap.get("mlmon_inflight_calls") == 1
    assert snap.get("mlmon_oldest_inflight_seconds") == pytest.approx(42.0)
    release.set()
    t.join(10)
    snap = mon.snapshot()
    assert (snap.get("mlmon_inflight_calls"), snap.get("mlmon_oldest_inflight_seconds")) == (0, 0)


def test_inflight_counts_only_this_monitors_calls(clock: FakeClock) -> None:
    a = mlmon.Monitor("a", clock=clock)
    b = mlmon.Monitor("b", clock=clock)
    release, started = threading.Event(), threading.Event()

    @a.track
    def slow() -> None:
        started.set()
        release.wait(10)

    t = threading.Thread(target=slow)
    t.start()
    assert started.wait(10)
    assert a.snapshot().get("mlmon_inflight_calls") == 1
    assert b.snapshot().get("mlmon_inflight_calls") == 0
    release.set()
    t.join(10)
    a.close()
    b.close()


# -- threads --------------------------------------------------------------------------------


def test_eight_threads_count_exactly() -> None:
    m = mlmon.Monitor("threads", window=60.0, flush_interval=1.0)

    @m.track
    def predict(i: int) -> float:
        if i % 10 == 0:
            raise ValueError
        return i * 0.5

    def work() -> None:
        for i in range(100_000):
            try:
                predict(i)
            except ValueError:
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = m.snapshot()
    assert snap.get("mlmon_calls_total") == 800_000
    assert snap.get("mlmon_errors_total", error_type="ValueError") == 80_000
    assert snap.get("mlmon_rows_total") == 720_000
    # Latency details may be dropped when the draining thread is starved of the GIL; every
    # call is then either timed or counted as dropped, never both, never neither.
    timed = snap.get("mlmon_latency_seconds_count")
    assert timed + snap.get("mlmon_dropped_total", buffer="calls") == 800_000
    m.close()


# -- faults inside mlmon --------------------------------------------------------------------


def test_internal_failure_never_reaches_predict_and_is_counted_and_rate_limited(
    mon: mlmon.Monitor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in mlmon")

    monkeypatch.setattr(mon._drain, "reduce", broken)
    predict = mon.track(lambda x: x)
    with caplog.at_level(logging.WARNING, logger="mlmon"):
        for i in range(3):
            assert predict(i) == i
            mon.snapshot()
    snap = mon.snapshot()
    assert snap.get("mlmon_internal_errors_total", stage="drain") == 3  # one per drain that had data
    assert sum("bug in mlmon" in r.getMessage() for r in caplog.records) == 1


def test_full_buffer_drops_details_but_counts_every_call(clock: FakeClock) -> None:
    m = mlmon.Monitor("small", clock=clock, max_buffered_calls=100)
    predict = m.track(lambda: 0.5)
    with m._drain_lock:  # a flush holds the lock for a long time: predict must not wait
        for _ in range(250):
            predict()
    snap = m.snapshot()
    assert snap.get("mlmon_calls_total") == 250
    assert snap.get("mlmon_dropped_total", buffer="calls") == 150
    assert snap.get("mlmon_latency_seconds_count") == 100
    m.close()


def test_batch_outputs_are_bounded_by_rows_and_rows_stay_exact(clock: FakeClock) -> None:
    m = mlmon.Monitor("rows", clock=clock, max_buffered_rows=1000)
    predict = m.track(lambda n: np.zeros(n))
    with m._drain_lock:  # a long flush elsewhere: nothing can drain
        for _ in range(10):
            predict(1000)
    snap = m.snapshot()
    assert snap.get("mlmon_rows_total") == 10_000
    assert snap.get("mlmon_dropped_total", buffer="outputs") == 6  # 4 x 1000 rows were kept
    m.close()


def test_batch_outputs_wake_the_background_thread_long_before_the_predict_thread_drains(clock: FakeClock) -> None:
    # Regression: 1000-row outputs at 500 calls/s reached the row cap before the flush, and the
    # call that reached it reduced every buffered output on the predict path (12 ms p99.9).
    m = mlmon.Monitor("rows_wake", clock=clock, max_buffered_rows=1000)
    predict = m.track(lambda n: np.zeros(n))
    predict(0)  # the first call starts the background thread, which sets the wake hook
    m.snapshot()
    b = m._buffers
    wakes: list[int] = []
    inline: list[int] = []
    b.wake = lambda: wakes.append(b.obj_rows)
    b.drain_inline = lambda: inline.append(b.obj_rows)
    for _ in range(4):
        predict(100)  # 400 rows: past a quarter of the cap from the third call on
    assert wakes == [300, 400] and inline == []
    for _ in range(7):
        predict(100)  # 1,100 rows: only the call past the cap drains, and only if nothing else did
    assert inline == [1100]
    assert all(r > 250 for r in wakes)
    m.close()


def test_batch_outputs_stop_waking_a_background_thread_that_falls_behind(clock: FakeClock) -> None:
    # A predict loop that keeps the GIL starves the background thread: when the call past the
    # row cap finds it still holding the drain, calls drain themselves until the next flush.
    m = mlmon.Monitor("rows_fallback", clock=clock, max_buffered_rows=1000)
    predict = m.track(lambda n: np.zeros(n))
    predict(0)
    m.snapshot()
    b = m._buffers
    wakes: list[int] = []
    b.wake = lambda: wakes.append(b.obj_rows)
    with m._drain_lock:  # the background thread's drain, starved
        for _ in range(11):
            predict(100)
        assert b.early_wake is False
        woken = len(wakes)
        for _ in range(5):
            predict(100)
        assert len(wakes) == woken  # no more early wakes
    assert woken == 8  # 300 .. 1000 rows
    snap = m.flush()
    assert b.early_wake is True  # a reporter cycle sets it again
    assert snap.get("mlmon_rows_total") == 1600  # every row counted, none dropped
    assert snap.get("mlmon_dropped_total", buffer="outputs") is None
    m.close()


@pytest.mark.parametrize("apart_ns", [1_000_000, 1_000])
def test_feature_records_wake_the_background_thread_early_unless_calls_come_back_to_back(
    clock: FakeClock, apart_ns: int
) -> None:
    # Calls a millisecond apart (a service's requests): past a quarter of the records' soft
    # cap the background thread is woken, so that no predict call reduces them (paced one-row
    # calls: p99.99 2.7 ms -> 80 us). Calls a microsecond apart (a batch loop): not woken; the
    # calling thread reduces them at the soft cap, cheaper than handing the GIL to and fro.
    m = mlmon.Monitor("records_wake", clock=clock, max_buffered_calls=64)
    predict = m.track(features="x")(lambda x: 0.5)
    predict(np.ones(3))
    m.snapshot()
    clock.advance(1.0)
    b = m._buffers
    assert (b.soft_cap, b.gen_soft) == (16, 4)
    wakes: list[int] = []
    inline: list[int] = []
    b.wake = lambda: wakes.append(len(b.gen))
    b.drain_inline = lambda: bool(inline.append(len(b.gen))) or True
    for _ in range(16):
        predict(np.ones(3))
        clock.advance(apart_ns / 1e9)
    if apart_ns > BACK_TO_BACK_NS:
        assert b.early_wake and wakes == list(range(5, 17)) and inline == []
    else:
        assert not b.early_wake and b.gen_soft == 16 and wakes == [] and inline == []
    predict(np.ones(3))
    assert inline == [17]
    m.flush()
    assert b.early_wake and b.gen_soft == 4  # a reporter cycle turns early wakes on again
    m.close()


def test_a_call_at_the_cap_that_finds_a_drain_running_offers_it_the_gil_and_stops_early_wakes(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = mlmon.Monitor("records_starved", clock=clock, max_buffered_calls=64)
    predict = m.track(features="x")(lambda x: 0.5)
    predict(np.ones(3))
    m.snapshot()
    slept: list[float] = []
    monkeypatch.setattr(mlmon.monitor.time, "sleep", slept.append)
    b = m._buffers
    b.wake = lambda: None
    with m._drain_lock:  # the background thread's drain, starved of the GIL
        for _ in range(20):
            predict(np.ones(3))
            clock.advance(0.001)
        assert not b.early_wake and slept and set(slept) == {0}
    assert m.snapshot().get("mlmon_calls_total") == 21
    m.close()


def test_callers_arrays_are_copied_not_kept(mon: mlmon.Monitor) -> None:
    seen: list[Any] = []

    class Spy:
        def ingest(self, batch: Any) -> None:
            seen.extend(batch.outputs)

        def samples(self, now: float) -> list[Any]:
            return []

        def reset(self) -> None:
            pass

    mon._parts.append(Spy())
    buffer = np.zeros(3)

    @mon.track
    def predict(x: float) -> np.ndarray:
        buffer[:] = x  # a model that reuses its output buffer
        return buffer

    predict(1.0)
    predict(2.0)
    mon.snapshot()
    assert [list(a) for a in seen] == [[1.0] * 3, [2.0] * 3]


# -- raw timings for StatsD -----------------------------------------------------------------


class TimingsWanted:
    name = "timings"
    timing_rate = 1.0

    def __init__(self) -> None:
        self.snaps: list[Any] = []

    def emit(self, snapshot: Any) -> None:
        self.snaps.append(snapshot)

    def close(self) -> None:
        pass


def test_reporter_cycles_hand_a_bounded_uniform_sample_of_latencies(clock: FakeClock) -> None:
    em = TimingsWanted()
    m = mlmon.Monitor("timed", clock=clock, emitters=[em], max_timings=500)

    @m.track
    def predict(i: int) -> int:
        clock.advance(0.001 * (1 + i % 10))  # latencies 1..10 ms, equally often
        return i

    for i in range(5000):
        predict(i)
    assert m.snapshot().timings == ()  # snapshot() does not consume the cycle's sample
    snap = m.flush()
    assert len(snap.timings) == 500 and snap.timings_rate == 0.1
    assert set(np.round(np.array(snap.timings) * 1000).astype(int)) == set(range(1, 11))
    assert 4.0 < np.mean(snap.timings) * 1000 < 7.0  # uniform: the mean stays near 5.5 ms
    for i in range(3):
        predict(i)
    snap = m.flush()
    assert len(snap.timings) == 3 and snap.timings_rate == 1.0
    m.close()


def test_no_latency_sample_is_kept_unless_an_emitter_asks(mon: mlmon.Monitor) -> None:
    predict = mon.track(lambda: 1)
    predict()
    assert mon.flush().timings == ()
    assert not mon._want_timings
