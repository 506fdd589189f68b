"""RedisStore throughput and Redis memory, with the in-process FeedbackJoin as the peer.

Run: ``python benchmarks/bench_store.py [--repeats 3] [--n 200000] [--batch 10000]``

Starts its own ``redis-server`` (no persistence) on a free loopback port. For each id kind
(int64 numpy arrays, ``"req-<i>"`` strings):

- predictions written/s: ``record()`` in batches of ``--batch`` rows, then ``sync()`` until the
  buffer is empty (what the reporter thread does), ``--n`` rows in all;
- labels joined/s: ``submit_labels()`` of every id in a shuffled order, in batches, then
  ``sync()`` through a *second* store instance (another process in production); every label
  must join;
- Redis memory per pending prediction: ``INFO memory`` ``used_memory`` after writing ``--pending``
  predictions minus before, divided by ``--pending``.

Each RedisStore row is measured twice: predictions without a segment (16-byte values, the
format from before segments) and with one of 8 segments each (``record(..., segments=)``:
20-byte values, the joins return the codes and their names), interleaved. Besides the rates
(wall clock), the CPU time per row is given, in this process (``time.process_time``) and in
redis-server (``INFO cpu``): on a machine shared with other jobs it moves much less than the
wall clock. Run against an older checkout (``PYTHONPATH=<checkout> python
benchmarks/bench_store.py``), the script measures it the same way, without the segment rows.

The peer is :class:`mlmon.feedback.FeedbackJoin` (one process, no Redis): ``record`` and ``join``
on the same batches. Every figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlmon.feedback import FeedbackJoin, as_batch
from mlmon.segments import segment_code
from mlmon.stores import RedisStore

GOAL_RATE = 200_000
GOAL_BYTES = 100


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def id_sets(n: int) -> dict[str, tuple[Any, Any]]:
    """Per id kind: the ids in order, and the same ids shuffled (for the labels)."""
    perm = np.random.default_rng(1).permutation(n)
    ints = np.arange(10**9, 10**9 + n, dtype=np.int64)
    strs = [f"req-{i}" for i in range(n)]
    return {"int64": (ints, ints[perm]), "str": (strs, [strs[i] for i in perm.tolist()])}


def batches(ids: Any, size: int) -> list[Any]:
    return [ids[lo : lo + size] for lo in range(0, len(ids), size)]


SEGMENTS = [f"segment-{k}" for k in range(8)]
# False when run against a version from before segments (PYTHONPATH=<an older checkout>), to
# measure it the same way: only the rows without segments then.
HAS_SEGMENTS = "segments" in inspect.signature(RedisStore.record).parameters


def segment_codes(n: int) -> np.ndarray[Any, np.dtype[np.uint32]]:
    codes = np.array([segment_code(s) for s in SEGMENTS], dtype=np.uint32)
    return codes[np.arange(n) % len(codes)]


def redis_cpu(client: Any) -> float:
    """CPU seconds the redis-server has used (all its threads)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_rates(
    url: str, client: Any, ids: Any, shuffled: Any, batch: int, tag: str, segmented: bool
) -> dict[str, float]:
    """Rates (wall clock), and CPU microseconds per row in this process and in redis-server
    (CPU time moves much less than wall time when other jobs share the machine)."""
    n = len(ids)
    writer = RedisStore(url, deadline=60.0, max_buffer_bytes=512 << 20, buckets=8192)
    reader = RedisStore(url, deadline=60.0, max_buffer_bytes=512 << 20, buckets=8192)
    writer.bind("bench", tag)
    reader.bind("bench", tag)
    preds = np.ones(n)
    codes = segment_codes(n) if segmented else None
    now = time.time()
    made = np.full(batch, now)
    r0, c0, t0 = redis_cpu(client), time.process_time(), time.perf_counter()
    if segmented:
        writer.name_segments({segment_code(s): s for s in SEGMENTS})
    for lo, part in zip(range(0, n, batch), batches(ids, batch), strict=True):
        if codes is None:
            writer.record(part, preds[: len(part)], made[: len(part)])
        else:
            writer.record(part, preds[: len(part)], made[: len(part)], codes[lo : lo + len(part)])
    writer.sync(now)
    t_write, c_write, r_write = time.perf_counter() - t0, time.process_time() - c0, redis_cpu(client) - r0
    labels = np.ones(batch)
    r0, c0, t0 = redis_cpu(client), time.process_time(), time.perf_counter()
    for part in batches(shuffled, batch):
        reader.submit_labels(part, labels[: len(part)], now)
    got = reader.sync(now)
    t_join, c_join, r_join = time.perf_counter() - t0, time.process_time() - c0, redis_cpu(client) - r0
    assert got.counts["joined"] == n, got.counts
    if segmented:  # every label came back with its prediction's segment, named
        assert len(set(got.segments.tolist())) == len(SEGMENTS), got.segments[:10]
        assert set(got.segment_names.values()) == set(SEGMENTS)
    elif HAS_SEGMENTS:
        assert not got.segments.any()
    writer.close(1.0)
    reader.close(1.0)
    us = 1e6 / n
    return {
        "write rate": n / t_write, "join rate": n / t_join,
        "write client": c_write * us, "write redis": r_write * us,
        "join client": c_join * us, "join redis": r_join * us,
    }


