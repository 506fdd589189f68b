"""One endpoint per host under real gunicorn, scraped by the real Prometheus.

gunicorn runs a WSGI app whose monitor writes its state into a host directory; workers are
recycled every few requests (``--max-requests``), and Prometheus scrapes the one host port.
The served ``mlmon_calls_total`` must equal every request answered, across all the restarts,
and the directory must hold one file per live worker plus the archive.
"""

from __future__ import annotations

import importlib.util
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _web import free_listener, serving
from servers import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None, reason="needs gunicorn"),
]

APP = """
import os
from urllib.parse import parse_qs

import numpy as np

import mlmon
from mlmon.fleet.host import HostEndpoint
from mlmon.stores import RedisStore

host = HostEndpoint(
    os.environ["T_DIR"], port=int(os.environ["T_PORT"]), instance="pod-1",
    lease=os.environ["T_LEASE"] == "1", lease_interval=0.2,
)
store = RedisStore(os.environ["T_REDIS"], retry_for=30.0, deadline=2.0) if os.environ["T_REDIS"] else None
mon = mlmon.Monitor(
    "web", emitters=[host], flush_interval=0.3, window=60, store=store,
    task=mlmon.BinaryClassification() if store is not None else None,
)
predict = mon.track(lambda x: x * 0.1)


@mon.track(ids="ids")
def model(scores, ids):
    return scores


def app(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    if "label" in q:  # a label, joined through Redis whichever worker made the prediction
        mon.log_feedback([q["id"][0]], [int(q["label"][0])])
    elif "score" in q:
        model(np.array([float(q["score"][0])]), [q["id"][0]])
    else:
        predict(1.0)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

CONF_LEASE = """
from mlmon.integrations.gunicorn import on_exit, worker_exit  # noqa: F401
"""

CONF_MASTER = """
from mlmon.integrations.gunicorn import on_exit, serve_host_endpoint, worker_exit  # noqa: F401
import app

when_ready = serve_host_endpoint(app.host)
"""


def wait_for(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def value(text: str | None, series: str) -> float | None:
    for line in (text or "").splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@contextmanager
def gunicorn(tmp_path: Path, conf: str, lease: bool, *args: str, redis: str = "") -> Iterator[tuple[subprocess.Popen[bytes], str, int, Path]]:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "gunicorn_conf.py").write_text(conf)
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    port = free_port()
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "--bind", f"fd://{listener.fileno()}", *args, "app:app"]
    env = {"T_DIR": str(host_dir), "T_PORT": str(port), "T_LEASE": "1" if lease else "0", "T_REDIS": redis}
    with serving(tmp_path, cmd, listener, env) as proc:
        try:
            yield proc, url, port, host_dir
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.read())


def test_prometheus_scrapes_the_sum_of_all_workers_across_max_requests_restarts(tmp_path: Path, prometheus_factory: Any) -> None:
    requests = 150
    with gunicorn(tmp_path, CONF_LEASE, True, "--workers", "3", "--max-requests", "10", "--max-requests-jitter", "4") as (_proc, url, port, host_dir):
        prom = prometheus_factory([f"127.0.0.1:{port}"], honor_labels=True)
        pids = [get(url) for _ in range(requests)]
        restarts = len(set(pids)) - 3
        assert restarts >= 8  # each worker served at most 13 requests
        series = 'mlmon_calls_total{model="web",instance="pod-1"}'
        wait_for(lambda: value(scrape(port), series) == requests)

        def queried() -> float | None:
            result = prom.api("query", {"query": 'mlmon_calls_total{model="web",instance="pod-1"}'})
            return float(result["result"][0]["value"][1]) if result["result"] else None

        assert wait_for(lambda: queried() == requests, timeout=90)
        text = scrape(port)
        retired = value(text, 'mlmon_host_retired_total{model="web",instance="pod-1"}')
        assert retired is not None and retired >= restarts
        assert value(text, 'mlmon_host_rejected_total{model="web",instance="pod-1",reason="corrupt"}') == 0
        # one state per live worker, the archive and the lock: however many restarts
        names = sorted(p.name for p in host_dir.iterdir())
        assert len([n for n in names if n.startswith("w.")]) <= 3, names
        assert len(names) <= 5, names


def test_the_master_serves_with_preload_and_workers_never_bind(tmp_path: Path) -> None:
    with gunicorn(tmp_path, CONF_MASTER, False, "--preload", "--workers", "2", "--max-requests", "7") as (proc, url, port, _dir):
        wait_for(lambda: scrape(port) is not None)
        pids = [get(url) for _ in range(40)]
        assert proc.pid not in pids and len(set(pids)) >= 4
        wait_for(lambda: value(scrape(port), 'mlmon_calls_total{model="web",instance="pod-1"}') == 40)


def series(text: str | None, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for line in (text or "").splitlines():
        if line.startswith(name + "{"):
            labels, _, v = line[len(name) + 1 :].rpartition("} ")
            pairs = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))
            out[pairs] = float(v)
    return out


def test_labels_joined_through_redis_in_any_worker_add_up_on_the_host_page(tmp_path: Path, redis_server: Any) -> None:
    rng = random.Random(7)
    n = 120
    scores = [rng.random() for _ in range(n)]
    labels = [int(rng.random() < 0.5) for _ in range(n)]
    expected = Counter((str(y), str(int(s >= 0.5))) for s, y in zip(scores, labels, strict=True))
    with gunicorn(tmp_path, CONF_LEASE, True, "--workers", "3", redis=redis_server.url) as (_proc, url, port, _dir):
        pids = {get(f"{url}?id=r{i}&score={s}") for i, s in enumerate(scores)}
        order = list(range(n))
        rng.shuffle(order)  # most labels reach a worker that did not make their prediction
        pids |= {get(f"{url}?id=r{i}&label={labels[i]}") for i in order}
        # The kernel spreads connections over the workers; on a loaded machine one of three may
        # get none, but labels must have crossed between workers for the test to mean anything.
        assert len(pids) >= 2

        def confusion() -> dict[tuple[str, str], float] | None:
            got = series(scrape(port), "mlmon_confusion_total")
            cells = {(d["actual"], d["predicted"]): v for k, v in got.items() if (d := dict(k))["instance"] == "pod-1"}
            return cells if sum(cells.values()) == n else None

        cells = wait_for(confusion, timeout=90)
        assert cells == {k: float(expected.get(k, 0)) for k in cells}
        assert value(scrape(port), 'mlmon_labels_total{model="web",instance="pod-1"}') == n


ASGI_APP = """
import os

