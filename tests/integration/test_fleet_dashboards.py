"""The fleet row of the generated dashboards returns the fleet's data from the real backends.

Three monitors of model ``fleetdash`` (a binary task, two features against a reference) share a
real Redis with ``fleet=Fleet()``; a fourth process of the same model with another configuration
publishes a state the leader rejects (reason ``config``). Each of the three sends to carbon
(``GraphiteEmitter``) and serves a ``PrometheusEmitter`` endpoint, scraped by two real
Prometheus servers: one with ``honor_labels: false`` (mlmon's instance kept as
``exported_instance``), one with ``honor_labels: true``. The leader emits the fleet snapshot to
the same emitters.

Then every target of the fleet dashboards runs against graphite-web and both Prometheus servers
and must return data; the fleet row's values must be the fleet snapshot's, and the process
panels must leave the fleet out (three processes reporting, not four; the processes' calls,
summed, equal the fleet's calls).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np
import pytest
import servers
from conftest import require, skip_or_fail
from redis_servers import RedisServer, missing_redis
from test_grafana_dashboards import (
    graphite_series,
    prometheus_series,
    run_all,
    substitute,
    targets,
    with_data,
)

import mlmon
from mlmon import alerts
from mlmon.emitters import GraphiteEmitter, PrometheusEmitter
from mlmon.emitters import InMemoryEmitter as MemoryEmitter
from mlmon.export.grafana import dashboard
from mlmon.stores import RedisStore
from mlmon.testing import FakeClock

pytestmark = pytest.mark.integration

MODEL = "fleetdash"
FEATURES = ("age", "income")
PREFIX = "fd"
PROCESSES = ("pa:1", "pb:2", "pc:3")
ROUNDS = 30
RULE = alerts.Threshold("mlmon_up", above=0.5, name="always_up")
FLUSH = 60.0  # longer than the ROUNDS fake seconds: the reporter never flushes on its own
GRAPHITE_VARS = {"$model": MODEL, "$instance": "*", "$feature": "{" + ",".join(FEATURES) + "}"}
PROMETHEUS_VARS = {"$__rate_interval": "10s", "$model": MODEL, "$instance": ".*", "$feature": "|".join(FEATURES)}


@attrs.define
class Stack:
    carbon: servers.Carbon
    web: servers.GraphiteWeb
    prometheus: servers.Prometheus  # honor_labels: false
    honoring: servers.Prometheus  # honor_labels: true
    fleet: mlmon.Snapshot  # the last fleet snapshot
    own_calls: float  # the three processes' calls


def serve(mons: list[mlmon.Monitor], odd: mlmon.Monitor, clock: FakeClock) -> None:
    rng = np.random.default_rng(3)
    for k in range(ROUNDS):
        for r, mon in enumerate([*mons, odd]):
            ids = np.arange(40) + (k * 4 + r) * 40
            X = rng.normal(loc=(0.0, 0.2 * r), size=(40, 2))
            scores = 1.0 / (1.0 + np.exp(-X[:, 0]))
            try:
                with mon.track(ids=ids, features=X) as call:
                    if k % 9 == 4 and r == 1:
                        raise ValueError("bad request")
                    call.outputs(scores)
            except ValueError:
                continue
            mon.log_feedback(ids[:30], (scores[:30] + rng.normal(0, 0.2, 30) > 0.5).astype(int))
        for mon in [*mons, odd]:
            mon.flush()
        clock.advance(1.0)
        time.sleep(0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for server in ("carbon", "graphite-web", "prometheus"):
        require(server)
    reason = missing_redis()
    if reason is not None:
        skip_or_fail(reason)
    started: list[Any] = []
    mons: list[mlmon.Monitor] = []
    try:
        redis = RedisServer(tmp_path_factory.mktemp("redis"))
        redis.start()
        started.append(redis)
        carbon = servers.Carbon(tmp_path_factory.mktemp("carbon")).start()
        started.append(carbon)
        web = servers.GraphiteWeb(carbon, tmp_path_factory.mktemp("graphite-web"))
        endpoints = [PrometheusEmitter(port=0) for _ in PROCESSES]
        addresses = [f"127.0.0.1:{e.port}" for e in endpoints]
        prometheus = servers.Prometheus(addresses, tmp_path_factory.mktemp("prometheus"))
        honoring = servers.Prometheus(addresses, tmp_path_factory.mktemp("prometheus-h"), honor_labels=True)
        errors: list[BaseException] = []

        def start(daemon: Any) -> None:
            try:
                daemon.start()
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(d,)) for d in (web, prometheus, honoring)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        started += [web, prometheus, honoring]
        if errors:
            raise errors[0]

        rng = np.random.default_rng(0)
        train = rng.normal(size=(2000, 2))
        reference = mlmon.Reference.from_data(
            train, feature_names=list(FEATURES), outputs=1.0 / (1.0 + np.exp(-train[:, 0]))
        )
        # FakeClock from the past up to now: carbon takes no point from the future
        clock = FakeClock(start=time.time() - ROUNDS - 5)
        memory = [MemoryEmitter() for _ in PROCESSES]
        for name, endpoint, mem in zip(PROCESSES, endpoints, memory, strict=True):
            mons.append(mlmon.Monitor(
                MODEL, task=mlmon.BinaryClassification(), reference=reference, window=60.0,
                flush_interval=FLUSH, clock=clock, instance=name,
                emitters=[mem, GraphiteEmitter("127.0.0.1", carbon.line_port, prefix=PREFIX), endpoint],
                store=RedisStore(redis.url, deadline=2.0), fleet=mlmon.Fleet(lease=10.0, state_ttl=2 * FLUSH, emit_counters=True),
                rules=[RULE], alert_sinks=[],
            ))  # fmt: skip
        # another configuration (no reference): the leader rejects its state, reason "config"
        odd = mlmon.Monitor(
            MODEL, task=mlmon.BinaryClassification(), window=60.0, flush_interval=FLUSH, clock=clock,
            instance="odd:9", emitters=[], store=RedisStore(redis.url, deadline=2.0),
            fleet=mlmon.Fleet(lease=10.0, state_ttl=2 * FLUSH, emit_counters=True),
        )  # fmt: skip
        mons.append(odd)
        # Prometheus scrapes in real time: the rounds are paced so that it sees the counters grow
        for prom in (prometheus, honoring):
            prom.wait_for_targets_up()
        serve(mons[:3], odd, clock)
        # The leader flushes first in each round, so its merge has the others' states of the
        # round before: one more round without traffic, and it has everybody's last state.
        for mon in mons:
            mon.flush()
        leaders = [m for m in mons if m._fleet is not None and m._fleet.leader]
        assert len(leaders) == 1 and leaders[0] is mons[0]
        fleet = [s for s in memory[0].snapshots if s.instance == "fleet"][-1]
        assert [s.labels for s in fleet.samples if s.name == "mlmon_fleet_states_rejected_total"] == [(("reason", "config"),)]
        own = sum(float(m.snapshot().get("mlmon_calls_total") or 0.0) for m in mons[:3])
        # every backend has the last fleet snapshot before the queries run
        carbon.wait_for(f"{PREFIX}.{MODEL}.fleet.mlmon_calls_total", lambda pts: bool(pts) and pts[-1][1] == fleet.get("mlmon_calls_total"))
        for prom, label in ((prometheus, "exported_instance"), (honoring, "instance")):
            prom.wait_for_value(f'mlmon_calls_total{{model="{MODEL}", {label}="fleet"}}', float(fleet.get("mlmon_calls_total") or 0))
            # and each process's own last values (their targets are scraped apart from the leader's)
            prom.wait_for_value(f'sum(mlmon_calls_total{{model="{MODEL}", instance!="fleet", exported_instance!="fleet"}})', own)
            # two scrapes of the final values at least, for rate()
            prom.wait_for_query(f'count_over_time(mlmon_fleet_processes{{model="{MODEL}", {label}="fleet"}}[1m])',
                                lambda r: bool(r) and float(r[0]["value"][1]) >= 3)  # fmt: skip
        yield Stack(carbon, web, prometheus, honoring, fleet, own)
    finally:
        for mon in mons:
            mon.close()
        servers.stop_all(reversed(started))


def fleet_targets(board: dict[str, Any], key: str, values: dict[str, str]) -> dict[str, list[str]]:
    """Panel title -> its substituted queries, for the panels of the Fleet row."""
    out: dict[str, list[str]] = {}
    inside = False
    for p in board["panels"]:
        if p["type"] == "row":
            inside = p["title"] == "Fleet"
        elif inside:
            out[p["title"]] = [substitute(t[key], values) for t in p["targets"]]
    return out


def value_of(snap: mlmon.Snapshot, name: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    (v,) = [s.value for s in snap.samples if s.name == name and tuple(sorted(s.labels)) == want]
    return float(v)


def expected_values(fleet: mlmon.Snapshot) -> dict[str, list[float]]:
    """The values each fleet-row panel must show last: the fleet snapshot's."""
    v = lambda name, **kw: value_of(fleet, name, **kw)  # noqa: E731
    return {
        "Processes merged": [v("mlmon_fleet_processes")],
        "Fleet snapshot: precision / recall / F1": [v("mlmon_precision"), v("mlmon_recall"), v("mlmon_f1")],
        "Fleet snapshot: latency": [v("mlmon_latency_seconds", quantile=q) for q in ("0.5", "0.9", "0.99")],
        "Fleet snapshot: calls / s": [v("mlmon_calls_per_second"), v("mlmon_rows_per_second")],
        "Fleet snapshot: error ratio and availability": [v("mlmon_error_ratio"), v("mlmon_availability_ratio")],
        "Fleet snapshot: output mean and variance": [v("mlmon_output_mean"), v("mlmon_output_variance")],
        "Merge time": [v("mlmon_fleet_merge_seconds")],
    }


