"""What the emitter integration tests share: predict functions, load, forked processes, DNS.

Imported by name (``from _emit_helpers import hammer``), like ``servers``: tests/integration has
no ``__init__.py``.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

SAFE_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
"""What every path that reaches the backend must look like, however evil the names."""

DnsTable = dict[str, tuple[str, int] | None]


def identity(x: float) -> float:
    return x


def half(x: float) -> float:
    return x * 0.5


def hammer(predict: Callable[[float], Any], threads: int, calls: int) -> None:
    """Call ``predict`` ``calls`` times on each of ``threads`` threads at once."""

    def run() -> None:
        for _ in range(calls):
            predict(1.0)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def run_forked(processes: int, body: Callable[[], None]) -> None:
    """Run ``body`` in ``processes`` forked children; each must exit cleanly."""
    pids = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                body()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def fake_dns(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> DnsTable:
    """Make ``module._getaddrinfo`` answer from the returned table.

    ``table[name] = (ip, port)`` resolves ``name`` there, ``table[name] = None`` makes it
    "no such host"; other names, and the numeric-host probe, go to the real resolver.
    """
    table: DnsTable = {}
    real = socket.getaddrinfo

    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        numeric_only = len(args) >= 4 and args[3] & socket.AI_NUMERICHOST
        if host in table and not numeric_only:
            answer = table[host]
            if answer is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            host, port = answer
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(module, "_getaddrinfo", fake)
    return table
