"""StatsdEmitter(client=...) through pystatsd clients, against the real StatsD daemon (npm)
flushing to a real carbon-cache: every call is counted exactly once, alongside the
application's own metrics on the same client."""

from __future__ import annotations

from collections.abc import Callable

import servers
import statsd
from _emit_helpers import hammer, identity

import mlmon
from mlmon.emitters.statsd import StatsdEmitter
from mlmon.snapshot import Sample, Snapshot


def _cumulative(em: StatsdEmitter) -> None:
    for total, gauge in ((10, 0.5), (25, -2.5), (40, 3.0)):
        em.emit(
            Snapshot(
                "churn",
                None,
                "h:1",
                0.0,
                1.0,
                (Sample.make("mlmon_calls_total", total), Sample.make("mlmon_mean_error", gauge)),
            )
        )


def test_udp_client_totals_equal_calls(statsd_daemon: servers.StatsdDaemon) -> None:
    carbon = statsd_daemon.carbon
    client = statsd.StatsClient("127.0.0.1", statsd_daemon.port, prefix="app")
    em = StatsdEmitter(client=client, prefix="ml")
    _cumulative(em)
    mon = mlmon.Monitor("fraud", emitters=[em], flush_interval=1.0, window=10.0)
    predict = mon.track(identity)
    hammer(predict, threads=2, calls=5_000)
    for _ in range(100):
        client.incr("requests")  # the application keeps using its client
    mon.close()
    carbon.wait_for_sum(statsd_daemon.counter_path("app.ml.fraud.mlmon_calls_total"), 10_000)
    carbon.wait_for_sum(statsd_daemon.counter_path("app.ml.churn.mlmon_calls_total"), 40)
    carbon.wait_for(
        statsd_daemon.gauge_path("app.ml.churn.mlmon_mean_error"), lambda p: p[-1][1] == 3.0
    )
    carbon.wait_for_sum(statsd_daemon.counter_path("app.requests"), 100)
    assert em.stats["dropped"] == 0
    assert em.stats["unconfirmed"] == em.stats["lines"] > 0
    client.close()


def test_tcp_client_totals_equal_calls(
    statsd_factory: Callable[..., servers.StatsdDaemon], carbon: servers.Carbon
) -> None:
    daemon = statsd_factory(carbon, tcp=True)
    assert daemon.tcp_port is not None
    client = statsd.TCPStatsClient("127.0.0.1", daemon.tcp_port, prefix="app")
    em = StatsdEmitter(client=client)
    _cumulative(em)
    mon = mlmon.Monitor("fraud", emitters=[em], flush_interval=1.0, window=10.0)
    predict = mon.track(identity)
    hammer(predict, threads=2, calls=5_000)
    mon.close()
    for _ in range(50):
        client.incr("requests")
    carbon.wait_for_sum(daemon.counter_path("app.fraud.mlmon_calls_total"), 10_000, timeout=20)
    carbon.wait_for_sum(daemon.counter_path("app.churn.mlmon_calls_total"), 40)
    carbon.wait_for(daemon.gauge_path("app.churn.mlmon_mean_error"), lambda p: p[-1][1] == 3.0)
    carbon.wait_for_sum(daemon.counter_path("app.requests"), 50)
    assert em.stats["dropped"] == 0 and em.stats["unconfirmed"] == 0
    client.close()
