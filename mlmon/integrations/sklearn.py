"""scikit-learn: monitor a fitted estimator in one call.

:func:`monitor_estimator` infers the task from the estimator (two classes → binary, more →
multiclass, a regressor → regression), profiles the training data and the model's scores on it
as the drift :class:`~mlmon.Reference`, builds the :class:`~mlmon.Monitor` and returns a
:class:`MonitoredEstimator` whose ``predict``, ``predict_proba`` and ``decision_function`` are
tracked, with an optional ``ids=`` keyword for :meth:`~mlmon.Monitor.log_feedback`. Everything
else reads through to the estimator.

scikit-learn is imported only when an estimator is wrapped; any estimator that follows its API
(``classes_``, ``predict_proba``, ...) works.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from mlmon.integrations.sklearn import monitor_estimator
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 3)); y = np.where(X[:, 0] > 0, "spam", "ham")
>>> model = monitor_estimator(LogisticRegression().fit(X, y), X, y, name="doc_sklearn")
>>> model.task
BinaryClassification(threshold=0.5, positive='spam', negative='ham')
>>> scores = model.predict_proba(X[:4], ids=["a", "b", "c", "d"])   # tracked, ids for labels
>>> model.log_feedback(["a", "b", "c", "d"], y[:4])
>>> snap = model.monitor.snapshot()
>>> snap.get("mlmon_rows_total"), snap.get("mlmon_labels_total"), snap.get("mlmon_accuracy")
(4.0, 4.0, 1.0)
>>> model.coef_.shape                                                # the estimator's own
(1, 3)
>>> model.close()
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlmon.monitor import Monitor
from mlmon.reference import Reference
from mlmon.snapshot import Snapshot
from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression

__all__ = [
    "MonitoredEstimator",
    "estimator_quality",
    "estimator_reference",
    "infer_task",
    "monitor_estimator",
]

TRACKED_METHODS = ("predict", "predict_proba", "decision_function")
"""The prediction methods a :class:`MonitoredEstimator` tracks (when the estimator has them)."""


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
    return Reference.from_data(
        X,
        feature_names=_names(estimator, X, feature_names),
        categorical=categorical,
        outputs=plan.scores(estimator, X),
        bins=bins,
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


# --------------------------------------------------------------------------- the wrapper


class MonitoredEstimator:
    """A fitted estimator whose prediction methods are tracked by a monitor.

    ``predict``, ``predict_proba`` and ``decision_function`` (those the estimator has) take the
    estimator's arguments plus a keyword ``ids=`` (one id per row, for ``log_feedback``); the
    features ``X`` and the outputs are recorded as described in ``docs/integrations.md``. Any
    other attribute read goes to the estimator (``classes_``, ``coef_``, ``score``,
    ``get_params``, ...), untracked. Build one with :func:`monitor_estimator`, or directly
    around a monitor you configured (its task must fit the estimator).

    Not picklable: it holds a monitor (threads, sockets, files). Pickle ``.estimator`` and
    wrap it again after loading.

    Attributes:
        estimator: the wrapped estimator.
        monitor: the :class:`~mlmon.Monitor` recording the calls.
        task: the monitor's task.
        reference: the :class:`~mlmon.Reference` built from the training data, or None.
        reference_values: quality on ``(X_train, y_train)`` under mlmon's definitions, by
            metric name (``{"mlmon_precision": 0.91, ...}``; see :func:`estimator_quality`);
            empty without ``y_train``.
        score_method: the method whose return value gives the monitored scores.
    """

    def __init__(
        self,
        estimator: Any,
        monitor: Monitor,
        *,
        owns_monitor: bool = False,
        reference_values: dict[str, float] | None = None,
    ) -> None:
        if not isinstance(monitor, Monitor):
            raise TypeError(f"monitor must be an mlmon.Monitor, got {monitor!r}")
        _check_fitted(estimator)
        plan = _Plan(estimator, monitor.task)
        self.estimator = estimator
        self.monitor = monitor
        self.task = monitor.task
        self.reference = monitor.reference
        self.reference_values: dict[str, float] = dict(reference_values or {})
        self.score_method = {"proba": "predict_proba", "margin": "decision_function"}.get(plan.space, "predict")
        self._owns_monitor = owns_monitor
        self._methods: dict[str, Callable[..., Any]] = {}
        for method in TRACKED_METHODS:
            func = getattr(estimator, method, None)
            if callable(func):
                self._methods[method] = _tracked(monitor, func, method, plan.extract.get(method, True))
                # An instance attribute: hasattr(model, "predict_proba") stays what it is
                # for the estimator, which is how scikit-learn code decides what to call.
                self.__dict__[method] = self._methods[method]

    def log_feedback(self, ids: Any, labels: Any) -> None:
        """The monitor's :meth:`~mlmon.Monitor.log_feedback`: labels joined to predictions by id."""
        self.monitor.log_feedback(ids, labels)

    def snapshot(self) -> Snapshot:
        """The monitor's :meth:`~mlmon.Monitor.snapshot`."""
        return self.monitor.snapshot()

    def close(self) -> None:
        """Close the monitor if :func:`monitor_estimator` created it (a monitor you passed is yours)."""
        if self._owns_monitor:
            self.monitor.close()

    def __enter__(self) -> MonitoredEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: what the wrapper does not define is the estimator's.
        try:
            estimator = self.__dict__["estimator"]
        except KeyError:  # half-built (or being unpickled): no recursion into __getattr__
            raise AttributeError(name) from None
        return getattr(estimator, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.estimator)))

    def __getstate__(self) -> Any:
        raise TypeError(
            "a MonitoredEstimator holds a monitor (threads, sockets, files) and cannot be "
            "pickled: pickle .estimator instead and wrap it again after loading"
        )

    def __repr__(self) -> str:
        return f"MonitoredEstimator({self.estimator!r}, monitor={self.monitor!r})"


