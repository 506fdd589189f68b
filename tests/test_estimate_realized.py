"""Realized score metrics from labels over the window (binary): ROC AUC within its reported
bound and PR AUC, against scikit-learn on random and adversarial score distributions (property
tests), log loss, Brier score, the calibration curve and its expected error, per-class support,
and the score encoding in the feedback join."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

import mlmon
from mlmon._component import CallBatch
from mlmon.outputs import UNCALIBRATED_AUC_EDGES
from mlmon.quality import QualityComponent, decode_scores, encode_scores
from mlmon.reference import Reference, bin_index
from mlmon.tasks import BinaryClassification, MulticlassClassification
from mlmon.testing import FakeClock

Read = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def window_metrics(scores: np.ndarray, labels: np.ndarray, reference: Reference | None = None, calls: int = 1) -> Read:
    """The quality samples after ``scores`` were predicted (in ``calls`` calls) and labelled."""
    q = QualityComponent(BinaryClassification(), window=60.0, now=0.0, reference=reference)
    ids = np.arange(scores.size)
    for part_ids, part in zip(np.array_split(ids, calls), np.array_split(scores, calls), strict=True):
        if part.size:
            q.ingest(CallBatch(now=1.0, wall=0.0, outputs=[part], ids=[part_ids.tolist()], rows=[part.size]))
    q.log_feedback(ids.tolist(), labels.tolist(), now=2.0)
    return {(n, tuple(sorted(lab.items()))): float(v) for n, v, lab in q.samples(3.0)}


def cells(scores: np.ndarray) -> np.ndarray:
    """The bins of the scores as the join stores them (within 1e-15: an edge may move a score)."""
    _, stored = decode_scores(encode_scores((scores >= 0.5).astype(np.int64), scores))
    return bin_index(stored, np.asarray(UNCALIBRATED_AUC_EDGES))


def check_against_sklearn(s: np.ndarray, y: np.ndarray, got: Read) -> None:
    auc, bound = got[("mlmon_roc_auc", ())], got[("mlmon_roc_auc_error_bound", ())]
    exact = roc_auc_score(y, s)
    assert abs(auc - exact) <= bound + 1e-9, (auc, exact, bound)
    # The binned AUC is the exact AUC of the scores rounded to their bins (and so is the AP).
    assert auc == pytest.approx(roc_auc_score(y, cells(s)), abs=1e-9)
    assert got[("mlmon_pr_auc", ())] == pytest.approx(average_precision_score(y, cells(s)), abs=1e-9)


probabilities = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(probabilities, st.booleans()), min_size=2, max_size=300), st.integers(1, 4))
def test_roc_auc_is_within_its_bound_of_scikit_learn_on_random_scores(pairs: list[tuple[float, bool]], calls: int) -> None:
    s = np.array([p for p, _ in pairs])
    y = np.array([int(t) for _, t in pairs])
    assume(0 < y.sum() < y.size)
    got = window_metrics(s, y, calls=calls)
    check_against_sklearn(s, y, got)
    # Against the scores as the join stores them (within 1e-15): a score of 1e-12 moved by 1e-16
    # moves its log loss by 1e-4 relative.
    _, stored = decode_scores(encode_scores((s >= 0.5).astype(np.int64), s))
    assert got[("mlmon_log_loss", ())] == pytest.approx(log_loss(y, stored, labels=[0, 1]), rel=1e-6, abs=1e-9)
    assert got[("mlmon_brier_score", ())] == pytest.approx(brier_score_loss(y, stored), rel=1e-9, abs=1e-12)


@st.composite
def adversarial(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores crowded into one bin, on bin edges, at 0 and 1, tied, with one minority label."""
    n = draw(st.integers(2, 400))
    kind = draw(st.sampled_from(["one bin", "edges", "extremes", "ties", "lone positive"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "one bin":
        s = 0.5 + rng.uniform(0.0, 1e-4, n)
    elif kind == "edges":
        s = rng.integers(0, 1001, n) / 1000
    elif kind == "extremes":
        s = rng.choice([0.0, 1.0, 1e-300, 1 - 1e-16], n)
    elif kind == "ties":
        s = rng.choice(rng.uniform(size=3), n)
    else:
        s = rng.uniform(size=n)
    y = (rng.uniform(size=n) < draw(st.floats(0.05, 0.95))).astype(int)
    if kind == "lone positive":
        y[:] = 0
        y[rng.integers(n)] = 1
    else:
        y[0], y[1] = 0, 1
    return s, y


@settings(max_examples=150, deadline=None)
@given(adversarial())
def test_roc_auc_is_within_its_bound_of_scikit_learn_on_adversarial_scores(case: tuple[np.ndarray, np.ndarray]) -> None:
    s, y = case
    got = window_metrics(s, y)
    check_against_sklearn(s, y, got)


def test_the_bound_is_tight_enough_to_be_useful_on_spread_scores() -> None:
    rng = np.random.default_rng(0)
    s = rng.beta(2, 5, 20_000)
    y = (rng.uniform(size=s.size) < s).astype(int)
    got = window_metrics(s, y)
    assert got[("mlmon_roc_auc_error_bound", ())] < 0.002
    assert abs(got[("mlmon_roc_auc", ())] - roc_auc_score(y, s)) < 0.002


def test_calibration_curve_and_expected_calibration_error() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(size=5000)
    y = (rng.uniform(size=s.size) < s**2).astype(int)
    got = window_metrics(s, y)
    b = np.minimum((s * 10).astype(int), 9)
    ece = 0.0
    for k in range(10):
        sel = b == k
        label = (("bin", f"{k:02d}"),)
        assert got[("mlmon_calibration_rows", label)] == sel.sum()
        assert got[("mlmon_calibration_predicted", label)] == pytest.approx(s[sel].mean())
        assert got[("mlmon_calibration_observed", label)] == pytest.approx(y[sel].mean())
        ece += sel.sum() / s.size * abs(s[sel].mean() - y[sel].mean())
    assert got[("mlmon_expected_calibration_error", ())] == pytest.approx(ece)
    assert ece > 0.1  # s over-states P(y=1) = s**2: the curve shows it


def test_scores_outside_0_1_get_auc_but_no_probability_metrics() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=3000) * 3  # logits
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))).astype(int)
    got = window_metrics(z, y)
    names = {n for n, _ in got}
    assert not names & {"mlmon_log_loss", "mlmon_brier_score", "mlmon_expected_calibration_error", "mlmon_calibration_rows"}
    # Without a reference the bins are on [0, 1]: logits mostly share the two outer cells and
    # the bound says so.
    assert got[("mlmon_roc_auc_error_bound", ())] > 0.05
    assert abs(got[("mlmon_roc_auc", ())] - roc_auc_score(y, z)) <= got[("mlmon_roc_auc_error_bound", ())]
    # A reference calibrated on the logits bins at their quantiles: tight again.
    ref = Reference.from_data(np.zeros((z.size, 1)), outputs=z, labels=y)
    tight = window_metrics(z, y, reference=ref)
    assert tight[("mlmon_roc_auc_error_bound", ())] < 0.005
    assert abs(tight[("mlmon_roc_auc", ())] - roc_auc_score(y, z)) < 0.005


