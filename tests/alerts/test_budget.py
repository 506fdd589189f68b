"""The false-alarm budget: its limits, its guarantee on null streams, detection, bad input.

The null-stream tests draw window statistics the way a monitor builds them (a window of 30
slices, one decision per slice) and count alarms (upcrossings of the limit) with the functions
the engine runs; the engine tests drive a real AlertEngine with Shift rules on snapshots.
"""

from __future__ import annotations

import math
import re

import attrs
import numpy as np
import pytest
from scipy import stats

from mlmon.alerts import (
    AlertBudget,
    AlertEngine,
    AlertEvent,
    CallbackSink,
    PercentDrop,
    Shift,
)
from mlmon.alerts.budget import (
    decide_family,
    family_decisions,
    min_samples_for,
    series_statistics,
    shift_statistic,
    upcrossing_probability,
)
from mlmon.snapshot import Sample, Snapshot

K = 30  # slices per window
STEP = 10.0  # seconds between decisions
WINDOW = K * STEP

# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"false_alarms": 0}, "false_alarms must be a finite number > 0, got 0"),
        ({"false_alarms": math.nan}, "false_alarms must be a finite number > 0, got nan"),
        ({"false_alarms": True}, "false_alarms must be a finite number > 0, got True"),
        ({"false_alarms": "1"}, "false_alarms must be a finite number > 0, got '1'"),
        ({"per": "month"}, "per must be 'hour', 'day', 'week' or a number of seconds > 0, got 'month'"),
        ({"per": -5}, "per must be 'hour', 'day', 'week' or a number of seconds > 0, got -5"),
        ({"per": math.inf}, "per must be 'hour', 'day', 'week' or a number of seconds > 0, got inf"),
        ({"correction": "holm"}, "correction must be 'bonferroni' or 'bh', got 'holm'"),
        ({"interval": 0}, "interval must be a finite number > 0, got 0"),
    ],
)
def test_budget_rejects_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        AlertBudget(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("metric", "kwargs", "message"),
    [
        ("mlmon_precision", {"effect": 0}, "effect must be a finite number > 0, got 0.0"),
        ("mlmon_precision", {"effect": math.nan}, "effect must be a finite number > 0, got nan"),
        ("mlmon_precision", {"effect": 1.5}, "effect of a rate is in rate units (0.1 = ten points) and must be < 1, got 1.5"),
        ("mlmon_precision", {"effect": 0.1, "min_effect": 0.2}, "min_effect must be a number in [0, effect=0.1], got 0.2"),
        ("mlmon_precision", {"effect": 0.1, "direction": "sideways"}, "direction must be 'down', 'up', 'both' or None, got 'sideways'"),
        ("mlmon_precision", {"effect": 0.1, "power": 0.3}, "power must be a number in [0.5, 1), got 0.3"),
        ("mlmon_precision", {"effect": 0.1, "power": 1.0}, "power must be a number in [0.5, 1), got 1.0"),
        ("mlmon_precision", {"effect": 0.1, "baseline": "pinned"}, "baseline: Shift compares with a reference, a number or a trailing baseline, got 'pinned'"),
        ("mlmon_precision", {"effect": 0.1, "clear_ratio": 0}, "clear_ratio must be a number in (0, 1], got 0.0"),
        ("mlmon_latency_seconds_mean", {"effect": 0.1}, "metric: Shift tests rates and means"),
        ("mlmon_precison", {"effect": 0.1}, "did you mean 'mlmon_precision'?"),
    ],
)
def test_shift_rejects_bad_configuration(metric: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Shift(metric, **kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_engine_rejects_a_budget_of_the_wrong_type() -> None:
    with pytest.raises(ValueError, match=re.escape("budget must be an mlmon.alerts.AlertBudget or None, got 0.5")):
        AlertEngine([], budget=0.5)  # type: ignore[arg-type]


def test_shift_defaults_follow_the_metric() -> None:
    assert Shift("mlmon_precision", effect=0.1).direction == "down"
    assert Shift("mlmon_error_ratio", effect=0.01).direction == "up"
    assert Shift("mlmon_feature_mean", effect=0.5).direction == "both"
    r = Shift("mlmon_feature_mean", effect=0.5, labels={"feature": "*"})
    assert (r.min_effect, r.for_, r.sides, r.min_samples) == (0.125, 0.0, 2, 500)
    assert {"mlmon_feature_variance", "mlmon_rows_per_second"} <= r.needs


# --------------------------------------------------------------------------- the limit


@pytest.mark.parametrize(("z", "rho"), [(1.5, 0.0), (2.0, 0.5), (3.0, 0.9667), (3.5, 0.99)])
def test_upcrossing_probability_is_the_bivariate_normal_one(z: float, rho: float) -> None:
    pair = stats.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]])
    expected = float(stats.norm.cdf(z) - pair.cdf([z, z]))  # P(Z1 <= z < Z2)
    assert upcrossing_probability(z, rho) == pytest.approx(expected, rel=1e-6)


