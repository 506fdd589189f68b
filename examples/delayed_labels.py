"""Delayed labels: precision from labels that arrive later, from another thread, joined by id.

A fixed rule model scores requests; the true labels arrive ~0.3 s later from a "label pipeline"
thread. Halfway through, the concept changes (what counts as positive moves), and the precision
mlmon computes over its rolling window falls while the model's own scores look the same.

Run: python examples/delayed_labels.py
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

import mlmon

SECONDS = 6.0
rng = np.random.default_rng(7)
mon = mlmon.Monitor(
    "rule_model",
    task=mlmon.BinaryClassification(threshold=0.5),
    window=2.0,
    flush_interval=0.5,
)


@mon.track(ids="request_ids")
def predict(X: np.ndarray, request_ids: list[int]) -> np.ndarray:
    """Probability that x0 > 0 (the rule the model learned)."""
    return 1.0 / (1.0 + np.exp(-4.0 * X[:, 0]))


labels_in_flight: queue.Queue[tuple[float, list[int], np.ndarray]] = queue.Queue()


def label_pipeline(stop: threading.Event) -> None:
    """Delivers each batch's true labels 0.3 s after the prediction."""
    while not stop.is_set() or not labels_in_flight.empty():
        try:
            due, ids, labels = labels_in_flight.get(timeout=0.05)
        except queue.Empty:
            continue
        time.sleep(max(0.0, due - time.monotonic()))
        mon.log_feedback(ids, labels)


stop = threading.Event()
labeller = threading.Thread(target=label_pipeline, args=(stop,))
labeller.start()

start = time.monotonic()
next_id = 0
boundary = 0.0  # the concept: positive when x0 > boundary
report_at = start + 1.0
history: list[tuple[float, float]] = []
while (elapsed := time.monotonic() - start) < SECONDS:
    if elapsed > SECONDS / 2:
        boundary = 0.8  # concept change: fewer true positives among high scores
    X = rng.normal(size=(50, 3))
    ids = list(range(next_id, next_id + 50))
    next_id += 50
    predict(X, ids)
    labels_in_flight.put((time.monotonic() + 0.3, ids, (X[:, 0] > boundary).astype(int)))
    time.sleep(0.01)
    if time.monotonic() >= report_at:
        snap = mon.snapshot()
        precision = snap.get("mlmon_precision")
        if precision is not None:
            history.append((elapsed, precision))
            print(
                f"t={elapsed:4.1f}s precision={precision:.3f} recall={snap.get('mlmon_recall'):.3f} "
                f"labels={snap.get('mlmon_labels_window'):.0f} "
                f"delay p50={snap.get('mlmon_label_delay_seconds', quantile='0.5'):.2f}s"
            )
        report_at += 1.0

stop.set()
labeller.join()
mon.close()
before = [p for t, p in history if t < SECONDS / 2]
after = [p for t, p in history if t > SECONDS / 2 + 2.5]
print(f"precision before the change {min(before):.3f}, after {max(after):.3f}")
assert max(after) < min(before) - 0.1, "precision should fall after the concept change"
