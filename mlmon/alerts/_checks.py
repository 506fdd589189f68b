"""Validation and naming helpers shared by the rule and baseline classes.

Every check raises ``ValueError`` naming the field and the value. The ``check_*`` functions have
the ``(instance, attribute, value)`` signature of attrs validators, so a field declares its
check once, next to its type.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from mlmon._catalog import ANY_SERIES_LABELS
from mlmon.snapshot import CATALOG, MetricInfo

LabelPairs = tuple[tuple[str, str], ...]
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
"""The severities a rule may have, mildest first."""

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def is_number(value: object) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_float(value: Any) -> Any:
    """Converter: numbers become floats; anything else is left for the validator to reject."""
    return float(value) if is_number(value) else value


def finite(field: str, value: object) -> float:
    if not is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def seconds(field: str, value: object, positive: bool = False) -> float:
    ok = is_number(value) and math.isfinite(float(value))  # type: ignore[arg-type]
    if not ok or float(value) < 0 or (positive and float(value) == 0):  # type: ignore[arg-type]
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{field} must be a number of seconds {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def metric_info(metric: object) -> MetricInfo:
    """The catalog entry of ``metric``; a ValueError (with a suggestion) when there is none."""
    if not isinstance(metric, str) or metric not in CATALOG:
        close = difflib.get_close_matches(str(metric), list(CATALOG), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"metric must be a name from mlmon.CATALOG, got {metric!r}{hint}")
    return CATALOG[metric]


def quantile_label(quantile: object) -> str:
    if isinstance(quantile, str):
        try:
            q = float(quantile)
        except ValueError:
            raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}") from None
    elif is_number(quantile):
        q = float(quantile)  # type: ignore[arg-type]
    else:
        raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}")
    if not (0.0 < q <= 1.0):
        raise ValueError(f"quantile must be a number in (0, 1], got {quantile!r}")
    # The monitor writes quantile labels with format(q, "g"): 0.99 -> "0.99", 1.0 -> "1".
    return format(q, "g")


def label_pairs(info: MetricInfo, labels: object, quantile: object) -> LabelPairs:
    """A selector (mapping or pairs) and a ``quantile`` shorthand as sorted label pairs."""
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
        if key not in info.labels and key not in ANY_SERIES_LABELS:
            have = ", ".join(info.labels) if info.labels else "none"
            raise ValueError(
                f"labels: {info.name} has no label {key!r} (its labels: {have}), got {labels!r}"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
            raise ValueError(f"labels[{key!r}] must be a non-empty string or '*', got {value!r}")
        text = str(value)
        if key == "quantile" and text != "*":
            text = quantile_label(text)
        out[str(key)] = text
    if quantile is not None:
        if "quantile" not in info.labels:
            raise ValueError(f"quantile: {info.name} has no quantiles, got {quantile!r}")
        q = quantile_label(quantile)
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


# --------------------------------------------------------------------------- attrs validators
# Each takes (instance, attribute, value) and names ``attribute.name`` and the value.


def check_metric(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    metric_info(value)


def check_labels(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Sorted ``(label, value)`` string pairs, each a label of the (already valid) metric."""
    ok = isinstance(value, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str)
        and p[1] != "" for p in value
    )  # fmt: skip
    if not ok or list(value) != sorted(value):
        raise ValueError(f"{attribute.name} must be sorted (label, value) string pairs, got {value!r}")
    info = CATALOG[inst.metric]
    for key, _ in value:
        if key not in info.labels and key not in ANY_SERIES_LABELS:
            raise ValueError(f"{attribute.name}: {info.name} has no label {key!r}, got {value!r}")


def check_name(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"{attribute.name} must match [A-Za-z_][A-Za-z0-9_]*, got {value!r}")


def check_severity(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in SEVERITIES:
        raise ValueError(f"{attribute.name} must be one of {', '.join(SEVERITIES)}, got {value!r}")


def check_seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    seconds(attribute.name, value)


def check_count(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0 or None, got {value!r}")


def check_text(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{attribute.name} must be a string or None, got {value!r}")


def check_finite(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    finite(attribute.name, value)


def check_ratio(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A number in (0, 1]."""
    if not is_number(value) or not (0.0 < float(value) <= 1.0):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a number in (0, 1], got {value!r}")


# --------------------------------------------------------------------------- generated names


def num_part(x: object) -> str:
    """A number as a name part: 0.2 -> ``0_2``, -1 -> ``m1`` (a non-number: ``x``)."""
    if not is_number(x):
        return "x"  # the field's validator rejects it before the name is ever seen
    text = format(x, "g").replace("-", "m").replace("+", "")
    return text.replace(".", "_")


def _label_part(key: str, value: str) -> str:
    if value == "*":
        return ""
    if key == "quantile":
        q = float(value)
        return "max" if q == 1.0 else "p" + num_part(round(q * 100, 6))
    return value


def auto_name(metric: str, labels: LabelPairs, *parts: str) -> str:
    """The name a rule gets when none is given: metric, selector and limit."""
    pieces = [metric.removeprefix("mlmon_")]
    pieces += [_label_part(k, v) for k, v in labels]
    pieces += parts
    text = _UNSAFE.sub("_", "_".join(p for p in pieces if p)).strip("_")
    text = re.sub(r"__+", "_", text) or "rule"
    return "r_" + text if text[0].isdigit() else text


def duration_text(value: object) -> str:
    """Seconds as ``10m``, ``1h``, ``2d`` or ``90s``."""
    if not is_number(value):
        return "x"
    s = float(value)  # type: ignore[arg-type]
    if math.isfinite(s):
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= size and s % size == 0:
                return f"{int(s // size)}{unit}"
    return f"{s:g}s"
