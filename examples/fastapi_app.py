"""A FastAPI service: request ids become prediction ids, labels come back through /feedback.

- ``RequestIdMiddleware`` gives every request an id (the caller's ``X-Request-ID``, else a new
  one) and returns it in the response header; ``/predict`` uses it as the prediction id (one per
  row: ``<request id>/<row>`` for batches), so the caller can send the true label later.
- ``score()`` is the model, decorated with ``@mon.track(features="X", ids="ids")``.
- ``POST /feedback`` hands labels to ``mon.log_feedback``; ``GET /metrics`` serves what the
  monitor emits, in Prometheus' text format, on the application's own port.
- ``lifespan=lifespan(mon)`` closes the monitor when uvicorn shuts down (its last snapshot
  emitted). Without it a ``SIGTERM`` loses that snapshot: uvicorn raises the signal again after
  its graceful shutdown, which ends the process before ``atexit`` runs.
- With ``MLMON_REDIS_URL`` set, the monitor joins labels through a shared
  ``RedisStore``: then any number of workers or replicas can serve it, and a label POSTed to
  any of them joins the prediction whichever made it. ``MLMON_JSONL_DIR`` adds a JSON-lines
  file per worker (``<pid>.jsonl``) holding each of its snapshots.

Run as a script, it starts uvicorn on a free loopback port in a thread, sends real HTTP requests,
posts labels, reads ``/metrics`` back and checks it, then shuts down and checks that the
shutdown closed the monitor. With ``MLMON_REDIS_URL`` set it then also serves the app with
``uvicorn --workers 2``, sends predictions and their labels in shuffled batches to whichever
worker accepts them, stops it with ``SIGTERM`` and checks, from every worker's last snapshot,
that every label joined and that the fleet's precision and recall rebuilt from the summed
``mlmon_confusion_total`` counters are the ones computed from what was sent.

To serve it yourself (see docs/scale-out.md):
``cd examples && uvicorn fastapi_app:app`` (one worker: no store needed), or
``cd examples && MLMON_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn fastapi_app:app --workers 4``.

Run: python examples/fastapi_app.py   (needs fastapi and uvicorn)
     MLMON_REDIS_URL=redis://127.0.0.1:6379/0 python examples/fastapi_app.py   (and a Redis 7)
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import mlmon
from mlmon.emitters import Emitter, JsonlEmitter
from mlmon.integrations.asgi import (
    MetricsEndpoint,
    RequestIdMiddleware,
    current_request_id,
    lifespan,
)
from mlmon.stores import RedisStore

WEIGHTS = np.array([1.5, -2.0, 0.5])

REDIS_URL = os.environ.get("MLMON_REDIS_URL")  # several workers or replicas: labels join in Redis
JSONL_DIR = os.environ.get("MLMON_JSONL_DIR")

metrics = MetricsEndpoint()  # one process's numbers: with several workers a scrape reaches one
emitters: list[Emitter] = [metrics]
if JSONL_DIR:
    emitters.append(JsonlEmitter(os.path.join(JSONL_DIR, f"{os.getpid()}.jsonl")))
mon = mlmon.Monitor(
    "fraud_api",
    version="1",
    task=mlmon.BinaryClassification(threshold=0.5),
    flush_interval=0.5,  # short, so the demo below sees its numbers quickly; 10 s is usual
    latency_budget=0.05,
    emitters=emitters,
    store=RedisStore(REDIS_URL) if REDIS_URL else None,
)


@mon.track(features="X", ids="ids")
def score(X: np.ndarray, ids: list[str]) -> np.ndarray:
    """The model: probability of fraud for each row."""
    if not np.isfinite(X).all():
        raise ValueError("non-finite feature")
    return 1 / (1 + np.exp(-(X @ WEIGHTS)))


class PredictRequest(BaseModel):
    rows: list[list[float]]


class Feedback(BaseModel):
    ids: list[str]
    labels: list[int]


app = FastAPI(title="fraud scoring", lifespan=lifespan(mon))  # closes `mon` at shutdown
app.add_middleware(RequestIdMiddleware)
app.add_route("/metrics", metrics, include_in_schema=False)


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, Any]:
    rid = current_request_id()
    X = np.asarray(request.rows, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(WEIGHTS):
        raise HTTPException(422, f"rows must have {len(WEIGHTS)} features each")
    ids = [f"{rid}"] if len(X) == 1 else [f"{rid}/{i}" for i in range(len(X))]
    try:
        scores = score(X, ids)
    except ValueError as exc:  # counted by mlmon as mlmon_errors_total{error_type="ValueError"}
        raise HTTPException(422, str(exc)) from exc
    return {"ids": ids, "scores": scores.tolist()}


@app.post("/feedback", status_code=204)
def feedback(body: Feedback) -> None:
    try:
        mon.log_feedback(body.ids, body.labels)
    except ValueError as exc:  # ids and labels of different lengths
        raise HTTPException(422, str(exc)) from exc


# --------------------------------------------------------------------------- the demo


def http(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(name, labels without model/version/instance): value}`` from the text format."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m is None:
            continue
        labels = frozenset(
            (k, v) for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")
            if k not in ("model", "version", "instance")
        )
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.02)
    try:
        try:
            check(base)
        finally:
            server.should_exit = True  # what SIGTERM does: a graceful shutdown, lifespan included
            thread.join(timeout=10)
        # The lifespan closed the monitor: the last snapshot it emitted stays served, and
        # nothing recorded after the shutdown is emitted.
        last = metrics.render()
        score(np.zeros((1, 3)), ["after-shutdown"])
        mon.flush()
        assert metrics.render() == last, "uvicorn's shutdown did not close the monitor"
        print("uvicorn shut down: the lifespan closed the monitor (its last snapshot emitted, nothing after)")
    finally:
        mon.close()  # a no-op when the lifespan closed it
    if REDIS_URL:
        fleet(REDIS_URL, workers=2)
    else:
        print("set MLMON_REDIS_URL=redis://... to also serve it with 2 workers sharing a RedisStore")


def check(base: str) -> None:
    rng = np.random.default_rng(1)
    truth: dict[str, int] = {}
    predicted: dict[str, int] = {}
    calls = 0
    for i in range(40):  # 30 single rows (some with the caller's own id), 10 batches of 4
        rows = rng.normal(size=(1 if i < 30 else 4, 3))
        headers = {"X-Request-ID": f"client-{i}"} if i % 3 == 0 else {}
        status, resp_headers, body = http(f"{base}/predict", {"rows": rows.tolist()}, headers)
        assert status == 200, (status, body)
        reply = json.loads(body)
        rid = resp_headers["x-request-id"]
        assert rid == headers.get("X-Request-ID", rid) and reply["ids"][0].startswith(rid)
        calls += 1
        for pid, s, row in zip(reply["ids"], reply["scores"], rows, strict=True):
            predicted[pid] = int(s >= 0.5)
            truth[pid] = int(row[0] - row[1] + rng.normal(scale=0.7) > 0)  # what really happened
    status, _, _ = http(f"{base}/predict", {"rows": [[1.0, float("nan"), 0.0]]})
    assert status == 422
    calls += 1

    # Labels arrive later, for every prediction but the last five.
    labelled = sorted(truth)[:-5]
    status, _, _ = http(f"{base}/feedback", {"ids": labelled, "labels": [truth[p] for p in labelled]})
    assert status == 204

    # The monitor emits every flush_interval: wait for the snapshot that holds the labels.
    deadline = time.monotonic() + 15
    while True:
        status, headers, body = http(f"{base}/metrics")
        values = parse_exposition(body.decode())
        if values.get(("mlmon_labels_total", frozenset())) == len(labelled):
            break
        assert time.monotonic() < deadline, "the labels never showed up in /metrics"
        time.sleep(0.1)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")

    def get(name: str, **labels: str) -> float:
        return values[(name, frozenset(labels.items()))]

    tp = sum(predicted[p] and truth[p] for p in labelled)
    fp = sum(predicted[p] and not truth[p] for p in labelled)
    fn = sum(not predicted[p] and truth[p] for p in labelled)
    expected = {
        "calls": calls, "rows": len(truth), "errors": 1, "labels": len(labelled),
        "precision": tp / (tp + fp), "recall": tp / (tp + fn),
    }  # fmt: skip
    actual = {
        "calls": get("mlmon_calls_total"), "rows": get("mlmon_rows_total"),
        "errors": get("mlmon_errors_total", error_type="ValueError"),
        "labels": get("mlmon_labels_total"),
        "precision": get("mlmon_precision"), "recall": get("mlmon_recall"),
    }  # fmt: skip
    for key, value in expected.items():
        assert math.isclose(actual[key], value, rel_tol=1e-9), (key, actual[key], value)
    p99 = get("mlmon_latency_window_seconds", quantile="0.99")
    print(f"GET {base}/metrics: calls={actual['calls']:.0f} rows={actual['rows']:.0f} "
          f"errors={actual['errors']:.0f} labels={actual['labels']:.0f} precision={actual['precision']:.3f} "
          f"recall={actual['recall']:.3f} p99={1000 * p99:.2f} ms — as sent")


# --------------------------------------------------------------------------- several workers


def last_snapshots(directory: Path) -> list[mlmon.Snapshot]:
    """The last snapshot in every worker's JSON-lines file."""
    out = []
    for path in directory.glob("*.jsonl"):
        lines = path.read_text().splitlines()
        if lines:
            out.append(mlmon.Snapshot.from_dict(json.loads(lines[-1])))
    return out


