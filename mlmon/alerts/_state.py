"""The engine's memory: one alert instance's state, a rule's instances, a trailing history."""

from __future__ import annotations

import math
from collections import deque

from mlmon.alerts._checks import LabelPairs
from mlmon.alerts.base import Rule

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"
FORGET = 3600.0  # seconds an unseen, inactive instance is remembered (longer for trailing)


class Trail:
    """The values behind a trailing baseline: queued until they are old enough, then averaged."""

    __slots__ = ("last_t", "n_sum", "queued", "v_sum", "within")

    def __init__(self) -> None:
        self.queued: deque[tuple[float, float, float]] = deque()
        self.within: deque[tuple[float, float, float]] = deque()
        self.v_sum = 0.0
        self.n_sum = 0.0
        self.last_t = -math.inf

    def mean(self, lo: float, hi: float, need: float) -> tuple[float, float] | None:
        """Mean value and mean count of the values recorded in [lo, hi], if they span ``need``."""
        queued, within = self.queued, self.within
        while queued and queued[0][0] <= hi:
            item = queued.popleft()
            within.append(item)
            self.v_sum += item[1]
            self.n_sum += item[2]
        while within and within[0][0] < lo:
            _, v, n = within.popleft()
            self.v_sum -= v
            self.n_sum -= n
        if not within:
            self.v_sum = self.n_sum = 0.0  # no drift from rounding when it empties
            return None
        if hi - within[0][0] < need:
            return None
        k = len(within)
        return self.v_sum / k, self.n_sum / k

    def record(self, t: float, value: float, n: float, spacing: float) -> None:
        if t - self.last_t >= spacing:
            self.queued.append((t, value, n))
            self.last_t = t


class Instance:
    """The state of one alert instance (one rule, one series)."""

    __slots__ = ("baseline", "changed_at", "counter", "false_since", "fired_at", "key_labels",
                 "last_seen", "limit", "measure", "pin", "pinned", "resolved_at", "series_labels",
                 "since", "state", "trail", "value")  # fmt: skip

    def __init__(self, key_labels: LabelPairs, series_labels: LabelPairs) -> None:
        self.key_labels = key_labels
        self.series_labels = series_labels
        self.state = INACTIVE
        self.since: float | None = None
        self.false_since: float | None = None
        self.fired_at: float | None = None
        self.resolved_at: float | None = None
        self.last_seen = -math.inf
        self.value: float | None = None
        self.baseline: float | None = None
        self.measure: float | None = None
        self.limit: float | None = None
        self.pin: list[tuple[float, float, float]] = []
        self.pinned: tuple[float, float] | None = None
        self.trail: Trail | None = None
        self.counter: float | None = None
        self.changed_at: float | None = None


class Compiled:
    """A rule with its selector taken apart, and its instances."""

    __slots__ = ("fixed", "fixed_keys", "forget", "instances", "present", "rule", "warned")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.fixed = tuple((k, v) for k, v in rule.labels if v != "*")
        self.fixed_keys = frozenset(k for k, _ in self.fixed)
        self.present = tuple(k for k, v in rule.labels if v == "*")
        self.instances: dict[LabelPairs, Instance] = {}
        self.warned = False
        base = rule.baseline_spec
        trailing = base.seconds if base is not None and base.seconds is not None else 0.0
        self.forget = FORGET + trailing  # keep a trailing history through a long gap

    def matches(self, labels: LabelPairs) -> bool:
        have = dict(labels)
        for k, v in self.fixed:
            if have.get(k) != v:
                return False
        return all(k in have for k in self.present)
