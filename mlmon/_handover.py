"""Keeping the GIL for predict calls while a drain works off the predict path.

A drain on the background thread is Python and numpy holding the GIL. A predict call that
wants the GIL back (returning from a numpy operation, say) waits until the holder lets it go:
when the holder blocks, or when the waiter has waited a whole switch interval and the
interpreter makes the holder hand it over (5 ms by default). Two things keep that wait short:

- **A short switch interval while the background thread works.** :func:`handing_over` sets
  the process-wide switch interval to :data:`SWITCH_S` (0.1 ms) for the duration of the
  block, unless it is already shorter, and puts the previous value back when the last such
  block in the process ends (unless someone else changed it meanwhile: then theirs stays).
  A thread that waits for the GIL then gets it after at most 0.1 ms plus the C call in
  progress, and the interpreter guarantees the hand-over (the holder waits until the waiter
  has taken it). Voluntary offers every slice of work (``time.sleep(0)``, about 80 µs on
  some kernels) are no longer made: an offer nobody takes costs the drain, and an offer taken
  makes the drain want the GIL back at the predict call's next numpy operation. One is made
  when the interval is shortened, so that a thread already waiting by the old interval stops
  waiting by it.
- **Pausing while a call with features runs.** The general ``track`` wrapper registers each
  sync call in :data:`BUSY` for its duration. At a pause point (:func:`handover`, between the
  drain's steps) a drain on the background thread waits, without the GIL, until no such call
  runs (at most :data:`PAUSE_S`; after a pause that ran out, it works on for 10 ms before
  pausing again, so a call that never ends cannot stop the drain), so a Python-heavy
  predict keeps the GIL to itself rather than sharing it every switch interval.

:func:`handover` is a no-op outside :func:`handing_over` (the inline drain on a predict thread,
for one, never pauses: that call is the one that would wait), and while a caller waits for the
drain (``snapshot()``, ``flush()``: :func:`waiting`).

>>> import sys
>>> before = sys.getswitchinterval()
>>> with handing_over():
...     sys.getswitchinterval() <= SWITCH_S
...     handover()  # a pause point: returns at once, no call in flight
True
>>> sys.getswitchinterval() == before
True
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "BUSY",
    "PAUSE_S",
    "SWITCH_S",
    "blocking",
    "call_ended",
    "handing_over",
    "handover",
    "interval_is_short",
    "next_key",
    "set_background_switch_interval",
    "waiting",
]

SWITCH_S = 0.0001
"""The default process-wide switch interval (seconds) while a background cycle runs."""

_target: list[float | None] = [SWITCH_S]  # what handing_over() sets; None: leave it alone


def set_background_switch_interval(seconds: float | None) -> None:
    """The interpreter's switch interval while mlmon's background threads work (drains,
    snapshots), in seconds; None leaves the interpreter's own alone.

    By default (0.0001 s) a predict call that wants the GIL while a monitor's background
    thread reduces buffered calls gets it within about 0.1 ms, instead of up to the
    interpreter's 5 ms. The interval is process-wide: mlmon sets it only while background work
    runs and only if it is longer, and puts the previous value back after, unless your code
    changed it meanwhile (then yours stays). With None, the background thread still pauses
    while calls with features run, but a call that wants the GIL may wait up to the
    interpreter's interval. Takes effect at the next background cycle.

    Raises:
        ValueError: not a number between 1e-06 and 0.1, nor None.

    >>> import mlmon
    >>> mlmon.set_background_switch_interval(None)  # leave sys.setswitchinterval to me
    >>> mlmon.set_background_switch_interval(0.0001)  # the default
    """
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"the switch interval must be a number of seconds or None, got {seconds!r}")
        if not 1e-6 <= seconds <= 0.1:  # NaN fails too
            raise ValueError(f"the switch interval must be between 1e-06 and 0.1 seconds, got {seconds!r}")
        seconds = float(seconds)
    _target[0] = seconds


def interval_is_short() -> bool:
    """Whether the interpreter's switch interval is now at most the one background work sets."""
    target = _target[0]
    return target is not None and sys.getswitchinterval() <= target


