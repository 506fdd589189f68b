"""Tasks: validation at construction, and the mapping of outputs and labels (bad data counted)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlmon.tasks import (
    BinaryClassification,
    MulticlassClassification,
    Regression,
    map_scores,
)

NAN = math.nan


def obj(*values: object) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


# -- construction ------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [NAN, math.inf, "0.5", True, None])
def test_binary_threshold_must_be_a_finite_number(threshold: object) -> None:
    with pytest.raises(ValueError, match=r"threshold.*" + repr(threshold)[:3]):
        BinaryClassification(threshold=threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize("positive", [None, NAN, [1], math.inf])
def test_binary_positive_must_be_a_finite_number_or_string(positive: object) -> None:
    with pytest.raises(ValueError, match="positive"):
        BinaryClassification(positive=positive)  # type: ignore[arg-type]


def test_binary_negative_must_differ_from_positive_and_be_of_its_kind() -> None:
    with pytest.raises(ValueError, match="differ"):
        BinaryClassification(positive=1, negative=1.0)
    with pytest.raises(ValueError, match="same kind"):
        BinaryClassification(positive="fraud", negative=0)


def test_tasks_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        BinaryClassification(0.3)  # type: ignore[misc]
    task = BinaryClassification(threshold=0.3)
    with pytest.raises(AttributeError):
        task.threshold = 0.4  # type: ignore[misc]
    assert task == BinaryClassification(threshold=0.3)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["a"], "at least 2"),
        (["a", "a"], "distinct"),
        ([1, "1"], "distinct"),
        ([1, True], "distinct"),
        (["a", None], "classes"),
        (["a", NAN], "classes"),
        ("abc", "list of class labels"),
        (5, "list of class labels"),
    ],
)
def test_multiclass_classes_are_validated(classes: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MulticlassClassification(classes=classes)  # type: ignore[arg-type]


def test_multiclass_classes_become_a_tuple_of_python_values() -> None:
    task = MulticlassClassification(classes=np.array([3, 1, 2]))
    assert task.classes == (3, 1, 2)
    assert task.class_names == ("3", "1", "2")


@pytest.mark.parametrize(
    ("task", "names"),
    [
        (BinaryClassification(), ("0", "1")),
        (BinaryClassification(positive=True), ("0", "1")),
        (BinaryClassification(positive=0), ("1", "0")),
        (BinaryClassification(positive="fraud"), ("not_fraud", "fraud")),
        (BinaryClassification(positive="fraud", negative="ok"), ("ok", "fraud")),
    ],
)
def test_binary_class_names(task: BinaryClassification, names: tuple[str, str]) -> None:
    assert task.class_names == names


# -- binary outputs ----------------------------------------------------------------------------
def test_binary_scalar_outputs_are_one_row() -> None:
    task = BinaryClassification(threshold=0.5)
    for value, cls in [(0.7, 1), (0.2, 0), (1, 1), (np.float32(0.5), 1), (True, 1)]:
        out = task.map_outputs(value)
        assert out.classes is not None
        assert (out.values.tolist(), out.classes.tolist(), out.invalid) == (
            [float(value)],
            [cls],
            0,
        )


def test_binary_score_equal_to_threshold_is_positive() -> None:
    out = BinaryClassification(threshold=0.0).map_outputs(np.array([-1.5, 0.0, 2.0]))
    assert out.classes is not None
    assert out.classes.tolist() == [0, 1, 1]


def test_binary_probability_rows_use_column_1() -> None:
    out = BinaryClassification().map_outputs(np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert out.classes is not None
    assert (out.values.tolist(), out.classes.tolist()) == ([0.1, 0.8], [0, 1])


def test_binary_column_of_scores_is_flattened() -> None:
    out = BinaryClassification().map_outputs(np.array([[0.9], [0.2]]))
    assert out.values.tolist() == [0.9, 0.2]


def test_binary_one_row_of_two_probabilities_with_rows_hint() -> None:
    task = BinaryClassification()
    assert task.map_outputs(np.array([0.3, 0.7]), rows=1).values.tolist() == [0.7]
    assert task.map_outputs(np.array([0.3, 0.7]), rows=2).values.tolist() == [0.3, 0.7]


@pytest.mark.parametrize(
    ("output", "invalid"),
    [
        ([0.1, None, 0.9], 1),
        ([0.1, NAN, math.inf, -math.inf], 3),
        (np.array([[0.1, 0.2, 0.7]] * 4), 4),  # wrong width
        (np.zeros((2, 2, 2)), 2),  # wrong rank
        ([[0.1, 0.9], [0.3]], 2),  # ragged
        ("abc", 1),
        ({"score": 0.3}, 1),
        (None, 1),
        ([0.2, "x", 0.7], 1),
        (np.array(["a", "b"]), 2),
        (object(), 1),
        (3 + 4j, 1),
    ],
)
def test_binary_bad_outputs_are_counted_not_raised(output: object, invalid: int) -> None:
    out = BinaryClassification().map_outputs(output)
    assert out.invalid == invalid
    assert out.classes is not None
    assert (out.classes[~out.valid] == -1).all()


def test_binary_label_string_outputs_score_one_and_zero() -> None:
    task = BinaryClassification(positive="fraud", negative="ok")
    out = task.map_outputs(["fraud", "ok", "unknown", 0.7])
    assert out.classes is not None
    assert out.values.tolist()[:2] == [1.0, 0.0]
    assert out.classes.tolist() == [1, 0, -1, 1]
    assert out.invalid == 1


@given(hnp.arrays(np.float64, st.integers(0, 50)), st.floats(-10, 10))
def test_binary_numeric_outputs_valid_iff_finite(values: np.ndarray, threshold: float) -> None:
    out = BinaryClassification(threshold=threshold).map_outputs(values)
    finite = np.isfinite(values)
    assert out.classes is not None
    assert out.valid.tolist() == finite.tolist()
    assert out.invalid == int((~finite).sum())
    assert out.classes[finite].tolist() == (values[finite] >= threshold).astype(int).tolist()


# -- binary labels -----------------------------------------------------------------------------
def test_binary_labels_follow_python_equality() -> None:
    codes, valid = BinaryClassification().map_labels(obj(1, 0, True, False, 1.0, np.int64(1)))
    assert valid.all()
    assert codes.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]


def test_binary_missing_and_mismatched_kind_labels_are_invalid() -> None:
    _codes, valid = BinaryClassification().map_labels(obj(None, NAN, "1", [1], math.inf, 1))
    assert valid.tolist() == [False, False, False, False, False, True]


def test_binary_without_negative_any_other_label_of_its_kind_is_negative() -> None:
    codes, valid = BinaryClassification().map_labels(np.array([2, 1, -3]))
    assert (codes.tolist(), valid.all()) == ([0.0, 1.0, 0.0], True)


def test_binary_with_negative_only_two_labels_are_valid() -> None:
    _codes, valid = BinaryClassification(negative=0).map_labels(np.array([2, 1, 0]))
    assert valid.tolist() == [False, True, True]


def test_binary_string_labels() -> None:
    task = BinaryClassification(positive="fraud")
    codes, valid = task.map_labels(obj("fraud", "ok", 1, None))
    assert valid.tolist() == [True, True, False, False]
    assert codes[valid].tolist() == [1.0, 0.0]
    codes, valid = task.map_labels(np.array(["ok", "fraud", "fraud"]))
    assert codes.tolist() == [0.0, 1.0, 1.0]


def test_binary_float_array_labels_with_nan() -> None:
    _codes, valid = BinaryClassification().map_labels(np.array([1.0, NAN, 0.0]))
    assert valid.tolist() == [True, False, True]


def test_map_label_agrees_with_map_labels() -> None:
    task = BinaryClassification()
    values = obj(1, 0, None, "1", 2.0, NAN)
    codes, _ = task.map_labels(values)
    singles = [task.map_label(v) for v in values]
    np.testing.assert_array_equal(codes, np.array(singles))


# -- multiclass --------------------------------------------------------------------------------
def test_multiclass_label_outputs() -> None:
    task = MulticlassClassification(classes=["cat", "dog"])
    out = task.map_outputs(["dog", "cat", "cow", None])
    assert out.classes is not None
    assert out.classes.tolist() == [1, 0, -1, -1]
    assert out.invalid == 2
    assert np.isnan(out.values).all()  # labels carry no score


def test_multiclass_numeric_classes_match_as_python_values() -> None:
    task = MulticlassClassification(classes=[0, 1, 2])
    out = task.map_outputs(np.array([2.0, 1.0, 0.5]))
    assert out.classes is not None
    assert out.classes.tolist() == [2, 1, -1]
    assert task.map_outputs(np.int64(1)).classes.tolist() == [1]  # type: ignore[union-attr]


def test_multiclass_probability_rows_argmax_and_top_score() -> None:
    task = MulticlassClassification(classes=["a", "b", "c"])
    out = task.map_outputs(np.array([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [NAN, 0.5, 0.5]]))
    assert out.classes is not None
    assert out.classes.tolist() == [2, 0, -1]
    assert out.values.tolist()[:2] == [0.7, 0.5]
    assert out.invalid == 1


def test_multiclass_wrong_width_is_invalid() -> None:
    out = MulticlassClassification(classes=["a", "b", "c"]).map_outputs(np.zeros((5, 4)))
    assert out.invalid == 5


def test_multiclass_one_probability_row_with_rows_hint() -> None:
    task = MulticlassClassification(classes=["a", "b", "c"])
    out = task.map_outputs(np.array([0.2, 0.5, 0.3]), rows=1)
    assert out.classes is not None
    assert (out.classes.tolist(), out.values.tolist()) == ([1], [0.5])


def test_multiclass_labels_unknown_unhashable_and_mixed_are_invalid() -> None:
    task = MulticlassClassification(classes=["a", 1])
    codes, valid = task.map_labels(obj("a", 1, 1.0, "1", [1], None, NAN, {"a": 1}))
    assert valid.tolist() == [True, True, True, False, False, False, False, False]
    assert codes[valid].tolist() == [0.0, 1.0, 1.0]


# -- regression and plain scores ---------------------------------------------------------------
def test_regression_outputs() -> None:
    task = Regression()
    assert task.map_outputs(3).values.tolist() == [3.0]
    assert task.map_outputs(np.array([[1.0], [2.0]])).values.tolist() == [1.0, 2.0]
    assert task.map_outputs(np.zeros((3, 2))).invalid == 3
    assert task.map_outputs(["1.5", 2.0]).invalid == 1
    assert task.map_outputs([1.0, [2.0]]).invalid == 2  # ragged


def test_regression_labels_must_be_finite_numbers() -> None:
    codes, valid = Regression().map_labels(obj(2.5, "3", None, math.inf, NAN, 7))
    assert valid.tolist() == [True, False, False, False, False, True]
    assert codes[valid].tolist() == [2.5, 7.0]
    assert not Regression().map_labels(np.array(["1", "2"]))[1].any()


def test_regression_map_label() -> None:
    task = Regression()
    assert task.map_label(2) == 2.0
    assert math.isnan(task.map_label("2"))
    assert math.isnan(task.map_label(math.inf))


def test_map_scores_is_regression_mapping_without_classes() -> None:
    out = map_scores(np.array([[0.5], [NAN]]))
    assert out.classes is None
    assert out.valid.tolist() == [True, False]
    assert map_scores(np.zeros((2, 3))).invalid == 2
    assert map_scores(None).invalid == 1


@pytest.mark.parametrize(
    "arr",
    [
        np.array([1, 0, 0, 1, 1, 0, 7], dtype=np.int64),
        np.array([True, False, True]),
        np.array([-128, 127, 0, -128], dtype=np.int8),
        np.array([3, 3, 3], dtype=np.uint8),
        np.array([2**63 + 5, 2**63 + 1], dtype=np.uint64),  # beyond the table's range: np.unique
        np.array([-(2**40), 2**40], dtype=np.int64),  # too wide a span: np.unique
        np.random.default_rng(0).integers(-50, 4000, 20_000),
        np.array([[1, 0], [0, 1]]),  # 2-D: np.unique
    ],
)
def test_lut_map_by_counting_equals_np_unique(arr: np.ndarray) -> None:
    """Integer labels mapped through a table built by counting give what np.unique's table
    gives, and ``fn`` sees the same distinct values, in the same order and of the same type."""
    from mlmon.tasks import _lut_map

    def reference(a: np.ndarray, fn: Any) -> np.ndarray:
        uniq, inverse = np.unique(a, return_inverse=True)
        lut = np.array([fn(v) for v in uniq.tolist()], dtype=np.float64)
        return lut[inverse.ravel()]

    seen: list[list[Any]] = [[], []]

    def recorder(k: int) -> Any:
        def fn(v: Any) -> float:
            seen[k].append((type(v), v))
            return float("nan") if v == 7 else float(v) * 0.5 + (1.0 if v is True else 0.0)

        return fn

    got = _lut_map(arr, recorder(0))
    want = reference(arr, recorder(1))
    np.testing.assert_array_equal(got, want)
    assert seen[0] == seen[1]
