"""Exported alerting rules against the real promtool and a real Prometheus server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import servers

from mlmon import alerts
from mlmon.alerts import Absent, Baseline, PercentChange, PercentDrop, Threshold, VarianceChange
from mlmon.emitters.prometheus import render_exposition
from mlmon.export import export_prometheus_rules, prometheus_rules
from mlmon.snapshot import Sample, Snapshot

EVERY_KIND: list[alerts.Rule] = [
    Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, for_=60),
    Threshold("mlmon_availability_ratio", below=0.999, severity="critical", resolve_after=0),
    Threshold("mlmon_mean_error", above=0.1, below=-0.1),
    Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.2, cooldown=600),
    PercentDrop("mlmon_precision", percent=10),
    PercentDrop("mlmon_recall", percent=10, baseline=0.8),
    PercentDrop("mlmon_f1", percent=10, baseline="pinned"),
    PercentDrop("mlmon_precision", labels={"class": "*"}, percent=15, baseline=Baseline.trailing(86400, exclude=0)),
    PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=50),
    PercentChange("mlmon_feature_mean", labels={"feature": "age"}, percent=20, baseline="reference"),
    VarianceChange("mlmon_output_variance", factor=2.0),
    VarianceChange("mlmon_feature_variance", labels={"feature": "*"}, factor=3.0, test="f"),
    Absent(),
    Absent("mlmon_labels_total", for_=3600, min_samples=1),
    Threshold(
        "mlmon_feature_mean", labels={"feature": 'we"ird\\na\nme {{x}}'}, above=1, name="weird",
        summary="it's {{ broken }} \"quoted\"",
    ),
]  # fmt: skip


def test_every_kind_of_rule_passes_promtool(promtool: servers.Promtool, tmp_path: Path) -> None:
    for approximate in (False, True):
        out = export_prometheus_rules(EVERY_KIND, model="fraud", job="api", approximate=approximate)
        path = tmp_path / f"rules_{approximate}.yml"
        path.write_text(out.text)
        ok, output = promtool.check_rules(path)
        assert ok, output
        assert f"SUCCESS: {len(out.exported)} rules found" in output
    assert 3 == len(export_prometheus_rules(EVERY_KIND).skipped)  # pinned, reference, F-test


def test_a_file_with_no_expressible_rule_passes_promtool(promtool: servers.Promtool, tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text(prometheus_rules([PercentDrop("mlmon_precision", percent=10, baseline="pinned")]))
    ok, output = promtool.check_rules(path)
    assert ok, output


def exposition(error_ratio: float, p99: float, calls_per_second: float, precision: float) -> str:
    snap = Snapshot("fraud", "v1", "web1:7", 0.0, 300.0, (
        Sample.make("mlmon_error_ratio", error_ratio),
        Sample.make("mlmon_latency_seconds", p99, quantile="0.99"),
        Sample.make("mlmon_calls_per_second", calls_per_second),
        Sample.make("mlmon_precision", precision),
        Sample.make("mlmon_labels_window", 1000),
    ))  # fmt: skip
    return render_exposition([snap])


def test_exported_rules_go_pending_then_firing_in_a_real_prometheus(
    prometheus_factory: Callable[..., servers.Prometheus],
    metrics_endpoint_factory: Callable[..., servers.MetricsEndpoint],
    tmp_path: Path,
) -> None:
    rules = [
        Threshold("mlmon_error_ratio", above=0.05, for_=3, min_samples=0, name="errors_high"),
        Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, name="slow_p99"),  # >= 100 calls
        PercentDrop("mlmon_precision", percent=10, baseline=0.8, for_=0, name="precision_low"),
    ]
    path = tmp_path / "mlmon.rules.yml"
    path.write_text(prometheus_rules(rules, model="fraud"))
    # Healthy, and too few calls (0.1/s over 300 s = 30) for the latency rule to count.
    endpoint = metrics_endpoint_factory(exposition(0.01, 0.1, 0.1, 0.85))
    prom = prometheus_factory([endpoint.target], rule_files=[path])
    prom.wait_for_targets_up()
    loaded = {r["name"] for g in prom.rules() for r in g["rules"]}
    assert {"errors_high", "slow_p99", "precision_low"} == loaded
    prom.wait_for_query('mlmon_error_ratio{model="fraud"}')
    assert [] == prom.alerts()

    endpoint.set_text(exposition(0.2, 0.5, 0.1, 0.6))
    seen: dict[str, set[str]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for a in prom.alerts():
            seen.setdefault(a["labels"]["alertname"], set()).add(a["state"])
        if "firing" in seen.get("errors_high", set()) and "firing" in seen.get("precision_low", set()):
            break
        time.sleep(0.05)
    assert {"pending", "firing"} == seen.get("errors_high")  # held 3 s by for:
    assert "firing" in seen["precision_low"]
    assert "slow_p99" not in seen  # min_samples: 30 calls in the window
    firing = {a["labels"]["alertname"]: a for a in prom.alerts() if a["state"] == "firing"}
    assert ("fraud", "warning") == (firing["errors_high"]["labels"]["model"], firing["errors_high"]["labels"]["severity"])

    endpoint.set_text(exposition(0.2, 0.5, 1.0, 0.6))  # 300 calls in the window
    prom.wait_for_query('ALERTS{alertname="slow_p99",alertstate="firing"}', timeout=30)


def segmented_exposition(overall_error_ratio: float) -> str:
    """Healthy overall series (few calls, good precision) next to a real segment's series that
    would trip every rule: what a monitor with segments exposes."""
    snap = Snapshot("fraud", "v1", "web1:7", 0.0, 300.0, (
        Sample.make("mlmon_error_ratio", overall_error_ratio),
        Sample.make("mlmon_latency_seconds", 0.5, quantile="0.99"),
        Sample.make("mlmon_calls_per_second", 0.1),  # 30 calls in the window: too few
        Sample.make("mlmon_precision", 0.85),
        Sample.make("mlmon_labels_window", 1000),
        Sample.make("mlmon_error_ratio", 0.5, segment="eu"),
        Sample.make("mlmon_calls_per_second", 10.0, segment="eu"),  # 3000 calls
        Sample.make("mlmon_precision", 0.3, segment="eu"),
        Sample.make("mlmon_labels_window", 1000, segment="eu"),
    ))  # fmt: skip
    return render_exposition([snap])


def test_exported_rules_ignore_real_segment_series_in_a_real_prometheus(
    prometheus_factory: Callable[..., servers.Prometheus],
    metrics_endpoint_factory: Callable[..., servers.MetricsEndpoint],
    tmp_path: Path,
) -> None:
    """A segment's series share the overall names: the exported rules select segment="" and
    stay quiet while only a segment is bad; the same rules without that selection fire on it."""
    rules = [
        Threshold("mlmon_error_ratio", above=0.05, min_samples=0, name="errors_high"),
        Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, name="slow_p99"),  # >= 100 calls
        PercentDrop("mlmon_precision", percent=10, baseline=0.8, for_=0, name="precision_low"),
    ]
    text = prometheus_rules(rules, model="fraud")
    assert text.count('segment=""') >= 5
    # The control: the same rules, renamed, without the segment selection.
    control = text.replace(',segment=""', "").replace("segment=\"\"", "")
    for rule in rules:
        control = control.replace(f"alert: '{rule.name}'", f"alert: '{rule.name}_unselected'")
    control = control.replace("- name: 'mlmon'", "- name: 'control'")
    (tmp_path / "mlmon.rules.yml").write_text(text)
    (tmp_path / "control.rules.yml").write_text(control)
    endpoint = metrics_endpoint_factory(segmented_exposition(0.01))
    prom = prometheus_factory([endpoint.target], rule_files=[tmp_path / "mlmon.rules.yml", tmp_path / "control.rules.yml"])
    prom.wait_for_targets_up()
    prom.wait_for_query('mlmon_error_ratio{model="fraud",segment="eu"}')
    unselected = {f"{r.name}_unselected" for r in rules}
    deadline = time.monotonic() + 30
    firing: dict[str, dict[str, str]] = {}
    while time.monotonic() < deadline and set(firing) < unselected:
        firing = {a["labels"]["alertname"]: a["labels"] for a in prom.alerts() if a["state"] == "firing"}
        time.sleep(0.1)
    assert unselected <= set(firing)  # the segment's series are there, and would trip them
    # on the segment's own values; and the overall p99 counted the segment's 3000 calls
    assert ("eu", "eu") == (firing["errors_high_unselected"].get("segment"), firing["precision_low_unselected"].get("segment"))
    assert "segment" not in firing["slow_p99_unselected"]
    for _ in range(3):  # a few more evaluations (1 s each): the selected rules stay quiet
        time.sleep(1.0)
        assert set() == {a["labels"]["alertname"] for a in prom.alerts()} - unselected

    endpoint.set_text(segmented_exposition(0.2))  # now the overall series is bad
    found = prom.wait_for_query('ALERTS{alertname="errors_high",alertstate="firing"}', timeout=30)
    assert "segment" not in found[0]["metric"]
    assert {"slow_p99", "precision_low"}.isdisjoint(a["labels"]["alertname"] for a in prom.alerts())
