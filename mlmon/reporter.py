"""The reporter: the one background thread per monitor and process, and the reporter cycle.

A cycle drains the hot-path buffers, builds a :class:`~mlmon.snapshot.Snapshot` (with resource
usage), evaluates the alert rules and hands the snapshot to every emitter in turn. Each emitter
call is timed and isolated: one that raises is counted in ``mlmon_emit_errors_total`` and the
others still run. Cycles are serialised, so emitters see snapshots in order.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

import attrs

from mlmon.emitters.base import emitter_name
from mlmon.snapshot import Snapshot

if TYPE_CHECKING:
    from mlmon.monitor import Monitor

__all__ = ["Reporter", "run_cycle"]


def run_cycle(mon: Monitor) -> Snapshot:
    """One reporter cycle for ``mon``: drain, snapshot, rules, emit. Returns the snapshot."""
    with mon._emit_lock:
        with mon._drain_lock:
            mon._drain_locked()
            snap = mon._build_locked()
            if mon._want_timings:
                timings, rate = mon._take_timings()
                snap = attrs.evolve(snap, timings=timings, timings_rate=rate)
        snap = mon._evaluate_rules(snap)
        for e in mon.emitters:
            name = emitter_name(e)
            t0 = time.perf_counter()
            try:
                e.emit(snap)
            except Exception as exc:
                with mon._misc_lock:
                    mon._emit_errors[name] = mon._emit_errors.get(name, 0) + 1
                mon._internal_error(f"emit:{name}", exc)
            finally:
                with mon._misc_lock:
                    mon._emit_seconds[name] = time.perf_counter() - t0
    return snap


class Reporter:
    """Runs :func:`run_cycle` every ``flush_interval`` seconds on a daemon thread.

    It holds the monitor weakly, so a monitor that is no longer referenced can be collected
    and its reporter ends. ``wake()`` asks for an early drain (the call buffer is filling up).
    """

    def __init__(self, mon: Monitor) -> None:
        self._mon = weakref.ref(mon)
        self._interval = mon.flush_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mlmon-reporter-{mon.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        next_cycle = time.monotonic() + self._interval
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_cycle - time.monotonic()))
            if self._stop.is_set():
                return
            mon = self._mon()
            if mon is None:
                return
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    with mon._drain_lock:
                        mon._drain_locked()
                now = time.monotonic()
                if now >= next_cycle:
                    run_cycle(mon)
                    next_cycle += self._interval
                    if next_cycle <= now:  # fell behind (a suspended process): do not catch up
                        next_cycle = now + self._interval
            except Exception as exc:
                mon._internal_error("reporter", exc)
            finally:
                del mon
