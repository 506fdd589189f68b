"""Nothing mlmon does on the caller's thread raises into it, and one bad item costs only itself."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlmon
from mlmon.testing import FakeClock


class Shaped:
    """Array-like objects whose shape numpy-style code cannot use (TensorFlow, dask)."""

    def __init__(self, shape: tuple[Any, ...]) -> None:
        self.shape = shape

    def copy(self) -> Shaped:
        return self


class Hostile:
    """An object whose len(), copy() and attributes all raise."""

    def __len__(self) -> int:
        raise RuntimeError("len")

    def copy(self) -> Hostile:
        raise RuntimeError("copy")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"attribute {name}")


class LazyFrame:
    """Like polars.LazyFrame: columns, but no length until collected."""

    columns = ("a", "b")

    def __len__(self) -> int:
        raise TypeError("a lazy frame has no length")


HOSTILE = [Shaped((None, 3)), Shaped((math.nan, 3)), Shaped(()), Hostile(), LazyFrame(), 10**400, "x" * 10_000]


@pytest.fixture
def mon() -> Any:
    m = mlmon.Monitor("hard", clock=FakeClock(), task=mlmon.BinaryClassification())
    yield m
    m.close()


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_a_predict_returning_a_huge_int_returns_it_and_counts_it_invalid(mon: Any, value: int) -> None:
    assert mon.track(lambda: value)() == value

    async def apredict() -> int:
        return value

    assert asyncio.run(mon.track(apredict)()) == value
    snap = mon.snapshot()
    assert (snap.get("mlmon_calls_total"), snap.get("mlmon_output_invalid_total")) == (2.0, 2.0)


@pytest.mark.parametrize("obj", HOSTILE, ids=lambda o: type(o).__name__)
def test_hostile_features_ids_and_outputs_never_reach_the_caller(mon: Any, obj: Any) -> None:
    with mon.track(features=obj, ids=obj) as call:
        call.outputs(obj)
    _ = call.ids
    predict = mon.track(features="x", ids="i", outputs=lambda r: obj)(lambda x, i: 0.5)
    assert predict(obj, obj) == 0.5
    assert mon.track(lambda: obj)() is obj
    assert mon.snapshot().get("mlmon_calls_total") == 3.0


@pytest.mark.parametrize("obj", HOSTILE, ids=lambda o: type(o).__name__)
def test_one_hostile_call_among_many_costs_only_itself(obj: Any) -> None:
    def run(with_bad: bool) -> Any:
        m = mlmon.Monitor("many", clock=FakeClock(), task=mlmon.BinaryClassification())
        predict = m.track(features="x", ids="i")(lambda x, i, out: out)
        for i in range(501):
            bad = with_bad and i == 250
            predict(obj if bad else np.array([0.1, i % 7]), i, obj if bad else 0.25 + (i % 2) / 2)
        m.log_feedback(list(range(501)), [i % 2 for i in range(501)])
        snap = m.snapshot()
        m.close()
        return snap

    clean, dirty = run(False), run(True)
    assert dirty.get("mlmon_calls_total") == 501.0
    assert dirty.get("mlmon_output_count") == clean.get("mlmon_output_count") - 1
    assert dirty.get("mlmon_output_invalid_total") == 1.0
    assert dirty.get("mlmon_labels_total") == 500.0  # the bad call's prediction was not stored
    assert dirty.get("mlmon_feature_mean", feature="f1") == pytest.approx(
        np.mean([i % 7 for i in range(501) if i != 250])
    )


def test_one_huge_int_label_costs_only_itself_without_a_task() -> None:
    m = mlmon.Monitor("labels", clock=FakeClock())
    predict = m.track(ids="i")(lambda x, i: x)
    for i in range(10):
        predict(0.5, i)
    m.log_feedback(list(range(10)), [0.5] * 5 + [10**400] + [0.5] * 4)
    m.log_feedback(["missing"], [10**400])
    snap = m.snapshot()
    assert (snap.get("mlmon_labels_total"), snap.get("mlmon_labels_unmatched_total")) == (10.0, 1.0)
    m.close()


def test_one_unreadable_label_costs_only_itself_with_a_task() -> None:
    m = mlmon.Monitor("labels2", clock=FakeClock(), task=mlmon.BinaryClassification())
    predict = m.track(ids="i")(lambda x, i: x)
    for i in range(10):
        predict(0.9, i)
    m.log_feedback(list(range(10)), [1] * 5 + [Hostile()] + [1] * 4)
    snap = m.snapshot()
    assert (snap.get("mlmon_labels_total"), snap.get("mlmon_labels_invalid_total")) == (9.0, 1.0)
    m.close()


junk = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(10**500), max_value=10**500),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
        st.sampled_from(HOSTILE),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=2)),
    max_leaves=6,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.tuples(junk, junk, junk), min_size=1, max_size=8), form=st.sampled_from(["fast", "general", "with"]))
def test_no_output_features_or_ids_raise_and_calls_stay_exact(values: list[Any], form: str) -> None:
    m = mlmon.Monitor("junk", clock=FakeClock(), task=mlmon.BinaryClassification())
    fast = m.track(lambda out: out)
    general = m.track(features="x", ids="i")(lambda out, x, i: out)
    for out, x, i in values:
        if form == "fast":
            assert fast(out) is out
        elif form == "general":
            assert general(out, x, i) is out
        else:
            with m.track(features=x, ids=i) as call:
                call.outputs(out)
    m.log_feedback([i for _, _, i in values], [o for o, _, _ in values])
    assert m.snapshot().get("mlmon_calls_total") == len(values)
    m.close()


# -- memory bounded in bytes, bounded work on the predict path -------------------------------


def test_buffered_features_stay_under_the_byte_cap_and_every_call_still_counts() -> None:
    cap = 4 << 20
    m = mlmon.Monitor("bytes", clock=FakeClock(), max_buffer_bytes=cap)
    predict = m.track(features="X")(lambda X: X[:, 0])
    batch = np.ones((100, 20))  # 16 KB of features and 800 B of outputs per call
    with m._drain_lock:  # a drain held up elsewhere: nothing can be drained
        for _ in range(2000):  # 33 MB offered
            predict(batch)
        buffered = m._buffers.bytes
        records = m._buffers.pending_records
    assert buffered <= cap
    assert records <= cap // batch.nbytes + 1  # past the cap a call leaves no record behind
    snap = m.snapshot()
    assert (snap.get("mlmon_calls_total"), snap.get("mlmon_rows_total")) == (2000.0, 200_000.0)
    dropped = snap.get("mlmon_dropped_total", buffer="details")
    kept = snap.get("mlmon_output_count")
    assert dropped is not None and dropped > 0
    assert kept == (2000 - dropped) * 100
    assert snap.get("mlmon_latency_seconds_count") == 2000.0  # latency is never dropped for bytes
    m.close()


def test_a_call_that_fills_the_buffer_drains_one_bounded_chunk_not_everything() -> None:
    m = mlmon.Monitor("chunk", clock=FakeClock(), max_buffer_bytes=8 << 20)
    predict = m.track(features="X")(lambda X: 0.5)
    # No background thread: it would drain everything as soon as the lock is released, racing
    # the inline drain this test measures.
    scheduler, m._scheduler = m._scheduler, None
    if scheduler is not None:
        scheduler.stop(5.0)
    b = m._buffers
    batch = np.ones((100, 20))
    with m._drain_lock:
        for _ in range(300):  # about 4.9 MB: past half the cap, so the next call drains inline
            predict(batch)
    before = b.pending_records
    predict(batch)  # the lock is free now: this call drains one chunk inline
    after = b.pending_records
    assert before - after + 1 <= b.chunk_bytes // batch.nbytes + 1  # one bounded chunk of work
    assert after > 0  # the rest is left to the background thread
    assert m.snapshot().get("mlmon_calls_total") == 301.0
    m.close()


def test_the_byte_cap_is_checked_at_configuration() -> None:
    with pytest.raises(ValueError, match="max_buffer_bytes"):
        mlmon.Monitor("cap", max_buffer_bytes=1000)


def test_one_track_object_reused_for_several_blocks_keeps_each_blocks_ids() -> None:
    m = mlmon.Monitor("reuse", clock=FakeClock(), task=mlmon.BinaryClassification())
    t = m.track()
    seen = []
    for score in (0.9, 0.1, 0.8):
        with t as call:
            call.outputs(score)
            seen.append(list(call.ids))
    assert len({i for ids in seen for i in ids}) == 3
    m.log_feedback([ids[0] for ids in seen], [1, 0, 0])
    snap = m.snapshot()
    assert (snap.get("mlmon_labels_total"), snap.get("mlmon_precision")) == (3.0, 0.5)
    m.close()


# -- misuse that should not be silent --------------------------------------------------------


def test_decorating_twice_with_the_same_monitor_warns_and_counts_once(mon: Any) -> None:
    once = mon.track(lambda x: x)
    with pytest.warns(UserWarning, match="already tracked"):
        twice = mon.track(once)
    assert twice is once
    twice(1.0)
    other = mlmon.Monitor("other", clock=FakeClock())
    both = other.track(once)  # another monitor may track the same function
    both(1.0)
    assert (mon.snapshot().get("mlmon_calls_total"), other.snapshot().get("mlmon_calls_total")) == (2.0, 1.0)
    other.close()


def test_a_streaming_predict_is_timed_to_its_last_item_with_time_to_first_item() -> None:
    clock = FakeClock()
    m = mlmon.Monitor("stream", clock=clock)

    @m.track
    def generate(n: int) -> Any:
        clock.advance(0.2)  # before the first token
        for i in range(n):
            yield f"tok{i}"
            clock.advance(0.05)

    assert list(generate(5)) == [f"tok{i}" for i in range(5)]
    snap = m.snapshot()
    assert snap.get("mlmon_calls_total") == 1.0
    assert snap.get("mlmon_latency_seconds", quantile="1") == pytest.approx(0.45, rel=0.02)
    assert snap.get("mlmon_time_to_first_item_seconds", quantile="1") == pytest.approx(0.2, rel=0.02)
    assert (snap.get("mlmon_stream_items_total"), snap.get("mlmon_stream_items_mean")) == (5.0, 5.0)
    assert snap.get("mlmon_output_invalid_total") == 0.0
    m.close()


def test_a_stream_that_raises_is_counted_by_type_and_reraised_and_an_abandoned_one_is_not_an_error() -> None:
    m = mlmon.Monitor("stream_err", clock=FakeClock())

    @m.track
    def generate() -> Any:
        yield 1
        raise KeyError("boom")

    g = generate()
    assert next(g) == 1
    with pytest.raises(KeyError, match="boom"):
        next(g)
    abandoned = generate()
    next(abandoned)
    abandoned.close()  # the consumer stopped early (a client hung up)
    snap = m.snapshot()
    assert snap.get("mlmon_calls_total") == 2.0
    assert snap.get("mlmon_errors_total", error_type="KeyError") == 1.0
    assert snap.get("mlmon_stream_items_total") == 2.0
    m.close()


def test_an_async_streaming_predict_is_tracked() -> None:
    m = mlmon.Monitor("astream", clock=FakeClock())

    @m.track
    async def generate(n: int) -> Any:
        for i in range(n):
            yield i

    async def consume() -> list[int]:
        return [i async for i in generate(3)]

    assert asyncio.run(consume()) == [0, 1, 2]
    snap = m.snapshot()
    assert (snap.get("mlmon_calls_total"), snap.get("mlmon_stream_items_total")) == (1.0, 3.0)
    m.close()


def test_string_outputs_the_task_cannot_read_are_said_once(caplog: pytest.LogCaptureFixture) -> None:
    m = mlmon.Monitor("strings", clock=FakeClock(), task=mlmon.BinaryClassification())
    predict = m.track(lambda: "spam")
    with caplog.at_level("WARNING", logger="mlmon"):
        for _ in range(3):
            predict()
            m.snapshot()
    assert sum("cannot read them" in r.getMessage() for r in caplog.records) == 1
    assert m.snapshot().get("mlmon_output_invalid_total") == 3.0
    m.close()


def test_feedback_before_any_prediction_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    m = mlmon.Monitor("early", clock=FakeClock(), task=mlmon.BinaryClassification())
    with caplog.at_level("WARNING", logger="mlmon"):
        m.log_feedback(["a"], [1])
        m.log_feedback(["b"], [0])
    assert sum("before any prediction" in r.getMessage() for r in caplog.records) == 1
    assert m.snapshot().get("mlmon_labels_unmatched_total") == 2.0
    m.close()


# -- lifecycle --------------------------------------------------------------------------------


def test_a_monitor_dropped_without_close_warns_and_flushes_what_it_has() -> None:
    import gc

    from mlmon.testing import InMemoryEmitter

    mem = InMemoryEmitter()
    m = mlmon.Monitor("dropped", emitters=[mem], clock=FakeClock())
    m.track(lambda: 1.0)()
    with pytest.warns(ResourceWarning, match="not closed"):
        del m
        gc.collect()
    assert mem.closed
    assert mem.snapshots and mem.snapshots[-1].get("mlmon_calls_total") == 1.0


def test_monitors_sharing_one_prometheus_emitter_close_independently() -> None:
    import urllib.request

    from mlmon.emitters import PrometheusEmitter

    em = PrometheusEmitter(port=0, host="127.0.0.1")
    a = mlmon.Monitor("fraud", emitters=[em], clock=FakeClock())
    b = mlmon.Monitor("churn", emitters=[em], clock=FakeClock())
    with pytest.raises(ValueError, match="fraud"):
        mlmon.Monitor("fraud", emitters=[em], clock=FakeClock(), instance=a.instance)
    a.track(lambda: 1.0)()
    b.track(lambda: 1.0)()
    a.flush()
    b.flush()
    a.close()  # the endpoint keeps serving the other monitor
    with urllib.request.urlopen(f"http://127.0.0.1:{em.port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert 'model="churn"' in body
    assert 'model="fraud"' not in body  # the closed monitor's series are released
    b.close()


def test_a_call_in_flight_at_close_shows_in_the_final_snapshot() -> None:
    import threading

    from mlmon.testing import InMemoryEmitter

    mem = InMemoryEmitter()
    m = mlmon.Monitor("inflight_close", emitters=[mem], clock=FakeClock())
    entered, release = threading.Event(), threading.Event()

    @m.track
    def predict() -> float:
        entered.set()
        release.wait(10)
        return 1.0

    worker = threading.Thread(target=predict)
    worker.start()
    assert entered.wait(10)
    m.close()
    release.set()
    worker.join(10)
    assert mem.snapshots[-1].get("mlmon_inflight_calls") == 1.0  # documented: seen, never completed


def test_tracking_through_an_unconfigured_default_monitor_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    from mlmon import _default

    with _default._lock:
        old, _default._default = _default._default, None
    try:
        with caplog.at_level("WARNING", logger="mlmon"):
            mlmon.get_monitor()
            mlmon.get_monitor()
        assert sum("configure() has not set up" in r.getMessage() for r in caplog.records) == 1
    finally:
        mlmon.get_monitor().close()
        with _default._lock:
            _default._default = old


class Opaque:
    """An object even whose ``__class__`` lookup raises."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


def test_an_object_whose_every_attribute_raises_costs_only_its_own_call(mon: Any) -> None:
    fast = mon.track(lambda x: x)
    general = mon.track(features="x", ids="i")(lambda x, i: x)
    bad = Opaque()
    assert fast(bad) is bad
    assert general(bad, bad) is bad
    with mon.track(features=bad, ids=bad) as call:
        call.outputs(bad)
    for _ in range(10):
        fast(0.5)
    snap = mon.snapshot()
    assert snap.get("mlmon_calls_total") == 13.0
    assert snap.get("mlmon_output_count") == 10.0
