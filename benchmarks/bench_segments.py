"""What segments cost: on the predict path, and in a snapshot; peers in the same run.

Run: ``PYTHONPATH=. python benchmarks/bench_segments.py [--calls 100000] [--repeats 7]``

Part 1, the predict path (per call, minus a bare call; medians of interleaved repeats; each
mlmon contender's timed loop ends with ``snapshot()``, so the drain it caused is charged to it):

- ``@mon.track(features="x")`` without a segment, and with ``segment=lambda x, s: s`` (a segment
  per call, from an argument), on single-row calls with one feature;
- ``with mon.track(features=X, segment=seg)`` over 100-row batches with one segment value per
  row (20 segments) against the same block without;
- peer: prometheus_client, a ``Histogram`` with a ``segment`` label:
  ``h.labels(segment=s).observe(dt)`` around the same call (what a per-segment latency costs by
  hand; it keeps no outputs, features or quality).

Part 2, a snapshot with 20 segments × 20 features filled (binary task, labels joined), against
the same monitor without segments, and whylogs profiling the same window's rows segmented on the
same column (``segment_on_column``) when whylogs is installed (a peer that segments; it computes
per-segment column profiles, not quality).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import mlmon

SEGMENTS = 20
FEATURES = 20


def per_call(loop: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter_ns()
    loop()
    return (time.perf_counter_ns() - t0) / n


def part1(calls: int, repeats: int) -> None:
    segs = [f"s{i % SEGMENTS}" for i in range(calls)]

    def model(x: float, s: str) -> float:
        return x * 0.5

    plain = mlmon.Monitor("bench-seg-plain", emitters=[], flush_interval=300)
    segd = mlmon.Monitor("bench-seg-seg", emitters=[], flush_interval=300)
    f_plain = plain.track(features="x")(model)
    f_seg = segd.track(features="x", segment=lambda x, s: s)(model)

    from prometheus_client import CollectorRegistry, Histogram

    hist = Histogram("bench_seg_seconds", "x", ["segment"], registry=CollectorRegistry())

    def by_hand(x: float, s: str) -> float:
        t0 = time.perf_counter()
        out = model(x, s)
        hist.labels(segment=s).observe(time.perf_counter() - t0)
        return out

    def run(fn: Callable[[float, str], float], mon: mlmon.Monitor | None) -> Callable[[], None]:
        def loop() -> None:
            for s in segs:
                fn(0.5, s)
            if mon is not None:
                mon.snapshot()

        return loop

    contenders = {
        "bare call": run(model, None),
        "prometheus_client Histogram.labels(segment).observe": run(by_hand, None),
        "@track(features=) without segment": run(f_plain, plain),
        "@track(features=, segment=lambda ...)": run(f_seg, segd),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, loop in contenders.items():
            times[name].append(per_call(loop, calls))
    bare = statistics.median(times["bare call"])
    over = {k: statistics.median(v) - bare for k, v in times.items() if k != "bare call"}
    peer = over["prometheus_client Histogram.labels(segment).observe"]
    print(f"\n### Predict path, single-row calls ({calls:,} calls, {repeats} repeats, medians)\n")
    print("| contender | overhead per call (ns) | vs prometheus_client |")
    print("|---|---:|---:|")
    for k, v in over.items():
        print(f"| {k} | {v:,.0f} | {v / peer:.2f}x |")
    print(f"\nA segment adds {over['@track(features=, segment=lambda ...)'] - over['@track(features=) without segment']:,.0f} ns a call.")

    # Batches: 100 rows, one segment value per row.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, FEATURES))
    seg_rows = np.array([f"s{i}" for i in rng.integers(0, SEGMENTS, 100)])
    out = rng.uniform(size=100)
    batches = max(calls // 50, 200)
    blocks = {
        "with track(features=X) (100 rows)": (mlmon.Monitor("bench-seg-b0", emitters=[], flush_interval=300), None),
        "with track(features=X, segment=per-row array)": (mlmon.Monitor("bench-seg-b1", emitters=[], flush_interval=300), seg_rows),
    }  # fmt: skip

    def block(mon: mlmon.Monitor, seg: Any) -> Callable[[], None]:
        def loop() -> None:
            for _ in range(batches):
                if seg is None:
                    with mon.track(features=X) as call:
                        call.outputs(out)
                else:
                    with mon.track(features=X, segment=seg) as call:
                        call.outputs(out)
            mon.snapshot()

        return loop

    btimes: dict[str, list[float]] = {k: [] for k in blocks}
    for _ in range(repeats):
        for name, (mon, seg) in blocks.items():
            btimes[name].append(per_call(block(mon, seg), batches) / 1000)
    print(f"\n### Predict path, 100-row batches × {FEATURES} features ({batches:,} blocks, drain included)\n")
    print("| contender | µs per block | ratio |")
    print("|---|---:|---:|")
    base = statistics.median(btimes["with track(features=X) (100 rows)"])
    for k, v in btimes.items():
        print(f"| {k} | {statistics.median(v):,.1f} | {statistics.median(v) / base:.2f}x |")
    for mon in (plain, segd, *(m for m, _ in blocks.values())):
        mon.close()


def part2(rows: int, repeats: int) -> None:
    rng = np.random.default_rng(1)
    cols = [f"f{i}" for i in range(FEATURES)]
    X = pd.DataFrame(rng.normal(size=(rows, FEATURES)), columns=cols)
    seg = np.array([f"s{i}" for i in rng.integers(0, SEGMENTS, rows)])
    scores = rng.uniform(size=rows)
    labels = (rng.uniform(size=rows) < scores).astype(int)
    ref = mlmon.Reference.from_data(X, feature_names=cols)
    results: dict[str, list[float]] = {"without segments": [], f"with {SEGMENTS} segments": []}
    mons = {}
    for name in results:
        mon = mlmon.Monitor(f"bench-snap-{len(mons)}", task=mlmon.BinaryClassification(threshold=0.5), reference=ref,
                            emitters=[], flush_interval=300)  # fmt: skip
        ids = np.arange(rows)
        for lo in range(0, rows, 1000):
            sl = slice(lo, lo + 1000)
            if name == "without segments":
                with mon.track(features=X.iloc[sl], ids=ids[sl]) as call:
                    call.outputs(scores[sl])
            else:
                with mon.track(features=X.iloc[sl], ids=ids[sl], segment=seg[sl]) as call:
                    call.outputs(scores[sl])
        mon.log_feedback(ids, labels)
        mon.snapshot()
        mons[name] = mon
    series = {}
    for _ in range(repeats):
        for name, mon in mons.items():
            t0 = time.perf_counter()
            snap = mon.snapshot()
            results[name].append((time.perf_counter() - t0) * 1000)
            series[name] = len(snap.samples)
    peer: float | None = None
    peer_error = ""
    try:
        import whylogs as why
        from whylogs.core.schema import DatasetSchema
        from whylogs.core.segmentation_partition import segment_on_column

        frame = X.assign(seg=seg.astype(object))
        schema = DatasetSchema(segments=segment_on_column("seg"))
        pt = []
        for _ in range(max(1, repeats // 2)):
            t0 = time.perf_counter()
            why.log(frame, schema=schema)
            pt.append((time.perf_counter() - t0) * 1000)
        peer = statistics.median(pt)
    except ImportError:
        peer_error = "whylogs is not installed"
    except Exception as exc:  # whylogs 1.6's segmenting breaks on pandas 3 (get_group)
        peer_error = f"whylogs failed: {type(exc).__name__}: {exc}"
    print(f"\n### Snapshot with {SEGMENTS} segments × {FEATURES} features ({rows:,} rows and labels in the window)\n")
    print("| contender | ms | series | ratio |")
    print("|---|---:|---:|---:|")
    base = statistics.median(results["without segments"])
    for k, v in results.items():
        print(f"| mlmon snapshot(), {k} | {statistics.median(v):.1f} | {series[k]:,} | {statistics.median(v) / base:.2f}x |")
    if peer is not None:
        print(f"| peer: whylogs why.log() segmented on the column, same rows | {peer:.1f} | – | {peer / base:.2f}x |")
    else:
        print(f"\nPeer not measured: {peer_error}.")
    for mon in mons.values():
        mon.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    part1(args.calls, args.repeats)
    part2(args.rows, args.repeats)


if __name__ == "__main__":
    main()