def test_limit_spends_exactly_the_budget() -> None:
    budget = AlertBudget(false_alarms=2, per="day")
    for series, sides in ((1, 1), (4221, 2), (50, 1)):
        z = budget.limit(series, WINDOW, STEP, sides)
        spent = series * sides * (86400 / STEP) * upcrossing_probability(z, 1 - STEP / WINDOW)
        assert spent == pytest.approx(2.0, rel=1e-4)


def test_limit_grows_with_series_and_decisions() -> None:
    b = AlertBudget()
    assert b.limit(10, WINDOW, STEP) < b.limit(100, WINDOW, STEP) < b.limit(10_000, WINDOW, STEP)
    # Decisions on disjoint windows are fewer and independent: a lower limit.
    assert b.limit(100, WINDOW, WINDOW) < b.limit(100, WINDOW, STEP)
    # A looser budget, a lower limit.
    assert AlertBudget(false_alarms=10).limit(100, WINDOW, STEP) < b.limit(100, WINDOW, STEP)


def test_min_samples_for_is_the_power_formula() -> None:
    n = float(min_samples_for(5.0, 0.4, 0.1, 0.9))
    assert n == pytest.approx(((5.0 + stats.norm.ppf(0.9)) * 0.4 / 0.1) ** 2)
    # At that n a change of exactly ``effect`` sits z_power above the limit.
    assert 0.1 / (0.4 / math.sqrt(n)) == pytest.approx(5.0 + stats.norm.ppf(0.9))


# --------------------------------------------------------------------------- null streams


def _windows(slices: np.ndarray) -> np.ndarray:
    """Sums over the last K slices, for each time once the window is full."""
    c = np.cumsum(slices, axis=0)
    out = c[K - 1 :].copy()
    out[1:] -= c[:-K]
    return out


def _alarms(cond: np.ndarray) -> int:
    """Upcrossings: a series whose condition starts to hold."""
    starts = cond[1:] & ~cond[:-1]
    return int(starts.sum() + cond[0].sum())


def test_null_means_stay_within_the_budget_and_per_test_levels_do_not() -> None:
    rng = np.random.default_rng(20261205)
    series, steps, rows = 200, 20_000, 100  # 4 million decisions
    period = steps * STEP
    budget = AlertBudget(false_alarms=8, per=period)
    limit = budget.limit(series, WINDOW, STEP, sides=2)
    sums = _windows(rng.normal(0.0, math.sqrt(rows), size=(steps + K - 1, series)))
    n = rows * K
    z, change, ok = series_statistics(
        "mean", sums / n, 0.0, n, None, 1.0, "both", limit=limit, effect=0.25
    )
    assert ok.all()
    cond = decide_family(z.ravel(), change.ravel(), ok.ravel(), limit, False, 0.0, 1.0).reshape(z.shape)
    budgeted = _alarms(cond)
    per_test = _alarms(z >= stats.norm.isf(0.001))
    assert 2 <= budgeted <= 16  # Poisson(8): outside this range with probability < 1%
    assert per_test > 100 * budgeted


