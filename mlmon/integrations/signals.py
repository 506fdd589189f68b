"""Flush every monitor on ``SIGTERM``, then let the signal do what it did before.

Python runs ``atexit`` (where mlmon closes its monitors) when the interpreter ends normally,
on ``sys.exit`` or an uncaught exception, and on ``SIGINT`` (a ``KeyboardInterrupt``). Not on
``SIGTERM``: its default action kills the process at once, and what the monitors buffered since
their last flush is lost. ``SIGTERM`` is what ``kill``, ``docker stop``, Kubernetes, systemd
and ``multiprocessing``'s ``Pool.terminate()`` send.

:func:`install_sigterm_handler` (opt-in, from the main thread) chains a handler in front of the
current one. On ``SIGTERM`` it closes every live monitor (a last flush to every emitter, the
``file_sd`` target files removed), then:

- if the previous handler was a Python function, calls it (your own clean-up still runs);
- if it was ``SIG_IGN``, returns (the signal stays ignored);
- if it was ``SIG_DFL``, restores it and raises the signal again, so the process still ends
  "killed by SIGTERM" (exit status ``-15`` / ``143``) as its supervisor expects.

When the signal interrupts code that is closing monitors itself (the interpreter's exit, a
``multiprocessing`` child's finalizers, your own ``close()``, this handler on a first
``SIGTERM``), the handler lets that close finish, within its bound, and delivers the signal
again afterwards: the data is flushed once, by whoever started.

Closing takes at most the largest ``close_timeout`` of the live monitors (5 s by default) plus
half a second, whatever the backends do: each monitor is closed on a thread of its own, and the
handler stops waiting then, so a monitor whose lock the interrupted code holds can neither
hang the exit nor keep the others from flushing.

>>> import signal
>>> previous = signal.getsignal(signal.SIGTERM)
>>> install_sigterm_handler()
>>> install_sigterm_handler()            # twice: still one link in the chain
>>> handler = signal.getsignal(signal.SIGTERM)
>>> handler.previous is previous
True
>>> uninstall_sigterm_handler()
True
>>> signal.getsignal(signal.SIGTERM) is previous
True
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any

from mlmon import _lifecycle

__all__ = ["close_monitors", "install_sigterm_handler", "uninstall_sigterm_handler"]

log = logging.getLogger("mlmon")

_DEFAULT_CLOSE_TIMEOUT = 5.0
# Time for the helper thread to start and finish beyond the monitors' own bounds.
_SLACK = 0.5


def close_timeout_bound(monitors: Iterable[Any] | None = None) -> float:
    """Seconds closing ``monitors`` (None: every live one) may take: the largest ``close_timeout``."""
    bound = 0.0
    for obj in _lifecycle.live() if monitors is None else monitors:
        value = getattr(obj, "close_timeout", _DEFAULT_CLOSE_TIMEOUT)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        bound = max(bound, float(value) if ok else _DEFAULT_CLOSE_TIMEOUT)
    return bound


def _close_one(obj: Any) -> None:
    try:
        obj.close()
    except Exception as exc:
        log.warning("mlmon: closing %r failed: %r", obj, exc)


def close_monitors(monitors: Iterable[Any] | None = None, timeout: float | None = None) -> bool:
    """Close ``monitors`` (None: every live monitor), each on its own thread, all within ``timeout``.

    ``timeout`` None waits the largest ``close_timeout`` among them plus half a second. Closing
    them side by side means one that cannot close (its lock held by the very code a signal
    interrupted, a backend that hangs) does not hold up the others. Returns True when all were
    closed in time. Never raises; a failure to close is logged.

    >>> import mlmon
    >>> mon = mlmon.Monitor("doc_close_monitors")
    >>> close_monitors([mon])
    True
    >>> close_monitors([mon])            # closing is idempotent
    True
    """
    targets = _lifecycle.live() if monitors is None else list(monitors)
    bound = close_timeout_bound(targets) + _SLACK if timeout is None else timeout
    deadline = time.monotonic() + max(0.0, bound)
    threads = []
    for obj in targets:
        thread = threading.Thread(target=_close_one, args=(obj,), name="mlmon-close", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread can start (the interpreter is shutting down)
            log.warning("mlmon: could not close %r on a thread: %r", obj, exc)
            continue
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = sum(thread.is_alive() for thread in threads)
    if late:
        log.warning("mlmon: %d monitor(s) still closing after %.1f s; going on without them", late, bound)
    return not late and len(threads) == len(targets)


class _SigtermChain:
    """The installed handler: close every monitor, then hand the signal to ``previous``."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        closing = _closing_in(frame)
        if closing:
            # The interrupted code is closing monitors itself (at exit, in a multiprocessing
            # child's finalizers, or your own close()): closing them here would wait for the
            # lock it holds. Let it finish, then deliver the signal again.
            try:
                threading.Thread(target=_redeliver, args=(signum, closing), name="mlmon-sigterm", daemon=True).start()
                return None
            except RuntimeError:
                pass  # no thread: go on below, bounded as always
        try:
            close_monitors()
        except BaseException as exc:  # never stop the signal from reaching its handler
            log.warning("mlmon: closing the monitors on SIGTERM failed: %r", exc)
        previous = self.previous
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_IGN:
            return None
        # SIG_DFL, or None (a handler not installed from Python): the default action.
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        # Only reached when the signal is blocked in this thread: end as the default would.
        os._exit(128 + signum)  # pragma: no cover


