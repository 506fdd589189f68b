"""Offline evaluation throughput: mlmon.evaluate against Evidently and NannyML, and on Dask.

Part 1 (pandas): N rows x 20 numeric features, a binary score and a label, cut into 10 chunks of
rows. Each tool does, end to end, feature drift per chunk against the same reference, and
(mlmon, NannyML) precision/recall/F1/accuracy per chunk:

- mlmon: ``mlmon.evaluate(df, chunk=N/10, reference=..., labels=...)`` (it also computes the
  outputs' distribution, missing ratios, means and variances, bins, confusion: its whole set).
- Evidently: one ``Report([DataDriftPreset()])`` per chunk against the reference.
- NannyML: ``UnivariateDriftCalculator`` (its default methods: Jensen-Shannon for continuous
  features) plus ``PerformanceCalculator`` (precision, recall, f1, accuracy), fitted on the
  reference, then ``calculate`` on the data (chunk_number=10).

The peers run in a separate virtualenv (``--peers-python``, default /work/venv-peers/bin/python;
Evidently needs pandas < 3) as a subprocess that reads the same data from Parquet and prints its
timings as JSON; data generation and the Parquet read are outside every timed region.

Part 2 (Dask): the same evaluation on M rows, pandas (one process) against a LocalCluster of 4
worker processes (1 thread each), with the peak resident memory of each worker.

    PYTHONPATH=. python benchmarks/bench_evaluate.py            # 1M rows, Dask 10M
    PYTHONPATH=. python benchmarks/bench_evaluate.py --quick    # 200k rows, Dask 1M
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

K = 20
CHUNKS = 10


def make_data(n: int, seed: int, first: int = 0, total: int | None = None) -> Any:
    """Rows ``first .. first + n`` of a log of ``total`` rows (all of it by default)."""
    import pandas as pd

    total = n if total is None else total
    rng = np.random.default_rng([seed, first])
    X = rng.normal(size=(n, K)).astype(np.float64)
    X[:, 0] += np.arange(first, first + n) / total  # one feature drifts
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(K)])
    score = rng.uniform(size=n)
    df["score"] = score
    df["pred"] = (score >= 0.5).astype(np.int64)
    df["label"] = (rng.uniform(size=n) < score).astype(np.int64)
    df["ts"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(first, first + n), unit="s")
    df.index = pd.RangeIndex(first, first + n)
    return df


def make_part(i: int, rows: int, total: int) -> Any:
    """Partition ``i`` of the Dask benchmark's log, made where it is computed."""
    return make_data(rows, 7, first=i * rows, total=total)


