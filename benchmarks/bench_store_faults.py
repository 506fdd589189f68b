"""What a shared RedisStore costs on the predict path, with Redis healthy and with Redis failing.

Run: ``python benchmarks/bench_store_faults.py [--repeats 3] [--calls 50000] [--seconds 2]``

Starts its own ``redis-server`` (no persistence) on a free loopback port; prints a markdown table.

(a) Hot-path overhead: per call of a function decorated with ``@mon.track(ids="rid")`` (one
    string id per call, ``BinaryClassification`` task, background flushes every 0.2 s), with
    ``store=RedisStore(local redis)`` and with the in-process join (no store), ``--calls`` calls
    in a tight loop: the caller thread's CPU time (``time.thread_time_ns``: the hot path itself)
    and the wall time (which also holds what the background cycle takes from the caller through
    the GIL; in a tight loop the cycle has a lot of rows to handle). Contenders are interleaved
    in each repeat; the figure is the median over repeats. Goal: CPU ratio <= 1.05. A third row
    runs without a cycle during the run (``flush_interval=300``), so the calling thread drains
    every buffer itself (by design it reduces a full buffer inline): the worst case for the caller.

(b) Predict p99 under a Redis fault: a model that does about 12 µs of numpy work (a 32×64 by 64×64
    product), called in a
    tight loop for ``--seconds`` with every call timed, labels for the previous 200 ids logged
    every 200 calls, and the reporter's cycle (store sync: writes, joins, retries) running every
    0.2 s on the background thread. p99 of the call with the fault ÷ p99 with Redis healthy, for:
    Redis absent (nothing listens on the port), black-holed (a TCP listener that accepts and
    never answers: every sync runs into its ``deadline``), and killed mid-run (``SIGKILL`` to
    redis-server halfway). Median over repeats of the per-repeat ratio. Goal: <= 1.05.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_store import start_redis

import mlmon
from mlmon.stores import RedisStore

FLUSH = 0.2  # seconds between reporter cycles (store syncs)
LABEL_EVERY = 200
GOAL = 1.05


class Blackhole:
    """A loopback TCP listener that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(self.sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for conn in self.accepted:
            with contextlib.suppress(OSError):
                conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def monitor(name: str, url: str | None, flush: float = FLUSH) -> mlmon.Monitor:
    store = None if url is None else RedisStore(url, deadline=1.0, retry_for=30.0)
    return mlmon.Monitor(
        name,
        task=mlmon.BinaryClassification(),
        store=store,
        flush_interval=flush,
        close_timeout=3.0,
    )


# --------------------------------------------------------------------------- (a) overhead


def per_call_ns(mon: mlmon.Monitor, calls: int, start: int) -> tuple[float, float]:
    """(wall ns, caller-thread CPU ns) per call."""
    predict = mon.track(ids="rid")(lambda x, rid: x)
    ids = [f"req-{i}" for i in range(start, start + calls)]
    t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for rid in ids:
        predict(0.7, rid)
    return (time.perf_counter_ns() - t0) / calls, (time.thread_time_ns() - c0) / calls


def overhead(url: str, calls: int, repeats: int) -> dict[str, tuple[float, float]]:
    """``{"store"|"local": (median wall ns, median caller CPU ns) per call}``."""
    kinds = ("store", "local", "store_inline", "local_inline")
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for r in range(repeats):
        mons = {
            "store": monitor(f"ovh_store_{r}", url),
            "local": monitor(f"ovh_local_{r}", None),
            # no cycle during the run: the caller drains every buffer itself (the worst case)
            "store_inline": monitor(f"ovh_store_inline_{r}", url, flush=300.0),
            "local_inline": monitor(f"ovh_local_inline_{r}", None, flush=300.0),
        }
        try:
            for mon in mons.values():
                per_call_ns(mon, 2000, 0)
                mon.flush()  # warm up: the first sync connects
            order = list(kinds) if r % 2 == 0 else list(kinds)[::-1]
            for kind in order:
                runs[kind].append(per_call_ns(mons[kind], calls, 1_000_000 * (r + 1)))
        finally:
            for mon in mons.values():
                mon.close()
    return {
        k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
        for k, v in runs.items()
    }


# --------------------------------------------------------------------------- (b) faults


def timed_calls(
    mon: mlmon.Monitor, seconds: float, at_half: Callable[[], None] | None = None
) -> np.ndarray:
    """Call the model for ``seconds``; return every call's duration in ns."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 64))

    @mon.track(ids="rid")
    def predict(x: np.ndarray, rid: str) -> float:
        return float(np.tanh(x @ w).mean() > 0)

    x = rng.normal(size=(32, 64))
    times: list[int] = []
    pending: list[str] = []
    clock = time.perf_counter_ns
    end = time.monotonic() + seconds
    half = time.monotonic() + seconds / 2
    i = 0
    while True:
        if i % 256 == 0:
            now = time.monotonic()
            if now >= end:
                break
            if at_half is not None and now >= half:
                at_half()
                at_half = None
        rid = f"r{i}"
        t0 = clock()
        predict(x, rid)
        times.append(clock() - t0)
        pending.append(rid)
        if len(pending) == LABEL_EVERY:
            mon.log_feedback(pending, [i & 1] * LABEL_EVERY)
            pending = []
        i += 1
    return np.asarray(times, dtype=np.float64)


@contextlib.contextmanager
def scenario(kind: str, workdir: str) -> Iterator[tuple[str | None, Callable[[], None] | None]]:
    """``(url, action at half time)`` for a fault ``kind``; everything started is stopped after."""
    if kind == "in process (no store)":
        yield None, None
    elif kind in ("healthy", "killed mid-run"):
        proc, port = start_redis(workdir)
        try:
            yield f"redis://127.0.0.1:{port}/0", (proc.kill if kind == "killed mid-run" else None)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
    elif kind == "absent":
        yield f"redis://127.0.0.1:{free_port()}/0", None
    elif kind == "black-holed":
        hole = Blackhole()
        try:
            yield f"redis://127.0.0.1:{hole.port}/0", None
        finally:
            hole.stop()
    else:
        raise ValueError(kind)


KINDS = ["healthy", "in process (no store)", "absent", "black-holed", "killed mid-run"]


def faults(workdir: str, seconds: float, repeats: int) -> dict[str, tuple[float, float, float]]:
    """``{kind: (median p50 µs, median p99 µs, median p99 ratio to healthy)}``."""
    p50: dict[str, list[float]] = {k: [] for k in KINDS}
    p99: dict[str, list[float]] = {k: [] for k in KINDS}
    ratios: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: dict[str, float] = {}
    for r in range(repeats):
        for kind in KINDS:
            with scenario(kind, workdir) as (url, action):
                mon = monitor(f"faults_{r}_{kind.split()[0]}", url)
                try:
                    t = timed_calls(mon, seconds, action)
                finally:
                    snap = mon.flush()
                    mon.close()
            errors[kind] = sum(
                s.value for s in snap.samples if s.name == "mlmon_store_errors_total"
            )
            p50[kind].append(float(np.percentile(t, 50)) / 1000)
            p99[kind].append(float(np.percentile(t, 99)) / 1000)
        for kind in KINDS:
            ratios[kind].append(p99[kind][-1] / p99["healthy"][-1])
    for kind in KINDS[2:]:
        if errors[kind] == 0:  # the fault must have been seen, or the row means nothing
            raise SystemExit(f"{kind}: the store counted no error")
    return {
        k: (statistics.median(p50[k]), statistics.median(p99[k]), statistics.median(ratios[k]))
        for k in KINDS
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=400_000, help="calls per overhead run (about 1 s)")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds of calls per fault run")
    args = ap.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (Debian package redis-server)", file=sys.stderr)
        return 2
    logging.getLogger("mlmon").setLevel(
        logging.CRITICAL
    )  # the faults are expected; counted, not shown
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlmon-bench-faults-") as workdir:
        proc, port = start_redis(workdir)
        try:
            ovh = overhead(f"redis://127.0.0.1:{port}/0", args.calls, args.repeats)
            version = subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, check=False
            ).stdout.split()[2]
        finally:
            proc.terminate()
            proc.wait(10)
        table = faults(workdir, args.seconds, args.repeats)
    elapsed = time.monotonic() - started
    print(f"RedisStore on the predict path: median of {args.repeats}, redis-server {version.removeprefix('v=')}, "
          f"flush every {FLUSH} s, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {elapsed:.0f} s")  # fmt: skip
    print()
    (s_wall, s_cpu), (l_wall, l_cpu) = ovh["store"], ovh["local"]
    print("| `@mon.track(ids=...)`, per call | in-process join | `RedisStore` | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| caller's CPU (the hot path) | {l_cpu / 1000:.2f} µs | {s_cpu / 1000:.2f} µs | {s_cpu / l_cpu:.3f} | <= {GOAL} |"
    )
    print(
        f"| wall (with the cycle's share of the GIL) | {l_wall / 1000:.2f} µs | {s_wall / 1000:.2f} µs | {s_wall / l_wall:.3f} | — |"
    )
    si_cpu, li_cpu = ovh["store_inline"][1], ovh["local_inline"][1]
    print(
        f"| caller's CPU, no cycle during the run (the caller drains all) | {li_cpu / 1000:.2f} µs | {si_cpu / 1000:.2f} µs | {si_cpu / li_cpu:.3f} | — |"
    )
    print()
    print("| predict with flushes in the background | p50 | p99 | p99 ÷ healthy | goal |")
    print("| --- | --- | --- | --- | --- |")
    for kind, (m50, m99, ratio) in table.items():
        goal = "—" if kind in ("healthy", "in process (no store)") else f"<= {GOAL}"
        name = kind if kind.startswith("in process") else f"Redis {kind}"
        print(f"| {name} | {m50:.1f} µs | {m99:.1f} µs | {ratio:.3f} | {goal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
