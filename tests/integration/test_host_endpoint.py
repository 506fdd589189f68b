"""One endpoint per host under real gunicorn, scraped by the real Prometheus.

gunicorn runs a WSGI app whose monitor writes its state into a host directory; workers are
recycled every few requests (``--max-requests``), and Prometheus scrapes the one host port.
The served ``mlmon_calls_total`` must equal every request answered, across all the restarts,
and the directory must hold one file per live worker plus the archive.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
import urllib.request
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
import mlmon
from mlmon.fleet.host import HostEndpoint

host = HostEndpoint(
    os.environ["T_DIR"], port=int(os.environ["T_PORT"]), instance="pod-1",
    lease=os.environ["T_LEASE"] == "1", lease_interval=0.2,
)
mon = mlmon.Monitor("web", emitters=[host], flush_interval=0.3, window=60)
predict = mon.track(lambda x: x * 0.1)


def app(environ, start_response):
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
def gunicorn(tmp_path: Path, conf: str, lease: bool, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str, int, Path]]:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "gunicorn_conf.py").write_text(conf)
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    port = free_port()
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "--bind", f"fd://{listener.fileno()}", *args, "app:app"]
    env = {"T_DIR": str(host_dir), "T_PORT": str(port), "T_LEASE": "1" if lease else "0"}
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
