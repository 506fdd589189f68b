"""Per-feature data quality and drift over the rolling window, in bounded memory.

One idea per module, each usable alone:

- :mod:`mlmon.features.schema`: :class:`FeatureSchema` fixes the feature order, which features
  are categorical and, when a :class:`~mlmon.reference.Reference` is given, the reference bins
  every window histogram uses.
- :mod:`mlmon.features.inputs`: :func:`convert` turns whatever a user passed to
  ``track(features=...)`` into a float64 matrix of the numeric features plus a matrix of
  category keys, one call at a time and all or nothing: a call that cannot be read counts its
  rows as invalid and costs nothing else. It runs at drain time, on the monitor's copies.
- :mod:`mlmon.features.infer`: :func:`infer_schema` names the features of a monitor without a
  reference from the first features it sees.
- :mod:`mlmon.features.accumulator`: :class:`FeatureAccumulator` holds, for every feature at
  once (vectorised over features), the window statistics: rows, missing, mean/variance (Chan
  merge), min, max, and histogram counts on the reference cells (underflow, bins, overflow;
  categories, "other"). It has ``merge`` and ``reset``, so it lives in a
  :class:`~mlmon.window.RollingWindow`.
- :mod:`mlmon.features.component`: :class:`FeatureComponent` puts them together behind the
  monitor's :class:`~mlmon._component.Component` protocol and emits the ``mlmon_feature_*``
  samples, ``mlmon_output_drift_psi`` and the cumulative counters of what it could not use.

Value coercion (what is a number, what is a category, what is missing) lives in
:mod:`mlmon._values`, shared with :mod:`mlmon.reference`.

What counts as missing: ``None``, NaN, ``inf``/``-inf`` (an infinite value would poison the mean
and variance, so it is treated as invalid), strings or any other non-number in a numeric feature,
``None``/NaN in a categorical feature, a key absent from a dict row, and every feature of a row
that could not be read at all (a call with the wrong number of columns).

Memory is fixed by the schema, never by the data: per numeric feature 6 numbers plus one count
per reference cell (12 with deciles), per categorical feature 3 numbers plus one count per kept
reference category and one for "other". A categorical feature with a million distinct values
in the window costs the same as one with three: categories outside the reference are counted
in "other" (and as unseen), they are not remembered.
"""

from __future__ import annotations

from mlmon.features.accumulator import FeatureAccumulator
from mlmon.features.component import FeatureComponent
from mlmon.features.infer import infer_schema
from mlmon.features.inputs import Converted, convert
from mlmon.features.schema import FeatureSchema

__all__ = [
    "Converted",
    "FeatureAccumulator",
    "FeatureComponent",
    "FeatureSchema",
    "convert",
    "infer_schema",
]