import mlmon
from mlmon.fleet.host import HostEndpoint
from mlmon.integrations.asgi import ShutdownMiddleware

host = HostEndpoint(os.environ["T_DIR"], port=int(os.environ["T_PORT"]), instance="pod-1", lease_interval=0.2)
mon = mlmon.Monitor("web", emitters=[host], flush_interval=0.3, window=60)
predict = mon.track(lambda x: x * 0.1)


async def inner(scope, receive, send):
    if scope["type"] != "http":
        return
    predict(1.0)
    body = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = ShutdownMiddleware(inner, mon)
"""


@pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None, reason="needs uvicorn")
def test_uvicorn_workers_recycled_by_limit_max_requests_add_up_on_one_endpoint(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(ASGI_APP)
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    port = free_port()
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    cmd = [sys.executable, "-m", "uvicorn", "--fd", str(listener.fileno()), "--workers", "2",
           "--limit-max-requests", "8", "--log-level", "warning", "--no-access-log", "app:app"]  # fmt: skip
    requests = 40
    with serving(tmp_path, cmd, listener, {"T_DIR": str(host_dir), "T_PORT": str(port)}) as proc:
        try:
            pids = []
            for _ in range(requests):  # no retry: a failed request may have been counted
                pid = _get_or_none(url)
                if pid is not None:
                    pids.append(pid)
                time.sleep(0.1)  # uvicorn checks --limit-max-requests every 0.1 s
            assert len(set(pids)) > 2 and len(pids) >= requests - 5, pids  # workers were recycled
            line = 'mlmon_calls_total{model="web",instance="pod-1"}'
            got = wait_for(lambda: (v := value(scrape(port), line)) is not None and v >= len(pids) and v, timeout=60)
            assert len(pids) <= got <= requests, scrape(port)  # exact when no request failed
            names = [p.name for p in host_dir.iterdir()]
            assert len([n for n in names if n.startswith("w.")]) <= 2, names
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _get_or_none(url: str) -> int | None:
    try:
        return get(url)
    except OSError:
        return None  # a worker exiting at its request limit may drop the connection
