"""Tasks: what a model's outputs and its true labels mean.

A task maps the outputs of one call (a Python scalar, a list, a 1-D numpy array of scores or
class labels, or 2-D probability rows) into per-row arrays the quality components reduce with
numpy, and maps true labels to the same encoding. Bad values are never raised: they come back
marked invalid, and the caller counts them.

Encodings (one entry per prediction row):

- ``values``: float64 score or value used for output distribution statistics; NaN where the row
  has no score (a class label output, or an invalid row).
- ``classes``: int64 predicted class index (binary: 0 negative, 1 positive); -1 where invalid;
  ``None`` for regression.
- labels: float64, a class index for classifiers or the true value for regression, with a
  boolean ``valid`` mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeAlias

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "BinaryClassification",
    "MappedOutputs",
    "MulticlassClassification",
    "Regression",
    "Task",
    "map_scores",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

_NUMERIC_KINDS = "biuf"
_NAN = math.nan
_EMPTY_F: FloatArray = np.empty(0, dtype=np.float64)
_EMPTY_I: IntArray = np.empty(0, dtype=np.int64)
_EMPTY_B: BoolArray = np.empty(0, dtype=np.bool_)


class MappedOutputs(NamedTuple):
    """One call's outputs as per-row arrays (see the module docstring for the encodings).

    ``invalid`` counts the output values that could not be used: invalid rows, or the whole
    object when it has no usable shape (a ragged list counts its length, a string scalar 1).
    """

    values: FloatArray
    classes: IntArray | None
    valid: BoolArray
    invalid: int


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating, np.bool_))


def _to_float(x: object) -> float:
    """A number as float, anything else (None, strings, NaN-like objects) as NaN."""
    if not _is_number(x):
        return _NAN
    try:
        return float(x)  # type: ignore[arg-type]
    except (OverflowError, ValueError, TypeError):
        return _NAN


def _as_array(obj: object) -> npt.NDArray[Any] | None:
    """``obj`` as a numpy array, or None when numpy cannot make a regular array of it.

    Lists that mix strings with other values become object arrays, so that ``[1, "a"]`` keeps
    the number 1 instead of turning it into the string ``"1"``.
    """
    if isinstance(obj, np.ndarray):
        return obj
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind in "US" and isinstance(obj, (list, tuple)):
        items: list[Any] = list(obj)
        if not all(isinstance(x, (str, bytes)) for x in items):
            mixed: npt.NDArray[Any] = np.fromiter(items, dtype=object, count=len(items))
            return mixed
    return arr


def _float_rows(arr: npt.NDArray[Any]) -> FloatArray:
    """Element-wise float64 of any array: numbers as they are, everything else NaN."""
    kind = arr.dtype.kind
    if kind in _NUMERIC_KINDS:
        return arr.astype(np.float64)
    if kind == "O":
        flat = np.fromiter((_to_float(x) for x in arr.ravel()), dtype=np.float64, count=arr.size)
        return flat.reshape(arr.shape)
    return np.full(arr.shape, _NAN)


_LUT_SPAN = 4096  # integer labels spanning fewer values are mapped through a table by counting


def _lut_map(arr: npt.NDArray[Any], fn: Callable[[Any], float]) -> FloatArray:
    """Apply ``fn`` to every element of a 1-D array, calling it once per distinct value."""
    if arr.size == 0:
        return np.empty(0, dtype=np.float64)
    kind = arr.dtype.kind
    if kind in "biu" and arr.ndim == 1:
        # Integers (and bools) within a short range, labels as a rule: the distinct values
        # are found by counting, not by np.unique's sort; ``fn`` sees the same values.
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < _LUT_SPAN and hi < 2**62:
            idx = arr.astype(np.intp)
            if lo:
                idx -= lo
            present = np.flatnonzero(np.bincount(idx, minlength=hi - lo + 1))
            values = (present + lo).tolist()
            if kind == "b":
                values = [bool(v) for v in values]
            lut = np.full(hi - lo + 1, _NAN)
            lut[present] = np.fromiter((fn(v) for v in values), dtype=np.float64, count=len(values))
            return lut[idx]
    if kind in "biufUS":
        uniq, inverse = np.unique(arr, return_inverse=True)
        lut = np.fromiter((fn(v) for v in uniq.tolist()), dtype=np.float64, count=uniq.size)
        return lut[inverse.ravel()]
    return np.fromiter((fn(v) for v in arr.tolist()), dtype=np.float64, count=arr.size)


def _unusable(obj: object, classified: bool = False) -> MappedOutputs:
    try:
        n = len(obj)  # type: ignore[arg-type]
    except TypeError:
        n = 1
    if isinstance(obj, (str, bytes, dict)):
        n = 1
    return MappedOutputs(_EMPTY_F, _EMPTY_I if classified else None, _EMPTY_B, max(n, 1))


def _wrong_shape(arr: npt.NDArray[Any], classified: bool = False) -> MappedOutputs:
    n = max(int(arr.shape[0]) if arr.ndim else 1, 1)
    return MappedOutputs(_EMPTY_F, _EMPTY_I if classified else None, _EMPTY_B, n)


def map_scores(obj: object) -> MappedOutputs:
    """Map outputs as plain numeric scores: scalars, 1-D arrays, or 2-D ``(n, 1)`` columns.

    Used for regression and when a monitor has no task. Other shapes are invalid.

    >>> m = map_scores([0.5, None, 2.0])
    >>> m.values.tolist(), m.valid.tolist(), m.invalid
    ([0.5, nan, 2.0], [True, False, True], 1)
    """
    if obj is None:
        return MappedOutputs(_EMPTY_F, None, _EMPTY_B, 1)
    arr = _as_array(obj)
    if arr is None:
        return _unusable(obj)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        return _wrong_shape(arr)
    values = _float_rows(arr)
    valid = np.isfinite(values)
    return MappedOutputs(values, None, valid, int(valid.size - np.count_nonzero(valid)))


def _check_label(field: str, value: object) -> None:
    """Class labels are numbers or strings, never None or NaN (they could never match)."""
    if isinstance(value, (str, np.str_)):
        return
    if _is_number(value) and math.isfinite(float(value)):  # type: ignore[arg-type]
        return
    raise ValueError(f"{field} must be a finite number or a string, got {value!r}")


def _finite_number(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


@attrs.frozen(kw_only=True)
class BinaryClassification:
    """A binary classifier scoring rows; a row is predicted positive when ``score >= threshold``.

    Args:
        threshold: the decision threshold on scores (any finite number, so logits work too).
        positive: the label value of the positive class (a number or a string).
        negative: the label value of the negative class. When None (the default), every valid
            label other than ``positive`` of the same kind (a number when ``positive`` is a
            number, a string when it is a string) is negative, as scikit-learn's ``pos_label``;
            when given, only ``positive`` and ``negative`` are valid labels.

    Outputs may be scores (scalars, 1-D arrays, ``(n, 1)`` columns), probability rows
    ``(n, 2)`` (column 1 is the score), or label strings equal to ``positive`` / ``negative``
    (scored 1 and 0). Labels ``True``/``False`` equal ``1``/``0`` as in Python.

    >>> task = BinaryClassification(threshold=0.5)
    >>> out = task.map_outputs([[0.8, 0.2], [0.3, 0.7]])
    >>> out.values.tolist(), out.classes.tolist()
    ([0.2, 0.7], [0, 1])
    >>> labels, valid = task.map_labels(np.array([1, 0, None], dtype=object))
    >>> labels[valid].tolist(), valid.tolist()
    ([1.0, 0.0], [True, True, False])
    >>> task.class_names
    ('0', '1')
    """

    threshold: float = attrs.field(default=0.5, validator=_finite_number)
    positive: int | float | str = 1
    negative: int | float | str | None = None

    def __attrs_post_init__(self) -> None:
        _check_label("positive", self.positive)
        if self.negative is not None:
            _check_label("negative", self.negative)
            if _is_number(self.negative) != _is_number(self.positive):
                raise ValueError(
                    f"negative must be of the same kind as positive ({self.positive!r}), "
                    f"got {self.negative!r}"
                )
            if self.negative == self.positive:
                raise ValueError(f"negative must differ from positive, got {self.negative!r}")

    @property
    def class_names(self) -> tuple[str, str]:
        """Names of class 0 (negative) and class 1 (positive) in metric labels."""
        if self.negative is not None:
            return (str(self.negative), str(self.positive))
        if _is_number(self.positive) and self.positive in (0, 1):
            return (str(int(not self.positive)), str(int(self.positive)))
        return (f"not_{self.positive}", str(self.positive))

    def map_label(self, v: object) -> float:
        """Encode one label: 1.0 positive, 0.0 negative, NaN invalid."""
        pos = self.positive
        if _is_number(pos):
            if not _is_number(v) or not math.isfinite(_to_float(v)):
                return _NAN
        elif not isinstance(v, str):
            return _NAN
        if v == pos:
            return 1.0
        if self.negative is None or v == self.negative:
            return 0.0
        return _NAN

    def _output_score(self, v: object) -> float:
        """Score of one output element: a number, or a label string equal to positive/negative."""
        if isinstance(v, str):
            if v == self.positive:
                return 1.0
            if self.negative is not None and v == self.negative:
                return 0.0
            return _NAN
        return _to_float(v)

    def map_outputs(self, obj: object, rows: int | None = None) -> MappedOutputs:
        """Map one call's outputs to per-row scores and predicted classes.

        Args:
            obj: the call's outputs.
            rows: the call's prediction rows, when known. With ``rows == 1`` a 1-D float array
                of length 2 is read as one probability row ``(1, 2)``.
        """
        if obj is None:
            return MappedOutputs(_EMPTY_F, _EMPTY_I, _EMPTY_B, 1)
        arr = _as_array(obj)
        if arr is None:
            return _unusable(obj, True)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        elif arr.ndim == 1 and rows == 1 and arr.shape[0] == 2 and arr.dtype.kind == "f":
            arr = arr.reshape(1, 2)
        if arr.ndim == 2 and arr.shape[1] in (1, 2):
            arr = arr[:, arr.shape[1] - 1]
        if arr.ndim != 1:
            return _wrong_shape(arr, True)
        if arr.dtype.kind in _NUMERIC_KINDS:
            values = arr.astype(np.float64)
        elif arr.dtype.kind in "OU":
            values = _lut_map(arr, self._output_score)
        else:
            values = np.full(arr.shape, _NAN)
        valid = np.isfinite(values)
        classes = (values >= self.threshold).astype(np.int64)
        if arr.dtype.kind in "OU":
            # Class labels given as strings are the predicted class itself (1.0 positive, 0.0
            # negative), whatever the threshold: "ham" must not become positive at threshold 0.
            named = np.fromiter((isinstance(v, (str, bytes)) for v in arr.tolist()), np.bool_, arr.size)
            classes[named & valid] = values[named & valid].astype(np.int64)
        classes[~valid] = -1
        return MappedOutputs(values, classes, valid, int(valid.size - np.count_nonzero(valid)))

    def map_labels(self, labels: npt.NDArray[Any]) -> tuple[FloatArray, BoolArray]:
        """Encode a 1-D array of labels: 1.0 positive, 0.0 negative, and a validity mask."""
        codes = _lut_map(labels, self.map_label)
        valid = ~np.isnan(codes)
        return codes, valid


def _to_classes(value: Sequence[Any]) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"classes must be a list of class labels, got {value!r}")
    return tuple(v.item() if isinstance(v, np.generic) else v for v in value)


def _check_classes(_inst: object, _attr: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    if len(value) < 2:
        raise ValueError(f"classes must hold at least 2 class labels, got {list(value)!r}")
    for c in value:
        _check_label("classes", c)
    if len({str(c) for c in value}) != len(value) or len(set(value)) != len(value):
        raise ValueError(f"classes must be distinct (also as strings), got {list(value)!r}")


def _to_top_k(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, int) else value
    try:
        ks = tuple(items)
    except TypeError:
        ks = ()
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"top_k must be None, an int >= 1 or a sequence of them, got {value!r}")
    return tuple(sorted(set(ks)))


@attrs.frozen(kw_only=True)
class MulticlassClassification:
    """A single-label classifier over a fixed list of classes.

    Args:
        classes: the class labels (numbers or strings, distinct also as strings, at least 2).
            Their order is the column order of probability outputs.
        top_k: the ``k`` of ``mlmon_top_k_accuracy`` (from probability rows joined to their
            labels); None: 1, 3 and 5, those below the number of classes.

    Outputs may be class labels (scalars, 1-D arrays, ``(n, 1)`` columns) or probability rows
    ``(n, k)`` with ``k == len(classes)``: the predicted class is the argmax and the row's
    score (for output statistics) is its top probability. With ``rows == 1`` a 1-D float
    array of length ``k`` that is not a list of class labels is read as one probability row.
    Labels outside ``classes`` are invalid; labels match as Python values (``1 == 1.0``).

    >>> task = MulticlassClassification(classes=["cat", "dog", "fox"])
    >>> out = task.map_outputs(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]))
    >>> out.classes.tolist(), out.values.tolist()
    ([1, 0], [0.7, 0.6])
    >>> codes, valid = task.map_labels(np.array(["fox", "cow"]))
    >>> codes[valid].tolist(), valid.tolist()
    ([2.0], [True, False])
    """

    classes: tuple[Any, ...] = attrs.field(converter=_to_classes, validator=_check_classes)
    top_k: tuple[int, ...] | None = attrs.field(default=None, converter=_to_top_k)
    _index: dict[Any, int] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.classes)})

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes in metric labels (``str`` of each class)."""
        return tuple(str(c) for c in self.classes)

    def map_label(self, v: object) -> float:
        """Encode one label as its class index, NaN when invalid."""
        try:
            i = self._index.get(v)
        except TypeError:  # unhashable
            return _NAN
        return _NAN if i is None else float(i)

    def _encode(self, arr: npt.NDArray[Any]) -> FloatArray:
        try:
            return _lut_map(arr, self.map_label)
        except TypeError:  # np.unique cannot order mixed object values
            return np.fromiter((self.map_label(v) for v in arr.tolist()), np.float64, arr.size)

    def map_outputs(self, obj: object, rows: int | None = None) -> MappedOutputs:
        """Map one call's outputs to per-row predicted classes (and top probabilities)."""
        k = len(self.classes)
        if obj is None:
            return MappedOutputs(_EMPTY_F, _EMPTY_I, _EMPTY_B, 1)
        arr = _as_array(obj)
        if arr is None:
            return _unusable(obj, True)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        elif arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 1:
            codes = self._encode(arr)
            valid = ~np.isnan(codes)
            if rows == 1 and arr.shape[0] == k and arr.dtype.kind == "f" and not valid.all():
                return self._probabilities(arr.reshape(1, k))
            classes = np.where(valid, codes, -1).astype(np.int64)
            values = np.full(arr.shape, _NAN)
            return MappedOutputs(values, classes, valid, int(valid.size - np.count_nonzero(valid)))
        if arr.ndim == 2 and arr.shape[1] == k:
            return self._probabilities(arr)
        return _wrong_shape(arr, True)

    def _probabilities(self, arr: npt.NDArray[Any]) -> MappedOutputs:
        probs = _float_rows(arr)
        valid = np.asarray(np.isfinite(probs).all(axis=1), dtype=np.bool_)
        safe = np.where(np.isfinite(probs), probs, -np.inf)
        classes = np.argmax(safe, axis=1).astype(np.int64)
        classes[~valid] = -1
        values = np.where(valid, np.max(safe, axis=1), _NAN)
        return MappedOutputs(values, classes, valid, int(valid.size - np.count_nonzero(valid)))

    def map_labels(self, labels: npt.NDArray[Any]) -> tuple[FloatArray, BoolArray]:
        """Encode a 1-D array of labels as class indices, and a validity mask."""
        codes = self._encode(labels)
        return codes, ~np.isnan(codes)


