"""Rule definitions: validated at construction with messages that name the field and the value."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest

from mlmon.alerts import (
    Absent,
    AlertEngine,
    Baseline,
    PercentChange,
    PercentDrop,
    Threshold,
    VarianceChange,
    default_min_samples,
)
from mlmon.snapshot import CATALOG


# -- bad definitions -------------------------------------------------------------------------
def test_unknown_metric_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"metric must be a name from mlmon.CATALOG, got 'mlmon_precison' \(did you mean 'mlmon_precision'\?\)"):
        PercentDrop("mlmon_precison", percent=10)


def test_negative_percent_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"percent must be a number in \(0, 100\], got -5"):
        PercentDrop("mlmon_precision", percent=-5)


@pytest.mark.parametrize("percent", [0, 100.5, float("nan"), True, "10"])
def test_percent_drop_out_of_range_is_rejected(percent: object) -> None:
    with pytest.raises(ValueError, match="percent must be a number in"):
        PercentDrop("mlmon_precision", percent=percent)  # type: ignore[arg-type]


def test_percent_change_may_exceed_100_but_not_be_zero() -> None:
    assert 150.0 == PercentChange("mlmon_outcome_rate", percent=150).percent
    with pytest.raises(ValueError, match="percent must be a finite number > 0, got 0"):
        PercentChange("mlmon_outcome_rate", percent=0)


def test_threshold_without_above_and_below_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"Threshold needs above=\.\.\. or below=\.\.\. \(or both\), got neither"):
        Threshold("mlmon_error_ratio")


def test_threshold_with_below_not_under_above_is_rejected() -> None:
    with pytest.raises(ValueError, match="below must be less than above"):
        Threshold("mlmon_error_ratio", above=0.1, below=0.2)


@pytest.mark.parametrize("factor", [1.0, 0.5, -2, math.inf])
def test_variance_factor_must_exceed_one(factor: float) -> None:
    with pytest.raises(ValueError, match=f"factor must be a finite number > 1, got {factor!r}"):
        VarianceChange("mlmon_output_variance", factor=factor)


def test_duplicate_rule_names_are_rejected_by_the_engine() -> None:
    rules = [PercentDrop("mlmon_precision", percent=10), PercentDrop("mlmon_precision", percent=10)]
    with pytest.raises(ValueError, match=r"rule names must be unique .* got 'precision_drop_10pct' twice"):
        AlertEngine(rules, sinks=())


def test_a_non_rule_is_rejected_by_the_engine() -> None:
    with pytest.raises(TypeError, match=r"rules must be mlmon\.alerts rules"):
        AlertEngine(["mlmon_precision"], sinks=())  # type: ignore[list-item]


def test_unknown_label_is_rejected_naming_the_metric_labels() -> None:
    with pytest.raises(ValueError, match=r"labels: mlmon_precision has no label 'feature' \(its labels: class, average\)"):
        PercentDrop("mlmon_precision", percent=10, labels={"feature": "age"})


def test_quantile_metrics_need_one_quantile() -> None:
    with pytest.raises(ValueError, match="rules on mlmon_latency_seconds must choose one quantile"):
        Threshold("mlmon_latency_seconds", above=0.2)
    with pytest.raises(ValueError, match="must choose one quantile"):
        Threshold("mlmon_latency_seconds", labels={"quantile": "*"}, above=0.2)


def test_quantile_on_a_metric_without_quantiles_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"quantile: mlmon_error_ratio has no quantiles, got 0.99"):
        Threshold("mlmon_error_ratio", quantile=0.99, above=0.1)


@pytest.mark.parametrize("q", [0, 1.5, "p99", -0.1])
def test_bad_quantile_is_rejected(q: object) -> None:
    with pytest.raises(ValueError, match=r"quantile must be a number in \(0, 1\]"):
        Threshold("mlmon_latency_seconds", quantile=q, above=0.2)  # type: ignore[arg-type]


def test_quantile_contradicting_labels_is_rejected() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        Threshold("mlmon_latency_seconds", quantile=0.99, labels={"quantile": "0.5"}, above=1)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("severity", {"severity": "page"}),
        ("for_", {"for_": -1}),
        ("resolve_after", {"resolve_after": math.nan}),
        ("cooldown", {"cooldown": "5m"}),
        ("min_samples", {"min_samples": -1}),
        ("min_samples", {"min_samples": 2.5}),
        ("name", {"name": "bad name"}),
        ("name", {"name": "9lives"}),
        ("clear_ratio", {"clear_ratio": 0}),
        ("clear_ratio", {"clear_ratio": 1.5}),
        ("summary", {"summary": 3}),
        ("labels", {"labels": "feature=age"}),
    ],
)
def test_bad_common_fields_are_rejected_naming_the_field(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        PercentDrop("mlmon_precision", percent=10, **kwargs)  # type: ignore[arg-type]


def test_bad_baselines_are_rejected() -> None:
    with pytest.raises(ValueError, match="baseline must be a number, 'reference', 'pinned' or a Baseline, got 'yesterday'"):
        PercentDrop("mlmon_precision", percent=10, baseline="yesterday")
    with pytest.raises(ValueError, match="baseline must be > 0 for a relative change, got 0"):
        PercentDrop("mlmon_precision", percent=10, baseline=0)
    with pytest.raises(ValueError, match="seconds must be a number of seconds > 0, got -1"):
        Baseline.trailing(-1)
    with pytest.raises(ValueError, match=r"min_coverage must be a number in \(0, 1\], got 0"):
        Baseline.trailing(60, min_coverage=0)
    with pytest.raises(ValueError, match="kind must be 'fixed', 'reference', 'pinned' or 'trailing'"):
        Baseline(kind="yesterday")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds/exclude are not for reference baselines"):
        Baseline(kind="reference", seconds=60)


def test_f_test_needs_a_variance_metric() -> None:
    with pytest.raises(ValueError, match="test='f' compares variances: metric must end in _variance or _stddev, got 'mlmon_output_mean'"):
        VarianceChange("mlmon_output_mean", factor=2, test="f")
    with pytest.raises(ValueError, match="test must be None or 'f', got 'ks'"):
        VarianceChange("mlmon_output_variance", factor=2, test="ks")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\), got 1"):
        VarianceChange("mlmon_output_variance", factor=2, test="f", alpha=1)


def test_absent_needs_a_counter_and_a_positive_duration() -> None:
    with pytest.raises(ValueError, match="metric must be a counter"):
        Absent("mlmon_calls_per_second")
    with pytest.raises(ValueError, match="for_ must be a number of seconds > 0, got 0"):
        Absent(for_=0)


# -- what a valid rule holds -------------------------------------------------------------------
def test_quantile_is_shorthand_for_the_quantile_label() -> None:
    a = Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, for_=60)
    b = Threshold("mlmon_latency_seconds", labels={"quantile": "0.99"}, above=0.2, for_=60)
    assert a == b
    assert (("quantile", "0.99"),) == a.labels
    assert (("quantile", "1"),) == Threshold("mlmon_latency_seconds", quantile=1.0, above=1).labels


def test_generated_names_are_readable_and_sanitised() -> None:
    assert "latency_seconds_p99_above_0_2" == Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2).name
    assert "latency_seconds_max_above_1" == Threshold("mlmon_latency_seconds", quantile=1, above=1).name
    assert "feature_drift_psi_above_0_2" == Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.2).name
    assert "feature_mean_prix_TTC_change_20pct" == PercentChange("mlmon_feature_mean", labels={"feature": "prix TTC€"}, percent=20).name
    assert "availability_ratio_below_0_999" == Threshold("mlmon_availability_ratio", below=0.999).name
    assert "output_variance_change_x1_5" == VarianceChange("mlmon_output_variance", factor=1.5).name
    assert "labels_total_absent_1h" == Absent("mlmon_labels_total", for_=3600).name
    assert "mean_error_above_0_1_below_m0_1" == Threshold("mlmon_mean_error", above=0.1, below=-0.1).name


def test_default_min_samples_follow_what_the_metric_is_estimated_from() -> None:
    assert 200 == PercentDrop("mlmon_precision", percent=10).min_samples
    assert 500 == VarianceChange("mlmon_output_variance", factor=2).min_samples
    assert 500 == Threshold("mlmon_feature_drift_psi", above=0.2).min_samples
    assert 1000 == PercentChange("mlmon_outcome_rate", percent=30).min_samples
    assert 100 == Threshold("mlmon_error_ratio", above=0.05).min_samples
    assert 0 == Threshold("mlmon_calls_per_second", below=1).min_samples
    assert 0 == Absent().min_samples
    assert 7 == PercentDrop("mlmon_recall", percent=10, min_samples=7).min_samples
    for name in CATALOG:
        source, default = default_min_samples(name)
        assert (source is None) == (default == 0), name


def test_rules_are_frozen_hashable_and_evolve() -> None:
    r = PercentDrop("mlmon_precision", percent=10, severity="critical")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        r.percent = 20  # type: ignore[misc]
    assert hash(r) == hash(PercentDrop("mlmon_precision", percent=10, severity="critical"))
    r2 = attrs.evolve(r, percent=20.0, name="p20")
    assert (20.0, "p20", "critical") == (r2.percent, r2.name, r2.severity)
    with pytest.raises(ValueError, match="percent"):
        attrs.evolve(r, percent=0)


def test_bare_baselines_become_baseline_objects() -> None:
    assert Baseline.fixed(0.8) == PercentDrop("mlmon_precision", percent=10, baseline=0.8).baseline
    assert Baseline.reference() == PercentDrop("mlmon_precision", percent=10, baseline="reference").baseline
    assert Baseline.pinned() == PercentDrop("mlmon_precision", percent=10, baseline="pinned").baseline
    assert Baseline.trailing(3600) == PercentDrop("mlmon_precision", percent=10).baseline


# -- conditions --------------------------------------------------------------------------------
def test_threshold_hysteresis_holds_a_firing_alert_until_the_value_is_clear() -> None:
    r = Threshold("mlmon_error_ratio", above=0.1, hysteresis=0.02)
    assert (False, 0.09, 0.1) == r.check(0.09, None, 1e3, None, firing=False)
    assert (True, 0.09, 0.1) == r.check(0.09, None, 1e3, None, firing=True)
    assert (False, 0.07, 0.1) == r.check(0.07, None, 1e3, None, firing=True)
    low = Threshold("mlmon_availability_ratio", below=0.99, hysteresis=0.005)
    assert low.check(0.993, None, 1e3, None, firing=True)[0] is True
    assert low.check(0.996, None, 1e3, None, firing=True)[0] is False


def test_percent_drop_clears_below_clear_ratio_of_percent() -> None:
    r = PercentDrop("mlmon_precision", percent=10, clear_ratio=0.5)
    assert r.check(0.88, 1.0, 500, None, firing=False)[0] is True
    assert r.check(0.93, 1.0, 500, None, firing=True)[0] is True  # a 7% drop keeps it firing
    assert r.check(0.96, 1.0, 500, None, firing=True)[0] is False
    assert r.check(0.5, None, 500, None, firing=False)[0] is None  # no baseline yet
    assert r.check(0.5, 0.0, 500, None, firing=False)[0] is None  # no relative drop from 0


def test_percent_change_is_two_sided() -> None:
    r = PercentChange("mlmon_outcome_rate", percent=30)
    assert (True, pytest.approx(50.0), 30.0) == r.check(0.075, 0.05, 1e4, None, firing=False)
    assert (True, pytest.approx(-50.0), 30.0) == r.check(0.025, 0.05, 1e4, None, firing=False)
    assert r.check(0.06, 0.05, 1e4, None, firing=False)[0] is False


def test_variance_change_is_two_sided_on_the_ratio() -> None:
    r = VarianceChange("mlmon_output_variance", factor=2)
    assert r.check(0.21, 0.1, 1e4, None, firing=False)[0] is True
    assert r.check(0.049, 0.1, 1e4, None, firing=False)[0] is True
    assert r.check(0.0, 0.1, 1e4, None, firing=False)[0] is True  # scores collapsed to one value
    assert r.check(0.19, 0.1, 1e4, None, firing=False)[0] is False
    assert r.check(0.051, 0.1, 1e4, None, firing=False)[0] is False


def test_f_test_keeps_a_small_sample_from_firing() -> None:
    r = VarianceChange("mlmon_output_variance", factor=1.5, test="f", alpha=0.001)
    assert r.check(0.2, 0.1, 20, 20, firing=False)[0] is False  # ratio 2 on 20 vs 20 values
    assert r.check(0.2, 0.1, 2000, 2000, firing=False)[0] is True
    assert r.check(0.2, 0.1, 20, None, firing=False)[0] is False  # exact baseline: chi-squared
    assert r.check(0.2, 0.1, 1, 2000, firing=False)[0] is None


def test_f_test_p_value_matches_scipy() -> None:
    from scipy import stats

    r = VarianceChange("mlmon_output_variance", factor=1.5, test="f")
    expected = 2 * stats.f.sf(1.7, 99, 199)
    assert math.isclose(expected, r.p_value(1.7, 100, 200) or -1, rel_tol=1e-12)
    sd = VarianceChange("mlmon_output_stddev", factor=1.2, test="f")
    assert math.isclose(expected, sd.p_value(math.sqrt(1.7), 100, 200) or -1, rel_tol=1e-12)


def test_descriptions_read_as_conditions() -> None:
    assert 'mlmon_latency_seconds{quantile="0.99"} > 0.2' == Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2).describe()
    assert (
        'mlmon_outcome_rate{outcome="click"} moves more than 50% away from 0.05'
        == PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=50, baseline=0.05).describe()
    )
    assert "mlmon_calls_total has not increased for 5m" == Absent().describe()


# -- one declaration of the common fields: keyword-only, each checked by its own validator ---------
COMMON = ("metric", "labels", "name", "severity", "for_", "resolve_after", "cooldown", "min_samples", "summary")
ALL_RULES = [
    Threshold("mlmon_error_ratio", above=0.1),
    PercentDrop("mlmon_precision", percent=10),
    PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=30),
    VarianceChange("mlmon_output_variance", factor=2.0),
    Absent(),
]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: type(r).__name__)
def test_every_rule_has_the_common_fields_once_and_keyword_only(rule: object) -> None:
    fields = attrs.fields(type(rule))
    names = [f.name for f in fields]
    assert list(COMMON) == names[: len(COMMON)]
    assert len(names) == len(set(names))
    assert all(f.kw_only for f in fields)
    assert all(f.validator is not None for f in fields if f.name in COMMON)


def test_common_fields_cannot_be_passed_positionally() -> None:
    with pytest.raises(TypeError):
        Threshold("mlmon_error_ratio", 0.1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        PercentDrop("mlmon_precision", 10)  # type: ignore[misc]
    with pytest.raises(TypeError):
        VarianceChange("mlmon_output_variance", 2.0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Absent("mlmon_calls_total", 600)  # type: ignore[misc]
    rule = Threshold("mlmon_error_ratio", above=0.1, for_=60, resolve_after=5)
    # attrs' own initialiser takes keywords only: swapping for_ and resolve_after by position
    # cannot happen anywhere.
    with pytest.raises(TypeError):
        rule.__attrs_init__("mlmon_error_ratio", (), "x", "warning", 5.0, 60.0)  # type: ignore[misc,call-arg]
    assert (60.0, 5.0) == (rule.for_, rule.resolve_after)


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("metric", "mlmon_nope"),
        ("labels", (("nope", "x"),)),
        ("name", "has space"),
        ("severity", "page"),
        ("for_", -3.5),
        ("resolve_after", math.inf),
        ("cooldown", "5m"),
        ("min_samples", -2),
        ("summary", b"bytes"),
    ],
)
def test_each_common_validator_names_its_field_and_the_value(rule: object, field: str, bad: object) -> None:
    with pytest.raises(ValueError) as info:
        attrs.evolve(rule, **{field: bad})
    message = str(info.value)
    assert message.startswith(field), message
    assert repr(bad) in message, message


@pytest.mark.parametrize(
    ("make", "field", "bad"),
    [
        (lambda v: Threshold("mlmon_error_ratio", above=v), "above", math.nan),
        (lambda v: Threshold("mlmon_error_ratio", below=v), "below", "low"),
        (lambda v: Threshold("mlmon_error_ratio", above=1, hysteresis=v), "hysteresis", "wide"),
        (lambda v: PercentDrop("mlmon_precision", percent=v), "percent", "10"),
        (lambda v: PercentChange("mlmon_outcome_rate", percent=v), "percent", math.inf),
        (lambda v: PercentDrop("mlmon_precision", percent=10, clear_ratio=v), "clear_ratio", 2.5),
        (lambda v: PercentDrop("mlmon_precision", percent=10, baseline=v), "baseline", "yesterday"),
        (lambda v: VarianceChange("mlmon_output_variance", factor=v), "factor", "2"),
        (lambda v: VarianceChange("mlmon_output_variance", factor=2, alpha=v), "alpha", 1.5),
        (lambda v: VarianceChange("mlmon_output_variance", factor=2, test=v), "test", "ks"),
        (lambda v: VarianceChange("mlmon_output_variance", factor=2, clear_ratio=v), "clear_ratio", 0.0),
        (lambda v: Absent(for_=v), "for_", None),
    ],
)
def test_each_rule_validator_names_its_field_and_the_value(make: Any, field: str, bad: object) -> None:
    with pytest.raises(ValueError) as info:
        make(bad)
    message = str(info.value)
    assert message.startswith(field), message
    assert repr(bad) in message, message
