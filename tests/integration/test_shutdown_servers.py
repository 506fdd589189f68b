"""Real uvicorn and gunicorn, stopped with SIGTERM: every worker's last data is flushed, once.

uvicorn raises SIGTERM again after its graceful shutdown, which kills the process before
``atexit`` runs: without ``mlmon.integrations.asgi.lifespan`` a worker's final snapshot is lost
and its Prometheus ``file_sd`` target file stays behind (the control cases pin that). gunicorn's
``worker_exit``/``on_exit`` hooks close each process's monitors as it ends.

Each served process writes its own JSON-lines file (``<pid>.jsonl``) and a ``file_sd`` target;
the monitors flush every hour, so the only snapshot a file can hold is the one ``close()`` emits.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _web import GUNICORN_CONF, free_listener, serving

from mlmon import Snapshot

pytestmark = pytest.mark.skipif(
    sys.platform == "win32"
    or any(importlib.util.find_spec(m) is None for m in ("uvicorn", "fastapi", "gunicorn", "flask")),
    reason="needs uvicorn, fastapi, gunicorn and flask (POSIX)",
)

REQUESTS = 24
ROOT = Path(__file__).resolve().parents[2]  # the servers import this checkout's mlmon

FASTAPI_APP = """
import os

from fastapi import FastAPI

import mlmon
from mlmon.emitters import JsonlEmitter, PrometheusEmitter
from mlmon.integrations.asgi import ShutdownMiddleware, lifespan

OUT, TARGETS, MODE = os.environ["T_OUT"], os.environ["T_TARGETS"], os.environ["T_MODE"]
mon = mlmon.Monitor(
    "shutdown_api", window=3600.0, flush_interval=3600.0,
    emitters=[JsonlEmitter(os.path.join(OUT, f"{os.getpid()}.jsonl")),
              PrometheusEmitter(port=0, file_sd_dir=TARGETS)],
)


@mon.track
def model(x: float) -> float:
    return 2 * x


if MODE == "lifespan":
    app = FastAPI(lifespan=lifespan(mon))
else:
    app = FastAPI()


@app.get("/predict")
def predict(x: float = 1.0) -> dict[str, float | int]:
    return {"y": model(x), "pid": os.getpid()}


