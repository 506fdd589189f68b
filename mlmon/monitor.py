"""The :class:`Monitor`: its configuration, its parts, and the reporter cycle it owns.

A monitor is made of explicit parts, built in ``__init__`` and reset in a forked child:

- the call buffers the ``track`` wrappers append to (:mod:`mlmon.tracking`);
- :class:`~mlmon.service.ServiceComponent`: calls, rows, errors, latency, calls in flight;
- :class:`~mlmon.outputs.OutputComponent`: the distribution of outputs;
- :class:`~mlmon.quality.QualityComponent`: the feedback join and quality metrics;
- :class:`~mlmon.outcomes.OutcomeComponent`: downstream outcomes;
- :class:`~mlmon.features.FeatureComponent`: feature quality and drift;
- the alert engine (with rules), the emitters (each behind a :class:`~mlmon.delivery.Delivery`)
  and a :class:`~mlmon.scheduler.Scheduler` that calls :meth:`Monitor.flush` every
  ``flush_interval``.

:meth:`Monitor.flush` is the reporter cycle: drain the buffers into the parts, build a
snapshot, evaluate the rules, hand the snapshot to every emitter (each isolated, all within
one deadline). ``docs/architecture.md`` draws the whole picture.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, overload

import attrs

from mlmon import _env, _lifecycle
from mlmon._clock import Clock, SystemClock
from mlmon._component import Component, Triple
from mlmon._config import check_monitor
from mlmon._handover import blocking, handing_over, handover, interval_is_short, waiting
from mlmon._segmented import DEFAULT_MAX_SEGMENTS, SegmentComponent
from mlmon.alerts import AlertBudget, AlertEngine, AlertSink, Rule, reference_lookup
from mlmon.buffers import NO_SEGMENT, CallBuffers
from mlmon.delivery import Deliveries
from mlmon.drain import Drain
from mlmon.drift import DriftConfig
from mlmon.emitters.base import Emitter
from mlmon.features import FeatureComponent
from mlmon.features.schema import FeatureSchema
from mlmon.feedback import DEFAULT_MAX_ROW_BYTES
from mlmon.fleet.state import config_digest, export_state
from mlmon.fleet.view import Fleet
from mlmon.outcomes import OutcomeComponent
from mlmon.outputs import OutputComponent
from mlmon.quality import QualityComponent
from mlmon.reference import Reference
from mlmon.resources import ResourceSampler
from mlmon.scheduler import Scheduler
from mlmon.service import ServiceComponent
from mlmon.snapshot import Snapshot, samples_from
from mlmon.stores.base import PredictionStore
from mlmon.tasks import Task
from mlmon.tracking import Call, Track, block_class, call_ids, sync_calls_in_flight

__all__ = ["Call", "Monitor", "Track"]

log = logging.getLogger("mlmon")

F = TypeVar("F", bound=Callable[..., Any])



class Monitor:
    """Watches one model in this process: as software, and as a model.

    Args:
        name: model name, ``[A-Za-z0-9_-]+``.
        version: model version, emitted as a label.
        task: how outputs map to predictions (``BinaryClassification``, ...); None for none.
        window: seconds the rolling window covers.
        flush_interval: seconds between reporter cycles (each builds a snapshot and emits it).
        latency_budget: seconds; slower calls count in ``mlmon_slow_calls_total`` and against
            availability. None disables it.
        reference: a ``Reference`` profile of the training data, for drift.
        emitters: where snapshots go. None means none (``snapshot()`` still works).
        rules: alert rules evaluated on every reporter cycle.
        clock: where time comes from (``mlmon.testing.FakeClock`` in tests).
        slices: slices of the rolling window.
        max_buffered_calls: hard cap of the call buffer; calls beyond it are still counted (calls,
            rows, error types), their latency and outputs dropped and counted in
            ``mlmon_dropped_total{buffer="calls"}``.
        max_buffered_rows: rows of batch outputs buffered before an inline drain (past a
            quarter of it the background thread is woken to reduce them); four times this is
            the cap beyond which output values are dropped (``buffer="outputs"``).
        instance: process identity; ``host:pid`` by default, renewed in a forked child.
        enabled: False makes ``track`` return functions undecorated.
        max_pending: cap of the id → prediction store for ``log_feedback``.
        ttl: seconds a prediction waits for its label.
        drift: a ``DriftConfig`` for feature drift decisions.
        feature_names: names of the features ``track(features=...)`` passes, when there is no
            reference (without either, names come from the first features seen: dict keys,
            DataFrame columns, else ``f0, f1, ...``).
        categorical: which of ``feature_names`` are categorical.
        alert_sinks: where alert events go (``mlmon.alerts`` sinks); None logs them.
        reference_values: fixed baselines for ``baseline="reference"`` rules on metrics the
            reference cannot give, e.g. ``{"mlmon_precision": 0.91}`` from validation.
        max_timings: size of the uniform sample of raw latencies each reporter cycle hands to
            emitters that forward them (``StatsdEmitter(timings=...)``); kept only when one does.
        emit_timeout: seconds a reporter cycle waits for its emitters (all run at once, each on
            its own thread); an emitter still busy then is counted in
            ``mlmon_emit_errors_total`` and skipped by later cycles until it returns.
        close_timeout: seconds ``close()`` may take at most, whatever the backends do.
        store: a shared prediction store (``mlmon.stores.RedisStore``) so that labels join in
            any process of any replica: predictions with your ids are written to it by the
            background thread, and ``log_feedback`` anywhere joins against it (the pair is
            counted where the label arrived). None (the default) joins in this process only.
        max_buffer_bytes: byte cap of the features, ids and batch outputs buffered between
            drains (default 64 MiB). Past it a call's details are dropped (counted in
            ``mlmon_dropped_total{buffer="details"}``); its latency, rows and errors still count.
        fleet: a :class:`mlmon.Fleet` (needs ``store=``): publish this process's window each
            flush, and when this process holds the fleet's lease, merge every process's window
            into the fleet snapshot (``instance="fleet"``) and evaluate the fleet's rules on it
            (see docs/scale-out.md).
        alert_budget: the false-alarm budget the ``Shift`` rules share
            (:class:`mlmon.alerts.AlertBudget`; default one false alarm a week, decided every
            ``flush_interval``).
        max_segments: most segments (``track(segment=...)``) tracked at once; the rows of
            further values go to the segment ``_other``, counted (see docs/segments.md).
        max_row_bytes: multiclass with probability rows: the byte cap of the rows the label
            join keeps for top-k accuracy and per-class AUCs (default 64 MiB; beyond
            ``k × max_pending × 4`` bytes it keeps each row's top classes, docs/quality.md).

    >>> import mlmon
    >>> mon = mlmon.Monitor("doc_monitor", version="1", latency_budget=0.5)
    >>> @mon.track
    ... def predict(x):
    ...     return 2 * x
    >>> [predict(i) for i in range(3)]
    [0, 2, 4]
    >>> snap = mon.snapshot()
    >>> snap.get("mlmon_calls_total"), snap.get("mlmon_error_ratio")
    (3.0, 0.0)
    >>> mon.close()
    """

    def __init__(
        self,
        name: str,
        *,
        version: str | None = None,
        task: Task | None = None,
        window: float = 300.0,
        flush_interval: float = 10.0,
        latency_budget: float | None = None,
        reference: Reference | None = None,
        emitters: Sequence[Emitter] | None = None,
        rules: Sequence[Rule] | None = None,
        clock: Clock | None = None,
        slices: int = 10,
        max_buffered_calls: int = 262_144,
        max_buffered_rows: int = 262_144,
        instance: str | None = None,
        enabled: bool = True,
        max_pending: int = 1_000_000,
        ttl: float = 7 * 24 * 3600.0,
        drift: DriftConfig | None = None,
        feature_names: Sequence[str] | None = None,
        categorical: Sequence[str] = (),
        alert_sinks: Sequence[AlertSink] | None = None,
        reference_values: dict[str, float] | None = None,
        max_timings: int = 10_000,
        max_buffer_bytes: int = 64 << 20,
        store: PredictionStore | None = None,
        emit_timeout: float = 5.0,
        close_timeout: float = 5.0,
        fleet: Fleet | None = None,
        alert_budget: AlertBudget | None = None,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
    ) -> None:
        emitter_list = check_monitor(
            name=name, version=version, instance=instance, window=window, flush_interval=flush_interval,
            latency_budget=latency_budget, emit_timeout=emit_timeout, close_timeout=close_timeout,
            max_buffered_rows=max_buffered_rows, max_buffered_calls=max_buffered_calls,
            max_timings=max_timings, max_buffer_bytes=max_buffer_bytes, task=task, reference=reference,
            feature_names=feature_names, emitters=emitters, store=store,
        )  # fmt: skip
        if isinstance(max_segments, bool) or not isinstance(max_segments, int) or not 1 <= max_segments <= 1024:
            raise ValueError(f"max_segments must be an int from 1 to 1024, got {max_segments!r}")
        self._max_segments = max_segments
        self._max_row_bytes = max_row_bytes
        rule_list = list(rules or ())
        engine = None
        if rule_list:
            lookup = reference_lookup(reference, reference_values) if reference is not None or reference_values else None
            budget = alert_budget if alert_budget is not None else AlertBudget()
            if isinstance(budget, AlertBudget) and budget.interval is None:
                budget = attrs.evolve(budget, interval=float(flush_interval))
            engine = AlertEngine(
                rule_list, sinks=alert_sinks, reference_value=lookup, clock=clock or SystemClock(), budget=budget
            )

        self.name = name
        self.version = version
        self.task = task
        self.window = float(window)
        self.flush_interval = float(flush_interval)
        self.latency_budget = latency_budget
        self.reference = reference
        self.emitters: list[Emitter] = emitter_list
        self.rules = rule_list
        try:
            killed = _env.kill_switch()
        except ValueError:  # said where configuration is read (configure(), track)
            killed = _env.KILLED
        self.enabled = bool(enabled) and not killed
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self._instance_given = instance is not None
        self.emit_timeout = float(emit_timeout)
        self.close_timeout = float(close_timeout)
        self._slices = slices
        self._max_pending = max_pending
        self._ttl = ttl
        self._drift = drift
        self._feature_names = list(feature_names) if feature_names is not None else None
        self._categorical = tuple(categorical)
        self._max_timings = max_timings
        self._want_timings = any(float(getattr(e, "timing_rate", 0.0) or 0.0) > 0.0 for e in emitter_list)
        self._engine = engine
        self._store = store
        if store is not None:
            store.bind(name, version)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._perf = self._clock.perf_counter_ns

        # -- the hot path: ids, calls in flight (async and ``with``), bounded buffers --------
        self._ids = itertools.count()
        self._inflight: dict[int, int] = {}  # id -> start ns
        self._buffers = CallBuffers(
            max_buffered_calls, max_buffered_rows, self._drain_inline, self._internal_error, max_buffer_bytes
        )
        self._block = block_class(self)

        self._drain_lock = threading.Lock()  # drain, snapshot; never taken by predict
        self._emit_lock = threading.Lock()  # serialises reporter cycles; never taken by predict
        self._misc_lock = threading.Lock()  # short: internal error counts, generated ids
        self._close_lock = threading.Lock()
        self._scheduler: Scheduler | None = None
        self._closed = False
        self._warned_feedback = False
        self._build_parts()
        try:
            self._deliveries.open(self.name, self.version, self.instance)
        except BaseException:
            self._closed = True
            raise
        self._fleet = fleet
        if fleet is not None:
            try:
                fleet.bind(self, store, emitter_list, self._internal_error)
            except BaseException:
                self._deliveries.close(time.monotonic() + 1.0, self.name, self.version, self.instance)
                self._closed = True
                raise
        _lifecycle.register(self)

    # -- parts -----------------------------------------------------------------------------
    def _build_parts(self) -> None:
        """Build every part from the configuration (at construction, and in a forked child)."""
        now = self._clock.monotonic()
        self._service, self._outputs, self._quality, self._outcomes, self._features = self._make_parts(now)
        self._segments = self._make_segments(now)
        self._quality.on_segments = self._segments.add_joined
        name_segments = getattr(self._store, "name_segments", None)
        if name_segments is not None:
            self._segments.on_new = name_segments  # the fleet learns each segment's name
        # The parts fed by every drain, in order: the segment part names each row's segment
        # before the quality part stores the predictions with it.
        self._parts: list[Component] = [self._outputs, self._features, self._segments, self._quality, self._outcomes]
        self._drain = Drain(
            self._buffers, self._service, self._parts, self._clock, self._internal_error, self._resolve_ids
        )
        self._resources = ResourceSampler()
        self._deliveries = Deliveries(self.emitters, self._internal_error)
        self._alert_state: tuple[Any, ...] = ()
        self._internal: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._next_gen_id = 0

    def _make_parts(
        self, now: float
    ) -> tuple[ServiceComponent, OutputComponent, QualityComponent, OutcomeComponent, FeatureComponent]:
        """Fresh window parts from the configuration (for this monitor, or to merge states into)."""
        window, slices = self.window, self._slices
        service = ServiceComponent(
            window, slices, now,
            latency_budget=self.latency_budget,
            inflight=self._inflight_state,
            timings=self._max_timings if self._want_timings else None,
        )  # fmt: skip
        outputs = OutputComponent(self.task, window, slices, now, reference=self.reference)
        quality = QualityComponent(
            self.task, window, slices, now,
            max_pending=self._max_pending, ttl=self._ttl, rows=outputs.rows, shared=self._store,
            reference=self.reference, max_row_bytes=self._max_row_bytes,
        )  # fmt: skip
        outcomes = OutcomeComponent(window, slices, now)
        # Without a reference or names, the feature part learns the schema from the first
        # features it reads (dict keys, DataFrame columns, else f0, f1, ...).
        features: Any = self._feature_names
        if self.reference is not None:
            # The reference's schema, made once (evaluate makes fresh parts for every chunk).
            features = getattr(self, "_reference_schema", None)
            if features is None:
                features = self._reference_schema = FeatureSchema(reference=self.reference)
        feature_part = FeatureComponent(
            features, categorical=self._categorical, window=window, slices=slices, now=now, drift=self._drift
        )
        return service, outputs, quality, outcomes, feature_part

    def _segment_parts(
        self, name: str, now: float
    ) -> tuple[OutputComponent, QualityComponent, OutcomeComponent, FeatureComponent, bool | None]:
        """One segment's parts: like the monitor's, against the segment's reference profile
        when the reference has one (else the overall one); its quality part stores nothing."""
        window, slices = self.window, self._slices
        ref, own = self.reference, None
        if ref is not None:
            own = False
            for_segment = getattr(ref, "for_segment", None)
            if for_segment is not None:
                ref, own = for_segment(name)
        outputs = OutputComponent(self.task, window, slices, now, reference=ref)
        quality = QualityComponent(self.task, window, slices, now, max_pending=1, reference=self.reference)
        outcomes = OutcomeComponent(window, slices, now)
        features: Any = ref if ref is not None else self._feature_names
        if features is None and self._features.feature_names:
            features = list(self._features.feature_names)
        feature_part = FeatureComponent(
            features, categorical=self._categorical, window=window, slices=slices, now=now, drift=self._drift
        )
        return outputs, quality, outcomes, feature_part, own

    # -- the state other processes merge (mlmon.fleet) -------------------------------------------
    def _state_parts(self) -> tuple[Any, ...]:
        return self._service, self._outputs, self._quality, self._outcomes, self._features, self._segments

    def _fresh_parts(self) -> tuple[Any, ...]:
        now = self._clock.monotonic()
        return (*self._make_parts(now), self._make_segments(now))

    def _make_segments(self, now: float) -> SegmentComponent:
        """A fresh segment part; its segments read ``by_feature`` columns of arrays by the
        monitor's feature names (as its feature part knows them then)."""
        return SegmentComponent(
            self._segment_parts, self.task, lambda: self._features.feature_names,
            max_segments=self._max_segments, window=self.window, slices=self._slices, now=now,
        )  # fmt: skip

    def _state_config(self) -> str:
        """A digest of the configuration two monitors need in common for their states to merge."""
        cached: str | None = getattr(self, "_config_digest", None)
        if cached is None:
            ref = self.reference
            cached = self._config_digest = config_digest({
                "task": repr(self.task),
                "window": self.window,
                "latency_budget": self.latency_budget,
                "reference": None if ref is None else json.dumps(ref.to_dict(), sort_keys=True, default=repr),
                "features": self._feature_names,
                "categorical": list(self._categorical),
                "drift": repr(self._drift),
            })  # fmt: skip
        return cached

    def fleet_state(self) -> bytes:
        """This process's window and counters as one compact, versioned value that other
        processes merge exactly (:func:`mlmon.fleet.merge_states`). Drains first.

        >>> import mlmon
        >>> mon = mlmon.Monitor("doc-state", emitters=[])
        >>> mlmon.fleet.merge_states(mon, [mon.fleet_state()]).merged
        1
        >>> mon.close()
        """
        with waiting(), self._drain_lock:
            self._drain_locked()
            return self._export_locked()

    def _export_locked(self) -> bytes:
        return export_state(self, now=self._clock.monotonic(), wall=self._clock.time(), instance=self.instance)

    # -- failures inside mlmon ---------------------------------------------------------------
    def _internal_error(self, stage: str, exc: BaseException) -> None:
        """Count a failure inside mlmon and log it at most once per flush interval and stage."""
        try:
            with self._misc_lock:
                self._internal[stage] = self._internal.get(stage, 0) + 1
                now = self._clock.monotonic()
                last = self._last_log.get(stage)
                if last is not None and now - last < self.flush_interval:
                    return
                self._last_log[stage] = now
            log.warning("mlmon %s: internal error in %s: %r", self.name, stage, exc, exc_info=exc)
        except Exception:
            pass

    def _generate_ids(self, n: int) -> range:
        # Negative, so they never meet the ids derived from call ids.
        with self._misc_lock:
            self._next_gen_id -= n
            start = self._next_gen_id
        return range(start, start + n)

    # -- background work ---------------------------------------------------------------------
    def _start_background(self) -> None:
        if self._scheduler is not None or self._closed:
            return
        ref = weakref.ref(self)

        # Off the predict path, the whole cycle is background work (mlmon/_handover.py): a short
        # switch interval, and pauses while calls with features run: drains, snapshot, samples.
        def tick() -> None:
            mon = ref()
            if mon is not None:
                with handing_over():
                    mon.flush()

        def drain() -> None:
            mon = ref()
            if mon is not None:
                with handing_over():
                    mon._drain_background()

        def failed(stage: str, exc: BaseException) -> None:
            mon = ref()
            if mon is not None:
                mon._internal_error("reporter", exc)

        with self._misc_lock:
            if self._scheduler is None:
                # Held weakly: a monitor nobody references can be collected, and its thread ends.
                self._scheduler = Scheduler(
                    self._clock, self.flush_interval, tick, drain, on_error=failed, name=f"mlmon-reporter-{self.name}"
                )
                self._scheduler.start()
                self._buffers.wake = self._scheduler.wake

    # -- drain -----------------------------------------------------------------------------
    def _drain_inline(self) -> bool:
        """Drain one bounded chunk on the calling thread, unless a drain runs elsewhere.

        The thread that fills a buffer reduces part of it itself, so a predict loop that
        starves the background thread of the GIL cannot outrun it; the chunk is bounded (the
        fast-path arrays, and at most ``soft_cap`` records or about 256 KiB of features), so no
        call does unbounded work. It never waits: if a flush holds the drain lock, it returns
        False.
        """
        lock = self._drain_lock
        if not lock.acquire(blocking=False):
            # A drain elsewhere is behind the predict calls. The background thread's runs with
            # a short switch interval (mlmon/_handover.py), which hands it the GIL; any other
            # (a caller's snapshot()) is offered it once, so that a loop that never lets go of
            # it cannot starve it.
            if not interval_is_short():
                time.sleep(0)
            return False
        try:
            self._drain_locked(chunks=1)
        finally:
            lock.release()
        return True

    def _drain_background(self) -> None:
        """The background thread's early drain (woken when a buffer fills up): what is buffered
        when it begins, so that predict calls that keep arriving faster than it can reduce them
        (a loop that keeps the GIL) do not hold it, and the drain lock, indefinitely."""
        b = self._buffers
        chunks = 2 + max(b.bytes // b.chunk_bytes, len(b.gen) // b.soft_cap)
        with self._drain_lock:
            self._drain.run(chunks, hand_over=True)

    def _drain_locked(self, chunks: int | None = None) -> None:
        """Reduce buffered records into the parts (all, or ``chunks`` bounded chunks). Caller
        holds the drain lock."""
        self._drain.run(chunks)

    def _resolve_ids(self, ids: Sequence[Any], cids: Sequence[int], rows: Sequence[int]) -> Sequence[Any]:
        """The ids of drained records. A ``with`` block whose ids were neither given nor read
        carries its call id instead: its ids are generated now (the same ``call.ids`` gives)
        when a task is set and there is no shared store, so its predictions meet their labels;
        else it has none, and nothing is stored."""
        if self.task is None or self._store is not None or not any(c >= 0 for c in cids):
            return ids
        return [call_ids(self, c, n) if c >= 0 else i for i, c, n in zip(ids, cids, rows, strict=True)]

    # -- read side -------------------------------------------------------------------------
    def _inflight_state(self) -> tuple[int, float]:
        """Calls in flight now and the age of the oldest, in seconds."""
        starts: list[int] = []
        for _ in range(8):
            try:
                starts = list(self._inflight.values())
                break
            except RuntimeError:  # resized while copying (free-threaded builds)
                continue
        starts.extend(sync_calls_in_flight(self._buffers))
        if not starts:
            return 0, 0.0
        return len(starts), max(0.0, (self._perf() - min(starts)) / 1e9)

    def _self_samples(self) -> list[Triple]:
        out: list[Triple] = []
        dropped = dict(self._drain.dropped)
        with self._misc_lock:
            internal = dict(self._internal)
        if self._engine is not None:
            for stage, count in self._engine.errors.items():
                key = f"alerts:{stage}"
                internal[key] = internal.get(key, 0) + count
        out.extend(self._deliveries.samples(dropped))
        out.extend(("mlmon_dropped_total", v, {"buffer": k}) for k, v in sorted(dropped.items()))
        out.extend(("mlmon_internal_errors_total", v, {"stage": k}) for k, v in sorted(internal.items()))
        return out

    def _build_locked(self, resources: bool = True) -> Snapshot:
        """Build a snapshot from the parts. Caller holds the drain lock and has drained."""
        now = self._clock.monotonic()
        triples: list[Triple] = list(self._service.samples(now))
        for part in self._parts:
            handover()  # between parts: on the reporter thread, a pause point
            try:
                triples.extend(part.samples(now))
            except Exception as exc:
                self._internal_error("samples", exc)
        handover()
        if resources:
            try:
                triples.extend((name, value, {}) for name, value in self._resources.sample())
            except Exception as exc:
                self._internal_error("resources", exc)
        handover()
        triples.extend(self._self_samples())
        if self._engine is not None:
            triples.extend(self._engine.samples())
        if self._store is not None:
            try:
                triples.extend(self._store.samples())
            except Exception as exc:
                self._internal_error("store", exc)
        fleet = getattr(self, "_fleet", None)
        if fleet is not None:
            triples.extend(fleet.samples())
        return Snapshot(
            model=self.name,
            version=self.version,
            instance=self.instance,
            timestamp=self._clock.time(),
            window=self._service.covered(now),
            samples=samples_from(triples),
            alerts=self._alert_state,
        )

    # -- public API ------------------------------------------------------------------------
    @overload
    def track(self, func: F, /) -> F: ...

    @overload
    def track(
        self,
        func: None = None,
        /,
        *,
        features: Any = None,
        ids: Any = None,
        outputs: bool | Callable[[Any], Any] = True,
        segment: Any = NO_SEGMENT,
    ) -> Track: ...

    def track(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        features: Any = None,
        ids: Any = None,
        outputs: bool | Callable[[Any], Any] = True,
        segment: Any = NO_SEGMENT,
    ) -> Any:
        """Track a predict function (decorator, bare or with arguments) or a block (``with``).

        Args:
            func: the function, when used as a bare decorator.
            features: decorator: the name of the argument holding the features; context
                manager: the features themselves.
            ids: likewise for prediction ids (joined to labels by ``log_feedback``).
            outputs: record the return value as outputs (True), not at all (False), or
                what a callable extracts from it.
            segment: the call's segment (docs/segments.md): a value (one, or one per row of
                a batch), a function of the predict's arguments (decorator), or
                ``mlmon.by_feature(name)`` to read it from a feature column.

        Returns:
            The wrapped function, or a :class:`Track` object.
        """
        if func is None and features is None and ids is None and outputs is True and segment is NO_SEGMENT:
            return self._block(self)  # ``with mon.track() as call``: the shortest path
        t = Track(self, features, ids, outputs, segment)
        if func is not None:
            return t(func)
        return t

    def snapshot(self) -> Snapshot:
        """Drain the buffers and return the current :class:`Snapshot` (emits nothing)."""
        with waiting(), self._drain_lock:
            self._drain_locked()
            return self._build_locked()

    def flush(self) -> Snapshot:
        """Run one reporter cycle now: drain, snapshot, evaluate rules, emit. Returns the snapshot.

        Every emitter gets the snapshot at once, each on its own thread; ``flush`` waits for
        them at most ``emit_timeout`` seconds. After ``close()`` it emits nothing.
        """
        with waiting():
            return self._cycle(self.emit_timeout)

    def _cycle(self, emit_timeout: float, lock_timeout: float = -1) -> Snapshot:
        """One reporter cycle: drain, sync the shared store, snapshot (with the cycle's latency
        sample), rules, emit. With ``lock_timeout`` >= 0, a cycle still running elsewhere is
        waited for that long at most; then this one builds its snapshot and emits nothing."""
        self._buffers.set_early(True)  # buffers wake the background thread early again
        if not self._emit_lock.acquire(timeout=lock_timeout):
            self._internal_error("close", TimeoutError("a reporter cycle is still running"))
            with self._drain_lock:
                self._drain_locked()
                return self._build_locked()
        try:
            return self._cycle_locked(emit_timeout)
        finally:
            self._emit_lock.release()

    def _cycle_locked(self, emit_timeout: float) -> Snapshot:
        if self._store is not None:
            self._sync_store()
        with self._drain_lock:
            self._drain_locked()
            snap = self._build_locked()
            timings = self._service.timings
            if timings is not None:
                sample, rate = timings.take()
                snap = attrs.evolve(snap, timings=sample, timings_rate=rate)
            state = self._export_locked() if self._fleet is not None else None
        snap = self._evaluate_rules(snap)
        if not self._closed:
            with blocking():  # waits on the emitters: the interval goes back meanwhile
                self._deliveries.emit(snap, emit_timeout)
            if state is not None and self._fleet is not None:
                self._fleet.cycle(state, emit_timeout)  # merges: still background work
        return snap

    def _sync_store(self) -> None:
        """Write this process's predictions to the shared store and join the labels it was
        given; the store bounds the time this takes (its ``deadline``) and never raises."""
        store = self._store
        assert store is not None
        with self._drain_lock:
            self._drain_locked()  # predictions recorded so far go out in this sync
        try:
            with blocking():  # a network round trip, bounded by the store's deadline
                joined = store.sync(self._clock.time())
            with self._drain_lock:
                self._quality.take_shared(joined, self._clock.monotonic())
        except Exception as exc:
            self._internal_error("store", exc)

    def _evaluate_rules(self, snap: Snapshot) -> Snapshot:
        """Run the alert rules on a reporter cycle's snapshot (failures counted, never raised)."""
        if self._engine is None:
            return snap
        try:
            snap = self._engine.evaluate(snap)
        except Exception as exc:
            self._internal_error("alerts", exc)
            return snap
        self._alert_state = snap.alerts
        return snap

    def close(self) -> None:
        """Flush once more, stop the background thread and close the emitters.

        Idempotent and thread-safe; it takes at most ``close_timeout`` seconds whatever the
        backends do (an emitter still busy then is left to its daemon thread). Calls still in
        flight at close show in the final snapshot's ``mlmon_inflight_calls``; what they
        record after it is never emitted.
        """
        with self._close_lock:
            if self._closed:
                return
            deadline = time.monotonic() + self.close_timeout
            try:
                self._cycle(min(self.emit_timeout, self.close_timeout * 0.4), self.close_timeout * 0.3)
            except Exception as exc:
                self._internal_error("close", exc)
            self._closed = True
            scheduler, self._scheduler = self._scheduler, None
            if scheduler is not None:
                scheduler.stop(max(0.0, deadline - time.monotonic()) * 0.5)
            self._deliveries.close(deadline, self.name, self.version, self.instance)
            if self._engine is not None:
                try:
                    self._engine.close()
                except Exception as exc:
                    self._internal_error("close", exc)
            if self._fleet is not None:
                self._fleet.close(max(0.0, deadline - time.monotonic()) * 0.5)
            if self._store is not None:
                try:
                    self._store.close(max(0.0, deadline - time.monotonic()))
                except Exception as exc:
                    self._internal_error("close", exc)
            _lifecycle.unregister(self)

    def log_feedback(self, ids: Any, labels: Any) -> None:
        """Join true labels to earlier predictions by id (see ``docs/quality.md``).

        Raises:
            ValueError: when ``ids`` and ``labels`` differ in length.
        """
        # Drain first: a label for a call that has just returned must find its prediction.
        with self._drain_lock:
            self._drain_locked()
            if not self._service.calls_total and self._store is None and not self._warned_feedback:
                self._warned_feedback = True
                log.warning(
                    "mlmon %s: log_feedback before any prediction was tracked by this monitor: its "
                    "labels cannot join (are the predictions tracked by another monitor, or in another "
                    "process? a shared store joins across processes: docs/stores.md)",
                    self.name,
                )
            try:
                self._quality.log_feedback(ids, labels, self._clock.monotonic(), self._clock.time())
            except ValueError:
                raise  # the one documented error: ids and labels of different lengths
            except Exception as exc:
                self._internal_error("feedback", exc)

    def log_outcome(self, name: str, ids: Any = None, value: float = 1.0, *, segment: Any = NO_SEGMENT) -> None:
        """Record a downstream outcome (a click, a purchase) that followed predictions.

        ``segment``: the segment of those predictions, to count the outcome there too.

        Raises:
            ValueError: for an invalid outcome name, or ``value`` and ``ids`` of different lengths.
        """
        with self._drain_lock:
            self._drain_locked()
            now = self._clock.monotonic()
            try:
                self._outcomes.log(name, ids, value, now)
            except (ValueError, TypeError):
                raise  # a bad outcome name or value: the caller's to fix
            except Exception as exc:
                self._internal_error("outcome", exc)
                return
            if segment is not NO_SEGMENT:
                try:
                    self._segments.log_outcome(name, ids, value, now, segment)
                except Exception as exc:
                    self._internal_error("outcome", exc)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name, version, instance = (getattr(self, k, None) for k in ("name", "version", "instance"))
        return f"Monitor({name!r}, version={version!r}, instance={instance!r})"

    def __del__(self) -> None:
        # A monitor dropped without close() flushes what it can, and says so.
        if getattr(self, "_closed", True):
            return
        try:
            warnings.warn(f"{self!r} was not closed; closing it now", ResourceWarning, stacklevel=2)
            self.close()
        except Exception:
            pass

    # -- fork ------------------------------------------------------------------------------
    def _after_fork_child(self) -> None:
        """In a forked child: forget the parent's data, take a new identity, start afresh."""
        had_scheduler = self._scheduler is not None
        self._scheduler = None
        self._drain_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._misc_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._buffers.clear()
        self._inflight.clear()
        if not self._instance_given:
            self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._build_parts()
        if self._engine is not None:
            self._engine.reset()
        if self._store is not None:
            try:
                self._store.after_fork()
            except Exception as exc:
                self._internal_error("fork", exc)
        if self._fleet is not None:
            self._fleet.after_fork()
        for e in self.emitters:
            hook = getattr(e, "after_fork", None)
            if hook is not None:
                try:
                    hook()
                except Exception as exc:
                    self._internal_error("fork", exc)
        if had_scheduler and not self._closed:
            self._start_background()


def monitors() -> Iterable[Monitor]:
    """The live monitors of this process."""
    return [m for m in _lifecycle.live() if isinstance(m, Monitor)]
