"""A background thread that runs callables on a schedule read from an injectable clock.

It knows nothing of monitors: it is given a clock, an interval and two callables, ``tick``
(the periodic work: a monitor passes its ``flush``) and ``drain`` (work asked for early with
:meth:`Scheduler.wake`: a monitor passes its inline drain). Time comes from the clock's
``monotonic()``, so a test drives a scheduler with a fake clock: move the clock, call
:meth:`Scheduler.run_pending` (or :meth:`Scheduler.wake` for the thread to do it), and no test
sleeps for an interval.

A callable that raises — even ``SystemExit`` or ``KeyboardInterrupt`` — is handed to
``on_error`` and the thread keeps running: a scheduler dies only when stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["MonotonicClock", "Scheduler"]

# How long the thread waits at most between looks at the clock: a fake clock moved without
# wake() is noticed within this, and a real one is not polled more often than needed.
_MAX_WAIT = 1.0


class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...  # pragma: no cover - protocol


class Scheduler:
    """Runs ``tick`` every ``interval`` seconds of ``clock`` time, and ``drain`` when woken.

    Args:
        clock: where time comes from (``monotonic()`` in seconds).
        interval: seconds between ticks, > 0.
        tick: the periodic work.
        drain: work asked for early by :meth:`wake` (None: wake only checks the schedule).
        on_error: called with the stage ("tick" or "drain") and the exception when a callable
            raises; it must not raise itself (what it raises is ignored).
        name: the thread's name.

    A tick that comes due while the process was suspended runs once, not once per missed
    interval.

    >>> from mlmon.testing import FakeClock
    >>> clock, ticks = FakeClock(), []
    >>> s = Scheduler(clock, 10.0, lambda: ticks.append(clock.monotonic()))
    >>> s.run_pending()  # not due yet
    False
    >>> clock.advance(10.0); s.run_pending()
    True
    >>> clock.advance(35.0); s.run_pending()  # three intervals missed: one tick
    True
    >>> ticks
    [10.0, 45.0]
    """

    def __init__(
        self,
        clock: MonotonicClock,
        interval: float,
        tick: Callable[[], object],
        drain: Callable[[], object] | None = None,
        *,
        on_error: Callable[[str, BaseException], object] | None = None,
        name: str = "mlmon-scheduler",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self._clock = clock
        self.interval = float(interval)
        self._tick = tick
        self._drain = drain
        self._on_error = on_error
        self._name = name
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._due = clock.monotonic() + self.interval
        self._thread: threading.Thread | None = None
        self.ticks = 0

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the background thread (once)."""
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Ask the thread to run ``drain`` now and look at the clock."""
        if not self._wake.is_set():
            self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread; wait at most ``timeout`` seconds. True if it has ended."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is None or t is threading.current_thread():
            return True
        t.join(max(0.0, timeout))
        return not t.is_alive()

    def run_pending(self) -> bool:
        """Run ``tick`` if it is due by the clock, on the calling thread. True if it ran."""
        now = self._clock.monotonic()
        if now < self._due:
            return False
        self._due += self.interval
        if self._due <= now:  # fell behind (a suspended process): do not catch up
            self._due = now + self.interval
        self._call("tick", self._tick)
        self.ticks += 1
        return True

    def _call(self, stage: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # a scheduler survives anything its work raises
            if self._on_error is not None:
                try:
                    self._on_error(stage, exc)
                except BaseException:
                    pass

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = min(_MAX_WAIT, max(0.0, self._due - self._clock.monotonic()))
            self._wake.wait(wait)
            if self._stop.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                if self._drain is not None:
                    self._call("drain", self._drain)
            self.run_pending()
