"""Hands snapshots to each emitter on a thread of its own, with a deadline.

An emitter that hangs (a full pipe, a peer that never answers) must starve neither the other
emitters nor ``close()``. Each emitter gets a :class:`Delivery`: a daemon thread with a
one-job mailbox. A reporter cycle submits the snapshot to every delivery at once and waits for
all of them up to one deadline; a delivery still busy with an earlier job when the next cycle
comes is skipped (the snapshot it misses is counted), never queued without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlmon.emitters.base import Emitter, close_emitter, emitter_name, open_emitter, self_metrics
from mlmon.snapshot import Snapshot

__all__ = ["Deliveries", "Delivery"]

Triple = tuple[str, float, Mapping[str, str]]


class Delivery:
    """One emitter's worker thread.

    Args:
        name: the emitter's name (for the thread and the counters).
        on_error: called with a stage and the exception when the emitter raises (anything,
            ``SystemExit`` included); must not raise.

    Counters: ``errors`` (jobs that raised), ``timeouts`` (jobs still running at their
    deadline), ``skipped`` (snapshots not handed over because a job was still running),
    ``seconds`` (duration of the last finished job).

    >>> d = Delivery("doc")
    >>> d.run(lambda: None, timeout=1.0)
    True
    >>> d.stop()
    """

    def __init__(self, name: str, on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self.name = name
        self._on_error = on_error
        self._lock = threading.Lock()
        self._job: Callable[[], Any] | None = None
        self._have_job = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.timeouts = 0
        self.skipped = 0
        self.seconds = 0.0

    @property
    def busy(self) -> bool:
        """A job is running (or waiting to run)."""
        return not self._done.is_set()

    def submit(self, job: Callable[[], Any]) -> bool:
        """Start ``job`` on the worker thread; False (and counted) if the last job still runs."""
        with self._lock:
            if self._stopped:
                return False
            if not self._done.is_set():
                self.skipped += 1
                return False
            self._done.clear()
            self._job = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=f"mlmon-emit-{self.name}", daemon=True)
                self._thread.start()
            self._have_job.set()
            return True

    def wait(self, timeout: float) -> bool:
        """Wait for the current job at most ``timeout`` seconds; True when it has finished."""
        if self._done.wait(max(0.0, timeout)):
            return True
        with self._lock:
            self.timeouts += 1
        return False

    def run(self, job: Callable[[], Any], timeout: float) -> bool:
        """Submit and wait: True when ``job`` finished within ``timeout``."""
        return self.submit(job) and self.wait(timeout)

    def stop(self) -> None:
        """Let the worker thread end after its current job (it is a daemon: never waited for)."""
        with self._lock:
            self._stopped = True
            self._have_job.set()

    def _loop(self) -> None:
        while True:
            self._have_job.wait()
            with self._lock:
                self._have_job.clear()
                job, self._job = self._job, None
                if job is None and self._stopped:
                    return
            if job is None:
                continue
            t0 = time.perf_counter()
            try:
                job()
            except BaseException as exc:  # an emitter's SystemExit must not end the thread
                with self._lock:
                    self.errors += 1
                if self._on_error is not None:
                    try:
                        self._on_error(self.name, exc)
                    except BaseException:
                        pass
            finally:
                self.seconds = time.perf_counter() - t0
                self._done.set()


class Deliveries:
    """A monitor's emitters, each behind its own :class:`Delivery`.

    Args:
        emitters: the emitters.
        on_error: ``on_error(stage, exception)`` counts a failure (``emit:<name>``, ``close``,
            ``self_metrics``); must not raise.
    """

    def __init__(self, emitters: Sequence[Emitter], on_error: Callable[[str, BaseException], None]) -> None:
        self.emitters = list(emitters)
        self._on_error = on_error
        self._by_name = {
            emitter_name(e): Delivery(emitter_name(e), lambda name, exc: on_error(f"emit:{name}", exc))
            for e in self.emitters
        }

    def open(self, model: str, version: str | None, instance: str) -> None:
        """Tell every emitter a monitor uses it (``open_emitter``); if one refuses (the same
        identity already open on it: a ``ValueError``), release those opened and re-raise."""
        opened: list[Emitter] = []
        try:
            for e in self.emitters:
                open_emitter(e, model, version, instance)
                opened.append(e)
        except BaseException:
            for e in opened:  # a monitor that fails to build holds nothing open
                try:
                    close_emitter(e, model, version, instance)
                except Exception:
                    pass
            raise

    def emit(self, snap: Snapshot, timeout: float) -> None:
        """Hand ``snap`` to every emitter at once; wait for them at most ``timeout`` seconds."""
        # Deadlines are real time, whatever clock the monitor reads: a fake clock does not make
        # a hanging backend return sooner.
        deadline = time.monotonic() + timeout
        started = [d for e in self.emitters if (d := self._by_name[emitter_name(e)]).submit(_emit_job(e, snap))]
        for d in started:
            d.wait(deadline - time.monotonic())

    def close(self, deadline: float, model: str, version: str | None, instance: str) -> None:
        """End this monitor's use of every emitter (``close_emitter``), by ``deadline``
        (``time.monotonic()``); an emitter still busy then is left to its daemon thread."""
        started = [
            d for e in self.emitters
            if (d := self._by_name[emitter_name(e)]).submit(self._closer(e, model, version, instance))
        ]  # fmt: skip
        for d in started:
            d.wait(deadline - time.monotonic())
        for d in self._by_name.values():
            d.stop()

    def _closer(self, emitter: Emitter, model: str, version: str | None, instance: str) -> Callable[[], None]:
        def close() -> None:
            try:
                close_emitter(emitter, model, version, instance)
            except BaseException as exc:
                self._on_error("close", exc)

        return close

    def samples(self, dropped: dict[str, int]) -> list[Triple]:
        """Per emitter: ``mlmon_emit_errors_total`` (raised or timed out), ``mlmon_emit_seconds``
        and its own ``self_metrics()``; snapshots skipped and the emitters' own drops are added
        to ``dropped`` (buffer → count)."""
        out: list[Triple] = []
        for e in self.emitters:
            name = emitter_name(e)
            d = self._by_name[name]
            out.append(("mlmon_emit_errors_total", d.errors + d.timeouts, {"emitter": name}))
            out.append(("mlmon_emit_seconds", d.seconds, {"emitter": name}))
            if d.skipped:
                dropped[f"emit:{name}"] = d.skipped
            try:
                for metric, value, labels in self_metrics(e):
                    if metric == "mlmon_dropped_total":
                        key = str(labels.get("buffer", name))
                        dropped[key] = dropped.get(key, 0) + int(value)
                    else:
                        out.append((metric, value, labels))
            except Exception as exc:
                self._on_error("self_metrics", exc)
        return out


def _emit_job(emitter: Emitter, snap: Snapshot) -> Callable[[], None]:
    return lambda: emitter.emit(snap)