# ---------------------------------------------------------------------------------------------
# Prometheus, both ways of keeping mlmon's instance
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("honor", [False, True], ids=["exported_instance", "instance"])
def test_prometheus_fleet_dashboard_every_target_has_data(stack: Stack, honor: bool) -> None:
    prom = stack.honoring if honor else stack.prometheus
    board = dashboard("prometheus", MODEL, features=FEATURES, fleet="fleet")
    results = run_all(board, lambda e: prometheus_series(prom, e), "expr", PROMETHEUS_VARS)
    empty = [f"{t}: {e}" for (t, e), s in results.items() if not with_data(s)]
    assert [] == empty, "\n".join(empty)
    # the fleet's targets are one series each (one fleet, whichever process leads)
    fleet = fleet_targets(board, "expr", PROMETHEUS_VARS)
    for title, exprs in fleet.items():
        if title.startswith("Fleet snapshot") and "drift" not in title:
            for e in exprs:
                assert len(results[(title, e)]) == 1, (title, e)


@pytest.mark.parametrize("honor", [False, True], ids=["exported_instance", "instance"])
def test_prometheus_fleet_row_shows_the_fleet_snapshot(stack: Stack, honor: bool) -> None:
    prom = stack.honoring if honor else stack.prometheus
    board = dashboard("prometheus", MODEL, features=FEATURES, fleet="fleet")
    fleet = fleet_targets(board, "expr", PROMETHEUS_VARS)
    for title, want in expected_values(stack.fleet).items():
        got = [prom.value(e) for e in fleet[title]]
        assert got == pytest.approx(want, rel=1e-9), title
    (outputs, features) = fleet["Fleet snapshot: drift (PSI)"]
    assert prom.value(outputs) == pytest.approx(value_of(stack.fleet, "mlmon_output_drift_psi"), rel=1e-9)
    by_feature = {r["metric"]["feature"]: float(r["value"][1]) for r in prom.query(features)}
    assert by_feature == pytest.approx({f: value_of(stack.fleet, "mlmon_feature_drift_psi", feature=f) for f in FEATURES}, rel=1e-9)
    assert prom.value(fleet["Leaders"][0]) == 1.0
    assert prom.value(fleet["Processes reaching the store"][0]) == len(PROCESSES)
    (rejected,) = fleet["States rejected / s by reason"]
    assert {r["metric"]["reason"] for r in prom.query(rejected)} == {"config"}
    leader = {r["metric"]["instance"]: float(r["value"][1]) for r in prom.query(fleet["Leader by process"][0])}
    assert sorted(leader.values()) == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("honor", [False, True], ids=["exported_instance", "instance"])