PAUSE_S = 0.001
"""The longest a drain pauses at one pause point for the calls in flight (seconds)."""

_RESUME_NS = 10_000_000  # after a pause that ran out, work this long (ns) before pausing again

BUSY: dict[int, int] = {}
"""Sync calls with features (the general wrapper's) now running, by a key of
:func:`next_key`: while there is one, a drain on the background thread pauses."""

next_key = itertools.count().__next__
"""A unique key for :data:`BUSY` (``itertools.count``: atomic under the GIL)."""


class _State(threading.local):
    active = False
    timed_out = -(1 << 62)


_state = _State()
_clock = time.perf_counter_ns
_sleep = time.sleep
_ended = threading.Event()
_parked = [False]  # a drain waits in handover(): the call that empties BUSY wakes it


def call_ended() -> None:
    """The last registered call ended while a drain was paused for it: wake the drain."""
    _ended.set()


_waiters: set[int] = set()
"""Threads of callers waiting for a drain to end (``snapshot()``, ``flush()``): while there is
one, the drain does not pause, so the drain they wait for ends as soon as it can."""


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
    """A pause point: inside :func:`handing_over`, while a call with features runs and no
    caller waits for the drain, wait (without the GIL) until none runs, at most
    :data:`PAUSE_S`. Elsewhere a no-op."""
    s = _state
    if not (s.active and BUSY) or _waiters:
        return
    now = _clock()
    if now - s.timed_out < _RESUME_NS:
        return
    _ended.clear()
    _parked[0] = True
    try:
        if BUSY and not _ended.wait(PAUSE_S):
            s.timed_out = now
    finally:
        _parked[0] = False


# -- the switch interval, shortened while any thread is inside handing_over() --------------
_lock = threading.Lock()
_inside = 0  # threads inside handing_over(active=True), process-wide
_saved: float | None = None  # the interval to put back; None: it was left alone
_ours = 0.0  # the interval set here (read back from the interpreter)


def _shorten() -> None:
    global _inside, _saved, _ours
    changed = False
    with _lock:
        _inside += 1
        target = _target[0]
        if _inside == 1 and target is not None:
            current = sys.getswitchinterval()
            if current > target:
                _saved = current
                sys.setswitchinterval(target)
                _ours = sys.getswitchinterval()
                changed = True
            else:
                _saved = None
        elif _inside == 1:
            _saved = None
    if changed:
        # A thread already waiting for the GIL waits out the interval it read when it began
        # (5 ms by default): let it go once, and it waits by the short one from then on.
        _sleep(0)


def _restore() -> None:
    global _inside, _saved
    with _lock:
        _inside -= 1
        if _inside == 0 and _saved is not None:
            if sys.getswitchinterval() == _ours:  # else someone set their own meanwhile: keep it
                sys.setswitchinterval(_saved)
            _saved = None


def _after_fork_in_child() -> None:
    """A child forked while a background cycle ran: that thread is gone, so is its block."""
    global _lock, _inside, _saved, _ended
    _lock = threading.Lock()
    _ended = threading.Event()  # its lock may have been held by a thread the child lacks
    if _saved is not None and sys.getswitchinterval() == _ours:
        sys.setswitchinterval(_saved)
    _inside, _saved = 0, None
    _parked[0] = False
    BUSY.clear()  # the calls in flight ran on the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def handing_over(active: bool = True) -> Iterator[None]:
    """Background work for the duration of the block: the switch interval is short and
    :func:`handover` pauses for calls in flight on this thread (or, with ``active=False``,
    neither: a block of work done on a caller's behalf)."""
    s = _state
    prev = s.active
    s.active = active
    shorten = active and not prev
    if shorten:
        _shorten()
    try:
        yield
    finally:
        s.active = prev
        if shorten:
            _restore()


@contextmanager
def blocking() -> Iterator[None]:
    """A wait inside background work (an emit, a store's network round trip): for its
    duration the thread is not background work, and the switch interval goes back to the
    previous value unless another thread's background work goes on. A no-op elsewhere."""
    s = _state
    if not s.active:
        yield
        return
    s.active = False
    _restore()
    try:
        yield
    finally:
        _shorten()
        s.active = True
