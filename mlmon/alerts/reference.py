"""Reference values for rules with ``baseline="reference"``: from a ``Reference`` and fixed numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ReferenceValue", "reference_lookup"]

ReferenceValue = Callable[[str, Mapping[str, str]], "float | None"]
"""``reference_value(metric, labels) -> float | None``: the reference (training) value."""


def reference_lookup(
    reference: Any = None, values: Mapping[str, float] | None = None
) -> ReferenceValue:
    """Build ``reference_value(metric, labels)`` from a ``Reference`` and/or fixed values.

    From a :class:`mlmon.Reference`: ``mlmon_feature_mean``, ``_variance``, ``_min``, ``_max``
    and ``_missing_ratio`` per ``feature``, and ``mlmon_output_mean``, ``_variance`` and
    ``_stddev`` from its output profile. ``values`` adds metrics the reference does not hold
    (``{"mlmon_precision": 0.82}``, from validation), whatever the labels; it wins over the
    reference.

    >>> import mlmon
    >>> ref = mlmon.Reference.from_data([[1.0], [3.0]], feature_names=["age"], outputs=[0.2, 0.4])
    >>> lookup = reference_lookup(ref, {"mlmon_precision": 0.82})
    >>> lookup("mlmon_feature_mean", {"feature": "age"}), lookup("mlmon_precision", {})
    (2.0, 0.82)
    >>> round(lookup("mlmon_output_variance", {}), 6), lookup("mlmon_recall", {}) is None
    (0.01, True)
    """
    table: dict[tuple[str, str | None], float] = {}
    for p in getattr(reference, "features", None) or ():
        name = getattr(p, "name", None)
        rows = getattr(p, "rows", 0) or 0
        if rows:
            table[("mlmon_feature_missing_ratio", name)] = float(p.missing) / rows
        if getattr(p, "kind", None) == "numeric" and getattr(p, "count", 0):
            for metric, attr in (("mean", "mean"), ("variance", "variance"), ("min", "min"), ("max", "max")):
                table[(f"mlmon_feature_{metric}", name)] = float(getattr(p, attr))
    out: Any = getattr(reference, "outputs", None)
    if out is not None and out.count:
        table[("mlmon_output_mean", None)] = float(out.mean)
        table[("mlmon_output_variance", None)] = float(out.variance)
        table[("mlmon_output_stddev", None)] = math.sqrt(float(out.variance))
    fixed = {str(k): float(v) for k, v in (values or {}).items()}

    def reference_value(metric: str, labels: Mapping[str, str]) -> float | None:
        hit = fixed.get(metric)
        if hit is not None:
            return hit
        if metric.startswith("mlmon_feature_"):
            return table.get((metric, labels.get("feature")))
        return table.get((metric, None))

    return reference_value
