"""OtlpEmitter through the real OpenTelemetry SDK exporter (OTLP/HTTP protobuf) to a receiver
that decodes every request with the official ``opentelemetry-proto`` messages.

Exact counts, histogram buckets and sums, resource and point attributes; the ``OTEL_*``
variables; and an endpoint that is down, failing or holding requests: counted, bounded by the
emitter's deadline, never blocking predict or ``close()``.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from otlp_receiver import OtlpReceiver, attributes, metric, metrics_of

import mlmon
from mlmon.emitters.otlp import OtlpEmitter
from mlmon.snapshot import Sample, Snapshot
from mlmon.testing import FakeClock

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

# OTLP enum values (opentelemetry.proto.metrics.v1.AggregationTemporality)
CUMULATIVE = 2


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable of the machine leaks into a test."""
    import os

    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    return monkeypatch


def free_closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def run_calls(clock: FakeClock, mon: mlmon.Monitor) -> list[float]:
    """50 calls whose latencies the fake clock makes exact; one raises."""
    def predict(seconds: float) -> float:
        clock.advance(seconds)
        if seconds == 0.5:
            raise ValueError("bad input")
        return seconds

    tracked = mon.track(predict)
    latencies = [0.003] * 20 + [0.02] * 19 + [0.5] + [0.7] * 10
    for s in latencies:
        try:
            tracked(s)
        except ValueError:
            pass
    return latencies


