"""Handing the GIL over to predict calls while a drain works off the predict path.

A drain on the background thread is Python and numpy holding the GIL. A predict call that
wants the GIL back (returning from a numpy operation, say) waits until the holder lets it go:
at the interpreter's switch interval (5 ms by default), or sooner when the holder blocks. A
numpy operation that releases the GIL for a few dozen microseconds is no reliable hand-over
(the holder usually takes the GIL back before the waiting thread has woken up, and the waiting
thread then waits a whole switch interval again); ``time.sleep(0)`` is.

So a drain calls :func:`handover` between its steps, and once :data:`SLICE_NS` have passed
since the last offer it offers the GIL with ``time.sleep(0)``: a predict call then waits
about a slice, plus the step that ended it, rather than a whole drain or switch interval, and
the process-wide switch interval is left alone. An offer nobody takes costs a system call.

:func:`handover` is a no-op outside :func:`handing_over` (the inline drain on a predict thread,
for one, never hands over: that call is the one that would wait).

>>> with handing_over():
...     for _ in range(3):
...         handover()  # a clock read; every SLICE_NS, an offer of the GIL
>>> handover()  # outside: nothing at all
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SLICE_NS", "handing_over", "handover", "waiting"]

SLICE_NS = 25_000
"""Work (ns) between two offers of the GIL inside :func:`handing_over`."""


class _State(threading.local):
    active = False
    last = 0


_state = _State()
_clock = time.perf_counter_ns
_sleep = time.sleep


_waiters: set[int] = set()
"""Threads of callers waiting for a drain to end (``snapshot()``, ``flush()``): while there is
one, hand-overs are skipped, so the drain they wait for ends as soon as it can."""


@contextmanager
def waiting() -> Iterator[None]:
    """Mark this thread as a caller waiting for a drain (a no-op on a thread that hands over:
    the reporter's own cycle)."""
    if _state.active:
        yield
        return
    me = threading.get_ident()
    _waiters.add(me)
    try:
        yield
    finally:
        _waiters.discard(me)


def handover() -> None:
    """Offer the GIL if this thread has worked for :data:`SLICE_NS` since the last offer
    (inside :func:`handing_over`, unless a caller waits for the drain; elsewhere a no-op)."""
    s = _state
    if s.active and not _waiters and _clock() - s.last >= SLICE_NS:
        _sleep(0)
        s.last = _clock()


@contextmanager
def handing_over(active: bool = True) -> Iterator[None]:
    """Make :func:`handover` offer the GIL on this thread for the duration of the block (or,
    with ``active=False``, never: a block of work done on a caller's behalf)."""
    s = _state
    prev = s.active
    s.active = active
    s.last = _clock()
    try:
        yield
    finally:
        s.active = prev
