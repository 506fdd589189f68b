"""Handing the GIL over to predict calls while a drain works off the predict path.

A drain on the background thread is Python and numpy holding the GIL. A predict call that
wants the GIL back (returning from a numpy operation, say) waits until the holder lets it go:
at the interpreter's switch interval (5 ms by default), or sooner when the holder blocks long
enough for the waiting thread to wake up and take it. A numpy operation that releases the GIL
for a few dozen microseconds is no reliable hand-over, nor is ``time.sleep(0)`` on a busy
machine: the holder usually takes the GIL back before the waiting thread has woken up, and
the waiting thread then waits a whole switch interval again.

So a drain calls :func:`handover` between its steps, and every :data:`SLICE_NS` of work it
offers the GIL: when a predict call is running (``busy()``, given to :func:`handing_over`)
it sleeps, in steps of :data:`DEFER_S`, until the call has ended or :data:`MAX_DEFER_NS` have
passed; otherwise a ``time.sleep(0)`` lets any other thread in. A predict call then waits
about a slice at most, the drain still gets a share of the time however busy predict is, and
the process-wide switch interval is left alone.

:func:`handover` is a no-op outside :func:`handing_over` (the inline drain on a predict thread,
for one, never hands over: that call is the one that would wait).

>>> with handing_over(busy=lambda: False):
...     for _ in range(3):
...         handover()  # a clock read; every SLICE_NS, an offer of the GIL
>>> handover()  # outside: nothing at all
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["DEFER_S", "MAX_DEFER_NS", "SLICE_NS", "handing_over", "handover"]

SLICE_NS = 100_000
"""Longest work (ns) between two offers of the GIL inside :func:`handing_over`."""
DEFER_S = 50e-6
"""One step (s) of waiting for a running predict call to end (a sleep: the GIL is free)."""
MAX_DEFER_NS = 2_000_000
"""Longest wait (ns) for running predict calls at one offer: the drain's share of the time is
at least ``SLICE_NS / (SLICE_NS + MAX_DEFER_NS)`` (about 5 %) however busy predict is."""


def _never() -> bool:
    return False


class _State(threading.local):
    active = False
    last = 0
    busy: Callable[[], bool] = _never


_state = _State()
_clock = time.perf_counter_ns
_sleep = time.sleep


def handover() -> None:
    """Offer the GIL if this thread has worked for :data:`SLICE_NS` since the last offer
    (inside :func:`handing_over`; elsewhere a no-op)."""
    s = _state
    if s.active and _clock() - s.last >= SLICE_NS:
        _offer(s)


CONTENDED_NS = 20_000
MODE = "adaptive"


def _offer(s: _State) -> None:
    try:
        if MODE == "busy":
            busy = s.busy
            if busy():
                deadline = _clock() + MAX_DEFER_NS
                _sleep(DEFER_S)
                while _clock() < deadline and busy():
                    _sleep(DEFER_S)
            else:
                _sleep(0)
        elif MODE == "s0":
            _sleep(0)
        elif MODE == "real":
            _sleep(DEFER_S)
        else:
            t0 = _clock()
            _sleep(0)
            t1 = _clock()
            if t1 - t0 >= CONTENDED_NS:
                deadline = t1 + MAX_DEFER_NS
                expect = int(DEFER_S * 1e9) + 100_000
                while True:
                    t0 = _clock()
                    _sleep(DEFER_S)
                    t1 = _clock()
                    if t1 - t0 < expect or t1 >= deadline:
                        break
    finally:
        s.last = _clock()


@contextmanager
def handing_over(busy: Callable[[], bool] = _never) -> Iterator[None]:
    """Make :func:`handover` offer the GIL on this thread for the duration of the block;
    ``busy()`` tells whether a predict call is running (it must not raise)."""
    s = _state
    prev = (s.active, s.busy)
    s.active, s.busy = True, busy
    s.last = _clock()
    try:
        yield
    finally:
        s.active, s.busy = prev
