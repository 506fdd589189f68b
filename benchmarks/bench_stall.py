"""Stalls and memory with feature capture: batches of 1000x20 and 100x20 floats per call.

Run: ``python benchmarks/bench_stall.py [--part latency|drain|threads|all]``

1. ``latency``: ``predict(X)`` scores a float batch (``1 / (1 + exp(-X @ w))``), decorated with
   ``@mon.track(features="X")`` against a 20-feature reference, the background flush running
   every second. The decorated and the undecorated function are called alternately (the order
   swapped at every step) in the same loop, so machine noise and the reporter's work hit both
   alike; latency p50/p99/p99.9/max per side, over ``--rounds`` rounds with a fresh monitor
   each (medians of the rounds; max is the largest of all rounds). A last case tracks the
   1000x20 predict without features (``@mon.track``: 1,000 scores a call, outputs only).
2. ``drain``: peak memory of a drain against the bytes it drains. A fresh subprocess per case
   fills the buffers while holding the drain lock (so nothing drains early), resets the
   kernel's peak-RSS mark (``/proc/self/clear_refs``), releases the lock and calls
   ``snapshot()``; the peak (``VmHWM``) is read after it returns.
3. ``threads``: RSS growth while 4 threads send 100x20 batches for ``--seconds`` seconds
   (defaults of ``Monitor``: 64 MiB byte cap, 10 s flush interval), in a fresh subprocess.
4. ``cap``: what the buffers hold at worst: 300,000 calls of 100x20 made while holding the drain
   lock, RSS growth when the byte cap is reached and at the end (past it, each call still leaves
   a small record up to ``max_buffered_calls``).
5. ``gil``: how long predict calls wait while the background thread works. 1000x20 calls at
   500/s in a fresh subprocess, first undecorated with no monitor, then decorated (flush every
   second): each call's time off the CPU (its wall time minus its thread's CPU time: waiting
   for the GIL, or for a core), and how often the reporter paused for a call in flight
   (``mlmon._handover``).

6. ``one-row``: one-row calls with features at a service's pace (a call, and every tenth call
   a 0.2 ms sleep): the latency of each decorated call, up to p99.99.
7. ``python``: a pure-Python predict of about 1 ms (it never lets go of the GIL) with 1000x20
   features at 300 calls/s: latency with the drain pausing for calls in flight, without the
   pauses, and with the switch interval left alone (``--runs`` interleaved runs).
8. ``ablation`` (not part of ``all``): what the 1000x20 tail is made of. Blocks mode, ``--runs``
   interleaved runs of three variants: the decorated call; the same with the drain's reduction
   replaced by giving the copies back (the call's own work and the reporter's wake-ups remain);
   ``@mon.track`` without features.

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


def _paced(calls: int, rate: float, step: Callable[[int], None]) -> None:
    """``step(i)`` for ``i < calls``, started ``rate`` times a second (0: back to back)."""
    period = 1.0 / rate if rate else 0.0
    clock = time.perf_counter
    next_t = clock()
    for i in range(calls):
        step(i)
        if period:
            next_t += period
            delay = next_t - clock()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = clock()  # late: no catch-up burst


class _Case:
    """One batch shape: the batches, the model, the reference."""

    def __init__(self, rows: int, ref: mlmon.Reference, features: bool = True) -> None:
        rng = np.random.default_rng(rows)
        w = rng.normal(size=FEATURES)
        self.rows = rows
        self.ref = ref
        self.features = features
        self.batches = [rng.normal(size=(rows, FEATURES)) for _ in range(8)]

        def predict(X: Any) -> Any:
            return 1.0 / (1.0 + np.exp(-(X @ w)))

        self.predict = predict

    def monitor(self) -> tuple[mlmon.Monitor, Callable[[Any], Any]]:
        mon = mlmon.Monitor(f"stall_{self.rows}", reference=self.ref, flush_interval=1.0, window=60.0)
        tracked = (mon.track(features="X") if self.features else mon.track())(self.predict)
        for i in range(50):  # warm-up: first-call paths, numpy caches, the reporter thread
            tracked(self.batches[i & 7])
            self.predict(self.batches[i & 7])
        mon.snapshot()
        return mon, tracked


def _finish(mon: mlmon.Monitor, info: dict[str, list[float]]) -> None:
    t0 = time.perf_counter_ns()
    snap = mon.snapshot()
    info["final_snapshot_ms"].append((time.perf_counter_ns() - t0) / 1e6)
    info["calls"].append(snap.get("mlmon_calls_total") or 0.0)
    info["dropped_details"].append(snap.get("mlmon_dropped_total", buffer="details") or 0.0)
    info["dropped"].append(snap.total("mlmon_dropped_total"))
    mon.close()


def alternate(case: _Case, rounds: int, calls: int, rate: float) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Decorated and undecorated calls alternate in one loop (order swapped at every step),
    a fresh monitor per round; all samples of all rounds."""
    with_ns = np.empty(rounds * calls, dtype=np.int64)
    without_ns = np.empty(rounds * calls, dtype=np.int64)
    info: dict[str, list[float]] = {k: [] for k in ("final_snapshot_ms", "calls", "dropped_details", "dropped")}
    perf = time.perf_counter_ns
    predict, batches = case.predict, case.batches
    for r in range(rounds):
        mon, tracked = case.monitor()
        base = r * calls

        def step(i: int, base: int = base, tracked: Callable[[Any], Any] = tracked) -> None:
            X = batches[i & 7]
            if i & 1:
                t0 = perf()
                predict(X)
                t1 = perf()
                tracked(X)
                t2 = perf()
                without_ns[base + i], with_ns[base + i] = t1 - t0, t2 - t1
            else:
                t0 = perf()
                tracked(X)
                t1 = perf()
                predict(X)
                t2 = perf()
                with_ns[base + i], without_ns[base + i] = t1 - t0, t2 - t1

        _paced(calls, rate, step)
        _finish(mon, info)
    return with_ns, without_ns, info


