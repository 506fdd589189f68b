"""Feedback join: label throughput, prediction ingest, and memory per stored prediction.

Run: ``python benchmarks/bench_feedback.py [--repeats 5] [--full 1000000]``

Throughput is measured on ``QualityComponent`` (what ``Monitor.log_feedback`` calls after its
drain) with a binary task, against a store holding ``--pending`` predictions with integer ids;
every label joins (a fresh id each time). Each figure is the median of ``--repeats`` runs.
Memory is what tracemalloc sees allocated by the store: per stored prediction after filling it,
and for a full store of ``--full`` predictions after a second round of churn (eviction, table
rebuilds), with the peak during that churn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from mlmon._component import CallBatch
from mlmon.feedback import FeedbackJoin
from mlmon.quality import QualityComponent
from mlmon.tasks import BinaryClassification

BOUND = 150  # bytes per stored prediction, the design target


def filled(pending: int) -> tuple[QualityComponent, int]:
    """A component whose store holds ``pending`` predictions with ids 0 .. pending - 1."""
    q = QualityComponent(BinaryClassification(), window=300.0, now=0.0, max_pending=pending)
    scores = np.random.default_rng(0).random(10_000)
    for lo in range(0, pending, 10_000):
        n = min(10_000, pending - lo)
        q.ingest(
            CallBatch(now=1.0, wall=0.0, outputs=[scores[:n]], ids=[range(lo, lo + n)], rows=[n])
        )
    return q, pending


def labels_per_second(batch: int, pending: int, total: int) -> float:
    q, n = filled(pending)
    ids = np.random.default_rng(1).permutation(n)[:total]
    labels = np.random.default_rng(2).integers(0, 2, total)
    t0 = time.perf_counter()
    if batch == 1:
        log = q.log_feedback
        for i, y in zip(ids.tolist(), labels.tolist(), strict=True):
            log(i, y, 2.0)
    else:
        for lo in range(0, total, batch):
            q.log_feedback(ids[lo : lo + batch], labels[lo : lo + batch], 2.0)
    dt = time.perf_counter() - t0
    assert q.store.joined == total, q.store.joined
    return total / dt


def drain_seconds(calls: int, rows: int, drains: int) -> float:
    """Seconds per ``QualityComponent.ingest`` of one drain of ``calls`` calls of ``rows`` rows
    with ids: single-row calls carry a float score and a string id, batches a score array and
    generated ids (a ``range``)."""
    q = QualityComponent(BinaryClassification(), window=300.0, now=0.0)
    rng = np.random.default_rng(0)
    batches = []
    for d in range(drains):
        base = d * calls * rows
        if rows == 1:
            outputs: list[object] = rng.random(calls).tolist()
            ids: list[object] = [f"req-{base + i}" for i in range(calls)]
        else:
            outputs = [rng.random(rows) for _ in range(calls)]
            ids = [range(base + i * rows, base + (i + 1) * rows) for i in range(calls)]
        batches.append(
            CallBatch(now=float(d), wall=0.0, outputs=outputs, ids=ids, rows=[rows] * calls)
        )
    t0 = time.perf_counter()
    for b in batches:
        q.ingest(b)
    return (time.perf_counter() - t0) / drains


def traced(fn: Callable[[], object]) -> tuple[object, int, int]:
    """Run ``fn``; return its result, the bytes it leaves allocated, and its peak."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn()
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, cur - base, peak - base


def fill_store(n: int, rounds: int, strings: bool) -> FeedbackJoin:
    store = FeedbackJoin(max_pending=n)
    preds = np.ones(10_000)
    for lo in range(0, rounds * n, 10_000):
        m = min(10_000, rounds * n - lo)
        ids: object = (
            [f"request-{i:012d}" for i in range(lo, lo + m)] if strings else range(lo, lo + m)
        )
        store.record(ids, preds[:m], now=float(lo))
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pending", type=int, default=1_000_000, help="store size for throughput")
    ap.add_argument("--full", type=int, default=1_000_000, help="store size for the memory bound")
    args = ap.parse_args()

    print(
        f"Python {sys.version.split()[0]}, numpy {np.__version__}, medians of {args.repeats} runs\n"
    )
    print(f"### log_feedback throughput (binary task, {args.pending:,} stored predictions)\n")
    print("| labels per call | labels/s | µs per call |")
    print("|---:|---:|---:|")
    for batch, total in [(1, 100_000), (1_000, 1_000_000)]:
        rate = statistics.median(
            labels_per_second(batch, args.pending, total) for _ in range(args.repeats)
        )
        print(f"| {batch:,} | {rate:,.0f} | {batch / rate * 1e6:,.1f} |")

    print("\n### ingest at drain time (QualityComponent.ingest, predictions with ids)\n")
    print("| drain | ms per drain | predictions/s |")
    print("|---|---:|---:|")
    for calls, rows in [(1_000, 1), (100, 100), (10, 10_000)]:
        sec = statistics.median(drain_seconds(calls, rows, 20) for _ in range(args.repeats))
        label = f"{calls:,} calls x {rows:,} row{'s' if rows > 1 else ''}"
        print(f"| {label} | {sec * 1e3:.2f} | {calls * rows / sec:,.0f} |")

    print("\n### memory per stored prediction (tracemalloc)\n")
    print("| ids | stored | bytes/prediction | peak bytes/prediction | store arrays (nbytes) |")
    print("|---|---:|---:|---:|---:|")
    cases = [(n, 1, False) for n in (10_000, 100_000, args.full)]
    cases += [(args.full, 2, False), (args.full, 1, True)]
    for n, rounds, strings in cases:
        store, cur, peak = traced(lambda n=n, r=rounds, s=strings: fill_store(n, r, s))
        assert isinstance(store, FeedbackJoin) and store.stored == n
        kind = ("strings" if strings else "ints") + (", full + churn" if rounds > 1 else "")
        print(f"| {kind} | {n:,} | {cur / n:.1f} | {peak / n:.1f} | {store.nbytes() / n:.1f} |")
        if rounds > 1:
            verdict = "within" if cur / n <= BOUND else "OVER"
            print(
                f"\nFull store of {n:,} after churn: {cur / n:.1f} bytes per prediction, {verdict} the {BOUND}-byte bound.\n"
            )


if __name__ == "__main__":
    main()
