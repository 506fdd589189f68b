"""The monitor with its components: outputs, feedback, outcomes and features end to end."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import mlmon
from mlmon.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mon(clock: FakeClock) -> Iterator[mlmon.Monitor]:
    m = mlmon.Monitor("wired", task=mlmon.BinaryClassification(threshold=0.5), clock=clock, window=60.0)
    yield m
    m.close()


def test_bad_outputs_are_counted_invalid_never_raised(mon: mlmon.Monitor) -> None:
    predict = mon.track(lambda v: v)
    for value in (0.7, None, "cat", float("nan"), [0.1, [0.2, 0.3]], float("inf"), 0.2):
        assert predict(value) is value or value != value  # NaN is not equal to itself
    snap = mon.snapshot()
    assert snap.get("mlmon_calls_total") == 7
    assert snap.get("mlmon_output_invalid_total") == 5
    assert snap.get("mlmon_output_count") == 2
    assert snap.get("mlmon_output_mean") == pytest.approx(0.45)
    assert snap.total("mlmon_internal_errors_total") == 0


def test_output_distribution_matches_numpy(mon: mlmon.Monitor) -> None:
    scores = np.random.default_rng(3).beta(2, 5, 5000)
    predict = mon.track(lambda s: s)
    for chunk in np.array_split(scores, 50):
        predict(chunk)
    for s in scores[:100]:
        predict(float(s))
    every = np.r_[scores, scores[:100]]
    snap = mon.snapshot()
    assert snap.get("mlmon_output_count") == every.size
    assert snap.get("mlmon_output_mean") == pytest.approx(every.mean())
    assert snap.get("mlmon_output_variance") == pytest.approx(every.var())
    assert snap.get("mlmon_output", quantile="0.5") == pytest.approx(np.quantile(every, 0.5, method="lower"), rel=0.01)


def test_labels_join_generated_ids_of_a_with_block(mon: mlmon.Monitor) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(400)
    labels = (rng.random(400) < scores).astype(int)
    with mon.track(features=rng.normal(size=(400, 2))) as call:
        call.outputs(scores)
    mon.log_feedback(call.ids, labels)
    snap = mon.snapshot()
    pred = scores >= 0.5
    tp = np.sum(pred & (labels == 1))
    assert snap.get("mlmon_labels_window") == 400
    assert snap.get("mlmon_precision") == pytest.approx(tp / pred.sum())
    assert snap.get("mlmon_recall") == pytest.approx(tp / labels.sum())
    assert snap.get("mlmon_label_coverage_ratio") == 1.0


def test_labels_join_ids_named_in_the_decorator(mon: mlmon.Monitor, clock: FakeClock) -> None:
    @mon.track(ids="request_ids")
    def predict(X: np.ndarray, request_ids: list[str]) -> np.ndarray:
        return X[:, 0]

    predict(np.array([[0.9], [0.1], [0.8]]), ["a", "b", "c"])
    clock.advance(30.0)
    mon.log_feedback(["a", "b", "c", "nope"], [1, 1, 0, 1])  # straight after predict: drained first
    snap = mon.snapshot()
    assert snap.get("mlmon_precision") == 0.5  # a right, c wrong
    assert snap.get("mlmon_recall") == 0.5  # b missed
    assert snap.get("mlmon_labels_unmatched_total") == 1
    assert snap.get("mlmon_label_delay_seconds", quantile="0.5") == pytest.approx(30.0, rel=0.01)


def test_feedback_length_mismatch_is_a_value_error(mon: mlmon.Monitor) -> None:
    with pytest.raises(ValueError, match="same length"):
        mon.log_feedback([1, 2, 3], [1, 0])


def test_outcomes_rate_per_prediction(mon: mlmon.Monitor) -> None:
    predict = mon.track(lambda n: np.full(n, 0.5))
    predict(100)
    predict(100)
    for _ in range(10):
        mon.log_outcome("click")
    snap = mon.snapshot()
    assert snap.get("mlmon_outcome_total", outcome="click") == 10
    assert snap.get("mlmon_outcome_rate", outcome="click") == pytest.approx(10 / 200)


def test_features_are_named_from_the_first_call_without_a_reference(mon: mlmon.Monitor) -> None:
    @mon.track(features="row", outputs=False)
    def predict(row: dict[str, float]) -> None:
        return None

    predict({"age": 30.0, "income": None})
    predict({"age": 50.0, "income": 1000.0})
    snap = mon.snapshot()
    assert snap.get("mlmon_feature_mean", feature="age") == 40.0
    assert snap.get("mlmon_feature_missing_ratio", feature="income") == 0.5


def test_reference_enables_drift(clock: FakeClock) -> None:
    rng = np.random.default_rng(5)
    ref = mlmon.Reference.from_data(rng.normal(size=(5000, 2)), feature_names=["a", "b"])
    m = mlmon.Monitor("drifty", reference=ref, clock=clock, window=60.0)
    predict = m.track(features="X", outputs=False)(lambda X: None)
    X = rng.normal(size=(2000, 2))
    X[:, 1] += 1.0
    predict(X)
    snap = m.snapshot()
    assert snap.get("mlmon_feature_drift_status", feature="a") == 0
    assert snap.get("mlmon_feature_drift_status", feature="b") == 2
    assert snap.get("mlmon_feature_drift_psi", feature="b") > 0.2
    m.close()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"task": "binary"}, TypeError),
        ({"reference": {"a": [1, 2]}}, TypeError),
        ({"feature_names": ["a b", "a_b"]}, ValueError),
        ({"feature_names": ["a-b", "a.b"]}, ValueError),
        ({"task": mlmon.MulticlassClassification(classes=["a b", "a.b"])}, ValueError),
    ],
)
def test_bad_optional_configuration_is_caught_at_construction(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        mlmon.Monitor("m", **kwargs)  # type: ignore[arg-type]


def test_a_single_feature_row_gets_one_generated_id(mon: mlmon.Monitor) -> None:
    for row in (np.array([0.1, 0.2, 0.3]), [0.1, 0.2, 0.3], {"a": 1.0, "b": 2.0}):
        with mon.track(features=row) as call:
            call.outputs(0.9)
        assert len(call.ids) == 1
        mon.log_feedback(call.ids, [1])
    snap = mon.snapshot()
    assert snap.get("mlmon_labels_window") == 3
    assert snap.get("mlmon_labels_unmatched_total") == 0
    assert snap.get("mlmon_rows_total") == 3


def test_string_class_outputs_are_the_predicted_class_at_any_threshold() -> None:
    task = mlmon.BinaryClassification(threshold=0.0, positive="spam", negative="ham")
    mapped = task.map_outputs(np.array(["spam", "ham", "eggs"], dtype=object))
    assert mapped.classes.tolist() == [1, 0, -1]