def blocks(case: _Case, rounds: int, calls: int, rate: float) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Alternating blocks: decorated calls with the monitor running, then undecorated calls
    with no monitor in the process (order swapped every round), so the reporter's work on
    the other thread counts against the decorated side only."""
    with_ns = np.empty(rounds * calls, dtype=np.int64)
    without_ns = np.empty(rounds * calls, dtype=np.int64)
    info: dict[str, list[float]] = {k: [] for k in ("final_snapshot_ms", "calls", "dropped_details", "dropped")}
    perf = time.perf_counter_ns
    batches = case.batches

    def block(fn: Callable[[Any], Any], out: np.ndarray, base: int) -> None:
        def step(i: int) -> None:
            X = batches[i & 7]
            t0 = perf()
            fn(X)
            out[base + i] = perf() - t0

        _paced(calls, rate, step)

    for r in range(rounds):
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):
            if side == 0:
                mon, tracked = case.monitor()
                block(tracked, with_ns, r * calls)
                _finish(mon, info)
            else:
                for i in range(50):
                    case.predict(batches[i & 7])
                block(case.predict, without_ns, r * calls)
    return with_ns, without_ns, info


def latency(rounds: int, shapes: list[tuple[int, int, float, bool]]) -> None:
    ref = _reference()
    print(f"Python {sys.version.split()[0]}; {rounds} rounds, a fresh monitor per round (flush every 1 s); "
          "quantiles over the samples of all rounds\n")
    print("| batch | mode | calls/s per side | calls per side | side | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|")
    notes = []
    modes: dict[str, Callable[[_Case, int, int, float], tuple[np.ndarray, np.ndarray, dict[str, list[float]]]]] = {
        "alternate": alternate,
        "blocks": blocks,
    }
    for rows, calls, rate, features in shapes:
        case = _Case(rows, ref, features)
        for mode, run in modes.items():
            if mode == "blocks" and not rate:
                continue  # flooding: only the alternate mode
            if mode == "alternate" and not features:
                continue  # outputs only: the blocks mode
            with_ns, without_ns, info = run(case, rounds, calls, rate)
            q = {"with": _quantiles(with_ns), "without": _quantiles(without_ns)}
            label = {"with": '@mon.track(features="X")' if features else "@mon.track (outputs only)",
                     "without": "undecorated" + (", no monitor" if mode == "blocks" else "")}
            shown_rate = f"{rate:,.0f}" if rate else "flood"
            for side in ("without", "with"):
                m = q[side]
                print(f"| {rows}×{FEATURES} | {mode} | {shown_rate} | {rounds * calls:,} | {label[side]} | "
                      f"{m['p50']:.1f} | {m['p99']:.1f} | {m['p99.9']:.1f} | {m['max']:.0f} |")
            ratio = {k: q["with"][k] / q["without"][k] for k in ("p50", "p99", "p99.9", "max")}
            print(f"| {rows}×{FEATURES} | {mode} | {shown_rate} | | **ratio** | {ratio['p50']:.2f}× | "
                  f"{ratio['p99']:.2f}× | {ratio['p99.9']:.2f}× | {ratio['max']:.2f}× |")
            notes.append(
                f"{rows}×{FEATURES} {mode} {shown_rate}{'' if features else ' outputs only'}: calls counted {sum(info['calls']):,.0f}, details dropped "
                f"{sum(info['dropped_details']):,.0f} (all buffers {sum(info['dropped']):,.0f}); "
                f"final snapshot() median {statistics.median(info['final_snapshot_ms']):.1f} ms"
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

_CHILD_CAP = _CHILD_COMMON + textwrap.dedent(
    """
    calls = int(sys.argv[1])
    mon = mlmon.Monitor("capmem", flush_interval=3600.0, window=3600.0)  # default caps
    tracked = mon.track(features="X")(predict)
    X = rng.normal(size=(100, 20))
    tracked(X)
    mon.snapshot()
    gc.collect()
    rss0 = status("VmRSS")
    b = mon._buffers
    seen = {}
    with mon._drain_lock:
        for i in range(calls):
            tracked(X)
            if "bytes" not in seen and b.bytes + X.nbytes > b.max_bytes:
                seen["bytes"] = (i + 1, status("VmRSS") - rss0)
        seen["calls"] = (calls, status("VmRSS") - rss0)
        records = len(b.gen)
    snap = mon.snapshot()
    print(json.dumps({"seen": seen, "records": records, "max_bytes": b.max_bytes,
                      "dropped": snap.total("mlmon_dropped_total")}))
    mon.close()
    """
)


_CHILD_GIL = _CHILD_COMMON + textwrap.dedent(
    """
    calls = int(sys.argv[1])
    from mlmon import _handover

    class CountingEvent(threading.Event):  # the drain's pauses for calls in flight
        waits = []

        def wait(self, timeout=None):
            got = super().wait(timeout)
            self.waits.append(got)
            return got

    _handover._ended = CountingEvent()
    batches = [rng.normal(size=(1000, 20)) for _ in range(8)]
    perf, cpu = time.perf_counter_ns, time.thread_time_ns

    def run(fn):
        off = np.empty(calls, dtype=np.int64)
        next_t = time.perf_counter()
        for i in range(calls):
            t0, c0 = perf(), cpu()
            fn(batches[i & 7])
            off[i] = (perf() - t0) - (cpu() - c0)
            next_t += 0.002
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.perf_counter()
        return off

    for i in range(50):
        predict(batches[i & 7])
    plain = run(predict)
    mon = mlmon.Monitor("gilmon", reference=ref, flush_interval=1.0, window=60.0)
    tracked = mon.track(features="X")(predict)
    for i in range(50):
        tracked(batches[i & 7])
    mon.snapshot()
    reporter = [t for t in threading.enumerate() if t.name.startswith("mlmon-reporter")][0]
    CountingEvent.waits.clear()
    r0 = time.clock_gettime_ns(time.pthread_getcpuclockid(reporter.ident))
    monitored = run(tracked)
    r1 = time.clock_gettime_ns(time.pthread_getcpuclockid(reporter.ident))
    mon.close()
    q = lambda a: [float(np.quantile(a / 1e3, p)) for p in (0.5, 0.99, 0.999)] + [float(a.max() / 1e3)]
    print(json.dumps({
        "plain": q(plain), "monitored": q(monitored),
        "pauses": len(CountingEvent.waits), "ran_out": CountingEvent.waits.count(False),
        "reporter_us_per_call": (r1 - r0) / 1e3 / calls, "switch": _handover.SWITCH_S,
    }))
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
    print("| threads | batch | seconds | calls | RSS at start | RSS at end | growth | peak growth (VmHWM) | "
          "details dropped |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {nthreads} | 100×{FEATURES} | {seconds:.0f} | {r['calls_made']:,} | {r['rss0'] / MIB:.1f} MiB | "
          f"{r['rss1'] / MIB:.1f} MiB | {(r['rss1'] - r['rss0']) / MIB:+.1f} MiB | "
          f"{(r['hwm'] - r['rss0']) / MIB:+.1f} MiB | {r['dropped_details']:,.0f} |")
    print(f"\ncounted {r['counted']:,.0f} calls, {r['rows']:,.0f} rows; RSS after the final snapshot() "
          f"{r['rss2'] / MIB:.1f} MiB")


