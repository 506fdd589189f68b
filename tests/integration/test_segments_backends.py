"""Segment series in the real backends: Prometheus (scraped, queried with segment="" and
segment!=""), carbon (a path part), and the npm StatsD daemon (a path part, counters as deltas);
hostile segment names stay one series each and inject nothing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import servers

import mlmon
from mlmon.emitters.graphite import GraphiteEmitter
from mlmon.emitters.prometheus import PrometheusEmitter
from mlmon.emitters.statsd import StatsdEmitter
from mlmon.segments import segment_name

EVIL = 'eu"} 1\nmlmon_fake{x="y'  # a label breaker and a line breaker
SEGMENTS = ["fr", "de", EVIL]


def feed(mon: mlmon.Monitor, rounds: int = 30) -> dict[str, int]:
    rng = np.random.default_rng(0)
    rows: dict[str, int] = {}
    for _ in range(rounds):
        seg = rng.choice(SEGMENTS, size=50)
        with mon.track(segment=seg) as call:
            call.outputs(rng.uniform(size=50))
        for s in seg.tolist():
            rows[segment_name(s)] = rows.get(segment_name(s), 0) + 1
    return rows


def test_prometheus_keeps_overall_and_segment_series_apart(
    prometheus_factory: Callable[..., servers.Prometheus], promtool: servers.Promtool
) -> None:
    em = PrometheusEmitter(port=0)
    mon = mlmon.Monitor("segs", emitters=[em], flush_interval=1.0, window=10.0)
    try:
        rows = feed(mon)
        mon.flush()
        ok, output = promtool.check_metrics(em.render())
        assert ok, output
        prometheus = prometheus_factory([f"127.0.0.1:{em.port}"])
        prometheus.wait_for_value('sum(mlmon_rows_total{model="segs",segment=""})', 1500)
        # Without the selector the segmented rows count twice: the reason the docs insist on it.
        prometheus.wait_for_value('sum(mlmon_rows_total{model="segs"})', 3000)
        got = {
            r["metric"]["segment"]: float(r["value"][1])
            for r in prometheus.query('sum by (segment) (mlmon_rows_total{model="segs",segment!=""})')
        }
        assert got == {k: float(v) for k, v in rows.items()}
        assert prometheus.value('count(count by (__name__) ({__name__=~"mlmon_fake.*"}))') is None
    finally:
        mon.close()


def test_carbon_stores_each_segment_under_its_path_part(carbon: servers.Carbon) -> None:
    mon = mlmon.Monitor(
        "segs", emitters=[GraphiteEmitter(carbon.host, carbon.line_port, prefix="ml")],
        flush_interval=1.0, window=10.0, instance="h1",
    )  # fmt: skip
    rows = feed(mon)
    mon.close()
    for name, n in rows.items():
        safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
        points = carbon.wait_for(f"ml.segs.h1.mlmon_rows_total.segment_{safe}", lambda p, n=n: bool(p) and p[-1][1] == n)
        assert points[-1][1] == n
    assert carbon.wait_for("ml.segs.h1.mlmon_rows_total", lambda p: bool(p) and p[-1][1] == 1500)
    assert not [m for m in carbon.list_metrics() if "fake" in m and "segment" not in m]


def test_statsd_daemon_sums_segment_counter_deltas(statsd_daemon: servers.StatsdDaemon) -> None:
    mon = mlmon.Monitor(
        "segs", emitters=[StatsdEmitter(port=statsd_daemon.port, prefix="ml")], flush_interval=1.0, window=10.0
    )
    rows = feed(mon, rounds=10)
    mon.flush()
    rows2 = feed(mon, rounds=10)
    mon.close()
    carbon = statsd_daemon.carbon
    carbon.wait_for_sum(statsd_daemon.counter_path("ml.segs.mlmon_rows_total.segment_fr"), rows["fr"] + rows2["fr"])
    carbon.wait_for_sum(statsd_daemon.counter_path("ml.segs.mlmon_rows_total"), 1000)