def test_null_rates_stay_within_the_budget_in_the_tails() -> None:
    # A skewed rate on small windows (150 trials at 0.95) is where a Wald z overshoots the
    # budget several times over; the signed-root likelihood ratio keeps to it.
    rng = np.random.default_rng(7)
    series, steps, trials = 100, 20_000, 5
    budget = AlertBudget(false_alarms=5, per=steps * STEP)
    limit = budget.limit(series, WINDOW, STEP, sides=1)
    hits = _windows(rng.binomial(trials, 0.95, size=(steps + K - 1, series)).astype(float))
    n = trials * K
    z, change, ok = series_statistics(
        "rate", hits / n, 0.95, n, None, None, "down", limit=limit, effect=0.2
    )
    assert ok.all()
    alarms = _alarms(decide_family(z, change, ok, limit, False, 0.0, 1.0))
    assert alarms <= 12  # Poisson(5): P(> 12) < 0.1%
    wald = (0.95 - hits / n) / math.sqrt(0.95 * 0.05 / n)
    assert _alarms(wald >= limit) > 4 * 5


def test_bh_equals_bonferroni_with_one_series_off_and_finds_more_when_many_move() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=1000)
    z[7] = 6.5
    limits = np.full(1000, 5.5)
    assert (family_decisions(z, limits, "bh") == family_decisions(z, limits)).all()
    z[:20] = 5.2  # twenty series moved a little less than the limit each
    assert not family_decisions(z, limits).any()
    assert family_decisions(z, limits, "bh")[:20].all()


# --------------------------------------------------------------------------- bad input


