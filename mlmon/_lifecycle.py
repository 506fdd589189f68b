"""Process lifecycle: every live monitor is reset in a forked child and closed at exit.

- ``os.register_at_fork``: a forked child (a gunicorn worker, a multiprocessing child, the
  brief child of ``subprocess`` with ``preexec_fn``) resets each monitor, so it never reports
  its parent's data; its background thread starts again on its next call.
- ``atexit``: the interpreter's exit closes every monitor (a last flush).
- A multiprocessing child ends with ``os._exit``, which skips ``atexit``; multiprocessing runs
  its own finalizers first, so a child's last data is flushed there.

It knows monitors only as objects with ``close()`` and ``_after_fork_child()``.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import weakref
from typing import Protocol

__all__ = ["close_all", "live", "register", "unregister"]

log = logging.getLogger("mlmon")


class _Managed(Protocol):
    def close(self) -> None: ...  # pragma: no cover - protocol

    def _after_fork_child(self) -> None: ...  # pragma: no cover - protocol


_LIVE: weakref.WeakSet[_Managed] = weakref.WeakSet()


def register(obj: _Managed) -> None:
    """Reset ``obj`` in forked children and close it at exit, while it lives."""
    _LIVE.add(obj)


def unregister(obj: _Managed) -> None:
    _LIVE.discard(obj)


def live() -> list[_Managed]:
    """The registered objects still alive."""
    return list(_LIVE)


def _after_fork_in_child() -> None:
    for obj in list(_LIVE):
        try:
            obj._after_fork_child()
        except Exception as exc:
            log.warning("mlmon: resetting %r after fork failed: %r", obj, exc)


def close_all() -> None:
    """Close every live monitor (at interpreter exit, and at a multiprocessing child's exit)."""
    for obj in list(_LIVE):
        try:
            obj.close()
        except Exception as exc:
            log.warning("mlmon: closing %r at exit failed: %r", obj, exc)


class _Anchor:
    """A weak-referenceable object that multiprocessing's after-fork registry can hold."""


_ANCHOR = _Anchor()


def _mp_after_fork(_: object) -> None:
    multiprocessing.util.Finalize(None, close_all, exitpriority=10)


atexit.register(close_all)
multiprocessing.util.register_after_fork(_ANCHOR, _mp_after_fork)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