def test_prometheus_process_panels_leave_the_fleet_out(stack: Stack, honor: bool) -> None:
    prom = stack.honoring if honor else stack.prometheus
    with_fleet = dashboard("prometheus", MODEL, fleet="fleet")
    without = dashboard("prometheus", MODEL)
    reporting = [substitute(t["expr"], PROMETHEUS_VARS) for title, t in targets(with_fleet) if title == "Processes reporting"]
    assert prom.value(reporting[0]) == len(PROCESSES)
    # the dashboard made without fleet= counts the fleet snapshot as one more process
    naive = [substitute(t["expr"], PROMETHEUS_VARS) for title, t in targets(without) if title == "Processes reporting"]
    assert prom.value(naive[0]) == len(PROCESSES) + 1
    # the processes' counters summed by PromQL are the fleet's counter
    sel = 'model="fleetdash", instance!="fleet", exported_instance!="fleet"'
    assert prom.value(f"sum(mlmon_calls_total{{{sel}}})") == stack.own_calls == stack.fleet.get("mlmon_calls_total")


# ---------------------------------------------------------------------------------------------
# Graphite, GraphiteEmitter paths
# ---------------------------------------------------------------------------------------------


def at(stack: Stack, expr: str) -> dict[str, float]:
    """Series name -> its value at the last fleet snapshot's time (the end of the data: later
    points would be keepLastValue's carry, longer for the leader, which flushed last)."""
    t = int(stack.fleet.timestamp)
    out = {}
    for s in stack.web.render(expr, from_="-10min"):
        (v,) = [v for v, ts in s["datapoints"] if ts == t]
        if v is not None:
            out[s["target"]] = float(v)
    return out


