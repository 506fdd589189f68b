"""PrometheusEmitter against the real Prometheus server, promtool and Pushgateway.

Prometheus scrapes every process's endpoint; ``sum(mlmon_calls_total)`` over the targets must
equal the calls made, across threads and forked processes. Prometheus keeps its own ``instance``
label (the scrape target), so mlmon's process identity arrives as ``exported_instance`` unless the
scrape job sets ``honor_labels``.
"""

from __future__ import annotations

import os
import select
import time
import urllib.request
from collections.abc import Callable

import pytest
import servers
from _emit_helpers import half, hammer, identity

import mlmon
from mlmon.emitters.prometheus import PrometheusEmitter, render_exposition
from mlmon.snapshot import CATALOG, Sample, Snapshot


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def every_catalog_metric(model: str, version: str | None, instance: str) -> Snapshot:
    samples = []
    for name, info in CATALOG.items():
        if "le" in info.labels:
            samples += [
                Sample.make(name, v, le=le) for le, v in (("0.1", 1), ("1", 3), ("+Inf", 4))
            ]
        elif "quantile" in info.labels:
            samples += [Sample.make(name, q, quantile=str(q)) for q in (0.5, 0.99, 1)]
        elif info.labels:
            samples.append(Sample.make(name, 0.5, **{info.labels[0]: 'we"ird\\value\nx'}))
        else:
            samples.append(Sample.make(name, 4 if name.endswith("_count") else 0.25))
    return Snapshot(model, version, instance, time.time(), 60.0, tuple(samples))


def test_every_catalog_metric_passes_promtool(promtool: servers.Promtool) -> None:
    text = render_exposition(
        [
            every_catalog_metric("fraud", "v1", "web1:7"),
            every_catalog_metric("spam", None, "web1:7"),
        ]
    )
    ok, output = promtool.check_metrics(text)
    assert ok, output


def test_a_real_monitor_endpoint_passes_promtool(promtool: servers.Promtool) -> None:
    em = PrometheusEmitter(port=0)
    mon = mlmon.Monitor(
        "fraud", version="2024-06-01", emitters=[em], flush_interval=60.0, window=60.0
    )

    @mon.track
    def predict(x: float) -> float:
        if x < 0:
            raise ValueError("negative")
        return x

    for i in range(100):
        predict(float(i))
    with pytest.raises(ValueError):
        predict(-1.0)
    mon.flush()
    text = scrape(em.url)
    mon.close()
    assert 'mlmon_calls_total{model="fraud",version="2024-06-01"' in text
    ok, output = promtool.check_metrics(text)
    assert ok, output


def test_threads_total_in_prometheus_equals_calls(
    prometheus_factory: Callable[..., servers.Prometheus],
) -> None:
    em = PrometheusEmitter(port=0)
    mon = mlmon.Monitor("fraud", emitters=[em], flush_interval=1.0, window=10.0)
    predict = mon.track(half)
    try:
        hammer(predict, threads=4, calls=25_000)
        mon.flush()
        prometheus = prometheus_factory([f"127.0.0.1:{em.port}"])
        prometheus.wait_for_value('sum(mlmon_calls_total{model="fraud"})', 100_000)
        prometheus.wait_for_value('sum(mlmon_latency_seconds_count{model="fraud"})', 100_000)
        buckets = prometheus.query('mlmon_latency_seconds_bucket{model="fraud",le="+Inf"}')
        assert [float(b["value"][1]) for b in buckets] == [100_000.0]
        assert buckets[0]["metric"]["exported_instance"] == mon.instance
        p99 = prometheus.value(
            'histogram_quantile(0.99, sum by (le) (mlmon_latency_seconds_bucket{model="fraud"}))'
        )
        assert p99 is not None and 0 < p99 < 1
        window = prometheus.query('mlmon_latency_window_seconds{model="fraud",quantile="0.99"}')
        assert len(window) == 1
    finally:
        mon.close()


