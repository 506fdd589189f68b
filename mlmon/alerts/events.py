"""Alert events: what the engine tells sinks, and what a snapshot carries in ``alerts``."""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

__all__ = ["STATES", "AlertEvent", "AlertState"]

AlertState = Literal["pending", "firing", "resolved", "inactive"]
STATES: tuple[str, ...] = ("pending", "firing", "resolved", "inactive")
"""Event states: ``pending`` (condition true, waiting ``for_``), ``firing``, ``resolved`` (a
firing alert ended) and ``inactive`` (a pending alert whose condition went away before firing)."""


def _num(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


@attrs.frozen(kw_only=True, slots=True)
class AlertEvent:
    """One alert instance at one moment: a state transition, or its current state.

    Attributes:
        rule: the rule's name.
        state: ``"pending"``, ``"firing"``, ``"resolved"`` or ``"inactive"``.
        metric: the metric the rule watches.
        value: the metric's value at ``at`` (None when the series was missing).
        baseline: the baseline the value was compared with, for relative rules.
        threshold: the rule's limit in its own terms (the bound of a Threshold, the percent of
            PercentDrop/PercentChange, the factor of VarianceChange, the seconds of Absent).
        measure: what was compared with ``threshold`` (the value, the drop or change in %, the
            variance ratio, the seconds without an increase).
        window: seconds the snapshot's window covered.
        started_at: Unix time the condition started to hold in this episode.
        at: Unix time of this event (the snapshot's timestamp).
        severity: ``"info"``, ``"warning"`` or ``"critical"``.
        model, version, instance: the monitor's identity.
        labels: the series' labels, sorted ``(label, value)`` pairs.
        condition: the rule's condition in words.
        summary: the rule's own summary text, if it has one.

    >>> e = AlertEvent(rule="precision_drop_10pct", state="firing", metric="mlmon_precision",
    ...                value=0.61, baseline=0.8, threshold=10.0, measure=23.75, window=300.0,
    ...                started_at=100.0, at=100.0, severity="warning", model="fraud",
    ...                condition="mlmon_precision drops more than 10% below 0.8")
    >>> e.message
    '[warning] fraud: precision_drop_10pct firing: mlmon_precision drops more than 10% below 0.8 (value 0.61, baseline 0.8, measured 23.75)'
    >>> e.to_dict()["labels"], e.to_dict()["state"]
    ({}, 'firing')
    """

    rule: str
    state: AlertState
    metric: str
    value: float | None
    baseline: float | None = None
    threshold: float | None = None
    measure: float | None = None
    window: float = 0.0
    started_at: float | None = None
    at: float = 0.0
    severity: str = "warning"
    model: str = ""
    version: str | None = None
    instance: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    condition: str = ""
    summary: str | None = None

    def label(self, key: str) -> str | None:
        """The value of label ``key``, or None."""
        for k, v in self.labels:
            if k == key:
                return v
        return None

    @property
    def message(self) -> str:
        """One line for logs and chat: severity, model, rule, state, condition and numbers."""
        who = self.model + (f"/{self.version}" if self.version else "")
        sel = ",".join(f"{k}={v}" for k, v in self.labels)
        head = f"[{self.severity}] {who}: {self.rule}" + (f"{{{sel}}}" if sel else "")
        nums = []
        if self.value is not None:
            nums.append(f"value {self.value:.4g}")
        if self.baseline is not None:
            nums.append(f"baseline {self.baseline:.4g}")
        if self.measure is not None and self.measure != self.value:
            nums.append(f"measured {self.measure:.4g}")
        text = self.summary or self.condition
        return f"{head} {self.state}: {text}" + (f" ({', '.join(nums)})" if nums else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become None, labels a dict)."""
        return {
            "rule": self.rule,
            "state": self.state,
            "metric": self.metric,
            "value": _num(self.value),
            "baseline": _num(self.baseline),
            "threshold": _num(self.threshold),
            "measure": _num(self.measure),
            "window": _num(self.window),
            "started_at": _num(self.started_at),
            "at": _num(self.at),
            "severity": self.severity,
            "model": self.model,
            "version": self.version,
            "instance": self.instance,
            "labels": dict(self.labels),
            "condition": self.condition,
            "summary": self.summary,
            "message": self.message,
        }