async def raw(scope, receive, send):  # a bare ASGI app that does not speak lifespan
    if scope["type"] != "http":
        raise RuntimeError("http only")
    body = json.dumps({"y": model(1.0), "pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


import json  # noqa: E402

raw_app = ShutdownMiddleware(raw)  # None: every monitor alive at shutdown
"""

FLASK_APP = """
import os

from flask import Flask, jsonify

import mlmon
from mlmon.emitters import JsonlEmitter, PrometheusEmitter

OUT, TARGETS = os.environ["T_OUT"], os.environ["T_TARGETS"]
mon = mlmon.Monitor(
    "shutdown_flask", window=3600.0, flush_interval=3600.0,
    emitters=[JsonlEmitter(os.path.join(OUT, f"{os.getpid()}.jsonl")),
              PrometheusEmitter(port=0, file_sd_dir=TARGETS)],
)


@mon.track
def model(x: float) -> float:
    return 2 * x


app = Flask(__name__)


@app.get("/predict")
def predict():
    return jsonify(y=model(1.0), pid=os.getpid())
"""

# A non-daemon thread of the app's (a consumer, a library's pool): the interpreter waits for it
# before atexit, so gunicorn's master kills the worker after --graceful-timeout.
LINGERING_THREAD = """
import threading

threading.Thread(target=threading.Event().wait, args=(60,), name="lingering").start()
"""

def wait_until(condition: Callable[[], Any], what: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"the server exited ({proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def get_pid(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        pid: int = json.loads(resp.read())["pid"]
        return pid


def answering(url: str) -> int | None:
    """The pid that answered, or None while the server is not listening yet."""
    try:
        return get_pid(url)
    except OSError:
        return None


@contextmanager
def server(tmp_path: Path, cmd: list[str], listener: socket.socket, mode: str = "") -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in ``tmp_path`` with the listener passed on; always stopped at the end."""
    env = {"T_OUT": str(tmp_path / "out"), "T_TARGETS": str(tmp_path / "targets"), "T_MODE": mode}
    with serving(tmp_path, cmd, listener, env) as proc:
        yield proc


def final_snapshots(out: Path) -> dict[int, list[dict[str, Any]]]:
    """``{pid: [snapshot, ...]}`` from every process's JSON-lines file."""
    return {int(p.stem): [json.loads(line) for line in p.read_text().splitlines()] for p in out.glob("*.jsonl")}


def calls(snapshot: dict[str, Any]) -> float:
    value = Snapshot.from_dict(snapshot).get("mlmon_calls_total")
    assert value is not None
    return float(value)


def prepare(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "targets").mkdir()
    (tmp_path / name).write_text(textwrap.dedent(source))


def serve_and_stop(
    tmp_path: Path, cmd: list[str], listener: socket.socket, url: str, processes: int, mode: str = ""
) -> tuple[int, Counter[int], set[int]]:
    """Start, wait for ``processes`` target files, send requests, SIGTERM; (exit status, responses per pid, pids seen)."""
    with server(tmp_path, cmd, listener, mode) as proc:
        wait_until(lambda: len(list((tmp_path / "targets").glob("*.json"))) == processes, "the target files", proc)
        first = wait_until(lambda: answering(url), "the first response", proc)
        served = Counter([first, *(get_pid(url) for _ in range(REQUESTS))])  # REQUESTS + 1 calls
        started = {int(p.stem.split("-")[1]) for p in (tmp_path / "targets").glob("*.json")}
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
    return status, served, started

# --------------------------------------------------------------------------- uvicorn


def uvicorn_cmd(listener: socket.socket, app: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--fd", str(listener.fileno()), "--workers", str(workers),
            "--log-level", "warning", "--no-access-log", f"app:{app}"]  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn_sigterm_flushes_every_worker_once_with_the_lifespan(tmp_path: Path, workers: int) -> None:
    prepare(tmp_path, "app.py", FASTAPI_APP)
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/predict?x=2"
    status, served, started = serve_and_stop(tmp_path, uvicorn_cmd(listener, "app", workers), listener, url, workers, "lifespan")
    snaps = final_snapshots(tmp_path / "out")
    assert workers == len(started) == len(snaps)
    assert set(snaps) == started and set(served) <= started
    for pid, lines in snaps.items():
        assert 1 == len(lines), (pid, lines)  # the final snapshot, exactly once
        assert served[pid] == calls(lines[0]), (pid, served)
        assert lines[0]["instance"].endswith(f":{pid}")
    assert REQUESTS + 1 == sum(calls(lines[0]) for lines in snaps.values())
    assert [] == sorted(p.name for p in (tmp_path / "targets").iterdir())  # no stale target
    if workers == 1:
        assert -signal.SIGTERM == status  # uvicorn still ends "killed by SIGTERM"


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn_sigterm_without_the_lifespan_loses_the_last_data(tmp_path: Path, workers: int) -> None:
    """The control: what the lifespan fixes (uvicorn re-raises SIGTERM, atexit never runs)."""
    prepare(tmp_path, "app.py", FASTAPI_APP)
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/predict"
    cmd = uvicorn_cmd(listener, "app", workers)
    status, _, started = serve_and_stop(tmp_path, cmd, listener, url, workers, "none")
    assert (-signal.SIGTERM if workers == 1 else 0) == status
    assert [] == [line for lines in final_snapshots(tmp_path / "out").values() for line in lines]
    assert sorted(f"mlmon-{pid}.json" for pid in started) == sorted(p.name for p in (tmp_path / "targets").iterdir())


def test_the_middleware_flushes_an_app_that_does_not_speak_lifespan(tmp_path: Path) -> None:
    prepare(tmp_path, "app.py", FASTAPI_APP)
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    status, served, _ = serve_and_stop(tmp_path, uvicorn_cmd(listener, "raw_app", 1), listener, url, 1, "none")
    snaps = final_snapshots(tmp_path / "out")
    ((pid, lines),) = snaps.items()
    assert 1 == len(lines) and REQUESTS + 1 == calls(lines[0]) == served[pid]
    assert [] == list((tmp_path / "targets").iterdir())
    assert -signal.SIGTERM == status


# --------------------------------------------------------------------------- gunicorn


def run_gunicorn(tmp_path: Path, conf: str, linger: bool) -> tuple[int, Counter[int], set[int], dict[int, list[Any]]]:
    source = FLASK_APP + (LINGERING_THREAD if linger else "")
    prepare(tmp_path, "app.py", source)
    (tmp_path / "gunicorn_conf.py").write_text(conf)
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/predict"
    cmd = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{listener.fileno()}", "--workers", "3",
           "--graceful-timeout", "3", "-c", "gunicorn_conf.py", "app:app"]  # fmt: skip
    status, served, started = serve_and_stop(tmp_path, cmd, listener, url, 3)
    return status, served, started, final_snapshots(tmp_path / "out")


@pytest.mark.parametrize("linger", [False, True], ids=["clean-exit", "lingering-thread"])
def test_gunicorn_sigterm_to_the_master_flushes_every_worker_once(tmp_path: Path, linger: bool) -> None:
    status, served, started, snaps = run_gunicorn(tmp_path, GUNICORN_CONF, linger)
    assert 0 == status
    assert set(snaps) == started and 3 == len(started) and set(served) <= started
    for pid, lines in snaps.items():
        assert 1 == len(lines), (pid, lines)  # exactly once: worker_exit, then atexit finds it closed
        assert served[pid] == calls(lines[0]), (pid, served)
    assert REQUESTS + 1 == sum(calls(lines[0]) for lines in snaps.values())
    assert [] == list((tmp_path / "targets").iterdir())


def test_gunicorn_without_the_hooks_loses_a_lingering_workers_data(tmp_path: Path) -> None:
    """The control: a non-daemon thread keeps the worker from reaching atexit; the master kills it."""
    status, _, started, snaps = run_gunicorn(tmp_path, "", linger=True)
    assert 0 == status
    assert [] == [line for lines in snaps.values() for line in lines]
    assert len(started) == len(list((tmp_path / "targets").iterdir()))  # stale targets left behind
