"""Feature monitoring speed and memory: ``python benchmarks/bench_features.py``.

Prints a markdown table of medians over repeated runs:

- feature update throughput on batches of 1000 rows x 20 numeric features, through the
  accumulator alone and through ``FeatureComponent.ingest`` (conversion included);
- whylogs profiling the same batches in the same run, when whylogs is installed
  (``pip install whylogs``); the column is skipped, and the table says so, when it is not;
- the time to compute every drift score for 20 features from the window's bins, against scipy
  (``ks_2samp`` + ``wasserstein_distance``) on the raw reference and window values;
- memory per monitored feature for a 5-minute window of 10 slices.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlmon._component import CallBatch
from mlmon.drift import DriftConfig, decide, drift_scores
from mlmon.features import FeatureAccumulator, FeatureComponent, FeatureSchema
from mlmon.reference import NumericProfile, Reference

N_FEATURES = 20
BATCH_ROWS = 1000


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_updates(ref: Reference, batches: list[np.ndarray], repeats: int) -> dict[str, float]:
    schema = FeatureSchema(reference=ref)
    rows = sum(len(b) for b in batches)

    def accumulator() -> None:
        acc = FeatureAccumulator(schema)
        for b in batches:
            acc.update_batch(b)

    def component() -> None:
        comp = FeatureComponent(ref, window=300.0, slices=10, now=0.0)
        for i, b in enumerate(batches):
            comp.ingest(CallBatch(now=float(i), wall=0.0, features=[b], rows=[len(b)]))

    return {
        "accumulator": rows / median_seconds(accumulator, repeats),
        "component": rows / median_seconds(component, repeats),
    }


def bench_whylogs(batches: list[np.ndarray], repeats: int) -> float | str:
    try:
        import pandas as pd
        import whylogs as why  # noqa: F401 - imported for the version and to fail early
        from whylogs.core import DatasetProfile
    except Exception as e:  # not installed, or installed but broken
        return f"skipped: whylogs unavailable ({type(e).__name__}: {e})"
    names = [f"f{j}" for j in range(N_FEATURES)]
    frames = [pd.DataFrame(b, columns=names) for b in batches]  # built outside the timing
    rows = sum(len(b) for b in batches)

    def profile() -> None:
        prof = DatasetProfile()
        for df in frames:
            prof.track(pandas=df)

    return rows / median_seconds(profile, repeats)


def bench_drift(
    ref_raw: np.ndarray, ref: Reference, window_raw: np.ndarray, repeats: int
) -> dict[str, float]:
    from scipy import stats

    schema = FeatureSchema(reference=ref)
    acc = FeatureAccumulator(schema)
    acc.update_batch(window_raw)
    cfg = DriftConfig()
    profiles = [p for p in ref.features if isinstance(p, NumericProfile)]

    def from_bins() -> None:
        scores = [
            drift_scores(p.cells(), acc.cells(j), ordered=True) for j, p in enumerate(profiles)
        ]
        decide(scores, cfg)

    def scipy_raw() -> None:
        for j in range(window_raw.shape[1]):
            stats.ks_2samp(ref_raw[:, j], window_raw[:, j], method="asymp")
            stats.wasserstein_distance(ref_raw[:, j], window_raw[:, j])

    comp = FeatureComponent(ref, window=300.0, slices=10, now=0.0)
    for i, part in enumerate(np.array_split(window_raw, 10)):
        comp.ingest(CallBatch(now=30.0 * i + 1.0, wall=0.0, features=[part], rows=[len(part)]))

    def snapshot() -> None:
        comp.samples(290.0)

    return {
        "bins": median_seconds(from_bins, repeats),
        "samples": median_seconds(snapshot, repeats),
        "scipy": median_seconds(scipy_raw, max(3, repeats // 3)),
    }


def bench_memory(ref: Reference, cat_ref: Reference) -> dict[str, float]:
    """Bytes per feature held by a component with a 5-minute window of 10 slices, all slices used."""
    out = {}
    for label, reference, n in (
        ("numeric", ref, N_FEATURES),
        ("categorical", cat_ref, len(cat_ref.features)),
    ):
        rng = np.random.default_rng(0)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        comp = FeatureComponent(reference, window=300.0, slices=10, now=0.0)
        for i in range(10):
            if label == "numeric":
                feats: Any = rng.normal(size=(1000, n))
            else:
                feats = np.array(
                    [[f"c{v}" for v in row] for row in rng.integers(0, 1000, size=(200, n))],
                    dtype=object,
                )
            comp.ingest(
                CallBatch(now=30.0 * i + 1.0, wall=0.0, features=[feats], rows=[len(feats)])
            )
        del feats  # the input batch is the caller's, not the monitor's
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        acc = comp.merged(299.0)
        arrays = sum(
            getattr(acc, a).nbytes
            for a in (
                "count",
                "missing",
                "mean",
                "m2",
                "min",
                "max",
                "hist",
                "cat_count",
                "cat_missing",
                "cat_unseen",
                "cat_cells",
            )
        )
        out[label] = held / n
        out[label + "_arrays"] = 11 * arrays / n  # 10 slices + the merge scratch
        del comp
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=50, help="batches of 1000 x 20 per run")
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement (median)")
    parser.add_argument("--window-rows", type=int, default=100_000, help="rows in the drift window")
    args = parser.parse_args()

    rng = np.random.default_rng(42)
    ref_raw = rng.normal(size=(100_000, N_FEATURES))
    ref = Reference.from_data(ref_raw)
    cat_ref = Reference.from_data(
        {f"c{j}": [f"c{v}" for v in rng.integers(0, 100, size=5000)] for j in range(5)}
    )
    batches = [rng.normal(size=(BATCH_ROWS, N_FEATURES)) for _ in range(args.batches)]
    window_raw = rng.normal(0.1, 1.0, size=(args.window_rows, N_FEATURES))

    upd = bench_updates(ref, batches, args.repeats)
    wl = bench_whylogs(batches[: max(10, args.batches // 5)], max(5, args.repeats // 2))
    dr = bench_drift(ref_raw, ref, window_raw, args.repeats)
    mem = bench_memory(ref, cat_ref)

    print(
        f"# mlmon feature monitoring benchmark\n\npython {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}, median of {args.repeats} runs\n"
    )
    print("| measurement | mlmon | comparison | ratio |")
    print("|---|---|---|---|")
    if isinstance(wl, float):
        print(
            f"| update, {BATCH_ROWS}x{N_FEATURES} batches (accumulator) | {upd['accumulator']:,.0f} rows/s | "
            f"whylogs {wl:,.0f} rows/s | {upd['accumulator'] / wl:,.0f}x |"
        )
        print(
            f"| update, {BATCH_ROWS}x{N_FEATURES} batches (component: conversion + window) | "
            f"{upd['component']:,.0f} rows/s | whylogs {wl:,.0f} rows/s | {upd['component'] / wl:,.0f}x |"
        )
    else:
        print(
            f"| update, {BATCH_ROWS}x{N_FEATURES} batches (accumulator) | {upd['accumulator']:,.0f} rows/s | {wl} | |"
        )
        print(
            f"| update, {BATCH_ROWS}x{N_FEATURES} batches (component: conversion + window) | "
            f"{upd['component']:,.0f} rows/s | {wl} | |"
        )
    print(
        f"| drift, {N_FEATURES} features, all scores + decision, from bins | {dr['bins'] * 1e3:.2f} ms | "
        f"scipy ks_2samp + wasserstein on raw ({args.window_rows:,} vs 100,000 rows) {dr['scipy'] * 1e3:.0f} ms | "
        f"{dr['scipy'] / dr['bins']:,.0f}x |"
    )
    print(
        f"| full `samples()` ({N_FEATURES} features: merge 10 slices + stats + drift) | {dr['samples'] * 1e3:.2f} ms | | |"
    )
    raw_bytes = 8 * 300 * 1000  # 5 minutes at 1000 rows/s, float64
    print(
        f"| memory per numeric feature, 5-min window, 10 slices (deciles) | {mem['numeric']:,.0f} B "
        f"(arrays {mem['numeric_arrays']:,.0f} B) | raw values at 1000 rows/s: {raw_bytes:,} B | "
        f"{raw_bytes / mem['numeric']:,.0f}x less |"
    )
    print(
        f"| memory per categorical feature (100 kept categories, 1000 seen) | {mem['categorical']:,.0f} B "
        f"(arrays {mem['categorical_arrays']:,.0f} B) | | |"
    )


if __name__ == "__main__":
    main()