def timed(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- peers (run inside the peers' virtualenv) ----------------------------------------------------


def peers_main(data_path: str, ref_path: str, repeats: int, evidently_chunks: int) -> None:
    import pandas as pd

    df = pd.read_parquet(data_path)
    ref = pd.read_parquet(ref_path)
    feats = [f"f{i}" for i in range(K)]
    n = len(df)
    size = -(-n // CHUNKS)
    out: dict[str, float] = {}

    def evidently_run() -> None:
        from evidently import Report
        from evidently.presets import DataDriftPreset

        for s in range(0, min(n, evidently_chunks * size), size):
            Report([DataDriftPreset()]).run(current_data=df[feats].iloc[s : s + size], reference_data=ref[feats])

    def nannyml_run() -> None:
        import nannyml as nml

        drift = nml.UnivariateDriftCalculator(column_names=feats, chunk_number=CHUNKS)
        drift.fit(ref[feats])
        drift.calculate(df[feats])
        perf = nml.PerformanceCalculator(
            y_pred_proba="score", y_pred="pred", y_true="label", problem_type="classification_binary",
            metrics=["precision", "recall", "f1", "accuracy"], chunk_number=CHUNKS,
        )  # fmt: skip
        perf.fit(ref)
        perf.calculate(df)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Each chunk's report is independent of the others and of the same size: the time of
        # ``evidently_chunks`` of them is scaled to all CHUNKS (said in the table).
        out["evidently"] = timed(evidently_run, repeats) * CHUNKS / min(CHUNKS, evidently_chunks)
        out["nannyml"] = timed(nannyml_run, repeats)
    print(json.dumps(out))


# -- mlmon -----------------------------------------------------------------------------------------


def mlmon_pandas(df: Any, train: Any, repeats: int) -> float:
    """End to end, as the peers are timed: the reference from the training data (the peers fit
    on it, or read it in each report), then the evaluation."""
    import mlmon

    size = -(-len(df) // CHUNKS)
    feats = [f"f{i}" for i in range(K)]

    def run() -> None:
        ref = mlmon.Reference.from_data(train[feats], outputs=train["score"].to_numpy())
        mlmon.evaluate(df, outputs="score", labels="label", chunk=size, task=mlmon.BinaryClassification(), reference=ref)

    return timed(run, repeats)


def dask_part(n: int, ref: Any, workers: int, repeats: int) -> tuple[float, float, list[float], int, int]:
    import dask.dataframe as dd
    import pandas as pd
    import psutil
    from distributed import Client, LocalCluster

    import mlmon

    parts = workers * 4
    size = -(-n // parts)
    n = size * parts
    frames = [pd.concat([make_part(i, size, n) for i in range(parts)])]
    kw: dict[str, Any] = dict(outputs="score", labels="label", chunk=-(-n // CHUNKS), task=mlmon.BinaryClassification(), reference=ref)
    t_pandas = timed(lambda: mlmon.evaluate(frames[0], **kw), repeats)
    frames.clear()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="4GiB") as cluster, Client(cluster) as client:
        # each worker makes its partitions (the same rows as the pandas frame) and keeps them in
        # memory, as it would after reading a day of Parquet
        ddf = dd.from_map(make_part, list(range(parts)), rows=size, total=n).persist()
        client.wait_for_workers(workers)
        from distributed import wait

        wait(ddf)
        # warm the workers up (their first task imports pandas, scipy and mlmon), untimed
        client.run(lambda: __import__("mlmon.offline") and None)
        mlmon.evaluate(ddf.partitions[: workers * 2], **kw)

        # each worker process's resident memory, sampled every 50 ms during the timed runs
        procs = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
        peaks = [p.memory_info().rss for p in procs]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                for i, p in enumerate(procs):
                    try:
                        peaks[i] = max(peaks[i], p.memory_info().rss)
                    except psutil.Error:
                        pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            t_dask = timed(lambda: mlmon.evaluate(ddf, **kw), repeats)
        finally:
            stop.set()
            sampler.join(5)
        mem = [v / 2**20 for v in peaks]
    return t_pandas, t_dask, mem, parts, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200k rows, Dask 1M, one repeat")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--dask-rows", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--peers-python", default="/work/venv-peers/bin/python")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--evidently-chunks", type=int, default=None, help="chunks Evidently is timed on, scaled to 10 (default: 10 with --quick, else 2)")
    ap.add_argument("--peers", nargs=2, metavar=("DATA", "REF"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    if args.peers:
        peers_main(args.peers[0], args.peers[1], repeats, args.evidently_chunks or CHUNKS)
        return

    import mlmon

    ev_chunks = args.evidently_chunks or (CHUNKS if args.quick else 2)
    n = args.rows or (200_000 if args.quick else 1_000_000)
    m = args.dask_rows or (1_000_000 if args.quick else 10_000_000)
    df = make_data(n, seed=0)
    train = make_data(100_000, seed=1)
    train["f0"] -= np.linspace(0.0, 1.0, len(train))
    feats = [f"f{i}" for i in range(K)]
    ref = mlmon.Reference.from_data(train[feats], outputs=train["score"].to_numpy())

    print(f"## Offline evaluation, {n:,} rows x {K} features, {CHUNKS} chunks (median of {repeats})\n")
    t_mlmon = mlmon_pandas(df, train, repeats)
    peers: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_path, ref_path = os.path.join(tmp, "data.parquet"), os.path.join(tmp, "ref.parquet")
        df.drop(columns=["ts"]).to_parquet(data_path)
        train.drop(columns=["ts"]).to_parquet(ref_path)
        if os.path.exists(args.peers_python):
            # Both peers report usage over the network unless told not to (none is reachable here).
            env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}
            done = subprocess.run(
                [args.peers_python, __file__, "--peers", data_path, ref_path, "--repeats", str(repeats),
                 "--evidently-chunks", str(ev_chunks)],
                capture_output=True, text=True, timeout=3600, env=env,
            )  # fmt: skip
            if done.returncode == 0:
                peers = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                print(f"(peers failed: {done.stderr.strip().splitlines()[-1:]})\n")
        else:
            print(f"(no peers' virtualenv at {args.peers_python})\n")
    labels = {
        "evidently": f"Evidently DataDriftPreset (one report per chunk; {ev_chunks} of {CHUNKS} timed, scaled)",
        "nannyml": "NannyML UnivariateDriftCalculator + PerformanceCalculator",
    }
    rows = [("mlmon.evaluate", t_mlmon)] + [(labels[k], v) for k, v in peers.items()]
    print("| tool | seconds | rows/s | mlmon's speed-up |")
    print("|---|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {n / t:,.0f} | {t / t_mlmon:.1f}x |")
    if peers:
        fastest = min(peers.values())
        print(f"\nmlmon against the faster peer: {fastest / t_mlmon:.1f}x (goal: >= 10x)")

    if args.no_dask:
        return
    workers = 4
    t_pandas, t_dask, mem, parts, m = dask_part(m, ref, workers, 1)
    print(f"\n## Dask: {m:,} rows, LocalCluster of {workers} worker processes x 1 thread, {parts} partitions, on {os.cpu_count()} cores\n")
    print("| run | seconds | rows/s | speed-up | peak RSS per worker (MiB) |")
    print("|---|---:|---:|---:|---|")
    print(f"| pandas, one process | {t_pandas:.2f} | {m / t_pandas:,.0f} | 1.0x | |")
    print(f"| Dask, {workers} workers | {t_dask:.2f} | {m / t_dask:,.0f} | {t_pandas / t_dask:.2f}x | {', '.join(f'{x:.0f}' for x in sorted(mem))} |")


if __name__ == "__main__":
    sys.exit(main())