def test_graphite_fleet_dashboard_every_target_has_data(stack: Stack) -> None:
    board = dashboard("graphite", MODEL, prefix=PREFIX, features=FEATURES, fleet="fleet")
    results = run_all(board, lambda e: graphite_series(stack.web, e), "target", GRAPHITE_VARS)
    empty = [f"{t}: {e}" for (t, e), s in results.items() if not with_data(s)]
    assert [] == empty, "\n".join(empty)


def test_graphite_fleet_row_shows_the_fleet_snapshot(stack: Stack) -> None:
    board = dashboard("graphite", MODEL, prefix=PREFIX, features=FEATURES, fleet="fleet")
    fleet = fleet_targets(board, "target", GRAPHITE_VARS)

    def last(expr: str) -> dict[str, float]:
        return at(stack, expr)

    for title, want in expected_values(stack.fleet).items():
        got = [v for e in fleet[title] for v in last(e).values()]
        assert got == pytest.approx(want, rel=1e-9), title
    (outputs, features) = fleet["Fleet snapshot: drift (PSI)"]
    assert list(last(outputs).values()) == pytest.approx([value_of(stack.fleet, "mlmon_output_drift_psi")], rel=1e-9)
    assert last(features) == pytest.approx({f: value_of(stack.fleet, "mlmon_feature_drift_psi", feature=f) for f in FEATURES}, rel=1e-9)
    assert list(last(fleet["Leaders"][0]).values()) == [1.0]
    assert list(last(fleet["Processes reaching the store"][0]).values()) == [float(len(PROCESSES))]
    assert set(last(fleet["States rejected / s by reason"][0])) == {"config"}
    leader = last(fleet["Leader by process"][0])
    assert sorted(leader.values()) == [0.0, 0.0, 1.0] and "fleet" not in leader


def test_graphite_process_panels_leave_the_fleet_out(stack: Stack) -> None:
    def reporting(board: dict[str, Any]) -> float:
        (expr,) = [substitute(t["target"], GRAPHITE_VARS) for title, t in targets(board) if title == "Processes reporting"]
        (value,) = at(stack, expr).values()
        return value

    assert reporting(dashboard("graphite", MODEL, prefix=PREFIX, fleet="fleet")) == len(PROCESSES)
    assert reporting(dashboard("graphite", MODEL, prefix=PREFIX)) == len(PROCESSES) + 1
    board = dashboard("graphite", MODEL, prefix=PREFIX, fleet="fleet")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    found = stack.web.find(substitute(variables["instance"]["query"], GRAPHITE_VARS))
    assert f"{PREFIX}.{MODEL}.fleet" in found  # Grafana hides it with the variable's regex
    assert variables["instance"]["regex"] == "/^(?!fleet$).*/"
