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
Evidently needs pandas < 3) as a subprocess that reads the same data from Parquet, imports both
peers, then times one run per request and answers with its seconds as JSON; data generation,
imports and the Parquet read are outside every timed region.

Part 2 (Dask): the same evaluation on M rows, pandas (one process) against a LocalCluster of 4
worker processes (1 thread each), with the peak resident memory of each worker.

    PYTHONPATH=. python benchmarks/bench_evaluate.py            # 1M rows, Dask 10M
    PYTHONPATH=. python benchmarks/bench_evaluate.py --quick    # 200k rows, Dask 1M
    PYTHONPATH=. python benchmarks/bench_evaluate.py --no-dask --stages   # and where mlmon's time goes
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_evaluate.py --no-dask --cpu   # CPU seconds

mlmon and NannyML are timed in turns (mlmon, NannyML, mlmon, ...) after one untimed run each,
so that on a shared machine both see the same load; the table gives medians.
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
CLOCK = time.perf_counter  # --cpu: time.process_time (the process's CPU seconds, all threads)


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
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times)


# -- peers (run inside the peers' virtualenv) ----------------------------------------------------


def peers_main(data_path: str, ref_path: str, evidently_chunks: int) -> None:
    """Serve timed runs: one line on stdin (``nannyml``, ``evidently`` or ``warm``) runs that
    peer once and prints its seconds as JSON; the imports are done before anything is timed."""
    import warnings

    import pandas as pd

    warnings.simplefilter("ignore")
    import nannyml as nml
    from evidently import Report
    from evidently.presets import DataDriftPreset

    df = pd.read_parquet(data_path)
    ref = pd.read_parquet(ref_path)
    feats = [f"f{i}" for i in range(K)]
    n = len(df)
    size = -(-n // CHUNKS)

    def evidently_run() -> None:
        for s in range(0, min(n, evidently_chunks * size), size):
            Report([DataDriftPreset()]).run(current_data=df[feats].iloc[s : s + size], reference_data=ref[feats])

    def nannyml_run() -> None:
        drift = nml.UnivariateDriftCalculator(column_names=feats, chunk_number=CHUNKS)
        drift.fit(ref[feats])
        drift.calculate(df[feats])
        perf = nml.PerformanceCalculator(
            y_pred_proba="score", y_pred="pred", y_true="label", problem_type="classification_binary",
            metrics=["precision", "recall", "f1", "accuracy"], chunk_number=CHUNKS,
        )  # fmt: skip
        perf.fit(ref)
        perf.calculate(df)

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        what = line.strip()
        if what == "nannyml":
            out = {"nannyml": timed(nannyml_run, 1)}
        elif what == "evidently":
            # Each chunk's report is independent of the others and of the same size: the time
            # of ``evidently_chunks`` of them is scaled to all CHUNKS (said in the table).
            out = {"evidently": timed(evidently_run, 1) * CHUNKS / min(CHUNKS, evidently_chunks)}
        elif what == "warm":
            nannyml_run()
            out = {"warm": 0.0}
        else:
            break
        print(json.dumps(out), flush=True)


class Peers:
    """The peers' process (their own virtualenv), asked for one timed run at a time so that
    its runs interleave with mlmon's: both see the same load on a shared machine."""

    def __init__(self, python: str, data_path: str, ref_path: str, evidently_chunks: int, cpu: bool) -> None:
        # Both peers report usage over the network unless told not to (none is reachable here).
        env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}
        self.proc = subprocess.Popen(
            [python, __file__, "--peers", data_path, ref_path, "--evidently-chunks", str(evidently_chunks), *(["--cpu"] if cpu else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peers' process ended (exit code {self.proc.wait(60)})")
        got: dict[str, Any] = json.loads(line)
        return got

    def run(self, what: str) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return float(self._read()[what])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# -- mlmon -----------------------------------------------------------------------------------------


def mlmon_run(df: Any, train: Any, workers: int | None = None) -> None:
    """End to end, as the peers are timed: the reference from the training data (the peers fit
    on it, or read it in each report), then the evaluation (on evaluate's default threads: one
    per CPU, at most 8)."""
    import mlmon

    feats = [f"f{i}" for i in range(K)]
    ref = mlmon.Reference.from_data(train[feats], outputs=train["score"].to_numpy())
    mlmon.evaluate(df, outputs="score", labels="label", chunk=-(-len(df) // CHUNKS), task=mlmon.BinaryClassification(), reference=ref, workers=workers)


def mlmon_stages(df: Any, train: Any, repeats: int) -> list[tuple[str, float, float]]:
    """Where :func:`mlmon_run`'s time goes, evaluate on one thread (``workers=1``, so that the
    stages add up): seconds per stage (median and least of ``repeats``: the least is the run
    least disturbed by other jobs), measured by wrapping the functions each stage runs."""
    import mlmon
    from mlmon import offline
    from mlmon.features.component import FeatureComponent
    from mlmon.outputs import OutputComponent
    from mlmon.quality import QualityComponent
    from mlmon.reference import Reference

    spent: dict[str, float] = {}
    stages = [
        ("Reference.from_data (100k training rows)", Reference, "from_data"),
        ("features: quality, bins (drift), output drift", FeatureComponent, "ingest"),
        ("outputs: distribution, class ratio, expected quality", OutputComponent, "ingest"),
        ("labels: the join and the quality metrics", QualityComponent, "log_feedback"),
        ("predictions recorded for the join", QualityComponent, "ingest"),
        ("the chunk's row, read off its parts", offline._ChunkParts, "values"),
        ("evaluate, all of it", mlmon, "evaluate"),
    ]
    saved = []
    for label, owner, name in stages:
        fn = owner.__dict__[name]
        saved.append((owner, name, fn))
        inner = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn

        def wrapper(*a: Any, _f: Any = inner, _label: str = label, **k: Any) -> Any:
            t0 = CLOCK()
            try:
                return _f(*a, **k)
            finally:
                spent[_label] = spent.get(_label, 0.0) + CLOCK() - t0

        setattr(owner, name, classmethod(wrapper) if isinstance(fn, classmethod) else wrapper)
    runs: list[dict[str, float]] = []
    try:
        for _ in range(repeats):
            spent.clear()
            t0 = CLOCK()
            mlmon_run(df, train, workers=1)  # one thread: the stages add up to the whole
            runs.append({**spent, "end to end": CLOCK() - t0})
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)
    for r in runs:
        inside = sum(v for k, v in r.items() if k != "end to end" and not k.startswith(("Reference", "evaluate")))
        r["evaluate, the rest (slicing, batches, result frame)"] = r.get("evaluate, all of it", 0.0) - inside
    order = [label for label, _, _ in stages[:-1]] + ["evaluate, the rest (slicing, batches, result frame)", "evaluate, all of it", "end to end"]
    return [(k, statistics.median(r.get(k, 0.0) for r in runs), min(r.get(k, 0.0) for r in runs)) for k in order]


def _threads() -> int:
    """The threads ``mlmon.evaluate`` uses on a pandas frame by default here."""
    from mlmon.offline import _workers

    return _workers(None)


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
    ap.add_argument("--stages", action="store_true", help="also time mlmon's stages (extra runs)")
    ap.add_argument("--cpu", action="store_true", help="CPU seconds of each process instead of wall time (steadier on a shared machine; set OPENBLAS_NUM_THREADS=1)")
    ap.add_argument("--evidently-chunks", type=int, default=None, help="chunks Evidently is timed on, scaled to 10 (default: 10 with --quick, else 2)")
    ap.add_argument("--peers", nargs=2, metavar=("DATA", "REF"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    if args.cpu:
        global CLOCK
        CLOCK = time.process_time
    if args.peers:
        peers_main(args.peers[0], args.peers[1], args.evidently_chunks or CHUNKS)
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

    what = "CPU seconds" if args.cpu else "seconds"
    print(f"## Offline evaluation, {n:,} rows x {K} features, {CHUNKS} chunks (median of {repeats}; {what})\n")
    t_mlmon: list[float] = []
    peers: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_path, ref_path = os.path.join(tmp, "data.parquet"), os.path.join(tmp, "ref.parquet")
        df.drop(columns=["ts"]).to_parquet(data_path)
        train.drop(columns=["ts"]).to_parquet(ref_path)
        proc = None
        if os.path.exists(args.peers_python):
            try:
                proc = Peers(args.peers_python, data_path, ref_path, ev_chunks, args.cpu)
            except (OSError, RuntimeError) as exc:
                print(f"(peers failed: {exc})\n")
        else:
            print(f"(no peers' virtualenv at {args.peers_python})\n")
        try:
            # one untimed run each (first-call costs: lazy imports, caches), then mlmon and
            # NannyML in turns, so that both see the same load
            mlmon_run(df, train)
            if proc is not None:
                proc.run("warm")
            for _ in range(repeats):
                t_mlmon.append(timed(lambda: mlmon_run(df, train), 1))
                if proc is not None:
                    peers.setdefault("nannyml", []).append(proc.run("nannyml"))
            if proc is not None:
                peers["evidently"] = [proc.run("evidently") for _ in range(repeats)]
        finally:
            if proc is not None:
                proc.close()
    labels = {
        "evidently": f"Evidently DataDriftPreset (one report per chunk; {ev_chunks} of {CHUNKS} timed, scaled)",
        "nannyml": "NannyML UnivariateDriftCalculator + PerformanceCalculator",
    }
    t_ml = statistics.median(t_mlmon)
    rows = [("mlmon.evaluate", t_ml)] + [(labels[k], statistics.median(v)) for k, v in peers.items()]
    print("| tool | seconds | rows/s | mlmon's speed-up |")
    print("|---|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.2f} | {n / t:,.0f} | {t / t_ml:.1f}x |")
    if "nannyml" in peers:
        paired = statistics.median(p / m for p, m in zip(peers["nannyml"], t_mlmon, strict=True))
        print(f"\nmlmon against NannyML, the faster peer: {statistics.median(peers['nannyml']) / t_ml:.1f}x "
              f"(median of the {repeats} runs in turn: {paired:.1f}x; goal: >= 10x)")  # fmt: skip
    print(f"mlmon runs: {', '.join(f'{t:.2f}' for t in t_mlmon)} s; NannyML: {', '.join(f'{t:.2f}' for t in peers.get('nannyml', []))} s")
    if args.stages:
        print(f"\n### Where mlmon's time goes ({repeats} runs, evaluate on one thread: workers=1)\n")
        print("| stage | seconds (median) | seconds (least) | share (median) |")
        print("|---|---:|---:|---:|")
        stages = mlmon_stages(df, train, repeats)
        total = stages[-1][1]
        for name, med, least in stages:
            print(f"| {name} | {med:.3f} | {least:.3f} | {med / total:.0%} |")

    if args.no_dask:
        return
    workers = 4
    t_pandas, t_dask, mem, parts, m = dask_part(m, ref, workers, 1)
    print(f"\n## Dask: {m:,} rows, LocalCluster of {workers} worker processes x 1 thread, {parts} partitions, on {os.cpu_count()} cores\n")
    print("| run | seconds | rows/s | speed-up | peak RSS per worker (MiB) |")
    print("|---|---:|---:|---:|---|")
    print(f"| pandas, one process ({_threads()} threads) | {t_pandas:.2f} | {m / t_pandas:,.0f} | 1.0x | |")
    print(f"| Dask, {workers} workers | {t_dask:.2f} | {m / t_dask:,.0f} | {t_pandas / t_dask:.2f}x | {', '.join(f'{x:.0f}' for x in sorted(mem))} |")


if __name__ == "__main__":
    sys.exit(main())
