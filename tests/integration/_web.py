"""Helpers shared by the tests that serve an app with real uvicorn / gunicorn workers."""

from __future__ import annotations

import socket

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