def test_counts_buckets_and_attributes_arrive_exactly(
    receiver: OtlpReceiver, clean_otel_env: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    em = OtlpEmitter(receiver.url, timeout=5.0)
    mon = mlmon.Monitor(
        "fraud", version="v3", instance="web1:7", emitters=[em], clock=clock,
        flush_interval=60.0, window=60.0,
    )  # fmt: skip
    latencies = run_calls(clock, mon)
    snap = mon.flush()
    (request,) = receiver.wait_for(1)
    mon.close()

    (rm,) = request.resource_metrics
    res = attributes(rm.resource.attributes)
    assert res["service.name"] == "fraud"
    assert res["service.instance.id"] == "web1:7"
    assert res["service.version"] == "v3"
    assert res["telemetry.sdk.language"] == "python"
    (sm,) = rm.scope_metrics
    assert sm.scope.name == "mlmon"

    calls = metric(request, "mlmon_calls_total")
    assert calls.sum.is_monotonic and calls.sum.aggregation_temporality == CUMULATIVE
    (point,) = calls.sum.data_points
    assert point.as_double == 50.0
    assert attributes(point.attributes) == {"model": "fraud", "version": "v3"}
    assert point.time_unix_nano == int(snap.timestamp * 1e9)
    assert 0 < point.start_time_unix_nano <= point.time_unix_nano

    errors = metric(request, "mlmon_errors_total")
    (err,) = errors.sum.data_points
    assert err.as_double == 1.0
    assert attributes(err.attributes)["error_type"] == "ValueError"

    hist = metric(request, "mlmon_latency_seconds")
    assert hist.unit == "s"
    assert hist.histogram.aggregation_temporality == CUMULATIVE
    (hp,) = hist.histogram.data_points
    assert hp.count == 50
    assert math.isclose(hp.sum, math.fsum(latencies), rel_tol=1e-9)
    assert sum(hp.bucket_counts) == 50
    assert len(hp.bucket_counts) == len(hp.explicit_bounds) + 1
    # Each bucket holds the calls between its bounds: recount them from the latencies.
    bounds = list(hp.explicit_bounds)
    expected = [0] * (len(bounds) + 1)
    for s in latencies:
        expected[next((i for i, b in enumerate(bounds) if s <= b), len(bounds))] += 1
    assert list(hp.bucket_counts) == expected
    # ... and the bounds are mlmon's own `le` buckets.
    les = sorted(float(dict(s.labels)["le"]) for s in snap.select("mlmon_latency_seconds_bucket"))
    assert bounds == [b for b in les if not math.isinf(b)]
    assert not hp.HasField("min") and not hp.HasField("max")

    # Window values are gauges; the window quantiles carry `quantile` under their own name.
    ratio = metric(request, "mlmon_error_ratio")
    assert ratio.WhichOneof("data") == "gauge"
    assert ratio.gauge.data_points[0].as_double == pytest.approx(1 / 50)
    window = metric(request, "mlmon_latency_window_seconds")
    quantiles = {attributes(p.attributes)["quantile"] for p in window.gauge.data_points}
    assert {"0.5", "0.99", "1"} <= quantiles
    top = next(p for p in window.gauge.data_points if attributes(p.attributes)["quantile"] == "1")
    assert top.as_double == pytest.approx(0.7, rel=0.02)
    # Every counter of the snapshot went out as a monotonic sum, every finite gauge as a gauge.
    sent = metrics_of(request)
    for s in snap.samples:
        if s.name.startswith("mlmon_latency_seconds_") and s.name != "mlmon_latency_seconds_mean":
            continue
        name = "mlmon_latency_window_seconds" if s.name == "mlmon_latency_seconds" else s.name
        name = {"mlmon_output_count": "mlmon_output_values"}.get(name, name)
        assert name in sent, name
        assert sent[name].WhichOneof("data") == ("sum" if s.kind == "counter" else "gauge"), name


def test_cumulative_sums_keep_their_start_across_flushes(
    receiver: OtlpReceiver, clean_otel_env: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    mon = mlmon.Monitor("churn", instance="a:1", emitters=[OtlpEmitter(receiver.url)], clock=clock)
    predict = mon.track(lambda x: x)
    for _ in range(7):
        predict(1)
    mon.flush()
    clock.advance(10)
    for _ in range(5):
        predict(1)
    mon.close()  # the last flush
    first, last = receiver.wait_for(2)
    p1 = metric(first, "mlmon_calls_total").sum.data_points[0]
    p2 = metric(last, "mlmon_calls_total").sum.data_points[0]
    assert (p1.as_double, p2.as_double) == (7.0, 12.0)
    assert p1.start_time_unix_nano == p2.start_time_unix_nano
    assert p2.time_unix_nano - p1.time_unix_nano == 10 * 10**9
    res = attributes(last.resource_metrics[0].resource.attributes)
    assert "service.version" not in res  # no model version, none invented


def test_otel_environment_variables_are_honoured(
    receiver: OtlpReceiver, clean_otel_env: pytest.MonkeyPatch
) -> None:
    env = clean_otel_env
    env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url)
    env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20t0k")
    env.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    env.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment.name=prod,service.instance.id=pod-7,k8s.pod.name=pod-7",
    )
    env.setenv("OTEL_SERVICE_NAME", "scoring-api")
    mon = mlmon.Monitor("fraud", version="v3", instance="web1:7", emitters=[OtlpEmitter()])
    predict = mon.track(lambda x: x)
    for _ in range(3):
        predict(1)
    mon.close()
    (request,) = receiver.wait_for(1)
    headers = receiver.headers[0]
    assert headers["x-tenant"] == "acme"
    assert headers["authorization"] == "Bearer t0k"
    assert headers["content-encoding"] == "gzip"
    res = attributes(request.resource_metrics[0].resource.attributes)
    assert res["service.name"] == "scoring-api"  # OTEL_SERVICE_NAME over the model name
    assert res["service.instance.id"] == "pod-7"  # OTEL_RESOURCE_ATTRIBUTES over mlmon's
    assert res["deployment.environment.name"] == "prod"
    assert res["service.version"] == "v3"
    # The model stays on every point, whatever the service is called.
    point = metric(request, "mlmon_calls_total").sum.data_points[0]
    assert attributes(point.attributes) == {"model": "fraud", "version": "v3"}
    assert point.as_double == 3.0