def _tracked(mon: Monitor, func: Callable[..., Any], method: str, extract: bool | Extract) -> Callable[..., Any]:
    def predict(X: Any, row: Any, ids: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return func(X, *args, **kwargs)

    tracked = mon.track(features="row", ids="ids", outputs=extract)(predict)
    if tracked is predict:  # a disabled monitor: no tracking at all

        def untracked(X: Any, *args: Any, ids: Any = None, **kwargs: Any) -> Any:
            return func(X, *args, **kwargs)

        call = untracked
    else:
        ndarray = np.ndarray

        def tracked_call(X: Any, *args: Any, ids: Any = None, **kwargs: Any) -> Any:
            # A single-row request is recorded as a 1-D row, which the monitor stacks with
            # the others at drain time instead of reducing a (1, n) block per call.
            row = X[0] if X.__class__ is ndarray and X.ndim == 2 and X.shape[0] == 1 else X
            return tracked(X, row, ids, args, kwargs)

        call = tracked_call
    call.__name__ = method
    call.__qualname__ = f"MonitoredEstimator.{method}"
    call.__doc__ = (
        f"The estimator's {method}(X), tracked by mlmon; ``ids=`` gives one prediction id per "
        f"row for log_feedback.\n\n{func.__doc__ or ''}"
    )
    return call


def monitor_estimator(
    estimator: Any,
    X_train: Any = None,
    y_train: Any = None,
    *,
    name: str | None = None,
    monitor: Monitor | None = None,
    task: Any = INFER,
    feature_names: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    **monitor_kwargs: Any,
) -> MonitoredEstimator:
    """Wrap a fitted estimator so its predictions are monitored.

    Args:
        estimator: a fitted scikit-learn classifier or regressor (or anything with its API).
        X_train: training (or validation) features: the drift reference is built from them and
            from the estimator's scores on them.
        y_train: their labels: the estimator's quality on them under mlmon's definitions
            becomes :attr:`MonitoredEstimator.reference_values`. Prefer held-out data:
            training-set quality is optimistic. Needs ``X_train``.
        name: the monitor's model name (required unless ``monitor`` is given).
        monitor: an existing monitor to record into instead (its task must fit the estimator);
            then give none of ``name``, ``X_train``, ``task``, names or Monitor arguments.
        task: the default infers it (:func:`infer_task`); give a ``BinaryClassification``
            with your own ``threshold`` or ``positive``, a ``MulticlassClassification`` with
            the estimator's classes in order, ``Regression()``, or None for no quality metrics.
        feature_names: names of the columns of ``X`` (default: ``X_train``'s columns, else the
            estimator's ``feature_names_in_``, else ``f0, f1, ...``).
        categorical: names of the categorical features.
        **monitor_kwargs: any other :class:`~mlmon.Monitor` argument (``version``,
            ``emitters``, ``window``, ``latency_budget``, ``rules``, ...).

    Returns:
        A :class:`MonitoredEstimator`; its ``close()`` closes the monitor made here.

    Raises:
        TypeError: not an estimator, or a multi-output one.
        ValueError: not fitted, a task that does not fit it, conflicting arguments, or any
            :class:`~mlmon.Monitor` / :meth:`~mlmon.Reference.from_data` configuration error.
    """
    if monitor is not None:
        given = [
            k
            for k, v in (("name", name), ("X_train", X_train), ("y_train", y_train),
                         ("feature_names", feature_names), ("categorical", categorical))
            if v is not None
        ] + (["task"] if task is not INFER else []) + sorted(monitor_kwargs)  # fmt: skip
        if given:
            raise ValueError(
                f"monitor_estimator(monitor=...) records into a monitor you configured: do not "
                f"also give {', '.join(given)} (build its reference with estimator_reference())"
            )
        return MonitoredEstimator(estimator, monitor)
    if name is None:
        raise ValueError("monitor_estimator needs name= (the model name) or monitor=")
    if y_train is not None and X_train is None:
        raise ValueError("y_train needs X_train (the features it labels)")
    if X_train is not None and monitor_kwargs.get("reference") is not None:
        raise ValueError("give X_train (a reference is built from it) or reference=, not both")
    _check_fitted(estimator)
    resolved = infer_task(estimator) if task is INFER else task
    plan = _Plan(estimator, resolved)  # checks that the task fits before anything is built
    reference = monitor_kwargs.pop("reference", None)
    if X_train is not None:
        reference = estimator_reference(estimator, X_train, feature_names, categorical, task=resolved)
    values = _quality_on(plan, estimator, X_train, y_train) if y_train is not None else {}
    if reference is None:
        monitor_kwargs.setdefault("feature_names", _names(estimator, None, feature_names))
        monitor_kwargs.setdefault("categorical", tuple(categorical or ()))
    mon = Monitor(name, task=resolved, reference=reference, **monitor_kwargs)
    try:
        return MonitoredEstimator(estimator, mon, owns_monitor=True, reference_values=values)
    except BaseException:
        mon.close()
        raise
