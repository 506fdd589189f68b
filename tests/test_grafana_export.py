"""Grafana dashboard export: structure, rows, queries that aggregate right, and the CLI.

Whether every query returns data from real backends is tested in
``tests/integration/test_grafana_dashboards.py``.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mlmon.export.grafana import DATASOURCES, SCHEMA_VERSION, TASKS, dashboard, main
from mlmon.naming import PROMETHEUS_RENAMES
from mlmon.snapshot import CATALOG

FEATURES = ("age", "income")

# (datasource, via) pairs that exist: StatsD only writes to Graphite.
BACKENDS = [("prometheus", "direct"), ("graphite", "direct"), ("graphite", "statsd")]
VARIANTS = [
    (ds, via, task, features, None, False)
    for (ds, via), task, features in itertools.product(BACKENDS, TASKS, [(), FEATURES])
] + [  # with the fleet row: Prometheus and Graphite direct (StatsD paths have no instance)
    (ds, via, task, features, "fleet", False)
    for (ds, via), task, features in itertools.product(BACKENDS[:2], TASKS, [(), FEATURES])
] + [  # with the segments row
    (ds, via, task, FEATURES, None, True) for (ds, via), task in itertools.product(BACKENDS, TASKS)
] + [(ds, via, "binary", FEATURES, "fleet", True) for ds, via in BACKENDS[:2]]


def board_id(variant: tuple[str, str, str, tuple[str, ...], str | None, bool]) -> str:
    ds, via, task, features, fleet, segments = variant
    return (
        f"{ds}-{via}-{task}-{'features' if features else 'nofeatures'}"
        + ("-fleet" if fleet else "") + ("-segments" if segments else "")
    )


@pytest.fixture(params=VARIANTS, ids=board_id)
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    ds, via, task, features, fleet, segments = request.param
    prefix = "ml" if ds == "graphite" else ""
    return dashboard(
        ds, "fraud", prefix=prefix, via=via, task=task, features=features, fleet=fleet, segments=segments
    )


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def rows(board: dict[str, Any]) -> list[str]:
    return [p["title"] for p in board["panels"] if p["type"] == "row"]


def queries(board: dict[str, Any]) -> list[str]:
    key = "expr" if "prometheus" in board["tags"] else "target"
    return [t[key] for p in panels(board) for t in p["targets"]]


def panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["title"] == title)


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------


def test_dashboard_round_trips_through_json(board: dict[str, Any]) -> None:
    assert board == json.loads(json.dumps(board))


def test_dashboard_has_the_classic_model_fields(board: dict[str, Any]) -> None:
    assert SCHEMA_VERSION == board["schemaVersion"]
    assert board["id"] is None
    assert 0 < len(board["uid"]) <= 40
    assert {"list"} == set(board["templating"])
    assert "mlmon" in board["tags"]


def test_panel_ids_are_unique(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_and_never_overlap(board: dict[str, Any]) -> None:
    boxes = [p["gridPos"] for p in board["panels"]]
    for box in boxes:
        assert box["x"] >= 0 and box["w"] >= 1 and box["x"] + box["w"] <= 24
        assert box["y"] >= 0 and box["h"] >= 1
    for a, b in itertools.combinations(boxes, 2):
        apart_x = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
        apart_y = a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
        assert apart_x or apart_y, (a, b)


def test_each_rows_panels_lie_between_it_and_the_next_row(board: dict[str, Any]) -> None:
    current_row_y = -1
    for p in board["panels"]:
        if p["type"] == "row":
            assert p["gridPos"]["y"] > current_row_y
            assert (0, 24, 1) == (p["gridPos"]["x"], p["gridPos"]["w"], p["gridPos"]["h"])
            current_row_y = p["gridPos"]["y"]
        else:
            assert p["gridPos"]["y"] > current_row_y


def test_every_row_has_panels(board: dict[str, Any]) -> None:
    seen: list[int] = []
    count = 0
    for p in board["panels"]:
        if p["type"] == "row":
            seen.append(count)
            count = 0
        else:
            count += 1
    seen.append(count)
    assert 0 not in seen[1:]


def test_every_target_has_a_unique_ref_id_and_a_query(board: dict[str, Any]) -> None:
    key = "expr" if "prometheus" in board["tags"] else "target"
    for p in panels(board):
        assert p["type"] in ("timeseries", "stat")
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t[key], p["title"]
            assert "${DS}" == t["datasource"]["uid"]
        assert "${DS}" == p["datasource"]["uid"]


def test_every_variable_used_in_a_query_is_defined(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval"}
    used = {name for q in queries(board) for name in re.findall(r"\$(\w+)", q)}
    assert used <= defined


def test_the_datasource_is_a_variable_of_the_datasource_type(board: dict[str, Any]) -> None:
    ds = board["templating"]["list"][0]
    assert ("DS", "datasource") == (ds["name"], ds["type"])
    assert ds["query"] in DATASOURCES


def test_metric_names_in_queries_are_catalog_names(board: dict[str, Any]) -> None:
    allowed = set(CATALOG) | set(PROMETHEUS_RENAMES.values())
    names = {n for q in queries(board) for n in re.findall(r"mlmon_[a-z0-9_]*[a-z0-9]", q)}
    assert names
    assert set() == names - allowed


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def test_all_rows_with_a_task_and_features() -> None:
    expected = ["Service health", "Resources", "Model outputs", "Quality", "Features", "Alerts"]
    assert expected == rows(dashboard("prometheus", "fraud", features=FEATURES))


def test_no_features_leaves_out_the_features_row_and_variable() -> None:
    board = dashboard("prometheus", "fraud")
    assert "Features" not in rows(board)
    assert "feature" not in {v["name"] for v in board["templating"]["list"]}


def test_no_task_leaves_out_the_quality_row_and_class_ratios() -> None:
    board = dashboard("graphite", "fraud", task="none", features=FEATURES)
    assert ["Service health", "Resources", "Model outputs", "Features", "Alerts"] == rows(board)
    assert "Predicted class ratio" not in {p["title"] for p in board["panels"]}
    assert rows(board) == rows(dashboard("graphite", "fraud", task=None, features=FEATURES))


def test_regression_quality_shows_errors_not_classification_metrics() -> None:
    board = dashboard("prometheus", "fraud", task="regression")
    text = " ".join(queries(board))
    assert "mlmon_mae" in text and "mlmon_rmse" in text
    assert "mlmon_precision" not in text and "mlmon_output_class_ratio" not in text


def test_multiclass_quality_uses_the_macro_average() -> None:
    board = dashboard("prometheus", "fraud", task="multiclass")
    (precision, *_) = panel(board, "Precision / recall / F1 (macro average)")["targets"]
    assert 'average="macro"' in precision["expr"]
    assert "F1: estimated vs realized" not in {p["title"] for p in board["panels"]}


def test_binary_quality_compares_estimated_and_realized_f1() -> None:
    board = dashboard("graphite", "fraud", prefix="ml")
    targets = [t["target"] for t in panel(board, "F1: estimated vs realized")["targets"]]
    assert any(".mlmon_f1," in t for t in targets)
    assert any(".mlmon_estimated_f1," in t for t in targets)


# ---------------------------------------------------------------------------------------------
# Queries aggregate across processes
# ---------------------------------------------------------------------------------------------


def test_prometheus_counters_are_rated_per_process_before_the_sum() -> None:
    for q in queries(dashboard("prometheus", "fraud", features=FEATURES)):
        for match in re.finditer(r"mlmon_\w+_(total|bucket|sum|count)\{", q):
            assert q[: match.start()].endswith(("rate(", "increase(")), q


def test_prometheus_latency_quantiles_come_from_summed_buckets() -> None:
    board = dashboard("prometheus", "fraud")
    exprs = [t["expr"] for t in panel(board, "Latency")["targets"]]
    assert (
        "histogram_quantile(0.99, sum by (le, model) (rate(mlmon_latency_seconds_bucket"
        '{model="$model", instance=~"$instance", segment=""}[$__rate_interval])))'
    ) in exprs


@pytest.mark.parametrize(("ds", "via"), BACKENDS)
def test_no_query_averages_across_processes(ds: str, via: str) -> None:
    prefix = "ml" if ds == "graphite" else ""
    board = dashboard(ds, "fraud", prefix=prefix, via=via, features=FEATURES)
    for q in queries(board):
        assert "avg" not in q and "average" not in q.replace('average="macro"', ""), q


def test_graphite_direct_sums_per_process_rates_not_rates_of_sums() -> None:
    board = dashboard("graphite", "fraud", prefix="ml")
    (calls, _) = panel(board, "Throughput")["targets"]
    assert (
        "alias(sumSeries(perSecond(keepLastValue(ml.$model.$instance.mlmon_calls_total, 3))), "
        "'calls/s')"
    ) == calls["target"]
    for q in queries(board):
        assert "perSecond(sumSeries" not in q


def test_graphite_direct_latency_quantiles_are_the_maximum_over_processes() -> None:
    board = dashboard("graphite", "fraud", prefix="ml")
    p99 = [t["target"] for t in panel(board, "Latency")["targets"] if ".p99" in t["target"]]
    assert [
        "alias(maxSeries(keepLastValue(ml.$model.$instance.mlmon_latency_seconds.p99, 3)), "
        "'p99 (max over instances)')"
    ] == p99


def test_statsd_counts_read_the_daemons_sums_and_gauges_its_gauges() -> None:
    board = dashboard("graphite", "fraud", prefix="ml", via="statsd")
    (calls, _) = panel(board, "Throughput")["targets"]
    assert "alias(sumSeries(stats.ml.$model.mlmon_calls_total), 'calls/s')" == calls["target"]
    (cpu,) = panel(board, "Process CPU")["targets"]
    assert "stats.gauges.ml.$model.mlmon_process_cpu_percent" in cpu["target"]


def test_statsd_has_no_instance_variable_nor_per_process_panels() -> None:
    board = dashboard("graphite", "fraud", via="statsd")
    names = {v["name"] for v in board["templating"]["list"]}
    titles = {p["title"] for p in board["panels"]}
    assert "instance" not in names
    assert not {"Processes reporting", "p99 latency by process (window)"} & titles


def test_graphite_feature_variable_holds_the_sanitised_path_segments() -> None:
    board = dashboard("graphite", "fraud", features=["a b", "âge"])
    feature = next(v for v in board["templating"]["list"] if v["name"] == "feature")
    assert "a_b,age" == feature["query"]


def test_prometheus_feature_variable_keeps_the_names() -> None:
    board = dashboard("prometheus", "fraud", features=["a b", "x,y"])
    feature = next(v for v in board["templating"]["list"] if v["name"] == "feature")
    assert "a b,x\\,y" == feature["query"]
    assert ["a b", "x,y"] == [o["value"] for o in feature["options"][1:]]


def test_the_model_variable_selects_the_given_model() -> None:
    board = dashboard("prometheus", "fraud")
    model = next(v for v in board["templating"]["list"] if v["name"] == "model")
    assert "fraud" == model["current"]["value"]
    assert "label_values(mlmon_up, model)" == model["query"]


def test_without_a_model_the_variable_starts_empty_and_the_title_is_generic() -> None:
    board = dashboard("graphite", None, prefix="ml")
    model = next(v for v in board["templating"]["list"] if v["name"] == "model")
    assert {} == model["current"]
    assert "ml.*" == model["query"]
    assert "mlmon" == board["title"]


def test_title_can_be_given() -> None:
    assert "Fraud in prod" == dashboard("prometheus", "fraud", title="Fraud in prod")["title"]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"datasource": "influxdb"},
            "datasource must be 'graphite' or 'prometheus', got 'influxdb'",
        ),
        ({"via": "carbon"}, "via must be 'direct' or 'statsd', got 'carbon'"),
        ({"task": "ranking"}, "task must be 'binary', 'multiclass', 'regression' or 'none'"),
        ({"model": "fraud model"}, "model must match"),
        ({"prefix": "ml"}, "prefix applies to Graphite paths only"),
        ({"via": "statsd"}, "via='statsd' needs datasource='graphite'"),
        ({"datasource": "graphite", "prefix": "ml..x"}, "prefix must be dot-separated"),
        ({"features": ["age", "age"]}, "feature names must be unique"),
        ({"features": ["a b", "a.b"]}, "both become 'a_b'"),
        ({"features": [""]}, "feature names must be non-empty strings"),
    ],
)
def test_bad_options_raise_value_error_naming_the_field(
    kwargs: dict[str, Any], message: str
) -> None:
    args = {"datasource": "prometheus", "model": "fraud", **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        dashboard(args.pop("datasource"), args.pop("model"), **args)


def test_features_given_as_one_string_raise_type_error() -> None:
    with pytest.raises(TypeError, match="not a string"):
        dashboard("prometheus", "fraud", features="age,income")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def test_cli_writes_the_dashboard_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fraud.json"
    code = main(
        [
            "--datasource", "graphite", "--model", "fraud", "--prefix", "ml",
            "--features", "age, income", "--task", "binary", "-o", str(out),
        ]
    )  # fmt: skip
    assert 0 == code
    written = json.loads(out.read_text())
    expected = dashboard("graphite", "fraud", prefix="ml", features=["age", "income"])
    assert expected == written
    assert f"to {out}" in capsys.readouterr().err


def test_cli_writes_to_stdout_without_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["--datasource", "prometheus", "--task", "none"])
    board = json.loads(capsys.readouterr().out)
    assert "Quality" not in rows(board)


def test_cli_via_statsd(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["--datasource", "graphite", "--via", "statsd", "--model", "fraud"])
    assert "statsd" in json.loads(capsys.readouterr().out)["tags"]


def test_cli_unknown_datasource_exits_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert 2 == main(["--datasource", "influxdb", "--model", "fraud"])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert "datasource must be 'graphite' or 'prometheus', got 'influxdb'" in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--model", "fraud"],
        ["--datasource", "prometheus", "--via", "statsd"],
        ["--datasource", "prometheus", "--task", "ranking"],
        ["--datasource", "graphite", "--prefix", "a b"],
        ["--datasource", "prometheus", "--unknown-flag"],
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert 2 == main(argv)
    assert "python -m mlmon export grafana" in capsys.readouterr().err


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["--help"])
    assert "--datasource" in capsys.readouterr().out


def test_cli_unwritable_output_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing-dir" / "fraud.json"
    assert 1 == main(["--datasource", "prometheus", "-o", str(target)])
    assert "cannot write" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Fleet panels from the cumulative counters
# ---------------------------------------------------------------------------------------------


def test_prometheus_fleet_precision_is_a_ratio_of_summed_confusion_cells() -> None:
    board = dashboard("prometheus", "fraud")
    precision, recall, f1 = (
        t["expr"] for t in panel(board, "Fleet precision / recall / F1")["targets"]
    )
    sel = 'mlmon_confusion_total{model="$model", instance=~"$instance", '
    tp = f'sum by (model) (increase({sel}actual="1", predicted="1", segment=""}}[5m]))'
    pp = f'sum by (model) (increase({sel}predicted="1", segment=""}}[5m]))'
    ap = f'sum by (model) (increase({sel}actual="1", segment=""}}[5m]))'
    assert precision == f"{tp} / {pp}"
    assert recall == f"{tp} / {ap}"
    assert f1 == f"2 * {tp} / ({pp} + {ap})"


def test_the_positive_class_names_the_confusion_cells() -> None:
    prom = dashboard("prometheus", "fraud", positive='sp"am')
    (precision, *_) = panel(prom, "Fleet precision / recall / F1")["targets"]
    assert 'actual="sp\\"am", predicted="sp\\"am"' in precision["expr"]
    graphite = dashboard("graphite", "fraud", prefix="ml", positive="spam.eggs")
    (precision, *_) = panel(graphite, "Fleet precision / recall / F1")["targets"]
    assert "mlmon_confusion_total.actual_spam_eggs.predicted_spam_eggs" in precision["target"]
    with pytest.raises(ValueError, match="positive"):
        dashboard("prometheus", "fraud", positive="")


@pytest.mark.parametrize(("ds", "via"), BACKENDS)
def test_fleet_mae_and_rmse_divide_summed_error_sums_by_summed_labels(ds: str, via: str) -> None:
    board = dashboard(ds, "fraud", via=via, task="regression")
    mae, rmse = (t.get("expr") or t["target"] for t in panel(board, "Fleet MAE / RMSE")["targets"])
    assert "mlmon_regression_abs_error_sum_total" in mae and "mlmon_regression_labels_total" in mae
    assert "mlmon_regression_squared_error_sum_total" in rmse
    assert rmse.startswith("sqrt(") if ds == "prometheus" else "pow(" in rmse
    for q in (mae, rmse):
        assert "mlmon_mae" not in q and "mlmon_rmse" not in q  # never the window gauges


def test_graphite_fleet_quality_sums_per_process_rates_over_the_range() -> None:
    board = dashboard("graphite", "fraud", prefix="ml")
    (precision, *_) = panel(board, "Fleet precision / recall / F1")["targets"]
    cell = "ml.$model.$instance.mlmon_confusion_total"
    assert precision["target"] == (
        f"alias(divideSeries(movingSum(sumSeries(perSecond(keepLastValue({cell}.actual_1.predicted_1, 3))), '5min'), "
        f"movingSum(sumSeries(perSecond(keepLastValue({cell}.actual_*.predicted_1, 3))), '5min')), 'fleet precision')"
    )
    statsd = dashboard("graphite", "fraud", prefix="ml", via="statsd")
    (precision, *_) = panel(statsd, "Fleet precision / recall / F1")["targets"]
    assert (
        "sumSeries(stats.ml.$model.mlmon_confusion_total.actual_1.predicted_1)"
        in precision["target"]
    )


def test_graphite_has_no_fleet_macro_average_nor_fleet_psi() -> None:
    board = dashboard("graphite", "fraud", task="multiclass", features=FEATURES)
    titles = {p["title"] for p in board["panels"]}
    assert "Fleet precision / recall / F1 (macro average)" not in titles
    assert "Fleet drift (PSI) by feature" not in titles
    per_process = panel(board, "Precision / recall / F1 (macro average)")
    assert per_process["gridPos"]["w"] == 24


def test_prometheus_fleet_macro_average_uses_the_diagonal_cells() -> None:
    board = dashboard("prometheus", "fraud", task="multiclass")
    precision, recall, f1 = (
        t["expr"] for t in panel(board, "Fleet precision / recall / F1 (macro average)")["targets"]
    )
    for q in (precision, recall, f1):
        assert q.startswith("avg by (model) (")  # the mean over classes, after the fleet sums
        assert "label_join(sum by (model, instance, actual) (mlmon_confusion_total" in q
        assert "$1" not in q


def test_prometheus_fleet_psi_floors_both_shares_like_mlmon() -> None:
    board = dashboard("prometheus", "fraud", features=FEATURES)
    (psi,) = panel(board, "Fleet drift (PSI) by feature")["targets"]
    expr = psi["expr"]
    assert expr.startswith("sum by (model, feature) ((clamp_min(")
    assert "mlmon_feature_bin_total" in expr and "mlmon_feature_reference_ratio" in expr
    assert expr.count(", 1e-4)") == 4 and "ln(" in expr
    assert psi["legendFormat"] == "{{feature}}"


def test_cli_positive_names_the_positive_class(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["--datasource", "prometheus", "--model", "fraud", "--positive", "spam"])
    board = json.loads(capsys.readouterr().out)
    (precision, *_) = panel(board, "Fleet precision / recall / F1")["targets"]
    assert 'actual="spam", predicted="spam"' in precision["expr"]


# ---------------------------------------------------------------------------------------------
# The fleet row: the fleet snapshot (Monitor(fleet=Fleet(...))) and the fleet's health
# ---------------------------------------------------------------------------------------------

FLEET_ROW = [
    "Processes merged", "Leaders", "Processes reaching the store",
    "Fleet snapshot: precision / recall / F1", "Fleet snapshot: latency", "Fleet snapshot: calls / s",
    "Fleet snapshot: error ratio and availability", "Fleet snapshot: output mean and variance",
    "Fleet snapshot: drift (PSI)", "Leader by process", "Store reachable by process",
    "States rejected / s by reason", "Publishes refused and takeovers / s", "Merge time",
]  # fmt: skip


def row_panels(board: dict[str, Any], title: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    inside = False
    for p in board["panels"]:
        if p["type"] == "row":
            inside = p["title"] == title
        elif inside:
            out.append(p)
    return out


def split_fleet(board: dict[str, Any], key: str) -> tuple[list[str], list[str]]:
    """(queries of the fleet row, queries of every other row)."""
    fleet = [t[key] for p in row_panels(board, "Fleet") for t in p["targets"]]
    rest = [t[key] for p in panels(board) for t in p["targets"] if p not in row_panels(board, "Fleet")]
    return fleet, rest


@pytest.mark.parametrize(("ds", "prefix"), [("prometheus", ""), ("graphite", "ml")])
def test_the_fleet_row_comes_first_only_when_asked(ds: str, prefix: str) -> None:
    board = dashboard(ds, "fraud", prefix=prefix, features=FEATURES, fleet="fleet")
    assert rows(board)[:2] == ["Fleet", "Service health"]
    assert [p["title"] for p in row_panels(board, "Fleet")] == FLEET_ROW
    plain = dashboard(ds, "fraud", prefix=prefix, features=FEATURES)
    assert "Fleet" not in rows(plain)
    assert not [q for q in queries(plain) if "fleet\"" in q or ".fleet." in q or "[.]fleet" in q]


def test_prometheus_fleet_row_selects_the_fleet_under_either_instance_label() -> None:
    board = dashboard("prometheus", "fraud", features=FEATURES, fleet="fleet")
    _, rest = split_fleet(board, "expr")
    snapshot = [p for p in row_panels(board, "Fleet") if p["title"].startswith("Fleet snapshot") or p["title"] in ("Processes merged", "Merge time", "States rejected / s by reason")]
    for p in snapshot:
        for t in p["targets"]:
            sels = re.findall(r"mlmon_\w+\{[^}]*\}", t["expr"])
            assert sels and len(sels) % 2 == 0, t["expr"]
            # honor_labels: false keeps mlmon's instance as exported_instance, true as instance
            assert {s.count('exported_instance="fleet"') for s in sels} == {0, 1}, t["expr"]
            assert sum('exported_instance="fleet"' in s for s in sels) == len(sels) // 2
            assert sum(', instance="fleet"' in s for s in sels) == len(sels) // 2
            assert "$instance" not in t["expr"]  # the fleet is not one of the processes
    p99 = panel(board, "Fleet snapshot: latency")["targets"][2]
    assert p99["expr"] == (
        'max by (model, quantile) (mlmon_latency_window_seconds{model="$model", quantile="0.99", segment="", '
        'exported_instance="fleet"} or mlmon_latency_window_seconds{model="$model", quantile="0.99", segment="", '
        'instance="fleet"})'
    )
    assert p99["legendFormat"] == "p99"
    # every other selector, the fleet health per process included, leaves the fleet out
    for q in rest + [t["expr"] for t in panel(board, "Leader by process")["targets"]]:
        for sel in re.findall(r"mlmon_\w+\{[^}]*\}", q):
            assert 'instance=~"$instance", instance!="fleet", exported_instance!="fleet"' in sel, sel
    instance_var = next(v for v in board["templating"]["list"] if v["name"] == "instance")
    assert 'instance!="fleet", exported_instance!="fleet"' in instance_var["query"]


def test_graphite_fleet_row_reads_the_fleet_path_and_other_rows_exclude_it() -> None:
    board = dashboard("graphite", "fraud", prefix="ml", features=FEATURES, fleet="fleet")
    fleet, rest = split_fleet(board, "target")
    assert "alias(maxSeries(keepLastValue(ml.$model.fleet.mlmon_f1, 3)), 'f1')" in fleet
    assert (
        "aliasSub(groupByNode(perSecond(keepLastValue(ml.$model.fleet.mlmon_fleet_states_rejected_total.*, 3)), "
        "4, 'sumSeries'), '^reason_', '')"
    ) in fleet
    for q in rest:
        starts = [m.start() for m in re.finditer(r"ml\.\$model\.", q)]
        assert starts, q
        for i in starts:
            assert q[i:].startswith("ml.$model.$instance."), q
            assert q[:i].endswith("exclude("), q
            path_end = q.index(", '[.]fleet[.]mlmon_')", i)
            assert ")" not in q[i:path_end] and "(" not in q[i:path_end], q
    instance_var = next(v for v in board["templating"]["list"] if v["name"] == "instance")
    assert re.fullmatch(instance_var["regex"].strip("/"), "web-1_42")
    assert not re.fullmatch(instance_var["regex"].strip("/"), "fleet")


def test_a_renamed_fleet_is_quoted_or_sanitised_for_each_backend() -> None:
    prom = dashboard("prometheus", "fraud", fleet='all "replicas"')
    assert 'exported_instance="all \\"replicas\\""' in panel(prom, "Processes merged")["targets"][0]["expr"]
    graphite = dashboard("graphite", "fraud", fleet="all replicas:1")
    assert "$model.all_replicas_1.mlmon_fleet_processes" in panel(graphite, "Processes merged")["targets"][0]["target"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fleet": ""}, "fleet must be the fleet's instance"),
        ({"fleet": "x" * 129}, "fleet must be the fleet's instance"),
        ({"fleet": "fleet", "datasource": "graphite", "via": "statsd"}, "fleet panels need the fleet's own series"),
    ],
)
def test_bad_fleet_options_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    args = {"datasource": "prometheus", **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        dashboard(args.pop("datasource"), "fraud", **args)


def test_quality_panels_of_the_fleet_follow_the_task() -> None:
    multi = dashboard("prometheus", "fraud", task="multiclass", fleet="fleet")
    exprs = [t["expr"] for t in panel(multi, "Fleet snapshot: precision / recall / F1")["targets"]]
    assert len(exprs) == 3 and all('average="macro"' in e for e in exprs)
    reg = dashboard("graphite", "fraud", task="regression", fleet="fleet")
    targets = [t["target"] for t in panel(reg, "Fleet snapshot: MAE / RMSE")["targets"]]
    assert [".fleet.mlmon_mae," in targets[0], ".fleet.mlmon_rmse," in targets[1]] == [True, True]
    none = dashboard("prometheus", "fraud", task="none", fleet="fleet")
    assert not [p for p in row_panels(none, "Fleet") if "precision" in p["title"]]


def test_cli_fleet_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["--datasource", "prometheus", "--model", "fraud", "--fleet"])
    assert json.loads(capsys.readouterr().out) == dashboard("prometheus", "fraud", fleet="fleet")
    assert 0 == main(["--datasource", "graphite", "--model", "fraud", "--fleet", "all"])
    assert json.loads(capsys.readouterr().out) == dashboard("graphite", "fraud", fleet="all")
    assert 2 == main(["--datasource", "graphite", "--via", "statsd", "--fleet"])
    assert "fleet panels need the fleet's own series" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Segments: a repeated row of small multiples; the overall panels never read a segment's series
# ---------------------------------------------------------------------------------------------

SEGMENT_TITLES = {
    "binary": ["Rows / s · $segment", "Error ratio · $segment", "F1 · $segment", "Largest feature drift (PSI) · $segment"],
    "multiclass": ["Rows / s · $segment", "Error ratio · $segment", "F1 (macro) · $segment", "Largest feature drift (PSI) · $segment"],
    "regression": ["Rows / s · $segment", "Error ratio · $segment", "MAE · $segment", "Largest feature drift (PSI) · $segment"],
    "none": ["Rows / s · $segment", "Error ratio · $segment", "Largest feature drift (PSI) · $segment"],
}


def overall_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    segment = {id(p) for p in row_panels(board, "Segments")}
    return [p for p in panels(board) if id(p) not in segment]


@pytest.mark.parametrize(("ds", "via"), BACKENDS)
@pytest.mark.parametrize("task", TASKS)
def test_the_segments_row_repeats_each_panel_per_segment(ds: str, via: str, task: str) -> None:
    prefix = "ml" if ds == "graphite" else ""
    board = dashboard(ds, "fraud", prefix=prefix, via=via, task=task, segments=True)
    assert "Segments" == rows(board)[-2]  # before the alerts
    seg_panels = row_panels(board, "Segments")
    assert SEGMENT_TITLES[task] == [p["title"] for p in seg_panels]
    for p in seg_panels:
        assert ("segment", "h") == (p["repeat"], p["repeatDirection"])
        assert 2 <= p["maxPerRow"] <= 12
        assert (0, 24) == (p["gridPos"]["x"], p["gridPos"]["w"])  # alone on its line
        key = "expr" if ds == "prometheus" else "target"
        assert all("$segment" in t[key] for t in p["targets"]), p["title"]
    variable = next(v for v in board["templating"]["list"] if v["name"] == "segment")
    assert variable["multi"] and variable["includeAll"]  # Grafana repeats over the selection
    assert {"selected": True, "text": ["All"], "value": ["$__all"]} == variable["current"]
    # only the segments row repeats
    assert [p for p in panels(board) if "repeat" in p] == seg_panels


def test_without_segments_there_is_no_segments_row_nor_variable() -> None:
    for ds, prefix in (("prometheus", ""), ("graphite", "ml")):
        board = dashboard(ds, "fraud", prefix=prefix, features=FEATURES)
        assert "Segments" not in rows(board)
        assert "segment" not in [v["name"] for v in board["templating"]["list"]]
        assert not any("$segment" in q for q in queries(board))


def test_the_prometheus_segment_variable_lists_the_models_segments() -> None:
    board = dashboard("prometheus", "fraud", segments=True)
    variable = next(v for v in board["templating"]["list"] if v["name"] == "segment")
    assert 'label_values(mlmon_rows_per_second{model="$model", segment!=""}, segment)' == variable["query"]
    assert ".+" == variable["allValue"]  # "All" is every segment, never the overall series


@pytest.mark.parametrize(
    ("via", "prefix", "query"),
    [
        ("direct", "ml", "ml.$model.*.mlmon_rows_per_second.segment_*"),
        ("statsd", "ml", "stats.gauges.ml.$model.mlmon_rows_per_second.segment_*"),
        ("direct", "", "$model.*.mlmon_rows_per_second.segment_*"),
    ],
)
def test_the_graphite_segment_variable_lists_the_segment_path_parts(via: str, prefix: str, query: str) -> None:
    board = dashboard("graphite", "fraud", prefix=prefix, via=via, segments=True)
    variable = next(v for v in board["templating"]["list"] if v["name"] == "segment")
    assert query == variable["query"]
    assert "*" == variable["allValue"]
    # the regex keeps the name after "segment_", which the panels put back
    m = re.fullmatch(variable["regex"].strip("/"), "segment_e-u_1")
    assert m is not None and "e-u_1" == m.group(1)
    assert all("segment_$segment" in q for q in queries({**board, "panels": row_panels(board, "Segments")}))


def test_prometheus_segment_panels_sum_the_segments_counters_per_process_rates() -> None:
    board = dashboard("prometheus", "fraud", segments=True)
    (rows_q,) = panel(board, "Rows / s · $segment")["targets"]
    assert (
        'sum by (model, segment) (rate(mlmon_rows_total{model="$model", instance=~"$instance", '
        'segment=~"$segment"}[$__rate_interval]))'
    ) == rows_q["expr"]
    (errors,) = panel(board, "Error ratio · $segment")["targets"]
    assert 'mlmon_errors_total{model="$model", instance=~"$instance", segment=~"$segment"}' in errors["expr"]
    assert 'mlmon_calls_total{model="$model", instance=~"$instance", segment=~"$segment"}' in errors["expr"]
    (drift,) = panel(board, "Largest feature drift (PSI) · $segment")["targets"]
    assert 'max by (model, segment) (mlmon_feature_drift_psi{model="$model", instance=~"$instance", segment=~"$segment"})' == drift["expr"]
    multiclass = dashboard("prometheus", "fraud", task="multiclass", segments=True)
    (f1,) = panel(multiclass, "F1 (macro) · $segment")["targets"]
    assert 'mlmon_f1{model="$model", instance=~"$instance", average="macro", segment=~"$segment"}' == f1["expr"]


SELECTOR = re.compile(r"\b(mlmon_\w+)\{([^}]*)\}")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("fleet", [None, "fleet"])
def test_every_overall_prometheus_selector_selects_segment_empty(task: str, fleet: str | None) -> None:
    """segment="" on every selector outside the segments row: a counter summed over series
    never adds the segments' series (which would double it) and a gauge is never a segment's."""
    board = dashboard("prometheus", "fraud", task=task, features=FEATURES, fleet=fleet, segments=True)
    overall = [t["expr"] for p in overall_panels(board) for t in p["targets"]]
    selectors = [m for q in overall for m in SELECTOR.findall(q)]
    assert len(selectors) > 20
    for name, matchers in selectors:
        assert 'segment=""' in matchers.split(", "), (name, matchers)
    seg = [t["expr"] for p in row_panels(board, "Segments") for t in p["targets"]]
    for name, matchers in (m for q in seg for m in SELECTOR.findall(q)):
        assert 'segment=~"$segment"' in matchers.split(", "), (name, matchers)
        assert 'segment=""' not in matchers


# Label values for rendering every catalog series the way the emitters do.
_LABEL_VALUES = {"feature": "age", "error_type": "ValueError", "quantile": "0.99", "class": "1",
                 "outcome": "click", "average": "macro", "actual": "1", "predicted": "1",
                 "le": "0.1", "bin": "0", "rule": "r"}  # fmt: skip


def emitted_paths(via: str, segment: str | None) -> set[str]:
    """Every Graphite path GraphiteEmitter (direct) or StatsD (statsd) writes for the catalog's
    series of model fraud, instance web1:1, overall (segment None) or of one segment."""
    from mlmon.naming import PathRenderer

    renderer = PathRenderer("ml", instance_in_path=via == "direct")
    out = set()
    for info in CATALOG.values():
        if not set(info.labels) <= set(_LABEL_VALUES):
            continue  # internal series (sinks, buffers...), never per segment
        # with every label it carries; a quality metric also without (binary F1 has no average)
        optional = "average" in info.labels
        for labels in [{k: _LABEL_VALUES[k] for k in info.labels}] + ([{}] if optional else []):
            if segment is not None:
                labels["segment"] = segment
            path, _ = renderer.render("fraud", None, "web1:1", info.name, tuple(sorted(labels.items())))
            if via == "direct":
                out.add(path)
            else:
                out |= {f"stats.{path}", f"stats_counts.{path}", f"stats.gauges.{path}"}
    return out


def graphite_patterns(expr: str, values: dict[str, str]) -> list[re.Pattern[str]]:
    """The path globs of a Graphite target as regular expressions, variables replaced."""
    out = []
    for glob in re.findall(r"[A-Za-z0-9_*${},.-]*mlmon_[A-Za-z0-9_*${},.-]*", expr):
        for name, value in values.items():
            glob = glob.replace(name, value)
        glob = glob.rstrip(",")
        rx = ""
        i = 0
        while i < len(glob):
            ch = glob[i]
            if ch == "*":
                rx += "[^.]*"
            elif ch == "{":
                j = glob.index("}", i)
                rx += "(?:" + "|".join(re.escape(a) for a in glob[i + 1 : j].split(",")) + ")"
                i = j
            else:
                rx += re.escape(ch)
            i += 1
        out.append(re.compile(rx))
    return out


@pytest.mark.parametrize("via", ["direct", "statsd"])
def test_overall_graphite_queries_never_match_a_segments_paths(via: str) -> None:
    board = dashboard("graphite", "fraud", prefix="ml", via=via, features=FEATURES, segments=True)
    values = {"$model": "fraud", "$instance": "*", "$feature": "{age,income}", "$segment": "eu"}
    overall_paths = emitted_paths(via, None)
    segment_paths = emitted_paths(via, "eu")
    assert not overall_paths & segment_paths
    overall = [t["target"] for p in overall_panels(board) for t in p["targets"]]
    matched_overall = 0
    for expr in overall:
        for rx in graphite_patterns(expr, values):
            hits = [p for p in segment_paths if rx.fullmatch(p)]
            assert [] == hits, (expr, rx.pattern)
            matched_overall += any(rx.fullmatch(p) for p in overall_paths)
    assert matched_overall > 20  # the patterns do match what they are meant to
    # and each segment panel's paths are that segment's only
    seg = [t["target"] for p in row_panels(board, "Segments") for t in p["targets"]]
    other_segment = emitted_paths(via, "us")
    for expr in seg:
        patterns = graphite_patterns(expr, values)
        assert any(rx.fullmatch(p) for rx in patterns for p in segment_paths), expr
        assert not any(rx.fullmatch(p) for rx in patterns for p in overall_paths | other_segment), expr


def test_cli_segments_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["--datasource", "prometheus", "--model", "fraud", "--segments"])
    board = json.loads(capsys.readouterr().out)
    assert "Segments" in rows(board)
    assert 0 == main(["--datasource", "prometheus", "--model", "fraud"])
    assert "Segments" not in rows(json.loads(capsys.readouterr().out))
