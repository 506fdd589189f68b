"""One Prometheus endpoint for all the workers of a gunicorn server, across worker restarts.

Starts gunicorn with 3 sync workers on this module's ``app``, recycled every 20 requests
(``--max-requests``). Each worker's monitor has a ``HostEndpoint`` as emitter: every flush
writes the worker's state into one host directory, and whichever worker holds the port serves
the sum of all of them (docs/scale-out.md, "One endpoint per host"). The script sends 200
requests, then scrapes the one endpoint as Prometheus would and checks that
``mlmon_calls_total`` is 200 although about ten workers served them, and that the directory
holds one state per live worker plus the archive of the ended ones.

Run: python examples/gunicorn_host_endpoint.py   (needs gunicorn; POSIX only)
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlmon
from mlmon.fleet.host import HostEndpoint

HERE = Path(__file__).resolve().parent
WORKERS, REQUESTS = 3, 200

# What goes into gunicorn.conf.py: close each worker's monitor as it exits (its last flush
# reaches the host directory) and the master's.
GUNICORN_CONF = "from mlmon.integrations.gunicorn import on_exit, worker_exit  # noqa: F401\n"

# -- the app: gunicorn imports this module in every worker --------------------------------------
if os.environ.get("MLMON_HOST_DIR"):
    host = HostEndpoint(os.environ["MLMON_HOST_DIR"], port=int(os.environ["MLMON_HOST_PORT"]), instance="pod-1")
    mon = mlmon.Monitor("example", emitters=[host], flush_interval=0.5, latency_budget=0.1)
    predict = mon.track(lambda x: 0.7)


def app(environ: dict[str, object], start_response: object) -> list[bytes]:
    predict(1.0)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])  # type: ignore[operator]
    return [body]


# -- the run --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""  # between two servers (a recycled worker had the port): the next one comes


def main() -> None:
    if importlib.util.find_spec("gunicorn") is None or sys.platform == "win32":
        print("needs gunicorn (POSIX): skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        host_dir = Path(tmp) / "host"
        host_dir.mkdir()
        (Path(tmp) / "gunicorn.conf.py").write_text(GUNICORN_CONF)
        app_port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "MLMON_HOST_DIR": str(host_dir),
            "MLMON_HOST_PORT": str(metrics_port),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])),
        }
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(Path(tmp) / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{app_port}",
               "--workers", str(WORKERS), "--max-requests", "20", "--max-requests-jitter", "5", "gunicorn_host_endpoint:app"]  # fmt: skip
        server = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/", timeout=5) as resp:
                        pids = [int(resp.read())]
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("gunicorn did not start") from None
                    time.sleep(0.1)
            for _ in range(REQUESTS - 1):
                with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/", timeout=10) as resp:
                    pids.append(int(resp.read()))
            line = 'mlmon_calls_total{model="example",instance="pod-1"}'
            deadline = time.monotonic() + 30
            text = ""
            while f"{line} {REQUESTS}" not in text.splitlines():  # the workers' next flush
                if time.monotonic() > deadline:
                    raise SystemExit(f"the host endpoint never showed {REQUESTS} calls:\n{text}")
                time.sleep(0.2)
                text = scrape(metrics_port)
            files = sorted(p.name for p in host_dir.iterdir())
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    workers = len(set(pids))
    for name in ("mlmon_calls_total", "mlmon_host_retired_total", "mlmon_host_workers", "mlmon_latency_seconds_count"):
        for row in text.splitlines():
            if row.startswith(name + "{"):
                print(row)
    print(f"{REQUESTS} requests served by {workers} workers; the host directory holds {len(files)} files")
    assert workers > WORKERS, "no worker was recycled"
    assert len([f for f in files if f.startswith("w.")]) <= WORKERS, files


if __name__ == "__main__":
    main()