def test_forked_processes_each_serve_and_sum_to_the_calls(
    prometheus_factory: Callable[..., servers.Prometheus],
) -> None:
    em = PrometheusEmitter(port=0)
    mon = mlmon.Monitor("fraud", emitters=[em], flush_interval=1.0, window=10.0)
    predict = mon.track(half)
    predict(1.0)
    port_r, port_w = os.pipe()
    done_r, done_w = os.pipe()
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(port_r)
                os.close(done_w)  # or the other children's EOF never comes
                for _ in range(10_000):
                    predict(1.0)
                mon.flush()
                os.write(port_w, f"{em.port}\n".encode())
                select.select([done_r], [], [], 60.0)  # serve until the parent is done
                mon.close()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(port_w)
    os.close(done_r)
    try:
        with os.fdopen(port_r) as f:
            ports = [int(f.readline()) for _ in range(4)]
        assert len({em.port, *ports}) == 5  # every process has its own endpoint
        mon.flush()
        prometheus = prometheus_factory([f"127.0.0.1:{p}" for p in (em.port, *ports)])
        prometheus.wait_for_value('sum(mlmon_calls_total{model="fraud"})', 40_001)
        per_process = prometheus.query('mlmon_calls_total{model="fraud"}')
        assert sorted(float(r["value"][1]) for r in per_process) == [1.0] + [10_000.0] * 4
    finally:
        os.close(done_w)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
        mon.close()
    assert [os.waitstatus_to_exitcode(s) for s in statuses] == [0] * 4


# -- Pushgateway ----------------------------------------------------------------------------------


@pytest.fixture
def pushgateway(pushgateway_url: str) -> str:
    """A real Pushgateway on a free loopback port, with a persistence file of its own."""
    return pushgateway_url


def test_push_to_a_real_pushgateway(pushgateway: str) -> None:
    em = PrometheusEmitter(port=0, push_url=pushgateway, job="mlmon")
    mon = mlmon.Monitor("fraud", instance="web1:7", emitters=[em], flush_interval=60.0, window=60.0)
    predict = mon.track(identity)
    for _ in range(42):
        predict(1.0)
    mon.flush()
    assert not mon.snapshot().get("mlmon_emit_errors_total", emitter="prometheus")
    for _ in range(8):
        predict(1.0)
    mon.close()
    text = scrape(f"{pushgateway}/metrics")
    line = next(x for x in text.splitlines() if x.startswith("mlmon_calls_total{"))
    assert 'instance="web1:7"' in line and 'job="mlmon"' in line and 'model="fraud"' in line
    assert line.endswith(" 50")
    assert (
        'mlmon_latency_window_seconds{instance="web1:7",job="mlmon",model="fraud",quantile="0.99"}'
        in text
    )
    assert (
        'mlmon_latency_seconds_bucket{instance="web1:7",job="mlmon",model="fraud",le="+Inf"} 50'
        in text
    )


def test_hostile_names_never_stop_a_shared_endpoint(
    prometheus_factory: Callable[..., servers.Prometheus], promtool: servers.Promtool
) -> None:
    em = PrometheusEmitter(port=0)
    em.open("fraud", None, "h:1")
    em.open("churn", None, "h:1")
    try:
        hostile = ["\ud800", "a\x00b", "x" * 5000, "tail\udfff"]
        em.emit(
            Snapshot(
                "fraud",
                None,
                "h:1",
                time.time(),
                60.0,
                (
                    *(Sample.make("mlmon_feature_mean", 1.0, feature=v) for v in hostile),
                    Sample.make("mlmon_feature_mean", 2.0, feature='new\nline "q"'),
                    Sample.make("mlmon_calls_total", 7),
                ),
            )
        )
        em.emit(
            Snapshot(
                "churn", None, "h:1", time.time(), 60.0, (Sample.make("mlmon_calls_total", 5),)
            )
        )
        text = scrape(em.url)
        ok, output = promtool.check_metrics(text)
        assert ok, output
        assert em.stats["bad_series"] == len(hostile)
        prometheus = prometheus_factory([f"127.0.0.1:{em.port}"])
        prometheus.wait_for_value("sum(mlmon_calls_total)", 12)
        weird = prometheus.query("mlmon_feature_mean")
        assert [w["metric"]["feature"] for w in weird] == ['new\nline "q"']
        em.release("fraud", None, "h:1")  # fraud's monitor closes: churn keeps its endpoint
        assert 'model="fraud"' not in scrape(em.url)
        prometheus.wait_for_value("sum(mlmon_calls_total)", 5)
    finally:
        em.release("churn", None, "h:1")
