"""Stalls and memory with feature capture: batches of 1000x20 and 100x20 floats per call.

Run: ``python benchmarks/bench_stall.py [--part latency|drain|threads|all]``

1. ``latency``: ``predict(X)`` scores a float batch (``1 / (1 + exp(-X @ w))``), decorated with
   ``@mon.track(features="X")`` against a 20-feature reference, the background flush running
   every second. The decorated and the undecorated function are called alternately (the order
   swapped at every step) in the same loop, so machine noise and the reporter's work hit both
   alike; latency p50/p99/p99.9/max per side, over ``--rounds`` rounds with a fresh monitor
   each (medians of the rounds; max is the largest of all rounds).
2. ``drain``: peak memory of a drain against the bytes it drains. A fresh subprocess per case
   fills the buffers while holding the drain lock (so nothing drains early), resets the
   kernel's peak-RSS mark (``/proc/self/clear_refs``), releases the lock and calls
   ``snapshot()``; the peak (``VmHWM``) is read after it returns.
3. ``threads``: RSS growth while 4 threads send 100x20 batches for ``--seconds`` seconds
   (defaults of ``Monitor``: 64 MiB byte cap, 10 s flush interval), in a fresh subprocess.

Linux only (reads ``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import mlmon

FEATURES = 20
MIB = 1 << 20


def _reference() -> mlmon.Reference:
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(FEATURES)]
    return mlmon.Reference.from_data(rng.normal(size=(5000, FEATURES)), feature_names=names)


def _quantiles(ns: np.ndarray) -> dict[str, float]:
    us = ns / 1e3
    return {
        "p50": float(np.quantile(us, 0.5)),
        "p99": float(np.quantile(us, 0.99)),
        "p99.9": float(np.quantile(us, 0.999)),
        "max": float(us.max()),
    }


def latency_round(rows: int, calls: int, ref: mlmon.Reference) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """One round: ``calls`` decorated and ``calls`` undecorated calls, alternating."""
    rng = np.random.default_rng(rows)
    w = rng.normal(size=FEATURES)
    batches = [rng.normal(size=(rows, FEATURES)) for _ in range(8)]

    def predict(X: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-(X @ w)))

    mon = mlmon.Monitor(f"stall_{rows}", reference=ref, flush_interval=1.0, window=60.0)
    tracked = mon.track(features="X")(predict)
    for i in range(50):  # warm-up: first-call paths, numpy caches, the reporter thread
        tracked(batches[i % 8])
        predict(batches[i % 8])
    mon.snapshot()
    with_ns = np.empty(calls, dtype=np.int64)
    without_ns = np.empty(calls, dtype=np.int64)
    perf = time.perf_counter_ns
    t_start = time.perf_counter()
    for i in range(calls):
        X = batches[i & 7]
        if i & 1:
            t0 = perf()
            predict(X)
            t1 = perf()
            tracked(X)
            t2 = perf()
            without_ns[i], with_ns[i] = t1 - t0, t2 - t1
        else:
            t0 = perf()
            tracked(X)
            t1 = perf()
            predict(X)
            t2 = perf()
            with_ns[i], without_ns[i] = t1 - t0, t2 - t1
    loop_s = time.perf_counter() - t_start
    t0 = perf()
    snap = mon.snapshot()
    final_ms = (perf() - t0) / 1e6
    info = {
        "loop_s": loop_s,
        "final_snapshot_ms": final_ms,
        "calls": snap.get("mlmon_calls_total") or 0.0,
        "dropped_details": snap.get("mlmon_dropped_total", buffer="details") or 0.0,
        "dropped": snap.total("mlmon_dropped_total"),
    }
    mon.close()
    return _quantiles(with_ns), _quantiles(without_ns), info


def latency(rounds: int, calls_1000: int, calls_100: int) -> None:
    ref = _reference()
    print(f"Python {sys.version.split()[0]}; decorated and undecorated calls alternate; "
          f"{rounds} rounds, medians of the rounds (max: largest of all rounds)\n")
    print("| batch | calls per side per round | side | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    notes = []
    for rows, calls in ((1000, calls_1000), (100, calls_100)):
        res: list[tuple[dict[str, float], dict[str, float], dict[str, float]]] = []
        for _ in range(rounds):
            res.append(latency_round(rows, calls, ref))
        med: dict[str, dict[str, float]] = {}
        for side, idx in (("with", 0), ("without", 1)):
            med[side] = {k: statistics.median(r[idx][k] for r in res) for k in ("p50", "p99", "p99.9")}  # type: ignore[literal-required]
            med[side]["max"] = max(r[idx]["max"] for r in res)  # type: ignore[literal-required]
        label = {"with": '@mon.track(features="X")', "without": "undecorated"}
        for side in ("without", "with"):
            m = med[side]
            print(f"| {rows}×{FEATURES} | {calls:,} | {label[side]} | {m['p50']:.1f} | {m['p99']:.1f} | "
                  f"{m['p99.9']:.1f} | {m['max']:.0f} |")
        ratio = {k: med["with"][k] / med["without"][k] for k in ("p50", "p99", "p99.9", "max")}
        print(f"| {rows}×{FEATURES} | | ratio with / without | {ratio['p50']:.2f}× | {ratio['p99']:.2f}× | "
              f"{ratio['p99.9']:.2f}× | {ratio['max']:.2f}× |")
        infos = [r[2] for r in res]
        notes.append(
            f"{rows}×{FEATURES}: loop {statistics.median(i['loop_s'] for i in infos):.1f} s per round, "
            f"calls counted {statistics.median(i['calls'] for i in infos):,.0f} per round, "
            f"details dropped {statistics.median(i['dropped_details'] for i in infos):,.0f} per round "
            f"(all buffers: {statistics.median(i['dropped'] for i in infos):,.0f}), "
            f"final snapshot() {statistics.median(i['final_snapshot_ms'] for i in infos):.1f} ms"
        )
    print()
    for n in notes:
        print(n)


_CHILD_COMMON = textwrap.dedent(
    """
    import gc, json, re, sys, threading, time
    import numpy as np
    import mlmon

    def status(key):
        m = re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read())
        return int(m.group(1)) * 1024

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(20)]
    ref = mlmon.Reference.from_data(rng.normal(size=(5000, 20)), feature_names=names)
    w = rng.normal(size=20)

    def predict(X):
        return 1.0 / (1.0 + np.exp(-(X @ w)))
    """
)

_CHILD_DRAIN = _CHILD_COMMON + textwrap.dedent(
    """
    rows, mib = int(sys.argv[1]), int(sys.argv[2])
    mon = mlmon.Monitor("drainmem", reference=ref, flush_interval=3600.0, window=3600.0)
    tracked = mon.track(features="X")(predict)
    X = rng.normal(size=(rows, 20))
    for _ in range(20):  # warm-up, drained
        tracked(X)
    mon.snapshot()
    gc.collect()
    rss0 = status("VmRSS")
    calls = mib * (1 << 20) // X.nbytes
    with mon._drain_lock:
        for _ in range(calls):
            tracked(X)
        buffered = mon._buffers.bytes
        gc.collect()
        rss1 = status("VmRSS")
        reset_peak()
        hwm_reset = status("VmHWM")
    t0 = time.perf_counter()
    snap = mon.snapshot()
    seconds = time.perf_counter() - t0
    hwm = status("VmHWM")
    rss2 = status("VmRSS")
    print(json.dumps({
        "calls": calls, "buffered": buffered, "rss0": rss0, "rss1": rss1, "hwm_reset": hwm_reset,
        "hwm": hwm, "rss2": rss2, "seconds": seconds,
        "counted": snap.get("mlmon_calls_total"),
        "dropped": snap.total("mlmon_dropped_total"),
    }))
    mon.close()
    """
)

_CHILD_THREADS = _CHILD_COMMON + textwrap.dedent(
    """
    seconds, nthreads = float(sys.argv[1]), int(sys.argv[2])
    mon = mlmon.Monitor("threadsmem", reference=ref)  # defaults: 64 MiB byte cap, 10 s flush
    tracked = mon.track(features="X")(predict)
    batches = [rng.normal(size=(100, 20)) for _ in range(8)]
    for i in range(200):
        tracked(batches[i % 8])
    mon.snapshot()
    gc.collect()
    rss0 = status("VmRSS")
    reset_peak()
    stop = threading.Event()
    made = [0] * nthreads

    def work(k):
        n = 0
        while not stop.is_set():
            tracked(batches[n & 7])
            n += 1
        made[k] = n

    threads = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.25)
        samples.append(status("VmRSS"))
    stop.set()
    for t in threads:
        t.join()
    rss1 = status("VmRSS")
    hwm = status("VmHWM")
    snap = mon.snapshot()
    gc.collect()
    rss2 = status("VmRSS")
    print(json.dumps({
        "calls_made": sum(made), "rss0": rss0, "rss1": rss1, "hwm": hwm, "rss2": rss2,
        "max_sampled": max(samples), "counted": snap.get("mlmon_calls_total"),
        "rows": snap.get("mlmon_rows_total"),
        "dropped_details": snap.get("mlmon_dropped_total", buffer="details") or 0.0,
        "dropped": snap.total("mlmon_dropped_total"),
    }))
    mon.close()
    """
)


def _child(code: str, *args: object) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"child failed ({out.returncode}):\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def drain_memory(cases: list[tuple[int, int]]) -> None:
    print("| batch | MiB of features filled | calls | bytes buffered | RSS growth while filling | "
          "extra RSS during snapshot() | peak above the empty monitor ÷ buffered | snapshot() |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rows, mib in cases:
        r = _child(_CHILD_DRAIN, rows, mib)
        buffered = r["buffered"]
        fill = r["rss1"] - r["rss0"]
        extra = max(0, r["hwm"] - r["rss1"])
        peak = (max(r["hwm"], r["rss1"]) - r["rss0"]) / buffered
        print(f"| {rows}×{FEATURES} | {mib} | {r['calls']:,} | {buffered / MIB:.1f} MiB | {fill / MIB:.1f} MiB | "
              f"{extra / MIB:.1f} MiB ({extra / buffered:.2f}×) | {peak:.2f}× | {r['seconds'] * 1e3:.0f} ms |")
        if r["dropped"] or r["counted"] != r["calls"] + 20:
            print(f"  (counted {r['counted']:.0f}, dropped {r['dropped']:.0f})")


def threads_memory(seconds: float, nthreads: int) -> None:
    r = _child(_CHILD_THREADS, seconds, nthreads)
    print(f"| threads | batch | seconds | calls | RSS at start | RSS at end | growth | peak growth (VmHWM) | "
          f"details dropped |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {nthreads} | 100×{FEATURES} | {seconds:.0f} | {r['calls_made']:,} | {r['rss0'] / MIB:.1f} MiB | "
          f"{r['rss1'] / MIB:.1f} MiB | {(r['rss1'] - r['rss0']) / MIB:+.1f} MiB | "
          f"{(r['hwm'] - r['rss0']) / MIB:+.1f} MiB | {r['dropped_details']:,.0f} |")
    print(f"\ncounted {r['counted']:,.0f} calls, {r['rows']:,.0f} rows; RSS after the final snapshot() "
          f"{r['rss2'] / MIB:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("latency", "drain", "threads", "all"), default="all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls-1000", type=int, default=10_000, help="calls per side per round, 1000x20")
    ap.add_argument("--calls-100", type=int, default=40_000, help="calls per side per round, 100x20")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of the threads part")
    args = ap.parse_args()
    parts: dict[str, Callable[[], None]] = {
        "latency": lambda: latency(args.rounds, args.calls_1000, args.calls_100),
        "drain": lambda: drain_memory([(1000, 8), (1000, 32), (1000, 60), (100, 32)]),
        "threads": lambda: threads_memory(args.seconds, 4),
    }
    for name, run in parts.items():
        if args.part in (name, "all"):
            run()
            print()


if __name__ == "__main__":
    main()
