"""Alert rules: evaluation cost, and detection delay against false alarms for the defaults.

Run: ``python benchmarks/bench_alerts.py`` (``--quick`` for fewer seeds).

1. Cost of ``AlertEngine.evaluate`` per snapshot for 100 rules over 20 features: one series per
   rule, and every rule a ``feature="*"`` wildcard (2,000 instances). Median of repeats.
2. Detection delay and false alarms for the default rules on synthetic streams that behave like a
   monitor's 300 s window flushed every 10 s (``tests/alerts/alert_streams.py``): false alarms per
   day on a stationary stream (24 h per seed), and on the same stream with a change after 2 h,
   the share of seeds that fired within an hour of the change and the median delay.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "alerts"))

from alert_streams import T0, ctr_stream, precision_stream, score_stream

from mlmon.alerts import (
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

FEATURES = [f"f{i}" for i in range(20)]
DAY = 24 * 3600.0
Level = tuple[str, Callable[[int], list[Snapshot]], Callable[[int], list[Snapshot]]]


# -- 1. evaluation cost ------------------------------------------------------------------------
def feature_snapshot(t: float, rng: np.random.Generator) -> Snapshot:
    samples = [Sample.make("mlmon_rows_per_second", 50.0), Sample.make("mlmon_labels_window", 5000),
               Sample.make("mlmon_output_count", 15000), Sample.make("mlmon_precision", 0.8),
               Sample.make("mlmon_output_variance", 0.04), Sample.make("mlmon_calls_per_second", 50.0),
               Sample.make("mlmon_latency_seconds", 0.05, quantile="0.99")]  # fmt: skip
    for f in FEATURES:
        for name, v in (("mlmon_feature_mean", 10.0), ("mlmon_feature_variance", 4.0),
                        ("mlmon_feature_missing_ratio", 0.01), ("mlmon_feature_drift_psi", 0.02),
                        ("mlmon_feature_out_of_range_ratio", 0.001), ("mlmon_feature_drift_ks", 0.03),
                        ("mlmon_feature_min", 0.0), ("mlmon_feature_max", 20.0)):  # fmt: skip
            samples.append(Sample.make(name, v * (1 + 0.01 * rng.standard_normal()), feature=f))
    return Snapshot("bench", "1", "h:1", T0 + t, 300.0, tuple(samples))


def per_feature_rules(feature: str, wildcard: bool) -> list[Rule]:
    sel = {"feature": "*" if wildcard else feature}
    tag = feature if not wildcard else f"w{feature}"
    return [
        Threshold("mlmon_feature_drift_psi", labels=sel, above=0.2, name=f"psi_{tag}"),
        Threshold("mlmon_feature_missing_ratio", labels=sel, above=0.05, name=f"missing_{tag}"),
        PercentChange("mlmon_feature_mean", labels=sel, percent=20, name=f"mean_{tag}"),
        VarianceChange("mlmon_feature_variance", labels=sel, factor=2, test="f", name=f"var_{tag}"),
        Threshold("mlmon_feature_out_of_range_ratio", labels=sel, above=0.01, name=f"oor_{tag}"),
    ]


def evaluation_cost(repeats: int) -> None:
    rng = np.random.default_rng(0)
    print("### Rule evaluation cost per snapshot (100 rules over 20 features)\n")
    print("| rules | instances | samples in the snapshot | median per evaluate() | per instance |")
    print("|---|---:|---:|---:|---:|")
    for label, wildcard in (("100 rules, one feature each", False), ("100 wildcard rules (feature=\"*\")", True)):
        rules = [r for f in FEATURES for r in per_feature_rules(f, wildcard)]
        engine = AlertEngine(rules, sinks=())
        # Warm up past the trailing baselines' coverage so every rule does its full work.
        snaps = [feature_snapshot(10.0 * i, rng) for i in range(240)]
        for s in snaps[:200]:
            engine.evaluate(s)
        times = []
        for i in range(repeats):
            s = snaps[200 + i % 40]
            t0 = time.perf_counter()
            out = engine.evaluate(s)
            times.append(time.perf_counter() - t0)
        instances = len(out.select("mlmon_alert_firing"))
        med = statistics.median(times)
        print(f"| {label} | {instances} | {len(s)} | {med * 1e3:.2f} ms | {med / instances * 1e6:.1f} µs |")
    print()


# -- 2. detection delay and false alarms ---------------------------------------------------------
def firings(rule: Rule, snaps: list[Snapshot]) -> list[float]:
    events: list[AlertEvent] = []
    engine = AlertEngine([rule], sinks=[CallbackSink(events.append)])
    for s in snaps:
        engine.evaluate(s)
    return [e.at - T0 for e in events if e.state == "firing"]


def study(
    title: str,
    levels: list[Level],
    rule: Rule,
    seeds: int,
    change_at: float = 7200.0,
) -> None:
    print(f"### {title}\n")
    print(f"Rule: `{rule.describe()}`, min_samples {rule.min_samples}, for_ {rule.for_:g} s.\n")
    print("| stream | false alarms per day | detected within 1 h | median delay | p90 delay |")
    print("|---|---:|---:|---:|---:|")
    for label, stationary, changed in levels:
        fa = [len(firings(rule, stationary(seed))) for seed in range(seeds)]
        delays = []
        for seed in range(seeds):
            after = [t - change_at for t in firings(rule, changed(100 + seed)) if t > change_at]
            if after and after[0] <= 3600:
                delays.append(after[0])
        rate = f"{len(delays)}/{seeds}"
        med = f"{statistics.median(delays):.0f} s" if delays else "–"
        p90 = f"{np.quantile(delays, 0.9):.0f} s" if delays else "–"
        print(f"| {label} | {statistics.mean(fa):.2f} | {rate} | {med} | {p90} |")
    print()


def precision_levels(rates: tuple[int, ...], after: float) -> list[Level]:
    def level(lps: int) -> Level:
        return (
            f"{lps} labels/s ({lps * 300} per window)",
            lambda s: precision_stream(DAY, lps, 0.8, seed=s),
            lambda s: precision_stream(3 * 3600, lps, 0.8, after, change_at=7200, seed=s),
        )

    return [level(lps) for lps in rates]


def score_levels(rates: tuple[float, ...]) -> list[Level]:
    def level(ops: float) -> Level:
        return (
            f"{ops:g} outputs/s ({ops * 300:.0f} per window)",
            lambda s: score_stream(DAY, ops, 0.10, seed=s),
            lambda s: score_stream(3 * 3600, ops, 0.10, 0.15, change_at=7200, seed=s),
        )

    return [level(ops) for ops in rates]


def ctr_levels(rates: tuple[int, ...]) -> list[Level]:
    def level(rps: int) -> Level:
        return (
            f"{rps} rows/s ({rps * 300} per window)",
            lambda s: ctr_stream(DAY, rps, 0.05, seed=s),
            lambda s: ctr_stream(3 * 3600, rps, 0.05, 0.025, change_at=7200, seed=s),
        )

    return [level(rps) for rps in rates]


def main() -> None:
    quick = "--quick" in sys.argv
    seeds = 3 if quick else 10
    evaluation_cost(50 if quick else 300)
    study(
        "PercentDrop on precision (0.8, 30% predicted positive) dropping to 0.64 (-20%)",
        precision_levels((1, 2, 5, 10, 20), 0.64),
        PercentDrop("mlmon_precision", percent=10),
        seeds,
    )
    study(
        "Same, with for_=300 (the condition must hold for a whole window)",
        precision_levels((1, 2, 5), 0.64),
        PercentDrop("mlmon_precision", percent=10, for_=300),
        seeds,
    )
    study(
        "PercentDrop on precision dropping to 0.72 (-10%, exactly the limit)",
        precision_levels((5, 20), 0.72),
        PercentDrop("mlmon_precision", percent=10),
        seeds,
    )
    study(
        "PercentDrop with baseline='pinned' (the first value once 200 labels are in), drop to 0.64",
        precision_levels((5, 20), 0.64),
        PercentDrop("mlmon_precision", percent=10, baseline=Baseline.pinned()),
        seeds,
    )
    study(
        "VarianceChange(factor=1.5) on normal scores, sd 0.10 -> 0.15 (variance x2.25, flat mean)",
        score_levels((0.5, 2, 5, 20)),
        VarianceChange("mlmon_output_variance", factor=1.5),
        seeds,
    )
    for test in (None, "f"):
        study(
            f"Same with min_samples=30, test={test!r}: what the F-test does on small windows",
            score_levels((0.2, 0.5, 2)),
            VarianceChange("mlmon_output_variance", factor=1.5, min_samples=30, test=test),
            seeds,
        )
    study(
        "PercentChange(percent=30) on click-through 5% halving to 2.5%",
        ctr_levels((5, 20, 100)),
        PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=30),
        seeds,
    )


if __name__ == "__main__":
    main()
