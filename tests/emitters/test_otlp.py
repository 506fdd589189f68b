"""OtlpEmitter with an SDK exporter that hangs: the skip path, close's bound, fork.

The wire format is tested against a decoding receiver in tests/integration/test_emit_otlp.py.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics.export import MetricExportResult

from mlmon.emitters.otlp import OtlpEmitter, snapshot_metrics
from mlmon.snapshot import Sample, Snapshot


class Hanging:
    """An exporter whose export waits until released (a collector that never answers)."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.calls = 0
        self.shutdowns = 0

    def export(self, data: Any, timeout_millis: float | None = None, **kw: Any) -> MetricExportResult:
        self.calls += 1
        self.go.wait(10.0)
        return MetricExportResult.SUCCESS

    def shutdown(self, timeout_millis: float | None = None, **kw: Any) -> None:
        self.shutdowns += 1
        self.go.wait(10.0)


def snap(calls: float = 1.0) -> Snapshot:
    return Snapshot("m", None, "h:1", 1.0, 60.0, (Sample.make("mlmon_calls_total", calls),))


def test_a_hung_export_makes_later_emits_skip_at_once_and_count() -> None:
    hang = Hanging()
    em = OtlpEmitter(exporter=hang, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        em.emit(snap())
    assert 0.2 <= time.monotonic() - t0 < 0.6
    t1 = time.monotonic()
    with pytest.raises(TimeoutError, match="still running"):
        em.emit(snap())
    assert time.monotonic() - t1 < 0.1
    assert hang.calls == 1  # never two exports at once
    assert em.stats == {"exports": 0, "failures": 0, "timeouts": 1, "skipped": 1, "bad_series": 0}
    assert ("mlmon_dropped_total", 2.0, {"buffer": "otlp"}) in em.self_metrics()
    hang.go.set()
    for _ in range(100):  # the helper thread ends once released
        if not em.busy:
            break
        time.sleep(0.01)
    em.emit(snap())
    assert em.stats["exports"] == 1


def test_close_is_bounded_when_the_exporter_hangs() -> None:
    hang = Hanging()
    em = OtlpEmitter(exporter=hang, timeout=0.2)
    t0 = time.monotonic()
    em.close()
    assert time.monotonic() - t0 < 0.6
    assert hang.shutdowns == 1
    em.close()  # idempotent
    assert hang.shutdowns == 1
    with pytest.raises(RuntimeError, match="closed"):
        em.emit(snap())
    hang.go.set()


def test_a_failed_export_raises_and_counts() -> None:
    class Failing:
        def export(self, data: Any, timeout_millis: float | None = None, **kw: Any) -> MetricExportResult:
            return MetricExportResult.FAILURE

        def shutdown(self, timeout_millis: float | None = None, **kw: Any) -> None:
            pass

    em = OtlpEmitter(exporter=Failing())
    with pytest.raises(OSError, match="failed"):
        em.emit(snap())
    assert em.stats["failures"] == 1
    em.close()


def test_the_start_time_renews_when_the_counter_goes_back() -> None:
    class Keep:
        def __init__(self) -> None:
            self.data: list[Any] = []

        def export(self, data: Any, timeout_millis: float | None = None, **kw: Any) -> MetricExportResult:
            self.data.append(data)
            return MetricExportResult.SUCCESS

        def shutdown(self, timeout_millis: float | None = None, **kw: Any) -> None:
            pass

    keep = Keep()
    em = OtlpEmitter(exporter=keep)
    for t, calls in ((1.0, 5), (2.0, 9), (3.0, 2)):  # a restart between the 2nd and the 3rd
        em.emit(Snapshot("m", None, "h:1", t, 60.0, (Sample.make("mlmon_calls_total", calls),)))
    starts = [
        d.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0].start_time_unix_nano
        for d in keep.data
    ]
    assert starts == [1_000_000_000, 1_000_000_000, 3_000_000_000]
    em.close()


def test_histogram_from_cumulative_buckets_with_an_explicit_inf_bucket() -> None:
    s = Snapshot("m", None, "h:1", 1.0, 60.0, (
        Sample.make("mlmon_latency_seconds_bucket", 1, le="0.01"),
        Sample.make("mlmon_latency_seconds_bucket", 4, le="0.1"),
        Sample.make("mlmon_latency_seconds_bucket", 4, le="1"),
        Sample.make("mlmon_latency_seconds_bucket", 6, le="+Inf"),
        Sample.make("mlmon_latency_seconds_sum", 3.5),
    ))  # fmt: skip
    (m,), bad = snapshot_metrics(s, 0)
    (p,) = m.data.data_points
    assert (list(p.explicit_bounds), list(p.bucket_counts), p.count, p.sum, bad) == (
        [0.01, 0.1, 1.0], [1, 3, 0, 2], 6, 3.5, 0,
    )  # fmt: skip


def test_a_forked_child_builds_its_own_exporter() -> None:
    em = OtlpEmitter("http://127.0.0.1:9/v1/metrics")
    parent = em._exporter
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            em.after_fork()
            os.write(w, b"1" if em._exporter is not parent else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    os.waitpid(pid, 0)
    assert em._exporter is parent
    em.close()


def test_close_ends_the_emitters_threads() -> None:
    class Ok:
        def export(self, data: Any, timeout_millis: float | None = None, **kw: Any) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def shutdown(self, timeout_millis: float | None = None, **kw: Any) -> None:
            pass

    em = OtlpEmitter(exporter=Ok(), name="otlp_threads")
    for i in range(3):
        em.emit(snap(i))
    assert [t for t in threading.enumerate() if t.name == "mlmon-otlp_threads-export"]
    em.close()
    for _ in range(200):
        if not [t for t in threading.enumerate() if t.name.startswith("mlmon-otlp_threads-")]:
            break
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate() if t.name.startswith("mlmon-otlp_threads-")] == []


def test_monitors_sharing_the_emitter_take_turns_instead_of_skipping() -> None:
    class Slow:
        def __init__(self) -> None:
            self.active = 0
            self.most = 0
            self.calls = 0
            self.lock = threading.Lock()

        def export(self, data: Any, timeout_millis: float | None = None, **kw: Any) -> MetricExportResult:
            with self.lock:
                self.active += 1
                self.calls += 1
                self.most = max(self.most, self.active)
            time.sleep(0.05)
            with self.lock:
                self.active -= 1
            return MetricExportResult.SUCCESS

        def shutdown(self, timeout_millis: float | None = None, **kw: Any) -> None:
            pass

    slow = Slow()
    em = OtlpEmitter(exporter=slow, timeout=2.0)
    errors: list[BaseException] = []

    def flush(model: str) -> None:
        try:
            em.emit(Snapshot(model, None, "h:1", 1.0, 60.0, (Sample.make("mlmon_calls_total", 1),)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flush, args=(f"m{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and slow.calls == 4 and slow.most == 1
    assert em.stats["exports"] == 4 and em.stats["skipped"] == 0
    em.close()
