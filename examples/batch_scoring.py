"""A batch job: score a large data set in chunks, with labels arriving while it runs.

The job reads 1,000,000 rows in chunks of 50,000, scores each chunk inside
``with mon.track(features=X) as call:`` and stores the generated prediction ids
(``call.ids``) next to the scores, as it would in its output table. A review team labels a 5%
sample of the scored rows; their labels come back three chunks later and are joined by id. One
chunk is corrupt and fails: the failure is counted and the job goes on. The second half of the
input comes from a new source where one feature has moved, and the drift shows. Every second the monitor
appends a snapshot to a JSON-lines file; at the end the job prints a summary read back from
that file's last line, which is what a scheduler or a dashboard would look at.

Run: python examples/batch_scoring.py
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from pathlib import Path

import numpy as np

import mlmon
from mlmon.emitters import JsonlEmitter

ROWS, CHUNK, N_FEATURES = 1_000_000, 50_000, 8
LABEL_LAG, REVIEWED = 3, 0.05
FEATURES = [f"x{j}" for j in range(N_FEATURES)]
rng = np.random.default_rng(3)
weights = rng.normal(size=N_FEATURES)


def read_chunk(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``i`` of the input (features, and the truth the reviewers will find)."""
    X = rng.normal(size=(CHUNK, N_FEATURES))
    if i >= 10:
        X[:, 2] += 1.0  # the second half comes from a new source where x2 has moved
    if i == 7:
        X[100:200, 5] = np.nan  # a corrupt partition
    truth = (rng.random(CHUNK) < 1 / (1 + np.exp(-(X @ weights)))).astype(int)
    return X, truth


def score(X: np.ndarray) -> np.ndarray:
    """The model: a logistic scorer that refuses non-finite input."""
    if not np.isfinite(X).all():
        raise ValueError("non-finite features")
    return 1 / (1 + np.exp(-(X @ weights)))


train = rng.normal(size=(20_000, N_FEATURES))
reference = mlmon.Reference.from_data(train, feature_names=FEATURES, outputs=score(train))

out_dir = tempfile.TemporaryDirectory(prefix="mlmon-batch-")
snapshots = Path(out_dir.name) / "scoring.jsonl"
mon = mlmon.Monitor(
    "nightly_scoring",
    version="2024-06-01",
    task=mlmon.BinaryClassification(threshold=0.5),
    reference=reference,
    window=3600.0,  # one window covers the whole job
    flush_interval=1.0,
    emitters=[JsonlEmitter(snapshots)],
)

pending_labels: deque[tuple[np.ndarray, np.ndarray]] = deque()
scored_rows = failed_chunks = 0
for i in range(ROWS // CHUNK):
    X, truth = read_chunk(i)
    try:
        with mon.track(features=X) as call:
            scores = score(X)
            call.outputs(scores)
    except ValueError as exc:
        failed_chunks += 1
        print(f"chunk {i:2d}: skipped ({exc})")
        continue
    ids = np.asarray(call.ids)  # one generated id per row: written out with the scores
    scored_rows += len(ids)
    sample = rng.random(CHUNK) < REVIEWED
    pending_labels.append((ids[sample], truth[sample]))
    if len(pending_labels) > LABEL_LAG:  # reviews come back three chunks later
        mon.log_feedback(*pending_labels.popleft())
while pending_labels:
    mon.log_feedback(*pending_labels.popleft())
mon.close()  # the last flush writes the final snapshot

lines = snapshots.read_text().splitlines()
final = mlmon.Snapshot.from_dict(json.loads(lines[-1]))
calls, rows = final.get("mlmon_calls_total"), final.get("mlmon_rows_total")
errors = final.total("mlmon_errors_total")
print(f"{len(lines)} snapshots in {snapshots}")
print(f"chunks={calls:.0f} failed={errors:.0f} rows={rows:.0f} "
      f"chunk latency p50={1000 * final.get('mlmon_latency_seconds', quantile='0.5'):.1f} ms")
print(f"output mean={final.get('mlmon_output_mean'):.3f} (reference {reference.outputs.mean:.3f}) "
      f"positive rate={final.get('mlmon_output_class_ratio', **{'class': '1'}):.3f}")
print(f"labels={final.get('mlmon_labels_total'):.0f} coverage={final.get('mlmon_label_coverage_ratio'):.3f} "
      f"precision={final.get('mlmon_precision'):.3f} recall={final.get('mlmon_recall'):.3f}")
drifted = [s.label("feature") for s in final.select("mlmon_feature_drift_status") if s.value == 2]
print(f"drifted features: {drifted}")
out_dir.cleanup()

assert (calls, errors, failed_chunks) == (ROWS // CHUNK, 1, 1)
assert rows == scored_rows  # a failed call has no prediction rows
assert drifted == ["x2"]