def test_code_arguments_win_over_the_environment(
    receiver: OtlpReceiver, clean_otel_env: pytest.MonkeyPatch
) -> None:
    clean_otel_env.setenv("OTEL_SERVICE_NAME", "from-env")
    clean_otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=env")
    em = OtlpEmitter(
        receiver.url, service_name="from-code", resource_attributes={"team": "code"},
        headers={"x-key": "k"},
    )  # fmt: skip
    em.emit(Snapshot("m", None, "h:1", 1.0, 60.0, (Sample.make("mlmon_calls_total", 1),)))
    em.close()
    (request,) = receiver.wait_for(1)
    res = attributes(request.resource_metrics[0].resource.attributes)
    assert (res["service.name"], res["team"]) == ("from-code", "code")
    assert receiver.headers[0]["x-key"] == "k"


def test_an_endpoint_that_is_down_is_counted_and_bounded(clean_otel_env: pytest.MonkeyPatch) -> None:
    port = free_closed_port()
    em = OtlpEmitter(f"http://127.0.0.1:{port}/v1/metrics", timeout=1.0)
    mon = mlmon.Monitor("down", emitters=[em], flush_interval=60.0, window=60.0)
    predict = mon.track(lambda x: x)
    predict(1)
    t0 = time.monotonic()
    mon.flush()
    assert time.monotonic() - t0 < 1.0 + 0.5
    snap = mon.snapshot()
    assert snap.get("mlmon_emit_errors_total", emitter="otlp") == 1.0
    assert snap.get("mlmon_dropped_total", buffer="otlp") == 1.0
    assert em.stats["failures"] + em.stats["timeouts"] == 1
    t0 = time.monotonic()
    mon.close()
    assert time.monotonic() - t0 < mon.close_timeout + 0.5


@pytest.mark.parametrize("status", [400, 503])
def test_an_error_status_is_a_counted_failure(status: int, clean_otel_env: pytest.MonkeyPatch) -> None:
    with OtlpReceiver(mode=status) as r:
        em = OtlpEmitter(r.url, timeout=1.0)
        snap = Snapshot("m", None, "h:1", 1.0, 60.0, (Sample.make("mlmon_calls_total", 1),))
        t0 = time.monotonic()
        with pytest.raises((OSError, TimeoutError)):
            em.emit(snap)
        assert time.monotonic() - t0 < 1.0 + 0.5
        assert r.received >= 1
        assert em.self_metrics()[0] == ("mlmon_dropped_total", 1.0, {"buffer": "otlp"})
        em.close()


def test_a_collector_that_never_answers_blocks_neither_predict_nor_close(
    clean_otel_env: pytest.MonkeyPatch,
) -> None:
    with OtlpReceiver(mode="hold") as r:
        em = OtlpEmitter(r.url, timeout=0.5)
        mon = mlmon.Monitor(
            "held", emitters=[em], flush_interval=60.0, window=60.0, emit_timeout=5.0, close_timeout=2.0
        )
        predict = mon.track(lambda x: x)
        predict(1)
        flushed = threading.Event()
        t0 = time.monotonic()

        def flush() -> None:
            mon.flush()
            flushed.set()

        flusher = threading.Thread(target=flush)
        flusher.start()
        r.wait_received(1)
        # The export hangs on the collector: predict calls go on meanwhile.
        p0 = time.perf_counter()
        for _ in range(1000):
            predict(1)
        assert time.perf_counter() - p0 < 0.5
        assert flushed.wait(3.0)
        flusher.join()
        assert time.monotonic() - t0 < 0.5 + 0.5  # the emitter's own deadline, not emit_timeout
        # The next flush is held too (or skipped, if the first export still runs): bounded,
        # counted.
        t1 = time.monotonic()
        mon.flush()
        assert time.monotonic() - t1 < 0.5 + 0.5
        snap = mon.snapshot()
        assert snap.get("mlmon_emit_errors_total", emitter="otlp") == 2.0
        assert snap.get("mlmon_dropped_total", buffer="otlp") == 2.0
        assert em.stats["timeouts"] + em.stats["skipped"] == 2 and em.stats["exports"] == 0
        assert snap.get("mlmon_calls_total") == 1001.0
        t2 = time.monotonic()
        mon.close()
        assert time.monotonic() - t2 < 2.0 + 0.3


