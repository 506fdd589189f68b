"""Scrape time of one endpoint per host after many worker restarts: mlmon's HostEndpoint against
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), same counts, one run.

Run: ``python benchmarks/bench_host_endpoint.py [--repeats 5] [--dead 4,64,1000]``

For each count of dead workers (plus 4 live ones) both directories are filled the way a
pre-fork server leaves them after that many restarts, and the work of one scrape (read the
directory, merge, render the text format; no HTTP) is timed:

- **mlmon**: each worker wrote its state (``Monitor.fleet_state()`` of a monitor that served
  1,000 calls with outputs) as ``w.<model>.<digest>.<pid>.<start>.<instance>.state``. In
  production each worker's flush folds the workers that ended into the archive, so the scrape
  finds the live states and one archive: "scrape" is that steady state, after the folds. "fold
  all" is the one scrape that finds every dead state unfolded (no worker flushed since they
  died): it folds ``fold_batch`` (256) of them and reads the rest; it is paid once. "fold per
  restart" is the fold cost divided by the restarts, what the workers pay over time.
- **prometheus_client** (the real library writes the files: ``MultiProcessValue`` with a
  process identifier per simulated worker): each worker has the same kind of series as
  mlmon's page (calls, rows, slow calls, errors by type, a latency histogram with mlmon's 17
  bounds, output bins by bin, a ``livesum`` in-flight gauge); ``mark_process_dead`` was called
  for every dead worker, as its docs ask. Its collector reads every ``*.db`` file at every
  scrape, and counter files of dead workers are never removed.

Also printed: a worker's cost per flush (``HostEndpoint.publish``: its state, the atomic write,
the check for ended workers). Every figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlmon
from mlmon.fleet.host import HostEndpoint, _key, _own_start

LIVE = 4
NO_PID = 2**22 + 1  # above Linux's pid_max: a worker that has ended
BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


# -- mlmon ------------------------------------------------------------------------------------


def worker_state() -> bytes:
    mon = mlmon.Monitor("bench", emitters=[])
    predict = mon.track(lambda x: x * 0.001)
    for i in range(1000):
        predict(i)
    blob = mon.fleet_state()
    mon.close()
    return blob


def fill_mlmon(d: Path, dead: int, blob: bytes) -> None:
    key = _key("bench", None)
    for i in range(LIVE):  # this process's pid and start time: running workers
        (d / f"w.{key}.{os.getpid()}.{_own_start()}.{i:08x}.state").write_bytes(blob)
    for i in range(dead):
        (d / f"w.{key}.{NO_PID + i}.1.00000000.state").write_bytes(blob)


def _endpoint(d: Path) -> tuple[HostEndpoint, mlmon.Monitor]:
    host = HostEndpoint(d, port=0, lease=False, instance="bench")
    mon = mlmon.Monitor("bench", emitters=[])
    host.bind_monitor(mon)
    return host, mon


def bench_mlmon(dead: int, repeats: int, blob: bytes) -> dict[str, float]:
    fold_all, per_restart, steady = [], [], []
    files = 0
    for _ in range(repeats if dead <= 64 else max(1, repeats // 2)):
        d1, d2 = (Path(tempfile.mkdtemp(prefix="mlmon-host-")) for _ in range(2))
        (h1, m1), (h2, m2) = _endpoint(d1), _endpoint(d2)
        try:
            fill_mlmon(d1, dead, blob)  # nobody folded since they died: this scrape does
            t0 = time.perf_counter()
            assert "mlmon_calls_total" in h1.render()
            fold_all.append((time.perf_counter() - t0) * 1000)
            fill_mlmon(d2, dead, blob)  # the workers' flushes fold the dead, restart after restart
            t0 = time.perf_counter()
            while h2.fold():
                pass
            per_restart.append((time.perf_counter() - t0) * 1000 / max(dead, 1))
            steady.append(median_ms(h2.render, repeats))
            files = len(os.listdir(d2))
            for h in (h1, h2):
                got = h.scrape().snapshots[0].get("mlmon_calls_total")
                assert got == 1000 * (dead + LIVE), (got, dead)
        finally:
            m1.close()
            m2.close()
            shutil.rmtree(d1)
            shutil.rmtree(d2)
    return {
        "scrape": statistics.median(steady),
        "fold_all": statistics.median(fold_all),
        "per_restart": statistics.median(per_restart),
        "files": files,
    }


# -- prometheus_client ------------------------------------------------------------------------


def bench_prometheus_client(dead: int, repeats: int) -> dict[str, float]:
    import prometheus_client
    from prometheus_client import values
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    d = tempfile.mkdtemp(prefix="prom-multiproc-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
    current = {"pid": 0}
    saved = values.ValueClass
    values.ValueClass = values.MultiProcessValue(lambda: current["pid"])
    try:
        calls = prometheus_client.Counter("mlmon_calls", "calls", ["model"], registry=None)
        rows = prometheus_client.Counter("mlmon_rows", "rows", ["model"], registry=None)
        slow = prometheus_client.Counter("mlmon_slow_calls", "slow", ["model"], registry=None)
        errors = prometheus_client.Counter("mlmon_errors", "errors", ["model", "error_type"], registry=None)
        latency = prometheus_client.Histogram("mlmon_latency_seconds", "latency", ["model"], buckets=BOUNDS, registry=None)
        bins = prometheus_client.Counter("mlmon_output_bin", "bins", ["model", "bin"], registry=None)
        inflight = prometheus_client.Gauge("mlmon_inflight_calls", "inflight", ["model"], multiprocess_mode="livesum", registry=None)
        pids = [1000 + i for i in range(LIVE + dead)]
        for pid in pids:
            current["pid"] = pid
            calls.labels("bench").inc(1000)
            rows.labels("bench").inc(1000)
            slow.labels("bench").inc(0)
            errors.labels("bench", "ValueError").inc(0)
            for i in range(0, 1000, 50):
                latency.labels("bench").observe(i / 1e6)
            for b in range(22):
                bins.labels("bench", f"{b:02d}").inc(45)
            inflight.labels("bench").set(0)
        for pid in pids[LIVE:]:
            mark_process_dead(pid, d)
        registry = prometheus_client.CollectorRegistry()
        MultiProcessCollector(registry, d)
        text = prometheus_client.generate_latest(registry).decode()
        line = next(x for x in text.splitlines() if x.startswith('mlmon_calls_total{model="bench"}'))
        assert float(line.rsplit(" ", 1)[1]) == 1000 * (LIVE + dead), line
        scrape = median_ms(lambda: prometheus_client.generate_latest(registry), repeats)
        files = len(os.listdir(d))
    finally:
        values.ValueClass = saved
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(d)
    return {"scrape": scrape, "files": files}


def bench_publish(repeats: int) -> float:
    """A worker's cost per flush: its state, the atomic write, the check for ended workers."""
    d = Path(tempfile.mkdtemp(prefix="mlmon-host-"))
    host = HostEndpoint(d, port=0, lease=False)
    mon = mlmon.Monitor("bench", emitters=[])
    try:
        predict = mon.track(lambda x: x * 0.001)
        for i in range(1000):
            predict(i)
        fill_mlmon(d, 0, worker_state())
        return median_ms(lambda: host.publish(mon), max(repeats, 20))
    finally:
        mon.close()
        host.close()
        shutil.rmtree(d)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dead", default="4,64,1000")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.dead.split(",")]
    blob = worker_state()
    print(f"python {sys.version.split()[0]}, mlmon state {len(blob)} bytes per worker, {LIVE} live workers, "
          f"medians of {args.repeats}\n")  # fmt: skip
    print("| dead workers | mlmon scrape (ms) | mlmon files | prometheus_client scrape (ms) | prometheus_client files "
          "| prometheus_client / mlmon | mlmon: the scrape that finds all dead unfolded (ms, once) | mlmon fold per restart (ms) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dead in counts:
        m = bench_mlmon(dead, args.repeats, blob)
        p = bench_prometheus_client(dead, args.repeats)
        print(
            f"| {dead} | {m['scrape']:.1f} | {m['files']:.0f} | {p['scrape']:.1f} | {p['files']:.0f} "
            f"| {p['scrape'] / m['scrape']:.1f}x | {m['fold_all']:.0f} | {m['per_restart']:.2f} |",
            flush=True,
        )
    print(f"\nA worker's publish per flush (state, atomic write, fold check; 4 live workers): "
          f"{bench_publish(args.repeats):.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
