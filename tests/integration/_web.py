"""Helpers shared by the tests that serve an app with real uvicorn / gunicorn workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the servers import this checkout's mlmon

# A gunicorn.conf.py that closes each worker's monitors (and the master's) as they exit.
GUNICORN_CONF = """
from mlmon.integrations.gunicorn import on_exit, worker_exit  # noqa: F401 (server hooks)
"""


def free_listener(backlog: int = 256) -> socket.socket:
    """A listening loopback socket on a free port, inheritable, for ``--fd``/``fd://`` servers."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    listener.set_inheritable(True)
    return listener


@contextmanager
def serving(
    tmp_path: Path, cmd: list[str], listener: socket.socket, env: Mapping[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in ``tmp_path`` with ``listener`` passed on and ``env`` added (this checkout on
    ``PYTHONPATH``); its output goes to ``server.log``, shown if the test fails; killed at the end
    if still running."""
    path = os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    full = {**os.environ, **env, "PYTHONPATH": path}
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=full, pass_fds=[listener.fileno()], stdout=out, stderr=out)
    listener.close()
    try:
        yield proc
    except BaseException:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
