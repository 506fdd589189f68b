"""monitor_estimator: real scikit-learn models, checked against scikit-learn's own metrics."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_iris, make_classification, make_regression  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import mlmon  # noqa: E402
from mlmon.integrations.sklearn import (  # noqa: E402
    MonitoredEstimator,
    estimator_quality,
    estimator_reference,
    infer_task,
    monitor_estimator,
)


@pytest.fixture
def binary_data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=3000, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    return X, np.where(y == 1, "fraud", "ok")


@pytest.fixture
def binary(binary_data: tuple[np.ndarray, np.ndarray]) -> Iterator[MonitoredEstimator]:
    X, y = binary_data
    model = monitor_estimator(LogisticRegression().fit(X[:2000], y[:2000]), X[:2000], y[:2000], name="sk_binary")
    yield model
    model.close()


# --------------------------------------------------------------------------- task inference


def test_a_two_class_classifier_is_binary_with_sklearns_positive_class(binary: MonitoredEstimator) -> None:
    assert mlmon.BinaryClassification(threshold=0.5, positive="ok", negative="fraud") == binary.task
    assert "predict_proba" == binary.score_method


def test_a_three_class_classifier_is_multiclass_in_classes_order() -> None:
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    task = infer_task(LogisticRegression(max_iter=500).fit(X, names))
    assert mlmon.MulticlassClassification(classes=["setosa", "versicolor", "virginica"]) == task


def test_a_regressor_is_regression() -> None:
    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    assert mlmon.Regression() == infer_task(Ridge().fit(X, y))


def test_a_classifier_without_probabilities_is_thresholded_at_zero_on_margins() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=1)
    assert mlmon.BinaryClassification(threshold=0.0, positive=1, negative=0) == infer_task(RidgeClassifier().fit(X, y))


def test_an_unfitted_estimator_is_refused() -> None:
    with pytest.raises(ValueError, match="fitted"):
        monitor_estimator(LogisticRegression(), name="sk_unfitted")


def test_something_that_is_no_estimator_is_refused() -> None:
    with pytest.raises(TypeError, match="predict"):
        monitor_estimator(object(), name="sk_object")


# --------------------------------------------------------------------------- binary


def test_predict_proba_returns_the_estimators_result_and_records_calls_and_rows(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = binary_data
    expected = binary.estimator.predict_proba(X[2000:2010])
    actual = binary.predict_proba(X[2000:2010])
    np.testing.assert_array_equal(expected, actual)
    for row in X[2010:2015]:
        binary.predict_proba(row.reshape(1, -1))
    snap = binary.snapshot()
    assert (6.0, 15.0) == (snap.get("mlmon_calls_total"), snap.get("mlmon_rows_total"))


def test_binary_output_statistics_are_the_positive_class_probabilities(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = binary_data
    scores = binary.predict_proba(X[2000:])[:, 1]
    snap = binary.snapshot()
    assert snap.get("mlmon_output_mean") == pytest.approx(scores.mean(), rel=1e-9)
    assert snap.get("mlmon_output_variance") == pytest.approx(scores.var(), rel=1e-9)
    assert snap.get("mlmon_output_class_ratio", **{"class": "ok"}) == pytest.approx(np.mean(scores >= 0.5))


def test_binary_quality_after_log_feedback_matches_sklearn(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = binary_data
    ids = [f"r{i}" for i in range(1000)]
    binary.predict_proba(X[2000:], ids=ids)
    predicted = binary.estimator.predict(X[2000:])
    binary.log_feedback(ids[:600], y[2000:2600])  # only some labels come back
    snap = binary.snapshot()
    truth, pred = y[2000:2600], predicted[:600]
    assert 600.0 == snap.get("mlmon_labels_total")
    assert snap.get("mlmon_precision") == pytest.approx(precision_score(truth, pred, pos_label="ok"))
    assert snap.get("mlmon_recall") == pytest.approx(recall_score(truth, pred, pos_label="ok"))
    assert snap.get("mlmon_f1") == pytest.approx(f1_score(truth, pred, pos_label="ok"))
    assert snap.get("mlmon_accuracy") == pytest.approx(accuracy_score(truth, pred))
    assert snap.get("mlmon_label_coverage_ratio") == pytest.approx(0.6)


def test_predict_records_the_estimators_decisions(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = binary_data
    ids = list(range(1000))
    labels = binary.predict(X[2000:], ids=ids)
    binary.log_feedback(ids, y[2000:])
    snap = binary.snapshot()
    assert snap.get("mlmon_output_class_ratio", **{"class": "ok"}) == pytest.approx(np.mean(labels == "ok"))
    assert snap.get("mlmon_precision") == pytest.approx(precision_score(y[2000:], labels, pos_label="ok"))


def test_labels_without_ids_at_predict_time_are_unmatched(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = binary_data
    binary.predict_proba(X[:5])
    binary.log_feedback(["a", "b"], y[:2])
    snap = binary.snapshot()
    assert (0.0, 2.0) == (snap.get("mlmon_labels_total"), snap.get("mlmon_labels_unmatched_total"))


def test_the_reference_holds_the_training_scores(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = binary_data
    train_scores = binary.estimator.predict_proba(X[:2000])[:, 1]
    assert binary.reference is not None
    assert ("f0", "f1", "f2", "f3") == binary.reference.feature_names
    assert binary.reference.outputs.mean == pytest.approx(train_scores.mean())
    assert binary.reference.outputs.count == 2000


def test_no_drift_on_data_like_the_training_data(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = binary_data
    binary.predict_proba(X[2000:])
    snap = binary.snapshot()
    for f in ("f0", "f1", "f2", "f3"):
        assert 0 == snap.get("mlmon_feature_drift_status", feature=f), f
    assert snap.get("mlmon_output_drift_psi") < 0.1


def test_a_shifted_feature_drifts_and_moves_the_outputs(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = binary_data
    shifted = X[2000:].copy()
    shifted[:, 1] += 2 * X[:, 1].std()
    binary.predict_proba(shifted)
    snap = binary.snapshot()
    assert 2 == snap.get("mlmon_feature_drift_status", feature="f1")
    assert snap.get("mlmon_feature_drift_psi", feature="f1") > 0.2
    assert 0 == snap.get("mlmon_feature_drift_status", feature="f0")


def test_reference_values_are_the_training_quality(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = binary_data
    pred = binary.estimator.predict(X[:2000])
    expected = {
        "mlmon_precision": precision_score(y[:2000], pred, pos_label="ok"),
        "mlmon_recall": recall_score(y[:2000], pred, pos_label="ok"),
        "mlmon_f1": f1_score(y[:2000], pred, pos_label="ok"),
        "mlmon_accuracy": accuracy_score(y[:2000], pred),
    }
    assert expected == pytest.approx(binary.reference_values)


def test_a_users_threshold_and_positive_class_are_honoured(binary_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = binary_data
    clf = LogisticRegression().fit(X[:2000], y[:2000])
    task = mlmon.BinaryClassification(threshold=0.3, positive="fraud")
    with monitor_estimator(clf, name="sk_threshold", task=task) as model:
        ids = list(range(1000))
        scores = model.predict_proba(X[2000:], ids=ids)[:, 0]  # column of "fraud"
        model.log_feedback(ids, y[2000:])
        snap = model.snapshot()
    assert snap.get("mlmon_output_mean") == pytest.approx(scores.mean())
    pred = np.where(scores >= 0.3, "fraud", "ok")
    assert snap.get("mlmon_precision") == pytest.approx(precision_score(y[2000:], pred, pos_label="fraud"))


def test_margins_are_the_scores_of_a_model_without_probabilities() -> None:
    X, y = make_classification(n_samples=1000, n_features=4, random_state=2)
    clf = RidgeClassifier().fit(X, y)
    with monitor_estimator(clf, X, name="sk_margin") as model:
        ids = list(range(1000))
        margins = model.decision_function(X, ids=ids)
        model.predict(X[:10])
        model.log_feedback(ids, y)
        snap = model.snapshot()
    assert "decision_function" == model.score_method
    assert snap.get("mlmon_calls_total") == 2.0
    assert snap.get("mlmon_precision") == pytest.approx(precision_score(y, clf.predict(X)))
    assert model.reference is not None
    assert model.reference.outputs.mean == pytest.approx(margins.mean())


# --------------------------------------------------------------------------- multiclass


@pytest.fixture
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    return X[order], np.array(["setosa", "versicolor", "virginica"])[y[order]]


def test_multiclass_probability_rows_give_class_ratios_and_top_probabilities(
    iris: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=1000).fit(X[:100], y[:100])
    with monitor_estimator(clf, X[:100], y[:100], name="sk_multi") as model:
        proba = model.predict_proba(X[100:], ids=list(range(50)))
        model.log_feedback(list(range(50)), y[100:])
        snap = model.snapshot()
    pred = clf.classes_[np.argmax(proba, axis=1)]
    for c in clf.classes_:
        assert snap.get("mlmon_output_class_ratio", **{"class": c}) == pytest.approx(np.mean(pred == c))
    assert snap.get("mlmon_output_mean") == pytest.approx(proba.max(axis=1).mean())
    assert snap.get("mlmon_accuracy") == pytest.approx(accuracy_score(y[100:], pred))
    macro = precision_score(y[100:], pred, average="macro", zero_division=np.nan)
    assert snap.get("mlmon_precision", average="macro") == pytest.approx(macro)
    for c in clf.classes_:
        per_class = recall_score(y[100:], pred, labels=[c], average="macro", zero_division=np.nan)
        assert snap.get("mlmon_recall", **{"class": c}) == pytest.approx(per_class)
    assert {"mlmon_accuracy": accuracy_score(y[:100], clf.predict(X[:100]))} == pytest.approx(
        model.reference_values
    )


def test_multiclass_predict_records_labels(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    with monitor_estimator(clf, name="sk_multi_labels") as model:
        labels = model.predict(X)
        snap = model.snapshot()
    assert snap.get("mlmon_output_class_ratio", **{"class": "setosa"}) == pytest.approx(np.mean(labels == "setosa"))
    assert 0.0 == snap.get("mlmon_output_invalid_total")


def test_a_multiclass_task_in_another_order_is_refused(iris: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    task = mlmon.MulticlassClassification(classes=["virginica", "setosa", "versicolor"])
    with pytest.raises(ValueError, match="in that order"):
        monitor_estimator(clf, name="sk_order", task=task)


# --------------------------------------------------------------------------- regression


def test_regression_outputs_and_errors_match_sklearn() -> None:
    X, y = make_regression(n_samples=1500, n_features=3, noise=5.0, random_state=0)
    reg = Ridge().fit(X[:1000], y[:1000])
    with monitor_estimator(reg, X[:1000], y[:1000], name="sk_regression", version="7") as model:
        ids = np.arange(500)
        pred = model.predict(X[1000:], ids=ids)
        model.log_feedback(ids, y[1000:])
        snap = model.snapshot()
    assert (1.0, 500.0) == (snap.get("mlmon_calls_total"), snap.get("mlmon_rows_total"))
    assert snap.get("mlmon_output_mean") == pytest.approx(pred.mean())
    assert snap.get("mlmon_mae") == pytest.approx(mean_absolute_error(y[1000:], pred))
    assert snap.get("mlmon_rmse") == pytest.approx(math.sqrt(mean_squared_error(y[1000:], pred)))
    assert model.reference_values["mlmon_mae"] == pytest.approx(mean_absolute_error(y[:1000], reg.predict(X[:1000])))
    assert not hasattr(model, "predict_proba")


def test_a_classification_task_for_a_regressor_is_refused() -> None:
    X, y = make_regression(n_samples=20, n_features=2, random_state=0)
    with pytest.raises(ValueError, match="does not fit"):
        monitor_estimator(Ridge().fit(X, y), name="sk_mismatch", task=mlmon.BinaryClassification())


# --------------------------------------------------------------------------- the wrapper


def test_everything_else_reads_through_to_the_estimator(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = binary_data
    assert binary.coef_ is binary.estimator.coef_
    assert ["fraud", "ok"] == list(binary.classes_)
    assert binary.score(X[2000:], y[2000:]) == binary.estimator.score(X[2000:], y[2000:])
    assert "coef_" in dir(binary)
    assert sklearn.base.is_classifier(binary)
    assert 0.0 == binary.snapshot().get("mlmon_calls_total")  # score() is not tracked


def test_the_estimators_exceptions_propagate_and_are_counted(binary: MonitoredEstimator) -> None:
    with pytest.raises(ValueError):
        binary.predict(np.ones((2, 7)))  # wrong number of features
    assert 1.0 == binary.snapshot().get("mlmon_errors_total", error_type="ValueError")


def test_tracked_methods_keep_their_name_and_the_estimators_doc(binary: MonitoredEstimator) -> None:
    assert "predict_proba" == binary.predict_proba.__name__
    assert "ids=" in (binary.predict_proba.__doc__ or "")


def test_it_is_not_picklable_and_says_what_to_do(binary: MonitoredEstimator) -> None:
    with pytest.raises(TypeError, match=r"pickle \.estimator"):
        pickle.dumps(binary)
    assert isinstance(pickle.loads(pickle.dumps(binary.estimator)), LogisticRegression)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_a_pipeline_and_a_dataframe_give_named_features() -> None:
    pd = pytest.importorskip("pandas")
    X, y = make_classification(n_samples=600, n_features=3, n_informative=2, n_redundant=0, random_state=3)
    df = pd.DataFrame(X, columns=["age", "income", "tenure"])
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(df, y)
    with monitor_estimator(pipe, df, name="sk_pipeline") as model:
        model.predict_proba(df)
        model.predict_proba(X[:5])  # a plain array is read by position
        snap = model.snapshot()
    assert ("age", "income", "tenure") == model.reference.feature_names
    assert snap.get("mlmon_feature_mean", feature="income") == pytest.approx(np.mean(np.r_[X[:, 1], X[:5, 1]]))


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_feature_names_in_name_the_columns_of_a_numpy_reference() -> None:
    pd = pytest.importorskip("pandas")
    X, y = make_classification(n_samples=300, n_features=2, n_informative=2, n_redundant=0, random_state=4)
    clf = LogisticRegression().fit(pd.DataFrame(X, columns=["a", "b"]), y)
    ref = estimator_reference(clf, X)
    assert ("a", "b") == ref.feature_names


def test_an_existing_monitor_can_be_used_and_stays_open(binary_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = binary_data
    clf = LogisticRegression().fit(X, y)
    mon = mlmon.Monitor("sk_existing", task=infer_task(clf), reference=estimator_reference(clf, X))
    model = monitor_estimator(clf, monitor=mon)
    model.predict_proba(X[:3])
    model.close()
    assert 1.0 == mon.snapshot().get("mlmon_calls_total")
    mon.close()


def test_an_existing_monitor_takes_no_configuration(binary_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = binary_data
    clf = LogisticRegression().fit(X, y)
    mon = mlmon.Monitor("sk_conflict", task=infer_task(clf))
    with pytest.raises(ValueError, match="X_train, version"):
        monitor_estimator(clf, X, monitor=mon, version="2")
    mon.close()


def test_y_train_needs_x_train(binary_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = binary_data
    with pytest.raises(ValueError, match="y_train needs X_train"):
        monitor_estimator(LogisticRegression().fit(X, y), y_train=y, name="sk_y_only")


def test_importing_mlmon_and_its_integrations_does_not_import_sklearn() -> None:
    code = "import sys, mlmon, mlmon.integrations, mlmon.integrations.sklearn; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "False" == out.strip()


def test_decision_function_of_a_probabilistic_model_records_its_decisions(
    binary: MonitoredEstimator, binary_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = binary_data
    ids = list(range(1000))
    margins = binary.decision_function(X[2000:], ids=ids)
    binary.log_feedback(ids, y[2000:])
    snap = binary.snapshot()
    decisions = np.where(margins > 0, "ok", "fraud")
    assert snap.get("mlmon_output_class_ratio", **{"class": "ok"}) == pytest.approx(np.mean(decisions == "ok"))
    assert snap.get("mlmon_precision") == pytest.approx(precision_score(y[2000:], decisions, pos_label="ok"))


def test_estimator_quality_uses_the_tasks_threshold_and_positive_class(
    binary_data: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = binary_data
    clf = LogisticRegression().fit(X[:2000], y[:2000])
    task = mlmon.BinaryClassification(threshold=0.2, positive="fraud")
    pred = np.where(clf.predict_proba(X[2000:])[:, 0] >= 0.2, "fraud", "ok")
    expected = {
        "mlmon_precision": precision_score(y[2000:], pred, pos_label="fraud"),
        "mlmon_recall": recall_score(y[2000:], pred, pos_label="fraud"),
        "mlmon_f1": f1_score(y[2000:], pred, pos_label="fraud"),
        "mlmon_accuracy": accuracy_score(y[2000:], pred),
    }
    assert expected == pytest.approx(estimator_quality(clf, X[2000:], y[2000:], task=task))


def test_without_a_task_scores_are_recorded_as_plain_numbers(binary_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = binary_data
    clf = LogisticRegression().fit(X, y)
    with monitor_estimator(clf, name="sk_untasked", task=None) as model:
        scores = model.predict_proba(X[:100])[:, 1]
        model.predict(X[:100])  # labels are no numbers: not recorded
        snap = model.snapshot()
    assert (2.0, 100.0) == (snap.get("mlmon_calls_total"), snap.get("mlmon_output_count"))
    assert snap.get("mlmon_output_mean") == pytest.approx(scores.mean())
    assert snap.get("mlmon_precision") is None


def test_a_model_with_the_api_but_no_sklearn_base_class_can_be_wrapped() -> None:
    class Rule:
        classes_ = np.array([0, 1])

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            p = (np.asarray(X)[:, 0] > 0).astype(float)
            return np.c_[1 - p, p]

        def predict(self, X: np.ndarray) -> np.ndarray:
            return (np.asarray(X)[:, 0] > 0).astype(int)

    with monitor_estimator(Rule(), name="sk_duck") as model:
        model.predict_proba(np.array([[1.0], [-1.0], [2.0]]), ids=["a", "b", "c"])
        model.log_feedback(["a", "b", "c"], [1, 0, 0])
        snap = model.snapshot()
    assert mlmon.BinaryClassification(threshold=0.5, positive=1, negative=0) == model.task
    assert (0.5, 1.0) == (snap.get("mlmon_precision"), snap.get("mlmon_recall"))


def test_a_disabled_monitor_leaves_the_estimator_untracked(binary_data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = binary_data
    clf = LogisticRegression().fit(X, y)
    with monitor_estimator(clf, name="sk_disabled", enabled=False) as model:
        np.testing.assert_array_equal(clf.predict_proba(X[:3]), model.predict_proba(X[:3], ids=[1, 2, 3]))
        assert 0.0 == model.snapshot().get("mlmon_calls_total")


def test_monitor_estimator_segments_by_a_feature_column() -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from mlmon.integrations.sklearn import monitor_estimator

    rng = np.random.default_rng(0)
    n = 6000
    X = pd.DataFrame({"age": rng.normal(40, 10, n), "tier": rng.integers(0, 3, n)})
    y = (X["age"] + rng.normal(0, 5, n) > 40).astype(int)
    model = monitor_estimator(LogisticRegression().fit(X, y), X, y, name="sk-seg", segment="tier", emitters=[])
    assert model.reference.feature_names == ("age", "tier")  # still a feature of the model
    assert set(model.reference.segments) == {"0", "1", "2"}
    model.predict_proba(X.iloc[:300], ids=list(range(300)))
    for i in range(300, 310):  # single rows too
        model.predict(X.iloc[i : i + 1])
    model.log_feedback(list(range(300)), y.iloc[:300].tolist())
    snap = model.snapshot()
    rows = {dict(s.labels)["segment"]: s.value for s in snap.select("mlmon_rows_total", segment="*")}
    assert rows == {str(t): float((X["tier"].iloc[:310] == t).sum()) for t in range(3)}
    assert {dict(s.labels)["segment"]: s.value for s in snap.select("mlmon_segment_reference", segment="*")} == {
        "0": 1.0, "1": 1.0, "2": 1.0
    }
    sel = X["tier"].iloc[:300].to_numpy() == 2
    pred = model.estimator.predict_proba(X.iloc[:300])[:, 1] >= 0.5
    assert snap.get("mlmon_precision", segment="2") == pytest.approx(y.iloc[:300].to_numpy()[sel & pred].mean())
    model.close()
    with pytest.raises(ValueError, match="segment"):
        monitor_estimator(LogisticRegression().fit(X, y), name="sk-seg2", segment="", emitters=[])
