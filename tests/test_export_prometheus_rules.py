"""Prometheus alerting rules exported from mlmon rules: PromQL, skips, quoting and the CLI."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from mlmon import alerts
from mlmon.alerts import Absent, Baseline, PercentChange, PercentDrop, Threshold, VarianceChange
from mlmon.export import export_prometheus_rules, prometheus_rules
from mlmon.export.cli import main
from mlmon.export.prometheus_rules import duration, yaml_str

ON = "on(job, instance, exported_instance, model, version)"


def exprs(*rules: alerts.Rule, **kwargs: Any) -> dict[str, str]:
    """alert name -> expr, read back with PyYAML (a test-only dependency)."""
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(export_prometheus_rules(list(rules), **kwargs).text)
    return {r["alert"]: r["expr"] for r in doc["groups"][0]["rules"]}


def one(rule: alerts.Rule, **kwargs: Any) -> str:
    return exprs(rule, **kwargs)[rule.name]


def parsed(*rules: alerts.Rule, **kwargs: Any) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return dict(yaml.safe_load(export_prometheus_rules(list(rules), **kwargs).text))


# -- PromQL per rule -----------------------------------------------------------------------------
def test_threshold_on_a_latency_quantile_uses_the_window_summary_family() -> None:
    rule = Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, name="slow")
    assert (
        f'(mlmon_latency_window_seconds{{model="fraud",quantile="0.99",segment=""}} > 0.2) and {ON} '
        '(mlmon_calls_per_second{model="fraud",segment=""} * 300 >= 100)'
    ) == one(rule, model="fraud")


def test_threshold_with_both_limits_is_an_or() -> None:
    rule = Threshold("mlmon_mean_error", above=0.1, below=-0.1, min_samples=0, name="bias")
    assert 'mlmon_mean_error{segment=""} > 0.1 or mlmon_mean_error{segment=""} < -0.1' == one(rule)


def test_percent_drop_with_a_number_compares_with_a_constant() -> None:
    rule = PercentDrop("mlmon_precision", percent=10, baseline=0.8, name="p")
    assert f'(mlmon_precision{{segment=""}} < 0.72) and {ON} (mlmon_labels_window{{segment=""}} >= 200)' == one(rule)


def test_percent_drop_with_a_trailing_baseline_averages_the_hour_before_the_window() -> None:
    rule = PercentDrop("mlmon_recall", percent=20, min_samples=0, name="r")
    m = 'mlmon_recall{segment=""}'
    assert (
        f"({m} < 0.8 * (avg_over_time({m}[1h] offset 5m) > 0)) "
        f"and {m} offset 35m"
    ) == one(rule)
    other = PercentDrop("mlmon_recall", percent=20, min_samples=0, name="r2", baseline=Baseline.trailing(86400, exclude=600, min_coverage=1.0))
    assert (
        f"({m} < 0.8 * (avg_over_time({m}[1d] offset 10m) > 0)) "
        f"and {m} offset 1450m"
    ) == one(other, window=60)


def test_percent_change_is_two_sided() -> None:
    rule = PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=50, baseline=0.04, name="ctr")
    m = 'mlmon_outcome_rate{outcome="click",segment=""}'
    assert f'({m} > 0.06 or {m} < 0.02) and {ON} (mlmon_rows_per_second{{segment=""}} * 600 >= 1000)' == one(rule, window=600)


def test_variance_change_is_a_ratio_both_ways_on_the_output_count() -> None:
    rule = VarianceChange("mlmon_output_variance", factor=2, baseline=0.04, name="v")
    m = 'mlmon_output_variance{segment=""}'
    assert f'({m} > 0.08 or {m} < 0.02) and {ON} (mlmon_output_values{{segment=""}} >= 500)' == one(rule)
    trailing = VarianceChange("mlmon_output_variance", factor=2, name="vt", min_samples=0)
    b = f"(avg_over_time({m}[1h] offset 5m) > 0)"
    assert f"({m} > 2 * {b} or {m} < {b} / 2) and {m} offset 35m" == one(trailing)


def test_wildcards_become_regex_matchers() -> None:
    rule = Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.2, name="psi")
    assert one(rule, job="api").startswith('(mlmon_feature_drift_psi{job="api",feature=~".+",segment=""} > 0.2) and ')


def test_absent_watches_the_counter_over_its_duration() -> None:
    c = 'mlmon_calls_total{segment=""}'
    assert (
        f"(increase({c}[5m]) == 0 and {c} offset 5m) "
        f"or absent_over_time({c}[5m])"
    ) == one(Absent(name="quiet"))
    n = 'mlmon_labels_total{segment=""}'
    assert (
        f"(increase({n}[1h]) == 0 and {n} offset 1h) "
        f"and {n} >= 1"
    ) == one(Absent("mlmon_labels_total", for_=3600, min_samples=1, name="no_labels"))


def test_every_selector_of_a_rule_on_the_overall_series_selects_segment_empty() -> None:
    """A segment's series has the overall name plus segment="<name>": without segment="" a rule
    would fire on a segment's value, and a count clause would match a segment's count."""
    rules = [
        Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, name="a"),
        Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.2, name="b"),
        PercentDrop("mlmon_precision", percent=10, name="c"),
        PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=50, baseline=0.04, name="d"),
        VarianceChange("mlmon_output_variance", factor=2, name="e"),
        Absent(name="f"),
        Absent("mlmon_labels_total", for_=3600, min_samples=1, name="g"),
    ]
    for approximate in (False, True):
        for name, expr in exprs(*rules, model="fraud", job="api", approximate=approximate).items():
            selectors = re.findall(r"\bmlmon_\w+(\{[^}]*\})?", expr)
            assert selectors, name
            assert all('segment=""' in sel for sel in selectors), (name, expr)


def test_for_keep_firing_for_severity_and_annotations() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.05, for_=120, resolve_after=300, severity="critical", name="err")
    r = parsed(rule)["groups"][0]["rules"][0]
    assert ("2m", "5m", {"severity": "critical"}) == (r["for"], r["keep_firing_for"], r["labels"])
    assert r["annotations"]["summary"].startswith("{{ $labels.model }}: mlmon_error_ratio > 0.05")
    no_keep = parsed(rule, keep_firing_for=False)["groups"][0]["rules"][0]
    assert "keep_firing_for" not in no_keep
    assert "0s" == parsed(Absent(for_=600, name="a"))["groups"][0]["rules"][0]["for"]


# -- what cannot be expressed ----------------------------------------------------------------------
def test_rules_promql_cannot_express_are_listed_and_commented() -> None:
    rules = [
        Threshold("mlmon_error_ratio", above=0.05, name="err"),
        PercentDrop("mlmon_precision", percent=10, baseline="pinned", name="pinned"),
        PercentDrop("mlmon_feature_mean", labels={"feature": "age"}, percent=10, baseline="reference", name="ref"),
        VarianceChange("mlmon_output_variance", factor=2, test="f", name="ftest"),
    ]
    out = export_prometheus_rules(rules)
    assert ("err",) == out.exported
    assert ["pinned", "ref", "ftest"] == [name for name, _ in out.skipped]
    assert "# not exported: pinned: baseline 'pinned' is kept inside the process" in out.text
    assert "# not exported: ftest: the F-test" in out.text


def test_reference_baselines_export_when_the_reference_has_a_number() -> None:
    rule = PercentChange("mlmon_feature_mean", labels={"feature": "age"}, percent=25, baseline="reference", min_samples=0, name="age_shift")

    def reference_value(metric: str, labels: Any) -> float | None:
        return 40.0 if (metric, dict(labels)) == ("mlmon_feature_mean", {"feature": "age"}) else None

    m = 'mlmon_feature_mean{feature="age",segment=""}'
    assert f"{m} > 50 or {m} < 30" == one(rule, reference_value=reference_value)
    wildcard = attrs_evolve(rule, labels={"feature": "*"})
    out = export_prometheus_rules([wildcard], reference_value=reference_value)
    assert "differs per series of a wildcard selector" in out.skipped[0][1]


def attrs_evolve(rule: Any, **changes: Any) -> Any:
    import attrs

    return attrs.evolve(rule, **changes)


def test_approximate_exports_an_f_test_rule_without_its_test_and_says_so() -> None:
    rule = VarianceChange("mlmon_output_variance", factor=2, baseline=0.04, test="f", name="ftest")
    out = export_prometheus_rules([rule], approximate=True)
    assert ("ftest",) == out.exported
    assert "# note: the F-test is left out: this alert may fire on small samples" in out.text


def test_prometheus_rules_logs_what_it_leaves_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mlmon.export"):
        text = prometheus_rules([PercentDrop("mlmon_precision", percent=10, baseline="pinned")])
    assert "rules: []" in text
    assert ["mlmon export: rule 'precision_drop_10pct' not exported to Prometheus: baseline 'pinned' is kept inside the process; PromQL has no equivalent (use a number or Baseline.trailing)"] == [
        r.getMessage() for r in caplog.records
    ]


def test_duplicate_names_and_bad_options_are_rejected() -> None:
    r = Threshold("mlmon_error_ratio", above=0.05)
    with pytest.raises(ValueError, match="rule names must be unique"):
        export_prometheus_rules([r, r])
    with pytest.raises(ValueError, match="window must be a positive number of seconds, got 0"):
        export_prometheus_rules([r], window=0)
    with pytest.raises(ValueError, match="group must be a non-empty string"):
        export_prometheus_rules([r], group=" ")


# -- quoting -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["plain", "it's", 'say "hi"', "back\\slash", "two\nlines", "tab\there", "naïve ☃", "\x85nel", "#hash: colon", ""],
)
def test_yaml_strings_read_back_exactly(text: str) -> None:
    yaml = pytest.importorskip("yaml")
    assert text == yaml.safe_load(f"k: {yaml_str(text)}")["k"]


def test_hostile_label_values_and_summaries_stay_inside_their_strings() -> None:
    nasty = 'a"b\\c\nd}{{'
    rule = Threshold("mlmon_feature_mean", labels={"feature": nasty}, above=1, min_samples=0, name="n", summary="{{ evil }} 'x'")
    doc = parsed(rule, model="m-1", group='g"1')
    assert 'g"1' == doc["groups"][0]["name"]
    r = doc["groups"][0]["rules"][0]
    assert 'mlmon_feature_mean{model="m-1",feature="a\\"b\\\\c\\nd}{{",segment=""} > 1' == r["expr"]
    assert r["annotations"]["summary"].startswith('{{ $labels.model }}: {{ "{{" }} evil {{ "}}" }} \'x\'')


def test_durations_use_the_largest_exact_unit() -> None:
    assert ["0s", "250ms", "90s", "2m", "90m", "1h", "1d", "1500ms"] == [
        duration(s) for s in (0, 0.25, 90, 120, 5400, 3600, 86400, 1.5)
    ]


def test_interval_is_written_on_the_group() -> None:
    assert "30s" == parsed(Threshold("mlmon_up", below=1, name="down"), interval=30)["groups"][0]["interval"]


# -- CLI --------------------------------------------------------------------------------------------
RULES_PY = """
from mlmon import alerts
RULES = [alerts.Threshold("mlmon_error_ratio", above=0.05, name="err"),
         alerts.PercentDrop("mlmon_precision", percent=10, baseline="pinned", name="pinned")]
