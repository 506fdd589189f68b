"""A Flask model service, meant for a pre-fork server: ``examples/flask_gunicorn.py`` runs it.

The monitor is created when the module is imported. Under ``gunicorn --preload`` that happens
once, in the master, before it forks the workers: mlmon resets the monitor in each worker (empty
counters, its own ``instance`` = ``host:<worker pid>``, its own reporter thread), and the
Prometheus emitter gives each worker an endpoint of its own on a free port and writes a
``file_sd`` target file for it (``mlmon-<pid>.json``) into ``$MLMON_TARGETS_DIR``, which is
the directory a Prometheus ``file_sd_configs`` entry watches.

Serve it yourself (from the examples directory), with a ``gunicorn.conf.py`` holding the
shutdown hooks (``examples/flask_gunicorn.py`` writes the same):

    # gunicorn.conf.py
    import os
    from mlmon.integrations.gunicorn import child_exit_hook, on_exit, worker_exit
    child_exit = child_exit_hook(os.environ["MLMON_TARGETS_DIR"])

    MLMON_TARGETS_DIR=/tmp/targets gunicorn -c gunicorn.conf.py --preload -w 3 -b 127.0.0.1:8000 flask_app:app

``worker_exit`` and ``on_exit`` close each process's monitor as it ends (its last snapshot
emitted, its target file removed), within the monitor's ``close_timeout``.

Run as a script, it answers one request through Flask's test client and prints what the
monitor counted (no server, no fork).
"""

from __future__ import annotations

import os
import time

import numpy as np
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

import mlmon
from mlmon.emitters import PrometheusEmitter

WEIGHTS = np.array([0.8, -1.2, 0.3, 2.0])

mon = mlmon.Monitor(
    "flask_model",
    version="1",
    flush_interval=float(os.environ.get("MLMON_FLUSH_INTERVAL", "10")),
    latency_budget=0.1,
    emitters=[PrometheusEmitter(port=0, file_sd_dir=os.environ.get("MLMON_TARGETS_DIR"))],
)


@mon.track(features="X")
def score(X: np.ndarray) -> np.ndarray:
    """The model: a logistic scorer that takes a few milliseconds, like a real one."""
    time.sleep(0.005)
    return 1 / (1 + np.exp(-(X @ WEIGHTS)))


app = Flask(__name__)


@app.post("/predict")
def predict() -> ResponseReturnValue:
    body = request.get_json(silent=True) or {}
    X = np.asarray(body.get("rows", []), dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(WEIGHTS):
        return jsonify(error=f"rows must have {len(WEIGHTS)} features each"), 422
    return jsonify(scores=score(X).tolist(), pid=os.getpid())


if __name__ == "__main__":
    reply = app.test_client().post("/predict", json={"rows": [[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 1.0]]})
    snap = mon.snapshot()
    print(f"{reply.status_code} {reply.get_json()['scores']} -> calls={snap.get('mlmon_calls_total'):.0f} "
          f"rows={snap.get('mlmon_rows_total'):.0f}")
    assert (snap.get("mlmon_calls_total"), snap.get("mlmon_rows_total")) == (1.0, 2.0)
    mon.close()
