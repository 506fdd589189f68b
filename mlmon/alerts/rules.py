"""The alert rules: Threshold, PercentDrop, PercentChange, VarianceChange and Absent.

Every rule names one metric of :data:`mlmon.CATALOG` and a label selector. As in Prometheus, the
selector matches every series whose labels include it, and each matching series is its own alert
instance; the value ``"*"`` asks for the label to be present with any value, so
``labels={"feature": "*"}`` gives one instance per feature. What they have in common (the
fields, their validation, ``min_samples`` defaults) is in :mod:`mlmon.alerts.base`.
``docs/alerts.md`` explains how to pick thresholds and what the defaults cost in detection delay
and false alarms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from mlmon.alerts._checks import (
    SEVERITIES,
    LabelPairs,
    as_float,
    check_finite,
    check_ratio,
    duration_text,
    is_number,
    num_part,
    seconds,
)
from mlmon.alerts.base import (
    COUNT_METRICS,
    Check,
    Rule,
    RuleOptions,
    Severity,
    default_min_samples,
)
from mlmon.alerts.baseline import Baseline, to_baseline
from mlmon.snapshot import CATALOG

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "COUNT_METRICS",
    "SEVERITIES",
    "Absent",
    "Baseline",
    "LabelPairs",
    "PercentChange",
    "PercentDrop",
    "Rule",
    "RuleOptions",
    "Severity",
    "Threshold",
    "VarianceChange",
    "default_min_samples",
]


def _optional_finite(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_finite(_inst, attribute, value)


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_finite(_inst, attribute, value)
    if value < 0:  # type: ignore[operator]
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True, init=False)
class Threshold(Rule):
    """Fires while the metric is above ``above`` or below ``below``.

    Args:
        metric: a name from :data:`mlmon.CATALOG`.
        above: fire when the value is greater than this.
        below: fire when the value is less than this (at least one of the two).
        quantile: shorthand for ``labels={"quantile": ...}`` on quantile metrics.
        labels: label selector (``"*"`` for one instance per value).
        for_: default 0: a threshold fires on the first evaluation that crosses it.
        name, severity, resolve_after, cooldown, min_samples, summary: see :class:`Rule`.
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
    _defaults: ClassVar[Mapping[str, Any]] = {"for_": 0.0}

    above: float | None = attrs.field(default=None, converter=as_float, validator=_optional_finite)
    below: float | None = attrs.field(default=None, converter=as_float, validator=_optional_finite)
    hysteresis: float = attrs.field(default=0.0, converter=as_float, validator=_non_negative)

    def __init__(
        self,
        metric: str,
        *,
        above: float | None = None,
        below: float | None = None,
        quantile: float | str | None = None,
        hysteresis: float = 0.0,
        **options: Unpack[RuleOptions],
    ) -> None:
        self._build(metric, quantile, options, above=above, below=below, hysteresis=hysteresis)

    def __attrs_post_init__(self) -> None:
        a, b = self.above, self.below
        if a is None and b is None:
            raise ValueError("Threshold needs above=... or below=... (or both), got neither")
        if a is not None and b is not None and b >= a:
            raise ValueError(
                f"below must be less than above (it fires outside [below, above]), got "
                f"below={b!r} above={a!r}"
            )

    def _name_parts(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        parts: list[str] = []
        for side in ("above", "below"):
            if values.get(side) is not None:
                parts += [side, num_part(values[side])]
        return tuple(parts)

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


def _check_percent(inst: _PercentRule, attribute: attrs.Attribute[Any], value: object) -> None:
    inst._check_percent(value)


@attrs.frozen(kw_only=True, init=False)
class _PercentRule(Rule):  # type: ignore[override]  # __attrs_init__ gains required fields
    """What PercentDrop and PercentChange share: fields, constructor, baseline and check.

    A subclass keeps only what differs: the word in generated names (``_word``), the range
    ``percent`` may take (``_check_percent``) and how the change is measured (``_measure``).
    """

    _word: ClassVar[str]

    percent: float = attrs.field(converter=as_float, validator=_check_percent)
    baseline: Baseline = attrs.field(factory=lambda: to_baseline(None), converter=to_baseline)
    clear_ratio: float = attrs.field(default=0.8, converter=as_float, validator=check_ratio)

    def __init__(
        self,
        metric: str,
        *,
        percent: float,
        baseline: float | str | Baseline | None = None,
        quantile: float | str | None = None,
        clear_ratio: float = 0.8,
        **options: Unpack[RuleOptions],
    ) -> None:
        self._build(metric, quantile, options, percent=percent, baseline=baseline, clear_ratio=clear_ratio)

    def _name_parts(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        return self._word, num_part(values["percent"]) + "pct"

    @staticmethod
    def _check_percent(percent: object) -> None:
        """Raises ValueError when ``percent`` is out of the rule's range."""
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


@attrs.frozen(kw_only=True, init=False)
class PercentDrop(_PercentRule):  # type: ignore[override]  # __attrs_init__ gains required fields
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
    ValueError: percent must be a number in (0, 100], got -5.0
    """

    kind: ClassVar[str] = "percent_drop"
    _word: ClassVar[str] = "drop"

    @staticmethod
    def _check_percent(percent: object) -> None:
        if not is_number(percent) or not (0.0 < float(percent) <= 100.0):  # type: ignore[arg-type]
            raise ValueError(f"percent must be a number in (0, 100], got {percent!r}")

    def _measure(self, value: float, baseline: float) -> tuple[float, float]:
        drop = (baseline - value) / baseline * 100.0
        return drop, drop

    def describe(self) -> str:
        return f"{self._where()} drops more than {self.percent:g}% below {self.baseline.describe()}"


@attrs.frozen(kw_only=True, init=False)
class PercentChange(_PercentRule):  # type: ignore[override]  # __attrs_init__ gains required fields
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
    def _check_percent(percent: object) -> None:
        p = float(percent) if is_number(percent) else math.nan  # type: ignore[arg-type]
        if not (0.0 < p and math.isfinite(p)):
            raise ValueError(f"percent must be a finite number > 0, got {percent!r}")

    def _measure(self, value: float, baseline: float) -> tuple[float, float]:
        change = (value - baseline) / baseline * 100.0
        return change, abs(change)

    def describe(self) -> str:
        return f"{self._where()} moves more than {self.percent:g}% away from {self.baseline.describe()}"


_F_TEST_SUFFIXES = ("_variance", "_stddev")


def _check_factor(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_number(value) or not (math.isfinite(float(value)) and float(value) > 1.0):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a finite number > 1, got {value!r}")


def _check_test(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in (None, "f"):
        raise ValueError(f"{attribute.name} must be None or 'f', got {value!r}")


def _check_alpha(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_number(value) or not (0.0 < float(value) < 1.0):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a number in (0, 1), got {value!r}")


@attrs.frozen(kw_only=True, init=False)
class VarianceChange(Rule):  # type: ignore[override]  # __attrs_init__ gains required fields
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

    factor: float = attrs.field(converter=as_float, validator=_check_factor)
    baseline: Baseline = attrs.field(factory=lambda: to_baseline(None), converter=to_baseline)
    test: Literal["f"] | None = attrs.field(default=None, validator=_check_test)
    alpha: float = attrs.field(default=0.001, converter=as_float, validator=_check_alpha)
    clear_ratio: float = attrs.field(default=0.8, converter=as_float, validator=check_ratio)

    def __init__(
        self,
        metric: str,
        *,
        factor: float,
        baseline: float | str | Baseline | None = None,
        test: Literal["f"] | None = None,
        alpha: float = 0.001,
        quantile: float | str | None = None,
        clear_ratio: float = 0.8,
        **options: Unpack[RuleOptions],
    ) -> None:
        self._build(
            metric, quantile, options,
            factor=factor, baseline=baseline, test=test, alpha=alpha, clear_ratio=clear_ratio,
        )  # fmt: skip

    def __attrs_post_init__(self) -> None:
        if self.test == "f" and not self.metric.endswith(_F_TEST_SUFFIXES):
            raise ValueError(
                f"test='f' compares variances: metric must end in _variance or _stddev, got {self.metric!r}"
            )
        if self.test == "f" and default_min_samples(self.metric)[0] is None:
            raise ValueError(f"test='f' needs a sample count, {self.metric!r} has none")

    def _name_parts(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        return "change", "x" + num_part(values["factor"])

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


@attrs.frozen(kw_only=True, init=False)
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
    _defaults: ClassVar[Mapping[str, Any]] = {"for_": 300.0, "resolve_after": 0.0}

    def __init__(self, metric: str = "mlmon_calls_total", **options: Unpack[RuleOptions]) -> None:
        self._build(metric, None, options)

    def __attrs_post_init__(self) -> None:
        if CATALOG[self.metric].kind != "counter":
            raise ValueError(f"metric must be a counter (..._total) for Absent, got {self.metric!r}")
        seconds("for_", self.for_, positive=True)

    def _name_parts(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        return "absent", duration_text(values.get("for_"))

    def describe(self) -> str:
        return f"{self._where()} has not increased for {duration_text(self.for_)}"

    def check(
        self, value: float, baseline: float | None, n: float, n_baseline: float | None, firing: bool
    ) -> Check:
        # The engine tracks when the counter last moved; ``value`` is seconds since then.
        return value >= self.for_, value, self.for_
