"""Every panel of the generated Grafana dashboards returns data from the real backends.

Two monitors with distinct instances (two replicas of model ``fraud``) serve traffic with
features, ids, labels, outcomes, some errors and slow calls, and an alert rule that fires. Each
sends to three places at once:

* ``GraphiteEmitter`` → carbon-cache, read through graphite-web (``--via direct``);
* ``StatsdEmitter`` → the StatsD daemon → the same carbon-cache (``--via statsd``);
* ``PrometheusEmitter(port=0)`` → scraped by Prometheus.

Then every target of every panel, with the template variables replaced the way Grafana would
(``$instance`` = All, ``$feature`` = All), is sent to graphite-web's render API or Prometheus's
range-query API and must return a series with a real (non-null, non-NaN) point. Fleet targets
must come back as one series (aggregated over the replicas), per-process targets as one per
replica, and the fleet call rate must add up to exactly the calls made.

One set of daemons serves the whole module (about 15 s of set-up and traffic, 20 s in all).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np
import pytest
import servers
from conftest import require

import mlmon
from mlmon import alerts
from mlmon.emitters import GraphiteEmitter, PrometheusEmitter, StatsdEmitter
from mlmon.export.grafana import dashboard

MODEL = "fraud"
FEATURES = ("age", "income")
DIRECT_PREFIX = "gd"
STATSD_PREFIX = "gs"
REPLICAS = ("replica-a:101", "replica-b:202")
TRAFFIC_SECONDS = 8.0
RULE = alerts.Threshold("mlmon_up", above=0.5, name="always_up")


# ---------------------------------------------------------------------------------------------
# The daemons, the replicas and their traffic, once per module
# ---------------------------------------------------------------------------------------------


@attrs.define
class Stack:
    carbon: servers.Carbon
    statsd: servers.StatsdDaemon
    web: servers.GraphiteWeb
    prometheus: servers.Prometheus
    calls: dict[str, float]  # final mlmon_calls_total per replica


def serve(monitors: list[mlmon.Monitor], seconds: float) -> None:
    """Each replica: batches with features and ids, labels, outcomes, errors and slow calls."""
    rng = np.random.default_rng(7)
    predicts: list[Callable[..., Any]] = []
    for mon in monitors:

        @mon.track(features="X", ids="ids")
        def predict(X: np.ndarray, ids: list[int], fail: bool = False, slow: bool = False) -> Any:
            if fail:
                raise ValueError("bad request")
            if slow:
                time.sleep(0.003)
            return 1.0 / (1.0 + np.exp(-X[:, 0]))

        predicts.append(predict)
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        for r, (mon, predict) in enumerate(zip(monitors, predicts, strict=True)):
            ids = list(range((step * 2 + r) * 50, (step * 2 + r) * 50 + 50))
            X = rng.normal(loc=(0.0, 0.3 * r), size=(50, 2))
            X[rng.random(50) < 0.05, 1] = np.nan  # some missing values
            try:
                scores = predict(X, ids, fail=step % 10 == 3, slow=step % 7 == 0)
            except ValueError:
                continue
            mon.log_feedback(ids[:40], (scores[:40] + rng.normal(0, 0.2, 40) > 0.5).astype(int))
            mon.log_feedback([10**9 + step], [1])  # unmatched
            mon.log_outcome("click", ids=ids[:5])
        step += 1
        time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for server in ("carbon", "statsd", "graphite-web", "prometheus"):
        require(server)
    started: list[Any] = []
    monitors: list[mlmon.Monitor] = []
    try:
        carbon = servers.Carbon(tmp_path_factory.mktemp("carbon"))
        started.append(carbon.start())
        statsd = servers.StatsdDaemon(carbon, tmp_path_factory.mktemp("statsd"))
        web = servers.GraphiteWeb(carbon, tmp_path_factory.mktemp("graphite-web"))
        endpoints = [PrometheusEmitter(port=0) for _ in REPLICAS]
        prometheus = servers.Prometheus(
            [f"127.0.0.1:{e.port}" for e in endpoints], tmp_path_factory.mktemp("prometheus")
        )
        # graphite-web (Django) and Prometheus start slowly: start everything together.
        errors: list[BaseException] = []

        def start(daemon: Any) -> None:
            try:
                daemon.start()
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(d,)) for d in (statsd, web, prometheus)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        started += [statsd, web, prometheus]
        if errors:
            raise errors[0]

        rng = np.random.default_rng(0)
        reference = mlmon.Reference.from_data(
            rng.normal(size=(2000, 2)), feature_names=list(FEATURES)
        )
        for instance, endpoint in zip(REPLICAS, endpoints, strict=True):
            emitters: list[Any] = [
                GraphiteEmitter("127.0.0.1", carbon.line_port, prefix=DIRECT_PREFIX),
                StatsdEmitter("127.0.0.1", statsd.port, prefix=STATSD_PREFIX),
                endpoint,
            ]
            monitors.append(
                mlmon.Monitor(
                    MODEL,
                    task=mlmon.BinaryClassification(),
                    reference=reference,
                    window=60.0,
                    flush_interval=1.0,
                    latency_budget=0.002,
                    instance=instance,
                    emitters=emitters,
                    rules=[RULE],
                    alert_sinks=[],
                )
            )
        serve(monitors, TRAFFIC_SECONDS)
        # Let Prometheus scrape the last window values before the endpoints close.
        time.sleep(1.5)
        calls = {}
        for mon in monitors:
            calls[mon.instance] = float(mon.snapshot().get("mlmon_calls_total") or 0.0)
            mon.close()  # a final flush: the last counter values reach carbon and StatsD
        monitors.clear()
        total = sum(calls.values())
        carbon.wait_for_sum(f"stats_counts.{STATSD_PREFIX}.{MODEL}.mlmon_calls_total", total)
        for instance, value in calls.items():
            seg = re.sub(r"[^A-Za-z0-9_-]", "_", instance)
            carbon.wait_for(
                f"{DIRECT_PREFIX}.{MODEL}.{seg}.mlmon_calls_total",
                lambda points, v=value: bool(points) and points[-1][1] == v,
            )
        yield Stack(carbon, statsd, web, prometheus, calls)
    finally:
        for mon in monitors:
            mon.close()
        servers.stop_all(reversed(started))


# ---------------------------------------------------------------------------------------------
# Running a dashboard's targets the way Grafana would
# ---------------------------------------------------------------------------------------------

GRAPHITE_VARS = {"$model": MODEL, "$instance": "*", "$feature": "{" + ",".join(FEATURES) + "}"}
PROMETHEUS_VARS = {
    "$__rate_interval": "10s",
    "$model": MODEL,
    "$instance": ".*",
    "$feature": "|".join(FEATURES),
}


def substitute(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(name, value)
    assert "$" not in text, f"unreplaced variable in {text!r}"
    return text


def targets(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            out.append((panel["title"], target))
    return out


def graphite_series(web: servers.GraphiteWeb, expr: str) -> list[list[float]]:
    """The non-null values of each series ``expr`` renders over the last 10 minutes."""
    return [
        [float(v) for v, _ in s["datapoints"] if v is not None]
        for s in web.render(expr, from_="-10min")
    ]


def prometheus_series(prom: servers.Prometheus, expr: str) -> list[list[float]]:
    """The finite values of each series of a range query over the last 3 minutes."""
    now = time.time()
    data = prom.api(
        "query_range",
        {"query": expr, "start": str(now - 180), "end": str(now), "step": "1"},
    )
    return [
        [float(v) for _, v in s["values"] if math.isfinite(float(v))] for s in data["result"]
    ]


def with_data(series: list[list[float]]) -> list[list[float]]:
    return [values for values in series if values]


def run_all(
    board: dict[str, Any], run: Callable[[str], list[list[float]]], key: str, values: dict[str, str]
) -> dict[tuple[str, str], list[list[float]]]:
    """Run every target; retry the empty ones for a few seconds (carbon writes lazily)."""
    results: dict[tuple[str, str], list[list[float]]] = {}
    pending = [(title, substitute(t[key], values)) for title, t in targets(board)]
    deadline = time.monotonic() + 10.0
    while pending:
        again = []
        for title, expr in pending:
            results[(title, expr)] = series = run(expr)
            if not with_data(series):
                again.append((title, expr))
        if not again or time.monotonic() > deadline:
            break
        pending = again
        time.sleep(0.5)
    return results


def assert_every_target_has_data(results: dict[tuple[str, str], list[list[float]]]) -> None:
    empty = [f"{title}: {expr}" for (title, expr), series in results.items() if not with_data(series)]
    assert [] == empty


# ---------------------------------------------------------------------------------------------
# Graphite, direct
# ---------------------------------------------------------------------------------------------


def direct_board() -> dict[str, Any]:
    return dashboard("graphite", MODEL, prefix=DIRECT_PREFIX, features=FEATURES)


def test_every_graphite_direct_panel_returns_data(stack: Stack) -> None:
    board = direct_board()
    results = run_all(board, lambda e: graphite_series(stack.web, e), "target", GRAPHITE_VARS)
    assert_every_target_has_data(results)


def test_graphite_direct_fleet_targets_are_one_series_and_per_process_ones_one_per_replica(
    stack: Stack,
) -> None:
    board = direct_board()
    results = run_all(board, lambda e: graphite_series(stack.web, e), "target", GRAPHITE_VARS)
    for (title, expr), series in results.items():
        if expr.startswith("aliasByNode("):
            assert len(with_data(series)) >= len(REPLICAS), (title, expr)
        elif expr.startswith("alias("):
            assert 1 == len(series), (title, expr)


def test_graphite_direct_call_rate_adds_up_to_the_calls_of_every_replica(stack: Stack) -> None:
    board = direct_board()
    throughput = next(p for p in board["panels"] if p["title"] == "Throughput")
    expr = substitute(throughput["targets"][0]["target"], GRAPHITE_VARS)
    (series,) = stack.web.render(expr, from_="-10min")
    # One point per second: the sum of the rates is the calls counted after each first point.
    counted = sum(v for v, _ in series["datapoints"] if v is not None)
    first = 0.0
    for instance in REPLICAS:
        seg = re.sub(r"[^A-Za-z0-9_-]", "_", instance)
        first += stack.carbon.read(f"{DIRECT_PREFIX}.{MODEL}.{seg}.mlmon_calls_total")[0][1]
    assert sum(stack.calls.values()) - first == pytest.approx(counted, abs=1e-6)


def test_graphite_direct_variables_list_the_model_and_both_replicas(stack: Stack) -> None:
    board = direct_board()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    models = stack.web.find(variables["model"]["query"])
    instances = stack.web.find(substitute(variables["instance"]["query"], GRAPHITE_VARS))
    assert f"{DIRECT_PREFIX}.{MODEL}" in models
    assert 2 == len(instances)


# ---------------------------------------------------------------------------------------------
# Graphite, through StatsD
# ---------------------------------------------------------------------------------------------


def statsd_board() -> dict[str, Any]:
    return dashboard("graphite", MODEL, prefix=STATSD_PREFIX, via="statsd", features=FEATURES)


def test_every_statsd_panel_returns_data(stack: Stack) -> None:
    board = statsd_board()
    results = run_all(board, lambda e: graphite_series(stack.web, e), "target", GRAPHITE_VARS)
    assert_every_target_has_data(results)


def test_statsd_call_rate_adds_up_to_the_calls_of_every_replica(stack: Stack) -> None:
    board = statsd_board()
    throughput = next(p for p in board["panels"] if p["title"] == "Throughput")
    expr = substitute(throughput["targets"][0]["target"], GRAPHITE_VARS)
    (series,) = stack.web.render(expr, from_="-10min")
    # StatsD flushes every second: calls per second summed over the points = calls.
    counted = sum(v for v, _ in series["datapoints"] if v is not None)
    assert sum(stack.calls.values()) == pytest.approx(counted, abs=1e-6)


def test_statsd_model_variable_lists_the_model(stack: Stack) -> None:
    board = statsd_board()
    model_var = next(v for v in board["templating"]["list"] if v["name"] == "model")
    assert f"stats_counts.{STATSD_PREFIX}.{MODEL}" in stack.web.find(model_var["query"])


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


def prometheus_board() -> dict[str, Any]:
    return dashboard("prometheus", MODEL, features=FEATURES)


def test_every_prometheus_panel_returns_data(stack: Stack) -> None:
    board = prometheus_board()
    results = run_all(
        board, lambda e: prometheus_series(stack.prometheus, e), "expr", PROMETHEUS_VARS
    )
    assert_every_target_has_data(results)


def test_prometheus_fleet_targets_are_one_series_and_per_process_ones_one_per_replica(
    stack: Stack,
) -> None:
    board = prometheus_board()
    legends = {
        substitute(t["expr"], PROMETHEUS_VARS): t["legendFormat"] for _, t in targets(board)
    }
    results = run_all(
        board, lambda e: prometheus_series(stack.prometheus, e), "expr", PROMETHEUS_VARS
    )
    for (title, expr), series in results.items():
        legend = legends[expr]
        if "{{instance}}" in legend:
            assert len(with_data(series)) >= len(REPLICAS), (title, expr)
        elif "{{" not in legend:
            assert 1 == len(series), (title, expr)


def test_prometheus_model_variable_lists_the_model(stack: Stack) -> None:
    values = stack.prometheus.api("label/model/values", {"match[]": "mlmon_up"})
    assert MODEL in values

