"""scikit-learn: the estimator facts, the inferred task, the monitored scores, the reference and
the quality baseline.

Used by :mod:`mlmon.integrations.sklearn`, which re-exports the public names; import them from
there. scikit-learn is imported only when an estimator is examined.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlmon.reference import Reference
from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression

__all__ = ["INFER", "Extract", "estimator_quality", "estimator_reference", "infer_task"]


class _Infer:
    def __repr__(self) -> str:
        return "'infer'"


INFER: Any = _Infer()
"""The default ``task``: inferred from the estimator (see :func:`infer_task`)."""

Extract = Callable[[Any], Any]


# --------------------------------------------------------------------------- estimator facts


def _sklearn_base() -> Any:
    try:
        return importlib.import_module("sklearn.base")
    except ImportError:  # an estimator that follows the API without scikit-learn itself
        return None


def _check_fitted(estimator: Any) -> None:
    if not callable(getattr(estimator, "predict", None)):
        raise TypeError(
            f"estimator must have a predict() method (a scikit-learn estimator), got {estimator!r}"
        )
    try:
        validation = importlib.import_module("sklearn.utils.validation")
        not_fitted = importlib.import_module("sklearn.exceptions").NotFittedError
    except ImportError:
        return
    try:
        validation.check_is_fitted(estimator)
    except not_fitted as exc:
        raise ValueError(f"estimator must be fitted before it is monitored: {exc}") from exc
    except TypeError:
        pass  # not a scikit-learn estimator (no fit()), but a model with its predict API


def _is_classifier(estimator: Any) -> bool:
    base = _sklearn_base()
    if base is not None:
        try:
            if base.is_classifier(estimator):
                return True
            if base.is_regressor(estimator):
                return False
        except (AttributeError, TypeError):
            pass  # no scikit-learn tags: a model that only follows the API
    return hasattr(estimator, "classes_")


def _classes(estimator: Any) -> tuple[Any, ...]:
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise TypeError(f"classifier {estimator!r} has no classes_: is it fitted?")
    arr = np.asarray(classes, dtype=object) if isinstance(classes, list) else np.asarray(classes)
    if arr.ndim != 1:
        raise TypeError(
            f"multi-output classifiers are not supported (classes_ of {estimator!r} is not 1-D)"
        )
    return tuple(c.item() if isinstance(c, np.generic) else c for c in arr)


def _space(estimator: Any) -> str:
    """Which method gives the monitored scores: probabilities, margins, or only labels."""
    if callable(getattr(estimator, "predict_proba", None)):
        return "proba"
    if callable(getattr(estimator, "decision_function", None)):
        return "margin"
    return "labels"


def infer_task(estimator: Any) -> BinaryClassification | MulticlassClassification | Regression:
    """The mlmon task for a fitted estimator.

    A classifier with two classes gives ``BinaryClassification(positive=classes_[1],
    negative=classes_[0])`` (scikit-learn's positive class), with ``threshold=0.5`` on
    ``predict_proba`` scores, or ``0.0`` on ``decision_function`` margins when the estimator
    has no probabilities; more classes give ``MulticlassClassification(classes=classes_)``;
    a regressor gives ``Regression()``.

    Raises:
        TypeError: not an estimator with ``predict``, or a multi-output classifier.
        ValueError: the estimator is not fitted.

    >>> from sklearn.linear_model import LinearRegression, RidgeClassifier
    >>> infer_task(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]))
    Regression()
    >>> infer_task(RidgeClassifier().fit([[0.0], [1.0]], [3, 7]))
    BinaryClassification(threshold=0.0, positive=7, negative=3)
    """
    _check_fitted(estimator)
    if not _is_classifier(estimator):
        return Regression()
    classes = _classes(estimator)
    if len(classes) == 2:
        threshold = 0.0 if _space(estimator) == "margin" else 0.5
        return BinaryClassification(threshold=threshold, positive=classes[1], negative=classes[0])
    return MulticlassClassification(classes=classes)


# --------------------------------------------------------------------------- the plan


class _Plan:
    """How each prediction method's return value becomes the monitor's outputs.

    Decided once, when the estimator is wrapped: ``extract[method]`` is True (record the return
    value as it is), False (record no outputs) or a function of the return value.
    """

    def __init__(self, estimator: Any, task: Any) -> None:
        self.classifier = _is_classifier(estimator)
        self.space = _space(estimator) if self.classifier else "values"
        self.task = task
        self.classes: tuple[Any, ...] = _classes(estimator) if self.classifier else ()
        self.pos = 1
        self.binary = False
        self.threshold = 0.5
        self.hard = (0.0, 1.0)  # binary: the scores recorded for predicted negative / positive
        self.extract: dict[str, bool | Extract] = {}
        if not self.classifier:
            self._regressor(estimator)
        elif len(self.classes) == 2 and not isinstance(task, MulticlassClassification):
            self._binary(estimator)
        else:
            self._multiclass(estimator)

    def _regressor(self, estimator: Any) -> None:
        if self.task is not None and not isinstance(self.task, Regression):
            raise ValueError(f"task {self.task!r} does not fit the regressor {estimator!r}: use Regression()")
        self.extract["predict"] = _single

    def _binary(self, estimator: Any) -> None:
        task, classes = self.task, self.classes
        self.binary = True
        if isinstance(task, Regression):
            raise ValueError(f"task {task!r} does not fit the classifier {estimator!r}")
        if isinstance(task, BinaryClassification):
            hits = [i for i, c in enumerate(classes) if c == task.positive]
            if not hits:
                raise ValueError(
                    f"task.positive={task.positive!r} is not one of the estimator's classes_ {list(classes)!r}"
                )
            self.pos = hits[0]
            other = classes[1 - self.pos]
            if task.negative is not None and task.negative != other:
                raise ValueError(
                    f"task.negative={task.negative!r} is not the estimator's other class {other!r}"
                )
            threshold = float(task.threshold)
        else:
            threshold = 0.0 if self.space == "margin" else 0.5
        pos, space, positive = self.pos, self.space, classes[self.pos]
        # predict() and (for probabilistic models) decision_function() give the estimator's own
        # decision, recorded as a hard score on the right side of the threshold.
        hi = max(1.0, threshold)
        lo = min(-1.0 if space == "margin" else 0.0, threshold - 1.0)

        def proba_score(p: Any) -> Any:
            return _single(np.asarray(p)[:, pos])

        def margin_score(m: Any) -> Any:
            m = _column(m)
            return _single(m if pos == 1 else -m)

        def margin_decision(m: Any) -> Any:
            return _single(np.where((_column(m) > 0) == (pos == 1), hi, lo))

        def label_decision(y: Any) -> Any:
            return _single(np.where(np.asarray(y) == positive, hi, lo))

        untasked = task is None
        self.extract["predict"] = False if untasked else label_decision
        self.extract["predict_proba"] = proba_score
        if space == "margin":
            self.extract["decision_function"] = margin_score
        else:
            self.extract["decision_function"] = False if untasked else margin_decision
        self.threshold = threshold
        self.hard = (lo, hi)

    def _multiclass(self, estimator: Any) -> None:
        task, classes = self.task, self.classes
        if isinstance(task, (Regression, BinaryClassification)):
            raise ValueError(
                f"task {task!r} does not fit the classifier {estimator!r} with classes {list(classes)!r}"
            )
        if task is not None and tuple(task.classes) != classes:
            raise ValueError(
                f"task.classes {list(task.classes)!r} must be the estimator's classes_ "
                f"{list(classes)!r}, in that order (the column order of predict_proba)"
            )
        labels = np.asarray(classes, dtype=object)

        def top_probability(p: Any) -> Any:
            return np.asarray(p).max(axis=1)

        def decision_labels(m: Any) -> Any:
            m = np.asarray(m)
            if m.ndim == 1:  # two classes: the margin of classes_[1]
                return _single(labels[(m > 0).astype(np.intp)])
            if m.ndim == 2 and m.shape[1] == len(classes):
                return _single(labels[np.argmax(m, axis=1)])
            return None  # one-vs-one shapes: no prediction to record

        untasked = task is None
        self.extract["predict"] = False if untasked else _single
        self.extract["predict_proba"] = top_probability if untasked else True
        self.extract["decision_function"] = False if untasked else decision_labels

    # -- scores on a whole data set (reference, baselines) ---------------------------------

    def scores(self, estimator: Any, X: Any) -> np.ndarray[Any, Any] | None:
        """1-D scores on ``X`` as the monitor sees them, or None when the model gives none."""
        if not self.classifier:
            return np.asarray(estimator.predict(X), dtype=np.float64).reshape(-1)
        if self.binary:
            if self.space == "proba":
                return np.asarray(estimator.predict_proba(X), dtype=np.float64)[:, self.pos]
            if self.space == "margin":
                m = np.asarray(_column(estimator.decision_function(X)), dtype=np.float64)
                return m if self.pos == 1 else -m
            lo, hi = self.hard
            hits = np.asarray(estimator.predict(X)) == self.classes[self.pos]
            return np.where(hits, hi, lo).astype(np.float64)
        if self.space == "proba":
            proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
            top: np.ndarray[Any, Any] = proba.max(axis=1)
            return top
        return None


def _single(a: Any) -> Any:
    # One prediction as a Python scalar: the monitor reduces those far more cheaply than
    # one-element arrays (a single-row request then costs about half as much to monitor).
    return a.item() if a.__class__ is np.ndarray and a.shape == (1,) else a


def _column(m: Any) -> Any:
    m = np.asarray(m)
    return m[:, 0] if m.ndim == 2 and m.shape[1] == 1 else m


# --------------------------------------------------------------------------- reference


def _has_column_names(X: Any) -> bool:
    return isinstance(X, dict) or hasattr(X, "columns")


def _names(estimator: Any, X: Any, feature_names: Sequence[str] | None) -> list[str] | None:
    if feature_names is not None:
        return [str(n) for n in feature_names]
    if X is not None and _has_column_names(X):
        return None  # the DataFrame's (or dict's) own names
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def estimator_reference(
    estimator: Any,
    X: Any,
    feature_names: Sequence[str] | None = None,
    categorical: Sequence[str | int] | None = None,
    *,
    task: Any = INFER,
    bins: int = 10,
    segment: str | None = None,
    min_segment_rows: int = 1000,
) -> Reference:
    """A drift :class:`~mlmon.Reference` of ``X`` and of the estimator's scores on it.

    The scores are what a :class:`MonitoredEstimator` records: ``predict_proba[:, positive]``
    for a binary classifier (signed margins when it has no probabilities), the top probability
    for a multiclass one (none when it has no probabilities), the prediction for a regressor.
    Feature names default to ``X``'s columns, else the estimator's ``feature_names_in_``.

    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> ref = estimator_reference(LinearRegression().fit(X, X[:, 0]), X, ["a", "b"])
    >>> ref.feature_names, round(ref.outputs.mean, 6)
    (('a', 'b'), 9.0)
    """
    _check_fitted(estimator)
    plan = _Plan(estimator, infer_task(estimator) if task is INFER else task)
    names = _names(estimator, X, feature_names)
    if segment is not None and names is None and _has_column_names(X):
        # The segment column is one of the model's features: it stays a feature of the reference.
        names = [str(c) for c in (X.columns if hasattr(X, "columns") else X.keys())]
    return Reference.from_data(
        X,
        feature_names=names,
        categorical=categorical,
        outputs=plan.scores(estimator, X),
        bins=bins,
        segment=segment,
        min_segment_rows=min_segment_rows,
    )


def estimator_quality(estimator: Any, X: Any, y: Any, *, task: Any = INFER) -> dict[str, float]:
    """The estimator's quality on ``(X, y)`` as the monitor would compute it, by metric name.

    Binary: ``mlmon_precision``, ``_recall``, ``_f1`` and ``_accuracy`` with the task's
    threshold on the monitored scores; multiclass: ``mlmon_accuracy``; regression:
    ``mlmon_mae``, ``_rmse`` and ``_mean_error``. A metric whose denominator is 0 is left out.
    Use held-out data: it is the baseline that production quality is compared with, e.g.
    ``alerts.PercentDrop("mlmon_precision", percent=10, baseline=quality["mlmon_precision"])``.

    Raises:
        ValueError: ``y`` is not 1-D with one label per row of ``X``, or the task does not fit.

    >>> from sklearn.linear_model import LinearRegression
    >>> X, y = [[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0]
    >>> estimator_quality(LinearRegression().fit(X, y), X, [0.0, 1.0, 3.0])
    {'mlmon_mae': 0.333..., 'mlmon_rmse': 0.577..., 'mlmon_mean_error': -0.333...}
    """
    _check_fitted(estimator)
    return _quality_on(_Plan(estimator, infer_task(estimator) if task is INFER else task), estimator, X, y)


def _quality_on(plan: _Plan, estimator: Any, X: Any, y: Any) -> dict[str, float]:
    """Quality of the estimator on ``(X, y)`` under the monitor's definitions (docs/quality.md)."""
    task = plan.task
    y_arr = np.asarray(y)
    if y_arr.ndim != 1 or len(y_arr) != _length(X):
        raise ValueError(f"y_train must be 1-D with one label per row of X_train, got shape {y_arr.shape}")
    out: dict[str, float] = {}
    if isinstance(task, Regression):
        pred = np.asarray(estimator.predict(X), dtype=np.float64).reshape(-1)
        truth = y_arr.astype(np.float64)
        ok = np.isfinite(pred) & np.isfinite(truth)
        if ok.any():
            err = pred[ok] - truth[ok]
            out["mlmon_mae"] = float(np.mean(np.abs(err)))
            out["mlmon_rmse"] = float(math.sqrt(np.mean(err * err)))
            out["mlmon_mean_error"] = float(np.mean(err))
        return out
    if isinstance(task, BinaryClassification):
        scores = plan.scores(estimator, X)
        assert scores is not None
        positive = y_arr == task.positive
        valid = np.isfinite(scores)
        if task.negative is not None:
            valid &= positive | (y_arr == task.negative)
        predicted = scores >= task.threshold
        tp = int(np.sum(predicted & positive & valid))
        fp = int(np.sum(predicted & ~positive & valid))
        fn = int(np.sum(~predicted & positive & valid))
        n = int(np.sum(valid))
        if n:
            out["mlmon_accuracy"] = (n - fp - fn) / n
        if tp + fp:
            out["mlmon_precision"] = tp / (tp + fp)
        if tp + fn:
            out["mlmon_recall"] = tp / (tp + fn)
        if tp + fp + fn:
            out["mlmon_f1"] = 2 * tp / (2 * tp + fp + fn)
        return out
    if isinstance(task, MulticlassClassification):
        if plan.space == "proba":
            pred = np.asarray(plan.classes, dtype=object)[np.argmax(estimator.predict_proba(X), axis=1)]
        else:
            pred = np.asarray(estimator.predict(X), dtype=object)
        known = np.array([v in task.classes for v in y_arr.tolist()], dtype=bool)
        if known.any():
            hits = [a == b for a, b in zip(pred[known].tolist(), y_arr[known].tolist(), strict=True)]
            out["mlmon_accuracy"] = float(np.mean(hits))
    return out


def _length(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    if isinstance(X, dict):
        return len(next(iter(X.values()))) if X else 0
    return len(X)