def make():
    return RULES[:1]
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_rules.py"
    path.write_text(RULES_PY)
    return path


def test_cli_writes_the_rules_file(rules_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mlmon.rules.yml"
    assert 0 == main(["prometheus-rules", "--rules", f"{rules_file}:RULES", "--model", "fraud", "-o", str(out)])
    text = out.read_text()
    assert "- alert: 'err'" in text
    assert 'model="fraud"' in text
    err = capsys.readouterr().err
    assert "rule 'pinned' not exported" in err
    assert f"wrote 1 alert(s) to {out}, left out 1" in err


def test_cli_imports_a_module_from_the_current_directory(
    rules_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(rules_file.parent)
    monkeypatch.syspath_prepend(str(rules_file.parent))
    assert 0 == main(["prometheus-rules", "--rules", "my_rules:make"])
    out = capsys.readouterr().out
    assert out.startswith("# Prometheus alerting rules generated by mlmon from 1 rule(s)")


def test_cli_strict_fails_when_a_rule_is_left_out(rules_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 == main(["prometheus-rules", "--rules", f"{rules_file}:RULES", "--strict"])


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["prometheus-rules"], 2, "the following arguments are required: --rules"),
        (["prometheus-rules", "--rules", "no_colon"], 2, "--rules must look like MODULE:ATTR"),
        (["prometheus-rules", "--rules", "mlmon_no_such_module:X"], 1, "No module named 'mlmon_no_such_module'"),
        (["prometheus-rules", "--rules", "mlmon:__version__"], 1, "must be a list of rules, got str"),
        (["prometheus-rules", "--rules", "mlmon:nothing_here"], 1, "mlmon has no attribute 'nothing_here'"),
        (["influx-rules"], 2, "invalid choice: 'influx-rules'"),
        ([], 2, "usage: python -m mlmon export"),
    ],
)
def test_cli_reports_mistakes(argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert code == main(argv)
    captured = capsys.readouterr()
    assert message in captured.err + captured.out


def test_cli_hands_grafana_to_the_dashboard_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "board.json"
    assert 0 == main(["grafana", "--datasource", "prometheus", "--model", "fraud", "-o", str(out)])
    assert '"title": "mlmon: fraud"' in out.read_text()
    assert 0 == main(["--help"])
    assert "grafana" in capsys.readouterr().out


def test_cli_uses_a_saved_reference_for_reference_baselines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mlmon

    ref = mlmon.Reference.from_data([[30.0], [50.0]], feature_names=["age"])
    ref.save(tmp_path / "ref.json")
    (tmp_path / "ref_rules.py").write_text(
        "from mlmon import alerts\n"
        "RULES = [alerts.PercentChange('mlmon_feature_mean', labels={'feature': 'age'}, percent=25,"
        " baseline='reference', min_samples=0, name='age')]\n"
    )
    argv = ["prometheus-rules", "--rules", f"{tmp_path / 'ref_rules.py'}:RULES", "--reference", str(tmp_path / "ref.json")]
    assert 0 == main(argv)
    assert 'mlmon_feature_mean{feature="age",segment=""} > 50 or mlmon_feature_mean{feature="age",segment=""} < 30' in capsys.readouterr().out
