"""StatsdEmitter against the real StatsD daemon (npm) flushing to a real carbon-cache.

Totals are read back from whisper: the sum of every ``stats_counts.*`` point is the number of
calls the daemon counted, which must equal the calls made, across threads and forked processes.
DNS is the one thing simulated (a resolver that answers what the test says), so that a name can
be unresolvable and then resolve, or point at a closed port and then at the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import servers
from _emit_helpers import SAFE_PATH, DnsTable, fake_dns, half, hammer, identity, run_forked

import mlmon
import mlmon.emitters.statsd as statsd_mod
from mlmon.emitters.statsd import StatsdEmitter
from mlmon.snapshot import Sample, Snapshot


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[DnsTable]:
    """Names the emitters resolve: ``dns[name] = (ip, port)``, or None for "no such host"."""
    yield fake_dns(monkeypatch, statsd_mod)


def test_counter_deltas_and_gauges_arrive_exactly(statsd_daemon: servers.StatsdDaemon) -> None:
    carbon = statsd_daemon.carbon
    em = StatsdEmitter(port=statsd_daemon.port, prefix="ml")
    for total, gauge in ((10, 0.5), (25, -2.5), (40, 3.0)):
        em.emit(
            Snapshot(
                "fraud",
                None,
                "h:1",
                0.0,
                1.0,
                (Sample.make("mlmon_calls_total", total), Sample.make("mlmon_mean_error", gauge)),
            )
        )
    em.close()
    carbon.wait_for_sum(statsd_daemon.counter_path("ml.fraud.mlmon_calls_total"), 40)
    carbon.wait_for(
        statsd_daemon.gauge_path("ml.fraud.mlmon_mean_error"), lambda p: p[-1][1] == 3.0
    )


def test_negative_gauge_is_stored_negative(statsd_daemon: servers.StatsdDaemon) -> None:
    em = StatsdEmitter(port=statsd_daemon.port)
    em.emit(Snapshot("fraud", None, "h:1", 0.0, 1.0, (Sample.make("mlmon_mean_error", 4.0),)))
    em.emit(Snapshot("fraud", None, "h:1", 0.0, 1.0, (Sample.make("mlmon_mean_error", -5.0),)))
    em.close()
    points = statsd_daemon.carbon.wait_for(
        statsd_daemon.gauge_path("fraud.mlmon_mean_error"), lambda p: bool(p)
    )
    assert points[-1][1] == -5.0  # not 4 - 5 = -1: the zero came first


def test_threads_total_through_statsd_equals_calls(statsd_daemon: servers.StatsdDaemon) -> None:
    mon = mlmon.Monitor(
        "fraud",
        emitters=[StatsdEmitter(port=statsd_daemon.port, prefix="ml")],
        flush_interval=1.0,
        window=10.0,
    )
    predict = mon.track(half)
    hammer(predict, threads=4, calls=25_000)
    mon.close()
    carbon = statsd_daemon.carbon
    carbon.wait_for_sum(
        statsd_daemon.counter_path("ml.fraud.mlmon_calls_total"), 100_000, timeout=20
    )
    carbon.wait_for_sum(
        statsd_daemon.counter_path("ml.fraud.mlmon_latency_seconds_bucket.le_inf"), 100_000
    )
    carbon.wait_for_sum(statsd_daemon.counter_path("ml.fraud.mlmon_latency_seconds_count"), 100_000)


def test_forked_processes_total_through_statsd_equals_calls(
    statsd_daemon: servers.StatsdDaemon,
) -> None:
    mon = mlmon.Monitor(
        "fraud",
        emitters=[StatsdEmitter(port=statsd_daemon.port, prefix="ml")],
        flush_interval=1.0,
        window=10.0,
    )
    predict = mon.track(half)
    predict(1.0)  # the parent's own call, and its reporter, exist before the fork

    def child() -> None:
        for _ in range(10_000):
            predict(1.0)
        mon.close()

    run_forked(4, child)
    mon.close()
    statsd_daemon.carbon.wait_for_sum(
        statsd_daemon.counter_path("ml.fraud.mlmon_calls_total"), 40_001, timeout=20
    )


def test_tcp_protocol_total_equals_calls(
    statsd_factory: Callable[..., servers.StatsdDaemon], carbon: servers.Carbon
) -> None:
    daemon = statsd_factory(carbon, tcp=True)
    assert daemon.tcp_port is not None
    mon = mlmon.Monitor(
        "fraud",
        emitters=[StatsdEmitter(port=daemon.tcp_port, protocol="tcp")],
        flush_interval=1.0,
        window=10.0,
    )
    predict = mon.track(identity)
    hammer(predict, threads=2, calls=5_000)
    mon.close()
    carbon.wait_for_sum(daemon.counter_path("fraud.mlmon_calls_total"), 10_000, timeout=20)


def test_unresolvable_name_then_closed_port_are_counted_and_recover(
    statsd_daemon: servers.StatsdDaemon, dns: dict[str, tuple[str, int] | None]
) -> None:
    dns["statsd.test"] = None  # no such host yet
    mon = mlmon.Monitor(
        "fraud",
        emitters=[StatsdEmitter("statsd.test", 8125, prefix="ml")],
        flush_interval=60.0,
        window=60.0,
    )
    predict = mon.track(identity)
    for _ in range(100):
        predict(1.0)
    mon.flush()
    snap = mon.snapshot()
    assert snap.get("mlmon_emit_errors_total", emitter="statsd") == 1.0
    lost = snap.get("mlmon_dropped_total", buffer="statsd")
    assert lost is not None and lost > 0

    dns["statsd.test"] = ("127.0.0.1", servers.free_port("udp"))  # resolves; nothing listens
    for _ in range(100):
        predict(1.0)
    mon.flush()
    snap = mon.snapshot()
    assert snap.get("mlmon_emit_errors_total", emitter="statsd") == 2.0
    assert (snap.get("mlmon_dropped_total", buffer="statsd") or 0.0) > lost

    dns["statsd.test"] = ("127.0.0.1", statsd_daemon.port)  # and now the daemon answers there
    for _ in range(100):
        predict(1.0)
    mon.close()
    # Counter deltas that could not be sent were carried: the daemon counted every call.
    statsd_daemon.carbon.wait_for_sum(statsd_daemon.counter_path("ml.fraud.mlmon_calls_total"), 300)


def test_evil_names_reach_statsd_and_carbon_only_as_safe_paths(
    statsd_daemon: servers.StatsdDaemon,
) -> None:
    with pytest.raises(ValueError, match="name"):
        mlmon.Monitor("fraud model\nevil.metric 1 0")
    em = StatsdEmitter(
        port=statsd_daemon.port, prefix="ml", instance_in_path=True, version_in_path=True
    )
    mon = mlmon.Monitor(
        "fraud",
        version="v 1;x=y",
        instance="web 1;x=y evil.metric 1 0",
        emitters=[em],
        flush_interval=60.0,
        window=60.0,
    )
    evil_error = type("Evil Error\nevil.metric 1 0", (Exception,), {})

    @mon.track(features="X")
    def predict(X: Any) -> float:
        if X is None:
            raise evil_error("boom")
        return 0.5

    for i in range(10):
        predict({"a b;c=d": float(i), "x.y\nevil.metric 1 0": 1.0})
    with pytest.raises(evil_error):
        predict(None)
    mon.close()
    # The same names straight from a snapshot, whatever the monitor's components emit.
    em2 = StatsdEmitter(port=statsd_daemon.port, prefix="ml")
    em2.emit(
        Snapshot(
            "fraud model\nevil.metric 1 0",
            None,
            "h:1",
            0.0,
            1.0,
            (Sample.make("mlmon_feature_mean", 1.0, feature="a b;c=d"),),
        )
    )
    em2.close()
    carbon = statsd_daemon.carbon
    carbon.wait_for(
        statsd_daemon.counter_path(
            "ml.fraud.v_1_x_y.web_1_x_y_evil_metric_1_0.mlmon_errors_total.error_type_Evil_Error_evil_metric_1_0"
        )
    )
    carbon.wait_for(
        statsd_daemon.gauge_path(
            "ml.fraud_model_evil_metric_1_0.mlmon_feature_mean.feature_a_b_c_d"
        )
    )
    names = carbon.list_metrics()
    assert not [n for n in names if "evil" in n and not n.startswith(("stats.", "stats_counts."))]
    for name in names:
        assert SAFE_PATH.fullmatch(name), name
    assert not any(n.startswith("evil") for n in names)
