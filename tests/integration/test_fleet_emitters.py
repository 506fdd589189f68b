"""The fleet snapshot through every real emitter: it lands under the fleet's identity and never
mixes with a process's own series (the leader's own and the fleet's side by side).

Two monitors of model ``fleetem`` share a real Redis; ``p0`` makes 3 calls, ``p1`` makes 5. The
leader (``p0``, which flushes first) merges both into the fleet snapshot: 8 calls.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import servers

import mlmon
from mlmon.emitters import GraphiteEmitter, PrometheusEmitter, StatsdEmitter
from mlmon.emitters import InMemoryEmitter as MemoryEmitter
from mlmon.stores import RedisStore
from mlmon.testing import FakeClock

pytestmark = pytest.mark.integration

MODEL = "fleetem"
CALLS = {"p0": 3, "p1": 5}


class Fleet2:
    """Two fleet monitors and their traffic; ``run()`` makes the calls and the two flush rounds."""

    def __init__(self, redis_url: str, emitters: Callable[[str], Sequence[Any]], **fleet: Any) -> None:
        fleet.setdefault("emit_counters", True)  # these tests follow the fleet's counters too
        self.clock = FakeClock(start=time.time())
        self.memory = {n: MemoryEmitter() for n in CALLS}
        self.mons = {
            n: mlmon.Monitor(
                MODEL, clock=self.clock, instance=n, flush_interval=10.0,
                emitters=[self.memory[n], *emitters(n)], store=RedisStore(redis_url, deadline=2.0),
                fleet=mlmon.Fleet(**fleet),
            )
            for n in CALLS
        }  # fmt: skip

    def run(self) -> mlmon.Snapshot:
        for n, calls in CALLS.items():
            predict = self.mons[n].track(lambda x: x)
            for i in range(calls):
                predict(i)
        for _ in range(2):  # round 1: every state published; round 2: the leader merges both
            for mon in self.mons.values():
                mon.flush()
            self.clock.advance(10.0)
        assert self.leader() == "p0"
        fleet = [s for s in self.memory["p0"].snapshots if s.instance == "fleet"]
        assert fleet and fleet[-1].get("mlmon_calls_total") == sum(CALLS.values())
        return fleet[-1]

    def leader(self) -> str:
        (name,) = [n for n, m in self.mons.items() if m._fleet is not None and m._fleet.leader]
        return name

    def close(self) -> None:
        for mon in self.mons.values():
            mon.close()


@pytest.fixture
def fleet2(redis_server: Any) -> Iterator[Callable[..., Fleet2]]:
    made: list[Fleet2] = []

    def make(emitters: Callable[[str], Sequence[Any]], **fleet: Any) -> Fleet2:
        f = Fleet2(redis_server.url, emitters, **fleet)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def scrape(em: PrometheusEmitter) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{em.port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def calls_by_instance(text: str) -> dict[str, float]:
    found = re.findall(r'^mlmon_calls_total\{[^}]*instance="([^"]+)"[^}]*\} (\S+)$', text, flags=re.M)
    return {inst: float(v) for inst, v in found}


def test_prometheus_the_leader_serves_its_own_series_and_the_fleets(
    fleet2: Callable[..., Fleet2], prometheus_factory: Callable[..., servers.Prometheus]
) -> None:
    endpoints = {n: PrometheusEmitter(port=0) for n in CALLS}
    f = fleet2(lambda n: [endpoints[n]])
    fleet = f.run()
    assert calls_by_instance(scrape(endpoints["p0"])) == {"p0": 3.0, "fleet": 8.0}
    assert calls_by_instance(scrape(endpoints["p1"])) == {"p1": 5.0}
    # A real Prometheus (honor_labels false: mlmon's instance becomes exported_instance)
    prom = prometheus_factory([f"127.0.0.1:{e.port}" for e in endpoints.values()])
    sel = f'model="{MODEL}"'
    prom.wait_for_value(f'mlmon_calls_total{{{sel}, exported_instance="fleet"}}', 8.0)
    # the processes' counters summed by PromQL are the fleet's counter: never add both
    prom.wait_for_value(f'sum(mlmon_calls_total{{{sel}, exported_instance!="fleet"}})', 8.0)  # every target scraped at least once
    prom.wait_for_value(f"sum(mlmon_calls_total{{{sel}}})", 16.0)  # every target scraped at least once
    targets = {r["metric"]["instance"]: float(r["value"][1]) for r in prom.query(f"count by (instance) (mlmon_calls_total{{{sel}}})")}
    assert sorted(targets.values()) == [1.0, 2.0]  # the leader's endpoint carries two identities
    processes = prom.value(f'mlmon_fleet_processes{{{sel}, exported_instance="fleet"}}')
    assert processes == fleet.get("mlmon_fleet_processes") == 2.0
    leaders = prom.value(f'sum(mlmon_fleet_leader{{{sel}, exported_instance!="fleet"}})')
    assert leaders == 1.0


def test_prometheus_with_honor_labels_keeps_the_fleet_instance(
    fleet2: Callable[..., Fleet2], prometheus_factory: Callable[..., servers.Prometheus]
) -> None:
    endpoints = {n: PrometheusEmitter(port=0) for n in CALLS}
    f = fleet2(lambda n: [endpoints[n]])
    f.run()
    prom = prometheus_factory([f"127.0.0.1:{e.port}" for e in endpoints.values()], honor_labels=True)
    sel = f'model="{MODEL}"'
    prom.wait_for_value(f'mlmon_calls_total{{{sel}, instance="fleet"}}', 8.0)
    prom.wait_for_value(f'sum(mlmon_calls_total{{{sel}, instance!="fleet"}})', 8.0)  # every target scraped at least once
    got = {r["metric"]["instance"] for r in prom.query(f"mlmon_calls_total{{{sel}}}")}
    assert got == {"p0", "p1", "fleet"}


def test_graphite_the_fleet_has_its_own_path(
    fleet2: Callable[..., Fleet2], carbon: servers.Carbon, metric_prefix: str
) -> None:
    f = fleet2(lambda n: [GraphiteEmitter("127.0.0.1", carbon.line_port, prefix=metric_prefix)])
    fleet = f.run()
    base = f"{metric_prefix}.{MODEL}"
    carbon.wait_for(f"{base}.fleet.mlmon_calls_total", lambda pts: bool(pts) and pts[-1][1] == 8.0)
    carbon.wait_for(f"{base}.fleet.mlmon_fleet_processes", lambda pts: bool(pts) and pts[-1][1] == 2.0)
    for n, calls in CALLS.items():
        carbon.wait_for(f"{base}.{n}.mlmon_calls_total", lambda pts, c=calls: bool(pts) and pts[-1][1] == c)
    carbon.settle()
    # the process's own series were never overwritten by the fleet's, nor the other way round
    assert {v for _, v in carbon.read(f"{base}.p0.mlmon_calls_total")} == {3.0}
    assert {v for _, v in carbon.read(f"{base}.fleet.mlmon_calls_total")} <= {3.0, 8.0}
    names = carbon.list_metrics()
    assert not [m for m in names if m.startswith(f"{base}.fleet.mlmon_process_")]  # the fleet has no process
    assert f"{base}.p0.mlmon_fleet_leader" in names and f"{base}.fleet.mlmon_fleet_leader" not in names
    assert fleet.get("mlmon_fleet_processes") == 2.0


def test_statsd_with_the_instance_in_the_path_the_fleet_has_its_own_path(
    fleet2: Callable[..., Fleet2], statsd_daemon: servers.StatsdDaemon, metric_prefix: str
) -> None:
    def emitters(n: str) -> list[Any]:
        return [StatsdEmitter("127.0.0.1", statsd_daemon.port, prefix=metric_prefix, instance_in_path=True)]

    f = fleet2(emitters)
    f.run()
    carbon = statsd_daemon.carbon
    base = f"{metric_prefix}.{MODEL}"
    # counters go as deltas: the fleet's sum to its own total, each process's to its own
    carbon.wait_for_sum(statsd_daemon.counter_path(f"{base}.fleet.mlmon_calls_total"), 8.0)
    for n, calls in CALLS.items():
        carbon.wait_for_sum(statsd_daemon.counter_path(f"{base}.{n}.mlmon_calls_total"), float(calls))
    carbon.wait_for(statsd_daemon.gauge_path(f"{base}.fleet.mlmon_fleet_processes"), lambda pts: bool(pts) and pts[-1][1] == 2.0)
    carbon.settle()
    assert carbon.sum_values(statsd_daemon.counter_path(f"{base}.fleet.mlmon_calls_total")) == 8.0


def test_statsd_default_paths_keep_the_fleet_apart(
    fleet2: Callable[..., Fleet2], statsd_daemon: servers.StatsdDaemon, metric_prefix: str
) -> None:
    f = fleet2(lambda n: [StatsdEmitter("127.0.0.1", statsd_daemon.port, prefix=metric_prefix)])
    f.run()  # the fleet skips an emitter that leaves the instance out of its paths
    carbon = statsd_daemon.carbon
    path = statsd_daemon.counter_path(f"{metric_prefix}.{MODEL}.mlmon_calls_total")
    carbon.wait_for(path, lambda pts: sum(v for _, v in pts) >= 8.0)
    carbon.settle()
    # StatsD sums the processes' deltas: 8 calls were made, the fleet made none of its own
    assert carbon.sum_values(path) == 8.0


def test_prometheus_a_leader_that_loses_the_lease_keeps_its_own_series(
    fleet2: Callable[..., Fleet2], redis_server: Any
) -> None:
    endpoints = {n: PrometheusEmitter(port=0) for n in CALLS}
    f = fleet2(lambda n: [endpoints[n]], lease=30.0)
    f.run()
    assert calls_by_instance(scrape(endpoints["p0"])) == {"p0": 3.0, "fleet": 8.0}
    # hand the lease to p1 in Redis (what a paused leader sees when it wakes up)
    client = redis_server.client()
    (key,) = [k for k in client.keys("*") if k.endswith(b"|fleet}:leader")]
    client.set(key, f.mons["p1"]._fleet._token, px=30_000)  # type: ignore[union-attr]
    f.mons["p0"].flush()  # p0 emits its own snapshot, then finds the lease gone
    assert f.mons["p0"]._fleet is not None and not f.mons["p0"]._fleet.leader
    assert calls_by_instance(scrape(endpoints["p0"])) == {"p0": 3.0}