def test_predictions_stored_without_a_score_count_only_in_the_confusion() -> None:
    q = QualityComponent(BinaryClassification(), window=60.0, now=0.0)
    # Older mlmon (or a shared store written by one) kept the class index alone.
    q.add_joined(np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), np.zeros(3), now=1.0)
    got = {n for n, _, _ in q.samples(2.0)}
    assert "mlmon_accuracy" in got and "mlmon_roc_auc" not in got and "mlmon_log_loss" not in got


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(-5, 5))
def test_the_score_encoding_keeps_the_class_and_the_order(scores: list[float], threshold: float) -> None:
    s = np.array(scores)
    classes = (s >= threshold).astype(np.int64)
    enc = encode_scores(classes, s)
    got_classes, got = decode_scores(enc)
    assert got_classes.tolist() == classes.tolist()
    assert enc.astype(np.int64).tolist() == classes.tolist()
    inside = (s >= 0) & (s <= 1)
    np.testing.assert_allclose(got[inside], s[inside], atol=2e-15)
    mid = np.isfinite(got) & (np.abs(s) < 30)
    assert np.isfinite(got[mid & inside]).all()
    # The order of decoded scores never contradicts the order of the scores.
    known = np.isfinite(got)
    o = np.argsort(s[known], kind="stable")
    assert (np.diff(got[known][o]) >= 0).all()


def test_label_support_per_class_through_a_monitor() -> None:
    mon = mlmon.Monitor("realized_support", task=MulticlassClassification(classes=["a", "b", "c"]), clock=FakeClock())
    try:
        predict = mon.track(ids="ids")(lambda X, ids: X)
        predict(["a", "b", "c", "a", "a"], ids=[1, 2, 3, 4, 5])
        mon.log_feedback([1, 2, 3, 4, 5], ["a", "b", "b", "b", "c"])
        snap = mon.snapshot()
        assert [snap.get("mlmon_label_support", **{"class": c}) for c in "abc"] == [1.0, 3.0, 1.0]
    finally:
        mon.close()


