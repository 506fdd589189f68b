"""GraphiteEmitter against real carbon-caches (and carbon-c-relay), read back from whisper.

Counters are cumulative per process, on per-instance paths: the sum over instances of the last
stored value is the number of calls. Outages are real (carbon not running, carbon restarted);
only name resolution is simulated, so the emitter can follow carbon to its new port after a
restart the way it would follow a DNS change.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import servers
import whisper
from _emit_helpers import SAFE_PATH, DnsTable, fake_dns, half, hammer, identity, run_forked

import mlmon
import mlmon.emitters._net as net_mod
from mlmon.emitters.graphite import GraphiteEmitter
from mlmon.emitters.memory import InMemoryEmitter
from mlmon.snapshot import Sample, Snapshot


def instance_paths(carbon: servers.Carbon, model_path: str, metric: str) -> list[str]:
    pattern = re.compile(rf"{re.escape(model_path)}\.[^.]+\.{re.escape(metric)}")
    return [n for n in carbon.list_metrics() if pattern.fullmatch(n)]


def total_over_instances(carbons: list[servers.Carbon], model_path: str, metric: str) -> float:
    total = 0.0
    for carbon in carbons:
        for path in instance_paths(carbon, model_path, metric):
            last = carbon.last_value(path)
            total += last or 0.0
    return total


def wait_total(
    carbons: list[servers.Carbon],
    model_path: str,
    metric: str,
    expected: float,
    timeout: float = 20,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = total_over_instances(carbons, model_path, metric)
        if got == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{model_path}.*.{metric}: total {got}, expected {expected}")
        time.sleep(0.2)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[DnsTable]:
    """Names the emitters resolve: ``dns[name] = (ip, port)``, or None for "no such host"."""
    yield fake_dns(monkeypatch, net_mod)


def test_snapshot_lines_are_stored_with_the_snapshot_timestamp(carbon: servers.Carbon) -> None:
    now = int(time.time()) - 5
    em = GraphiteEmitter(carbon.host, carbon.line_port, prefix="ml")
    em.emit(Snapshot("fraud", None, "h:1", now + 0.7, 1.0, (Sample.make("mlmon_calls_total", 7),)))
    em.emit(Snapshot("fraud", None, "h:1", now + 1.2, 1.0, (Sample.make("mlmon_calls_total", 9),)))
    em.close()
    points = carbon.wait_for("ml.fraud.h_1.mlmon_calls_total", lambda p: len(p) == 2)
    assert points == [(now, 7.0), (now + 1, 9.0)]


def test_pickle_protocol(carbon: servers.Carbon) -> None:
    now = int(time.time())
    em = GraphiteEmitter(carbon.host, carbon.pickle_port, protocol="pickle")
    em.emit(Snapshot("fraud", None, "h:1", now, 1.0, (Sample.make("mlmon_error_ratio", 0.25),)))
    em.close()
    assert carbon.wait_for("fraud.h_1.mlmon_error_ratio") == [(now, 0.25)]


def test_tagged_series_are_stored_by_carbon(carbon: servers.Carbon) -> None:
    now = int(time.time())
    em = GraphiteEmitter(carbon.host, carbon.line_port, prefix="ml", tags=True)
    em.emit(
        Snapshot(
            "fraud",
            "v1",
            "h:1",
            now,
            1.0,
            (Sample.make("mlmon_feature_mean", 2.5, feature="a b;c=d"),),
        )
    )
    em.close()

    # carbon parses the tags, sorts them and files the series under the hash of that name.
    name = "ml.mlmon_feature_mean;feature=a_b_c_d;instance=h_1;model=fraud;version=v1"
    digest = hashlib.sha256(name.encode()).hexdigest()
    wsp = carbon.data_dir / "_tagged" / digest[:3] / digest[3:6] / f"{digest}.wsp"
    deadline = time.monotonic() + 15
    while not wsp.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    (_, _, _), values = whisper.fetch(str(wsp), 0, None)
    assert [v for v in values if v is not None] == [2.5]


def test_threads_total_in_graphite_equals_calls(carbon: servers.Carbon) -> None:
    mon = mlmon.Monitor(
        "fraud",
        emitters=[GraphiteEmitter(carbon.host, carbon.line_port, prefix="ml")],
        flush_interval=1.0,
        window=10.0,
    )
    predict = mon.track(half)
    hammer(predict, threads=4, calls=25_000)
    mon.close()
    wait_total([carbon], "ml.fraud", "mlmon_calls_total", 100_000)
    wait_total([carbon], "ml.fraud", "mlmon_latency_seconds_count", 100_000)


def test_forked_processes_each_own_a_path_and_sum_to_the_calls(carbon: servers.Carbon) -> None:
    mon = mlmon.Monitor(
        "fraud",
        emitters=[GraphiteEmitter(carbon.host, carbon.line_port, prefix="ml")],
        flush_interval=1.0,
        window=10.0,
    )
    predict = mon.track(half)
    predict(1.0)

    def child() -> None:
        for _ in range(10_000):
            predict(1.0)
        mon.close()

    run_forked(4, child)
    mon.close()
    wait_total([carbon], "ml.fraud", "mlmon_calls_total", 40_001)
    assert len(instance_paths(carbon, "ml.fraud", "mlmon_calls_total")) == 5


def test_two_replicas_through_carbon_relay_land_on_exactly_one_store_each(
    carbon_pair: tuple[servers.Carbon, servers.Carbon],
    carbon_relay_factory: Callable[..., servers.CarbonRelay],
) -> None:
    relay = carbon_relay_factory(list(carbon_pair))
    monitors = [
        mlmon.Monitor(
            "fraud",
            instance=f"replica-{i}",
            emitters=[GraphiteEmitter(relay.host, relay.port, prefix="ml")],
            flush_interval=1.0,
            window=10.0,
        )
        for i in range(2)
    ]
    predicts = [mon.track(identity) for mon in monitors]
    hammer(predicts[0], threads=2, calls=3_000)
    hammer(predicts[1], threads=2, calls=2_000)
    for mon in monitors:
        mon.close()
    stores = list(carbon_pair)
    wait_total(stores, "ml.fraud", "mlmon_calls_total", 10_000)
    # Let the last writes settle, then check placement: every series on exactly one store.
    for store in stores:
        store.settle()
    names = [set(store.list_metrics()) for store in stores]
    assert names[0] and names[1]
    assert not names[0] & names[1]
    assert {n.split(".")[2] for n in names[0] | names[1]} == {"replica-0", "replica-1"}


def test_carbon_down_at_start_gets_everything_once_it_is_up(
    carbon_factory: Callable[..., servers.Carbon], dns: dict[str, tuple[str, int] | None]
) -> None:
    dns["carbon.test"] = ("127.0.0.1", servers.free_port())  # carbon is not running yet
    memory = InMemoryEmitter()
    em = GraphiteEmitter("carbon.test", 2003, prefix="ml", reconnect_min=0.5, reconnect_max=1.0)
    mon = mlmon.Monitor("fraud", emitters=[em, memory], flush_interval=1.0, window=10.0)
    predict = mon.track(identity)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            predict(1.0)
            time.sleep(0.001)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(10.0)
        outage = [int(s.timestamp) for s in memory.snapshots]
        assert em.buffered > 0
        carbon = carbon_factory()
        dns["carbon.test"] = (carbon.host, carbon.line_port)
        time.sleep(2.0)
    finally:
        stop.set()
        worker.join()
    mon.close()
    final = memory.snapshots[-1].get("mlmon_calls_total")
    path = f"ml.fraud.{mon.instance.replace(':', '_')}.mlmon_calls_total"
    points = carbon.wait_for(path, lambda p: bool(p) and p[-1][1] == final)
    stored = {t for t, _ in points}
    assert len(outage) >= 8
    assert set(outage) <= stored  # every flush made during the outage arrived, on time
    assert em.stats["dropped"] == 0


def test_carbon_restart_mid_run_loses_nothing_that_was_buffered(
    carbon: servers.Carbon, dns: dict[str, tuple[str, int] | None]
) -> None:
    dns["carbon.test"] = (carbon.host, carbon.line_port)
    memory = InMemoryEmitter()
    em = GraphiteEmitter("carbon.test", 2003, prefix="ml", reconnect_min=0.2, reconnect_max=0.5)
    mon = mlmon.Monitor("fraud", emitters=[em, memory], flush_interval=1.0, window=10.0)
    predict = mon.track(identity)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            predict(1.0)
            time.sleep(0.001)

    worker = threading.Thread(target=traffic)
    worker.start()
    path = f"ml.fraud.{mon.instance.replace(':', '_')}.mlmon_calls_total"
    try:
        carbon.wait_for(path, timeout=10)
        down_at = time.time()
        carbon.stop()
        time.sleep(3.0)
        carbon.start()  # new ports: the emitter follows the name
        dns["carbon.test"] = (carbon.host, carbon.line_port)
        time.sleep(2.0)
    finally:
        stop.set()
        worker.join()
    mon.close()
    final = memory.snapshots[-1].get("mlmon_calls_total")
    points = carbon.wait_for(path, lambda p: bool(p) and p[-1][1] == final)
    stored = {t for t, _ in points}
    # Lines sent while carbon was down were buffered and arrived after the restart.
    # (Points carbon had received but not yet written when it was stopped are carbon's loss.)
    while_down = [int(s.timestamp) for s in memory.snapshots if s.timestamp > down_at + 0.5]
    assert len(while_down) >= 4
    assert set(while_down) <= stored
    assert em.stats["dropped"] == 0


def test_evil_names_reach_carbon_only_as_safe_paths(carbon: servers.Carbon) -> None:
    with pytest.raises(ValueError, match="name"):
        mlmon.Monitor("fraud model\nevil.metric 1 0")
    with pytest.raises(ValueError, match="instance"):
        mlmon.Monitor("fraud", instance="web 1\nevil.metric 1 0")
    em = GraphiteEmitter(carbon.host, carbon.line_port, prefix="ml", version_in_path=True)
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
    em2 = GraphiteEmitter(carbon.host, carbon.line_port, prefix="ml")
    em2.emit(
        Snapshot(
            "fraud model\nevil.metric 1 0",
            None,
            "h:1",
            time.time(),
            1.0,
            (Sample.make("mlmon_feature_mean", 1.0, feature="a b;c=d"),),
        )
    )
    em2.close()
    carbon.wait_for(
        "ml.fraud.v_1_x_y.web_1_x_y_evil_metric_1_0.mlmon_errors_total.error_type_Evil_Error_evil_metric_1_0"
    )
    carbon.wait_for("ml.fraud_model_evil_metric_1_0.h_1.mlmon_feature_mean.feature_a_b_c_d")
    names = carbon.list_metrics()
    for name in names:
        assert SAFE_PATH.fullmatch(name), name
        assert name.startswith("ml."), name  # nothing injected a path of its own
