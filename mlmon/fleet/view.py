"""The fleet view: every process publishes its state; one of them, the lease holder, merges.

Each reporter cycle of a monitor with ``fleet=Fleet(...)`` (and a shared store that supports
it, :class:`~mlmon.stores.RedisStore`):

1. **publish**: the process's state (``Monitor.fleet_state()``, a few KB) goes to the store with
   a TTL of ``state_ttl`` seconds (by the Redis server's clock). A process that stops
   publishing — killed, hung, partitioned — drops out of the merge within ``state_ttl``; its
   cumulative counters are kept (folded into the fleet's archive) so that the fleet's
   counters never go backwards when a worker restarts.
2. **lease**: the process tries to take or renew the leader's lease (``lease`` seconds). The
   holder, and only the holder, does the rest.
3. **merge**: the leader reads every live state (one script call), folds retired ones into the
   archive, and merges them into the fleet snapshot (identity ``instance="fleet"``), computed
   on the merged counts (:func:`mlmon.fleet.merge_states`).
4. **alerts**: the fleet's rules are evaluated once, on the fleet snapshot. Their new state is
   committed to the store *fenced by the lease token* before any event goes to a sink: a leader
   that lost its lease (paused past it) cannot commit, so it sends nothing; the next leader
   carries on from the committed state, so a transition is sent once (at most once: a leader
   killed between its commit and its sends loses those sends).
5. **emit**: the fleet snapshot goes to the fleet's emitters (by default the monitor's own).

The store down or slow: each step has the store's total deadline and never raises; the process
keeps its own snapshot and rules, ``mlmon_fleet_up`` drops to 0 and the fleet snapshot pauses
until the store answers again.

>>> Fleet(lease=15.0, state_ttl=30.0)
Fleet(rules=0, lease=15.0, state_ttl=30.0, instance='fleet')
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from mlmon._component import Triple
from mlmon.alerts import AlertBudget, AlertEngine, AlertSink, Rule
from mlmon.alerts.persist import export_engine_state, load_engine_state
from mlmon.delivery import Deliveries
from mlmon.emitters.base import Emitter
from mlmon.fleet._codec import StateError
from mlmon.fleet.state import combine_states, merge_states, reason_of, retire_state
from mlmon.snapshot import CATALOG, Snapshot, samples_from

if TYPE_CHECKING:
    pass

__all__ = ["Fleet"]

log = logging.getLogger("mlmon.fleet")


def _keeps_identities(emitter: object) -> bool:
    """False for an emitter whose paths leave the instance out (``instance_in_path=False``, a
    StatsD emitter's default): the fleet's series would land on the processes'."""
    return getattr(emitter, "instance_in_path", True) is not False


def _is_counter(name: str) -> bool:
    info = CATALOG.get(name)
    return info is not None and info.kind == "counter"


def _positive(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class Fleet:
    """Merge the windows of every process of a model into one fleet snapshot, with alerts
    evaluated once per fleet (see the module docstring and docs/scale-out.md).

    Args:
        rules: alert rules evaluated on the fleet snapshot (by the leader only). The monitor's
            own ``rules=`` keep running in every process on its own snapshot.
        sinks: where the fleet's alert events go (default: a :class:`~mlmon.alerts.LoggingSink`).
        emitters: where the fleet snapshot goes; None (default) means the monitor's emitters
            that keep identities apart. An emitter that leaves the instance out of its paths
            (``StatsdEmitter`` by default) would write the fleet's gauges over the processes'
            own: it is left out, with a warning; give the fleet one of its own
            (``emitters=[StatsdEmitter(prefix="ml.fleet")]``).
        emit_counters: also emit the fleet's cumulative counters (default False). Every
            process already emits its own, and queries sum them over instances
            (``sum(rate(mlmon_calls_total[5m]))``); a fleet series would be counted twice in
            such sums, and a StatsD daemon would add the fleet's deltas to the processes'. The
            fleet snapshot itself (``Fleet.last``, rules) always has them.
        lease: seconds the leader's lease lasts without renewal (default half a flush
            interval). The leader renews it three times per ``lease`` on a small thread of its
            own, as long as its reporter cycles keep finishing (a leader whose cycle is stuck
            for two intervals lets the lease go); followers try to take it at each flush. So a
            leader killed with SIGKILL is replaced within ``lease`` plus one flush interval.
        state_ttl: seconds a published state counts as live (default 3 flush intervals).
        max_processes: most live states merged (default 1,024); beyond, new processes are
            refused and counted.
        instance: the fleet snapshot's identity (default ``"fleet"``).
        budget: the false-alarm budget of the fleet's ``Shift`` rules
            (:class:`mlmon.alerts.AlertBudget`; default one a week, decided every flush).

    Raises:
        ValueError: naming the argument, for a value out of range.

    >>> import mlmon
    >>> from mlmon.alerts import Threshold
    >>> fleet = Fleet(rules=[Threshold("mlmon_error_ratio", above=0.05)])
    >>> fleet.rules[0].metric
    'mlmon_error_ratio'
    """

    def __init__(
        self,
        *,
        rules: Sequence[Rule] = (),
        sinks: Sequence[AlertSink] | None = None,
        emitters: Sequence[Emitter] | None = None,
        lease: float | None = None,
        state_ttl: float | None = None,
        max_processes: int = 1024,
        instance: str = "fleet",
        budget: AlertBudget | None = None,
        emit_counters: bool = False,
    ) -> None:
        self.emit_counters = bool(emit_counters)
        if budget is not None and not isinstance(budget, AlertBudget):
            raise ValueError(f"budget must be an mlmon.alerts.AlertBudget or None, got {budget!r}")
        self.budget = budget
        self.rules = list(rules)
        for r in self.rules:
            if not isinstance(r, Rule):
                raise ValueError(f"rules must be alert rules, got {r!r}")
        self.sinks = None if sinks is None else list(sinks)
        self.emitters = None if emitters is None else list(emitters)
        self.lease = _positive("lease", lease)
        self.state_ttl = _positive("state_ttl", state_ttl)
        if isinstance(max_processes, bool) or not isinstance(max_processes, int) or max_processes < 1:
            raise ValueError(f"max_processes must be an int >= 1, got {max_processes!r}")
        self.max_processes = max_processes
        if not isinstance(instance, str) or not instance or len(instance) > 128:
            raise ValueError(f"instance must be a non-empty string of at most 128 characters, got {instance!r}")
        self.instance = instance
        self._monitor: Any = None
        self._store: Any = None
        self._bound = False

    def __repr__(self) -> str:
        return (
            f"Fleet(rules={len(self.rules)}, lease={self.lease!r}, state_ttl={self.state_ttl!r}, "
            f"instance={self.instance!r})"
        )

    # -- set up by the monitor -------------------------------------------------------------------
    def bind(self, monitor: Any, store: Any, emitters: Sequence[Emitter], on_error: Any) -> None:
        """Attach to ``monitor`` (called once by ``Monitor.__init__``).

        Raises:
            ValueError: the store cannot hold a fleet's states, or the fleet is already bound.
        """
        if self._bound:
            raise ValueError("this Fleet is already used by another monitor: make one per monitor")
        if store is None or not callable(getattr(store, "fleet_publish", None)):
            raise ValueError("fleet=... needs store=RedisStore(...): the states are shared through it")
        interval = float(monitor.flush_interval)
        self._lease = self.lease if self.lease is not None else 0.5 * interval
        self._interval = interval
        self._ttl = self.state_ttl if self.state_ttl is not None else 3.0 * interval
        if self._ttl <= interval:
            raise ValueError(f"state_ttl ({self._ttl} s) must be longer than the flush interval ({interval} s)")
        self._monitor = monitor
        self._store = store
        self._on_error = on_error
        if self.emitters is None:
            kept = [e for e in emitters if _keeps_identities(e)]
            for e in emitters:
                if not _keeps_identities(e):
                    log.warning(
                        "mlmon fleet: %r leaves the instance out of its paths; the fleet snapshot is not "
                        "sent to it (give Fleet(emitters=[...]) one with a prefix of its own)", e,
                    )
            self._emitters = kept
        else:
            self._emitters = list(self.emitters)
        self._clock = monitor._clock
        self._bound = True
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._token = f"{uuid.uuid4().hex}"
        self._leader = False
        self._up = 0.0
        self._state_bytes = 0
        self._merge_seconds = 0.0
        self._processes = 0
        self._refused = 0
        self._rejected: dict[str, int] = {}
        self._takeovers = 0
        self._fenced = 0
        self._last: Snapshot | None = None
        self._deliveries: Deliveries | None = None
        self._cycle_end = time.monotonic()
        self._keepalive: threading.Thread | None = None
        self._stop = threading.Event()
        engine = None
        if self.rules:
            budget = self.budget if self.budget is not None else AlertBudget()
            if budget.interval is None:
                budget = attrs.evolve(budget, interval=self._interval)
            engine = AlertEngine(self.rules, sinks=self.sinks, clock=self._clock, budget=budget)
        self._engine = engine

    @property
    def leader(self) -> bool:
        """This process held the lease at its last cycle."""
        return self._leader

    @property
    def last(self) -> Snapshot | None:
        """The last fleet snapshot this process made as leader (None if never)."""
        return self._last

    # -- the cycle -----------------------------------------------------------------------------
    def cycle(self, state: bytes, emit_timeout: float) -> Snapshot | None:
        """Publish ``state``; as leader, merge, evaluate and emit. Returns the fleet snapshot
        when this process made one. Never raises."""
        try:
            return self._cycle(state, emit_timeout)
        except Exception as exc:  # a bug here must not take the reporter down
            self._on_error("fleet", exc)
            return None
        finally:
            self._cycle_end = time.monotonic()

    def _cycle(self, state: bytes, emit_timeout: float) -> Snapshot | None:
        store, mon = self._store, self._monitor
        assert mon is not None
        self._state_bytes = len(state)
        published = store.fleet_publish(mon.instance, state, self._ttl, self.max_processes)
        if published is None:
            self._up = 0.0
            self._lose_lease()
            return None
        if not published:
            self._refused += 1
        held = store.fleet_lease(self._token, self._lease)
        if not held:
            self._up = 1.0 if held is not None else 0.0
            self._lose_lease()
            return None
        if not self._leader:
            self._take_over()
        read = store.fleet_read(self._ttl, self.max_processes)
        if read is None:
            self._up = 0.0
            return None
        self._up = 1.0
        t0 = time.perf_counter()
        archive = read.archive
        folded: list[str] = []
        if read.retired:
            blobs = [] if archive is None else [archive]
            for name, blob in read.retired:
                folded.append(name)
                try:
                    blobs.append(retire_state(blob))
                except StateError as exc:
                    self._count_rejected(reason_of(exc))
            archive, rejected = combine_states(mon, blobs, instance="archive")
            for reason, n in rejected.items():
                self._count_rejected(reason, n)
        blobs = [b for _, b, _ in read.live]
        merge = merge_states(
            mon, blobs + ([archive] if archive is not None else []), instance=self.instance,
            now=self._clock.monotonic(),
        )  # fmt: skip
        for reason, n in merge.rejected.items():
            self._count_rejected(reason, n)
        self._processes = len(read.live)
        self._merge_seconds = time.perf_counter() - t0
        snap = merge.snapshot
        extra = self._fleet_samples()
        snap = attrs.evolve(snap, timestamp=self._clock.time(), samples=snap.samples + samples_from(extra))
        engine = self._engine
        if engine is not None:
            engine.hold()
            try:
                snap = engine.evaluate(snap)
            except Exception as exc:
                engine.release(send=False)
                self._on_error("fleet_alerts", exc)
                engine = None
        alert_state = export_engine_state(engine) if engine is not None else b"{}"
        committed = store.fleet_commit(
            self._token, alert_state, max(self._ttl, 3600.0), archive if folded else None, folded
        )
        if not committed:
            # Lost the lease between renewing it and committing (or the store failed): the
            # next leader evaluates from the last committed state; this one sends nothing.
            if engine is not None:
                engine.release(send=False)
            self._fenced += 1
            self._lose_lease()
            return None
        if engine is not None:
            engine.release(send=True)
        self._last = snap
        deliveries = self._deliveries
        if deliveries is not None:
            out = snap
            if not self.emit_counters:
                out = attrs.evolve(snap, samples=tuple(x for x in snap.samples if not _is_counter(x.name)))
            deliveries.emit(out, emit_timeout)
        return snap

    def _count_rejected(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + n

    def _take_over(self) -> None:
        """This process just took the lease: carry on from the committed alert state, and
        start emitting the fleet snapshot."""
        mon = self._monitor
        assert mon is not None
        self._leader = True
        self._takeovers += 1
        self._cycle_end = time.monotonic()
        if self._keepalive is None or not self._keepalive.is_alive():
            self._stop = threading.Event()
            self._keepalive = threading.Thread(target=self._renew, args=(self._stop,), name="mlmon-fleet-lease", daemon=True)
            self._keepalive.start()
        engine = self._engine
        if engine is not None:
            data = self._store.fleet_alerts()
            engine.reset()
            if data:
                try:
                    load_engine_state(engine, data)
                except ValueError as exc:
                    self._on_error("fleet_alerts", exc)
        deliveries = Deliveries(self._emitters, self._on_error)
        try:
            deliveries.open(mon.name, mon.version, self.instance)
        except Exception as exc:  # the identity is open elsewhere in this process
            self._on_error("fleet_emit", exc)
            return
        self._deliveries = deliveries

    def _renew(self, stop: threading.Event) -> None:
        """The leader's keepalive: renew the lease every third of it while the reporter's
        cycles keep finishing; stop when the lease is lost or the fleet closes."""
        while not stop.wait(self._lease / 3.0):
            if not self._leader:
                return
            if time.monotonic() - self._cycle_end > 2.0 * self._interval:
                continue  # the reporter is stuck: let the lease lapse so another process leads
            try:
                if self._store.fleet_lease(self._token, self._lease) is False:
                    return
            except Exception as exc:
                self._on_error("fleet", exc)

    def _lose_lease(self, timeout: float = 1.0) -> None:
        if not self._leader:
            return
        self._leader = False
        self._stop.set()
        deliveries, self._deliveries = self._deliveries, None
        mon = self._monitor
        if deliveries is not None and mon is not None:
            # The fleet's series leave this process's endpoints (the next leader has them).
            deliveries.close(time.monotonic() + timeout, mon.name, mon.version, self.instance)

    # -- metrics -------------------------------------------------------------------------------
    def _fleet_samples(self) -> list[Triple]:
        """Samples of the fleet snapshot about the merge itself."""
        out: list[Triple] = [("mlmon_fleet_processes", float(self._processes), {})]
        with self._lock:
            out.extend(
                ("mlmon_fleet_states_rejected_total", float(n), {"reason": r})
                for r, n in sorted(self._rejected.items())
            )
        out.append(("mlmon_fleet_merge_seconds", self._merge_seconds, {}))
        return out

    def samples(self) -> list[Triple]:
        """This process's fleet health, in its own snapshot."""
        return [
            ("mlmon_fleet_up", self._up, {}),
            ("mlmon_fleet_leader", 1.0 if self._leader else 0.0, {}),
            ("mlmon_fleet_state_bytes", float(self._state_bytes), {}),
            ("mlmon_fleet_refused_total", float(self._refused), {}),
            ("mlmon_fleet_takeovers_total", float(self._takeovers), {}),
        ]

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self, timeout: float) -> None:
        """Leave the fleet: retire this process's state (its counters stay in the fleet's
        totals), give the lease up, close the fleet's emitters and sinks. Never raises."""
        if not self._bound:
            return
        end = time.monotonic() + max(0.05, timeout)
        mon = self._monitor
        try:
            if mon is not None:
                self._store.fleet_retire(mon.instance, budget=max(0.05, end - time.monotonic()))
            if self._leader:
                self._store.fleet_release(self._token, budget=max(0.05, end - time.monotonic()))
            self._lose_lease(max(0.05, end - time.monotonic()))
            if self._engine is not None:
                self._engine.close()
        except Exception as exc:
            self._on_error("fleet", exc)

    def after_fork(self) -> None:
        """In a forked child: not the leader, a new token, nothing of the parent's."""
        self._deliveries = None  # the parent's threads do not exist here
        self._keepalive = None
        self._init_state()
