"""ConfusionMatrix against direct formulas (and scikit-learn), merge == concatenation, edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon.stats.confusion import ConfusionMatrix


def direct(true: np.ndarray, pred: np.ndarray, cls: int) -> tuple[float, float, float]:
    """Precision, recall, F1 of one class from the raw pairs (NaN when undefined)."""
    tp = float(np.sum((pred == cls) & (true == cls)))
    fp = float(np.sum((pred == cls) & (true != cls)))
    fn = float(np.sum((pred != cls) & (true == cls)))
    p = tp / (tp + fp) if tp + fp else math.nan
    r = tp / (tp + fn) if tp + fn else math.nan
    f = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else math.nan
    return p, r, f


def fed(k: int, true: np.ndarray, pred: np.ndarray) -> ConfusionMatrix:
    cm = ConfusionMatrix(k)
    cm.update_many(true, pred)
    return cm


def same(a: float | None, b: float) -> bool:
    return (a is None and math.isnan(b)) or (a is not None and a == pytest.approx(b, rel=1e-12))


@pytest.mark.parametrize("k", [2, 3, 7])
def test_every_class_metric_matches_the_direct_formula(k: int) -> None:
    rng = np.random.default_rng(k)
    for n in [0, 1, 5, 50, 500]:
        true, pred = rng.integers(0, k, n), rng.integers(0, k, n)
        cm = fed(k, true, pred)
        assert cm.total == n
        acc = cm.accuracy()
        assert (acc is None) if n == 0 else acc == pytest.approx(np.mean(true == pred))
        for c in range(k):
            p, r, f = direct(true, pred, c)
            assert same(cm.precision(c), p) and same(cm.recall(c), r) and same(cm.f1(c), f)


@pytest.mark.parametrize("k", [2, 4])
def test_matches_scikit_learn_with_nan_zero_division(k: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    # Skewed classes so that some class is often never predicted in a small sample.
    true = rng.choice(k, 40, p=np.r_[0.7, [0.3 / (k - 1)] * (k - 1)])
    pred = rng.choice(k, 40, p=np.r_[[0.3 / (k - 1)] * (k - 1), 0.7])
    cm = fed(k, true, pred)
    labels = list(range(k))
    for average, ours in [("macro", cm.macro()), ("micro", cm.micro())]:
        p, r, f, _ = metrics.precision_recall_fscore_support(
            true, pred, labels=labels, average=average, zero_division=np.nan
        )
        assert ours == pytest.approx((p, r, f), nan_ok=True)
    p, r, f, _ = metrics.precision_recall_fscore_support(
        true, pred, labels=labels, average=None, zero_division=np.nan
    )
    np.testing.assert_allclose(np.vstack(cm.per_class()), np.vstack([p, r, f]))
    assert cm.accuracy() == pytest.approx(metrics.accuracy_score(true, pred))


def test_no_predicted_positives_leaves_precision_undefined() -> None:
    cm = fed(2, np.array([1, 1, 0]), np.array([0, 0, 0]))
    assert cm.precision(1) is None
    assert cm.recall(1) == 0.0
    assert cm.f1(1) == 0.0  # 2tp / (2tp + fp + fn) is defined: there were misses


def test_all_negative_and_correct_leaves_positive_class_metrics_undefined() -> None:
    cm = fed(2, np.zeros(4, int), np.zeros(4, int))
    assert (cm.precision(1), cm.recall(1), cm.f1(1)) == (None, None, None)
    assert cm.accuracy() == 1.0


def test_empty_matrix_reads_none_everywhere() -> None:
    cm = ConfusionMatrix(3)
    assert cm.accuracy() is None
    assert cm.macro() == (None, None, None)
    assert cm.micro() == (None, None, None)


def test_macro_averages_only_defined_classes() -> None:
    # Class 2 never occurs: excluded from the macro average instead of counted as 0.
    cm = fed(3, np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    p, r, _f = cm.per_class()
    assert math.isnan(p[2]) and math.isnan(r[2])
    assert cm.macro()[0] == pytest.approx((1.0 + 2 / 3) / 2)


def test_update_many_equals_a_loop_of_update() -> None:
    rng = np.random.default_rng(2)
    true, pred = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    one = ConfusionMatrix(3)
    for t, p in zip(true.tolist(), pred.tolist(), strict=True):
        one.update(t, p)
    np.testing.assert_array_equal(one.counts, fed(3, true, pred).counts)


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(2, 5),
    data=st.data(),
)
def test_merge_equals_one_fed_everything(k: int, data: st.DataObject) -> None:
    pairs = st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), max_size=30)
    parts = data.draw(st.lists(pairs, min_size=1, max_size=4))
    merged = ConfusionMatrix(k)
    for part in parts:
        piece = ConfusionMatrix(k)
        piece.update_many(np.array([t for t, _ in part], int), np.array([p for _, p in part], int))
        merged.merge(piece)
    everything = [pair for part in parts for pair in part]
    whole = fed(
        k, np.array([t for t, _ in everything], int), np.array([p for _, p in everything], int)
    )
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merged.macro() == whole.macro()


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        ConfusionMatrix(1)
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="length"):
        cm.update_many([0, 1], [0])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        cm.update_many([0, 2], [0, 1])
    with pytest.raises(ValueError, match="sizes"):
        cm.merge(ConfusionMatrix(3))


def test_reset_forgets_everything() -> None:
    cm = fed(2, np.array([1, 0]), np.array([1, 1]))
    cm.reset()
    assert cm.total == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), max_size=300))
def test_two_classes_count_as_a_bincount(pairs: list[tuple[int, int]]) -> None:
    """Two classes are counted from sums, not a bincount: the same four cells."""
    t = np.array([a for a, _ in pairs], dtype=np.int64)
    p = np.array([b for _, b in pairs], dtype=np.int64)
    cm = ConfusionMatrix(2)
    cm.update_many(t, p)
    cm.update_many(t[::-1], p)
    want = np.bincount(t * 2 + p, minlength=4) + np.bincount(t[::-1] * 2 + p, minlength=4)
    assert cm.counts.reshape(-1).tolist() == want.tolist()
    with pytest.raises(ValueError, match="class indices"):
        cm.update_many(np.array([0, 2]), np.array([1, 1]))
