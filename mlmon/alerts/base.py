"""What every alert rule is: the common fields, declared once, and the sample-count gates.

Rules are frozen configuration, validated once when they are built: a bad rule raises a
``ValueError`` naming the field and the value, never at 3 a.m. on the reporter thread. The
common fields live on :class:`Rule`, each with its attrs validator; the rule kinds
(:mod:`mlmon.alerts.rules`) add their own fields and a constructor that takes the metric
positionally and everything else by keyword.

Each rule waits for ``min_samples`` observations behind the metric (labels for quality metrics,
outputs for output statistics, rows for features and outcomes, calls for service health) and
never fires below it; :func:`default_min_samples` gives the defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypedDict

import attrs

from mlmon.alerts._checks import (
    LabelPairs,
    as_float,
    auto_name,
    check_count,
    check_labels,
    check_metric,
    check_name,
    check_seconds,
    check_severity,
    check_text,
    label_pairs,
    metric_info,
)
from mlmon.alerts.baseline import Baseline
from mlmon.snapshot import CATALOG

__all__ = ["COUNT_METRICS", "Check", "Rule", "RuleOptions", "Severity", "default_min_samples"]

Severity = Literal["info", "warning", "critical"]
CountSource = Literal["labels", "outputs", "rows", "calls"]

# What each metric is estimated from, and how many of those it takes before a rule may fire.
# Quality metrics: labels joined in the window; output statistics: valid outputs in the window;
# features and outcomes: prediction rows in the window; service health: calls in the window.
_QUALITY = ("mlmon_precision", "mlmon_recall", "mlmon_f1", "mlmon_accuracy", "mlmon_mae",
            "mlmon_rmse", "mlmon_mean_error", "mlmon_label_delay_seconds", "mlmon_roc_auc",
            "mlmon_pr_auc", "mlmon_log_loss", "mlmon_brier_score",
            "mlmon_expected_calibration_error")  # fmt: skip
_ESTIMATED = tuple(
    f"mlmon_estimated_{m}{b}"
    for m in ("precision", "recall", "f1", "accuracy", "roc_auc")
    for b in ("", "_lower", "_upper")
)
_OUTPUTS = ("mlmon_output_mean", "mlmon_output_variance", "mlmon_output_stddev", "mlmon_output",
            "mlmon_output_class_ratio", "mlmon_output_drift_psi", *_ESTIMATED)  # fmt: skip
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


# --------------------------------------------------------------------------- rules

Check = tuple[bool | None, float | None, float]
"""(condition or None when it cannot be decided, the measured quantity, the limit it is held to)."""

Selector = Mapping[str, Any] | Iterable[tuple[str, Any]] | None


class RuleOptions(TypedDict, total=False):
    """The keyword arguments every rule constructor takes (see :class:`Rule`)."""

    labels: Selector
    name: str | None
    severity: Severity | str
    for_: float
    resolve_after: float
    cooldown: float
    min_samples: int | None
    summary: str | None


@attrs.frozen(kw_only=True, init=False)
class Rule:
    """What every rule has: the metric and selector, name, severity and timing.

    Not built directly: use :class:`Threshold`, :class:`PercentDrop`, :class:`PercentChange`,
    :class:`VarianceChange` or :class:`Absent`. Each takes the metric first and everything
    else by keyword; these common fields are declared here once, each with its validator.

    Attributes:
        metric: a name from :data:`mlmon.CATALOG`.
        labels: the selector, sorted ``(label, value)`` pairs; ``"*"`` matches any value.
            Constructors take a mapping (``labels={"class": "*"}``) or pairs.
        name: unique among a monitor's rules, ``[A-Za-z_][A-Za-z0-9_]*``; generated from the
            metric, the selector and the limit when not given.
        severity: ``"info"``, ``"warning"`` or ``"critical"``.
        for_: seconds the condition must hold (pending) before the alert fires.
        resolve_after: seconds the condition must stay false before a firing alert resolves.
        cooldown: seconds after a resolution during which the rule does not fire again.
        min_samples: observations behind the metric below which the rule never fires
            (constructors take None for :func:`default_min_samples`).
        summary: your own one-line text for notifications (None: generated).

    >>> from mlmon.alerts import PercentDrop
    >>> rule = PercentDrop("mlmon_recall", labels={"class": "*"}, percent=15)
    >>> isinstance(rule, Rule), rule.selector, rule.count_source, rule.for_
    (True, {'class': '*'}, 'labels', 60.0)
    >>> PercentDrop("mlmon_recall", percent=15, cooldown=-1)
    Traceback (most recent call last):
    ...
    ValueError: cooldown must be a number of seconds >= 0, got -1.0
    """

    kind: ClassVar[str] = "rule"
    _defaults: ClassVar[Mapping[str, Any]] = {}
    """Constructor defaults of a subclass that differ from the fields' own defaults."""

    metric: str = attrs.field(validator=check_metric)
    labels: LabelPairs = attrs.field(default=(), validator=check_labels)
    name: str = attrs.field(validator=check_name)
    severity: str = attrs.field(default="warning", validator=check_severity)
    for_: float = attrs.field(default=60.0, converter=as_float, validator=check_seconds)
    resolve_after: float = attrs.field(default=60.0, converter=as_float, validator=check_seconds)
    cooldown: float = attrs.field(default=0.0, converter=as_float, validator=check_seconds)
    min_samples: int = attrs.field(validator=check_count)
    summary: str | None = attrs.field(default=None, validator=check_text)

    def _build(
        self, metric: object, quantile: object, options: RuleOptions, **own: Any
    ) -> None:
        """Normalise what needs the metric (selector, default ``min_samples``, generated name),
        then run the attrs initialiser, whose validators check every field, by keyword."""
        common: dict[str, Any] = {**self._defaults, **options}
        info = metric_info(metric)
        labels = label_pairs(info, common.pop("labels", None), quantile)
        if common.get("min_samples") is None:
            common["min_samples"] = default_min_samples(info.name)[1]
        if common.get("name") is None:
            values = {**common, **own}
            common["name"] = auto_name(info.name, labels, *self._name_parts(values))
        self.__attrs_init__(metric=info.name, labels=labels, **common, **own)

    def _name_parts(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        """What a generated name adds after the metric and selector (``above_0_2``, ...)."""
        raise NotImplementedError  # pragma: no cover - every rule overrides it

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
