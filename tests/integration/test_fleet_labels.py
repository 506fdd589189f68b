"""Labels join in any worker: real uvicorn and gunicorn fleets sharing a real Redis.

Each served worker creates ``Monitor(store=RedisStore(url), task=BinaryClassification())``
writing its own JSON-lines file (``<pid>.jsonl``), and closes it at shutdown (the ASGI
``lifespan``; gunicorn's ``worker_exit``/``on_exit`` hooks). The test sends 20,000 predictions
with ids (POST /predict, 50 rows a request, a new connection each, so the kernel spreads them over
the workers), then their labels in shuffled batches (POST /feedback): with N workers about
(N-1)/N of the labels land in a worker that did not make their prediction, many before that
worker wrote it to Redis. The labels of the first 500 predictions are even sent before those
predictions: they join only because the store retries a label for ``retry_for`` seconds. After
SIGTERM, every worker's last snapshot is read: the summed ``mlmon_labels_total`` is at least
99.9% of the labels, and the fleet precision, recall and F1 rebuilt from the summed
``mlmon_confusion_total`` cells equal scikit-learn's on the same (prediction, label) pairs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _web import GUNICORN_CONF, free_listener
from _web import serving as web_serving
from sklearn.metrics import precision_recall_fscore_support

from mlmon import Snapshot

pytestmark = pytest.mark.skipif(
    sys.platform == "win32"
    or any(
        importlib.util.find_spec(m) is None for m in ("uvicorn", "fastapi", "gunicorn", "flask")
    ),
    reason="needs uvicorn, fastapi, gunicorn and flask (POSIX)",
)

ROOT = Path(__file__).resolve().parents[2]  # the servers import this checkout's mlmon
N = 20_000  # predictions, each with its own id and label
ROWS = 50  # predictions per request
CLIENTS = 8  # concurrent client threads
EARLY = 10  # batches whose labels are sent before their predictions

# The model is the identity on a score the client sends, so the client knows every prediction
# (score >= 0.5 is class 1, BinaryClassification's default threshold).
COMMON = """
import os

import numpy as np

import mlmon
from mlmon.emitters import JsonlEmitter
from mlmon.stores import RedisStore

mon = mlmon.Monitor(
    "fleet", task=mlmon.BinaryClassification(), flush_interval=1.0, window=3600.0,
    store=RedisStore(os.environ["T_REDIS"], retry_for=30.0, deadline=2.0) if os.environ["T_REDIS"] else None,
    emitters=[JsonlEmitter(os.path.join(os.environ["T_OUT"], f"{os.getpid()}.jsonl"))],
)


@mon.track(ids="ids")
def model(scores: np.ndarray, ids: list[str]) -> np.ndarray:
    return scores


def predict_rows(body: dict) -> dict:
    ids = [f"{body['rid']}/{i}" for i in range(len(body["scores"]))]
    model(np.asarray(body["scores"], dtype=np.float64), ids)
    return {"pid": os.getpid(), "ids": ids}
"""

FASTAPI_APP = (
    COMMON
    + """
from fastapi import FastAPI, Request

from mlmon.integrations.asgi import lifespan

app = FastAPI(lifespan=lifespan(mon))


@app.post("/predict")
async def predict(request: Request) -> dict:
    return predict_rows(await request.json())


@app.post("/feedback")
async def feedback(request: Request) -> dict:
    body = await request.json()
    mon.log_feedback(body["ids"], body["labels"])
    return {"pid": os.getpid()}
"""
)

FLASK_APP = (
    COMMON
    + """
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/predict")
def predict():
    return jsonify(predict_rows(request.get_json()))


@app.post("/feedback")
def feedback():
    body = request.get_json()
    mon.log_feedback(body["ids"], body["labels"])
    return jsonify(pid=os.getpid())
