"""``python -m mlmon demo``: a simulated model served from several threads, watched by mlmon.

The run is cut into phases by the share of ``--seconds`` elapsed, so every metric moves:

| share      | what happens                                                            |
|------------|-------------------------------------------------------------------------|
| 0.00-0.15  | warm-up: 2 worker threads, healthy                                      |
| 0.15-0.20  | one request hangs for a while: in-flight and oldest-in-flight rise      |
| 0.25-0.45  | slowdown: every call +40 ms, over the 25 ms budget; a cache grows (RSS) |
| 0.50       | scale-out: 2 more worker threads (threads, calls/s)                     |
| 0.55-1.00  | feature x2 drifts by +1.5 sigma against the training reference          |
| 0.60-0.72  | error burst: 30% of calls raise; bad requests logged to files (to 0.85) |
| 0.72-1.00  | recovery                                                                |
| 0.80-1.00  | concept change: labels stop following the model, precision drops        |

An alert rule on the p99 latency goes pending, fires during the slowdown and resolves after it;
one on precision watches the concept change. Every snapshot is written to a JSON-lines log, and
the run ends by turning that log into a self-contained HTML report.

True labels arrive 0.2 s after each prediction from a label thread, joined by request id.
Only numpy: the model is a fixed logistic regression on five features.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import mlmon
from mlmon import alerts
from mlmon.emitters import ConsoleEmitter, JsonlEmitter

__all__ = ["main", "run"]

N_FEATURES = 5


class Model:
    """A logistic regression with fixed weights, and the demo's injected faults."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(0, 1, N_FEATURES)
        self.bias = -0.2
        self.extra_latency = 0.0
        self.error_rate = 0.0
        self.hang_once = threading.Event()

    def scores(self, X: np.ndarray) -> np.ndarray:
        """The model's scores without the injected faults (the truth before a concept change)."""
        return 1.0 / (1.0 + np.exp(-(X @ self.weights + self.bias)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.hang_once.is_set():
            self.hang_once.clear()
            time.sleep(2.0)
        z = X @ self.weights + self.bias
        time.sleep(0.002 + 0.0001 * len(X) + self.extra_latency)  # the model's own work
        if self.error_rate and np.random.random() < self.error_rate:
            raise ValueError("malformed feature vector")
        return 1.0 / (1.0 + np.exp(-z))


def run(
    seconds: float = 20.0,
    flush_interval: float = 2.0,
    jsonl: str | None = None,
    quiet: bool = False,
    report: str | None = None,
) -> mlmon.Snapshot:
    """Serve the simulated model for ``seconds`` and return the final snapshot.

    Snapshots go to the console (unless ``quiet``) and to the JSON-lines file ``jsonl`` (a temp
    file when None); ``report`` is the HTML report written at the end (next to the log when None,
    "" for none).
    """
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    log_path = jsonl or os.path.join(tempfile.mkdtemp(prefix="mlmon-demo-"), "metrics.jsonl")
    emitters: list[Any] = [] if quiet else [ConsoleEmitter()]
    emitters.append(JsonlEmitter(log_path))
    window = flush_interval * 3
    events: list[alerts.AlertEvent] = []

    def on_alert(event: alerts.AlertEvent) -> None:
        events.append(event)
        if not quiet:
            print(f" ALERT {event.state.upper():8s} {event.rule}: {event.message}")

    rules = [
        alerts.Threshold(
            "mlmon_latency_seconds", quantile=0.99, above=0.025, for_=flush_interval,
            resolve_after=flush_interval, min_samples=20, name="latency_p99_over_budget",
        ),
        alerts.PercentDrop(
            "mlmon_precision", percent=15, baseline=alerts.Baseline.trailing(seconds / 2),
            for_=0, min_samples=200, name="precision_drop",
        ),
    ]  # fmt: skip
    model = Model()
    stop = threading.Event()
    rng_lock = threading.Lock()
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, (20_000, N_FEATURES))
    names = [f"x{i}" for i in range(N_FEATURES)]
    reference = mlmon.Reference.from_data(train, feature_names=names, outputs=model.scores(train))
    mon = mlmon.Monitor(
        "demo",
        version="1.0",
        task=mlmon.BinaryClassification(threshold=0.5),
        reference=reference,
        window=window,
        flush_interval=flush_interval,
        latency_budget=0.025,
        emitters=emitters,
        rules=rules,
        alert_sinks=[alerts.CallbackSink(on_alert, states=("pending", "firing", "resolved"))],
    )
    world = {"drift": 0.0, "concept_flip": False}
    labels_due: queue.Queue[tuple[float, list[int], np.ndarray]] = queue.Queue(maxsize=10_000)
    next_id = [0]

    @mon.track(features="X", ids="request_ids")
    def predict(X: np.ndarray, request_ids: list[int]) -> np.ndarray:
        return model.predict_proba(X)

    def worker() -> None:
        while not stop.is_set():
            with rng_lock:
                n = int(rng.integers(1, 33))
                X = rng.normal(0, 1, (n, N_FEATURES))
                X[:, 2] += world["drift"]
                ids = list(range(next_id[0], next_id[0] + n))
                next_id[0] += n
                truth = model.scores(X) if not world["concept_flip"] else model.scores(-X)
                labels = (rng.random(n) < truth).astype(int)
            try:
                predict(X, ids)
            except ValueError:
                continue
            try:
                labels_due.put_nowait((time.monotonic() + 0.2, ids, labels))
            except queue.Full:
                pass

    def label_pipeline() -> None:
        while not stop.is_set():
            try:
                due, ids, labels = labels_due.get(timeout=0.1)
            except queue.Empty:
                continue
            time.sleep(max(0.0, due - time.monotonic()))
            mon.log_feedback(ids, labels)

    workers = [threading.Thread(target=worker, name=f"demo-worker-{i}", daemon=True) for i in range(2)]
    workers.append(threading.Thread(target=label_pipeline, name="demo-labels", daemon=True))
    for t in workers:
        t.start()
    cache: list[bytes] = []
    bad_request_logs: list[Any] = []
    tmpdir = tempfile.mkdtemp(prefix="mlmon-demo-")
    start = time.monotonic()
    hung = scaled = False
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            share = elapsed / seconds
            if not hung and share >= 0.15:
                model.hang_once.set()
                hung = True
            model.extra_latency = 0.04 if 0.25 <= share < 0.45 else 0.0
            if 0.25 <= share < 0.45 and len(cache) < 40:
                cache.append(os.urandom(1 << 20))  # a feature cache that grows: RSS moves
            elif share >= 0.45:
                cache.clear()
            if not scaled and share >= 0.5:
                more = [threading.Thread(target=worker, name=f"demo-worker-{i}", daemon=True) for i in (2, 3)]
                for t in more:
                    t.start()
                workers += more
                scaled = True
            model.error_rate = 0.3 if 0.6 <= share < 0.72 else 0.0
            world["drift"] = 1.5 if share >= 0.55 else 0.0
            world["concept_flip"] = share >= 0.8
            if 0.6 <= share < 0.85 and len(bad_request_logs) < 20:
                bad_request_logs.append(open(os.path.join(tmpdir, f"bad-{len(bad_request_logs)}.log"), "w"))  # noqa: SIM115
            elif share >= 0.85:
                while bad_request_logs:
                    bad_request_logs.pop().close()
            time.sleep(0.05)
    finally:
        stop.set()
        for t in workers:
            t.join(5)
        for f in bad_request_logs:
            f.close()
    mon.close()  # the last flush: one more table
    final = mon.snapshot()
    html = None
    if report != "":
        from mlmon.report import write as write_report

        html = report or os.path.splitext(log_path)[0] + ".html"
        write_report(log_path, html)
    if not quiet:
        print(summary(final, seconds))
        transitions = " → ".join(f"{e.state}" for e in events if e.rule == "latency_p99_over_budget")
        print(f"  alert latency_p99_over_budget: {transitions or 'never pending'}")
        print(f"  metrics log: {log_path}")
        if html:
            print(f"  HTML report: {html}")
    return final


def summary(snap: mlmon.Snapshot, seconds: float) -> str:
    """A few lines on the whole run."""
    errors = ", ".join(f"{s.label('error_type')}={s.value:.0f}" for s in snap.select("mlmon_errors_total")) or "none"
    calls = snap.get("mlmon_calls_total") or 0.0
    drifted = [str(s.label("feature")) for s in snap.select("mlmon_feature_drift_status") if s.value >= 2]
    lines = [
        "",
        f"mlmon demo: {seconds:.0f}s served {calls:,.0f} calls, {snap.get('mlmon_rows_total') or 0:,.0f} rows",
        f"  errors by type: {errors}",
        f"  calls over the 25 ms budget: {snap.get('mlmon_slow_calls_total') or 0:,.0f}",
        f"  latency buckets: {snap.get('mlmon_latency_seconds_bucket', le='0.025') or 0:,.0f} of "
        f"{snap.get('mlmon_latency_seconds_count') or 0:,.0f} calls within 25 ms",
        f"  labels joined: {snap.get('mlmon_labels_total') or 0:,.0f}; precision over the last window "
        f"{_fmt(snap.get('mlmon_precision'))} (estimated from scores: {_fmt(snap.get('mlmon_estimated_precision'))})",
        f"  drifting features: {', '.join(drifted) or 'none'}",
        f"  mlmon internal errors: {snap.total('mlmon_internal_errors_total'):.0f}, "
        f"dropped: {snap.total('mlmon_dropped_total'):.0f}",
    ]
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlmon demo", description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to serve (default 20)")
    ap.add_argument("--flush-interval", type=float, default=2.0, help="seconds between tables (default 2)")
    ap.add_argument("--jsonl", default=None, help="write every snapshot to this JSON-lines file (default: a temp file)")
    ap.add_argument("--report", default=None, help="the HTML report to write at the end (default: next to the log)")
    ap.add_argument("--quiet", action="store_true", help="print nothing")
    args = ap.parse_args(argv)
    run(args.seconds, args.flush_interval, args.jsonl, args.quiet, args.report)
    return 0
