"""Segments: one model watched per market, device type or customer tier, besides overall.

``track(..., segment=...)`` gives each call (or each row of a batch) a segment. Every value is
reduced to a *segment name* by :func:`segment_name` (bounded, printable, the same in every
process), and the per-segment series carry the same metric names as the monitor's overall ones,
with one more label, ``segment``; the overall series carry no ``segment`` label.

>>> segment_name("EU"), segment_name(3), segment_name(3.0), segment_name(None)
('EU', '3', '3', '_missing')
>>> segment_name(float("nan")), segment_name(""), segment_name("a\\nb")
('_missing', '_empty', 'a_b')
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from typing import Any

import attrs
import numpy as np

__all__ = [
    "EMPTY",
    "MAX_NAME",
    "MISSING",
    "OVERFLOW",
    "FeatureSegment",
    "by_feature",
    "segment_code",
    "segment_name",
]

MAX_NAME = 64
"""Longest segment name; a longer value keeps its first 48 characters and a hash of the rest."""
OVERFLOW = "_other"
"""The segment of every value beyond the monitor's ``max_segments`` (and of unreadable values)."""
MISSING = "_missing"
"""The segment of None, NaN and pandas' missing values."""
EMPTY = "_empty"
"""The segment of an empty string."""


def _hash8(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def _clean(text: str) -> str:
    if text.isprintable() and len(text) <= MAX_NAME:
        return text if text else EMPTY
    out = "".join(ch if (ch.isprintable() and unicodedata.category(ch)[0] != "Z") or ch == " " else "_" for ch in text)
    if len(out) > MAX_NAME:
        out = f"{out[:48]}_h{_hash8(text)}"
    return out if out else EMPTY


def segment_name(value: Any) -> str:
    """The name of one segment value: what its series are labelled with.

    None, NaN and pandas' ``NA`` are :data:`MISSING`; an integral number is its integer
    (``3.0`` and ``3`` are one segment); text keeps its printable characters (others become
    ``_``) and at most :data:`MAX_NAME` of them. Raises ``ValueError`` for a value that has no
    name (an object whose ``str()`` raises, a non-finite number other than NaN); the caller counts
    it and puts the row in :data:`OVERFLOW`.
    """
    if value is None:
        return MISSING
    cls = value.__class__
    if cls is str:
        return _clean(value)
    if cls is bool or cls is np.bool_:
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        try:
            v = int(value)
        except Exception as exc:
            raise ValueError(f"segment value {value!r} has no name") from exc
        if abs(v) < 10**18:
            return str(v)
        return f"int_h{_hash8(hex(v))}"
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f):
            return MISSING
        if math.isinf(f):
            raise ValueError(f"segment value {value!r} has no name")
        if f.is_integer() and abs(f) < 1e18:
            return str(int(f))
        return _clean(repr(f))
    if isinstance(value, bytes):
        return _clean(value.decode("utf-8", "replace"))
    if cls.__name__ in ("NAType", "NaTType"):
        return MISSING
    try:
        text = str(value)
    except Exception as exc:
        raise ValueError(f"segment value of type {cls.__name__} has no name") from exc
    if not isinstance(text, str):
        raise ValueError(f"segment value of type {cls.__name__} has no name")
    return _clean(text)


def segment_code(name: str) -> int:
    """A 32-bit code of a segment name, the same in every process, never 0 (0 means "no
    segment"): what a shared prediction store keeps with each prediction.

    >>> segment_code("EU") == segment_code("EU") != segment_code("US")
    True
    """
    code = int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")
    return code or 1


@attrs.frozen(slots=True)
class FeatureSegment:
    """``track(segment=by_feature("country"))``: each row's segment is its value of a feature
    column (a DataFrame column, a dict key, or a name of ``feature_names``)."""

    feature: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.feature, str) or not self.feature:
            raise ValueError(f"by_feature(feature=...) takes a feature name, got {self.feature!r}")


def by_feature(name: str) -> FeatureSegment:
    """Segment by a feature column: ``mon.track(features="X", segment=mlmon.by_feature("country"))``.

    >>> by_feature("country")
    FeatureSegment(feature='country')
    """
    return FeatureSegment(name)
