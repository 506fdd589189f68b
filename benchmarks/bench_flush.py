"""Cost of one reporter flush, and what a slow emitter does to predict latency.

Run: ``python benchmarks/bench_flush.py``

1. One flush (drain + resources + snapshot + 3 emitters: JSON lines to a file, console to
   /dev/null, in-memory), median of repeats, after 10,000 calls per flush.
2. Predict latency p50/p99 from a thread making calls while the reporter flushes every 0.2 s,
   with and without an emitter that sleeps 1 s in every emit, same run.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

import mlmon
from mlmon.emitters import ConsoleEmitter, JsonlEmitter
from mlmon.testing import InMemoryEmitter


class SlowEmitter:
    name = "slow"

    def emit(self, snapshot: Any) -> None:
        time.sleep(1.0)

    def close(self) -> None:
        pass


def flush_cost() -> None:
    with tempfile.TemporaryDirectory() as d, open(os.devnull, "w") as devnull:
        mon = mlmon.Monitor(
            "flush",
            emitters=[JsonlEmitter(os.path.join(d, "m.jsonl")), ConsoleEmitter(devnull), InMemoryEmitter()],
            flush_interval=3600,
            window=3600,
        )
        predict = mon.track(lambda x: x * 0.5)
        times = []
        for _ in range(30):
            for _i in range(10_000):
                predict(0.5)
            t0 = time.perf_counter()
            snap = mon.flush()
            times.append(time.perf_counter() - t0)
        print("| what | median | p90 | series in the snapshot |")
        print("|---|---:|---:|---:|")
        print(f"| one flush: drain 10,000 calls + resources + 3 emitters | "
              f"{statistics.median(times) * 1e3:.2f} ms | {np.quantile(times, 0.9) * 1e3:.2f} ms | {len(snap)} |")
        t0 = time.perf_counter()
        n = 200
        for _ in range(n):
            mon.snapshot()
        print(f"| snapshot() alone (no emit) | {(time.perf_counter() - t0) / n * 1e3:.2f} ms | | |")
        mon.close()


def predict_latency(with_slow: bool, seconds: float = 4.0) -> tuple[float, float, int]:
    emitters: list[Any] = [InMemoryEmitter()] + ([SlowEmitter()] if with_slow else [])
    mon = mlmon.Monitor("slowemit", emitters=emitters, flush_interval=0.2, window=10.0)
    predict = mon.track(lambda x: x * 0.5)
    lat = []
    end = time.monotonic() + seconds
    perf = time.perf_counter_ns
    while time.monotonic() < end:
        t0 = perf()
        predict(0.5)
        lat.append(perf() - t0)
    mon.close()
    a = np.array(lat) / 1e3
    return float(np.quantile(a, 0.5)), float(np.quantile(a, 0.99)), len(a)


def main() -> None:
    flush_cost()
    print()
    rows = {False: [], True: []}
    for _ in range(3):
        for slow in (False, True):
            rows[slow].append(predict_latency(slow))
    print("| emitters | predict p50 (µs) | predict p99 (µs) | calls measured |")
    print("|---|---:|---:|---:|")
    for slow in (False, True):
        p50 = statistics.median(r[0] for r in rows[slow])
        p99 = statistics.median(r[1] for r in rows[slow])
        n = statistics.median(r[2] for r in rows[slow])
        print(f"| {'in-memory + 1 s-slow emitter' if slow else 'in-memory only'} | {p50:.2f} | {p99:.2f} | {n:,.0f} |")
    base = statistics.median(r[1] for r in rows[False])
    slow = statistics.median(r[1] for r in rows[True])
    print(f"\np99 ratio with the slow emitter / without: {slow / base:.2f}")


if __name__ == "__main__":
    main()
