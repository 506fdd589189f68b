"""Keeps snapshots in memory: for tests, notebooks and the HTML report."""

from __future__ import annotations

import collections
import threading
from typing import Any

from mlmon.snapshot import Snapshot

__all__ = ["InMemoryEmitter"]


class InMemoryEmitter:
    """Keeps the last ``maxlen`` snapshots it was given.

    >>> import mlmon
    >>> from mlmon.testing import InMemoryEmitter
    >>> mem = InMemoryEmitter()
    >>> mon = mlmon.Monitor("doc_memory", emitters=[mem])
    >>> _ = mon.flush(); _ = mon.flush()
    >>> len(mem.snapshots), mem.values("mlmon_calls_total")
    (2, [0.0, 0.0])
    >>> mon.close()
    >>> mem.closed
    True
    """

    def __init__(self, maxlen: int = 10_000, name: str = "memory") -> None:
        self.name = name
        self._snaps: collections.deque[Snapshot] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.closed = False

    @property
    def snapshots(self) -> list[Snapshot]:
        """The snapshots kept, oldest first."""
        with self._lock:
            return list(self._snaps)

    @property
    def last(self) -> Snapshot | None:
        """The newest snapshot, or None."""
        with self._lock:
            return self._snaps[-1] if self._snaps else None

    def values(self, name: str, **labels: Any) -> list[float | None]:
        """The value of one series in every snapshot kept (None where absent)."""
        return [s.get(name, **labels) for s in self.snapshots]

    def clear(self) -> None:
        with self._lock:
            self._snaps.clear()

    def emit(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snaps.append(snapshot)

    def close(self) -> None:
        self.closed = True
