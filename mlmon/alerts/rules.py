"""Alert rules: what to watch, when a value is bad enough to fire, and when it is good again.

Rules are frozen configuration, validated once when they are built: a bad rule raises a
``ValueError`` naming the field and the value, never at 3 a.m. on the reporter thread. The
:class:`~mlmon.alerts.AlertEngine` evaluates them on every snapshot.

Every rule names one metric of :data:`mlmon.CATALOG` and a label selector. As in Prometheus, the
selector matches every series whose labels include it, and each matching series is its own alert
instance; the value ``"*"`` asks for the label to be present with any value, so
``labels={"feature": "*"}`` gives one instance per feature.

Each rule waits for ``min_samples`` observations behind the metric (labels for quality metrics,
outputs for output statistics, rows for features and outcomes, calls for service health) and
never fires below it; :func:`default_min_samples` gives the defaults. ``docs/alerts.md`` explains
how to pick thresholds and what the defaults cost in detection delay and false alarms.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import attrs

from mlmon.snapshot import CATALOG, MetricInfo

__all__ = [
    "SEVERITIES",
    "Absent",
    "Baseline",
    "PercentChange",
    "PercentDrop",
    "Rule",
    "Threshold",
    "VarianceChange",
    "default_min_samples",
]

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
"""The severities a rule may have, mildest first."""

LabelPairs = tuple[tuple[str, str], ...]
CountSource = Literal["labels", "outputs", "rows", "calls"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")

# What each metric is estimated from, and how many of those it takes before a rule may fire.
# Quality metrics: labels joined in the window; output statistics: valid outputs in the window;
# features and outcomes: prediction rows in the window; service health: calls in the window.
_QUALITY = ("mlmon_precision", "mlmon_recall", "mlmon_f1", "mlmon_accuracy", "mlmon_mae",
            "mlmon_rmse", "mlmon_mean_error", "mlmon_label_delay_seconds")  # fmt: skip
_OUTPUTS = ("mlmon_output_mean", "mlmon_output_variance", "mlmon_output_stddev", "mlmon_output",
            "mlmon_output_class_ratio", "mlmon_output_drift_psi", "mlmon_estimated_precision",
            "mlmon_estimated_recall", "mlmon_estimated_f1")  # fmt: skip
_SERVICE = ("mlmon_error_ratio", "mlmon_availability_ratio", "mlmon_latency_seconds",
            "mlmon_latency_seconds_mean")  # fmt: skip

_GATES: dict[str, tuple[CountSource, int]] = {}
_GATES.update({m: ("labels", 200) for m in _QUALITY})
_GATES.update({m: ("outputs", 500) for m in _OUTPUTS})
_GATES.update({m: ("rows", 500) for m in CATALOG if m.startswith("mlmon_feature_")})
_GATES.update({m: ("calls", 100) for m in _SERVICE})
_GATES["mlmon_label_coverage_ratio"] = ("rows", 500)
_GATES["mlmon_outcome_rate"] = ("rows", 1000)

COUNT_METRICS: Mapping[str, str] = {
    "labels": "mlmon_labels_window",
    "outputs": "mlmon_output_count",
    "rows": "mlmon_rows_per_second",
    "calls": "mlmon_calls_per_second",
}
"""Where each sample-count source is read from (``rows`` and ``calls`` are rates times the window)."""


def default_min_samples(metric: str) -> tuple[str | None, int]:
    """What a metric is estimated from, and the default ``min_samples`` of rules on it.

    Returns:
        ``(source, default)``: source is ``"labels"`` (``mlmon_labels_window``), ``"outputs"``
        (``mlmon_output_count``), ``"rows"`` (``mlmon_rows_per_second`` × window), ``"calls"``
        (``mlmon_calls_per_second`` × window), or None for metrics that are not estimates
        (counters, rates, resources), whose default is 0.

    >>> default_min_samples("mlmon_precision")
    ('labels', 200)
    >>> default_min_samples("mlmon_feature_drift_psi"), default_min_samples("mlmon_up")
    (('rows', 500), (None, 0))
    """
    return _GATES.get(metric, (None, 0))


# --------------------------------------------------------------------------- validation helpers


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(field: str, value: object) -> float:
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _seconds(field: str, value: object, positive: bool = False) -> float:
    ok = _is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    if not ok or float(value) < 0 or (positive and float(value) == 0):  # type: ignore[arg-type]
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{field} must be a number of seconds {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _metric_info(metric: object) -> MetricInfo:
    if not isinstance(metric, str) or metric not in CATALOG:
        close = difflib.get_close_matches(str(metric), list(CATALOG), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"metric must be a name from mlmon.CATALOG, got {metric!r}{hint}")
    return CATALOG[metric]


def _quantile_label(quantile: object) -> str:
    if isinstance(quantile, str):
        try:
            q = float(quantile)
        except ValueError:
            raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}") from None
    elif _is_number(quantile):
        q = float(quantile)  # type: ignore[arg-type]
    else:
        raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}")
    if not (0.0 < q <= 1.0):
        raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}")
    # The monitor writes quantile labels with format(q, "g"): 0.99 -> "0.99", 1.0 -> "1".
    return format(q, "g")


def _labels(info: MetricInfo, labels: object, quantile: object) -> LabelPairs:
    if labels is None:
        items: list[tuple[Any, Any]] = []
    elif isinstance(labels, Mapping):
        items = list(labels.items())
    elif isinstance(labels, Iterable) and not isinstance(labels, (str, bytes)):
        items = []
        for pair in labels:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ValueError(f"labels must be a mapping of label name to value, got {labels!r}")
            items.append(pair)
    else:
        raise ValueError(f"labels must be a mapping of label name to value, got {labels!r}")
    out: dict[str, str] = {}
    for key, value in items:
        if key not in info.labels:
            have = ", ".join(info.labels) if info.labels else "none"
            raise ValueError(
                f"labels: {info.name} has no label {key!r} (its labels: {have}), got {labels!r}"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
            raise ValueError(f"labels[{key!r}] must be a non-empty string or '*', got {value!r}")
        text = str(value)
        if key == "quantile" and text != "*":
            text = _quantile_label(text)
        out[str(key)] = text
    if quantile is not None:
        if "quantile" not in info.labels:
            raise ValueError(f"quantile: {info.name} has no quantiles, got {quantile!r}")
        q = _quantile_label(quantile)
        if out.get("quantile", q) != q:
            raise ValueError(
                f"quantile={quantile!r} contradicts labels['quantile']={out['quantile']!r}"
            )
        out["quantile"] = q
    if "quantile" in info.labels and out.get("quantile", "*") == "*":
        raise ValueError(
            f"quantile: rules on {info.name} must choose one quantile "
            f"(quantile=0.99, say), got {out.get('quantile')!r}"
        )
    return tuple(sorted(out.items()))


def _severity(value: object) -> str:
    if value not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {value!r}")
    return str(value)


def _min_samples(value: object, metric: str) -> int:
    if value is None:
        return default_min_samples(metric)[1]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"min_samples must be an int >= 0 or None, got {value!r}")
    return value


def _clear_ratio(value: object) -> float:
    if not _is_number(value) or not (0.0 < float(value) <= 1.0):  # type: ignore[arg-type]
        raise ValueError(f"clear_ratio must be a number in (0, 1], got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _summary(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"summary must be a string or None, got {value!r}")
    return value


def _num_part(x: float) -> str:
    text = format(x, "g").replace("-", "m").replace("+", "")
    return text.replace(".", "_")


def _label_part(key: str, value: str) -> str:
    if value == "*":
        return ""
    if key == "quantile":
        q = float(value)
        return "max" if q == 1.0 else "p" + _num_part(round(q * 100, 6))
    return value


def _name(name: object, metric: str, labels: LabelPairs, *parts: str) -> str:
    if name is not None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"name must match [A-Za-z_][A-Za-z0-9_]*, got {name!r}")
        return name
    pieces = [metric.removeprefix("mlmon_")]
    pieces += [_label_part(k, v) for k, v in labels]
    pieces += parts
    text = _UNSAFE.sub("_", "_".join(p for p in pieces if p)).strip("_")
    text = re.sub(r"__+", "_", text) or "rule"
    return "r_" + text if text[0].isdigit() else text


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------- baselines


def _baseline_kind(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("fixed", "reference", "pinned", "trailing"):
        raise ValueError(
            f"{attribute.name} must be 'fixed', 'reference', 'pinned' or 'trailing', got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Baseline:
    """What a relative rule compares the current value with.

    Use the constructors: ``Baseline.fixed(0.8)`` (a rule also takes the bare number),
    ``Baseline.reference()`` (or ``"reference"``: the value the monitor's ``Reference`` gives,
    e.g. the training mean of a feature), ``Baseline.pinned()`` (or ``"pinned"``: the first
    value seen once ``min_samples`` is met, then kept; ``Baseline.pinned(seconds)`` averages the
    values of the first ``seconds``) and ``Baseline.trailing(seconds)`` (the mean of the
    metric's own values over a trailing period that ends where the current window begins; rules
    default to ``Baseline.trailing(3600)``).

    Attributes:
        kind: ``"fixed"``, ``"reference"``, ``"pinned"`` or ``"trailing"``.
        value: the number of a fixed baseline (> 0).
        seconds: length of the trailing period, or of the pinned period (0: the first value).
        exclude: seconds just before now left out of the trailing period; None means the
            snapshot's window, so the baseline never shares data with the current value.
        min_coverage: share of the trailing period that must be covered by recorded values
            before the baseline is used.

    >>> Baseline.trailing(3600).describe()
    'its mean over the 1h before the current window'
    >>> Baseline.fixed(0.8).describe(), Baseline.pinned().describe()
    ('0.8', 'its first value once min_samples was met')
    >>> Baseline.trailing(0)
    Traceback (most recent call last):
    ...
    ValueError: seconds must be a number of seconds > 0, got 0
    """

    kind: Literal["fixed", "reference", "pinned", "trailing"] = attrs.field(validator=_baseline_kind)
    value: float | None = None
    seconds: float | None = None
    exclude: float | None = None
    min_coverage: float = 0.5

    def __attrs_post_init__(self) -> None:
        if self.kind == "fixed":
            v = _finite("baseline", self.value)
            if v <= 0:
                raise ValueError(f"baseline must be > 0 for a relative change, got {self.value!r}")
        elif self.value is not None:
            raise ValueError(f"value is only for fixed baselines, got {self.value!r}")
        if self.kind == "trailing":
            _seconds("seconds", self.seconds, positive=True)
            if self.exclude is not None:
                _seconds("exclude", self.exclude)
            cov = self.min_coverage
            if not _is_number(cov) or not (0.0 < cov <= 1.0):
                raise ValueError(f"min_coverage must be a number in (0, 1], got {cov!r}")
        elif self.kind == "pinned" and self.exclude is None:
            if self.seconds is not None:
                _seconds("seconds", self.seconds)
        elif self.seconds is not None or self.exclude is not None:
            raise ValueError(
                f"seconds/exclude are not for {self.kind} baselines, got {self.seconds!r}/{self.exclude!r}"
            )

    @classmethod
    def fixed(cls, value: float) -> Baseline:
        """A constant baseline (> 0)."""
        return cls(kind="fixed", value=value)

    @classmethod
    def reference(cls) -> Baseline:
        """The value the monitor's ``Reference`` gives for the metric and labels."""
        return cls(kind="reference")

    @classmethod
    def pinned(cls, seconds: float = 0.0) -> Baseline:
        """The mean of the values of the first ``seconds`` once ``min_samples`` is met, then kept.

        With ``seconds=0`` it is the first value. Until the period is over the rule does not
        evaluate.
        """
        return cls(kind="pinned", seconds=seconds)

    @classmethod
    def trailing(
        cls, seconds: float, exclude: float | None = None, min_coverage: float = 0.5
    ) -> Baseline:
        """The mean of the metric's values recorded between ``now - exclude - seconds`` and
        ``now - exclude`` (``exclude`` defaults to the snapshot's window).

        Only values recorded while ``min_samples`` was met count; until they span
        ``min_coverage * seconds`` the rule does not evaluate.
        """
        return cls(kind="trailing", seconds=seconds, exclude=exclude, min_coverage=min_coverage)

    def describe(self) -> str:
        """A few words for messages and docs."""
        if self.kind == "fixed":
            return f"{self.value:g}"
        if self.kind == "reference":
            return "its reference value"
        if self.kind == "pinned":
            if not self.seconds:
                return "its first value once min_samples was met"
            return f"its mean over the first {_duration_text(self.seconds)} once min_samples was met"
        assert self.seconds is not None
        span = _duration_text(self.seconds)
        if self.exclude is None:
            return f"its mean over the {span} before the current window"
        return f"its mean over the {span} ending {_duration_text(self.exclude)} ago"