def _closing_in(frame: FrameType | None) -> list[Any]:
    """The monitors a ``close()``, ``close_all()`` or ``close_monitors()`` on the interrupted stack
    is closing (the signal interrupted it: a second SIGTERM, or one during an exit)."""
    from mlmon.monitor import Monitor

    close_code, close_all_code = Monitor.close.__code__, _lifecycle.close_all.__code__
    found: list[Any] = []
    depth = 0
    while frame is not None and depth < 200:
        if frame.f_code is close_all_code:
            return _lifecycle.live() or found
        if frame.f_code is close_code and frame.f_locals.get("self") is not None:
            found.append(frame.f_locals["self"])
        elif frame.f_code is close_monitors.__code__:  # e.g. a gunicorn hook, or this handler
            found.extend(frame.f_locals.get("targets") or ())
        frame, depth = frame.f_back, depth + 1
    return found


def _redeliver(signum: int, closing: list[Any]) -> None:
    """Wait (bounded) until ``closing`` are closed, then send ``signum`` to this process again."""
    deadline = time.monotonic() + close_timeout_bound(closing) + _SLACK
    while time.monotonic() < deadline:
        live = _lifecycle.live()
        if not any(obj in live for obj in closing):
            break
        time.sleep(0.01)
    os.kill(os.getpid(), signum)


def install_sigterm_handler() -> None:
    """Close every live monitor on ``SIGTERM``, then run the handler that was there before.

    Safe to call more than once: when the current handler is already mlmon's, nothing changes.
    Call it after any other library that replaces the ``SIGTERM`` handler without chaining
    (mlmon's handler calls whatever it finds at install time).

    Raises:
        RuntimeError: when called from a thread other than the main thread (Python delivers
            signals to the main thread only, and only it may set handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "install_sigterm_handler() must be called from the main thread "
            f"(called from {threading.current_thread().name!r})"
        )
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, _SigtermChain):
        return
    signal.signal(signal.SIGTERM, _SigtermChain(current))


def uninstall_sigterm_handler() -> bool:
    """Put back the handler found at install time; False when mlmon's is not the current one.

    Raises:
        RuntimeError: when called from a thread other than the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("uninstall_sigterm_handler() must be called from the main thread")
    current = signal.getsignal(signal.SIGTERM)
    if not isinstance(current, _SigtermChain):
        return False
    previous = current.previous
    signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    return True