"""
)

def post(url: str, body: Any, timeout: float = 20.0) -> dict[str, Any]:
    """One POST on a new connection (urllib sends ``Connection: close``)."""
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


@contextmanager
def serving(
    tmp_path: Path, cmd: list[str], listener: socket.socket, redis_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in ``tmp_path`` with the listener passed on; killed at the end if still running."""
    (tmp_path / "out").mkdir()
    with web_serving(tmp_path, cmd, listener, {"T_OUT": str(tmp_path / "out"), "T_REDIS": redis_url}) as proc:
        yield proc


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            post(url, {"ids": [], "labels": []}, timeout=2.0)
            return
        except OSError:
            assert proc.poll() is None, f"the server exited ({proc.returncode})"
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.1)


def wait_cycles(
    out: Path, proc: subprocess.Popen[bytes], cycles: int, timeout: float = 15.0
) -> None:
    """Wait until every worker has emitted ``cycles`` more snapshots (whole cycles run since)."""
    lines = {p: len(p.read_text().splitlines()) for p in out.glob("*.jsonl")}
    deadline = time.monotonic() + timeout
    while any(len(p.read_text().splitlines()) < n + cycles for p, n in lines.items()):
        assert proc.poll() is None and time.monotonic() < deadline, "the workers stopped emitting"
        time.sleep(0.1)


def last_snapshots(out: Path) -> dict[int, Snapshot]:
    """``{pid: the last snapshot}`` from every worker's JSON-lines file."""
    snaps = {}
    for path in out.glob("*.jsonl"):
        lines = path.read_text().splitlines()
        if lines:
            snaps[int(path.stem)] = Snapshot.from_dict(json.loads(lines[-1]))
    return snaps


def retried_labels(out: Path) -> float:
    """The most labels any worker still held after one of its syncs (retried: not found yet)."""
    most = 0.0
    for path in out.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            snap = Snapshot.from_dict(json.loads(line))
            for s in snap.samples:
                if (
                    s.name == "mlmon_store_buffered_items"
                    and dict(s.labels).get("buffer") == "store_labels"
                ):
                    most = max(most, s.value)
    return most


def total(snaps: dict[int, Snapshot], name: str, **labels: str) -> float:
    """The sum over workers of one counter (a missing cell counts 0)."""
    want = tuple(sorted(labels.items()))
    return sum(
        s.value
        for snap in snaps.values()
        for s in snap.samples
        if s.name == name and tuple(sorted(s.labels)) == want
    )


class Fleet:
    """What a run sent and what the workers' final snapshots say."""

    def __init__(self, labels: np.ndarray, predicted: np.ndarray, snaps: dict[int, Snapshot],
                 predicted_by: Counter[int], labelled_by: Counter[int], requests: int, retried: float,
                 early_by: Counter[int]) -> None:  # fmt: skip
        self.labels, self.predicted, self.snaps = labels, predicted, snaps
        self.predicted_by, self.labelled_by, self.requests, self.retried = (
            predicted_by,
            labelled_by,
            requests,
            retried,
        )
        self.early_by = early_by


