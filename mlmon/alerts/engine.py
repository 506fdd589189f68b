"""The alert engine: evaluates rules on each snapshot and keeps every alert's state.

Each series a rule selects is an alert instance with its own state::

    inactive ──condition──► pending ──held for_ s──► firing ──false for resolve_after s──► resolved
        ▲                      │ condition gone                                              │
        └──────────────────────┴─────────────────────────────────────────────────────────────┘

Time is the snapshot's ``timestamp``, so a monitor driven by ``mlmon.testing.FakeClock`` gets the
same alerts on every run. Hysteresis keeps a value that hovers at the limit from flapping: once
firing, the condition is held to a looser clearing limit (``clear_ratio``, ``hysteresis``), it
must stay false for ``resolve_after`` seconds before the alert resolves, and after a resolution
the rule waits ``cooldown`` seconds before firing again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from mlmon.alerts._checks import LabelPairs
from mlmon.alerts._family import Family
from mlmon.alerts._state import FIRING, INACTIVE, PENDING, Compiled, Instance, Trail
from mlmon.alerts.budget import AlertBudget
from mlmon.alerts.events import AlertEvent, AlertState
from mlmon.alerts.reference import ReferenceValue, reference_lookup
from mlmon.alerts.rules import COUNT_METRICS, Rule
from mlmon.alerts.shift import Shift
from mlmon.alerts.sinks import AlertSink, LoggingSink, sink_name
from mlmon.snapshot import Sample, Snapshot

__all__ = ["AlertEngine", "ReferenceValue", "reference_lookup"]

log = logging.getLogger("mlmon.alerts")

Triple = tuple[str, float, Mapping[str, str]]

NOTIFICATIONS = "mlmon_alert_notifications_total"
"""``{sink, outcome}``: events each sink delivered, failed on, or dropped (see ``sinks.OUTCOMES``)."""
_ALERT_NAMES = frozenset({"mlmon_alert_firing", "mlmon_alerts_firing", NOTIFICATIONS})
_INACTIVE, _PENDING, _FIRING = INACTIVE, PENDING, FIRING
_THIN = 240  # a trailing baseline records at most this many values per period


class _Clock(Protocol):
    def monotonic(self) -> float: ...  # pragma: no cover - protocol


def _check_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    out = tuple(rules)
    seen: set[str] = set()
    for r in out:
        if not isinstance(r, Rule):
            raise TypeError(f"rules must be mlmon.alerts rules (Threshold, PercentDrop, ...), got {r!r}")
        if r.name in seen:
            raise ValueError(f"rule names must be unique (give name=...), got {r.name!r} twice")
        seen.add(r.name)
    return out


class AlertEngine:
    """Evaluates alert rules on snapshots and hands state changes to sinks.

    The monitor builds one from its ``rules`` and calls :meth:`evaluate` on every reporter
    cycle; it can also be driven by hand, as below.

    Args:
        rules: the rules; names must be unique.
        sinks: where events go; None means ``(LoggingSink(),)``, ``()`` means nowhere.
        reference_value: ``reference_value(metric, labels) -> float | None``, needed by rules
            with ``baseline="reference"`` (see :func:`reference_lookup`).
        clock: an object with ``monotonic()``, used only to rate-limit error logs.
        max_instances: series per rule beyond which new ones are ignored (and counted).
        budget: the false-alarm budget every :class:`~mlmon.alerts.Shift` rule shares (None:
            ``AlertBudget()``, one false alarm a week); the other rules ignore it.

    Raises:
        ValueError: duplicate rule names, or a ``"reference"`` baseline without
            ``reference_value``.

    >>> from mlmon.alerts import Threshold, CallbackSink
    >>> from mlmon.snapshot import Sample, Snapshot
    >>> events = []
    >>> engine = AlertEngine([Threshold("mlmon_error_ratio", above=0.05, min_samples=0,
    ...                                 resolve_after=0, name="errors")],
    ...                      sinks=[CallbackSink(events.append)])
    >>> def snap(t, ratio):
    ...     return Snapshot("fraud", None, "h:1", t, 60.0, (Sample.make("mlmon_error_ratio", ratio),))
    >>> engine.evaluate(snap(0.0, 0.01)).get("mlmon_alert_firing", rule="errors")
    0.0
    >>> out = engine.evaluate(snap(10.0, 0.2))
    >>> out.get("mlmon_alert_firing", rule="errors"), out.get("mlmon_alerts_firing"), out.alerts[0].state
    (1.0, 1.0, 'firing')
    >>> _ = engine.evaluate(snap(20.0, 0.0))
    >>> [(e.state, e.at) for e in events]
    [('firing', 10.0), ('resolved', 20.0)]
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        sinks: Sequence[AlertSink] | None = None,
        reference_value: ReferenceValue | None = None,
        clock: _Clock | None = None,
        *,
        max_instances: int = 1000,
        budget: AlertBudget | None = None,
    ) -> None:
        self.rules = _check_rules(rules)
        if budget is not None and not isinstance(budget, AlertBudget):
            raise ValueError(f"budget must be an mlmon.alerts.AlertBudget or None, got {budget!r}")
        self.budget = AlertBudget() if budget is None else budget
        self._family = Family(self.budget)
        if reference_value is None:
            for r in self.rules:
                base = r.baseline_spec
                if base is not None and base.kind == "reference":
                    raise ValueError(
                        f"rule {r.name!r} has baseline='reference' but no reference_value was "
                        "given (give the monitor a reference=...)"
                    )
        self.sinks: tuple[AlertSink, ...] = (LoggingSink(),) if sinks is None else tuple(sinks)
        for s in self.sinks:
            if not isinstance(s, AlertSink):
                raise TypeError(f"sinks must have send(event) and close(), got {s!r}")
        self._sink_names = tuple(sink_name(s) for s in self.sinks)
        # Sinks without counts(): the engine counts their send() calls itself.
        self._tally = [
            None if callable(getattr(s, "counts", None)) else {"sent": 0, "failed": 0}
            for s in self.sinks
        ]
        if isinstance(max_instances, bool) or not isinstance(max_instances, int) or max_instances < 1:
            raise ValueError(f"max_instances must be an int >= 1, got {max_instances!r}")
        self.reference_value = reference_value
        self.max_instances = max_instances
        self.errors: dict[str, int] = {}
        """Failures by stage: ``sink:<name>``, ``rule:<name>``, ``instances:<rule>`` (over the cap)."""
        self._mono = clock.monotonic if clock is not None else time.monotonic
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()
        self._compiled = [Compiled(r) for r in self.rules]
        self._needed = {r.metric for r in self.rules}
        for r in self.rules:
            if isinstance(r, Shift):
                self._needed |= r.needs
        self._samples: tuple[Triple, ...] = self._zero_samples()
        self._active: tuple[AlertEvent, ...] = ()
        self._closed = False
        self._held: list[AlertEvent] | None = None

    # -- public ----------------------------------------------------------------------------
    def evaluate(self, snapshot: Snapshot) -> Snapshot:
        """Evaluate every rule on ``snapshot``; return it with the alert samples and events.

        The returned snapshot (``attrs.evolve``) has the previous alert samples replaced by
        ``mlmon_alert_firing{rule, ...}`` per rule instance and ``mlmon_alerts_firing``, and
        ``alerts`` set to the pending and firing instances. State changes go to the sinks.
        """
        with self._lock:
            events: list[AlertEvent] = []
            now = snapshot.timestamp
            index: dict[str, list[Sample]] = {}
            for s in snapshot.samples:
                if s.name in self._needed:
                    index.setdefault(s.name, []).append(s)
            counts: dict[str | None, float] = {}
            budgeted: list[Compiled] = []
            for c in self._compiled:
                if isinstance(c.rule, Shift):
                    budgeted.append(c)
                    continue
                try:
                    if c.rule.kind == "absent":
                        self._eval_absent(c, snapshot, index, now, events)
                    else:
                        self._eval_rule(c, snapshot, index, counts, now, events)
                except BaseException as exc:  # a reference_value of yours, say: never out
                    self._error(f"rule:{c.rule.name}", exc)
            if budgeted:
                try:
                    self._family.evaluate(
                        budgeted, snapshot, index, now, events, instance=self._instance,
                        baseline=self._baseline, step=self._step, error=self._error,
                    )  # fmt: skip
                except BaseException as exc:  # never out of the reporter thread
                    self._error("rule:budget", exc)
            triples, active = self._collect(snapshot, now)
            self._samples = triples
            self._active = active
        self._dispatch(events)
        kept = tuple(s for s in snapshot.samples if s.name not in _ALERT_NAMES)
        triples = self._notifications() + triples
        added = tuple(Sample(name, tuple(sorted(labels.items())), float(v)) for name, v, labels in triples)
        return attrs.evolve(snapshot, samples=kept + added, alerts=active)

    def samples(self) -> tuple[Triple, ...]:
        """``(name, value, labels)`` alert samples of the last evaluation (zeros before it),
        and ``mlmon_alert_notifications_total{sink, outcome}`` as it is now."""
        return self._notifications() + self._samples

    def notifications(self) -> dict[tuple[str, str], int]:
        """Events by ``(sink name, outcome)``, summed over sinks of the same name.

        From each sink's ``counts()`` (the shipped sinks have it: ``sent``, ``failed``, and for
        the webhook ``redirected``, ``timeout`` and ``dropped``), else from the engine's own
        count of the sink's ``send`` calls that returned (``sent``) or raised (``failed``).
        """
        out: dict[tuple[str, str], int] = {}
        for sink, name, tally in zip(self.sinks, self._sink_names, self._tally, strict=True):
            if tally is not None:
                counts: Mapping[str, int] = dict(tally)
            else:
                try:
                    counts = dict(sink.counts())  # type: ignore[attr-defined]
                except BaseException as exc:  # a sink of yours: counted, never raised
                    self._error(f"sink:{name}", exc)
                    continue
            for outcome, n in counts.items():
                key = (name, str(outcome))
                out[key] = out.get(key, 0) + int(n)
        return out

    def _notifications(self) -> tuple[Triple, ...]:
        return tuple(
            (NOTIFICATIONS, float(n), {"sink": name, "outcome": outcome})
            for (name, outcome), n in sorted(self.notifications().items())
        )

    def alerts(self) -> tuple[AlertEvent, ...]:
        """The pending and firing instances at the last evaluation."""
        return self._active

    def state(self, rule: str, **labels: str) -> str:
        """The state of one instance: ``"inactive"``, ``"pending"`` or ``"firing"``.

        ``labels`` are the instance's own labels (those the selector leaves open).
        """
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        for c in self._compiled:
            if c.rule.name == rule:
                inst = c.instances.get(key)
                return inst.state if inst is not None else _INACTIVE
        raise KeyError(rule)

    def reset(self) -> None:
        """Forget every instance, baseline and state (for a forked child)."""
        with self._lock:
            self._compiled = [Compiled(r) for r in self.rules]
            self._samples = self._zero_samples()
            self._active = ()
            self._family.reset()

    def close(self) -> None:
        """Close the sinks (a webhook delivers what it has queued). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for s, name in zip(self.sinks, self._sink_names, strict=True):
            try:
                s.close()
            except BaseException as exc:
                self._error(f"sink:{name}", exc)

    # -- evaluation ------------------------------------------------------------------------
    def _count(self, source: str | None, snapshot: Snapshot, counts: dict[str | None, float]) -> float:
        hit = counts.get(source)
        if hit is not None:
            return hit
        if source is None:
            n = math.inf
        else:
            v = snapshot.get(COUNT_METRICS[source])
            n = 0.0 if v is None else float(v)
            if source in ("rows", "calls"):
                n = round(n * snapshot.window, 6)
        counts[source] = n
        return n

    def _instance(self, c: Compiled, key: LabelPairs, series: LabelPairs) -> Instance | None:
        inst = c.instances.get(key)
        if inst is None:
            if len(c.instances) >= self.max_instances:
                stage = f"instances:{c.rule.name}"
                self.errors[stage] = self.errors.get(stage, 0) + 1
                return None
            inst = c.instances[key] = Instance(key, series)
        return inst

    def _eval_rule(
        self,
        c: Compiled,
        snapshot: Snapshot,
        index: dict[str, list[Sample]],
        counts: dict[str | None, float],
        now: float,
        events: list[AlertEvent],
    ) -> None:
        rule = c.rule
        n = self._count(rule.count_source, snapshot, counts)
        gated = n < rule.min_samples
        seen: set[LabelPairs] = set()
        for s in index.get(rule.metric, ()):
            if not c.matches(s.labels):
                continue
            key = tuple(kv for kv in s.labels if kv[0] not in c.fixed_keys)
            inst = self._instance(c, key, s.labels)
            if inst is None:
                continue
            seen.add(key)
            inst.last_seen = now
            inst.series_labels = s.labels
            inst.value = s.value
            cond: bool | None = None
            if gated:
                inst.measure = None
            else:
                base, n_base = self._baseline(c, inst, s, n, now, snapshot.window)
                inst.baseline = base
                cond, inst.measure, inst.limit = rule.check(
                    s.value, base, n, n_base, inst.state == _FIRING
                )
            self._step(c, inst, cond, now, None, snapshot, events)
        for key, inst in list(c.instances.items()):
            if key in seen:
                continue
            inst.value = inst.measure = None
            self._step(c, inst, None, now, None, snapshot, events)
            if inst.state == _INACTIVE and now - inst.last_seen > c.forget:
                del c.instances[key]

    def _baseline(
        self, c: Compiled, inst: Instance, s: Sample, n: float, now: float, window: float
    ) -> tuple[float | None, float | None]:
        spec = c.rule.baseline_spec
        if spec is None:
            return None, None
        if spec.kind == "fixed":
            return spec.value, None
        if spec.kind == "reference":
            assert self.reference_value is not None
            ref = self.reference_value(c.rule.metric, dict(s.labels))
            if ref is None and not c.warned:
                c.warned = True
                log.warning(
                    "mlmon alerts: rule %r has no reference value for %s%s; it stays inactive",
                    c.rule.name, c.rule.metric, dict(s.labels),
                )  # fmt: skip
            return (None if ref is None else float(ref)), None
        if spec.kind == "pinned":
            if inst.pinned is None:
                period = spec.seconds or 0.0  # values in [first, first + period) are pinned
                if not inst.pin or now - inst.pin[0][0] < period:
                    inst.pin.append((now, s.value, n))
                if now - inst.pin[0][0] < period:
                    return None, None
                k = len(inst.pin)
                inst.pinned = (
                    math.fsum(v for _, v, _ in inst.pin) / k,
                    math.fsum(m for _, _, m in inst.pin) / k,
                )
                inst.pin = []
            return inst.pinned
        # trailing
        assert spec.seconds is not None
        if inst.trail is None:
            inst.trail = Trail()
        exclude = window if spec.exclude is None else spec.exclude
        hi = now - exclude
        got = inst.trail.mean(hi - spec.seconds, hi, spec.min_coverage * spec.seconds)
        inst.trail.record(now, s.value, n, spec.seconds / _THIN)
        return got if got is not None else (None, None)

    def _eval_absent(
        self,
        c: Compiled,
        snapshot: Snapshot,
        index: dict[str, list[Sample]],
        now: float,
        events: list[AlertEvent],
    ) -> None:
        rule = c.rule
        series = [s for s in index.get(rule.metric, ()) if c.matches(s.labels)]
        keys: set[LabelPairs] = set()
        if not series:
            # A missing series counts as a counter that never moves.
            inst = self._instance(c, (), ())
            if inst is not None:
                keys.add(())
                inst.last_seen = now
                self._silent(c, inst, None, now, snapshot, events)
        else:
            for s in series:
                key = tuple(kv for kv in s.labels if kv[0] not in c.fixed_keys)
                inst = self._instance(c, key, s.labels)
                if inst is None:
                    continue
                keys.add(key)
                inst.last_seen = now
                inst.series_labels = s.labels
                self._silent(c, inst, s.value, now, snapshot, events)
        for key, inst in list(c.instances.items()):
            if key not in keys:
                if key == () and series:
                    del c.instances[key]  # the "missing" instance, now that series exist
                    continue
                inst.value = None
                self._step(c, inst, None, now, None, snapshot, events)
                if inst.state == _INACTIVE and now - inst.last_seen > c.forget:
                    del c.instances[key]

    def _silent(
        self,
        c: Compiled,
        inst: Instance,
        value: float | None,
        now: float,
        snapshot: Snapshot,
        events: list[AlertEvent],
    ) -> None:
        if inst.changed_at is None or (value is not None and value != inst.counter):
            inst.changed_at = now  # first sight, an increase, or a reset (a new process)
        if value is not None:
            inst.counter = value
        inst.value = value
        if inst.counter is None and c.rule.min_samples > 0:
            cond: bool | None = None
        elif inst.counter is not None and inst.counter < c.rule.min_samples:
            cond = None
        else:
            silent = max(0.0, now - inst.changed_at)
            cond, inst.measure, inst.limit = c.rule.check(silent, None, math.inf, None, False)
        if cond is None:
            inst.measure = None
        self._step(c, inst, cond, now, inst.changed_at, snapshot, events)

    def _step(
        self,
        c: Compiled,
        inst: Instance,
        cond: bool | None,
        now: float,
        since: float | None,
        snapshot: Snapshot,
        events: list[AlertEvent],
    ) -> None:
        rule = c.rule
        hold = 0.0 if rule.kind == "absent" else rule.for_
        if cond:
            inst.false_since = None
            if inst.state == _INACTIVE:
                inst.state = _PENDING
                inst.since = since if since is not None else now
                was_inactive = True
            else:
                was_inactive = False
            if inst.state == _PENDING:
                assert inst.since is not None
                cooling = inst.resolved_at is not None and now - inst.resolved_at < rule.cooldown
                if now - inst.since >= hold and not cooling:
                    inst.state = _FIRING
                    inst.fired_at = now
                    events.append(self._event(c, inst, "firing", now, snapshot))
                elif was_inactive:
                    events.append(self._event(c, inst, "pending", now, snapshot))
            return
        if inst.state == _PENDING:
            inst.state = _INACTIVE
            events.append(self._event(c, inst, "inactive", now, snapshot))
            inst.since = None
        elif inst.state == _FIRING:
            if inst.false_since is None:
                inst.false_since = now
            if now - inst.false_since >= rule.resolve_after:
                inst.state = _INACTIVE
                inst.resolved_at = now
                events.append(self._event(c, inst, "resolved", now, snapshot))
                inst.since = inst.false_since = None

    def _event(
        self, c: Compiled, inst: Instance, state: AlertState, now: float, snapshot: Snapshot
    ) -> AlertEvent:
        rule = c.rule
        return AlertEvent(
            rule=rule.name,
            state=state,
            metric=rule.metric,
            value=inst.value,
            baseline=inst.baseline,
            threshold=inst.limit,
            measure=inst.measure,
            window=snapshot.window,
            started_at=inst.since,
            at=now,
            severity=rule.severity,
            model=snapshot.model,
            version=snapshot.version,
            instance=snapshot.instance,
            labels=inst.series_labels,
            condition=rule.describe(),
            summary=rule.summary,
        )

    def _collect(self, snapshot: Snapshot, now: float) -> tuple[tuple[Triple, ...], tuple[AlertEvent, ...]]:
        triples: list[Triple] = []
        active: list[AlertEvent] = []
        firing = 0
        for c in self._compiled:
            name = c.rule.name
            shown = 0
            for inst in c.instances.values():
                if inst.last_seen != now and inst.state == _INACTIVE:
                    continue
                shown += 1
                on = inst.state == _FIRING
                firing += on
                labels = dict(inst.key_labels)
                labels["rule"] = name
                triples.append(("mlmon_alert_firing", 1.0 if on else 0.0, labels))
                if inst.state != _INACTIVE:
                    active.append(self._event(c, inst, inst.state, now, snapshot))  # type: ignore[arg-type]
            if not shown:
                triples.append(("mlmon_alert_firing", 0.0, {"rule": name}))
        triples.append(("mlmon_alerts_firing", float(firing), {}))
        return tuple(triples), tuple(active)

    def _zero_samples(self) -> tuple[Triple, ...]:
        out: list[Triple] = [("mlmon_alert_firing", 0.0, {"rule": r.name}) for r in self.rules]
        out.append(("mlmon_alerts_firing", 0.0, {}))
        return tuple(out)

    def hold(self) -> None:
        """Keep the events of the next evaluations instead of sending them, until
        :meth:`release` (the fleet's leader sends only once its new state is committed)."""
        self._held = []

    def release(self, send: bool = True) -> int:
        """Send (or, with ``send=False``, drop) the events held since :meth:`hold`, and stop
        holding. Returns how many there were."""
        held, self._held = self._held or [], None
        if send:
            self._dispatch(held)
        return len(held)

    def _dispatch(self, events: list[AlertEvent]) -> None:
        if self._held is not None:
            self._held.extend(events)
            return
        for e in events:
            for s, name, tally in zip(self.sinks, self._sink_names, self._tally, strict=True):
                try:
                    s.send(e)
                except BaseException as exc:  # SystemExit in a sink of yours included
                    self._error(f"sink:{name}", exc)
                    if tally is not None:
                        tally["failed"] += 1
                else:
                    if tally is not None:
                        tally["sent"] += 1

    def _error(self, stage: str, exc: BaseException) -> None:
        self.errors[stage] = self.errors.get(stage, 0) + 1
        now = self._mono()
        if now - self._last_log.get(stage, -math.inf) >= 60.0:
            self._last_log[stage] = now
            log.warning("mlmon alerts: %s failed: %r", stage, exc)

    def __repr__(self) -> str:
        return f"AlertEngine({len(self.rules)} rules, sinks={list(self._sink_names)})"