def cap_memory(calls: int) -> None:
    r = _child(_CHILD_CAP, calls)
    (n_b, g_b), (n_c, g_c) = r["seen"]["bytes"], r["seen"]["calls"]
    print("| 100×20 calls buffered (drain lock held) | RSS growth | records buffered |")
    print("|---|---:|---:|")
    print(f"| {n_b:,} (byte cap {r['max_bytes'] / MIB:.0f} MiB reached) | {g_b / MIB:+.1f} MiB | {n_b:,} |")
    print(f"| {n_c:,} | {g_c / MIB:+.1f} MiB | {r['records']:,} |")
    per = (g_c - g_b) / max(1, r["records"] - n_b)
    print(f"\nabout {per:.0f} bytes per record past the byte cap; dropped {r['dropped']:,.0f}")


def gil_waits(calls: int) -> None:
    r = _child(_CHILD_GIL, calls)
    print(f"1000×{FEATURES} at 500 calls/s, {calls:,} calls a side, in a fresh process: the time a call spends "
          "off the CPU (wall time minus its thread's CPU time: waiting for the GIL, or for a core)\n")
    print("| side | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) |")
    print("|---|---:|---:|---:|---:|")
    for label, key in (("undecorated, no monitor", "plain"), ('@mon.track(features="X"), monitor running', "monitored")):
        q = r[key]
        print(f"| {label} | {q[0]:.1f} | {q[1]:.1f} | {q[2]:.1f} | {q[3]:.0f} |")
    print(f"\nthe reporter thread: {r['reporter_us_per_call']:.0f} µs of CPU per call; it paused {r['pauses']:,} times "
          f"for a call in flight ({r['ran_out']:,} pauses ran out); switch interval during its work "
          f"{r['switch'] * 1e6:.0f} µs")


