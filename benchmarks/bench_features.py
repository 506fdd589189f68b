"""Feature monitoring speed and memory: ``python benchmarks/bench_features.py``.

Prints markdown tables of medians over repeated runs:

- capture throughput as a user runs it: ``@mon.track(features="X")`` around a predict
  function, ``with mon.track(features=X)`` (numpy and pandas), on batches of 1000 rows x 200
  and 1000 x 20 numeric features against a reference, the drain by ``mon.snapshot()``
  included (one snapshot per ``--calls`` calls), in ns per feature value and rows/s;
- whylogs ``why.log(pandas=df)`` on the same 1000 x 20 batches in the same run, when whylogs
  is installed (``pip install whylogs``); the column says so when it is not;
- feature update throughput through the accumulator alone and ``FeatureComponent.ingest``;
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


def whylogs_version() -> str | None:
    try:
        import whylogs as why
    except Exception:  # not installed, or installed but broken
        return None
    return str(getattr(why, "__version__", "?"))


def bench_whylogs(batches: list[np.ndarray], repeats: int) -> float | str:
    """Rows/s of ``why.log(pandas=df)`` per batch (what a whylogs user runs per request)."""
    try:
        import pandas as pd
        import whylogs as why
    except Exception as e:  # not installed, or installed but broken
        return f"skipped: whylogs unavailable ({type(e).__name__}: {e})"
    names = [f"f{j}" for j in range(batches[0].shape[1])]
    frames = [pd.DataFrame(b, columns=names) for b in batches]  # built outside the timing
    rows = sum(len(b) for b in batches)

    def profile() -> None:
        for df in frames:
            why.log(pandas=df)

    return rows / median_seconds(profile, repeats)


def bench_capture(cols: int, calls: int, repeats: int) -> dict[str, float]:
    """Seconds per run of ``calls`` tracked calls of 1000 x ``cols`` plus one ``snapshot()``.

    A fresh monitor (with a reference of ``cols`` numeric features, a FakeClock so no reporter
    thread runs) per run; the timing covers the calls and the drain, not the monitor's
    creation.
    """
    import pandas as pd

    import mlmon
    from mlmon.testing import FakeClock

    rng = np.random.default_rng(cols)
    ref = Reference.from_data(rng.normal(size=(5000, cols)))
    batches = [rng.normal(size=(BATCH_ROWS, cols)) for _ in range(calls)]
    names = list(ref.feature_names)
    frames = [pd.DataFrame(b, columns=names) for b in batches]
    out: dict[str, float] = {}

    def timed(mode: str) -> float:
        times = []
        for r in range(repeats + 1):
            mon = mlmon.Monitor("bench", reference=ref, clock=FakeClock(), window=300.0)
            predict = mon.track(features="X", outputs=False)(lambda X: None)
            gc.collect()
            t0 = time.perf_counter()
            if mode == "decorator":
                for X in batches:
                    predict(X)
            elif mode == "with":
                for X in batches:
                    with mon.track(features=X):
                        pass
            else:
                for df in frames:
                    with mon.track(features=df):
                        pass
            snap = mon.snapshot()
            elapsed = time.perf_counter() - t0
            assert snap.get("mlmon_feature_mean", feature=names[0]) is not None
            mon.close()
            if r:  # the first run warms up
                times.append(elapsed)
        return statistics.median(times)

    for mode in ("decorator", "with", "with_dataframe"):
        out[mode] = timed(mode)
    return out


def print_capture(calls: int, repeats: int) -> None:
    wl_version = whylogs_version()
    rng = np.random.default_rng(7)
    wl_batches = [rng.normal(size=(BATCH_ROWS, N_FEATURES)) for _ in range(max(5, calls // 2))]
    wl = bench_whylogs(wl_batches, repeats)
    print(
        f"## capture: {calls} tracked calls then one `mon.snapshot()`, median of {repeats} runs\n"
    )
    print("| batch | how | ns per value | rows/s | vs whylogs `why.log` |")
    print("|---|---|---|---|---|")
    for cols in (200, N_FEATURES):
        res = bench_capture(cols, calls, repeats)
        for mode, label in (
            ("decorator", '`@mon.track(features="X")`'),
            ("with", "`with mon.track(features=X)`"),
            ("with_dataframe", "`with mon.track(features=df)` (pandas)"),
        ):
            sec = res[mode]
            rows_s = calls * BATCH_ROWS / sec
            ns = sec / (calls * BATCH_ROWS * cols) * 1e9
            ratio = (
                f"{rows_s / wl:,.0f}x"
                if isinstance(wl, float) and cols == N_FEATURES
                else ""
            )
            print(f"| {BATCH_ROWS}x{cols} | {label} | {ns:.1f} | {rows_s:,.0f} | {ratio} |")
    if isinstance(wl, float):
        ns = 1e9 / (wl * N_FEATURES)
        print(
            f"| {BATCH_ROWS}x{N_FEATURES} | whylogs {wl_version} `why.log(pandas=df)` | {ns:,.0f} | "
            f"{wl:,.0f} | 1x |"
        )
    else:
        print(f"| {BATCH_ROWS}x{N_FEATURES} | whylogs | | | {wl} |")
    print()


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
    parser.add_argument("--calls", type=int, default=20, help="tracked calls per snapshot (capture)")
    parser.add_argument(
        "--capture-only", action="store_true", help="only the capture table (the user-facing numbers)"
    )
    args = parser.parse_args()

    print(
        f"# mlmon feature monitoring benchmark\n\npython {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}\n"
    )
    print_capture(args.calls, args.repeats)
    if args.capture_only:
        return

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

    print(f"## parts, median of {args.repeats} runs\n")
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
