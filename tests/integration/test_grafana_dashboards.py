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
from mlmon.snapshot import Sample, Snapshot

MODEL = "fraud"
CLASSES = ("low", "mid", "high")
# Every model: the binary one all the original checks use, and one per other task so that the
# fleet quality panels of every task run against the real backends.
TASKS: dict[str, Any] = {
    MODEL: mlmon.BinaryClassification(),
    "price": mlmon.Regression(),
    "kind": mlmon.MulticlassClassification(classes=CLASSES),
}
TASK_NAMES = {MODEL: "binary", "price": "regression", "kind": "multiclass"}
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


def outputs_of(task: Any, X: np.ndarray) -> np.ndarray:
    """The model: a score (binary), a value (regression) or probability rows (multiclass)."""
    if isinstance(task, mlmon.Regression):
        return 2.0 * X[:, 0] + 1.0
    if isinstance(task, mlmon.MulticlassClassification):
        z = np.stack([X[:, 0], -X[:, 0], np.zeros(len(X))], axis=1)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-X[:, 0]))


def labels_of(task: Any, out: np.ndarray, rng: np.random.Generator) -> Any:
    """True labels that agree with the model most of the time."""
    if isinstance(task, mlmon.Regression):
        return out + rng.normal(0, 0.5, len(out))
    if isinstance(task, mlmon.MulticlassClassification):
        noisy = out + rng.uniform(0, 0.6, out.shape)
        return [CLASSES[k] for k in noisy.argmax(axis=1)]
    return (out + rng.normal(0, 0.2, len(out)) > 0.5).astype(int)