def run_fleet(tmp_path: Path, cmd: list[str], listener: socket.socket, redis_url: str, workers: int,
              join_wait: float = 20.0) -> Fleet:  # fmt: skip
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    rng = np.random.default_rng(11)
    scores = rng.random(N)
    labels = (rng.random(N) < np.where(scores >= 0.5, 0.75, 0.3)).astype(int)
    started = time.monotonic()
    with serving(tmp_path, cmd, listener, redis_url) as proc:
        wait_ready(f"{base}/feedback", proc)
        deadline = time.monotonic() + 30  # every worker is up once it has emitted a snapshot
        while len(last_snapshots(tmp_path / "out")) < workers:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the workers did not all start"
            )
            time.sleep(0.1)
        # The labels of the first EARLY batches are sent before their predictions exist anywhere:
        # they can only join through the store's retries (retry_for), in whichever worker got them.
        with ThreadPoolExecutor(CLIENTS) as pool:
            early = list(
                pool.map(
                    lambda k: post(
                        f"{base}/feedback",
                        {
                            "ids": [f"req-{k}/{i}" for i in range(ROWS)],
                            "labels": labels[k * ROWS : (k + 1) * ROWS].tolist(),
                        },
                    ),
                    range(EARLY),
                )
            )
        if redis_url:  # every worker looks its early labels up (a whole cycle) and finds nothing
            wait_cycles(tmp_path / "out", proc, 2)
            snaps = last_snapshots(tmp_path / "out")
            assert total(snaps, "mlmon_labels_total") == 0  # not joined: no prediction yet
            assert total(snaps, "mlmon_labels_unmatched_total") == 0  # not given up: retried
        batches = [
            (f"req-{k}", scores[k * ROWS : (k + 1) * ROWS].tolist()) for k in range(N // ROWS)
        ]
        with ThreadPoolExecutor(CLIENTS) as pool:
            replies = list(
                pool.map(lambda b: post(f"{base}/predict", {"rid": b[0], "scores": b[1]}), batches)
            )
        ids = [i for reply in replies for i in reply["ids"]]
        assert len(ids) == len(set(ids)) == N
        # Labels in shuffled batches: a label and its prediction rarely meet in the same worker.
        order = EARLY * ROWS + rng.permutation(N - EARLY * ROWS)
        chunks = [order[k : k + ROWS] for k in range(0, N, ROWS)]
        with ThreadPoolExecutor(CLIENTS) as pool:
            fed = list(
                pool.map(
                    lambda c: post(
                        f"{base}/feedback",
                        {"ids": [ids[i] for i in c], "labels": labels[c].tolist()},
                    ),
                    chunks,
                )
            )
        # Bounded wait for the workers' 1 s cycles to join the labels (some are being retried,
        # their predictions still in another worker's buffer), then a graceful stop.
        deadline = time.monotonic() + join_wait
        while (
            total(last_snapshots(tmp_path / "out"), "mlmon_labels_total") < N
            and time.monotonic() < deadline
        ):
            assert proc.poll() is None, "the server died"
            time.sleep(0.2)
        # One last unlabelled request right before the stop: only a cycle run at shutdown (the
        # lifespan, gunicorn's worker_exit) can count it in its worker's last snapshot.
        post(f"{base}/predict", {"rid": "last", "scores": [0.5] * ROWS})
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    fleet = Fleet(labels, (scores >= 0.5).astype(int), last_snapshots(tmp_path / "out"),
                  Counter(r["pid"] for r in replies), Counter(r["pid"] for r in fed + early), len(batches),
                  retried_labels(tmp_path / "out"), Counter(r["pid"] for r in early))  # fmt: skip
    print(f"{time.monotonic() - started:.1f} s; predictions per worker {dict(fleet.predicted_by)}, labels per "
          f"worker {dict(fleet.labelled_by)}, most labels retried at once {fleet.retried:.0f}")  # fmt: skip
    return fleet


def check_fleet(fleet: Fleet, workers: int) -> None:
    snaps = fleet.snaps
    # Every worker served requests and wrote its final snapshot; the calls add up.
    assert len(fleet.predicted_by) == workers, fleet.predicted_by
    assert set(fleet.predicted_by) | set(fleet.labelled_by) <= set(snaps)
    assert total(snaps, "mlmon_calls_total") == fleet.requests + 1
    assert total(snaps, "mlmon_rows_total") == N + ROWS
    for pid, snap in snaps.items():  # each worker counts the labels that arrived in it
        assert snap.get("mlmon_labels_total") <= fleet.labelled_by[pid] * ROWS, pid
    # The EARLY * ROWS labels sent before their predictions (2.5% of all) joined through retries:
    # without them at most 97.5% could join.
    joined = total(snaps, "mlmon_labels_total")
    assert joined >= 0.999 * N, (joined, total(snaps, "mlmon_labels_unmatched_total"))
    cells = {
        (a, p): total(snaps, "mlmon_confusion_total", actual=str(a), predicted=str(p))
        for a in (0, 1)
        for p in (0, 1)
    }
    assert sum(cells.values()) == joined
    want = Counter(zip(fleet.labels.tolist(), fleet.predicted.tolist(), strict=True))
    assert all(0 <= want[c] - cells[c] for c in cells)  # a missing label is missing from one cell
    if joined == N:  # the usual case: every label joined, the fleet's quality is exact
        assert cells == {c: float(want[c]) for c in cells}
        tp, fp, fn = cells[1, 1], cells[0, 1], cells[1, 0]
        rebuilt = (tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn))
        sk = precision_recall_fscore_support(fleet.labels, fleet.predicted, average="binary")[:3]
        assert rebuilt == pytest.approx(sk, rel=1e-15, abs=0)
        assert rebuilt[:2] == tuple(sk[:2])  # the same divisions: bit for bit


