"""One process of a fleet for tests/integration/test_fleet_processes.py (run as a script).

Serves its share of a deterministic stream (calls ``k`` with ``k % workers == index``), logs the
labels of the *next* worker's calls (so every label joins through Redis across processes), then
keeps running, flushing in the background, until it is killed or told to stop by a file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import mlmon
from mlmon.alerts import CallbackSink, Threshold
from mlmon.emitters import JsonlEmitter
from mlmon.stores import RedisStore

N_CALLS = 240
ROWS = 50


def stream() -> tuple[np.ndarray, np.ndarray, np.ndarray, mlmon.Reference]:
    rng = np.random.default_rng(42)
    n = N_CALLS * ROWS
    X = rng.normal(size=(n, 4))
    scores = rng.random(n)
    labels = (rng.random(n) < scores).astype(int)
    ref = mlmon.Reference.from_data(rng.normal(0.1, 1.0, size=(3000, 4)), outputs=rng.random(3000), feature_names=list("abcd"))
    return X, scores, labels, ref


def build(url: str, instance: str, out: Path, interval: float, events: Path | None) -> mlmon.Monitor:
    _, _, _, ref = stream()
    sinks = [] if events is None else [CallbackSink(lambda e: _append(events, e))]
    fleet = mlmon.Fleet(rules=[Threshold("mlmon_error_ratio", above=0.05, name="fleet_errors", min_samples=0)], sinks=sinks, emit_counters=True)
    return mlmon.Monitor(
        "fleet8", task=mlmon.BinaryClassification(threshold=0.5), reference=ref, instance=instance,
        emitters=[JsonlEmitter(str(out))], flush_interval=interval, window=600.0,
        store=RedisStore(url, deadline=5.0, retry_for=60.0), fleet=fleet,
    )  # fmt: skip


def _append(path: Path, event: object) -> None:
    with path.open("a") as f:
        f.write(json.dumps({"state": event.state, "rule": event.rule, "instance": event.instance, "pid": __import__("os").getpid()}) + "\n")  # type: ignore[attr-defined]


def serve(mon: mlmon.Monitor, mine: Callable[[int], bool]) -> None:
    """Make the calls ``k`` of the stream for which ``mine(k)``: a batch of ``ROWS`` rows each,
    and a failing call every eighth."""
    X, scores, _, _ = stream()

    @mon.track(features="X", ids="ids")
    def predict(X: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return scores[ids]

    @mon.track
    def failing() -> None:
        raise RuntimeError("boom")

    for k in range(N_CALLS):
        if mine(k):
            ids = np.arange(k * ROWS, (k + 1) * ROWS)
            predict(X[ids], ids)
            if k % 8 == 0:
                try:
                    failing()
                except RuntimeError:
                    pass


def main() -> None:
    url, index, workers, out, interval, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5]), Path(sys.argv[6])
    events = Path(sys.argv[7]) if len(sys.argv) > 7 else None
    _, _, labels, _ = stream()
    mon = build(url, f"w{index}", out, interval, events)
    serve(mon, lambda k: k % workers == index)
    time.sleep(2 * interval)  # let every worker write its predictions to Redis
    for k in range(N_CALLS):
        if k % workers == (index + 1) % workers:
            ids = np.arange(k * ROWS, (k + 1) * ROWS)
            mon.log_feedback(ids, labels[ids])
    deadline = time.monotonic() + 120.0
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    mon.close()


if __name__ == "__main__":
    main()
