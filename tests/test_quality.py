"""The quality component: output statistics, windowed quality metrics against direct formulas
on exactly the labels in each window, concept change, estimated performance, coverage,
delays, and bad data that is counted rather than raised. Time is a plain float (a fake clock).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from partsutil import Parts

from mlmon._component import CallBatch
from mlmon.feedback import as_batch
from mlmon.snapshot import CATALOG
from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression, Task

Read = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read(q: Parts, now: float) -> Read:
    out: Read = {}
    for name, value, labels in q.samples(now):
        key = (name, tuple(sorted(labels.items())))
        assert key not in out, f"sample {key} emitted twice"
        out[key] = float(value)
    return out


def get(r: Read, name: str, **labels: str) -> float | None:
    return r.get((name, tuple(sorted(labels.items()))))


def batch(
    now: float, outputs: list[Any], ids: list[Any] | None = None, rows: list[int] | None = None
) -> CallBatch:
    if rows is None:
        rows = [len(o) if isinstance(o, (list, np.ndarray)) and np.ndim(o) else 1 for o in outputs]
    return CallBatch(
        now=now, wall=0.0, outputs=outputs, ids=ids or [None] * len(outputs), rows=rows
    )


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


# -- direct formulas on the labelled predictions of a window ----------------------------------
def expected_binary(pairs: list[tuple[int, int]]) -> dict[str, float | None]:
    pred = np.array([p for p, _ in pairs], int)
    true = np.array([t for _, t in pairs], int)
    tp = float(np.sum((pred == 1) & (true == 1)))
    fp = float(np.sum((pred == 1) & (true == 0)))
    fn = float(np.sum((pred == 0) & (true == 1)))
    return {
        "mlmon_precision": ratio(tp, tp + fp),
        "mlmon_recall": ratio(tp, tp + fn),
        "mlmon_f1": ratio(2 * tp, 2 * tp + fp + fn),
        "mlmon_accuracy": ratio(float(np.sum(pred == true)), len(pairs)),
    }


def expected_multiclass(pairs: list[tuple[int, int]], names: tuple[str, ...]) -> Read:
    pred = np.array([p for p, _ in pairs], int)
    true = np.array([t for _, t in pairs], int)
    out: Read = {}
    per: dict[str, list[float]] = {"mlmon_precision": [], "mlmon_recall": [], "mlmon_f1": []}
    for c, name in enumerate(names):
        tp = float(np.sum((pred == c) & (true == c)))
        fp = float(np.sum((pred == c) & (true != c)))
        fn = float(np.sum((pred != c) & (true == c)))
        for metric, v in [
            ("mlmon_precision", ratio(tp, tp + fp)),
            ("mlmon_recall", ratio(tp, tp + fn)),
            ("mlmon_f1", ratio(2 * tp, 2 * tp + fp + fn)),
        ]:
            if v is not None:
                out[(metric, (("class", name),))] = v
                per[metric].append(v)
    acc = float(np.mean(pred == true))
    for metric, values in per.items():
        if values:
            out[(metric, (("average", "macro"),))] = float(np.mean(values))
        out[(metric, (("average", "micro"),))] = acc
    out[("mlmon_accuracy", ())] = acc
    return out


def expected_regression(pairs: list[tuple[float, float]]) -> dict[str, float | None]:
    err = np.array([p - t for p, t in pairs])
    return {
        "mlmon_mae": float(np.mean(np.abs(err))),
        "mlmon_rmse": float(np.sqrt(np.mean(err**2))),
        "mlmon_mean_error": float(np.mean(err)),
    }


QUALITY_NAMES = {
    "mlmon_precision", "mlmon_recall", "mlmon_f1", "mlmon_accuracy",
    "mlmon_mae", "mlmon_rmse", "mlmon_mean_error",
}  # fmt: skip


def quality_part(r: Read) -> Read:
    return {k: v for k, v in r.items() if k[0] in QUALITY_NAMES}


# -- a random stream with labels arriving late, checked at every step --------------------------
Outputs = Callable[[np.random.Generator, int], tuple[Any, list[Any]]]
Labels = Callable[[np.random.Generator, Any], tuple[Any, Any]]


def run_stream(
    task: Task,
    make_outputs: Outputs,
    make_label: Labels,
    check: Callable[[Read, list[Any]], None],
    seed: int,
) -> None:
    """Each second: one drain of predictions with ids, then labels for a random subset of the
    predictions still waiting, by single and batch calls; after each step the window's
    metrics must equal the direct formula on exactly the labels that arrived in the window."""
    rng = np.random.default_rng(seed)
    q = Parts(task, window=10.0, slices=10, now=0.0)
    waiting: dict[int, Any] = {}
    arrived: list[tuple[float, Any, Any]] = []  # (arrival time, predicted code, label code)
    next_id = 0
    for step in range(40):
        n = int(rng.integers(1, 15))
        outputs, preds = make_outputs(rng, n)
        ids = range(next_id, next_id + n)
        next_id += n
        q.ingest(batch(step + 0.25, [outputs], [ids], [n]))
        waiting.update(zip(ids, preds, strict=True))
        at = step + 0.5
        chosen = rng.permutation(list(waiting))[: int(rng.integers(0, 12))].tolist()
        logged = []
        for i in chosen:
            pred = waiting.pop(i)
            label, code = make_label(rng, pred)
            logged.append(label)
            arrived.append((at, pred, code))
        if rng.random() < 0.3:
            for i, label in zip(chosen, logged, strict=True):
                q.log_feedback(i, label, now=at)
        elif chosen:
            q.log_feedback(chosen, logged, now=at)
        now = step + 0.75
        window = [(p, c) for (t, p, c) in arrived if math.floor(t) >= math.floor(now) - 9]
        r = read(q, now)
        assert get(r, "mlmon_labels_window") == len(window)
        check(r, window)


@pytest.mark.parametrize("seed", range(3))
def test_binary_metrics_equal_the_direct_formula_in_every_window(seed: int) -> None:
    def outputs(rng: np.random.Generator, n: int) -> tuple[Any, list[int]]:
        scores = rng.random(n)
        return scores, (scores >= 0.5).astype(int).tolist()

    def label(rng: np.random.Generator, pred: int) -> tuple[Any, int]:
        y = int(rng.random() < (0.8 if pred else 0.3))
        return (bool(y) if rng.random() < 0.2 else y), y

    def check(r: Read, window: list[Any]) -> None:
        if not window:
            assert quality_part(r) == {}
            return
        for name, want in expected_binary(window).items():
            assert get(r, name) == (None if want is None else pytest.approx(want, rel=1e-12))

    run_stream(BinaryClassification(threshold=0.5), outputs, label, check, seed)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_metrics_equal_the_direct_formula_in_every_window(seed: int) -> None:
    names = ("cat", "dog", "fox", "owl")
    task = MulticlassClassification(classes=list(names))

    def outputs(rng: np.random.Generator, n: int) -> tuple[Any, list[int]]:
        probs = rng.dirichlet(np.ones(4) * 0.5, size=n)
        return probs, probs.argmax(axis=1).tolist()

    def label(rng: np.random.Generator, pred: int) -> tuple[Any, int]:
        y = pred if rng.random() < 0.6 else int(rng.integers(0, 4))
        return names[y], y

    def check(r: Read, window: list[Any]) -> None:
        if not window:
            assert quality_part(r) == {}
            return
        want = expected_multiclass(window, names)
        got = quality_part(r)
        assert got.keys() == want.keys()
        for key, v in want.items():
            assert got[key] == pytest.approx(v, rel=1e-12)

    run_stream(task, outputs, label, check, seed)


@pytest.mark.parametrize("seed", range(3))
def test_regression_metrics_equal_the_direct_formula_in_every_window(seed: int) -> None:
    def outputs(rng: np.random.Generator, n: int) -> tuple[Any, list[float]]:
        values = rng.normal(10.0, 3.0, n)
        return values, values.tolist()

    def label(rng: np.random.Generator, pred: float) -> tuple[Any, float]:
        y = float(pred + rng.normal(0.5, 2.0))
        return y, y

    def check(r: Read, window: list[Any]) -> None:
        if not window:
            assert quality_part(r) == {}
            return
        for name, want in expected_regression(window).items():
            assert get(r, name) == pytest.approx(want, rel=1e-9, abs=1e-12)

    run_stream(Regression(), outputs, label, check, seed)


def test_precision_tracks_the_true_rolling_precision_through_a_concept_change() -> None:
    """A rule model (positive when x >= 0.5) on a stream whose concept moves from
    y = x > 0.5 to y = x > 0.7 at step 30; labels arrive 3 seconds after their predictions."""
    rng = np.random.default_rng(11)
    q = Parts(BinaryClassification(threshold=0.5), window=10.0, slices=10, now=0.0)
    switch, delay = 30, 3
    made: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    arrived: list[tuple[float, np.ndarray, np.ndarray]] = []
    seen = []
    for step in range(70):
        x = rng.random(50)
        y = x > (0.5 if step < switch else 0.7)
        ids = range(step * 50, step * 50 + 50)
        q.ingest(batch(step + 0.1, [x], [ids], [50]))
        made[step] = (x, y)
        if step >= delay:
            x_old, y_old = made.pop(step - delay)
            old_ids = range((step - delay) * 50, (step - delay) * 50 + 50)
            q.log_feedback(np.array(old_ids), y_old.astype(int), now=step + 0.2)
            arrived.append((step + 0.2, (x_old >= 0.5).astype(int), y_old.astype(int)))
        now = step + 0.3
        inside = [(p, t) for at, p, t in arrived if math.floor(at) >= math.floor(now) - 9]
        got = get(read(q, now), "mlmon_precision")
        if not inside:
            assert got is None
            continue
        pred = np.concatenate([p for p, _ in inside])
        true = np.concatenate([t for _, t in inside])
        rolling = float(np.sum(pred & true) / np.sum(pred))
        assert got == pytest.approx(rolling, rel=1e-12)
        seen.append((step, got))
    before = [p for step, p in seen if step < switch + delay]
    after = [p for step, p in seen if step >= switch + delay + 10]
    assert min(before) == 1.0
    assert max(after) == pytest.approx(0.6, abs=0.1)  # P(x > 0.7 | x >= 0.5)


# -- absent, not zero --------------------------------------------------------------------------
def test_without_labels_quality_metrics_are_absent_and_labels_window_is_zero() -> None:
    for task in [BinaryClassification(), MulticlassClassification(classes=[0, 1, 2]), Regression()]:
        q = Parts(task, window=10.0, now=0.0)
        q.ingest(batch(1.0, [np.array([0.0, 1.0])], [["a", "b"]]))
        r = read(q, 2.0)
        assert quality_part(r) == {}
        assert get(r, "mlmon_labels_window") == 0.0


def test_precision_is_absent_when_nothing_was_predicted_positive() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.1, 0.2])], [["a", "b"]]))
    q.log_feedback(["a", "b"], [1, 0], now=2.0)
    r = read(q, 2.0)
    assert get(r, "mlmon_precision") is None
    assert (get(r, "mlmon_recall"), get(r, "mlmon_f1"), get(r, "mlmon_accuracy")) == (0.0, 0.0, 0.5)


def test_labels_leave_the_window_with_their_arrival_slice() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(0.5, [np.array([0.9])], [["a"]]))
    q.log_feedback("a", 1, now=1.5)
    assert get(read(q, 10.9), "mlmon_precision") == 1.0
    r = read(q, 11.5)
    assert get(r, "mlmon_precision") is None
    assert (get(r, "mlmon_labels_window"), get(r, "mlmon_labels_total")) == (0.0, 1.0)


# -- outputs -----------------------------------------------------------------------------------
def test_output_statistics_match_numpy_over_the_window() -> None:
    rng = np.random.default_rng(3)
    q = Parts(None, window=10.0, slices=10, now=0.0)
    drained = []
    for step in range(25):
        x = rng.lognormal(0.0, 1.0, int(rng.integers(1, 40)))
        q.ingest(batch(step + 0.5, [x, float(x[0]), None]))
        drained.append((step + 0.5, np.r_[x, x[0]]))
        now = step + 0.9
        values = np.concatenate([v for t, v in drained if math.floor(t) >= math.floor(now) - 9])
        r = read(q, now)
        assert get(r, "mlmon_output_count") == values.size
        assert get(r, "mlmon_output_mean") == pytest.approx(values.mean(), rel=1e-12)
        assert get(r, "mlmon_output_variance") == pytest.approx(values.var(), rel=1e-9)
        assert get(r, "mlmon_output_stddev") == pytest.approx(values.std(), rel=1e-9)
        for quant in (0.5, 0.9, 0.95, 0.99):
            want = np.quantile(values, quant, method="lower")
            assert get(r, "mlmon_output", quantile=str(quant)) == pytest.approx(want, rel=0.0101)


def test_class_ratios_and_invalid_outputs() -> None:
    q = Parts(BinaryClassification(threshold=0.5), window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.9, 0.8, 0.1, np.nan]), "junk", [0.7, None]]))
    r = read(q, 1.0)
    assert get(r, "mlmon_output_class_ratio", **{"class": "1"}) == 0.75
    assert get(r, "mlmon_output_class_ratio", **{"class": "0"}) == 0.25
    assert get(r, "mlmon_output_invalid_total") == 3.0
    assert get(r, "mlmon_output_count") == 4.0


def test_multiclass_label_outputs_have_class_ratios_but_no_score_statistics() -> None:
    q = Parts(MulticlassClassification(classes=["a", "b"]), window=10.0, now=0.0)
    q.ingest(batch(1.0, ["a", "a", "b", "c"]))
    r = read(q, 1.0)
    assert get(r, "mlmon_output_class_ratio", **{"class": "a"}) == pytest.approx(2 / 3)
    assert get(r, "mlmon_output_mean") is None
    assert (get(r, "mlmon_output_count"), get(r, "mlmon_output_invalid_total")) == (3.0, 1.0)


def test_outputs_none_are_not_recorded_and_not_invalid() -> None:
    q = Parts(Regression(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [None, None], rows=[3, 4]))
    r = read(q, 1.0)
    assert (get(r, "mlmon_output_count"), get(r, "mlmon_output_invalid_total")) == (0.0, 0.0)


# -- estimated performance ---------------------------------------------------------------------
def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2.0, 3.0, n)
    return p, (rng.random(n) < p).astype(int)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_estimated_performance_matches_realized_on_calibrated_scores(threshold: float) -> None:
    # With n = 100,000 the realized metrics have a standard error below 0.005; 0.02 is 4+ sigma.
    p, y = calibrated(100_000, seed=int(threshold * 10))
    q = Parts(BinaryClassification(threshold=threshold), window=60.0, now=0.0)
    q.ingest(batch(1.0, [p], [range(p.size)]))
    q.log_feedback(range(p.size), y, now=2.0)
    r = read(q, 2.0)
    for metric in ("precision", "recall", "f1"):
        realized = get(r, f"mlmon_{metric}")
        estimated = get(r, f"mlmon_estimated_{metric}")
        assert realized is not None and estimated is not None
        assert estimated == pytest.approx(realized, abs=0.02), metric


def test_estimated_precision_is_wrong_when_scores_are_overconfident() -> None:
    """The documented failure mode: hard 0/1 scores claim perfect precision."""
    p, y = calibrated(20_000, seed=5)
    hard = (p >= 0.5).astype(float)
    q = Parts(BinaryClassification(), window=60.0, now=0.0)
    q.ingest(batch(1.0, [hard], [range(p.size)]))
    q.log_feedback(range(p.size), y, now=2.0)
    r = read(q, 2.0)
    assert get(r, "mlmon_estimated_precision") == 1.0
    assert get(r, "mlmon_precision") == pytest.approx(0.64, abs=0.05)


def test_estimated_performance_is_absent_when_scores_are_not_probabilities() -> None:
    q = Parts(BinaryClassification(threshold=0.0), window=60.0, now=0.0)
    q.ingest(batch(1.0, [np.array([-2.0, 0.5, 3.0])]))
    r = read(q, 1.0)
    assert get(r, "mlmon_estimated_precision") is None
    assert get(r, "mlmon_output_mean") is not None


def test_estimated_performance_uses_the_output_window_without_labels() -> None:
    q = Parts(BinaryClassification(), window=60.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.9, 0.6, 0.2, 0.1])]))
    r = read(q, 1.0)
    assert get(r, "mlmon_estimated_precision") == pytest.approx(0.75)
    assert get(r, "mlmon_estimated_recall") == pytest.approx(1.5 / 1.8)
    assert get(r, "mlmon_estimated_f1") == pytest.approx(3.0 / (1.5 + 2 + 0.3))


# -- coverage, delays, pending -----------------------------------------------------------------
def test_coverage_is_labelled_share_of_the_windows_prediction_rows() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(0.5, [np.full(10, 0.9)], [range(10)]))
    q.log_feedback(range(4), [1] * 4, now=1.0)
    assert get(read(q, 1.0), "mlmon_label_coverage_ratio") == 0.4
    q.ingest(batch(5.5, [np.full(10, 0.9)], [None]))  # rows without ids count too
    assert get(read(q, 6.0), "mlmon_label_coverage_ratio") == 0.2
    # The first drain leaves the window; its labelled predictions no longer count.
    assert get(read(q, 11.0), "mlmon_label_coverage_ratio") == 0.0
    assert get(read(q, 16.0), "mlmon_label_coverage_ratio") is None  # no rows at all


def test_label_delay_quantiles() -> None:
    q = Parts(Regression(), window=100.0, now=0.0)
    q.ingest(batch(1.0, [np.arange(100.0)], [range(100)]))
    q.log_feedback(range(50), np.zeros(50), now=3.0)
    q.log_feedback(range(50, 100), np.zeros(50), now=21.0)
    r = read(q, 21.0)
    assert get(r, "mlmon_label_delay_seconds", quantile="0.5") == pytest.approx(2.0, rel=0.01)
    assert get(r, "mlmon_label_delay_seconds", quantile="0.9") == pytest.approx(20.0, rel=0.01)


def test_pending_predictions_gauge() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0, ttl=30.0)
    q.ingest(batch(1.0, [np.full(5, 0.9)], [range(5)]))
    q.log_feedback([0, 1], [1, 1], now=2.0)
    assert get(read(q, 2.0), "mlmon_pending_predictions") == 3.0
    assert get(read(q, 40.0), "mlmon_pending_predictions") == 0.0  # expired


# -- ids and the join from the monitor's point of view -----------------------------------------
def test_single_row_calls_with_scalar_and_generated_ids_join() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [0.9, 0.8, 0.1, np.float32(0.7)], ["req-1", range(7, 8), ["req-3"], 42]))
    q.log_feedback(["req-1", 7, "req-3", 42], [1, 0, 0, 1], now=2.0)
    r = read(q, 2.0)
    assert (get(r, "mlmon_labels_total"), get(r, "mlmon_accuracy")) == (4.0, 0.75)


def test_ids_that_do_not_match_the_outputs_in_length_are_not_stored() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.9, 0.8, 0.1]), 0.5], [["a", "b"], ["c", "d"]]))
    assert q.unjoinable == 4
    q.log_feedback(["a", "c"], [1, 1], now=2.0)
    assert get(read(q, 2.0), "mlmon_labels_unmatched_total") == 2.0


def test_one_row_of_two_probabilities_is_one_prediction() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.3, 0.7])], [["a"]], rows=[1]))
    q.log_feedback(["a"], [1], now=2.0)
    assert get(read(q, 2.0), "mlmon_precision") == 1.0


def test_invalid_outputs_are_not_stored_and_their_labels_are_unmatched() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [[0.9, None]], [["a", "b"]]))
    q.log_feedback(["a", "b"], [1, 1], now=2.0)
    r = read(q, 2.0)
    assert (get(r, "mlmon_labels_total"), get(r, "mlmon_labels_unmatched_total")) == (1.0, 1.0)


def test_length_mismatch_raises_and_changes_nothing() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.9, 0.1])], [["a", "b"]]))
    before = read(q, 2.0)
    with pytest.raises(ValueError, match="2 ids and 1 labels"):
        q.log_feedback(["a", "b"], [1], now=2.0)
    with pytest.raises(ValueError, match="1 ids and 2 labels"):
        q.log_feedback("a", [1, 0], now=2.0)
    assert read(q, 2.0) == before


def test_single_and_batch_feedback_give_the_same_metrics() -> None:
    rng = np.random.default_rng(4)
    scores = rng.random(300)
    ids = [f"id{i}" for i in range(300)] + ["nope", None, "id3"]
    labels: list[Any] = rng.integers(0, 2, 303).tolist()
    labels[10] = None
    one, many = (Parts(BinaryClassification(), window=10.0, now=0.0) for _ in range(2))
    for q in (one, many):
        q.ingest(batch(1.0, [scores], [ids[:300]]))
    for i, y in zip(ids, labels, strict=True):
        one.log_feedback(i, y, now=2.0)
    many.log_feedback(ids, labels, now=2.0)
    a, b = read(one, 2.0), read(many, 2.0)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-12), key


def test_without_a_task_labels_are_joined_and_counted_but_no_metric_is_computed() -> None:
    q = Parts(None, window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.2, 0.4, 0.9])], [["a", "b", "c"]]))
    q.log_feedback(["a", "b", "c", "d"], ["x", None, 3.5, 1], now=4.0)
    q.log_feedback("c", "again", now=4.0)
    r = read(q, 4.0)
    assert quality_part(r) == {}
    assert get(r, "mlmon_labels_total") == 2.0
    assert get(r, "mlmon_labels_invalid_total") == 1.0
    assert get(r, "mlmon_labels_unmatched_total") == 1.0
    assert get(r, "mlmon_labels_duplicate_total") == 1.0
    assert get(r, "mlmon_label_delay_seconds", quantile="0.5") == pytest.approx(3.0, rel=0.01)


def test_outcomes_are_part_of_the_component() -> None:
    q = Parts(BinaryClassification(), window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.full(4, 0.9)], [range(4)]))
    q.log_outcome("click", ids=[0, 1], now=2.0)
    r = read(q, 2.0)
    assert get(r, "mlmon_outcome_rate", outcome="click") == 0.5


def test_reset_forgets_everything() -> None:
    task = BinaryClassification()
    q = Parts(task, window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.full(4, 0.9), "junk"], [range(4), None]))
    q.log_feedback(range(4), [1] * 4, now=2.0)
    q.log_outcome("click", now=2.0)
    q.reset()
    assert read(q, 2.0) == read(Parts(task, window=10.0, now=0.0), 2.0)


def test_every_sample_is_in_the_catalog_with_its_labels() -> None:
    for task in [
        BinaryClassification(),
        MulticlassClassification(classes=["a", "b", "c"]),
        Regression(),
        None,
    ]:
        q = Parts(task, window=10.0, now=0.0)
        out = (
            np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
            if isinstance(task, MulticlassClassification)
            else np.array([0.2, 0.9])
        )
        q.ingest(batch(1.0, [out], [["x", "y"]]))
        q.log_feedback(
            ["x", "y"],
            ["b", "a"] if isinstance(task, MulticlassClassification) else [1, 0],
            now=2.0,
        )
        q.log_outcome("click", now=2.0)
        for name, value, labels in q.samples(2.0):
            assert name in CATALOG, name
            assert set(labels) <= set(CATALOG[name].labels), (name, labels)
            assert math.isfinite(value)


def test_a_task_of_the_wrong_type_raises() -> None:
    with pytest.raises(TypeError, match="task"):
        Parts("binary", window=10.0)  # type: ignore[arg-type]


# -- bad data never raises ---------------------------------------------------------------------
junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.text(max_size=3),
        st.binary(max_size=3),
        st.sampled_from(
            [
                np.array([0.1, np.nan]),
                np.zeros((2, 3)),
                np.array(["a"]),
                np.zeros((2, 2, 2)),
                object(),
            ]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=8,
)
tasks = st.sampled_from(
    [BinaryClassification(), MulticlassClassification(classes=["a", 1, 2.5]), Regression(), None]
)


@settings(max_examples=100, deadline=None)
@given(task=tasks, calls=st.lists(st.tuples(junk, junk, st.integers(0, 5)), max_size=5))
def test_bad_data_costs_only_its_own_call(task: Task | None, calls: list[Any]) -> None:
    # Ingesting the calls together counts exactly what ingesting each alone counts: a call
    # that cannot be read costs itself (counted as invalid), never its batch-mates.
    counted = ("mlmon_output_count", "mlmon_output_invalid_total", "mlmon_pending_predictions")

    def counts(cs: list[Any]) -> list[float]:
        q = Parts(task, window=10.0, now=0.0)
        q.ingest(batch(1.0, [o for o, _, _ in cs], [i for _, i, _ in cs], [n for _, _, n in cs]))
        r = read(q, 1.0)
        return [get(r, name) or 0.0 for name in counted]

    together = counts(calls)
    alone = [counts([c]) for c in calls]
    summed = [sum(c[k] for c in alone) for k in range(len(counted))]
    assert together[:2] == summed[:2]
    # Two calls may carry the same id (False and 0, say): the latest prediction replaces the
    # earlier one, so together they may leave fewer pending predictions than alone, never more.
    assert together[2] <= summed[2]
    for (out, _, _), (valid, invalid, _) in zip(calls, alone, strict=True):
        if out is not None and not (hasattr(out, "__len__") and len(out) == 0):
            assert valid + invalid >= 1, out  # every recorded, non-empty output is seen or counted


def is_single(v: Any) -> bool:
    b = as_batch(v)
    return isinstance(b, list) and len(b) == 1 and b[0] is v


@settings(max_examples=100, deadline=None)
@given(task=tasks, pairs=st.lists(st.tuples(junk, junk), max_size=6), single=st.booleans())
def test_log_feedback_never_raises_on_bad_ids_or_labels(
    task: Task | None, pairs: list[Any], single: bool
) -> None:
    q = Parts(task, window=10.0, now=0.0)
    q.ingest(batch(1.0, [np.array([0.1, 0.9])], [[1, "a"]]))
    if single:
        for i, y in pairs:
            if is_single(i) and is_single(y):
                q.log_feedback(i, y, now=2.0)
    else:
        q.log_feedback([i for i, _ in pairs], [y for _, y in pairs], now=2.0)
    r = read(q, 2.0)
    outcomes = ("total", "unmatched_total", "expired_total", "duplicate_total", "invalid_total")
    logged = sum(get(r, f"mlmon_labels_{o}") or 0.0 for o in outcomes)
    assert logged == (
        sum(is_single(i) and is_single(y) for i, y in pairs) if single else len(pairs)
    )
