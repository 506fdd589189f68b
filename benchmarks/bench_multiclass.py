"""The cost of the multiclass row metrics (top-k accuracy, per-class ROC and PR AUC).

    PYTHONPATH=. python benchmarks/bench_multiclass.py [--repeats 5]

A monitor with a 10-class task, 100,000 predictions in its window, every one labelled:

- a snapshot when the model returns probability rows (the row metrics are computed) against
  the same monitor fed the predicted classes only (no rows: the metrics of before);
- the quality part's samples alone, both ways, and scikit-learn computing the same metrics
  exactly from the same 100,000 rows (``top_k_accuracy_score`` for k = 1, 3, 5,
  ``roc_auc_score`` and ``average_precision_score`` per class);
- the drain-side costs: recording 100 calls of 1,000 rows (and 1,000 calls of one row), and
  joining 100 batches of 1,000 labels, both ways;
- calls of one probability row each: the hot path (µs per tracked call) and the drain of 1,000
  of them, this tree against the main tree when ``--main`` names one (each in a subprocess with
  its ``PYTHONPATH``, three times interleaved, medians).

Medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

N, K, CALL_ROWS = 100_000, 10, 1_000


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(N, K))
    y = rng.integers(0, K, N)
    logits[np.arange(N), y] += 1.0
    rows = np.exp(logits)
    return rows / rows.sum(axis=1, keepdims=True), y


def filled_monitor(rows: np.ndarray, y: np.ndarray, with_rows: bool) -> tuple[Any, float, float]:
    """A monitor with every prediction labelled; the seconds of its drains and of its joins."""
    import mlmon

    task = mlmon.MulticlassClassification(classes=list(range(K)))
    mon = mlmon.Monitor("bench", task=task, window=3600.0, emitters=[])
    predict = mon.track(ids="ids")(lambda X, ids: X)
    drain = join = 0.0
    for lo in range(0, N, CALL_ROWS):
        ids = np.arange(lo, lo + CALL_ROWS)
        out = rows[lo : lo + CALL_ROWS]
        predict(out if with_rows else out.argmax(axis=1), ids=ids)
        t = time.perf_counter()
        mon.flush()
        drain += time.perf_counter() - t
    for lo in range(0, N, CALL_ROWS):
        ids = np.arange(lo, lo + CALL_ROWS)
        t = time.perf_counter()
        mon.log_feedback(ids, y[lo : lo + CALL_ROWS])
        join += time.perf_counter() - t
    return mon, drain, join


def drain_single_rows(with_rows: bool, repeats: int) -> float:
    """Seconds of a drain of 1,000 single-row calls (ids and one row, or one class, each)."""
    import mlmon

    task = mlmon.MulticlassClassification(classes=list(range(K)))
    mon = mlmon.Monitor("single", task=task, window=3600.0, emitters=[])
    row = np.full(K, 1.0 / K)
    predict = mon.track(ids="ids")(lambda X, ids: row if with_rows else 3)
    times = []
    for r in range(repeats):
        for i in range(1000):
            predict(None, ids=r * 1000 + i)
        t = time.perf_counter()
        mon.flush()
        times.append(time.perf_counter() - t)
    mon.close()
    return statistics.median(times)


def sklearn_same(rows: np.ndarray, y: np.ndarray) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score, top_k_accuracy_score

    for k in (1, 3, 5):
        top_k_accuracy_score(y, rows, k=k, labels=list(range(K)))
    for c in range(K):
        roc_auc_score(y == c, rows[:, c])
        average_precision_score(y == c, rows[:, c])


def hot_path_us(calls: int = 20_000) -> float:
    """µs per tracked call of one probability row (median of 5 batches of ``calls``)."""
    import mlmon

    task = mlmon.MulticlassClassification(classes=list(range(K)))
    mon = mlmon.Monitor("hot", task=task, window=60.0, emitters=[])
    row = np.full(K, 1.0 / K)
    predict = mon.track(ids="ids")(lambda X, ids: row)
    out = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(calls):
            predict(None, ids=i)
        out.append((time.perf_counter() - t) / calls * 1e6)
        mon.flush()
    mon.close()
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--main", help="a main tree to compare the hot path with (its root)")
    ap.add_argument("--hot-path-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hot_path_only:
        print(f"{hot_path_us():.3f} {drain_single_rows(True, args.repeats) * 1e3:.3f}")
        return
    import mlmon

    rows, y = data()
    mons, fills = {}, {}
    for with_rows in (True, False):
        mon, drain, join = filled_monitor(rows, y, with_rows)
        mons[with_rows] = mon
        fills[with_rows] = (drain / (N // CALL_ROWS), join / (N // CALL_ROWS))
        snap = mon.snapshot()
        assert snap.get("mlmon_labels_window") == N
        has = snap.get("mlmon_top_k_accuracy", k="1") is not None
        assert has == with_rows
    # Both monitors measured in turn, repeat after repeat, so that load hits both alike.
    times: dict[bool, tuple[list[float], list[float]]] = {True: ([], []), False: ([], [])}
    for _ in range(args.repeats):
        for with_rows, mon in mons.items():
            quality = mon._quality  # the quality part: its samples alone
            t = time.perf_counter()
            mon.snapshot()
            times[with_rows][0].append(time.perf_counter() - t)
            t = time.perf_counter()
            list(quality.samples(mon._clock.monotonic()))
            times[with_rows][1].append(time.perf_counter() - t)
    costs = {
        w: (statistics.median(times[w][0]), statistics.median(times[w][1]), *fills[w]) for w in (True, False)
    }
    skl = median_seconds(lambda: sklearn_same(rows.astype(np.float32), y), args.repeats)
    for mon in mons.values():
        mon.close()
    # Both trees in subprocesses, interleaved, so that load from other jobs hits both alike.
    trees = {"this tree": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    if args.main:
        trees["main tree (no row metrics)"] = args.main
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for _ in range(3):
        for name, root in trees.items():
            env = {**os.environ, "PYTHONPATH": root}
            cmd = [sys.executable, __file__, "--hot-path-only", "--repeats", str(args.repeats)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            us, ms = res.stdout.split()
            runs[name].append((float(us), float(ms)))
    hot = {
        name: (statistics.median(u for u, _ in r), statistics.median(m for _, m in r)) for name, r in runs.items()
    }
    print(f"mlmon {mlmon.__version__}, numpy {np.__version__}, {N:,} labelled predictions in the window, "
          f"{K} classes, medians of {args.repeats}\n")  # fmt: skip
    print("| | probability rows (row metrics) | class outputs (no rows) | added |")
    print("|---|---:|---:|---:|")
    names = ("snapshot of the whole monitor", "quality part's samples", "drain of 1 call × 1,000 rows",
             "log_feedback of 1,000 labels")  # fmt: skip
    for i, name in enumerate(names):
        a, b = costs[True][i] * 1e3, costs[False][i] * 1e3
        print(f"| {name} | {a:.3f} ms | {b:.3f} ms | {a - b:+.3f} ms |")
    print("\n| the same metrics exactly, by scikit-learn, on the same rows | ms |")
    print("|---|---:|")
    print(f"| top_k_accuracy_score × 3, roc_auc_score × {K}, average_precision_score × {K} | {skl * 1e3:.1f} |")
    print("\n| one probability row a call | hot path: µs per tracked call | drain of 1,000 such calls |")
    print("|---|---:|---:|")
    for name, (us, ms) in hot.items():
        print(f"| {name} | {us:.2f} | {ms:.2f} ms |")


if __name__ == "__main__":
    main()