def test_statistic_of_bad_input_is_undecided() -> None:
    z, change = shift_statistic(
        "rate",
        [math.nan, 0.7, 0.7, 1.5, 0.7, -0.1, 0.7],
        [0.8, math.nan, 0.8, 0.8, 0.8, 0.8, 0.8],
        [100, 100, 0, 100, math.inf, 100, -3],
    )
    assert np.isnan(z).all() and np.isnan(change).all()
    z, _ = shift_statistic("mean", [1.0, 1.0, 1.0], 0.0, [100, 100, 100], None, [math.nan, -1.0, 0.0])
    assert np.isnan(z[:2]).all() and z[2] == math.inf  # a constant window that moved
    with pytest.raises(ValueError, match="kind must be 'rate' or 'mean', got 'median'"):
        shift_statistic("median", [1.0], [0.0], [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs scale"):
        shift_statistic("mean", [1.0], [0.0], [1])
    _, _, ok = series_statistics("rate", [0.7], [0.8], [0], limit=5.0, effect=0.1)
    assert not ok.any()


# --------------------------------------------------------------------------- the engine

T0 = 1_700_000_000.0
REFERENCE = {"mlmon_feature_mean": 0.0, "mlmon_precision": 0.8}


def _segment_samples(
    rng: np.random.Generator, shares: dict[str, float], rate: float, features: int,
    shift: dict[tuple[str, int], float], precision: dict[str, float],
) -> list[Sample]:
    """One snapshot's window metrics per segment (window means drawn from their distribution)."""
    out = []
    for seg, share in shares.items():
        rows = rate * share * WINDOW
        out.append(Sample.make("mlmon_rows_per_second", rate * share, segment=seg))
        out.append(Sample.make("mlmon_labels_window", rows, segment=seg))
        out.append(Sample.make("mlmon_output_class_ratio", 0.7, segment=seg, **{"class": "0"}))
        out.append(Sample.make("mlmon_output_class_ratio", 0.3, segment=seg, **{"class": "1"}))
        positives = int(rows * 0.3)
        p = precision.get(seg, 0.8)
        out.append(Sample.make("mlmon_precision", rng.binomial(positives, p) / positives, segment=seg))
        for f in range(features):
            mu = shift.get((seg, f), 0.0)
            out.append(Sample.make("mlmon_feature_mean", rng.normal(mu, 1 / math.sqrt(rows)), feature=f"f{f}", segment=seg))
            out.append(Sample.make("mlmon_feature_variance", 1.0, feature=f"f{f}", segment=seg))
    return out


def _engine(events: list[AlertEvent], **kwargs: object) -> AlertEngine:
    return AlertEngine(
        [
            Shift("mlmon_feature_mean", labels={"feature": "*"}, effect=0.25, baseline="reference"),
            Shift("mlmon_precision", effect=0.10, baseline="reference"),
        ],
        sinks=[CallbackSink(events.append, states=None)],
        reference_value=lambda metric, labels: REFERENCE.get(metric),
        **kwargs,  # type: ignore[arg-type]
    )


SHARES = {"big": 0.7, "mid": 0.25, "small": 0.05}


def test_engine_null_stream_then_a_change_in_one_segment() -> None:
    """Independent windows every 300 s for ~10 days: no false alarm; then a change is caught."""
    rng = np.random.default_rng(11)
    events: list[AlertEvent] = []
    # One false alarm per 30 days over 3 segments x (8 features + precision) = 27 series:
    # 0.35 expected in these 3,000 decisions of each series.
    engine = _engine(events, budget=AlertBudget(false_alarms=1, per=30 * 86400, interval=WINDOW))
    t = 0.0
    for _ in range(3_000):
        t += WINDOW
        engine.evaluate(Snapshot("m", None, "h", T0 + t, WINDOW, tuple(_segment_samples(rng, SHARES, 100.0, 8, {}, {}))))
    assert len([e for e in events if e.state == "firing"]) <= 1
    events.clear()
    assert engine.errors == {}
    assert engine.state("precision_shift_down_0_1", segment="small") == "inactive"
    change_at = t
    for _ in range(3):
        t += WINDOW
        snap = Snapshot("m", None, "h", T0 + t, WINDOW, tuple(
            _segment_samples(rng, SHARES, 100.0, 8, {("small", 3): 0.5}, {"mid": 0.65})
        ))  # fmt: skip
        out = engine.evaluate(snap)
    fired = {(e.rule, dict(e.labels).get("feature"), dict(e.labels)["segment"]) for e in events if e.state == "firing"}
    assert fired == {("feature_mean_shift_both_0_25", "f3", "small"), ("precision_shift_down_0_1", None, "mid")}
    first = min(e.at for e in events if e.state == "firing")
    assert first - T0 == change_at + WINDOW  # the first window after the change
    assert out.get("mlmon_alert_firing", rule="feature_mean_shift_both_0_25", feature="f3", segment="small") == 1.0
    alert = next(a for a in out.alerts if a.rule == "precision_shift_down_0_1")
    assert alert.measure is not None and alert.threshold is not None and alert.measure >= alert.threshold


def test_a_segment_too_small_for_the_effect_is_not_decided() -> None:
    rng = np.random.default_rng(5)
    events: list[AlertEvent] = []
    engine = AlertEngine(
        [Shift("mlmon_feature_mean", labels={"feature": "*"}, effect=0.25, baseline="reference", min_samples=0)],
        sinks=[CallbackSink(events.append, states=None)],
        reference_value=lambda metric, labels: REFERENCE.get(metric),
        budget=AlertBudget(interval=STEP),
    )
    # 1 row/s in "small": 300 rows a window, below the ~500 a 0.25 sd change needs for power
    # 0.9 at this budget: even a 3 sd shift there is not decided. "big" has 5,700.
    shares = {"big": 0.95, "small": 0.05}
    for i in range(1, 40):
        snap = Snapshot("m", None, "h", T0 + i * STEP, WINDOW, tuple(
            _segment_samples(rng, shares, 20.0, 1, {("small", 0): 3.0, ("big", 0): 0.5}, {})
        ))  # fmt: skip
        engine.evaluate(snap)
    fired = {dict(e.labels)["segment"] for e in events if e.state == "firing"}
    assert fired == {"big"}
    alerts = {dict(a.labels)["segment"]: a for a in engine.alerts()}
    assert "small" not in alerts


def test_engine_bad_input_never_raises_and_never_fires() -> None:
    events: list[AlertEvent] = []
    calls = []

    def reference(metric: str, labels: dict[str, str]) -> float | None:
        calls.append(metric)
        if labels.get("segment") == "boom":
            raise RuntimeError("reference store down")
        return REFERENCE.get(metric)

    engine = AlertEngine(
        [
            Shift("mlmon_feature_mean", labels={"feature": "*"}, effect=0.25, baseline="reference"),
            Shift("mlmon_precision", effect=0.10, baseline="reference"),
            Shift("mlmon_recall", effect=0.10, baseline=0.7),
        ],
        sinks=[CallbackSink(events.append, states=None)],
        reference_value=reference,
    )
    bad = (
        Sample.make("mlmon_rows_per_second", 0.0, segment="zero"),  # zero samples
        Sample.make("mlmon_feature_mean", 9.0, feature="a", segment="zero"),
        Sample.make("mlmon_feature_variance", 1.0, feature="a", segment="zero"),
        Sample.make("mlmon_rows_per_second", 100.0, segment="nan"),
        Sample.make("mlmon_feature_mean", math.nan, feature="a", segment="nan"),
        Sample.make("mlmon_feature_variance", 1.0, feature="a", segment="nan"),
        Sample.make("mlmon_rows_per_second", 100.0, segment="novariance"),
        Sample.make("mlmon_feature_mean", 9.0, feature="a", segment="novariance"),
        Sample.make("mlmon_feature_variance", -1.0, feature="a", segment="negvariance"),
        Sample.make("mlmon_rows_per_second", 100.0, segment="negvariance"),
        Sample.make("mlmon_feature_mean", 9.0, feature="a", segment="negvariance"),
        Sample.make("mlmon_labels_window", 10_000.0, segment="noclass"),  # no class ratio
        Sample.make("mlmon_precision", 0.1, segment="noclass"),
        Sample.make("mlmon_labels_window", 10_000.0, segment="range"),
        Sample.make("mlmon_output_class_ratio", 0.3, segment="range", **{"class": "1"}),
        Sample.make("mlmon_precision", 1.7, segment="range"),  # not a rate
        Sample.make("mlmon_labels_window", 10_000.0, segment="norecall"),
        Sample.make("mlmon_output_class_ratio", 0.3, segment="norecall", **{"class": "1"}),
        Sample.make("mlmon_precision", 0.8, segment="norecall"),
        Sample.make("mlmon_recall", 0.0, segment="norecall"),  # actual positives unknown
        Sample.make("mlmon_rows_per_second", 100.0, segment="boom"),
        Sample.make("mlmon_feature_mean", 9.0, feature="a", segment="boom"),
        Sample.make("mlmon_feature_variance", 1.0, feature="a", segment="boom"),
    )
    for i in range(1, 10):
        out = engine.evaluate(Snapshot("m", None, "h", T0 + i * STEP, WINDOW, bad))
    assert [e for e in events if e.state == "firing"] == []
    assert out.get("mlmon_alerts_firing") == 0.0
    assert engine.errors == {"rule:feature_mean_shift_both_0_25": 9}  # the reference that raised
    assert calls  # the reference was asked


def test_interval_is_measured_from_the_snapshots() -> None:
    engine = _engine([])
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        engine.evaluate(Snapshot("m", None, "h", T0 + 15.0 * i, WINDOW, tuple(_segment_samples(rng, SHARES, 10.0, 1, {}, {}))))
    assert engine._family.interval() == 15.0
    engine.reset()
    assert engine._family.interval() == 10.0


def test_rules_without_a_test_ignore_the_budget() -> None:
    def run(budget: AlertBudget | None) -> list[tuple[str, float]]:
        events: list[AlertEvent] = []
        engine = AlertEngine([PercentDrop("mlmon_precision", percent=10, baseline=0.8, for_=0)],
                             sinks=[CallbackSink(events.append)], budget=budget)
        for i, p in enumerate([0.8, 0.7, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]):
            engine.evaluate(Snapshot("m", None, "h", T0 + 10 * i, WINDOW, (
                Sample.make("mlmon_precision", p), Sample.make("mlmon_labels_window", 1000.0))))
        return [(e.state, e.at - T0) for e in events]

    plain = run(None)
    assert plain == [("firing", 10.0), ("resolved", 90.0)]
    assert run(AlertBudget(false_alarms=0.001, per="hour")) == plain


def test_evolved_rules_are_validated() -> None:
    r = Shift("mlmon_precision", effect=0.1)
    assert attrs.evolve(r, min_effect=0.0).min_effect == 0.0
    with pytest.raises(ValueError, match="min_effect must be a number in"):
        attrs.evolve(r, min_effect=0.5)


def test_engine_decides_what_the_shared_functions_decide() -> None:
    """The engine's wiring (per-segment counts, variances, precision's trials) against the
    functions the benchmark drives, on one evaluation of many series near the limit."""
    rng = np.random.default_rng(21)
    segments = [f"s{i}" for i in range(12)]
    rows = {s: float(rng.integers(600, 20_000)) for s in segments}
    means = {s: float(rng.normal(0.0, 5.0 / math.sqrt(rows[s]))) for s in segments}
    variances = {s: float(rng.uniform(0.5, 2.0)) for s in segments}
    prec = {s: float(rng.uniform(0.74, 0.8)) for s in segments}
    samples = []
    for s in segments:
        samples += [
            Sample.make("mlmon_rows_per_second", rows[s] / WINDOW, segment=s),
            Sample.make("mlmon_labels_window", rows[s], segment=s),
            Sample.make("mlmon_output_class_ratio", 0.75, segment=s, **{"class": "0"}),
            Sample.make("mlmon_output_class_ratio", 0.25, segment=s, **{"class": "1"}),
            Sample.make("mlmon_precision", prec[s], segment=s),
            Sample.make("mlmon_feature_mean", means[s], feature="x", segment=s),
            Sample.make("mlmon_feature_variance", variances[s], feature="x", segment=s),
        ]
    budget = AlertBudget(false_alarms=1, per="day", interval=STEP)
    engine = _engine([], budget=budget)
    engine.evaluate(Snapshot("m", None, "h", T0 + 10.0, WINDOW, tuple(samples)))
    lim_f = budget.limit(2 * len(segments), WINDOW, STEP, 2)
    lim_p = budget.limit(2 * len(segments), WINDOW, STEP, 1)
    n = np.array([rows[s] for s in segments])
    zf, cf, okf = series_statistics(
        "mean", [means[s] for s in segments], 0.0, n, None, [variances[s] for s in segments], "both",
        limit=lim_f, effect=0.25,
    )
    zp, cp, okp = series_statistics(
        "rate", [prec[s] for s in segments], 0.8, n * 0.25, None, None, "down", limit=lim_p, effect=0.1
    )
    cond_f = decide_family(zf, cf, okf & (n >= 500), lim_f, False, 0.25 / 4, 0.5)
    cond_p = decide_family(zp, cp, okp & (n >= 200), lim_p, False, 0.1 / 4, 0.5)
    got_f = [engine.state("feature_mean_shift_both_0_25", feature="x", segment=s) == "firing" for s in segments]
    got_p = [engine.state("precision_shift_down_0_1", segment=s) == "firing" for s in segments]
    assert got_f == cond_f.tolist() and got_p == cond_p.tolist()
    assert 0 < sum(got_f) < len(segments) and 0 < sum(got_p) < len(segments)  # near the limit


def test_trailing_baseline_learns_the_level_then_catches_a_rise() -> None:
    """Error ratio 1% for two hours against its own trailing hour, then 3%: fires once, soon."""
    rng = np.random.default_rng(4)
    events: list[AlertEvent] = []
    engine = AlertEngine(
        [Shift("mlmon_error_ratio", effect=0.01)],
        sinks=[CallbackSink(events.append)],
        budget=AlertBudget(interval=STEP),
    )
    calls_per_s = 20.0
    slices = []  # errors per 10 s slice; the window sums the last 30
    change_at = 7200.0
    for i in range(1, 1000):
        t = i * STEP
        p = 0.03 if t > change_at else 0.01
        slices.append(rng.binomial(int(calls_per_s * STEP), p))
        window_errors = sum(slices[-K:])
        calls = calls_per_s * STEP * min(len(slices), K)
        engine.evaluate(Snapshot("m", None, "h", T0 + t, min(t, WINDOW), (
            Sample.make("mlmon_error_ratio", window_errors / calls),
            Sample.make("mlmon_calls_per_second", calls_per_s),
        )))  # fmt: skip
        if t == change_at:
            assert events == []  # two hours of 1%: nothing, once the baseline was learnt
    fired = [e.at - T0 for e in events if e.state == "firing"]
    assert len(fired) == 1 and change_at < fired[0] <= change_at + WINDOW
    assert events[0].baseline == pytest.approx(0.01, abs=0.003)
