"""Per-call overhead of ``@mon.track`` against a bare call and prometheus_client, same run.

Run: ``python benchmarks/bench_overhead.py [--calls 200000] [--repeats 15]``

Overhead = (time per wrapped call) - (time per bare call), median of interleaved repeats, so
machine noise hits every contender alike. Ratios are against prometheus_client's
``Histogram.time()`` used as a decorator (a Histogram with the default buckets).

Drains count: each mlmon contender's timed loop ends with its monitor's ``snapshot()``, which
drains what the loop buffered, so the work mlmon defers to the drain is charged to the contender
that caused it (not to whichever contender runs when the background thread wakes up).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import mlmon


def _nothing() -> None:
    pass


def per_call_ns(fn: Callable[[float], Any], calls: int, drain: Callable[[], Any] = _nothing) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn(0.5)
    drain()
    return (time.perf_counter_ns() - t0) / calls


def per_call_ctx_ns(mon: mlmon.Monitor, calls: int) -> float:
    track = mon.track
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        with track() as call:
            call.outputs(0.25)
    mon.snapshot()
    return (time.perf_counter_ns() - t0) / calls


def per_call_async_ns(fn: Callable[[float], Any], calls: int, drain: Callable[[], Any] = _nothing) -> float:
    async def loop() -> float:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            await fn(0.5)
        drain()
        return (time.perf_counter_ns() - t0) / calls

    return asyncio.run(loop())


def two_threads_ns(fn: Callable[[float], Any], calls: int, drain: Callable[[], Any] = _nothing) -> float:
    """Wall time per call with two threads each making ``calls // 2`` calls."""
    half = calls // 2

    def work() -> None:
        for _ in range(half):
            fn(0.5)

    threads = [threading.Thread(target=work) for _ in range(2)]
    t0 = time.perf_counter_ns()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drain()
    return (time.perf_counter_ns() - t0) / (2 * half)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    hist = Histogram("bench_latency_seconds", "bench", registry=registry)
    # One monitor per contender, as in a real service: the ``with`` form's joinable ids fill the
    # feedback store, whose upkeep must not be charged to the other forms.
    def new_monitor(name: str) -> mlmon.Monitor:
        m = mlmon.Monitor(name, flush_interval=1.0, window=60.0, latency_budget=0.25)
        monitors.append(m)
        return m

    monitors: list[mlmon.Monitor] = []
    mon_sync, mon_noout, mon_ctx = new_monitor("sync"), new_monitor("noout"), new_monitor("ctx")
    mon_async, mon_threads = new_monitor("async"), new_monitor("threads")

    def f(x: float) -> float:
        return x * 0.5

    default_mon = mlmon.configure(model="bench_default", flush_interval=1.0, window=60.0)
    lazy_f = mlmon.track(f)

    import numpy as np

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(20)]
    ref = mlmon.Reference.from_data(rng.normal(size=(5000, 20)), feature_names=names)
    fmon = mlmon.Monitor("bench_features", reference=ref, flush_interval=1.0, window=60.0)
    row = rng.normal(size=20)

    def g(x: Any) -> float:
        return 0.5

    def per_call_row_ns(fn: Callable[[Any], Any], calls: int, drain: Callable[[], Any] = _nothing) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn(row)
        drain()
        return (time.perf_counter_ns() - t0) / calls

    async def af(x: float) -> float:
        return x * 0.5

    sync_f, noout_f = mon_sync.track(f), mon_noout.track(outputs=False)(f)
    async_f, threads_f = mon_async.track(af), mon_threads.track(f)
    row_f = fmon.track(features="x")(g)
    contenders: dict[str, Callable[[], float]] = {
        "bare call": lambda: per_call_ns(f, args.calls),
        "prometheus_client Histogram.time()": lambda: per_call_ns(hist.time()(f), args.calls),
        "mlmon @track (outputs recorded)": lambda: per_call_ns(sync_f, args.calls, mon_sync.snapshot),
        "mlmon @track(outputs=False)": lambda: per_call_ns(noout_f, args.calls, mon_noout.snapshot),
        "mlmon with track() as call": lambda: per_call_ctx_ns(mon_ctx, args.calls),
        "mlmon @mlmon.track (default monitor)": lambda: per_call_ns(lazy_f, args.calls, default_mon.snapshot),
        "bare async call": lambda: per_call_async_ns(af, args.calls),
        "prometheus_client async": lambda: per_call_async_ns(hist.time()(af), args.calls),
        "mlmon @track async": lambda: per_call_async_ns(async_f, args.calls, mon_async.snapshot),
        "bare, one row of 20 features": lambda: per_call_row_ns(g, args.calls // 4),
        "prometheus_client, one row": lambda: per_call_row_ns(hist.time()(g), args.calls // 4),
        "mlmon @track(features=...), 20 features vs a reference": lambda: per_call_row_ns(row_f, args.calls // 4, fmon.snapshot),
        "bare, 2 threads": lambda: two_threads_ns(f, args.calls),
        "prometheus_client, 2 threads": lambda: two_threads_ns(hist.time()(f), args.calls),
        "mlmon @track, 2 threads": lambda: two_threads_ns(threads_f, args.calls, mon_threads.snapshot),
    }
    results: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():  # interleaved: noise hits all alike
            results[name].append(run())
    med = {k: statistics.median(v) for k, v in results.items()}

    def overhead(name: str, bare: str) -> float:
        return med[name] - med[bare]

    rows = [
        ("sync", "bare call", ["prometheus_client Histogram.time()", "mlmon @track (outputs recorded)",
                               "mlmon @track(outputs=False)", "mlmon with track() as call",
                               "mlmon @mlmon.track (default monitor)"]),
        ("async", "bare async call", ["prometheus_client async", "mlmon @track async"]),
        ("features", "bare, one row of 20 features", ["prometheus_client, one row",
                                                      "mlmon @track(features=...), 20 features vs a reference"]),
        ("2 threads", "bare, 2 threads", ["prometheus_client, 2 threads", "mlmon @track, 2 threads"]),
    ]
    print(f"Python {sys.version.split()[0]}, {args.calls:,} calls x {args.repeats} interleaved repeats, medians\n")
    print("| form | contender | ns/call | overhead ns | overhead vs prometheus_client |")
    print("|---|---|---:|---:|---:|")
    for form, bare, names in rows:
        prom = overhead(names[0], bare)
        print(f"| {form} | {bare} | {med[bare]:.0f} | – | – |")
        for name in names:
            ov = overhead(name, bare)
            print(f"| {form} | {name} | {med[name]:.0f} | {ov:.0f} | {ov / prom:.2f}x |")
    monitors.append(fmon)
    snaps = [m.snapshot() for m in monitors]
    calls = sum(s.get("mlmon_calls_total") or 0 for s in snaps)
    dropped = sum(s.total("mlmon_dropped_total") for s in snaps)
    print(f"\nmlmon counted {calls:,.0f} calls, dropped {dropped:.0f}; each mlmon timing includes its monitor's snapshot()")
    for m in monitors:
        m.close()


if __name__ == "__main__":
    main()
