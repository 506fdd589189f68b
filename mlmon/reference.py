"""The training-data reference: a small per-feature summary that drift is measured against.

A :class:`Reference` keeps no raw rows. Per numeric feature it keeps quantile bin edges (deciles by
default), the reference count in each bin, min, max, mean, variance, the number of valid values
and of rows; per categorical feature the counts of its most frequent categories plus an "other"
count. The same summary of the model's outputs (1-D scores) is kept when ``outputs=`` is given,
and with ``labels=`` (binary classifiers) an isotonic :class:`Calibration` of those scores, from
which the monitor estimates precision, recall, F1, accuracy and ROC AUC before labels arrive.

Binning, shared by the reference and the serving-side window (:func:`binned_counts`):

- edges ``e[0] = min < ... <= e[m] = max`` make ``m`` bins ``[e[i], e[i+1])``, the last closed;
- values below ``e[0]`` fall in an explicit underflow bin and values above ``e[m]`` in an overflow
  bin, so counts have ``m + 2`` cells and the reference has zero mass in the two outer ones;
- a feature with at most ``bins`` distinct values gets one bin per distinct value (the last edge is
  repeated so the maximum is a point bin); a constant feature is the extreme case: edges
  ``(c, c)``, one bin holding all the mass, and any other value is out of range;
- when the maximum alone holds at least ``1/bins`` of the mass (a clipped feature), it also gets
  its own point bin.

Categories are compared by their string form (``1``, ``1.0`` and ``"1"`` are the same category);
``None`` and NaN are missing.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from mlmon._binning import bin_index as bin_index
from mlmon._binning import binned_counts, check_feature_names, sanitize_label
from mlmon._files import atomic_write
from mlmon._profiles import MAX_BINS as MAX_BINS
from mlmon._profiles import MAX_CATEGORIES as MAX_CATEGORIES
from mlmon._profiles import MAX_COUNT as MAX_COUNT
from mlmon._profiles import MIN_LABELS_PER_CLASS as MIN_LABELS_PER_CLASS
from mlmon._profiles import (
    Calibration,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    _count,
    _Fields,
    _profiles,
    _short,
)
from mlmon._values import (
    category_key,
    is_numeric_column,
    is_pandas,
    object_column_to_float,
    to_float,
)

__all__ = [
    "MIN_LABELS_PER_CLASS",
    "Calibration",
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
    "Reference",
    "binned_counts",
    "category_key",
    "check_feature_names",
    "is_numeric_column",
    "object_column_to_float",
    "sanitize_label",
    "to_float",
]

FORMAT_VERSION = 1
"""Version of the JSON file written by :meth:`Reference.save`."""

MAX_FILE_BYTES = 64 * 2**20
"""Default size limit of a reference file read by :meth:`Reference.load` (64 MiB)."""


# --------------------------------------------------------------------------- input columns


def _columns(
    X: Any, feature_names: Sequence[str] | None
) -> tuple[list[str], list[npt.NDArray[Any]]]:
    """Column names and 1-D columns (float64 or object) of the reference data."""
    names: list[str] | None = None
    cols: list[npt.NDArray[Any]]
    if is_pandas(X, "DataFrame"):
        # Only reached when the caller already has pandas.
        pd: Any = importlib.import_module("pandas")

        names = [str(c) for c in X.columns]
        cols = []
        for c in X.columns:
            s = X[c]
            if pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(
                s.dtype, pd.CategoricalDtype
            ):
                cols.append(s.to_numpy(dtype=np.float64, na_value=np.nan))
            else:
                cols.append(s.to_numpy(dtype=object))
    elif isinstance(X, Mapping):
        names = [str(k) for k in X]
        cols = [
            np.asarray(v) if isinstance(v, np.ndarray) else np.array(list(v), dtype=object)
            for v in X.values()
        ]
        for name, c in zip(names, cols, strict=True):
            if c.ndim != 1:
                raise ValueError(f"X: column {name!r} must be 1-D, got shape {c.shape}")
        lengths = {len(c) for c in cols}
        if len(lengths) > 1:
            raise ValueError(f"X: columns must have equal lengths, got {sorted(lengths)}")
    elif isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D (rows x features), got shape {X.shape}; use X.reshape(-1, 1) for one feature"
            )
        cols = [X[:, j] for j in range(X.shape[1])]
    elif isinstance(X, (list, tuple)):
        if X and all(isinstance(r, Mapping) for r in X):
            keys: dict[str, None] = {}
            for r in X:
                for k in r:
                    keys.setdefault(str(k), None)
            names = list(keys)
            cols = [np.array([r.get(k) for r in X], dtype=object) for k in names]
        else:
            width = None
            for i, r in enumerate(X):
                if not isinstance(r, (list, tuple, np.ndarray)):
                    raise ValueError(
                        f"X: row {i} must be a list, tuple or array, got {type(r).__name__}"
                    )
                if width is None:
                    width = len(r)
                elif len(r) != width:
                    raise ValueError(f"X: row {i} has {len(r)} values, row 0 has {width}")
            arr = np.empty((len(X), width or 0), dtype=object)
            for i, r in enumerate(X):
                arr[i, :] = list(r)
            cols = [arr[:, j] for j in range(arr.shape[1])]
    else:
        raise TypeError(
            f"X must be a 2-D array, a list of rows, a dict of columns or a DataFrame, got {type(X).__name__}"
        )
    if feature_names is not None:
        given = list(feature_names)
        if len(given) != len(cols):
            raise ValueError(f"feature_names has {len(given)} names for {len(cols)} columns")
        names = given
    if names is None:
        names = [f"f{j}" for j in range(len(cols))]
    return names, cols


# --------------------------------------------------------------------------- Reference


def _check_features(_inst: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for p in value:
        if not isinstance(p, (NumericProfile, CategoricalProfile)):
            raise ValueError(
                f"{attribute.name} must hold NumericProfile/CategoricalProfile, got {p!r}"
            )
    check_feature_names([p.name for p in value], attribute.name)


MAX_CALIBRATED_CLASSES = 32
"""Most classes of a multiclass calibration (each keeps its own score bins per window slice)."""

CLASS_AUC_BINS = 250
"""Score bins per class of the multiclass estimated ROC AUC."""


def _calibration_tuple(value: Iterable[Calibration] | None) -> tuple[Calibration, ...] | None:
    return None if value is None else tuple(value)


def _check_class_calibration(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not 2 <= len(value) <= MAX_CALIBRATED_CLASSES or not all(isinstance(c, Calibration) for c in value):
        raise ValueError(
            f"{attribute.name} must hold 2 to {MAX_CALIBRATED_CLASSES} Calibration objects, got {_short(value)}"
        )


def _probability_rows(outputs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    try:
        proba = np.asarray(outputs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("outputs must be numeric probability rows (n, k)") from None
    if proba.ndim != 2 or not 2 <= proba.shape[1] <= MAX_CALIBRATED_CLASSES:
        raise ValueError(
            f"outputs must be probability rows (n, k) with 2 <= k <= {MAX_CALIBRATED_CLASSES}, "
            f"got shape {proba.shape}"
        )
    return proba


def _fit_classes(proba: npt.NDArray[np.float64], labels: npt.ArrayLike) -> tuple[Calibration, ...]:
    """One-vs-rest calibrations of each probability column on class-index ``labels``."""
    lab = np.asarray(labels)
    k = proba.shape[1]
    if lab.dtype.kind not in "biuf" or not np.all(np.isin(lab, np.arange(k))):
        bad = lab[~np.isin(lab, np.arange(k))] if lab.dtype.kind in "biuf" else lab
        raise ValueError(
            f"labels of probability rows must be class indices 0 .. {k - 1} (the columns), "
            f"got {_short(bad[0].item() if bad.size and hasattr(bad[0], 'item') else bad[:1].tolist())}"
        )
    out = []
    for c in range(k):
        try:
            out.append(Calibration.fit(proba[:, c], lab == c, bins=CLASS_AUC_BINS))
        except ValueError as e:
            raise ValueError(f"class {c}: {e}") from None
    return tuple(out)


@attrs.frozen(kw_only=True)
class Reference:
    """What the training data looked like, per feature and for the outputs, in a few numbers.

    Build it once from the training (or a validation) set with :meth:`from_data`, save it next
    to the model with :meth:`save`, and hand it to the monitor; the serving process then
    measures the window's data quality and drift against it.

    Attributes:
        rows: rows of the reference data.
        features: one profile per feature, in column order.
        outputs: profile of the reference model outputs, or None.
        calibration: isotonic calibration of the outputs (binary scores) fitted on the
            reference labels, or None (see :meth:`from_data` ``labels=``).
        class_calibration: multiclass: one isotonic calibration per class of that class's
            probability column (one-vs-rest), in class order, or None.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 2))
    >>> ref = Reference.from_data(X, feature_names=["age", "income"], outputs=rng.uniform(size=1000))
    >>> ref.feature_names
    ('age', 'income')
    >>> len(ref["age"].edges), ref["age"].counts
    (11, (100, 100, 100, 100, 100, 100, 100, 100, 100, 100))
    >>> Reference.from_dict(ref.to_dict()) == ref
    True
    """

    rows: int = attrs.field(validator=_count)
    features: tuple[FeatureProfile, ...] = attrs.field(
        converter=_profiles, validator=_check_features
    )
    outputs: NumericProfile | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(NumericProfile)),
    )
    calibration: Calibration | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(Calibration)),
    )
    class_calibration: tuple[Calibration, ...] | None = attrs.field(
        default=None, converter=_calibration_tuple, validator=_check_class_calibration
    )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names, in column order."""
        return tuple(p.name for p in self.features)

    @property
    def categorical(self) -> tuple[str, ...]:
        """Names of the categorical features."""
        return tuple(p.name for p in self.features if p.kind == "categorical")

    def __getitem__(self, name: str) -> FeatureProfile:
        for p in self.features:
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def from_data(
        cls,
        X: Any,
        feature_names: Sequence[str] | None = None,
        categorical: Iterable[str | int] | None = None,
        outputs: npt.ArrayLike | None = None,
        bins: int = 10,
        max_categories: int = 100,
        labels: npt.ArrayLike | None = None,
    ) -> Reference:
        """Summarise reference data.

        Args:
            X: a 2-D numpy array, a list of rows (lists, tuples or dicts), a dict of columns,
                or a pandas DataFrame.
            feature_names: names of the columns (default: the DataFrame's or dict's keys,
                else ``f0, f1, ...``).
            categorical: names or column indices of the categorical features. When None,
                non-numeric columns (strings, pandas categories, objects) are categorical.
                Booleans are numeric (0/1).
            outputs: 1-D reference model outputs (scores), for ``mlmon_output_drift_psi``; or,
                for a multiclass model with ``labels``, its ``(n, k)`` probability rows (the
                output profile is then of the top probability, as the monitor sees outputs).
            bins: quantile bins per numeric feature (10: deciles).
            max_categories: categories kept per categorical feature; the rest count as "other".
            labels: binary classifiers: the true label of each row, 1 (or True) for the
                positive class and 0 (False) for the negative; with ``outputs``, fits the
                :class:`Calibration` the monitor estimates performance from before labels
                arrive. Multiclass (2-D ``outputs``): the class index of each row (``0 ..
                k - 1``, the column of ``outputs`` and the position in the task's ``classes``),
                fitting one calibration per class (``class_calibration``). Use held-out data
                (the model's scores on its training rows are optimistic).

        Raises:
            ValueError: no rows, no columns, ragged rows, bad names (see
                :func:`check_feature_names`), unknown categorical names, bad outputs, or
                ``bins``/``max_categories`` out of range; ``labels`` without ``outputs``, not
                one 0/1 label per row, or unfit to calibrate (see :meth:`Calibration.fit`:
                NaN scores, constant scores, fewer than :data:`MIN_LABELS_PER_CLASS` labels of
                either class).
        """
        if not (isinstance(bins, int) and not isinstance(bins, bool) and 1 <= bins <= MAX_BINS):
            raise ValueError(f"bins must be an int in [1, {MAX_BINS}], got {bins!r}")
        if not (
            isinstance(max_categories, int)
            and not isinstance(max_categories, bool)
            and 1 <= max_categories <= MAX_CATEGORIES
        ):
            raise ValueError(
                f"max_categories must be an int in [1, {MAX_CATEGORIES}], got {max_categories!r}"
            )
        names, cols = _columns(X, feature_names)
        if not cols:
            raise ValueError("X has no columns: a reference needs at least one feature")
        rows = len(cols[0])
        if rows == 0:
            raise ValueError("X has 0 rows: a reference needs at least one row")
        names_t = check_feature_names(names)
        cat: set[int] = set()
        if categorical is not None:
            for c in categorical:
                if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                    if not 0 <= int(c) < len(cols):
                        raise ValueError(
                            f"categorical: column index {c!r} out of range for {len(cols)} columns"
                        )
                    cat.add(int(c))
                elif c in names_t:
                    cat.add(names_t.index(c))
                else:
                    raise ValueError(
                        f"categorical: {c!r} is not a feature name (names: {list(names_t)})"
                    )
        else:
            cat = {j for j, col in enumerate(cols) if not is_numeric_column(col)}
        profiles: list[FeatureProfile] = []
        for j, (name, col) in enumerate(zip(names_t, cols, strict=True)):
            if j in cat:
                profiles.append(CategoricalProfile.from_values(name, col, max_categories))
            else:
                x = (
                    col.astype(np.float64)
                    if col.dtype.kind in "biuf"
                    else object_column_to_float(col)
                )
                profiles.append(NumericProfile.from_values(name, x, bins))
        out_profile = None
        calibration = None
        if labels is not None and outputs is None:
            raise ValueError("labels= needs outputs= (the reference scores they calibrate)")
        class_calibration = None
        if outputs is not None:
            if labels is not None and np.ndim(outputs) == 2 and np.shape(outputs)[1] > 1:
                proba = _probability_rows(outputs)
                if np.shape(labels) != (rows,) or proba.shape[0] != rows:
                    raise ValueError(
                        f"labels and outputs need one row per row of X ({rows}), got shapes "
                        f"{np.shape(labels)} and {proba.shape}"
                    )
                class_calibration = _fit_classes(proba, labels)
                out_profile = NumericProfile.from_values("output", proba.max(axis=1), bins)
            else:
                scores = _outputs_1d(outputs)
                out_profile = NumericProfile.from_values("output", scores, bins)
                if labels is not None:
                    if np.shape(labels) != (rows,):
                        raise ValueError(
                            f"labels must be 1-D with one label per row of X ({rows}), got shape {np.shape(labels)}"
                        )
                    calibration = Calibration.fit(scores, labels)
        return cls(rows=rows, features=tuple(profiles), outputs=out_profile, calibration=calibration,
                   class_calibration=class_calibration)  # fmt: skip

    def with_calibration(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> Reference:
        """This reference with a :class:`Calibration` fitted on ``scores`` and 0/1 ``labels``
        (e.g. a validation set's, when the drift profile came from the training set); with
        ``(n, k)`` probability rows and class-index labels, one per class
        (``class_calibration``).

        Raises:
            ValueError: as :meth:`Calibration.fit`.
        """
        if np.ndim(scores) == 2 and np.shape(scores)[1] > 1:
            proba = _probability_rows(scores)
            if np.shape(labels) != (proba.shape[0],):
                raise ValueError(f"labels must be 1-D with one label per row, got shape {np.shape(labels)}")
            return attrs.evolve(self, class_calibration=_fit_classes(proba, labels))
        return attrs.evolve(self, calibration=Calibration.fit(_outputs_1d(scores), labels))

    # ----------------------------------------------------------------------- files

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, versioned: ``{"mlmon_reference": 1, ...}``."""
        return {
            "mlmon_reference": FORMAT_VERSION,
            "rows": self.rows,
            "features": [p.to_dict() for p in self.features],
            "outputs": None if self.outputs is None else self.outputs.to_dict(),
            **({} if self.calibration is None else {"calibration": self.calibration.to_dict()}),
            **(
                {}
                if self.class_calibration is None
                else {"class_calibration": [c.to_dict() for c in self.class_calibration]}
            ),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Reference:
        """Inverse of :meth:`to_dict`, checking everything :meth:`from_data` guarantees.

        Types are strict (a count is a JSON integer, an edge a finite number, no value is
        coerced); counts fit in int64 and add up (bins to the feature's count, every feature's
        rows to the reference's rows); edges are finite and increasing; at most
        :data:`MAX_BINS` bins (plus a point bin) and :data:`MAX_CATEGORIES` categories per
        feature; kinds are known; names follow :func:`check_feature_names`.

        Raises:
            ValueError: not an mlmon reference, an unsupported version, or a missing/invalid
                field; the message names the field (``features[2].counts[5]``) and the value.
        """
        if not isinstance(data, Mapping) or "mlmon_reference" not in data:
            raise ValueError("not an mlmon reference: the 'mlmon_reference' version key is missing")
        version = data["mlmon_reference"]
        if type(version) is not int or version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported mlmon reference version {_short(version)} (this mlmon reads "
                f"version {FORMAT_VERSION})"
            )
        top = _Fields(data, "reference")
        rows = top.count("rows")
        if rows == 0:
            raise ValueError("reference.rows must be >= 1, got 0")
        items = top.get("features")
        if not isinstance(items, list) or not items:
            raise top.fail("features", "a non-empty list", items)
        features: list[FeatureProfile] = []
        for i, f in enumerate(items):
            where = f"features[{i}]"
            kind = f.get("kind") if isinstance(f, Mapping) else None
            if kind == "numeric":
                features.append(NumericProfile.from_dict(f, where))
            elif kind == "categorical":
                features.append(CategoricalProfile.from_dict(f, where))
            else:
                raise ValueError(
                    f"{where}.kind must be 'numeric' or 'categorical', got {_short(kind)}"
                )
            if features[-1].rows != rows:
                raise ValueError(
                    f"{where}.rows must equal the reference rows ({rows}), got {features[-1].rows}"
                )
        out = data.get("outputs")
        outputs = None if out is None else NumericProfile.from_dict(out, "outputs")
        cal = data.get("calibration")
        calibration = None if cal is None else Calibration.from_dict(cal, "calibration")
        if calibration is not None and outputs is None:
            raise ValueError("reference.calibration needs reference.outputs (the scores it calibrates)")
        per_class = data.get("class_calibration")
        class_calibration = None
        if per_class is not None:
            if not isinstance(per_class, list) or not 2 <= len(per_class) <= MAX_CALIBRATED_CLASSES:
                raise ValueError(
                    f"reference.class_calibration must be a list of 2 to {MAX_CALIBRATED_CLASSES} "
                    f"calibrations, got {_short(per_class)}"
                )
            class_calibration = tuple(
                Calibration.from_dict(c, f"class_calibration[{i}]") for i, c in enumerate(per_class)
            )
        try:
            return cls(rows=rows, features=tuple(features), outputs=outputs, calibration=calibration,
                       class_calibration=class_calibration)  # fmt: skip
        except TypeError as e:  # a name that is not a string: check_feature_names
            raise ValueError(str(e)) from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the reference as JSON, atomically (a reader never sees half a file)."""
        atomic_write(path, json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":")))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES) -> Reference:
        """Read a file written by :meth:`save`.

        Args:
            path: the file.
            max_bytes: size limit (default :data:`MAX_FILE_BYTES`, 64 MiB; a reference of 100
                features with the maximum 10,000 bins each is about 20 MiB). Larger files are
                refused before they are parsed.

        Raises:
            OSError: the file cannot be read.
            ValueError: the file is larger than ``max_bytes``, not UTF-8, corrupt or truncated
                (invalid JSON, nested too deep), not an mlmon reference, of an unsupported
                version, or has a missing or invalid field (see :meth:`from_dict`); the message
                names the file and the problem.
        """
        if not (isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and max_bytes > 0):
            raise ValueError(f"max_bytes must be an int > 0, got {max_bytes!r}")
        name = os.fspath(path)
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # never more, whatever the file claims to be
        if len(raw) > max_bytes:
            raise ValueError(
                f"{name}: larger than max_bytes={max_bytes} bytes; a reference file is small "
                "(raise max_bytes= if this one is genuine)"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not UTF-8 text (corrupt file?): {e}") from None
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: not valid JSON (corrupt or truncated file?): {e}") from None
        except RecursionError:
            raise ValueError(f"{name}: not valid JSON (nested too deep)") from None
        except ValueError as e:  # NaN/Infinity, or an integer with too many digits
            raise ValueError(f"{name}: not valid JSON: {e}") from None
        try:
            return cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a number in a reference file")


def _outputs_1d(outputs: npt.ArrayLike) -> npt.NDArray[np.float64]:
    try:
        a = np.asarray(outputs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("outputs must be 1-D numeric scores") from None
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"outputs must be 1-D scores (one per row), got shape {a.shape}")
    if a.size == 0:
        raise ValueError("outputs has 0 values: give the reference scores or leave outputs=None")
    return a
