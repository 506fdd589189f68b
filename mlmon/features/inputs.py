"""Reading what users pass to ``track(features=...)`` into numeric and categorical blocks.

One call's features become rows of a float64 matrix (the numeric features, NaN = missing) and
of an object matrix of category keys (``str`` or None = missing). Each call is read on its own
and all or nothing: when anything about it cannot be read (an object whose ``len()``,
``__array__`` or attribute lookup raises, a shape that is not known, ragged rows, a container
where one value is expected), nothing of it is kept and all its rows count as invalid; the
other calls of the same drain are read as if it had not been there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from mlmon._values import category_key, is_pandas, is_polars, to_float
from mlmon.features.schema import F64, FeatureSchema, Obj

__all__ = ["Converted", "convert"]

_FAST_TYPES = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32, np.bool_})
_CONTAINERS = (Mapping, list, tuple, set, frozenset, np.ndarray)
PART_VALUES = 2**17
"""Feature values (128 Ki, 1 MiB of float64) from which blocks are reduced without stacking more."""
MAX_ROWS_HINT = 2**53
"""Largest row count one call may claim (beyond it, the count itself is wrong)."""


class InvalidCall(Exception):
    """Raised inside the readers: the call being read cannot be used at all."""


class Converted(NamedTuple):
    """What :func:`convert` made of one call's features.

    Attributes:
        numeric: ``(n, n_numeric)`` float64 (NaN = missing).
        categorical: ``(n, n_categorical)`` category keys (``str``, or None = missing).
        invalid: rows that could not be read at all (wrong number of columns, unknown type).
        unknown: dict keys / DataFrame cells under names that are not features.

    >>> convert([[1.0, "x"], [2.0, None]], FeatureSchema(["a", "c"], categorical=["c"]))
    Converted(numeric=array([[1.],
           [2.]]), categorical=array([['x'],
           [None]], dtype=object), invalid=0, unknown=0)
    """

    numeric: F64
    categorical: Obj
    invalid: int
    unknown: int


def rows_hint(value: object) -> int:
    """The row count a call claims, clamped to ``[0, MAX_ROWS_HINT]``; 1 unless an int."""
    try:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return min(max(int(value), 0), MAX_ROWS_HINT)
    except Exception:  # an int subclass whose conversion raises
        pass
    return 1


def _key(v: object) -> str | None:
    """Category key of one value; a container makes the call invalid."""
    if type(v) is str:
        return v
    if isinstance(v, _CONTAINERS):
        if isinstance(v, np.ndarray) and v.ndim == 0:
            return category_key(v.item())
        raise InvalidCall("a container where one category is expected")
    return category_key(v)


def _float(v: object) -> float:
    """Numeric value of one value; a container makes the call invalid."""
    if isinstance(v, _CONTAINERS) and not (isinstance(v, np.ndarray) and v.ndim == 0):
        raise InvalidCall("a container where one number is expected")
    return to_float(v)


def _column_to_float(col: npt.NDArray[Any]) -> F64:
    if col.dtype.kind in "biuf":
        return col.astype(np.float64)
    if col.dtype.kind == "O" and set(map(type, col)) <= _FAST_TYPES:
        try:
            return col.astype(np.float64)
        except OverflowError:  # an int beyond float range: that value alone is missing
            pass
    return np.fromiter((_float(v) for v in col), dtype=np.float64, count=len(col))


def _column_to_keys(col: npt.NDArray[Any]) -> Obj:
    out = np.empty(len(col), dtype=object)
    out[:] = [_key(v) for v in col.tolist()] if col.dtype.kind != "O" else [_key(v) for v in col]
    return out


class _Builder:
    """Collects converted rows of many calls; rows and blocks are stacked once at the end.

    Every value added is already converted (floats, category keys), so :meth:`finish` cannot
    fail on data, and :meth:`mark`/:meth:`rollback` undo one call's additions.
    """

    __slots__ = ("blocks_c", "blocks_x", "invalid", "rows_c", "rows_x", "schema", "unknown")

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.blocks_x: list[F64] = []
        self.blocks_c: list[Obj] = []
        self.rows_x: list[Any] = []
        self.rows_c: list[list[str | None]] = []
        self.invalid = 0
        self.unknown = 0

    def mark(self) -> tuple[int, int, int, int]:
        return (len(self.blocks_x), len(self.rows_x), self.invalid, self.unknown)

    def rollback(self, mark: tuple[int, int, int, int], rows: int) -> None:
        """Forget what was added since ``mark`` and count ``rows`` invalid rows instead."""
        del self.blocks_x[mark[0] :], self.blocks_c[mark[0] :]
        del self.rows_x[mark[1] :], self.rows_c[mark[1] :]
        self.invalid = mark[2] + rows
        self.unknown = mark[3]

    def row(self, values: Sequence[Any]) -> None:
        """One row of all features in schema order (any Python values)."""
        s = self.schema
        x = [_float(values[p]) for p in s.num_pos]
        c = [_key(values[p]) for p in s.cat_pos]
        self.rows_x.append(x)
        self.rows_c.append(c)

    def named_row(self, row: Mapping[Any, Any]) -> None:
        s = self.schema
        get = row.get
        x = [_float(get(n)) for n in s.numeric_names]
        c = [_key(get(n)) for n in s.categorical_names]
        index = s.index
        known = sum(1 for k in row if k in index)
        self.rows_x.append(x)
        self.rows_c.append(c)
        self.unknown += len(row) - known

    def array(self, a: npt.NDArray[Any]) -> None:
        s = self.schema
        f = len(s.names)
        if a.ndim == 0:
            if f != 1:
                raise InvalidCall("one value for several features")
            self.row([a.item()])
            return
        if a.ndim == 1:
            if a.size == 0:
                return
            if a.size == f:
                if a.dtype.kind in "biuf" and s.n_categorical == 0:
                    self.rows_x.append(a.astype(np.float64))
                    self.rows_c.append([])
                else:
                    self.row(a.tolist() if a.dtype.kind != "O" else list(a))
                return
            if f != 1:
                self.invalid += 1  # one row with the wrong number of values
                return
            a = a.reshape(-1, 1)  # a 1-D batch of a single-feature model: n rows
        if a.ndim != 2:
            self.invalid += a.shape[0]
            return
        n, c = a.shape
        if n == 0:
            return
        if c != f:
            self.invalid += n
            return
        self.block(a)

    def block(self, a: npt.NDArray[Any]) -> None:
        """A 2-D ``(n, n_features)`` array in schema order."""
        s = self.schema
        n = a.shape[0]
        if a.dtype.kind in "biuf":
            x = a.astype(np.float64, copy=False)
            if s.n_categorical == 0:
                self.blocks_x.append(x)
                self.blocks_c.append(np.empty((n, 0), dtype=object))
                return
            c = np.empty((n, s.n_categorical), dtype=object)
            for j, p in enumerate(s.cat_pos):
                c[:, j] = _column_to_keys(a[:, p])
            self.blocks_x.append(x[:, s.num_pos])
            self.blocks_c.append(c)
            return
        obj = a.astype(object, copy=False)
        x = np.empty((n, s.n_numeric))
        for j, p in enumerate(s.num_pos):
            x[:, j] = _column_to_float(obj[:, p])
        c = np.empty((n, s.n_categorical), dtype=object)
        for j, p in enumerate(s.cat_pos):
            c[:, j] = _column_to_keys(obj[:, p])
        self.blocks_x.append(x)
        self.blocks_c.append(c)

    def columns(self, cols: Mapping[str, Any], n: int) -> None:
        """Named 1-D columns of length ``n`` (absent features are missing)."""
        s = self.schema
        x = np.full((n, s.n_numeric), np.nan)
        for j, name in enumerate(s.numeric_names):
            col = cols.get(name)
            if col is not None:
                x[:, j] = _column_to_float(_column(col, n))
        c = np.full((n, s.n_categorical), None, dtype=object)
        for j, name in enumerate(s.categorical_names):
            col = cols.get(name)
            if col is not None:
                c[:, j] = _column_to_keys(_column(col, n))
        self.blocks_x.append(x)
        self.blocks_c.append(c)

    def parts(self) -> list[tuple[F64, Obj]]:
        """The rows in parts to reduce, each about :data:`PART_VALUES` values or more.

        Consecutive blocks are stacked until a part is that large (one reduction costs a few
        dozen numpy calls whatever its size), and no larger than they come (a part that fits
        in cache is reduced faster than one big stack, and is not copied to be stacked).
        """
        s = self.schema
        width = max(len(s.names), 1)
        out: list[tuple[F64, Obj]] = []
        group_x: list[F64] = []
        group_c: list[Obj] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if len(group_x) == 1:
                out.append((group_x[0], group_c[0]))
            elif group_x:
                out.append((np.concatenate(group_x, axis=0), np.concatenate(group_c, axis=0)))
            group_x.clear()
            group_c.clear()
            size = 0

        for x, c in zip(self.blocks_x, self.blocks_c, strict=True):
            if not x.shape[0]:
                continue
            group_x.append(x)
            group_c.append(c)
            size += x.shape[0] * width
            if size >= PART_VALUES:
                flush()
        if self.rows_x:
            rows = _Builder(s)
            rows.rows_x, rows.rows_c = self.rows_x, self.rows_c
            conv = rows.finish()
            group_x.append(conv.numeric)
            group_c.append(conv.categorical)
        flush()
        return out

    def finish(self) -> Converted:
        s = self.schema
        xs = list(self.blocks_x)
        cs = list(self.blocks_c)
        if self.rows_x:
            xs.append(
                np.array(self.rows_x, dtype=np.float64).reshape(len(self.rows_x), s.n_numeric)
            )
            c = np.empty((len(self.rows_c), s.n_categorical), dtype=object)
            if s.n_categorical:
                c[:, :] = self.rows_c
            cs.append(c)
        if xs:
            x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=0)
            cat = cs[0] if len(cs) == 1 else np.concatenate(cs, axis=0)
        else:
            x = np.empty((0, s.n_numeric))
            cat = np.empty((0, s.n_categorical), dtype=object)
        return Converted(x, cat, self.invalid, self.unknown)


def _column(col: Any, n: int) -> npt.NDArray[Any]:
    """A named column as a 1-D array of exactly ``n`` values."""
    a = col if isinstance(col, np.ndarray) else np.array(list(col), dtype=object)
    if a.ndim != 1 or a.shape[0] != n:
        raise InvalidCall("a column of the wrong shape")
    return a


def _is_column(v: object) -> bool:
    return isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim == 1)


def _bad_shape(features: Any) -> bool:
    """True when an array-like announces a shape that is not known (``(None, 3)``, NaN)."""
    shape = getattr(features, "shape", None)
    if shape is None:
        return False
    if not isinstance(shape, tuple):
        try:
            shape = tuple(shape)
        except Exception:
            return True
    return not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape
    )


def _add(builder: _Builder, features: Any, hint: int) -> None:
    """Convert one call's features into ``builder``, all or nothing.

    ``hint`` is the number of rows to count as invalid when the call cannot be read at all.
    """
    mark = builder.mark()
    try:
        _read(builder, features)
    except Exception:
        builder.rollback(mark, hint)


def _read(builder: _Builder, features: Any) -> None:
    s = builder.schema
    f = len(s.names)
    if features is None:
        return
    if isinstance(features, np.ndarray):
        builder.array(features)
        return
    if isinstance(features, Mapping):
        _read_mapping(builder, features)
        return
    if is_pandas(features, "DataFrame"):
        _read_pandas(builder, features)
        return
    if is_polars(features, "DataFrame"):
        _read_polars(builder, features)
        return
    if is_pandas(features, "Series"):
        if all(isinstance(k, str) for k in features.index):
            builder.named_row(features.to_dict())
        else:
            builder.array(features.to_numpy(dtype=object))
        return
    if is_polars(features, "LazyFrame"):
        raise InvalidCall("a LazyFrame: collect it before tracking (mlmon never runs queries)")
    if isinstance(features, (list, tuple)):
        _read_list(builder, features)
        return
    if isinstance(features, (str, bytes, int, float, np.generic)):
        if f != 1:
            builder.invalid += 1  # one value for several features: one bad row
            return
        builder.row([features])
        return
    # Anything array-like (a tensor, a memoryview, a polars Series): let numpy read it, unless
    # its shape is not known (a symbolic tensor, a lazy array): then the call is invalid.
    if _bad_shape(features):
        raise InvalidCall("an array-like of unknown shape")
    a = np.asarray(features)
    if a.dtype.kind == "O" and a.ndim == 0:
        raise InvalidCall("not array-like")
    builder.array(a)


def _read_mapping(builder: _Builder, features: Mapping[Any, Any]) -> None:
    s = builder.schema
    values = list(features.values())
    if not (values and any(_is_column(v) for v in values)):
        builder.named_row(features)
        return
    # A dict of columns: every value must be a column of the same length.
    lengths = {len(v) if _is_column(v) else -1 for v in values}
    if len(lengths) != 1 or -1 in lengths:
        builder.invalid += max(x for x in lengths if x >= 0)
        return
    n = lengths.pop()
    if n == 0:
        return
    known = {k: v for k, v in features.items() if k in s.index}
    builder.unknown += n * (len(features) - len(known))
    builder.columns(known, n)


def _read_list(builder: _Builder, features: Sequence[Any]) -> None:
    s = builder.schema
    f = len(s.names)
    n = len(features)
    if n == 0:
        return
    first = features[0]
    if isinstance(first, Mapping):
        for row in features:
            if isinstance(row, Mapping):
                builder.named_row(row)
            else:
                builder.invalid += 1
        return
    if isinstance(first, (list, tuple, np.ndarray)):
        if any(not isinstance(r, (list, tuple, np.ndarray)) or len(r) != f for r in features):
            builder.invalid += n  # one bad row spoils the whole call: its columns are in doubt
            return
        block = np.empty((n, f), dtype=object)
        for i, r in enumerate(features):
            if isinstance(r, np.ndarray) and r.ndim != 1:
                raise InvalidCall("a row that is not 1-D")
            block[i, :] = list(r)
        builder.block(block)
        return
    if n == f:
        builder.row(features)
    elif f == 1:
        col = np.empty(n, dtype=object)
        col[:] = list(features)
        builder.block(col.reshape(-1, 1))
    else:
        builder.invalid += 1


def _read_frame(
    builder: _Builder,
    names: list[str],
    n: int,
    column: Any,
    positional: Any,
    as_float: Any = None,
) -> None:
    """A data frame: columns by name, or by position when no column name is a feature name.

    ``column(i, numeric)`` gives column ``i`` as float64 (NaN for nulls) when ``numeric`` and
    the column is numeric, else as objects; ``positional()`` gives the whole frame as an array;
    ``as_float()``, when given, the whole frame as one float64 matrix, or None unless every
    column is numeric (one copy instead of one per column).
    """
    s = builder.schema
    if n == 0:
        return
    matched = [c for c in names if c in s.index]
    if not matched:
        if len(names) == len(s.names):
            builder.block(positional())
        else:
            builder.invalid += n
        return
    builder.unknown += n * (len(names) - len(matched))
    if s.n_categorical == 0 and as_float is not None:
        whole = as_float()
        if whole is not None:
            first: dict[str, int] = {}
            for i, name in enumerate(names):
                first.setdefault(name, i)
            pairs = [(j, first[nm]) for j, nm in enumerate(s.numeric_names) if nm in first]
            if len(pairs) == whole.shape[1] == s.n_numeric and all(j == i for j, i in pairs):
                x = whole  # the frame's columns are the features, in order
            else:
                x = np.full((n, s.n_numeric), np.nan)
                x[:, [j for j, _ in pairs]] = whole[:, [i for _, i in pairs]]
            builder.blocks_x.append(x)
            builder.blocks_c.append(np.empty((n, 0), dtype=object))
            return
    cols: dict[str, Any] = {}
    categorical = set(s.categorical_names)
    for i, name in enumerate(names):
        if name in s.index and name not in cols:
            cols[name] = column(i, name not in categorical)
    builder.columns(cols, n)


def _read_pandas(builder: _Builder, df: Any) -> None:
    names = [c if isinstance(c, str) else str(c) for c in df.columns]
    labels = list(df.columns)

    def column(i: int, numeric: bool) -> npt.NDArray[Any]:
        col = df.iloc[:, i]
        if numeric and getattr(col.dtype, "kind", "O") in "biuf":
            return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan))
        return np.asarray(col.to_numpy(dtype=object))

    def positional() -> npt.NDArray[Any]:
        if any(getattr(d, "kind", "O") not in "biuf" for d in df.dtypes):
            return np.asarray(df.to_numpy(dtype=object))
        return np.asarray(df.to_numpy(dtype=np.float64))

    def as_float() -> npt.NDArray[np.float64] | None:
        if any(getattr(d, "kind", "O") not in "biuf" for d in df.dtypes):
            return None
        out = np.asarray(df.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        if out.shape != (len(df), len(labels)):
            raise InvalidCall("a DataFrame that does not read as a matrix")
        return out

    if len(set(labels)) != len(labels):
        raise InvalidCall("a DataFrame with repeated column names")
    _read_frame(builder, names, len(df), column, positional, as_float)


def _read_polars(builder: _Builder, df: Any) -> None:
    names = [str(c) for c in df.columns]

    def column(i: int, numeric: bool) -> npt.NDArray[Any]:
        col = df.to_series(i)
        if numeric and (col.dtype.is_numeric() or str(col.dtype) == "Boolean"):
            # Nulls become NaN; cast through float64 so integers with nulls stay numbers.
            return np.asarray(col.cast(float).to_numpy(), dtype=np.float64)
        out = np.empty(len(col), dtype=object)
        out[:] = col.to_list()
        return out

    def positional() -> npt.NDArray[Any]:
        return np.asarray(df.to_numpy())

    _read_frame(builder, names, int(df.height), column, positional)


def convert(features: Any, schema: FeatureSchema, rows_hint: int = 1) -> Converted:
    """Read what a user passed to ``track(features=...)`` for one call. Never raises on bad data.

    Accepted: one row as a 1-D array, list or tuple (in schema order) or a dict / pandas Series
    by name; a batch as a 2-D array, a list of rows, a list of dicts, a dict of columns or a
    pandas or polars DataFrame (by column name, or by position when no column name is a
    feature name). Unknown names are counted in ``unknown``; absent names are missing; a call
    whose rows do not have one value per feature counts all its rows in ``invalid``; strings in
    numeric features are missing. ``rows_hint`` is how many rows to count as invalid when the
    object cannot be read at all.

    >>> s = FeatureSchema(["a", "b"])
    >>> c = convert({"a": 1.0, "b": "oops", "zzz": 3}, s)
    >>> c.numeric.tolist(), c.invalid, c.unknown
    ([[1.0, nan]], 0, 1)
    >>> convert(np.ones((5, 3)), s).invalid
    5
    >>> convert({"a": {"nested": 1}, "b": 2.0}, s).invalid
    1
    """
    b = _Builder(schema)
    _add(b, features, max(1, min(int(rows_hint), MAX_ROWS_HINT)))
    return b.finish()


def _scores(outputs: Any) -> F64 | None:
    """Model outputs as 1-D scores: scalars, 1-D arrays, ``(n, 1)``, or ``(n, 2)`` probabilities
    (the second column, as ``predict_proba`` of a binary classifier). None when unusable."""
    if outputs is None:
        return None
    if isinstance(outputs, (bool, int, float, np.number)):
        return np.array([to_float(outputs)])
    try:
        a = np.asarray(outputs)
    except Exception:
        return None
    if a.ndim == 0:
        return np.array([to_float(a.item())])
    if a.ndim == 2 and a.shape[1] in (1, 2):
        a = a[:, -1]
    if a.ndim != 1:
        return None
    if a.dtype.kind in "biuf":
        return a.astype(np.float64)
    return np.fromiter((to_float(v) for v in a), dtype=np.float64, count=len(a))