def one_row(calls: int) -> None:
    """One-row calls with features at a service's pace: a call, and every tenth call a 0.2 ms
    sleep (about 30,000 calls a second); the latency of each decorated call."""
    ref = _reference()
    mon = mlmon.Monitor("stall_one_row", reference=ref, flush_interval=60.0, window=60.0)
    tracked = mon.track(features="x")(lambda x: 0.5)
    x = np.ones(FEATURES)
    for _ in range(200):
        tracked(x)
    mon.snapshot()
    ns = np.empty(calls, dtype=np.int64)
    perf = time.perf_counter_ns
    for i in range(calls):
        t0 = perf()
        tracked(x)
        ns[i] = perf() - t0
        if i % 10 == 0:
            time.sleep(0.0002)
    snap = mon.snapshot()
    mon.close()
    us = ns / 1e3
    q = [float(np.quantile(us, p)) for p in (0.5, 0.99, 0.999, 0.9999)]
    print(f"one row of {FEATURES} features, {calls:,} calls at a service's pace:\n")
    print("| p50 (µs) | p99 (µs) | p99.9 (µs) | p99.99 (µs) | max (µs) | calls over 100 µs |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {q[0]:.2f} | {q[1]:.1f} | {q[2]:.1f} | {q[3]:.1f} | {us.max():.0f} | {int((us > 100).sum()):,} |")
    print(f"\ncalls counted {snap.get('mlmon_calls_total'):,.0f}")


def python_heavy(runs: int, calls: int, rate: float) -> None:
    """A predict that is pure Python for about 1 ms (it never lets go of the GIL) with 1000x20
    features, at ``rate`` calls/s, flush every second: the drain's pauses for calls in flight
    against none (``mlmon._handover.PAUSE_S`` set to 0 for that variant), and the switch
    interval left alone; ``runs`` interleaved runs, a fresh monitor each."""
    from mlmon import _handover

    ref = _reference()
    rng = np.random.default_rng(7)
    batches = [rng.normal(size=(1000, FEATURES)) for _ in range(8)]

    def predict(X: Any) -> Any:
        s = 0
        for i in range(20_000):
            s += i * i
        return np.full(len(X), 0.5)

    perf = time.perf_counter_ns

    def run(fn: Callable[[Any], Any]) -> np.ndarray:
        ns = np.empty(calls, dtype=np.int64)

        def step(i: int) -> None:
            t0 = perf()
            fn(batches[i & 7])
            ns[i] = perf() - t0

        _paced(calls, rate, step)
        return ns

    variants = {"undecorated, no monitor": None, "@mon.track(features=\"X\")": (_handover.PAUSE_S, True),
                "the same, no pauses": (0.0, True), "the same, switch interval left alone": (_handover.PAUSE_S, False)}
    got: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    saved = _handover.PAUSE_S
    try:
        for _ in range(runs):
            for label, v in variants.items():
                if v is None:
                    for i in range(20):
                        predict(batches[i & 7])
                    got[label].append(_quantiles(run(predict)))
                    continue
                _handover.PAUSE_S = v[0]
                mlmon.set_background_switch_interval(_handover.SWITCH_S if v[1] else None)
                mon = mlmon.Monitor("stall_python", reference=ref, flush_interval=1.0, window=60.0)
                tracked = mon.track(features="X")(predict)
                for i in range(20):
                    tracked(batches[i & 7])
                got[label].append(_quantiles(run(tracked)))
                mon.close()
    finally:
        _handover.PAUSE_S = saved
        mlmon.set_background_switch_interval(_handover.SWITCH_S)
    print(f"pure-Python predict (about 1 ms) with 1000×{FEATURES} features, {rate:,.0f} calls/s, {calls:,} calls "
          f"per variant per run, {runs} interleaved runs; medians of the runs:\n")
    print("| variant | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | p99.9 per run (µs) |")
    print("|---|---:|---:|---:|---:|---|")
    for label, qs in got.items():
        med = {k: statistics.median(q[k] for q in qs) for k in ("p50", "p99", "p99.9", "max")}
        per = ", ".join(f"{q['p99.9']:.0f}" for q in qs)
        print(f"| {label} | {med['p50']:.0f} | {med['p99']:.0f} | {med['p99.9']:.0f} | {med['max']:.0f} | {per} |")


