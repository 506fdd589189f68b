"""Drift decisions that do not cry wolf: false alarms on stationary data, detection of shifts.

Run: ``python benchmarks/bench_drift_decisions.py [--windows 100]``

A reference of 20,000 N(0, 1) rows and 20 features; each window is a fresh sample of ``rows``
rows, stationary or with one feature's mean shifted by 0.1, 0.25 or 0.5 standard deviations.
For the default decision (PSI >= 0.2 drift, >= 0.1 warning, at least 500 rows) and for p-value
decisions (KS, Benjamini-Hochberg across features, alpha 0.05):

- false alarms: share of (window, feature) pairs with status "drift" on stationary data;
- detection: share of windows where the shifted feature gets status "drift".
"""

from __future__ import annotations

import argparse

import numpy as np

from mlmon._component import CallBatch
from mlmon.drift import DriftConfig
from mlmon.features import FeatureComponent
from mlmon.reference import Reference

FEATURES = 20


def statuses(comp: FeatureComponent, X: np.ndarray, t: float) -> np.ndarray:
    comp.reset()
    comp.ingest(CallBatch(now=t, wall=t, features=[X], rows=[X.shape[0]]))
    out = np.full(FEATURES, -1.0)
    for name, value, labels in comp.samples(t):
        if name == "mlmon_feature_drift_status":
            out[int(labels["feature"][1:])] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(FEATURES)]
    ref = Reference.from_data(rng.normal(size=(20_000, FEATURES)), feature_names=names)
    methods = {
        "PSI (default)": DriftConfig(),
        "KS p-value + BH": DriftConfig(method="pvalue", alpha=0.05, fdr=True),
    }
    print(f"{args.windows} windows per cell, {FEATURES} features, reference 20,000 rows\n")
    print("| decision | rows per window | false alarms (stationary) | detect 0.1σ | detect 0.25σ | detect 0.5σ |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, config in methods.items():
        comp = FeatureComponent(ref, window=60.0, slices=2, now=0.0, drift=config)
        for rows in (500, 2_000, 10_000, 50_000):
            false = 0
            detect = {0.1: 0, 0.25: 0, 0.5: 0}
            for w in range(args.windows):
                X = rng.normal(size=(rows, FEATURES))
                false += int((statuses(comp, X, 1.0 + w) >= 2).sum())
                for shift in detect:
                    Xs = X.copy()
                    Xs[:, 0] += shift
                    detect[shift] += int(statuses(comp, Xs, 1.0 + w)[0] >= 2)
            n = args.windows
            print(
                f"| {label} | {rows:,} | {false / (n * FEATURES):.2%} | {detect[0.1] / n:.0%} | "
                f"{detect[0.25] / n:.0%} | {detect[0.5] / n:.0%} |"
            )


if __name__ == "__main__":
    main()
