"""The schema of a monitor without a reference, read off the first features it sees."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from mlmon._values import is_numeric_column, is_pandas, is_polars
from mlmon.features.inputs import _is_column
from mlmon.features.schema import FeatureSchema
from mlmon.reference import check_feature_names

__all__ = ["infer_schema"]


def infer_schema(features: Any) -> FeatureSchema | None:
    """A schema read off the first features a monitor without a reference sees, or None.

    Names come from a DataFrame's columns, a dict's keys (a row, a dict of columns or a list of
    dicts) or a Series' index; positional data (arrays, lists) gets ``f0, f1, ...``. A column is
    categorical when most of its non-missing values are not numbers. None when nothing usable
    can be read (an empty batch, names that are not strings or collide once sanitised).

    >>> s = infer_schema({"age": 31, "city": "Oslo"})
    >>> s.names, s.categorical_names
    (('age', 'city'), ('city',))
    >>> infer_schema(np.zeros((4, 3))).names
    ('f0', 'f1', 'f2')
    """
    try:
        names, cols = _infer_columns(features)
        if not names:
            return None
        check_feature_names(names)
        categorical = [
            n
            for n, c in zip(names, cols, strict=True)
            if c is not None and not is_numeric_column(c)
        ]
        return FeatureSchema(names, categorical=categorical)
    except Exception:  # unreadable, unnamable, or values whose str() raises: learn from later
        return None


def _infer_columns(features: Any) -> tuple[list[Any], list[npt.NDArray[Any] | None]]:
    """Names and a sample column (or None: numeric) per feature."""
    if is_polars(features, "DataFrame"):
        pl_names: list[Any] = [str(c) for c in features.columns]
        cols: list[npt.NDArray[Any] | None] = []
        for i in range(len(pl_names)):
            col = features.to_series(i)
            if col.dtype.is_numeric() or str(col.dtype) == "Boolean":
                cols.append(None)
            else:
                sample = np.empty(len(col), dtype=object)
                sample[:] = col.to_list()
                cols.append(sample)
        return pl_names, cols
    if is_pandas(features, "DataFrame"):
        if len(features.columns) == 0:
            return [], []
        frame_cols = [features.iloc[:, i].to_numpy(dtype=object) for i in range(features.shape[1])]
        return [c if isinstance(c, str) else str(c) for c in features.columns], list(frame_cols)
    if is_pandas(features, "Series"):
        if all(isinstance(k, str) for k in features.index):
            return _infer_columns(features.to_dict())
        features = features.to_numpy(dtype=object)
    if isinstance(features, Mapping):
        values = list(features.values())
        if any(_is_column(v) for v in values):
            return list(features), [
                np.array(list(v), dtype=object) if _is_column(v) else None for v in values
            ]
        return list(features), [np.array([v], dtype=object) for v in values]
    if (
        isinstance(features, (list, tuple))
        and features
        and all(isinstance(r, Mapping) for r in features)
    ):
        keys: dict[Any, None] = {}
        for r in features:
            keys.update(dict.fromkeys(r))
        return list(keys), [np.array([r.get(k) for r in features], dtype=object) for k in keys]
    if (
        isinstance(features, (list, tuple))
        and features
        and isinstance(features[0], (list, tuple, np.ndarray))
    ):
        features = np.array([list(r) for r in features], dtype=object)
    a = np.asarray(features, dtype=object) if not isinstance(features, np.ndarray) else features
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        if a.size == 0:
            return [], []
        a = a.reshape(1, -1)
    if a.ndim != 2 or a.shape[0] == 0:
        return [], []
    names: list[Any] = [f"f{j}" for j in range(a.shape[1])]
    if a.dtype.kind in "biuf":
        return names, [None] * len(names)
    return names, [a[:, j].astype(object) for j in range(a.shape[1])]