def test_realized_metrics_through_a_monitor_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    s = rng.uniform(size=2000)
    y = (rng.uniform(size=s.size) < s).astype(int)
    mon = mlmon.Monitor("realized_mon", task=BinaryClassification(), clock=FakeClock())
    try:
        predict = mon.track(ids="ids")(lambda X, ids: X)
        for part in np.array_split(np.arange(s.size), 20):
            predict(s[part], ids=part.tolist())
        mon.log_feedback(list(range(s.size)), y.tolist())
        snap = mon.snapshot()
        assert abs(snap.get("mlmon_roc_auc") - roc_auc_score(y, s)) <= snap.get("mlmon_roc_auc_error_bound") + 1e-12
        assert snap.get("mlmon_log_loss") == pytest.approx(log_loss(y, s), rel=1e-9)
        assert snap.get("mlmon_brier_score") == pytest.approx(brier_score_loss(y, s), rel=1e-9)
        assert snap.get("mlmon_label_support", **{"class": "1"}) == y.sum()
    finally:
        mon.close()


def test_labels_arriving_across_slices_give_the_metrics_of_one_batch() -> None:
    rng = np.random.default_rng(4)
    s = rng.uniform(size=3000)
    y = (rng.uniform(size=s.size) < s).astype(int)
    one = window_metrics(s, y)
    q = QualityComponent(BinaryClassification(), window=60.0, slices=6, now=0.0)
    ids = np.arange(s.size)
    q.ingest(CallBatch(now=1.0, wall=0.0, outputs=[s], ids=[ids.tolist()], rows=[s.size]))
    for k, part in enumerate(np.array_split(ids, 5)):  # labels in five different slices
        q.log_feedback(part.tolist(), y[part].tolist(), now=2.0 + 10.0 * k)
    spread = {(n, tuple(sorted(lab.items()))): float(v) for n, v, lab in q.samples(45.0)}
    keys = [k for k in one if k[0] in {"mlmon_roc_auc", "mlmon_roc_auc_error_bound", "mlmon_pr_auc", "mlmon_log_loss",
                                       "mlmon_brier_score", "mlmon_expected_calibration_error", "mlmon_calibration_rows",
                                       "mlmon_calibration_predicted", "mlmon_calibration_observed", "mlmon_label_support"}]
    assert len(keys) >= 36
    for k in keys:
        assert spread[k] == pytest.approx(one[k], rel=1e-9, abs=1e-12), k


def _decode_as_before(preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """decode_scores as it was written first: every branch over every value, then chosen."""
    classes = np.floor(preds)
    f = preds - classes
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(f < 0.25, np.log(f / 0.25), np.where(f > 0.5, 1.0 - np.log((0.75 - f) / 0.25), (f - 0.25) / 0.25))
    return classes.astype(np.int64), np.where(f > 0.0, s, np.nan)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e12, 1e12), min_size=1, max_size=60), st.integers(0, 3))
def test_decoding_the_tails_only_where_they_are_changes_no_bit(values: list[float], cls: int) -> None:
    """Stored values (a class plus the encoded score, a bare class, any float) decode as before."""
    raw = np.array(values)
    enc = np.concatenate([encode_scores(np.full(raw.size, cls, dtype=np.int64), raw), raw, np.array([0.0, 1.0, 0.25, 0.5, 0.75, -0.0, 1.2499999999999998])])
    want_c, want_s = _decode_as_before(enc)
    got_c, got_s = decode_scores(enc)
    assert got_c.tolist() == want_c.tolist()
    assert np.array_equal(got_s, want_s, equal_nan=True)
    assert (np.signbit(got_s) == np.signbit(want_s)).all()


def _encode_as_before(classes: np.ndarray, s: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore"):
        f = np.where(s < 0.0, 0.25 * np.exp(np.minimum(s, 0.0)), np.where(s > 1.0, 0.75 - 0.25 * np.exp(-np.maximum(s - 1.0, 0.0)), 0.25 + 0.25 * s))
    f = np.where((f > 0.0) & (f < 0.75), f, 0.0)
    return classes.astype(np.float64) + f


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=60), st.integers(0, 3))
def test_encoding_the_tails_only_where_they_are_changes_no_bit(values: list[float], cls: int) -> None:
    s = np.array([*values, 0.0, -0.0, 1.0, 1e-320, -1e-320, 745.0, -745.0, 1e308, np.nan])
    c = np.full(s.size, cls, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        want = _encode_as_before(c, s)
    got = encode_scores(c, s)
    assert np.array_equal(got, want, equal_nan=True) and (np.signbit(got) == np.signbit(want)).all()


@pytest.mark.parametrize("frac", [0.0, 0.01, 0.5, 0.97, 1.0])
def test_split_by_gives_what_boolean_indexing_gives(frac: float) -> None:
    from mlmon._values import split_by

    rng = np.random.default_rng(int(frac * 100))
    v = rng.normal(size=5000)
    v[::17] = np.nan
    m = rng.uniform(size=5000) < frac
    a, b = split_by(m, v)
    assert a.tobytes() == v[m].tobytes() and b.tobytes() == v[~m].tobytes()