def fleet_total(snaps: list[mlmon.Snapshot], name: str, **labels: str) -> float:
    """A counter summed over the workers: how a fleet value is built (docs/scale-out.md)."""
    want = sorted(labels.items())
    return sum(s.value for snap in snaps for s in snap.samples if s.name == name and sorted(s.labels) == want)


def fleet(redis_url: str, workers: int, n: int = 2000, rows: int = 20) -> None:
    """Serve this app with ``uvicorn --workers``, label every prediction through any worker."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.set_inheritable(True)  # handed to uvicorn, which shares it between its workers
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="mlmon-fleet-") as tmp:
        out = Path(tmp)
        env = {**os.environ, "MLMON_REDIS_URL": redis_url, "MLMON_JSONL_DIR": tmp,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH", "")]))}  # fmt: skip
        cmd = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--fd", str(listener.fileno()),
               "--workers", str(workers), "--log-level", "warning", "--no-access-log"]  # fmt: skip
        server = subprocess.Popen(cmd, cwd=here, env=env, pass_fds=[listener.fileno()])
        listener.close()
        try:
            deadline = time.monotonic() + 30  # a worker is up once it has emitted a snapshot
            while len(last_snapshots(out)) < workers:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("uvicorn's workers did not start")
                time.sleep(0.1)
            rng = np.random.default_rng(2)
            X = rng.normal(size=(n, 3))

            def send(k: int) -> tuple[list[str], list[float]]:
                status, _, body = http(f"{base}/predict", {"rows": X[k : k + rows].tolist()})
                assert status == 200, (status, body)
                reply = json.loads(body)
                return reply["ids"], reply["scores"]

            with ThreadPoolExecutor(4) as pool:  # a new connection per request: any worker
                replies = list(pool.map(send, range(0, n, rows)))
            ids = [i for r in replies for i in r[0]]
            predicted = np.array([s >= 0.5 for r in replies for s in r[1]], dtype=int)
            truth = (X[:, 0] - X[:, 1] + rng.normal(scale=0.7, size=n) > 0).astype(int)
            order = rng.permutation(n)  # labels come back in another order, to any worker

            def label(k: int) -> None:
                chunk = order[k : k + rows]
                body = {"ids": [ids[i] for i in chunk], "labels": truth[chunk].tolist()}
                status, _, reply = http(f"{base}/feedback", body)
                assert status == 204, (status, reply)

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(label, range(0, n, rows)))
            deadline = time.monotonic() + 20  # labels whose prediction was not in Redis yet retry
            while fleet_total(last_snapshots(out), "mlmon_labels_total") < n and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            server.send_signal(signal.SIGTERM)  # graceful: each worker's lifespan closes its monitor
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        snaps = last_snapshots(out)  # each worker's final snapshot
        assert len(snaps) == workers, len(snaps)
        joined = fleet_total(snaps, "mlmon_labels_total")
        per_worker = [s.get("mlmon_labels_total") for s in snaps]
        cell = {(a, p): fleet_total(snaps, "mlmon_confusion_total", actual=a, predicted=p) for a in "01" for p in "01"}
        tp, fp, fn = cell["1", "1"], cell["0", "1"], cell["1", "0"]
        want_tp = int(np.sum((predicted == 1) & (truth == 1)))
        want_fp = int(np.sum((predicted == 1) & (truth == 0)))
        want_fn = int(np.sum((predicted == 0) & (truth == 1)))
        assert joined == n, (joined, fleet_total(snaps, "mlmon_labels_unmatched_total"))
        assert (tp, fp, fn) == (want_tp, want_fp, want_fn), ((tp, fp, fn), (want_tp, want_fp, want_fn))
        print(f"uvicorn --workers {workers} with RedisStore: {joined:.0f}/{n} labels joined "
              f"(per worker {[int(v or 0) for v in per_worker]}), fleet precision={tp / (tp + fp):.3f} "
              f"recall={tp / (tp + fn):.3f} from the summed mlmon_confusion_total — as sent")  # fmt: skip


if __name__ == "__main__":
    main()