DEFAULT_BASELINE_SECONDS = 3600.0


def _baseline(value: object) -> Baseline:
    if value is None:
        return Baseline.trailing(DEFAULT_BASELINE_SECONDS)
    if isinstance(value, Baseline):
        return value
    if value == "reference":
        return Baseline.reference()
    if value == "pinned":
        return Baseline.pinned()
    if _is_number(value):
        return Baseline.fixed(value)  # type: ignore[arg-type]
    raise ValueError(
        f"baseline must be a number, 'reference', 'pinned' or a Baseline, got {value!r}"
    )


# --------------------------------------------------------------------------- rules

Check = tuple[bool | None, float | None, float]
"""(condition or None when it cannot be decided, the measured quantity, the limit it is held to)."""


class Rule:
    """What every rule has: the metric and selector, name, severity and timing.

    Not built directly: use :class:`Threshold`, :class:`PercentDrop`, :class:`PercentChange`,
    :class:`VarianceChange` or :class:`Absent`.

    Attributes:
        metric: a name from :data:`mlmon.CATALOG`.
        labels: the selector, sorted ``(label, value)`` pairs; ``"*"`` matches any value.
        name: unique among a monitor's rules, ``[A-Za-z_][A-Za-z0-9_]*``; generated from the
            metric, the selector and the limit when not given.
        severity: ``"info"``, ``"warning"`` or ``"critical"``.
        for_: seconds the condition must hold (pending) before the alert fires.
        resolve_after: seconds the condition must stay false before a firing alert resolves.
        cooldown: seconds after a resolution during which the rule does not fire again.
        min_samples: observations behind the metric below which the rule never fires.
        summary: your own one-line text for notifications (None: generated).

    >>> rule = PercentDrop("mlmon_recall", labels={"class": "*"}, percent=15)
    >>> isinstance(rule, Rule), rule.selector, rule.count_source, rule.for_
    (True, {'class': '*'}, 'labels', 60.0)
    """

    __slots__ = ()
    kind: ClassVar[str] = "rule"

    metric: str
    labels: LabelPairs
    name: str
    severity: str
    for_: float
    resolve_after: float
    cooldown: float
    min_samples: int
    summary: str | None

    @property
    def selector(self) -> dict[str, str]:
        """The label selector as a dict."""
        return dict(self.labels)

    @property
    def count_source(self) -> str | None:
        """What ``min_samples`` counts: see :func:`default_min_samples`."""
        return default_min_samples(self.metric)[0]

    @property
    def baseline_spec(self) -> Baseline | None:
        """The rule's baseline, for relative rules."""
        return None

    def describe(self) -> str:
        """The firing condition in words."""
        raise NotImplementedError  # pragma: no cover - every rule overrides it

    def check(
        self, value: float, baseline: float | None, n: float, n_baseline: float | None, firing: bool
    ) -> Check:
        """Decide the condition for one series.

        Args:
            value: the metric's current value.
            baseline: the baseline's value, when the rule has one (None: not known yet).
            n: observations behind ``value`` (see :attr:`count_source`).
            n_baseline: observations behind ``baseline``, None when it is exact.
            firing: True while the alert fires: the condition is then held to the clearing
                limit (hysteresis), so a value hovering at the limit does not flap.

        Returns:
            ``(condition, measure, limit)``; the condition is None when it cannot be decided.
        """
        raise NotImplementedError  # pragma: no cover - every rule overrides it

    def _where(self) -> str:
        sel = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.metric}{{{sel}}}" if sel else self.metric


