"""Per-worker metrics from a pre-forked gunicorn server, found through Prometheus file_sd.

Starts gunicorn with 3 sync workers and ``--preload`` on ``examples/flask_app.py`` (the monitor
is created in the master and reset in every forked worker), sends requests from several
threads, then does what Prometheus would: reads the ``file_sd`` target files the processes
wrote, scrapes every endpoint, and checks that

- there is one endpoint per process: the master (which serves no request, so it counts 0
  calls) and the 3 workers, each with its own ``instance`` (``host:pid``);
- each worker's ``mlmon_calls_total`` is exactly the number of responses that came from that
  worker's pid, so ``sum(mlmon_calls_total)`` over the targets is the number of requests sent;
- after a graceful shutdown (``SIGTERM`` to the master) every process has removed its target
  file: the ``worker_exit``/``on_exit`` hooks in the gunicorn config close each process's
  monitor as it ends, and ``child_exit`` removes the target of a worker that was killed.

Run: python examples/flask_gunicorn.py   (needs flask and gunicorn; POSIX only)
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

WORKERS, REQUESTS = 3, 90
HERE = Path(__file__).resolve().parent

# What goes into gunicorn.conf.py: close every monitor as each worker (worker_exit) and the
# master (on_exit) ends, and remove the file_sd target of a worker that was killed (child_exit).
GUNICORN_CONF = """\
import os

from mlmon.integrations.gunicorn import child_exit_hook, on_exit, worker_exit  # noqa: F401

child_exit = child_exit_hook(os.environ["MLMON_TARGETS_DIR"])
"""


def post(url: str, body: Any) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def read_targets(directory: Path) -> dict[int, str]:
    """``{pid: "host:port"}`` from the file_sd files, as Prometheus reads them."""
    out = {}
    for path in directory.glob("mlmon-*.json"):
        for group in json.loads(path.read_text()):
            out[int(group["labels"]["mlmon_pid"])] = group["targets"][0]
    return out


def scrape_calls(target: str) -> dict[str, float]:
    """``{instance: mlmon_calls_total}`` served by one endpoint."""
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^mlmon_calls_total\{.*instance="([^"]+)".*\} (\S+)$', text, re.M)
    }


def wait_for(condition: Any, what: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited ({server.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def main() -> None:
    missing = [m for m in ("flask", "gunicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"this example needs {' and '.join(missing)}: pip install flask gunicorn")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # a free port, handed to gunicorn as an open socket
    listener.set_inheritable(True)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/predict"
    with tempfile.TemporaryDirectory(prefix="mlmon-targets-") as tmp:
        targets_dir = Path(tmp)
        env = {**os.environ, "MLMON_TARGETS_DIR": tmp, "MLMON_FLUSH_INTERVAL": "0.5"}
        log = open(targets_dir.parent / f"{targets_dir.name}.log", "w+")  # noqa: SIM115
        conf = targets_dir.parent / f"{targets_dir.name}.conf.py"
        conf.write_text(GUNICORN_CONF)
        cmd = [
            sys.executable, "-m", "gunicorn", "--preload", "--workers", str(WORKERS),
            "--worker-class", "sync", "--bind", f"fd://{listener.fileno()}", "-c", str(conf),
            "--graceful-timeout", "10", "--chdir", str(HERE), "flask_app:app",
        ]  # fmt: skip
        server = subprocess.Popen(cmd, env=env, pass_fds=[listener.fileno()], stdout=log, stderr=log)
        listener.close()  # gunicorn has its own copy
        try:
            check(server, url, targets_dir)
        except BaseException:
            log.seek(0)
            print("gunicorn's log:\n" + log.read()[-3000:], file=sys.stderr)
            raise
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)  # graceful: workers finish and exit
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
            log.close()
            os.unlink(log.name)
            conf.unlink()
        left = sorted(p.name for p in targets_dir.glob("*.json"))
        assert not left, f"target files left after shutdown: {left}"
        print("after shutdown: every process removed its target file")


def check(server: subprocess.Popen[bytes], url: str, targets_dir: Path) -> None:
    master = server.pid
    targets = wait_for(
        lambda: (t := read_targets(targets_dir)) and len(t) == WORKERS + 1 and t,
        f"{WORKERS} workers and the master to write their target files",
        server,
    )
    workers = sorted(pid for pid in targets if pid != master)
    assert len(workers) == WORKERS and master in targets, targets

    rng = np.random.default_rng(0)
    bodies = [{"rows": rng.normal(size=(int(rng.integers(1, 5)), 4)).tolist()} for _ in range(REQUESTS)]
    with ThreadPoolExecutor(max_workers=2 * WORKERS) as pool:
        served_by = Counter(reply["pid"] for reply in pool.map(lambda b: post(url, b), bodies))

    def scrape_all() -> dict[int, dict[str, float]] | None:
        scraped = {pid: scrape_calls(target) for pid, target in targets.items()}
        total = sum(sum(per_instance.values()) for per_instance in scraped.values())
        return scraped if total == REQUESTS else None  # each worker emits every 0.5 s

    scraped = wait_for(scrape_all, f"the workers' endpoints to count {REQUESTS} calls", server, timeout=15)
    instances = set()
    print(f"{'process':>14} {'target':>16} {'instance':>24} {'calls':>6} {'responses':>9}")
    for pid in [master, *workers]:
        (instance, calls), = scraped[pid].items()  # each endpoint serves its own process only
        instances.add(instance)
        role = "master" if pid == master else "worker"
        print(f"{role} {pid:>7} {targets[pid]:>16} {instance:>24} {calls:>6.0f} {served_by[pid]:>9}")
        assert instance.endswith(f":{pid}"), (instance, pid)
        assert calls == served_by[pid], (pid, calls, served_by[pid])
    assert len(instances) == WORKERS + 1
    print(f"sum over the {WORKERS} workers: {sum(served_by.values())} calls = {REQUESTS} requests sent")


if __name__ == "__main__":
    main()
