"""Baselines: what a relative rule compares the current value with."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from mlmon.alerts._checks import duration_text, finite, is_number, seconds

__all__ = ["DEFAULT_BASELINE_SECONDS", "Baseline", "to_baseline"]


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
            v = finite("baseline", self.value)
            if v <= 0:
                raise ValueError(f"baseline must be > 0 for a relative change, got {self.value!r}")
        elif self.value is not None:
            raise ValueError(f"value is only for fixed baselines, got {self.value!r}")
        if self.kind == "trailing":
            seconds("seconds", self.seconds, positive=True)
            if self.exclude is not None:
                seconds("exclude", self.exclude)
            cov = self.min_coverage
            if not is_number(cov) or not (0.0 < cov <= 1.0):
                raise ValueError(f"min_coverage must be a number in (0, 1], got {cov!r}")
        elif self.kind == "pinned" and self.exclude is None:
            if self.seconds is not None:
                seconds("seconds", self.seconds)
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
            return f"its mean over the first {duration_text(self.seconds)} once min_samples was met"
        assert self.seconds is not None
        span = duration_text(self.seconds)
        if self.exclude is None:
            return f"its mean over the {span} before the current window"
        return f"its mean over the {span} ending {duration_text(self.exclude)} ago"


DEFAULT_BASELINE_SECONDS = 3600.0


def to_baseline(value: object) -> Baseline:
    """Converter: a number, ``"reference"``, ``"pinned"``, None (trailing hour) or a Baseline."""
    if value is None:
        return Baseline.trailing(DEFAULT_BASELINE_SECONDS)
    if isinstance(value, Baseline):
        return value
    if value == "reference":
        return Baseline.reference()
    if value == "pinned":
        return Baseline.pinned()
    if is_number(value):
        return Baseline.fixed(value)  # type: ignore[arg-type]
    raise ValueError(
        f"baseline must be a number, 'reference', 'pinned' or a Baseline, got {value!r}"
    )