def _common(
    metric: object,
    labels: object,
    quantile: object,
    severity: object,
    for_: object,
    resolve_after: object,
    cooldown: object,
    min_samples: object,
    summary: object,
) -> tuple[MetricInfo, LabelPairs, str, float, float, float, int, str | None]:
    info = _metric_info(metric)
    return (
        info,
        _labels(info, labels, quantile),
        _severity(severity),
        _seconds("for_", for_),
        _seconds("resolve_after", resolve_after),
        _seconds("cooldown", cooldown),
        _min_samples(min_samples, info.name),
        _summary(summary),
    )


@attrs.frozen(init=False)
class Threshold(Rule):
    """Fires while the metric is above ``above`` or below ``below``.

    Args:
        metric: a name from :data:`mlmon.CATALOG`.
        above: fire when the value is greater than this.
        below: fire when the value is less than this (at least one of the two).
        quantile: shorthand for ``labels={"quantile": ...}`` on quantile metrics.
        labels: label selector (``"*"`` for one instance per value).
        name, severity, for_, resolve_after, cooldown, min_samples, summary: see :class:`Rule`.
        hysteresis: metric units by which the value must come back inside the limit before
            the condition counts as false again (0: none).

    >>> r = Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, for_=60)
    >>> r.name, r.labels, r.min_samples
    ('latency_seconds_p99_above_0_2', (('quantile', '0.99'),), 100)
    >>> r.check(0.25, None, 500, None, firing=False)
    (True, 0.25, 0.2)
    >>> Threshold("mlmon_error_ratio")
    Traceback (most recent call last):
    ...
    ValueError: Threshold needs above=... or below=... (or both), got neither
    """

    kind: ClassVar[str] = "threshold"

    metric: str
    above: float | None
    below: float | None
    hysteresis: float
    labels: LabelPairs
    name: str
    severity: str
    for_: float
    resolve_after: float
    cooldown: float
    min_samples: int
    summary: str | None

    def __init__(
        self,
        metric: str,
        *,
        above: float | None = None,
        below: float | None = None,
        quantile: float | str | None = None,
        labels: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        name: str | None = None,
        severity: Severity | str = "warning",
        for_: float = 0.0,
        resolve_after: float = 60.0,
        cooldown: float = 0.0,
        min_samples: int | None = None,
        hysteresis: float = 0.0,
        summary: str | None = None,
    ) -> None:
        info, sel, sev, f, ra, cd, ms, summ = _common(
            metric, labels, quantile, severity, for_, resolve_after, cooldown, min_samples, summary
        )
        if above is None and below is None:
            raise ValueError("Threshold needs above=... or below=... (or both), got neither")
        a = None if above is None else _finite("above", above)
        b = None if below is None else _finite("below", below)
        if a is not None and b is not None and b >= a:
            raise ValueError(
                f"below must be less than above (it fires outside [below, above]), got "
                f"below={below!r} above={above!r}"
            )
        h = _finite("hysteresis", hysteresis)
        if h < 0:
            raise ValueError(f"hysteresis must be >= 0, got {hysteresis!r}")
        parts = []
        if a is not None:
            parts += ["above", _num_part(a)]
        if b is not None:
            parts += ["below", _num_part(b)]
        self.__attrs_init__(
            info.name, a, b, h, sel, _name(name, info.name, sel, *parts), sev, f, ra, cd, ms, summ
        )

    def describe(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        return f"{self._where()} {' or '.join(parts)}"

    def check(
        self, value: float, baseline: float | None, n: float, n_baseline: float | None, firing: bool
    ) -> Check:
        h = self.hysteresis if firing else 0.0
        a, b = self.above, self.below
        if a is not None and value > a - h:
            return True, value, a
        if b is not None and value < b + h:
            return True, value, b
        if a is not None and b is not None:
            return False, value, a if abs(value - a) <= abs(value - b) else b
        return False, value, a if a is not None else b  # type: ignore[return-value]


@attrs.frozen(init=False)
class _PercentRule(Rule):
    """What PercentDrop and PercentChange share: fields, constructor, baseline and check.

    A subclass keeps only what differs: the word in generated names (``_word``), the range
    ``percent`` may take (``_percent``) and how the change is measured (``_measure``).
    """

    _word: ClassVar[str]

    metric: str
    percent: float
    baseline: Baseline
    clear_ratio: float
    labels: LabelPairs
    name: str
    severity: str
    for_: float
    resolve_after: float
    cooldown: float
    min_samples: int
    summary: str | None

    def __init__(
        self,
        metric: str,
        *,
        percent: float,
        baseline: float | str | Baseline | None = None,
        labels: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        quantile: float | str | None = None,
        name: str | None = None,
        severity: Severity | str = "warning",
        for_: float = 60.0,
        resolve_after: float = 60.0,
        cooldown: float = 0.0,
        min_samples: int | None = None,
        clear_ratio: float = 0.8,
        summary: str | None = None,
    ) -> None:
        info, sel, sev, f, ra, cd, ms, summ = _common(
            metric, labels, quantile, severity, for_, resolve_after, cooldown, min_samples, summary
        )
        p = self._percent(percent)
        nm = _name(name, info.name, sel, self._word, _num_part(p) + "pct")
        self.__attrs_init__(
            info.name, p, _baseline(baseline), _clear_ratio(clear_ratio), sel, nm, sev, f, ra, cd, ms, summ
        )

    @staticmethod
    def _percent(percent: float) -> float:
        """``percent`` as a float; raises ValueError when it is out of the rule's range."""
        raise NotImplementedError  # pragma: no cover - every percent rule overrides it

    def _measure(self, value: float, baseline: float) -> tuple[float, float]:
        """``(the change reported, its size held to the limit)``, baseline > 0."""
        raise NotImplementedError  # pragma: no cover - every percent rule overrides it

    @property
    def baseline_spec(self) -> Baseline:
        return self.baseline

    def check(
        self, value: float, baseline: float | None, n: float, n_baseline: float | None, firing: bool
    ) -> Check:
        if baseline is None or not (baseline > 0 and math.isfinite(baseline)):
            return None, None, self.percent
        measure, size = self._measure(value, baseline)
        limit = self.percent * (self.clear_ratio if firing else 1.0)
        return size > limit, measure, self.percent


@attrs.frozen(init=False)
class PercentDrop(_PercentRule):
    """Fires when the metric falls more than ``percent`` % below its baseline.

    The drop is ``(baseline - value) / baseline * 100``; a baseline <= 0 leaves the rule
    undecided. While firing, the alert holds until the drop is below ``clear_ratio * percent``.

    Args:
        metric: a name from :data:`mlmon.CATALOG` (``mlmon_precision``, ``mlmon_recall``, ...).
        percent: the drop that fires, in (0, 100].
        baseline: a number, ``"reference"``, ``"pinned"`` or a :class:`Baseline`; default
            ``Baseline.trailing(3600)``, the mean over the hour before the current window.
        clear_ratio: share of ``percent`` the drop must fall under to count as cleared.
        for_: seconds the condition must hold before firing (default 60: a noise excursion
            of the window rarely lasts that long; see docs/alerts.md).
        labels, name, severity, resolve_after, cooldown, min_samples, summary: see
            :class:`Rule`.

    >>> r = PercentDrop("mlmon_precision", percent=10)
    >>> r.name, r.min_samples, r.describe()
    ('precision_drop_10pct', 200, 'mlmon_precision drops more than 10% below its mean over the 1h before the current window')
    >>> r.check(0.70, 0.80, 500, None, firing=False)
    (True, 12.5, 10.0)
    >>> PercentDrop("mlmon_precision", percent=-5)
    Traceback (most recent call last):
    ...
    ValueError: percent must be a number in (0, 100], got -5
    """

    kind: ClassVar[str] = "percent_drop"
    _word: ClassVar[str] = "drop"

    @staticmethod
    def _percent(percent: float) -> float:
        if not _is_number(percent) or not (0.0 < float(percent) <= 100.0):
            raise ValueError(f"percent must be a number in (0, 100], got {percent!r}")
        return float(percent)

    def _measure(self, value: float, baseline: float) -> tuple[float, float]:
        drop = (baseline - value) / baseline * 100.0
        return drop, drop

    def describe(self) -> str:
        return f"{self._where()} drops more than {self.percent:g}% below {self.baseline.describe()}"


@attrs.frozen(init=False)
class PercentChange(_PercentRule):
    """Fires when the metric moves more than ``percent`` % away from its baseline, either way.

    The change is ``(value - baseline) / baseline * 100``; a baseline <= 0 leaves the rule
    undecided. Good for downstream outcomes: ``mlmon_outcome_rate{outcome="click"}``.

    Args:
        metric: a name from :data:`mlmon.CATALOG`.
        percent: the absolute change that fires, > 0 (may exceed 100).
        baseline: a number, ``"reference"``, ``"pinned"`` or a :class:`Baseline`; default
            ``Baseline.trailing(3600)``, the mean over the hour before the current window.
        clear_ratio: share of ``percent`` the change must fall under to count as cleared.
        for_: seconds the condition must hold before firing (default 60: a noise excursion
            of the window rarely lasts that long; see docs/alerts.md).
        labels, name, severity, resolve_after, cooldown, min_samples, summary: see
            :class:`Rule`.

    >>> r = PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=30)
    >>> r.name, r.min_samples
    ('outcome_rate_click_change_30pct', 1000)
    >>> r.check(0.025, 0.05, 5000, None, firing=False)
    (True, -50.0, 30.0)
    """

    kind: ClassVar[str] = "percent_change"
    _word: ClassVar[str] = "change"

    @staticmethod
    def _percent(percent: float) -> float:
        if not _is_number(percent) or not (0.0 < float(percent) and math.isfinite(float(percent))):
            raise ValueError(f"percent must be a finite number > 0, got {percent!r}")
        return float(percent)

    def _measure(self, value: float, baseline: float) -> tuple[float, float]:
        change = (value - baseline) / baseline * 100.0
        return change, abs(change)

    def describe(self) -> str:
        return f"{self._where()} moves more than {self.percent:g}% away from {self.baseline.describe()}"


_F_TEST_SUFFIXES = ("_variance", "_stddev")


@attrs.frozen(init=False)
class VarianceChange(Rule):
    """Fires when the ratio r = value / baseline leaves [1/factor, factor].

    Meant for ``mlmon_output_variance`` (scores suddenly spread out or collapse, even with a
    flat mean), ``mlmon_feature_variance`` and the ``_stddev`` metrics. While firing, the
    alert holds until r is back within [factor^-clear_ratio, factor^clear_ratio].

    With ``test="f"`` the rule also needs the change to be significant: a two-sided F-test
    (``scipy.stats.f``) of the variance ratio with ``n - 1`` and ``n_baseline - 1`` degrees of
    freedom, n being the rule's sample count (``mlmon_output_count`` for output statistics,
    rows for features), must give a p-value below ``alpha``. Against an exact baseline (a
    number or the reference) it is the chi-squared test. On ``_stddev`` metrics the test uses
    r². The F-test assumes roughly normal values; on heavy-tailed scores it is too eager, which
    is why ``alpha`` defaults to 0.001.

    Args:
        metric: a name from :data:`mlmon.CATALOG`.
        factor: > 1.
        baseline: a number, ``"reference"``, ``"pinned"`` or a :class:`Baseline`; default
            ``Baseline.trailing(3600)``, the mean over the hour before the current window.
        test: None or ``"f"``.
        alpha: significance level of the test, in (0, 1).
        clear_ratio: see above, in (0, 1].
        for_: seconds the condition must hold before firing (default 60: a noise excursion
            of the window rarely lasts that long; see docs/alerts.md).
        labels, name, severity, resolve_after, cooldown, min_samples, summary: see
            :class:`Rule`.

    >>> r = VarianceChange("mlmon_output_variance", factor=2.0)
    >>> r.name, r.min_samples
    ('output_variance_change_x2', 500)
    >>> r.check(0.09, 0.04, 1000, None, firing=False)
    (True, 2.25, 2.0)
    >>> r.check(0.03, 0.04, 1000, None, firing=False)
    (False, 0.75, 2.0)
    >>> VarianceChange("mlmon_output_variance", factor=1.0)
    Traceback (most recent call last):
    ...
    ValueError: factor must be a finite number > 1, got 1.0
    """

    kind: ClassVar[str] = "variance_change"

    metric: str
    factor: float
    baseline: Baseline
    test: Literal["f"] | None
    alpha: float
    clear_ratio: float
    labels: LabelPairs
    name: str
    severity: str
    for_: float
    resolve_after: float
    cooldown: float
    min_samples: int
    summary: str | None

    def __init__(
        self,
        metric: str,
        *,
        factor: float,
        baseline: float | str | Baseline | None = None,
        test: Literal["f"] | None = None,
        alpha: float = 0.001,
        labels: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        quantile: float | str | None = None,
        name: str | None = None,
        severity: Severity | str = "warning",
        for_: float = 60.0,
        resolve_after: float = 60.0,
        cooldown: float = 0.0,
        min_samples: int | None = None,
        clear_ratio: float = 0.8,
        summary: str | None = None,
    ) -> None:
        info, sel, sev, f, ra, cd, ms, summ = _common(
            metric, labels, quantile, severity, for_, resolve_after, cooldown, min_samples, summary
        )
        if not _is_number(factor) or not (math.isfinite(float(factor)) and float(factor) > 1.0):
            raise ValueError(f"factor must be a finite number > 1, got {factor!r}")
        if test not in (None, "f"):
            raise ValueError(f"test must be None or 'f', got {test!r}")
        if test == "f" and not info.name.endswith(_F_TEST_SUFFIXES):
            raise ValueError(
                f"test='f' compares variances: metric must end in _variance or _stddev, got {info.name!r}"
            )
        if test == "f" and default_min_samples(info.name)[0] is None:
            raise ValueError(f"test='f' needs a sample count, {info.name!r} has none")
        if not _is_number(alpha) or not (0.0 < float(alpha) < 1.0):
            raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
        fac = float(factor)
        nm = _name(name, info.name, sel, "change", "x" + _num_part(fac))
        self.__attrs_init__(
            info.name,
            fac,
            _baseline(baseline),
            test,
            float(alpha),
            _clear_ratio(clear_ratio),
            sel,
            nm,
            sev,
            f,
            ra,
            cd,
            ms,
            summ,
        )

    @property
    def baseline_spec(self) -> Baseline:
        return self.baseline

    def describe(self) -> str:
        text = (
            f"{self._where()} is more than {self.factor:g}x or less than 1/{self.factor:g} of "
            f"{self.baseline.describe()}"
        )
        if self.test == "f":
            text += f" (F-test p < {self.alpha:g})"
        return text

    def check(
        self, value: float, baseline: float | None, n: float, n_baseline: float | None, firing: bool
    ) -> Check:
        if baseline is None or not (baseline > 0 and math.isfinite(baseline)) or value < 0:
            return None, None, self.factor
        r = value / baseline
        log_limit = math.log(self.factor) * (self.clear_ratio if firing else 1.0)
        beyond = r == 0.0 or abs(math.log(r)) > log_limit
        if beyond and self.test == "f" and not firing:
            p = self.p_value(r, n, n_baseline)
            if p is None:
                return None, r, self.factor
            beyond = p < self.alpha
        return beyond, r, self.factor

    def p_value(self, r: float, n: float, n_baseline: float | None) -> float | None:
        """Two-sided p-value of the variance ratio ``r`` (None when n < 2)."""
        from scipy import stats  # scipy loads only when an F-test runs

        ratio = r * r if self.metric.endswith("_stddev") else r
        d1 = n - 1.0
        if d1 < 1.0:
            return None
        if n_baseline is None:
            x = d1 * ratio
            lo, hi = float(stats.chi2.cdf(x, d1)), float(stats.chi2.sf(x, d1))
        else:
            d2 = n_baseline - 1.0
            if d2 < 1.0:
                return None
            lo, hi = float(stats.f.cdf(ratio, d1, d2)), float(stats.f.sf(ratio, d1, d2))
        return min(1.0, 2.0 * min(lo, hi))


@attrs.frozen(init=False)
class Absent(Rule):
    """Fires when a counter has not increased for ``for_`` seconds, or its series is missing.

    ``Absent()`` watches ``mlmon_calls_total`` (the model gets no traffic);
    ``Absent("mlmon_labels_total", for_=3600)`` watches the feedback pipeline. With
    ``min_samples=n`` the counter must have reached n before silence counts, so a model whose
    labels never started does not fire. It resolves as soon as the counter moves again
    (``resolve_after=0``).

    Args:
        metric: a counter from :data:`mlmon.CATALOG` (``..._total``).
        for_: seconds without an increase before the alert fires (> 0).
        labels, name, severity, resolve_after, cooldown, min_samples, summary: see :class:`Rule`.

    >>> Absent(for_=600).name
    'calls_total_absent_10m'
    >>> Absent("mlmon_precision")
    Traceback (most recent call last):
    ...
    ValueError: metric must be a counter (..._total) for Absent, got 'mlmon_precision'
    """

    kind: ClassVar[str] = "absent"

    metric: str
    labels: LabelPairs
    name: str
    severity: str
    for_: float
    resolve_after: float
    cooldown: float
    min_samples: int
    summary: str | None

    def __init__(
        self,
        metric: str = "mlmon_calls_total",
        *,
        for_: float = 300.0,
        labels: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        name: str | None = None,
        severity: Severity | str = "warning",
        resolve_after: float = 0.0,
        cooldown: float = 0.0,
        min_samples: int | None = None,
        summary: str | None = None,
    ) -> None:
        info = _metric_info(metric)
        if info.kind != "counter":
            raise ValueError(f"metric must be a counter (..._total) for Absent, got {metric!r}")
        _, sel, sev, f, ra, cd, ms, summ = _common(
            metric, labels, None, severity, for_, resolve_after, cooldown,
            0 if min_samples is None else min_samples, summary,
        )  # fmt: skip
        if f <= 0:
            raise ValueError(f"for_ must be a number of seconds > 0, got {for_!r}")
        nm = _name(name, info.name, sel, "absent", _duration_text(f))
        self.__attrs_init__(info.name, sel, nm, sev, f, ra, cd, ms, summ)

    def describe(self) -> str:
        return f"{self._where()} has not increased for {_duration_text(self.for_)}"

    def check(
        self, value: float, baseline: float | None, n: float, n_baseline: float | None, firing: bool
    ) -> Check:
        # The engine tracks when the counter last moved; ``value`` is seconds since then.
        return value >= self.for_, value, self.for_
