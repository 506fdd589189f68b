"""Shift: a tested change rule whose series share the engine's false-alarm budget.

Where :class:`~mlmon.alerts.PercentDrop` holds each series to a fixed limit, ``Shift`` holds each
series to a *test*: the change from the baseline, divided by its standard error (from the
series' own sample count), must cross the z-limit the engine's :class:`~mlmon.alerts.AlertBudget`
gives this series, and the change itself must be at least ``min_effect`` (so a trivial shift
that is significant only because the window holds a million rows never fires). A series whose
window is too small to detect a change of ``effect`` with probability ``power`` is not decided.

Every series the selector matches is one member of the family (``feature`` × ``segment`` ×
``class``...): any label a series carries that the selector does not fix fans out, so a
``segment`` label is one more dimension with nothing to configure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from mlmon.alerts._checks import as_float, check_ratio, is_number, num_part
from mlmon.alerts.base import COUNT_METRICS, Check, Rule, RuleOptions
from mlmon.alerts.baseline import Baseline, to_baseline

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SHIFT_METRICS", "Shift", "ShiftSpec"]


@attrs.frozen
class ShiftSpec:
    """How a metric is tested: a rate of trials or a mean, what counts, what it scales with."""

    kind: Literal["rate", "mean"]
    count: str
    """The sample-count source (``labels``, ``outputs``, ``rows``, ``calls``)."""
    direction: Literal["down", "up", "both"]
    """The default direction: the one that is bad news."""
    scale: str | None = None
    """For means: the metric holding the variance of one observation, same labels."""
    trials: Literal["predicted", "actual"] | None = None
    """For precision/recall: the trials are the predicted / actual positives, not the labels."""


SHIFT_METRICS: Mapping[str, ShiftSpec] = {
    "mlmon_precision": ShiftSpec("rate", "labels", "down", trials="predicted"),
    "mlmon_recall": ShiftSpec("rate", "labels", "down", trials="actual"),
    "mlmon_accuracy": ShiftSpec("rate", "labels", "down"),
    "mlmon_error_ratio": ShiftSpec("rate", "calls", "up"),
    "mlmon_availability_ratio": ShiftSpec("rate", "calls", "down"),
    "mlmon_label_coverage_ratio": ShiftSpec("rate", "rows", "down"),
    "mlmon_feature_missing_ratio": ShiftSpec("rate", "rows", "up"),
    "mlmon_feature_out_of_range_ratio": ShiftSpec("rate", "rows", "up"),
    "mlmon_output_class_ratio": ShiftSpec("rate", "outputs", "both"),
    "mlmon_outcome_rate": ShiftSpec("rate", "rows", "both"),
    "mlmon_feature_mean": ShiftSpec("mean", "rows", "both", scale="mlmon_feature_variance"),
    "mlmon_output_mean": ShiftSpec("mean", "outputs", "both", scale="mlmon_output_variance"),
    "mlmon_mean_error": ShiftSpec("mean", "labels", "both", scale="mlmon_rmse"),
}
"""The metrics a :class:`Shift` rule can test, and how (see docs/alerts.md, section 10)."""


def _check_shift_metric(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in SHIFT_METRICS:
        raise ValueError(
            f"{attribute.name}: Shift tests rates and means ({', '.join(SHIFT_METRICS)}), got {value!r}"
        )


def _check_effect(inst: Shift, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_number(value) or not (math.isfinite(float(value)) and float(value) > 0):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")
    if SHIFT_METRICS[inst.metric].kind == "rate" and float(value) >= 1.0:  # type: ignore[arg-type]
        raise ValueError(
            f"{attribute.name} of a rate is in rate units (0.1 = ten points) and must be < 1, got {value!r}"
        )


def _check_min_effect(inst: Shift, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not is_number(value) or not (0.0 <= float(value) <= inst.effect):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a number in [0, effect={inst.effect:g}], got {value!r}")


def _check_direction(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in (None, "down", "up", "both"):
        raise ValueError(f"{attribute.name} must be 'down', 'up', 'both' or None, got {value!r}")


def _check_power(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_number(value) or not (0.5 <= float(value) < 1.0):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a number in [0.5, 1), got {value!r}")


def _check_baseline(_inst: object, attribute: attrs.Attribute[Any], value: Baseline) -> None:
    if value.kind == "pinned":
        raise ValueError(
            f"{attribute.name}: Shift compares with a reference, a number or a trailing baseline, got 'pinned'"
        )


@attrs.frozen(kw_only=True, init=False)
class Shift(Rule):  # type: ignore[override]  # __attrs_init__ gains required fields
    """Fires when a rate or a mean has changed by more than its noise allows, under a budget.

    The rule fans out like any other (one series per value of each open label) and every
    series shares the engine's :class:`~mlmon.alerts.AlertBudget` (one false alarm a week
    across all budgeted series by default). A series fires when

    - its window holds enough samples to detect a change of ``effect`` with probability
      ``power`` at its share of the budget (the power-based ``min_samples``, never below
      ``min_samples``);
    - its z-score (:func:`~mlmon.alerts.budget.shift_statistic`, in ``direction``) is at or
      above the budget's limit (corrected across series and across overlapping windows);
    - and the change is at least ``min_effect`` (default ``effect / 4``: a shift a quarter of
      the one you asked to catch is never worth a page, however significant).

    While firing it holds until z is under ``clear_ratio`` × the limit or the change under
    ``min_effect``.

    Args:
        metric: one of :data:`SHIFT_METRICS` (precision, recall, accuracy, error ratio, feature
            means and missing ratios, output means, outcome rates, ...).
        effect: the change you must catch, in the metric's units (0.10 = ten points of
            precision; for a feature mean, in the feature's units).
        direction: ``"down"``, ``"up"`` or ``"both"``; None: the bad direction of the metric
            (down for precision, up for the error ratio, both for means).
        baseline: ``"reference"``, a number or a trailing :class:`Baseline` (the default,
            ``Baseline.trailing(3600)``).
        min_effect: the smallest change that may fire (default ``effect / 4``).
        power: the detection probability ``min_samples`` is computed for, in [0.5, 1).
        clear_ratio: share of the limit z must fall under to count as cleared, in (0, 1].
        for_: default 0 (the budget already counts every flush).
        labels, name, severity, resolve_after, cooldown, min_samples, summary: see :class:`Rule`.

    >>> r = Shift("mlmon_precision", effect=0.10, labels={"class": "*"}, baseline="reference")
    >>> r.name, r.direction, r.min_effect, r.min_samples
    ('precision_shift_down_0_1', 'down', 0.025, 200)
    >>> Shift("mlmon_feature_mean", labels={"feature": "*"}, effect=0.25).name
    'feature_mean_shift_both_0_25'
    >>> Shift("mlmon_latency_seconds_mean", effect=0.1)
    Traceback (most recent call last):
    ...
    ValueError: metric: Shift tests rates and means (mlmon_precision, ...), got 'mlmon_latency_seconds_mean'
    """

    kind: ClassVar[str] = "shift"
    _defaults: ClassVar[Mapping[str, Any]] = {"for_": 0.0}

    effect: float = attrs.field(converter=as_float, validator=_check_effect)
    direction: Literal["down", "up", "both"] = attrs.field(validator=_check_direction)
    baseline: Baseline = attrs.field(
        factory=lambda: to_baseline(None), converter=to_baseline, validator=_check_baseline
    )
    min_effect: float = attrs.field(converter=as_float, validator=_check_min_effect)
    power: float = attrs.field(default=0.9, converter=as_float, validator=_check_power)
    clear_ratio: float = attrs.field(default=0.5, converter=as_float, validator=check_ratio)

    def __init__(
        self,
        metric: str,
        *,
        effect: float,
        direction: Literal["down", "up", "both"] | None = None,
        baseline: float | str | Baseline | None = None,
        min_effect: float | None = None,
        power: float = 0.9,
        clear_ratio: float = 0.5,
        **options: Unpack[RuleOptions],
    ) -> None:
        spec = SHIFT_METRICS.get(metric) if isinstance(metric, str) else None
        if spec is None:
            # The catalog check first (it suggests a close name), then the Shift check.
            from mlmon.alerts._checks import metric_info

            metric_info(metric)
            _check_shift_metric(None, attrs.fields(Shift).metric, metric)
        assert spec is not None
        _check_direction(None, attrs.fields(Shift).direction, direction)
        if direction is None:
            direction = spec.direction
        if min_effect is None and is_number(effect):
            min_effect = float(effect) / 4.0
        self._build(
            metric, None, options,
            effect=effect, direction=direction, baseline=baseline, min_effect=min_effect,
            power=power, clear_ratio=clear_ratio,
        )  # fmt: skip

    def _name_parts(self, values: Mapping[str, Any]) -> tuple[str, ...]:
        return "shift", str(values["direction"]), num_part(values["effect"])

    @property
    def spec(self) -> ShiftSpec:
        """How the metric is tested."""
        return SHIFT_METRICS[self.metric]

    @property
    def sides(self) -> int:
        """2 for a two-sided rule (it spends half its share on each side), else 1."""
        return 2 if self.direction == "both" else 1

    @property
    def baseline_spec(self) -> Baseline:
        return self.baseline

    @property
    def needs(self) -> frozenset[str]:
        """Every metric the engine must read for this rule (the metric, counts, scales)."""
        spec = self.spec
        out = {self.metric, COUNT_METRICS[spec.count]}
        if spec.scale is not None:
            out.add(spec.scale)
        if spec.trials is not None:
            out |= {"mlmon_output_class_ratio", "mlmon_precision", "mlmon_recall"}
        if self.metric == "mlmon_mean_error":
            out.add("mlmon_mean_error")
        return frozenset(out)

    def describe(self) -> str:
        way = {"down": "drops", "up": "rises", "both": "moves"}[self.direction]
        return (
            f"{self._where()} {way} by at least {self.min_effect:g} from {self.baseline.describe()}, "
            f"significantly under the alert budget (detects {self.effect:g} with power {self.power:g})"
        )

    def check(
        self, value: float, baseline: float | None, n: float, n_baseline: float | None, firing: bool
    ) -> Check:
        """Not decided series by series: the engine decides every series of the family at once
        (their limit depends on how many there are); this returns ``(None, None, effect)``."""
        return None, None, self.effect