def uvicorn_cmd(listener: socket.socket, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--fd", str(listener.fileno()), "--workers", str(workers),
            "--log-level", "warning", "--no-access-log", "app:app"]  # fmt: skip


def gunicorn_cmd(listener: socket.socket, workers: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--bind", f"fd://{listener.fileno()}", "--workers", str(workers),
            "--graceful-timeout", "15", "--log-level", "warning", "-c", "gunicorn_conf.py", "app:app"]  # fmt: skip


def test_uvicorn_two_workers_single_redis(tmp_path: Path, redis_server: Any) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(FASTAPI_APP))
    listener = free_listener()
    check_fleet(run_fleet(tmp_path, uvicorn_cmd(listener, 2), listener, redis_server.url, 2), 2)


def test_gunicorn_four_workers_single_redis(tmp_path: Path, redis_server: Any) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(FLASK_APP))
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    listener = free_listener()
    check_fleet(run_fleet(tmp_path, gunicorn_cmd(listener, 4), listener, redis_server.url, 4), 4)


def test_gunicorn_four_workers_redis_cluster(tmp_path: Path, redis_cluster: Any) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(FLASK_APP))
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    listener = free_listener()
    check_fleet(run_fleet(tmp_path, gunicorn_cmd(listener, 4), listener, redis_cluster.url, 4), 4)


def test_without_the_store_most_labels_miss_their_prediction(tmp_path: Path) -> None:
    """The control: the same fleet joining in process finds a label's prediction only when the
    label happens to land in the worker that made it (about 1 time in 2 with 2 workers)."""
    (tmp_path / "app.py").write_text(textwrap.dedent(FASTAPI_APP))
    listener = free_listener()
    fleet = run_fleet(tmp_path, uvicorn_cmd(listener, 2), listener, "", 2, join_wait=0.0)
    joined = total(fleet.snaps, "mlmon_labels_total")
    unmatched = total(fleet.snaps, "mlmon_labels_unmatched_total")
    assert joined + unmatched == N
    # Labels are shuffled, so worker w joins about (its labels) x (its share of the predictions).
    share = {w: n / fleet.requests for w, n in fleet.predicted_by.items()}
    shuffled = fleet.labelled_by - fleet.early_by  # the early labels cannot join in process
    expected = sum(n * ROWS * share.get(w, 0.0) for w, n in shuffled.items())
    assert abs(joined - expected) <= 0.03 * N, (joined, expected)
    assert joined <= 0.97 * N, joined


def test_the_fastapi_example_serves_two_workers_with_a_real_redis(redis_server: Any) -> None:
    """examples/fastapi_app.py with MLMON_REDIS_URL: its 2-worker demo checks every label joined."""
    env = {**os.environ, "MLMON_REDIS_URL": redis_server.url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fastapi_app.py")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "uvicorn --workers 2 with RedisStore: 2000/2000 labels joined" in proc.stdout, (
        proc.stdout
    )
    assert redis_server.client().dbsize() > 0  # the predictions did go through Redis
