"""Clocks: the system clock, and a fake one tests can move by hand."""

from __future__ import annotations

import threading
import time as _time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """What a monitor reads time from.

    ``monotonic()`` (seconds) places observations in window slices, ``time()`` (Unix seconds)
    stamps snapshots, and ``perf_counter_ns()`` times calls.
    """

    def monotonic(self) -> float: ...  # pragma: no cover - protocol

    def time(self) -> float: ...  # pragma: no cover - protocol

    def perf_counter_ns(self) -> int: ...  # pragma: no cover - protocol


class SystemClock:
    """The real clocks of the ``time`` module."""

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)
    perf_counter_ns = staticmethod(_time.perf_counter_ns)


class FakeClock:
    """A clock that moves only when told to, for deterministic tests of windows and latency.

    All three readings move together: ``advance(0.25)`` makes a call in progress 250 ms
    slower, and moves the window and the wall-clock stamp by the same amount.

    >>> clock = FakeClock(start=1000.0)
    >>> clock.advance(1.5)
    >>> clock.monotonic(), clock.time(), clock.perf_counter_ns()
    (1.5, 1001.5, 1500000000)
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._ns = 0
        self._start = float(start)

    def advance(self, seconds: float) -> None:
        """Move every reading forward by ``seconds`` (a negative value moves it back)."""
        with self._lock:
            self._ns += round(seconds * 1e9)

    def set(self, seconds: float) -> None:
        """Put the monotonic reading at ``seconds``."""
        with self._lock:
            self._ns = round(seconds * 1e9)

    def monotonic(self) -> float:
        return self._ns / 1e9

    def time(self) -> float:
        return self._start + self._ns / 1e9

    def perf_counter_ns(self) -> int:
        return self._ns
