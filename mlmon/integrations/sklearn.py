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

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlmon.integrations._sklearn_tasks import INFER as INFER
from mlmon.integrations._sklearn_tasks import Extract as Extract
from mlmon.integrations._sklearn_tasks import (
    _check_fitted,
    _names,
    _Plan,
    _quality_on,
    estimator_quality,
    estimator_reference,
    infer_task,
)
from mlmon.monitor import Monitor
from mlmon.reference import Reference
from mlmon.segments import by_feature
from mlmon.snapshot import Snapshot
from mlmon.tasks import BinaryClassification, MulticlassClassification

__all__ = [
    "MonitoredEstimator",
    "estimator_quality",
    "estimator_reference",
    "infer_task",
    "monitor_estimator",
]

log = logging.getLogger("mlmon")

TRACKED_METHODS = ("predict", "predict_proba", "decision_function")
"""The prediction methods a :class:`MonitoredEstimator` tracks (when the estimator has them)."""


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
        segment: str | None = None,
    ) -> None:
        if segment is not None and (not isinstance(segment, str) or not segment):
            raise ValueError(f"segment must be the name of a feature column, got {segment!r}")
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
                self._methods[method] = _tracked(monitor, func, method, plan.extract.get(method, True), segment)
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


def _tracked(
    mon: Monitor, func: Callable[..., Any], method: str, extract: bool | Extract, segment: str | None = None
) -> Callable[..., Any]:
    def predict(X: Any, row: Any, ids: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return func(X, *args, **kwargs)

    if segment is not None:
        tracked = mon.track(features="row", ids="ids", outputs=extract, segment=by_feature(segment))(predict)
    else:
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
    segment: str | None = None,
    **monitor_kwargs: Any,
) -> MonitoredEstimator:
    """Wrap a fitted estimator so its predictions are monitored.

    Args:
        estimator: a fitted scikit-learn classifier or regressor (or anything with its API).
        X_train: training (or validation) features: the drift reference is built from them and
            from the estimator's scores on them.
        y_train: their labels: the estimator's quality on them under mlmon's definitions
            becomes :attr:`MonitoredEstimator.reference_values`, and for a binary classifier
            the reference's :class:`~mlmon.reference.Calibration` of the scores (from which
            ``mlmon_estimated_*`` are computed before labels arrive; for a multiclass
            classifier with ``predict_proba``, one calibration per class). Prefer held-out data:
            training-set quality is optimistic and training scores are overconfident. When the
            labels cannot calibrate (fewer than 100 of either class, NaN or constant scores) a
            warning gives the reason and the estimate uses the raw scores. Needs ``X_train``.
        name: the monitor's model name (required unless ``monitor`` is given).
        monitor: an existing monitor to record into instead (its task must fit the estimator);
            then give none of ``name``, ``X_train``, ``task``, names or Monitor arguments.
        task: the default infers it (:func:`infer_task`); give a ``BinaryClassification``
            with your own ``threshold`` or ``positive``, a ``MulticlassClassification`` with
            the estimator's classes in order, ``Regression()``, or None for no quality metrics.
        feature_names: names of the columns of ``X`` (default: ``X_train``'s columns, else the
            estimator's ``feature_names_in_``, else ``f0, f1, ...``).
        categorical: names of the categorical features.
        segment: the name of a feature column whose value is each row's segment
            (docs/segments.md): predictions are monitored per segment too, and the reference
            built from ``X_train`` keeps a profile per segment with enough rows.
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
        return MonitoredEstimator(estimator, monitor, segment=segment)
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
        reference = estimator_reference(estimator, X_train, feature_names, categorical, task=resolved, segment=segment)
    values = _quality_on(plan, estimator, X_train, y_train) if y_train is not None else {}
    if y_train is not None and reference is not None:
        reference = _calibrated(reference, plan, estimator, X_train, y_train, name)
    if reference is None:
        monitor_kwargs.setdefault("feature_names", _names(estimator, None, feature_names))
        monitor_kwargs.setdefault("categorical", tuple(categorical or ()))
    mon = Monitor(name, task=resolved, reference=reference, **monitor_kwargs)
    try:
        return MonitoredEstimator(estimator, mon, owns_monitor=True, reference_values=values, segment=segment)
    except BaseException:
        mon.close()
        raise


def _calibrated(reference: Reference, plan: _Plan, estimator: Any, X: Any, y: Any, name: str) -> Reference:
    """The reference with a calibration of a classifier's scores on ``(X, y)`` (binary: its
    monitored scores; multiclass: its ``predict_proba`` rows, one calibration per class);
    unchanged (with a warning giving the reason) when they cannot calibrate, or for other tasks."""
    task = plan.task
    y_arr = np.asarray(y)
    try:
        if isinstance(task, MulticlassClassification) and plan.space == "proba":
            # One calibration per class of its predict_proba column (the task's classes, in order).
            proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
            index = {c: i for i, c in enumerate(plan.classes)}
            codes = np.array([index.get(v, -1) for v in y_arr.tolist()], dtype=np.int64)
            known = codes >= 0
            return reference.with_calibration(proba[known], codes[known])
        if not isinstance(task, BinaryClassification):
            return reference
        scores = plan.scores(estimator, X)
        if scores is None:
            return reference
        positive = y_arr == task.positive
        keep = positive | (y_arr == task.negative) if task.negative is not None else np.ones(y_arr.shape, np.bool_)
        return reference.with_calibration(scores[keep], positive[keep])
    except ValueError as e:
        log.warning(
            "mlmon %s: y_train cannot calibrate the scores (%s): estimated metrics use the raw "
            "scores as probabilities",
            name, e,
        )  # fmt: skip
        return reference