def peer_rates(ids: Any, shuffled: Any, batch: int) -> tuple[float, float]:
    n = len(ids)
    store = FeedbackJoin(max_pending=max(n, 1))
    preds = np.ones(batch)
    t0 = time.perf_counter()
    for part in batches(ids, batch):
        store.record(part, preds[: len(part)], now=1.0)
    t_write = time.perf_counter() - t0
    labels = np.ones(batch)
    ok = np.ones(batch, dtype=np.bool_)
    t0 = time.perf_counter()
    for part in batches(shuffled, batch):
        store.join(as_batch(part), labels[: len(part)], ok[: len(part)], now=2.0)
    t_join = time.perf_counter() - t0
    assert store.joined == n, store.joined
    return n / t_write, n / t_join


def memory_per_pending(
    url: str, client: Any, pending: int, ids: Callable[[int], Any], segmented: bool = False
) -> float:
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    store = RedisStore(url, deadline=60.0, max_buffer_bytes=512 << 20)  # default buckets
    now = time.time()
    codes = segment_codes(pending) if segmented else None
    if codes is None:
        store.record(ids(pending), np.ones(pending), np.full(pending, now))
    else:
        store.record(ids(pending), np.ones(pending), np.full(pending, now), codes)
    store.sync(now)
    used = int(client.info("memory")["used_memory"]) - before
    store.close(1.0)
    client.flushall()
    return used / pending


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=200_000, help="ids per throughput run")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--pending", type=int, default=300_000, help="predictions for the memory row")
    args = ap.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (Debian package redis-server)", file=sys.stderr)
        return 2
    import redis

    rows: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="mlmon-bench-redis-") as workdir:
        proc, port = start_redis(workdir)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(port=port)
        try:
            for kind, (ids, shuffled) in id_sets(args.n).items():
                # the two variants interleaved, so that load on the machine hits both alike
                variants = (False, True) if HAS_SEGMENTS else (False,)
                runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
                for r in range(args.repeats):
                    for segmented in variants:
                        client.flushall()
                        runs[segmented].append(
                            redis_rates(url, client, ids, shuffled, args.batch, f"{kind}{r}{segmented}", segmented)
                        )
                peers = [peer_rates(ids, shuffled, args.batch) for _ in range(args.repeats)]
                pw = statistics.median(x[0] for x in peers)
                pj = statistics.median(x[1] for x in peers)
                for segmented in variants:
                    meds = {key: statistics.median(x[key] for x in runs[segmented]) for key in runs[segmented][0]}

                    def med(key: str, meds: dict[str, float] = meds) -> float:
                        return meds[key]

                    store = "RedisStore+seg" if segmented else "RedisStore"
                    rows.append((f"predictions written/s ({kind} ids)", store, med("write rate"), f">= {GOAL_RATE:,}"))
                    rows.append((f"labels joined/s ({kind} ids)", store, med("join rate"), f">= {GOAL_RATE:,}"))
                    rows.append((f"CPU µs / prediction written, client ({kind})", store, med("write client"), "—"))
                    rows.append((f"CPU µs / prediction written, redis ({kind})", store, med("write redis"), "—"))
                    rows.append((f"CPU µs / label joined, client ({kind})", store, med("join client"), "—"))
                    rows.append((f"CPU µs / label joined, redis ({kind})", store, med("join redis"), "—"))
                rows.append((f"predictions recorded/s ({kind} ids)", "FeedbackJoin", pw, "peer"))
                rows.append((f"labels joined/s ({kind} ids)", "FeedbackJoin", pj, "peer"))
            for segmented in (False, True) if HAS_SEGMENTS else (False,):
                store = "RedisStore+seg" if segmented else "RedisStore"
                mem_int = statistics.median(
                    memory_per_pending(url, client, args.pending, lambda n: np.arange(10**9, 10**9 + n), segmented)
                    for _ in range(args.repeats)
                )
                mem_str = statistics.median(
                    memory_per_pending(url, client, args.pending, lambda n: [f"req-{i}" for i in range(n)], segmented)
                    for _ in range(args.repeats)
                )
                rows.append((f"Redis bytes / pending prediction (int64, {args.pending:,})", store, mem_int, f"<= {GOAL_BYTES}"))
                rows.append((f"Redis bytes / pending prediction (str, {args.pending:,})", store, mem_str, f"<= {GOAL_BYTES}"))
            version = client.info("server")["redis_version"]
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"RedisStore vs FeedbackJoin: n={args.n:,}, batch={args.batch:,}, "
          f"median of {args.repeats}, redis-server {version}, buckets=8192 (memory: default 4096)")
    print()
    print(f"| {'measure':<52} | {'store':<14} | {'value':>12} | {'goal':<10} |")
    print(f"|{'-' * 54}|{'-' * 16}|{'-' * 14}|{'-' * 12}|")
    for name, store, value, goal in rows:
        shown = f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
        print(f"| {name:<52} | {store:<14} | {shown:>12} | {goal:<10} |")
    plain = {name: v for name, store, v, _ in rows if store == "RedisStore"}
    if not HAS_SEGMENTS:
        return 0
    print()
    print("Segments (8 of them, 20-byte values) against none (16-byte values), same run:")
    print()
    print(f"| {'measure':<52} | {'ratio':>6} |")
    print(f"|{'-' * 54}|{'-' * 8}|")
    for name, store, v, _ in rows:
        if store == "RedisStore+seg":
            print(f"| {name:<52} | {v / plain[name]:>6.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