def serve(monitors: list[mlmon.Monitor], seconds: float) -> None:
    """Each replica: batches with features and ids, labels, outcomes, errors and slow calls."""
    rng = np.random.default_rng(7)
    predicts: list[Callable[..., Any]] = []
    for mon in monitors:

        @mon.track(features="X", ids="ids")
        def predict(
            X: np.ndarray, ids: list[int], fail: bool = False, slow: bool = False, task: Any = None
        ) -> Any:
            if fail:
                raise ValueError("bad request")
            if slow:
                time.sleep(0.003)
            return outputs_of(task, X)

        predicts.append(predict)
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        for r, (mon, predict) in enumerate(zip(monitors, predicts, strict=True)):
            ids = list(range((step * 2 + r) * 50, (step * 2 + r) * 50 + 50))
            X = rng.normal(loc=(0.0, 0.3 * r), size=(50, 2))
            X[rng.random(50) < 0.05, 1] = np.nan  # some missing values
            try:
                out = predict(X, ids, fail=step % 10 == 3, slow=step % 7 == 0, task=mon.task)
            except ValueError:
                continue
            mon.log_feedback(ids[:40], labels_of(mon.task, out[:40], rng))
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
        endpoints = [PrometheusEmitter(port=0) for _ in REPLICAS for _ in TASKS]
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
        pairs = [(model, instance) for model in TASKS for instance in REPLICAS]
        for (model, instance), endpoint in zip(pairs, endpoints, strict=True):
            emitters: list[Any] = [
                GraphiteEmitter("127.0.0.1", carbon.line_port, prefix=DIRECT_PREFIX),
                StatsdEmitter("127.0.0.1", statsd.port, prefix=STATSD_PREFIX),
                endpoint,
            ]
            monitors.append(
                mlmon.Monitor(
                    model,
                    task=TASKS[model],
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
            if mon.name == MODEL:
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
    return [[float(v) for _, v in s["values"] if math.isfinite(float(v))] for s in data["result"]]


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
    empty = [
        f"{title}: {expr}" for (title, expr), series in results.items() if not with_data(series)
    ]
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
    legends = {substitute(t["expr"], PROMETHEUS_VARS): t["legendFormat"] for _, t in targets(board)}
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


# ---------------------------------------------------------------------------------------------
# Fleet panels from the cumulative counters, for every task
# ---------------------------------------------------------------------------------------------

FLEET_PANELS = {
    "binary": "Fleet precision / recall / F1",
    "multiclass": "Fleet precision / recall / F1 (macro average)",
    "regression": "Fleet MAE / RMSE",
}


def board_for(model: str, datasource: str, via: str = "direct") -> dict[str, Any]:
    prefix = (
        "" if datasource == "prometheus" else STATSD_PREFIX if via == "statsd" else DIRECT_PREFIX
    )
    return dashboard(
        datasource, model, prefix=prefix, via=via, features=FEATURES, task=TASK_NAMES[model]
    )


def variables_for(model: str, values: dict[str, str]) -> dict[str, str]:
    return {**values, "$model": model}


@pytest.mark.parametrize("model", ["price", "kind"])
@pytest.mark.parametrize(
    ("datasource", "via"),
    [("graphite", "direct"), ("graphite", "statsd"), ("prometheus", "direct")],
)
def test_every_panel_of_the_other_tasks_returns_data(
    stack: Stack, model: str, datasource: str, via: str
) -> None:
    board = board_for(model, datasource, via)
    if datasource == "prometheus":
        results = run_all(
            board,
            lambda e: prometheus_series(stack.prometheus, e),
            "expr",
            variables_for(model, PROMETHEUS_VARS),
        )
    else:
        results = run_all(
            board,
            lambda e: graphite_series(stack.web, e),
            "target",
            variables_for(model, GRAPHITE_VARS),
        )
    assert_every_target_has_data(results)


@pytest.mark.parametrize("model", list(TASKS))
@pytest.mark.parametrize(
    ("datasource", "via"),
    [("graphite", "direct"), ("graphite", "statsd"), ("prometheus", "direct")],
)
def test_fleet_quality_is_one_series_per_metric_within_its_range(
    stack: Stack, model: str, datasource: str, via: str
) -> None:
    task = TASK_NAMES[model]
    board = board_for(model, datasource, via)
    fleet = [p for p in board["panels"] if p["title"] == FLEET_PANELS[task]]
    if datasource == "graphite" and task == "multiclass":
        assert fleet == []  # Graphite cannot pair the diagonal cells (docs/dashboards.md)
        return
    (panel,) = fleet
    key = "expr" if datasource == "prometheus" else "target"
    values = variables_for(model, PROMETHEUS_VARS if datasource == "prometheus" else GRAPHITE_VARS)
    for target in panel["targets"]:
        expr = substitute(target[key], values)
        if datasource == "prometheus":
            series = run_all(
                {"panels": [{"title": "", "targets": [{key: expr}]}]},
                lambda e: prometheus_series(stack.prometheus, e),
                key,
                {},
            )
        else:
            series = run_all(
                {"panels": [{"title": "", "targets": [{key: expr}]}]},
                lambda e: graphite_series(stack.web, e),
                key,
                {},
            )
        (result,) = series.values()
        assert 1 == len(result), expr  # the fleet: one series, not one per replica
        (points,) = result
        assert points, expr
        if task == "regression":
            # The model's errors are N(0, 0.5): MAE ≈ 0.4, RMSE ≈ 0.5.
            assert all(0.2 < v < 0.8 for v in points), (expr, points)
        else:
            assert all(0.0 <= v <= 1.0 for v in points), (expr, points)
            assert max(points) > 0.3, (expr, points)  # the labels agree with the model


def test_prometheus_fleet_precision_matches_the_replicas_counters(stack: Stack) -> None:
    """The fleet panel's PromQL on the counters the replicas exposed equals TP / (TP + FP)
    of the counters Prometheus scraped, summed over the replicas."""
    board = board_for(MODEL, "prometheus")
    panel = next(p for p in board["panels"] if p["title"] == FLEET_PANELS["binary"])
    precision = substitute(panel["targets"][0]["expr"], variables_for(MODEL, PROMETHEUS_VARS))
    # Over the whole life of the counters (they are younger than the 5-minute range), at the
    # last scrape: increase() sees every count, so the ratio is the counters' own ratio.
    at = time.time()
    got = stack.prometheus.api("query", {"query": precision, "time": str(at)})["result"]
    tp = stack.prometheus.api(
        "query",
        {
            "query": f'sum(max_over_time(mlmon_confusion_total{{model="{MODEL}", actual="1", predicted="1"}}[5m]))',
            "time": str(at),
        },
    )["result"]
    pp = stack.prometheus.api(
        "query",
        {
            "query": f'sum(max_over_time(mlmon_confusion_total{{model="{MODEL}", predicted="1"}}[5m]))',
            "time": str(at),
        },
    )["result"]
    (value,) = [float(r["value"][1]) for r in got]
    exact = float(tp[0]["value"][1]) / float(pp[0]["value"][1])
    # increase() extrapolates each series to the range start by up to its own first-value
    # ratio; with counters that start near 0 the ratio stays within a couple of percent.
    assert value == pytest.approx(exact, rel=0.05)


def test_prometheus_fleet_psi_is_one_series_per_feature(stack: Stack) -> None:
    board = board_for(MODEL, "prometheus")
    panel = next(p for p in board["panels"] if p["title"] == "Fleet drift (PSI) by feature")
    (target,) = panel["targets"]
    expr = substitute(target["expr"], variables_for(MODEL, PROMETHEUS_VARS))
    now = time.time()
    data = stack.prometheus.api(
        "query_range", {"query": expr, "start": str(now - 180), "end": str(now), "step": "1"}
    )["result"]
    # The last point of each feature (the reference ratios go stale once the replicas stop).
    by_feature = {r["metric"]["feature"]: float(r["values"][-1][1]) for r in data}
    assert set(by_feature) == set(FEATURES)
    # Replica b's income is shifted by 0.3 sigma, age is not: pooled, income drifts more.
    assert 0.0 <= by_feature["age"] < by_feature["income"], by_feature


# ---------------------------------------------------------------------------------------------
# Segments: real segment-labelled series next to the overall ones
# ---------------------------------------------------------------------------------------------
#
# Two models carry exactly the same overall series: "seg" also carries every series again per
# segment (the overall name plus segment="<name>", other values), "plain" carries none. Every
# overall panel must answer the same for both; each segment panel must answer its segment's.

SEG_MODEL, PLAIN_MODEL = "seg", "plain"
SEGMENT_NAMES = ("eu", "us", "_other")
SEG_REPLICAS = ("replica-a:1", "replica-b:2")


def base_samples() -> tuple[Sample, ...]:
    """A real monitor's samples: traffic, errors, labels, outcomes, drift (FakeClock time)."""
    from mlmon.testing import FakeClock

    rng = np.random.default_rng(3)
    clock = FakeClock(start=1_700_000_000.0)
    reference = mlmon.Reference.from_data(rng.normal(size=(2000, 2)), feature_names=list(FEATURES))
    mon = mlmon.Monitor(
        "base", task=mlmon.BinaryClassification(), reference=reference, window=60.0,
        flush_interval=60.0, latency_budget=0.002, clock=clock, emitters=[], rules=[RULE], alert_sinks=[],
    )  # fmt: skip

    @mon.track(features="X", ids="ids")
    def predict(X: np.ndarray, ids: list[int], fail: bool = False) -> np.ndarray:
        clock.advance(0.001 if len(ids) % 2 else 0.004)
        if fail:
            raise ValueError("bad request")
        return outputs_of(mon.task, X)

    for step in range(30):
        ids = list(range(step * 50, step * 50 + 50 - step % 2))
        X = rng.normal(loc=(0.0, 0.4), size=(len(ids), 2))
        try:
            out = predict(X, ids, fail=step % 7 == 3)
        except ValueError:
            continue
        mon.log_feedback(ids[:40], labels_of(mon.task, out[:40], rng))
        mon.log_outcome("click", ids=ids[:5])
        clock.advance(1.0)
    samples = mon.snapshot().samples
    mon.close()
    return samples


def at_tick(sample: Sample, tick: int) -> Sample:
    """The sample ``tick`` steps later: counters grow by their value per step, gauges stay."""
    if sample.kind != "counter":
        return sample
    return attrs.evolve(sample, value=sample.value * (1 + tick))


def of_segment(sample: Sample, k: int, segment: str) -> Sample:
    """The same series for one segment, with values of its own: counters x(3+k) (errors twice
    that: the segment's error ratio is twice the overall one), gauges halved plus 0.1(k+1)."""
    if sample.kind == "counter":
        value = sample.value * (3 + k) * (2 if sample.name == "mlmon_errors_total" else 1)
    else:
        value = sample.value * 0.5 + 0.1 * (k + 1)
    return Sample(sample.name, tuple(sorted((*sample.labels, ("segment", segment)))), value)


def seg_snapshots(base: tuple[Sample, ...], tick: int, instance: str, t: float) -> list[Snapshot]:
    overall = tuple(at_tick(s, tick) for s in base)
    segments = tuple(of_segment(s, k, name) for k, name in enumerate(SEGMENT_NAMES) for s in overall)
    return [
        Snapshot(SEG_MODEL, None, instance, t, 60.0, overall + segments),
        Snapshot(PLAIN_MODEL, None, instance, t, 60.0, overall),
    ]


def same_results(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(r: dict[str, Any]) -> tuple[tuple[tuple[str, str], ...], float]:
        labels = tuple(sorted((k, v) for k, v in r["metric"].items() if k != "model"))
        return labels, float(r["value"][1])

    ka, kb = sorted(map(key, a), key=str), sorted(map(key, b), key=str)
    return len(ka) == len(kb) and all(
        la == lb and (va == pytest.approx(vb, rel=1e-9, abs=1e-12) or (math.isnan(va) and math.isnan(vb)))
        for (la, va), (lb, vb) in zip(ka, kb, strict=True)
    )


@pytest.fixture(scope="module")
def seg_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servers.Prometheus, float]]:
    """Prometheus having scraped both models from two replicas for a few seconds; the time of
    the last scrape to query at."""
    from mlmon.emitters.prometheus import render_exposition

    require("prometheus")
    base = base_samples()
    endpoints = [servers.MetricsEndpoint() for _ in SEG_REPLICAS]
    prometheus = servers.Prometheus([e.target for e in endpoints], tmp_path_factory.mktemp("seg-prometheus"))
    try:
        prometheus.start()
        # A new value every half second, scraped every second, until every series has had a
        # few scrapes within the rate interval before the time the tests query at (bounded).
        scraped = f'count_over_time(mlmon_calls_total{{model="{PLAIN_MODEL}"}}[{SEG_VARS["$__rate_interval"]}])'
        deadline = time.monotonic() + 60.0
        for tick in range(1000):
            for endpoint, instance in zip(endpoints, SEG_REPLICAS, strict=True):
                endpoint.set_text(render_exposition(seg_snapshots(base, tick, instance, time.time())))
            time.sleep(0.5)
            at = time.time() - 1.5
            counts = [float(r["value"][1]) for r in instant(prometheus, scraped, at)]
            if tick >= 6 and len(counts) == len(SEG_REPLICAS) and min(counts) >= 3:
                break
            assert time.monotonic() < deadline, f"Prometheus scraped too little: {counts}"
        yield prometheus, at
    finally:
        prometheus.stop()
        for endpoint in endpoints:
            endpoint.stop()


def instant(prom: servers.Prometheus, expr: str, at: float) -> list[dict[str, Any]]:
    return list(prom.api("query", {"query": expr, "time": str(at)})["result"])


SEG_VARS = {"$__rate_interval": "4s", "$instance": ".*", "$feature": "|".join(FEATURES)}


@pytest.mark.parametrize("task", ["binary", "none"])
def test_prometheus_overall_panels_ignore_real_segment_series(
    seg_prometheus: tuple[servers.Prometheus, float], task: str
) -> None:
    prom, at = seg_prometheus
    board = dashboard("prometheus", SEG_MODEL, features=FEATURES, task=task, segments=True)
    seg_row = {id(p) for p in _row(board, "Segments")}
    answered = 0
    for panel in board["panels"]:
        if panel["type"] == "row" or id(panel) in seg_row:
            continue
        for target in panel["targets"]:
            with_seg = instant(prom, substitute(target["expr"], {**SEG_VARS, "$model": SEG_MODEL}), at)
            plain = instant(prom, substitute(target["expr"], {**SEG_VARS, "$model": PLAIN_MODEL}), at)
            assert same_results(with_seg, plain), (panel["title"], target["expr"], with_seg, plain)
            answered += bool(plain)
    assert answered >= 25  # most panels have data: the comparison is of real numbers


def test_prometheus_without_segment_selection_the_segments_would_be_summed_in(
    seg_prometheus: tuple[servers.Prometheus, float],
) -> None:
    """The control: the segment series are there, and segment="" is what keeps them out."""
    prom, at = seg_prometheus
    board = dashboard("prometheus", SEG_MODEL)
    expr = next(p for p in board["panels"] if p["title"] == "Throughput")["targets"][0]["expr"]
    assert 'segment=""' in expr

    def calls(e: str, model: str) -> float:
        (r,) = instant(prom, substitute(e, {**SEG_VARS, "$model": model}), at)
        return float(r["value"][1])

    overall = calls(expr, PLAIN_MODEL)
    assert overall > 0 and calls(expr, SEG_MODEL) == pytest.approx(overall, rel=1e-9)
    unselected = expr.replace(', segment=""', "")
    # every segment's calls (x3, x4, x5) on top of the overall ones
    assert calls(unselected, SEG_MODEL) == pytest.approx(overall * (1 + 3 + 4 + 5), rel=1e-9)


def test_prometheus_segment_panels_show_each_segments_own_series(
    seg_prometheus: tuple[servers.Prometheus, float],
) -> None:
    prom, at = seg_prometheus
    board = dashboard("prometheus", SEG_MODEL, features=FEATURES, segments=True)
    variable = next(v for v in board["templating"]["list"] if v["name"] == "segment")
    # Grafana runs label_values(metric{...}, label) as the label values API with match[]
    m = re.fullmatch(r"label_values\((.*), segment\)", variable["query"])
    assert m is not None
    listed = prom.api("label/segment/values", {"match[]": m.group(1).replace("$model", SEG_MODEL)})
    assert sorted(SEGMENT_NAMES) == sorted(listed)
    assert [] == prom.api("label/segment/values", {"match[]": m.group(1).replace("$model", PLAIN_MODEL)})

    def one(title: str, model: str, segment: str | None = None) -> float:
        panel = next(p for p in board["panels"] if p["title"] == title)
        values = {**SEG_VARS, "$model": model, "$segment": segment or ""}
        results = [r for t in panel["targets"] for r in instant(prom, substitute(t["expr"], values), at)]
        return max(float(r["value"][1]) for r in results)

    overall_rows = one("Throughput", PLAIN_MODEL)
    overall_errors = one("Error ratio and availability", PLAIN_MODEL)  # the max of the two lines
    f1 = float(instant(prom, f'max(mlmon_f1{{model="{PLAIN_MODEL}"}})', at)[0]["value"][1])
    psi = float(instant(prom, f'max(mlmon_feature_drift_psi{{model="{PLAIN_MODEL}"}})', at)[0]["value"][1])
    error_ratio = float(instant(prom, substitute(
        next(p for p in board["panels"] if p["title"] == "Error ratio")["targets"][0]["expr"],
        {**SEG_VARS, "$model": PLAIN_MODEL}), at)[0]["value"][1])  # fmt: skip
    assert overall_errors >= error_ratio > 0
    for k, segment in enumerate(SEGMENT_NAMES):
        # the throughput panel's first line is calls/s; the segment panel is rows/s
        rows = float(instant(prom, substitute(
            'sum by (model) (rate(mlmon_rows_total{model="$model", segment=""}[$__rate_interval]))',
            {**SEG_VARS, "$model": PLAIN_MODEL}), at)[0]["value"][1])  # fmt: skip
        assert overall_rows > 0
        assert one("Rows / s · $segment", SEG_MODEL, segment) == pytest.approx(rows * (3 + k), rel=1e-9)
        assert one("Error ratio · $segment", SEG_MODEL, segment) == pytest.approx(2 * error_ratio, rel=1e-9)
        assert one("F1 · $segment", SEG_MODEL, segment) == pytest.approx(0.5 * f1 + 0.1 * (k + 1), rel=1e-9)
        assert one("Largest feature drift (PSI) · $segment", SEG_MODEL, segment) == pytest.approx(
            0.5 * psi + 0.1 * (k + 1), rel=1e-9
        )


def _row(board: dict[str, Any], title: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    inside = False
    for p in board["panels"]:
        if p["type"] == "row":
            inside = p["title"] == title
        elif inside:
            out.append(p)
    return out


def test_graphite_overall_panels_ignore_real_segment_paths(
    carbon: servers.Carbon, graphite_web_factory: Callable[..., servers.GraphiteWeb]
) -> None:
    web = graphite_web_factory(carbon)
    base = base_samples()
    emitters = [GraphiteEmitter("127.0.0.1", carbon.line_port, prefix="sg") for _ in SEG_REPLICAS]
    try:
        start = math.floor(time.time()) - 8
        for tick in range(8):  # one point per whisper step (1 s), written at once
            for emitter, instance in zip(emitters, SEG_REPLICAS, strict=True):
                for snap in seg_snapshots(base, tick, instance, float(start + tick)):
                    emitter.emit(snap)
    finally:
        for emitter in emitters:
            emitter.close()
    last = f"sg.{PLAIN_MODEL}.replica-b_2.mlmon_calls_total"
    carbon.wait_for(last, lambda points: len(points) >= 8)
    carbon.wait_for(f"sg.{SEG_MODEL}.replica-b_2.mlmon_calls_total.segment__other", lambda points: len(points) >= 8)
    carbon.settle()
    board = dashboard("graphite", SEG_MODEL, prefix="sg", features=FEATURES, segments=True)
    seg_row = {id(p) for p in _row(board, "Segments")}
    values = {"$instance": "*", "$feature": "{" + ",".join(FEATURES) + "}"}
    overall = [
        (panel["title"], target["target"])
        for panel in board["panels"]
        if panel["type"] != "row" and id(panel) not in seg_row
        for target in panel["targets"]
    ]

    def compare() -> tuple[list[str], int]:
        differ, answered = [], 0
        for title, target in overall:
            got = {}
            for model in (SEG_MODEL, PLAIN_MODEL):
                expr = substitute(target, {**values, "$model": model})
                got[model] = sorted(
                    (s["target"].replace(model, "MODEL"), [v for v, _ in s["datapoints"]])
                    for s in web.render(expr, from_=str(start - 5), until=str(start + 12))
                )
            if got[SEG_MODEL] != got[PLAIN_MODEL]:
                differ.append(f"{title}: {target}")
            answered += any(v is not None for _, points in got[PLAIN_MODEL] for v in points)
        return differ, answered

    # carbon creates its whisper files at a bounded rate: compare again until both models'
    # files are all written (bounded)
    deadline = time.monotonic() + 40.0
    differ, answered = compare()
    while differ and time.monotonic() < deadline:
        time.sleep(1.0)
        differ, answered = compare()
    assert [] == differ
    assert answered >= 20
    # the segment panels read their segment's paths: rows/s of "us" is 4x the overall rows/s
    rows_seg = next(p for p in _row(board, "Segments") if p["title"].startswith("Rows"))["targets"][0]["target"]
    window = {"from_": str(start - 5), "until": str(start + 12)}
    seg_rate = web.render(substitute(rows_seg, {**values, "$model": SEG_MODEL, "$segment": "us"}), **window)
    whole = substitute(rows_seg.replace(".segment_$segment", ""), {**values, "$model": PLAIN_MODEL})
    plain_rate = web.render(whole, **window)
    pairs = [(a, b) for a, b in zip(seg_rate[0]["datapoints"], plain_rate[0]["datapoints"], strict=True)
             if a[0] is not None and b[0] is not None]  # fmt: skip
    assert len(pairs) >= 5
    assert all(a[0] == pytest.approx(4 * b[0]) for a, b in pairs)