def test_the_otlp_url_builds_the_emitter(
    receiver: OtlpReceiver, clean_otel_env: pytest.MonkeyPatch
) -> None:
    clean_otel_env.setenv("MLMON_EMITTERS", f"otlp://127.0.0.1:{receiver.port}?timeout=2")
    mon = mlmon.configure(model="via_env", instance="h:9")
    try:
        (em,) = mon.emitters
        assert isinstance(em, OtlpEmitter) and em.endpoint == receiver.url and em.timeout == 2.0
        predict = mlmon.track(lambda x: x)
        predict(1)
        predict(2)
    finally:
        mon.close()
    (request,) = receiver.wait_for(1)
    assert metric(request, "mlmon_calls_total").sum.data_points[0].as_double == 2.0


def test_series_that_cannot_be_encoded_are_left_out_and_counted(
    receiver: OtlpReceiver, clean_otel_env: pytest.MonkeyPatch
) -> None:
    em = OtlpEmitter(receiver.url)
    em.emit(
        Snapshot("m", None, "h:1", 1.0, 60.0, (
            Sample.make("mlmon_calls_total", 4),
            Sample("mlmon_feature_mean", (("feature", "bad\ud800"),), 1.0),
            Sample.make("mlmon_feature_mean", math.inf, feature="inf"),
            Sample.make("mlmon_feature_mean", 2.5, feature="ok"),
        ))
    )  # fmt: skip
    em.close()
    (request,) = receiver.wait_for(1)
    points = metric(request, "mlmon_feature_mean").gauge.data_points
    assert [(attributes(p.attributes)["feature"], p.as_double) for p in points] == [("ok", 2.5)]
    assert ("mlmon_dropped_total", 2.0, {"buffer": "otlp_series"}) in em.self_metrics()


def test_configuration_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        OtlpEmitter("ftp://collector/v1/metrics")
    with pytest.raises(ValueError, match="timeout"):
        OtlpEmitter(timeout=0)
    with pytest.raises(ValueError, match="service_name"):
        OtlpEmitter(service_name="")
    with pytest.raises(ValueError, match="resource_attributes"):
        OtlpEmitter(resource_attributes={"a": object()})  # type: ignore[dict-item]


def test_monitors_share_one_emitter_until_the_last_closes(
    receiver: OtlpReceiver, clean_otel_env: pytest.MonkeyPatch
) -> None:
    em = OtlpEmitter(receiver.url)
    fraud = mlmon.Monitor("fraud", instance="w:1", emitters=[em])
    churn = mlmon.Monitor("churn", instance="w:1", emitters=[em])
    with pytest.raises(ValueError, match="already uses this OtlpEmitter"):
        mlmon.Monitor("fraud", instance="w:1", emitters=[em])
    fraud.track(lambda x: x)(1)
    churn.track(lambda x: x)(1)
    churn.track(lambda x: x)(1)
    fraud.close()
    churn.flush()  # still exporting after the other monitor closed
    churn.close()
    requests = receiver.wait_for(3)
    seen = {}
    for request in requests:
        rm = request.resource_metrics[0]
        name = attributes(rm.resource.attributes)["service.name"]
        seen[name] = metric(request, "mlmon_calls_total").sum.data_points[0].as_double
    assert seen == {"fraud": 1.0, "churn": 2.0}
    with pytest.raises(RuntimeError, match="closed"):
        em.emit(Snapshot("x", None, "h:1", 1.0, 60.0, ()))


def test_the_timeout_comes_from_the_otel_variables(clean_otel_env: pytest.MonkeyPatch) -> None:
    assert OtlpEmitter("http://127.0.0.1:9/v1/metrics").timeout == 5.0
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2.5")
    assert OtlpEmitter("http://127.0.0.1:9/v1/metrics").timeout == 2.5
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0.75")
    assert OtlpEmitter("http://127.0.0.1:9/v1/metrics").timeout == 0.75
    assert OtlpEmitter("http://127.0.0.1:9/v1/metrics", timeout=3).timeout == 3.0  # code wins
    clean_otel_env.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"):
        OtlpEmitter("http://127.0.0.1:9/v1/metrics")