@attrs.frozen(kw_only=True)
class Regression:
    """A model predicting a number per row; labels are the true numbers.

    Outputs may be scalars, 1-D arrays or ``(n, 1)`` columns; non-finite values, strings and
    None are invalid. Labels must be finite numbers (strings are invalid, not parsed).

    >>> task = Regression()
    >>> task.map_outputs([1.5, float("nan"), 3.0]).invalid
    1
    >>> codes, valid = task.map_labels(np.array([2.0, None, "3"], dtype=object))
    >>> valid.tolist()
    [True, False, False]
    """

    def map_outputs(self, obj: object, rows: int | None = None) -> MappedOutputs:
        """Map one call's outputs to per-row predicted values."""
        return map_scores(obj)

    def map_label(self, v: object) -> float:
        """Encode one label: its value, NaN when invalid."""
        x = _to_float(v)
        return x if math.isfinite(x) else _NAN

    def map_labels(self, labels: npt.NDArray[Any]) -> tuple[FloatArray, BoolArray]:
        """Encode a 1-D array of labels as float64 values, and a validity mask."""
        values = _float_rows(labels) if labels.ndim == 1 else np.full(len(labels), _NAN)
        return values, np.isfinite(values)


Task: TypeAlias = BinaryClassification | MulticlassClassification | Regression
"""Any of the task types a monitor accepts."""
