"""The fleet view's costs: state size, export, publish, merge, and a day of 10,000 processes.

Run: ``python benchmarks/bench_fleet.py [--processes 64] [--features 20] [--repeats 7]``

Starts its own ``redis-server`` (no persistence) on a free loopback port. ``--processes``
monitors (in this process, each fed 50 calls of 100 rows with ``--features`` features against a
reference, a binary task, labels for every row) stand for the fleet's processes. Measured, each
the median of ``--repeats``:

- state size: ``len(Monitor.fleet_state())``;
- export: ``Monitor.fleet_state()`` (drain included);
- publish: what a follower does per flush after exporting: ``fleet_publish`` + ``fleet_lease``
  on the real Redis;
- merge: ``mlmon.fleet.merge_states`` of every state into the fleet snapshot;
- leader cycle: ``fleet_read`` of every live state from Redis + merge (what the leader adds);
- peer: whylogs (if installed) merging the same number of profiles of the same columns
  (``DatasetProfileView.merge``), the same job for its mergeable profiles.

Then a day of churn: ``--churn`` processes (default 10,000) publish once each and die (a
state TTL of 0.2 s); the leader's read + fold per cycle, the number of cycles to fold them all,
and Redis's memory before and after.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_store import start_redis

import mlmon
from mlmon.fleet import combine_states, merge_states, retire_state
from mlmon.stores import RedisStore
from mlmon.testing import FakeClock

GOAL_MERGE_MS = 50.0


def median_ms(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1000)
    return statistics.median(times)


def build(n: int, features: int) -> tuple[list[mlmon.Monitor], np.ndarray]:
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(features)]
    ref = mlmon.Reference.from_data(rng.normal(size=(5000, features)), outputs=rng.random(5000), feature_names=names)
    clock = FakeClock(start=time.time())
    mons = []
    data = rng.normal(size=(100, features))
    for i in range(n):
        mon = mlmon.Monitor("bench_fleet", task=mlmon.BinaryClassification(), reference=ref, emitters=[],
                            clock=clock, instance=f"p{i}")  # fmt: skip
        for k in range(50):
            ids = np.arange(k * 100, (k + 1) * 100) + i * 10_000
            with mon.track(features=data + rng.normal(0, 0.1), ids=ids) as call:
                call.outputs(rng.random(100))
        mon.log_feedback(np.arange(5000) + i * 10_000, rng.integers(0, 2, 5000))
        mons.append(mon)
    return mons, data


def whylogs_merge(n: int, features: int, repeats: int) -> float | None:
    try:
        import pandas as pd
        import whylogs as why
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    views = []
    for _ in range(n):
        df = pd.DataFrame(rng.normal(size=(5000, features)), columns=[f"f{j}" for j in range(features)])
        views.append(why.log(df).view())

    def merge() -> None:
        acc = views[0]
        for v in views[1:]:
            acc = acc.merge(v)

    return median_ms(merge, repeats)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=64)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--churn", type=int, default=10_000)
    args = ap.parse_args()
    n, f, r = args.processes, args.features, args.repeats

    mons, _ = build(n, f)
    states = [m.fleet_state() for m in mons]
    size = statistics.median(len(s) for s in states)
    export = median_ms(mons[0].fleet_state, r)
    merge = median_ms(lambda: merge_states(mons[0], states), r)
    merge_cpu = median_ms(lambda: merge_states(mons[0], states), r, time.process_time)
    check = merge_states(mons[0], states)
    assert check.merged == n and not check.rejected, check.rejected
    peer = whylogs_merge(n, f, r)
    load = __import__("os").getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_redis(tmp)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            store = RedisStore(url, deadline=5.0)
            store.bind("bench_fleet", None)
            for i, s in enumerate(states):
                store.fleet_publish(f"p{i}", s, 600.0, 4096)
            publish = median_ms(
                lambda: (store.fleet_publish("p0", states[0], 600.0, 4096), store.fleet_lease("tok", 5.0)), r
            )
            read_merge = median_ms(lambda: merge_states(mons[0], [b for _, b, _ in store.fleet_read(600.0, 4096).live]), r)  # type: ignore[union-attr]

            # A day of churn: processes that publish once and die.
            churn = RedisStore(url, deadline=5.0)
            churn.bind("bench_churn", None)
            client = churn._connect(5.0)
            mem0 = int(client.info("memory")["used_memory"])
            small = mons[1].fleet_state()
            t0 = time.perf_counter()
            for i in range(args.churn):
                churn.fleet_publish(f"dead{i}", small, 0.2, 4096)
            publish_all = time.perf_counter() - t0
            time.sleep(0.3)
            mem_peak = int(client.info("memory")["used_memory"])
            cycles, cycle_ms = 0, []
            archive: bytes | None = None
            while True:
                t1 = time.perf_counter()
                read = churn.fleet_read(0.2, 4096)
                assert read is not None
                if not read.retired and cycles:
                    break
                blobs = ([] if archive is None else [archive]) + [retire_state(b) for _, b in read.retired]
                archive, _ = combine_states(mons[0], blobs)
                churn.fleet_lease("tok", 5.0)
                churn.fleet_commit("tok", b"{}", 60.0, archive, [name for name, _ in read.retired])
                cycle_ms.append((time.perf_counter() - t1) * 1000)
                cycles += 1
            mem_after = int(client.info("memory")["used_memory"])
            total = merge_states(mons[0], [archive] if archive else [])
            kept = total.snapshot.get("mlmon_calls_total")
        finally:
            proc.terminate()
            proc.wait()

    print(f"## Fleet view, {n} processes x {f} features (medians of {r}; load average {load:.1f})\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| state size per process | {size / 1024:.1f} KiB |")
    print(f"| export (`Monitor.fleet_state()`) | {export:.2f} ms |")
    print(f"| publish per process per flush (publish + lease, real Redis) | {publish:.2f} ms |")
    print(f"| merge of {n} states (`merge_states`), wall | {merge:.1f} ms (goal <= {GOAL_MERGE_MS:.0f} ms) |")
    print(f"| merge of {n} states, CPU time of this process | {merge_cpu:.1f} ms |")
    print(f"| leader: read {n} states from Redis + merge | {read_merge:.1f} ms |")
    if peer is not None:
        print(f"| peer: whylogs merging {n} profiles of {f} columns | {peer:.1f} ms ({peer / merge:.2f}x mlmon's merge) |")
    print(f"\n## A day of churn: {args.churn} processes publish once and die\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| publishes | {args.churn} in {publish_all:.1f} s |")
    print(f"| leader cycles to fold them (256 retired per cycle) | {cycles} |")
    print(f"| leader cycle (read + fold + commit), median / max | {statistics.median(cycle_ms):.0f} / {max(cycle_ms):.0f} ms |")
    print(f"| Redis memory: before / all published / after folding | {mem0 / 2**20:.1f} / {mem_peak / 2**20:.1f} / {mem_after / 2**20:.1f} MiB |")
    print(f"| calls kept in the archive | {kept:.0f} (= {args.churn} x {mons[1].snapshot().get('mlmon_calls_total'):.0f}) |")
    for m in mons:
        m.close()


if __name__ == "__main__":
    main()
