"""The alert engine on hand-built snapshot streams: states, timing, flapping, baselines, gating."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pytest
from alert_streams import T0, ctr_stream, precision_stream, score_stream, series

from mlmon.alerts import (
    Absent,
    AlertEngine,
    AlertEvent,
    Baseline,
    CallbackSink,
    PercentChange,
    PercentDrop,
    Rule,
    Threshold,
    VarianceChange,
)
from mlmon.snapshot import Sample, Snapshot


def run(rules: Rule | list[Rule], snaps: Iterable[Snapshot], **kwargs: object) -> tuple[AlertEngine, list[AlertEvent]]:
    """Evaluate every snapshot; return the engine and every event (all states)."""
    events: list[AlertEvent] = []
    engine = AlertEngine(rules if isinstance(rules, list) else [rules], sinks=[CallbackSink(events.append, states=None)], **kwargs)  # type: ignore[arg-type]
    for s in snaps:
        engine.evaluate(s)
    return engine, events


def states(events: list[AlertEvent], *keep: str) -> list[tuple[str, float]]:
    """``(state, seconds since T0)`` of the events in ``keep`` (firing and resolved by default)."""
    keep = keep or ("firing", "resolved")
    return [(e.state, e.at - T0) for e in events if e.state in keep]


def firings(events: list[AlertEvent]) -> list[float]:
    return [e.at - T0 for e in events if e.state == "firing"]


def snap(t: float, *samples: Sample, window: float = 300.0) -> Snapshot:
    return Snapshot("m", "v1", "h:1", T0 + t, window, samples)


def ratio(v: float) -> Sample:
    return Sample.make("mlmon_error_ratio", v)


# -- state machine -----------------------------------------------------------------------------
def test_for_holds_the_alert_pending_before_it_fires() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.1, for_=30, min_samples=0, resolve_after=0, name="err")
    values = [0.0, 0.5, 0.5, 0.5, 0.5, 0.0]  # every 10 s
    _, events = run(rule, series(values, "mlmon_error_ratio"))
    assert [("pending", 20.0), ("firing", 50.0), ("resolved", 60.0)] == states(events, "pending", "firing", "resolved")
    firing = next(e for e in events if e.state == "firing")
    assert (T0 + 20.0, 0.5, 0.1, "m") == (firing.started_at, firing.value, firing.threshold, firing.model)


def test_a_pending_alert_whose_condition_goes_away_becomes_inactive_without_firing() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.1, for_=60, min_samples=0)
    _, events = run(rule, series([0.5, 0.5, 0.0, 0.0], "mlmon_error_ratio"))
    assert [("pending", 10.0), ("inactive", 30.0)] == states(events, "pending", "firing", "inactive")


def test_resolve_after_needs_the_condition_false_for_that_long() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.1, min_samples=0, resolve_after=30)
    values = [0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]
    _, events = run(rule, series(values, "mlmon_error_ratio"))
    assert [("firing", 10.0), ("resolved", 80.0)] == states(events)


def test_cooldown_delays_a_new_firing_after_a_resolution() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.1, min_samples=0, resolve_after=0, cooldown=60)
    values = [0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    _, events = run(rule, series(values, "mlmon_error_ratio"))
    assert [("firing", 10.0), ("resolved", 20.0), ("firing", 80.0)] == states(events)


def test_a_flapping_metric_fires_once_and_resolves_once_with_flap_control() -> None:
    # Error ratio hovering at the 5% limit for an hour: 4.9%, 5.1%, 4.9%, ... every 10 s.
    rng = np.random.default_rng(3)
    hover = 0.05 + rng.choice([-0.001, 0.001], 360) + rng.normal(0, 0.0005, 360)
    values = np.concatenate([np.full(30, 0.01), hover, np.full(60, 0.01)])
    controlled = Threshold("mlmon_error_ratio", above=0.05, min_samples=0, for_=30, resolve_after=120, hysteresis=0.005)
    naive = Threshold("mlmon_error_ratio", above=0.05, min_samples=0, resolve_after=0, name="naive")
    _, events = run([controlled, naive], series(values, "mlmon_error_ratio"))
    mine = [e for e in events if e.rule == controlled.name]
    theirs = [e for e in events if e.rule == "naive"]
    assert ["firing", "resolved"] == [s for s, _ in states(mine)]
    assert states(mine)[1][1] > 10 * (30 + 360)  # resolved after the hovering ends
    assert len(firings(theirs)) > 50  # without it: one page per crossing


def test_each_transition_reaches_every_sink_even_when_one_raises() -> None:
    got: list[str] = []

    def boom(event: AlertEvent) -> None:
        raise RuntimeError("sink down")

    rule = Threshold("mlmon_error_ratio", above=0.1, min_samples=0, resolve_after=0)
    engine = AlertEngine([rule], sinks=[CallbackSink(boom, name="boom"), CallbackSink(lambda e: got.append(e.state))])
    for t, v in ((10, 0.5), (20, 0.0)):
        engine.evaluate(snap(t, ratio(v)))
    assert ["firing", "resolved"] == got
    assert {"sink:boom": 2} == engine.errors


def test_sinks_get_firing_and_resolved_by_default() -> None:
    got: list[str] = []
    rule = Threshold("mlmon_error_ratio", above=0.1, min_samples=0, for_=10, resolve_after=0)
    engine = AlertEngine([rule], sinks=[CallbackSink(lambda e: got.append(e.state))])
    for t, v in ((10, 0.5), (20, 0.5), (30, 0.0)):
        engine.evaluate(snap(t, ratio(v)))
    assert ["firing", "resolved"] == got


def test_a_rule_that_raises_is_counted_and_the_others_still_run() -> None:
    def broken(metric: str, labels: object) -> float:
        raise KeyError(metric)

    bad = PercentDrop("mlmon_error_ratio", percent=10, baseline="reference", min_samples=0, for_=0, name="bad")
    good = Threshold("mlmon_error_ratio", above=0.1, min_samples=0)
    engine = AlertEngine([bad, good], sinks=(), reference_value=broken)
    out = engine.evaluate(snap(10, ratio(0.5)))
    assert {"rule:bad": 1} == engine.errors
    assert 1.0 == out.get("mlmon_alert_firing", rule=good.name)
    assert 0.0 == out.get("mlmon_alert_firing", rule="bad")


# -- the snapshot it returns ---------------------------------------------------------------------
def test_evaluate_adds_alert_samples_and_events_to_the_snapshot() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.1, min_samples=0, name="err")
    engine = AlertEngine([rule, Absent(name="quiet")], sinks=())
    before = snap(10, ratio(0.5), Sample.make("mlmon_calls_total", 3))
    out = engine.evaluate(before)
    assert before.samples == out.samples[: len(before.samples)]
    assert 1.0 == out.get("mlmon_alert_firing", rule="err")
    assert 0.0 == out.get("mlmon_alert_firing", rule="quiet")
    assert 1.0 == out.get("mlmon_alerts_firing")
    assert [("err", "firing")] == [(a.rule, a.state) for a in out.alerts]
    assert ({"rule": "err"}, 1.0) == (dict(engine.samples()[0][2]), engine.samples()[0][1])


def test_alert_samples_of_an_earlier_cycle_are_replaced_not_duplicated() -> None:
    # The monitor puts the last evaluation's alert samples into every snapshot it builds.
    engine = AlertEngine([Threshold("mlmon_error_ratio", above=0.1, min_samples=0, name="err")], sinks=())
    first = engine.evaluate(snap(10, ratio(0.5)))
    again = snap(20, ratio(0.0), *[s for s in first.samples if s.name.startswith("mlmon_alert")])
    out = engine.evaluate(again)
    assert 1 == len(out.select("mlmon_alert_firing"))
    assert 1 == len(out.select("mlmon_alerts_firing"))


def test_samples_before_the_first_evaluation_are_zeros_per_rule() -> None:
    engine = AlertEngine([Threshold("mlmon_error_ratio", above=0.1, name="a"), Absent(name="b")], sinks=())
    assert (
        ("mlmon_alert_firing", 0.0, {"rule": "a"}),
        ("mlmon_alert_firing", 0.0, {"rule": "b"}),
        ("mlmon_alerts_firing", 0.0, {}),
    ) == engine.samples()


def test_default_sink_logs_firing_alerts(caplog: pytest.LogCaptureFixture) -> None:
    engine = AlertEngine([Threshold("mlmon_error_ratio", above=0.1, min_samples=0, severity="critical", name="err")])
    with caplog.at_level("INFO", logger="mlmon.alerts"):
        engine.evaluate(snap(10, ratio(0.5)))
    assert [("ERROR", "[critical] m/v1: err firing: mlmon_error_ratio > 0.1 (value 0.5)")] == [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]


def test_reference_baseline_without_reference_value_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="rule 'precision_drop_10pct' has baseline='reference' but no reference_value"):
        AlertEngine([PercentDrop("mlmon_precision", percent=10, baseline="reference")])


# -- wildcards and instances ---------------------------------------------------------------------
def test_wildcard_rules_have_one_instance_per_feature() -> None:
    rule = Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.2, name="drift_psi")
    rows = Sample.make("mlmon_rows_per_second", 10.0)
    psi = {"age": 0.05, "income": 0.4, "city": 0.1}
    engine = AlertEngine([rule], sinks=())
    out = engine.evaluate(snap(10, rows, *(Sample.make("mlmon_feature_drift_psi", v, feature=f) for f, v in psi.items())))
    got = {s.label("feature"): s.value for s in out.select("mlmon_alert_firing", rule="drift_psi")}
    assert {"age": 0.0, "income": 1.0, "city": 0.0} == got
    assert [("income", "firing")] == [(a.label("feature"), a.state) for a in out.alerts]
    assert "firing" == engine.state("drift_psi", feature="income")
    assert "inactive" == engine.state("drift_psi", feature="age")


def test_a_selector_without_wildcard_matches_every_series_that_includes_it() -> None:
    # Multiclass precision: per-class and averaged series; {"class": "*"} takes the classes only.
    samples = (
        Sample.make("mlmon_labels_window", 1000),
        Sample.make("mlmon_precision", 0.9, **{"class": "cat"}),
        Sample.make("mlmon_precision", 0.5, **{"class": "dog"}),
        Sample.make("mlmon_precision", 0.7, average="macro"),
    )
    per_class = Threshold("mlmon_precision", labels={"class": "*"}, below=0.6, name="per_class")
    everything = Threshold("mlmon_precision", below=0.8, name="everything")
    out = AlertEngine([per_class, everything], sinks=()).evaluate(snap(10, *samples))
    assert [({"class": "cat", "rule": "per_class"}, 0.0), ({"class": "dog", "rule": "per_class"}, 1.0)] == [
        (dict(s.labels), s.value) for s in out.select("mlmon_alert_firing", rule="per_class")
    ]
    assert 3 == len(out.select("mlmon_alert_firing", rule="everything"))
    assert 3.0 == out.get("mlmon_alerts_firing")


def test_fixed_labels_are_not_repeated_on_the_alert_sample() -> None:
    rule = Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, min_samples=0, name="p99")
    out = AlertEngine([rule], sinks=()).evaluate(snap(10, Sample.make("mlmon_latency_seconds", 0.5, quantile="0.99")))
    assert (("rule", "p99"),) == out.select("mlmon_alert_firing")[0].labels
    assert (("quantile", "0.99"),) == out.alerts[0].labels


def test_instances_beyond_the_cap_are_ignored_and_counted() -> None:
    rule = Threshold("mlmon_feature_mean", labels={"feature": "*"}, above=1, min_samples=0, name="mean")
    engine = AlertEngine([rule], sinks=(), max_instances=2)
    out = engine.evaluate(snap(10, *(Sample.make("mlmon_feature_mean", 5, feature=f"f{i}") for i in range(4))))
    assert 2 == len(out.select("mlmon_alert_firing"))
    assert {"instances:mean": 2} == engine.errors


def test_a_firing_instance_whose_series_vanishes_resolves() -> None:
    rule = Threshold("mlmon_feature_mean", labels={"feature": "*"}, above=1, min_samples=0, resolve_after=20, name="mean")
    _, events = run(rule, [snap(10, Sample.make("mlmon_feature_mean", 5, feature="a"))] + [snap(t) for t in (20, 30, 40)])
    assert [("firing", 10.0), ("resolved", 40.0)] == states(events)


# -- min_samples ---------------------------------------------------------------------------------
def test_nothing_fires_below_min_samples() -> None:
    rule = PercentDrop("mlmon_precision", percent=10, baseline=0.8, for_=0)
    labels = [50, 150, 199, 200, 400]

    def extra(i: int) -> tuple[Sample, ...]:
        return (Sample.make("mlmon_labels_window", labels[i]),)

    _, events = run(rule, series([0.1] * 5, "mlmon_precision", extra=extra))
    assert [40.0] == firings(events)


def test_service_rules_count_calls_in_the_window() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.1)  # min_samples 100 calls
    few = snap(10, ratio(0.5), Sample.make("mlmon_calls_per_second", 0.3), window=300.0)  # 90 calls
    many = snap(20, ratio(0.5), Sample.make("mlmon_calls_per_second", 0.4), window=300.0)  # 120
    _, events = run(rule, [few, many])
    assert [20.0] == firings(events)


def test_feature_rules_count_rows_in_the_window() -> None:
    rule = Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.2)  # 500 rows
    psi = Sample.make("mlmon_feature_drift_psi", 0.5, feature="age")
    _, events = run(rule, [snap(10, psi, Sample.make("mlmon_rows_per_second", 1.0)), snap(20, psi, Sample.make("mlmon_rows_per_second", 2.0))])
    assert [20.0] == firings(events)


# -- precision drop ------------------------------------------------------------------------------
# Labels arrive at 5 or 10 a second (1500 or 3000 in a 300 s window), 30% predicted positive,
# precision 0.8: the window's precision has a standard error of 2.4% or 1.7% of its value, so a
# 10% limit is 4 to 6 standard errors away (docs/alerts.md: picking thresholds). A drop twice the
# limit is caught within one window of the change.
def test_percent_drop_fires_after_a_precision_drop_and_never_before() -> None:
    stream = precision_stream(3 * 3600, 5, 0.8, 0.6, change_at=7200, seed=11)
    _, events = run(PercentDrop("mlmon_precision", percent=10), stream)
    fired = firings(events)
    assert fired, "the drop was missed"
    assert 7200 < fired[0] <= 7200 + 300


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percent_drop_on_a_stationary_precision_stream_fires_zero_times(seed: int) -> None:
    stream = precision_stream(24 * 3600, 10, 0.8, seed=seed)
    _, events = run(PercentDrop("mlmon_precision", percent=10), stream)
    assert [] == firings(events)


def test_a_trailing_baseline_is_the_mean_of_the_values_before_the_window() -> None:
    # Values 1, 2, ..., 100 at 10, 20, ..., 1000 s, then 1.0 at 1010 s. The window is 300 s,
    # so at 1010 s the baseline is the mean of the values recorded in [110, 710] s: 11 ... 71.
    rule = PercentDrop("mlmon_precision", percent=50, baseline=Baseline.trailing(600, min_coverage=1.0), min_samples=0, for_=0)
    _, events = run(rule, series([*np.arange(1.0, 101.0), 1.0], "mlmon_precision"))
    firing = [e for e in events if e.state == "firing"]
    assert [1010.0] == [e.at - T0 for e in firing]
    assert pytest.approx(41.0) == firing[0].baseline


def test_a_trailing_baseline_waits_for_enough_history() -> None:
    # Precision halves at 2010 s; the baseline needs values spanning 1800 s, older than the
    # 300 s window: the first one is from 10 s, so it is usable from 10 + 1800 + 300 s on.
    rule = PercentDrop("mlmon_precision", percent=10, baseline=Baseline.trailing(3600), min_samples=0, for_=0)
    values = np.concatenate([np.full(200, 0.8), np.full(100, 0.4)])
    _, events = run(rule, series(values, "mlmon_precision"))
    assert [2110.0] == firings(events)


def test_a_pinned_baseline_keeps_its_first_eligible_value() -> None:
    rule = PercentDrop("mlmon_precision", percent=10, baseline="pinned", resolve_after=0, for_=0)
    labels = [100, 300, 300, 300, 300]

    def extra(i: int) -> tuple[Sample, ...]:
        return (Sample.make("mlmon_labels_window", labels[i]),)

    # 0.5 is seen below min_samples and ignored; 0.8 is pinned; 0.7 is a 12.5% drop.
    _, events = run(rule, series([0.5, 0.8, 0.75, 0.7, 0.79], "mlmon_precision", extra=extra))
    assert [("firing", 40.0), ("resolved", 50.0)] == states(events)
    assert 0.8 == next(e for e in events if e.state == "firing").baseline


def test_a_pinned_period_averages_its_values() -> None:
    # The values of [10 s, 30 s) are pinned (0.9 and 0.5: 0.7); nothing is judged before 30 s.
    rule = PercentDrop("mlmon_precision", percent=10, baseline=Baseline.pinned(seconds=20), min_samples=0, for_=0)
    _, events = run(rule, series([0.9, 0.5, 0.7, 0.6], "mlmon_precision"))
    assert [40.0] == firings(events)
    assert pytest.approx(0.7) == events[-1].baseline


def test_a_reference_baseline_comes_from_the_reference_value_callable() -> None:
    asked: list[tuple[str, dict[str, str]]] = []

    def reference_value(metric: str, labels: object) -> float | None:
        asked.append((metric, dict(labels)))  # type: ignore[call-overload]
        return {"age": 40.0}.get(dict(labels).get("feature", ""))  # type: ignore[call-overload]

    rule = PercentChange("mlmon_feature_mean", labels={"feature": "*"}, percent=25, baseline="reference", min_samples=0, for_=0, name="mean_shift")
    out = AlertEngine([rule], sinks=(), reference_value=reference_value).evaluate(
        snap(10, Sample.make("mlmon_feature_mean", 55.0, feature="age"), Sample.make("mlmon_feature_mean", 1.0, feature="new"))
    )
    assert [("age", 40.0, 37.5)] == [(a.label("feature"), a.baseline, a.measure) for a in out.alerts]
    assert ("mlmon_feature_mean", {"feature": "age"}) in asked


# -- variance, outcomes --------------------------------------------------------------------------
def test_variance_change_fires_on_a_score_spread_change_with_a_flat_mean() -> None:
    rule = VarianceChange("mlmon_output_variance", factor=1.5, test="f")
    changed = score_stream(3 * 3600, 5, 0.10, 0.15, change_at=7200, seed=5)  # variance x2.25
    _, events = run(rule, changed)
    fired = firings(events)
    assert fired and 7200 < fired[0] <= 7200 + 300
    means = [s.get("mlmon_output_mean") for s in changed[-30:]]
    assert max(abs(m - 0.5) for m in means if m is not None) < 0.02  # the mean did not move


def test_variance_change_stays_quiet_on_the_same_stream_without_the_change() -> None:
    rule = VarianceChange("mlmon_output_variance", factor=1.5, test="f")
    _, events = run(rule, score_stream(6 * 3600, 5, 0.10, seed=5))
    assert [] == firings(events)


def test_the_f_test_silences_a_variance_ratio_on_few_outputs() -> None:
    # 0.05 outputs a second: 15 per window. min_samples=10 lets the rule evaluate; the ratio
    # swings past 1.5 by chance, and only the F-test keeps it quiet.
    plain = VarianceChange("mlmon_output_variance", factor=1.5, min_samples=10, name="plain")
    tested = VarianceChange("mlmon_output_variance", factor=1.5, min_samples=10, test="f", name="tested")
    _, events = run([plain, tested], score_stream(12 * 3600, 0.05, 0.1, seed=8))
    assert firings([e for e in events if e.rule == "plain"])
    assert [] == firings([e for e in events if e.rule == "tested"])


def test_percent_change_fires_when_click_through_halves() -> None:
    rule = PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=30)
    stream = ctr_stream(3 * 3600, 20, 0.05, 0.025, change_at=7200, seed=4)
    _, events = run(rule, stream)
    fired = firings(events)
    assert fired and 7200 < fired[0] <= 7200 + 300
    assert -50 < next(e for e in events if e.state == "firing").measure < -30  # type: ignore[operator]


def test_percent_change_on_a_steady_click_through_fires_zero_times() -> None:
    rule = PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=30)
    _, events = run(rule, ctr_stream(24 * 3600, 20, 0.05, seed=4))
    assert [] == firings(events)


# -- absent ----------------------------------------------------------------------------------------
def calls(t: float, total: float) -> Snapshot:
    return snap(t, Sample.make("mlmon_calls_total", total))


def test_absent_fires_when_the_counter_stops_and_resolves_when_it_moves() -> None:
    rule = Absent(for_=60)
    totals = [1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5]
    _, events = run(rule, [calls(10 * (i + 1), v) for i, v in enumerate(totals)])
    assert [("firing", 90.0), ("resolved", 110.0)] == states(events)
    firing = next(e for e in events if e.state == "firing")
    assert (T0 + 30.0, 60.0) == (firing.started_at, firing.measure)


def test_absent_fires_when_the_series_is_missing() -> None:
    _, events = run(Absent("mlmon_labels_total", for_=30), [snap(10 * i) for i in range(1, 6)])
    assert [40.0] == firings(events)


def test_absent_with_min_samples_waits_for_the_counter_to_start() -> None:
    rule = Absent("mlmon_labels_total", for_=30, min_samples=1)
    never = [snap(10 * i, Sample.make("mlmon_labels_total", 0)) for i in range(1, 20)]
    _, events = run(rule, never)
    assert [] == firings(events)
    started = [snap(10 * i, Sample.make("mlmon_labels_total", 0 if i < 5 else 7)) for i in range(1, 20)]
    _, events = run(rule, started)
    assert [80.0] == firings(events)


def test_a_counter_reset_counts_as_movement() -> None:
    _, events = run(Absent(for_=30), [calls(10, 5), calls(20, 5), calls(30, 0), calls(40, 0), calls(50, 0), calls(60, 0)])
    assert [60.0] == firings(events)


# -- time ------------------------------------------------------------------------------------------
def test_time_going_backwards_neither_fires_nor_crashes() -> None:
    rule = Threshold("mlmon_error_ratio", above=0.1, min_samples=0, for_=30)
    _, events = run(rule, [snap(100, ratio(0.5)), snap(50, ratio(0.5)), snap(90, ratio(0.5)), snap(130, ratio(0.5))])
    assert [130.0] == firings(events)


def test_reset_forgets_every_state() -> None:
    engine, _ = run(Threshold("mlmon_error_ratio", above=0.1, min_samples=0, name="err"), [snap(10, ratio(0.5))])
    assert "firing" == engine.state("err")
    engine.reset()
    assert "inactive" == engine.state("err")
    assert ("mlmon_alerts_firing", 0.0, {}) == engine.samples()[-1]


def test_event_to_dict_is_json_ready() -> None:
    import json

    _, events = run(Threshold("mlmon_error_ratio", above=0.1, min_samples=0, name="err"), [snap(10, ratio(math.inf))])
    d = events[0].to_dict()
    assert d["value"] is None
    json.dumps(d, allow_nan=False)