def ablation(runs: int, rounds: int, calls: int, rate: float) -> None:
    """What the 1000x20 tail is made of: blocks mode, three variants interleaved ``runs`` times.
    "nothing reduced" replaces the drain's reduction with giving the copies back, so the call's
    own work (the copy of X, the record) and the reporter's wake-ups remain, its reduction not."""
    from mlmon.buffers import POOL
    from mlmon.drain import Drain

    ref = _reference()
    real_reduce = Drain.reduce

    def give_back(self: Drain, dts: Any, nums: Any, objs: Any, errs: Any, gen: Any, now: float) -> None:
        for rec in gen:
            if rec[3] is not None:
                POOL.release(rec[3])

    variants: list[tuple[str, bool, bool]] = [
        ('@mon.track(features="X")', True, True),
        ('@mon.track(features="X"), nothing reduced', True, False),
        ("@mon.track (outputs only)", False, True),
    ]
    ratios: dict[str, list[float]] = {v[0]: [] for v in variants}
    print(f"1000×{FEATURES}, blocks mode, {rate:,.0f} calls/s, {rounds} rounds of {calls:,} calls per side per run; "
          "p99.9 with / without, per run:\n")
    for _ in range(runs):
        for label, features, reduce in variants:
            Drain.reduce = real_reduce if reduce else give_back  # type: ignore[method-assign]
            try:
                w, wo, _info = blocks(_Case(1000, ref, features), rounds, calls, rate)
            finally:
                Drain.reduce = real_reduce  # type: ignore[method-assign]
            ratios[label].append(_quantiles(w)["p99.9"] / _quantiles(wo)["p99.9"])
    print("| variant | p99.9 ratio per run | median |")
    print("|---|---|---:|")
    for label, rs in ratios.items():
        print(f"| {label} | {', '.join(f'{r:.2f}×' for r in rs)} | {statistics.median(rs):.2f}× |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("latency", "drain", "threads", "cap", "gil", "one-row", "python", "ablation", "all"), default="all")
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs of the ablation part")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls-1000", type=int, default=2_000, help="calls per side per round, 1000x20")
    ap.add_argument("--rate-1000", type=float, default=500.0, help="1000x20 calls/s per side (0: back to back)")
    ap.add_argument("--calls-100", type=int, default=8_000, help="calls per side per round, 100x20")
    ap.add_argument("--rate-100", type=float, default=2000.0, help="100x20 calls/s per side (0: back to back)")
    ap.add_argument("--flood", action="store_true", help="also back-to-back calls (alternate mode only)")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of the threads part")
    args = ap.parse_args()
    shapes = [(1000, args.calls_1000, args.rate_1000, True), (100, args.calls_100, args.rate_100, True),
              (1000, args.calls_1000, args.rate_1000, False)]
    if args.flood:
        shapes += [(1000, args.calls_1000 * 5, 0.0, True), (100, args.calls_100 * 5, 0.0, True)]
    parts: dict[str, Callable[[], None]] = {
        "latency": lambda: latency(args.rounds, shapes),
        "drain": lambda: drain_memory([(1000, 8), (1000, 32), (1000, 60), (100, 32)]),
        "threads": lambda: threads_memory(args.seconds, 4),
        "cap": lambda: cap_memory(300_000),
        "gil": lambda: gil_waits(2_500),
        "python": lambda: python_heavy(args.runs, 1_500, 300.0),
        "one-row": lambda: one_row(30_000),
        "ablation": lambda: ablation(args.runs, args.rounds, args.calls_1000, args.rate_1000),
    }
    for name, run in parts.items():
        if args.part == name or (args.part == "all" and name != "ablation"):
            run()
            print()


if __name__ == "__main__":
    main()
