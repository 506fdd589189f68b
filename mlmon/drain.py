"""The drain: moves what the ``track`` wrappers buffered into a monitor's parts.

Called under the monitor's drain lock — by a reporter cycle, ``snapshot()``, ``log_feedback``,
the background thread when a buffer fills up, or, for one bounded chunk, by the call that fills
it. It works chunk by chunk so that the memory one drain needs stays bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from mlmon._clock import Clock
from mlmon._component import Component
from mlmon._handover import handing_over, handover
from mlmon.buffers import POOL, CallBuffers, reduce_records
from mlmon.service import ServiceComponent

__all__ = ["REPORTER_PREFIX", "Drain"]

REPORTER_PREFIX = "mlmon-reporter"
"""Names of the threads that run monitors' background work (the monitor names its reporter
``mlmon-reporter-<model>``): a drain there hands the GIL over as it goes."""


class Drain:
    """Reduces a monitor's buffers into its service part and its other parts.

    Args:
        buffers: the call buffers the wrappers append to.
        service: the service part (durations, errors, rows, streams).
        parts: the parts fed a :class:`~mlmon._component.CallBatch` of each chunk, in order.
        clock: the monitor's clock.
        internal_error: counts a failure inside mlmon (a part that raised); never raises.
        resolve_ids: gives the ids of a record (the ``with`` form's ids are resolved late).

    ``dropped`` counts, by buffer, what the buffers could not keep (``calls``: latency and
    outputs of calls past the call cap; ``outputs``: batch outputs past the row cap;
    ``details``: features, ids and outputs past the byte cap).
    """

    def __init__(
        self,
        buffers: CallBuffers,
        service: ServiceComponent,
        parts: Sequence[Component],
        clock: Clock,
        internal_error: Callable[[str, BaseException], None],
        resolve_ids: Callable[[Sequence[Any], Sequence[int], Sequence[int]], Sequence[Any]],
    ) -> None:
        self._buffers = buffers
        self._service = service
        self._parts = parts
        self._clock = clock
        self._internal_error = internal_error
        self._resolve_ids = resolve_ids
        self.dropped: dict[str, int] = {"calls": 0, "details": 0}

    def run(self, chunks: int | None = None, hand_over: bool | None = None) -> None:
        """Drain everything buffered, or at most ``chunks`` chunks (the inline drain: one; the
        background thread's early drain: what was buffered when it began, as background work).

        ``hand_over``: work as background work (see :mod:`mlmon._handover`): a short switch
        interval, so a predict call that wants the GIL gets it within 0.1 ms, and pauses
        between and inside the parts while a call with features runs. None: when draining
        everything on a monitor's reporter thread, where the drain is nobody's call.
        Elsewhere (``snapshot()`` on the caller's thread) the GIL is offered between chunks
        only (``time.sleep(0)``), charged to that caller. The inline drain (one chunk, on a
        predict thread) does neither.
        """
        b = self._buffers
        calls, rows, outputs, details, errors = b.take_dropped()
        if calls or rows or outputs or details:
            self._service.add_dropped(calls, rows, errors)
            self.dropped["calls"] += calls
            self.dropped["outputs"] = self.dropped.get("outputs", 0) + outputs
            self.dropped["details"] += details
        streams = b.take_streams()
        if streams:
            try:
                self._service.observe_streams(streams, self._clock.monotonic())
            except Exception as exc:
                self._internal_error("drain", exc)
        if chunks is not None and not hand_over:
            with handing_over(False):
                self._chunks(chunks, between=False)
            return
        if hand_over is None:
            hand_over = threading.current_thread().name.startswith(REPORTER_PREFIX)
        if hand_over:
            with handing_over():
                self._chunks(chunks, between=False)
                self._drained()
        else:
            self._chunks(chunks, between=True)
            self._drained()

    def _drained(self) -> None:
        """A whole drain is done: parts that keep rows across its chunks (the segment part,
        which then reduces each segment's rows in one pass) finish them. Not after the inline
        drain's one chunk: that work waits for the next full drain, off the predict path."""
        for part in self._parts:
            finish = getattr(part, "drained", None)
            if finish is not None:
                handover()
                try:
                    finish()
                except Exception as exc:
                    self._internal_error("drain", exc)

    def _chunks(self, chunks: int | None, between: bool) -> None:
        b = self._buffers
        done = 0
        while chunks is None or done < chunks:
            handover()
            dts, nums, objs, errs, gen = b.take(b.soft_cap)
            if not (len(dts) or errs or gen or len(nums) or objs):
                return
            done += 1
            try:
                self.reduce(dts, nums, objs, errs, gen, self._clock.monotonic())
            except Exception as exc:
                self._internal_error("drain", exc)
            if between:
                time.sleep(0)  # between chunks, let predict threads have the GIL

    def reduce(self, dts: Any, nums: Any, objs: list[Any], errs: list[Any], gen: list[Any], now: float) -> None:
        """Reduce one chunk: the service part first, then every other part in order."""
        secs, error_types, rows, batch = reduce_records(
            dts, nums, objs, errs, gen, now, self._clock.time(), self._clock.perf_counter_ns(), self._resolve_ids
        )
        handover()
        self._service.observe(secs, error_types, rows, now)
        if batch is not None:
            for part in self._parts:
                handover()
                try:
                    part.ingest(batch)
                except Exception as exc:
                    self._internal_error("ingest", exc)
            # The parts have reduced the features: their copies' memory serves the next calls.
            release = POOL.release
            for f in batch.features:
                if f is not None:
                    release(f)
