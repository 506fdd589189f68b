"""Realized multiclass metrics from probability rows: top-k accuracy and one-vs-rest ROC and PR
AUC per class (with macro averages), against scikit-learn on random and adversarial rows
(property tests), bad rows and labels counted without touching their neighbours, the byte cap of
the row column (top classes only), the single-label path, and a fleet merge equal to one
monitor fed everything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, top_k_accuracy_score
from test_report import Svg

import mlmon
from mlmon import report
from mlmon._component import CallBatch
from mlmon.emitters import JsonlEmitter
from mlmon.export.grafana import dashboard
from mlmon.fleet import merge_states
from mlmon.quality import QualityComponent
from mlmon.stats.multiclass import class_bins
from mlmon.tasks import MulticlassClassification
from mlmon.testing import FakeClock

Read = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read(q: QualityComponent, now: float) -> Read:
    return {(n, tuple(sorted(lab.items()))): float(v) for n, v, lab in q.samples(now)}


def window_metrics(rows: np.ndarray, labels: np.ndarray, calls: int = 1, one_by_one: bool = False, **kw: Any) -> Read:
    """The quality samples after ``rows`` were predicted (in ``calls`` calls) and labelled."""
    k = rows.shape[1]
    q = QualityComponent(MulticlassClassification(classes=list(range(k))), window=60.0, now=0.0, **kw)
    ids = np.arange(rows.shape[0])
    for part_ids, part in zip(np.array_split(ids, calls), np.array_split(rows, calls), strict=True):
        if part.shape[0]:
            q.ingest(CallBatch(now=1.0, wall=0.0, outputs=[part], ids=[part_ids.tolist()], rows=[part.shape[0]]))
    if one_by_one:
        for i, y in zip(ids.tolist(), labels.tolist(), strict=True):
            q.log_feedback(i, y, now=2.0)
    else:
        q.log_feedback(ids.tolist(), labels.tolist(), now=2.0)
    return read(q, 3.0)


def binned(p: np.ndarray, k: int) -> np.ndarray:
    """A probability as the per-class histogram bins it (stored as float32)."""
    b = class_bins(k)
    return np.minimum(np.floor(p.astype(np.float32).astype(np.float64) * b) + 1, b)


def check_against_sklearn(rows: np.ndarray, y: np.ndarray, got: Read) -> None:
    n, k = rows.shape
    stored = rows.astype(np.float32)
    for kk in (1, 3, 5):
        key = ("mlmon_top_k_accuracy", (("k", str(kk)),))
        if kk < k == 2:
            # scikit-learn takes no 2-column rows: top-1 of 2 classes, ties to class 1 as it would.
            hit = np.where(y == 1, stored[:, 1] >= stored[:, 0], stored[:, 0] > stored[:, 1])
            assert got[key] == pytest.approx(hit.mean(), abs=1e-12)
        elif kk < k:
            # Over the rows as stored (float32): ties broken as scikit-learn breaks them.
            assert got[key] == pytest.approx(top_k_accuracy_score(y, stored, k=kk, labels=list(range(k))), abs=1e-12), kk
        else:
            assert key not in got
    aucs, bounds = [], []
    for c in range(k):
        cls = (("class", str(c)),)
        pos = y == c
        if 0 < pos.sum() < n:
            auc, bound = got[("mlmon_roc_auc", cls)], got[("mlmon_roc_auc_error_bound", cls)]
            exact = roc_auc_score(pos, rows[:, c])
            assert abs(auc - exact) <= bound + 1e-9, (c, auc, exact, bound)
            # The binned AUC is the exact AUC of the probabilities rounded to their bins.
            assert auc == pytest.approx(roc_auc_score(pos, binned(rows[:, c], k)), abs=1e-9)
            aucs.append(auc)
            bounds.append(bound)
        else:
            assert ("mlmon_roc_auc", cls) not in got
        if pos.any():
            ap = got[("mlmon_pr_auc", cls)]
            assert ap == pytest.approx(average_precision_score(pos, binned(rows[:, c], k)), abs=1e-9)
        else:
            assert ("mlmon_pr_auc", cls) not in got
    macro = (("average", "macro"),)
    if aucs:
        assert got[("mlmon_roc_auc", macro)] == pytest.approx(np.mean(aucs), abs=1e-12)
        assert got[("mlmon_roc_auc_error_bound", macro)] == pytest.approx(np.mean(bounds), abs=1e-12)
    if len(aucs) == k >= 3:
        exact = roc_auc_score(y, stored.astype(np.float64) / stored.sum(axis=1, keepdims=True), multi_class="ovr", labels=list(range(k)))
        assert abs(got[("mlmon_roc_auc", macro)] - exact) <= got[("mlmon_roc_auc_error_bound", macro)] + 1e-6


@settings(max_examples=80, deadline=None)
@given(
    st.integers(2, 12), st.integers(2, 300), st.floats(0.05, 5.0), st.integers(1, 3), st.integers(0, 2**32 - 1)
)
def test_top_k_and_per_class_aucs_match_scikit_learn_on_random_rows(k: int, n: int, alpha: float, calls: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.dirichlet(np.full(k, alpha), size=n)
    y = rng.integers(0, k, n)
    rows[np.arange(n), y] += rng.random(n)  # some signal
    rows /= rows.sum(axis=1, keepdims=True)
    check_against_sklearn(rows, y, window_metrics(rows, y, calls=calls))


@st.composite
def adversarial(draw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Uniform rows (all tied), one-hot rows, probabilities on bin edges, heavy ties, one
    crowded bin, a lone positive, a class never labelled."""
    k = draw(st.integers(2, 8))
    n = draw(st.integers(2, 300))
    kind = draw(st.sampled_from(["uniform", "one-hot", "edges", "ties", "one bin", "lone positive", "missing class"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.integers(0, k, n)
    if kind == "uniform":
        rows = np.full((n, k), 1.0 / k)
    elif kind == "one-hot":
        rows = np.eye(k)[rng.integers(0, k, n)]
    elif kind == "edges":
        rows = rng.multinomial(class_bins(k), np.full(k, 1.0 / k), size=n) / class_bins(k)
    elif kind == "ties":
        rows = rng.choice([0.0, 0.5], size=(n, k))
        rows[:, 0] = 1.0 - rows[:, 1:].sum(axis=1).clip(0.0, 1.0)
        rows = np.where(rows.sum(axis=1, keepdims=True) == 1.0, rows, np.full((n, k), 1.0 / k))
    elif kind == "one bin":
        rows = 1.0 / k + rng.uniform(-1e-5, 1e-5, (n, k))
        rows /= rows.sum(axis=1, keepdims=True)
    else:
        rows = rng.dirichlet(np.ones(k), size=n)
        if kind == "lone positive":
            y = np.zeros(n, dtype=np.int64)
            y[rng.integers(0, n)] = 1
        else:
            y = np.where(y == k - 1, 0, y)
    return rows, y


@settings(max_examples=120, deadline=None)
@given(adversarial())
def test_the_bound_holds_on_adversarial_rows(case: tuple[np.ndarray, np.ndarray]) -> None:
    rows, y = case
    check_against_sklearn(rows, y, window_metrics(rows, y))


def test_exact_where_scores_are_few_and_one_by_one_equals_a_batch() -> None:
    rng = np.random.default_rng(3)
    rows = rng.dirichlet(np.ones(4), size=40)
    y = rng.integers(0, 4, 40)
    got = window_metrics(rows, y)
    for c in range(4):
        cls = (("class", str(c)),)
        # 40 spread rows in 1,000 bins a class: no bin holds a positive and a negative.
        assert got[("mlmon_roc_auc_error_bound", cls)] == 0.0
        assert got[("mlmon_roc_auc", cls)] == pytest.approx(roc_auc_score(y == c, rows[:, c]), abs=1e-12)
    assert window_metrics(rows, y, one_by_one=True) == pytest.approx(got)


def test_a_larger_window_is_within_a_small_bound_and_top_k_is_exact() -> None:
    rng = np.random.default_rng(11)
    n, k = 20_000, 10
    logits = rng.normal(size=(n, k))
    y = rng.integers(0, k, n)
    logits[np.arange(n), y] += 1.5
    rows = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = window_metrics(rows, y, calls=4)
    check_against_sklearn(rows, y, got)
    assert got[("mlmon_roc_auc_error_bound", (("average", "macro"),))] < 0.002
    assert got[("mlmon_top_k_accuracy", (("k", "1"),))] == pytest.approx(got[("mlmon_accuracy", ())], abs=1e-3)


def test_bad_rows_and_labels_are_counted_and_spare_their_neighbours() -> None:
    rng = np.random.default_rng(5)
    k = 4
    good = rng.dirichlet(np.ones(k), size=60)
    y = rng.integers(0, k, 60)
    task = MulticlassClassification(classes=list(range(k)))
    q = QualityComponent(task, window=60.0, now=0.0)
    clean = QualityComponent(task, window=60.0, now=0.0)
    bad_outputs: list[Any] = [
        np.full((2, k + 1), 1.0 / (k + 1)),  # wrong width: invalid outputs, never stored
        np.array([[np.nan, 0.5, 0.25, 0.25]]),  # NaN row: invalid output
        np.array([[0.9, 0.9, 0.1, 0.1]]),  # sums to 2: class kept, row not
        np.array([[1.5, -0.5, 0.0, 0.0]]),  # outside [0, 1]: class kept, row not
        np.array([[3.0, 1.0, 2.0, 0.5]]),  # logits
    ]
    outputs: list[Any] = []
    ids: list[Any] = []
    for i in range(60):
        outputs.append(good[i])
        ids.append([i])
        if i % 12 == 0:
            bad = bad_outputs[i // 12]
            outputs.append(bad)
            ids.append([f"bad{i}-{j}" for j in range(bad.shape[0])])
    q.ingest(CallBatch(now=1.0, wall=0.0, outputs=outputs, ids=ids, rows=[len(i) for i in ids]))
    clean.ingest(CallBatch(now=1.0, wall=0.0, outputs=list(good), ids=[[i] for i in range(60)], rows=[1] * 60))
    label_ids = [*range(60), "bad0-0", "bad12-0", "bad24-0", "bad36-0", "bad48-0", 59]
    labels = [*y.tolist(), 0, 1, 1, 1, 7, 0]
    q.log_feedback([*label_ids, 3], [*labels, "no such class"], now=2.0)
    clean.log_feedback(list(range(60)), y.tolist(), now=2.0)
    got, want = read(q, 3.0), read(clean, 3.0)
    assert got[("mlmon_probability_rows_invalid_total", ())] == 3
    assert got[("mlmon_labels_unmatched_total", ())] == 2  # the wrong-width and NaN outputs
    assert got[("mlmon_labels_invalid_total", ())] == 2  # class 7 and "no such class"
    assert got[("mlmon_labels_duplicate_total", ())] == 1
    # The three rows that are not probabilities still judge their predicted class ...
    assert got[("mlmon_labels_window", ())] == 62
    # ... but top-k and the AUCs are exactly those of the good rows alone.
    ranked = [key for key in want if key[0] in ("mlmon_top_k_accuracy", "mlmon_roc_auc", "mlmon_roc_auc_error_bound", "mlmon_pr_auc")]
    assert len(ranked) > 10
    for key in ranked:
        assert got[key] == want[key], key


def test_class_label_outputs_have_no_rows_and_mixed_windows_use_the_rows_they_have() -> None:
    task = MulticlassClassification(classes=["a", "b", "c"])
    q = QualityComponent(task, window=60.0, now=0.0)
    q.ingest(CallBatch(now=1.0, wall=0.0, outputs=[np.array(["a", "b"])], ids=[[0, 1]], rows=[2]))
    q.log_feedback([0, 1], ["a", "c"], now=2.0)
    got = read(q, 3.0)
    assert got[("mlmon_accuracy", ())] == 0.5
    assert not any(key[0] in ("mlmon_top_k_accuracy", "mlmon_roc_auc", "mlmon_pr_auc") for key in got)
    q.ingest(CallBatch(now=2.0, wall=0.0, outputs=[np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])], ids=[[2, 3]], rows=[2]))
    q.log_feedback([2, 3], ["c", "a"], now=2.5)
    got = read(q, 3.0)
    assert got[("mlmon_top_k_accuracy", (("k", "1"),))] == 0.5  # of the 2 rows, not the 4 labels
    assert got[("mlmon_accuracy", ())] == 0.5


def test_above_the_byte_cap_the_top_classes_give_exact_top_k_and_no_auc() -> None:
    rng = np.random.default_rng(9)
    n, k = 500, 40
    rows = rng.dirichlet(np.full(k, 0.3), size=n)
    y = rng.integers(0, k, n)
    # 40 classes × 1,000 pending × 4 bytes = 160,000 > 40,000: top 6 (6 bytes each).
    got = window_metrics(rows, y, max_pending=1000, max_row_bytes=40_000)
    for kk in (1, 3, 5):
        assert got[("mlmon_top_k_accuracy", (("k", str(kk)),))] == pytest.approx(
            top_k_accuracy_score(y, rows.astype(np.float32), k=kk, labels=list(range(k))), abs=1e-12
        )
    assert not any(key[0] in ("mlmon_roc_auc", "mlmon_pr_auc") for key in got)
    # Beyond the top classes kept, top-k is absent rather than wrong.
    got = window_metrics(rows, y, max_pending=1000, max_row_bytes=20_000, top_k=(1, 3, 5))
    assert ("mlmon_top_k_accuracy", (("k", "3"),)) in got and ("mlmon_top_k_accuracy", (("k", "5"),)) not in got


def test_top_k_is_configurable_and_checked() -> None:
    rows = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    got = window_metrics(rows, np.array([1, 1]), top_k=(2, 9))
    assert [key for key in got if key[0] == "mlmon_top_k_accuracy"] == [("mlmon_top_k_accuracy", (("k", "2"),))]
    assert got[("mlmon_top_k_accuracy", (("k", "2"),))] == 1.0
    for bad in ((0,), (1.5,), "3", (True,)):
        with pytest.raises(ValueError, match="top_k"):
            QualityComponent(MulticlassClassification(classes=[0, 1, 2]), window=60.0, top_k=bad)  # type: ignore[arg-type]


RANKED = ("mlmon_top_k_accuracy", "mlmon_roc_auc", "mlmon_roc_auc_error_bound", "mlmon_pr_auc", "mlmon_probability_rows_invalid_total")


def test_a_fleet_merge_of_two_monitors_equals_one_monitor_fed_both() -> None:
    rng = np.random.default_rng(21)
    n, k = 2000, 6
    task = mlmon.MulticlassClassification(classes=[f"c{i}" for i in range(k)])
    rows = rng.dirichlet(np.ones(k), size=n)
    y = rng.integers(0, k, n)
    rows[np.arange(n), y] += 0.5
    rows /= rows.sum(axis=1, keepdims=True)
    sent = rows.copy()
    sent[[350, 1234]] *= 2.0  # not probabilities: their classes count, their rows do not
    clock = FakeClock()
    mons = [mlmon.Monitor("m", task=task, emitters=[], clock=clock, instance=f"p{i}") for i in range(2)]
    whole = mlmon.Monitor("m", task=task, emitters=[], clock=clock, instance="whole")
    try:
        for b in range(n // 100):
            ids = np.arange(b * 100, (b + 1) * 100)
            for mon in (mons[b % 2], whole):
                with mon.track(ids=ids) as call:
                    call.outputs(sent[ids])
            clock.advance(0.5)
        for b in range(n // 100):
            ids = np.arange(b * 100, (b + 1) * 100)
            labels = [f"c{v}" for v in y[ids]]
            mons[b % 2].log_feedback(ids, labels)
            whole.log_feedback(ids, labels)
        clock.advance(1.0)
        merged = merge_states(mons[0], [m.fleet_state() for m in mons])
        assert merged.merged == 2 and merged.rejected == {}
        fleet = {(s.name, s.labels): s.value for s in merged.snapshot.samples if s.name in RANKED}
        one = {(s.name, s.labels): s.value for s in whole.snapshot().samples if s.name in RANKED}
        assert len(one) == 3 + 3 * k + 3 + 1 and fleet == one
        assert one[("mlmon_probability_rows_invalid_total", ())] == 2
        keep = np.ones(n, dtype=np.bool_)
        keep[[350, 1234]] = False
        exact = roc_auc_score(y[keep], rows[keep].astype(np.float32).astype(np.float64), multi_class="ovr")
        macro = one[("mlmon_roc_auc", (("average", "macro"),))]
        assert abs(macro - exact) <= one[("mlmon_roc_auc_error_bound", (("average", "macro"),))] + 1e-6
    finally:
        for m in (*mons, whole):
            m.close()


def test_the_report_draws_top_k_and_the_macro_aucs(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rng = np.random.default_rng(2)
    clock = FakeClock(start=1_700_000_000.0)
    task = mlmon.MulticlassClassification(classes=["a", "b", "c", "d", "e"])
    mon = mlmon.Monitor("kind", task=task, window=60.0, flush_interval=60.0, clock=clock, emitters=[JsonlEmitter(path)])
    predict = mon.track(ids="ids")(lambda rows, ids: rows)
    for step in range(6):
        ids = list(range(step * 300, (step + 1) * 300))
        rows = rng.dirichlet(np.ones(5), size=300)
        predict(rows, ids=ids)
        truth = (rows + rng.uniform(0, 0.5, rows.shape)).argmax(axis=1)
        mon.log_feedback(ids, [task.classes[c] for c in truth])
        clock.advance(10.0)
        mon.flush()
    mon.close()
    last = json.loads(path.read_text().splitlines()[-1])
    snap = {(n, tuple(sorted(labels.items()))): v for n, labels, v in last["samples"]}
    page = report.render(path)
    ranking = Svg(page, "ranking").series()
    assert {"top-1 accuracy", "top-3 accuracy", "PR AUC (macro)"} <= set(ranking)
    (top1,) = ranking["top-1 accuracy"]
    assert top1[-1][1] == pytest.approx(snap[("mlmon_top_k_accuracy", (("k", "1"),))], abs=0.01)
    (auc,) = Svg(page, "estimated-more").series()["ROC AUC (macro)"]
    assert auc[-1][1] == pytest.approx(snap[("mlmon_roc_auc", (("average", "macro"),))], abs=0.01)


@pytest.mark.parametrize(("datasource", "via"), [("prometheus", "direct"), ("graphite", "direct"), ("graphite", "statsd")])
def test_the_multiclass_dashboard_has_a_top_k_and_macro_auc_panel(datasource: str, via: str) -> None:
    board = dashboard(datasource, "kind", task="multiclass", via=via)
    (panel,) = [p for p in board["panels"] if p.get("title", "").startswith("Top-k accuracy")]
    queries = " ".join(t.get("expr", t.get("target", "")) for t in panel["targets"])
    assert "mlmon_top_k_accuracy" in queries and "mlmon_roc_auc" in queries and "mlmon_pr_auc" in queries
    assert ("macro" in queries) and len(panel["targets"]) == 3
    binary = dashboard(datasource, "kind", task="binary", via=via)
    assert not [p for p in binary["panels"] if p.get("title", "").startswith("Top-k accuracy")]


def test_many_rows_of_many_classes_are_added_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlmon.stats.multiclass as mc

    rng = np.random.default_rng(4)
    rows = rng.dirichlet(np.ones(50), size=400).astype(np.float32)
    y = rng.integers(0, 50, 400)
    whole = mc.RowMetrics(50, (1, 3, 5), mc.class_bins(50))
    whole.add(rows, y, (1, 3, 5))
    monkeypatch.setattr(mc, "_CHUNK_VALUES", 7 * 50)  # chunks of 7 rows
    chunked = mc.RowMetrics(50, (1, 3, 5), mc.class_bins(50))
    chunked.add(rows, y, (1, 3, 5))
    assert chunked.rows == whole.rows == 400
    assert chunked.hits.tolist() == whole.hits.tolist()
    np.testing.assert_array_equal(chunked.pos, whole.pos)
    np.testing.assert_array_equal(chunked.neg, whole.neg)
    assert whole.top_k((1, 3, 5))[1] == pytest.approx(top_k_accuracy_score(y, rows, k=3, labels=list(range(50))))


class Hostile:
    """An output whose conversion to an array raises."""

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise RuntimeError("no array for you")

    def __len__(self) -> int:
        return 1


def test_outputs_that_cannot_be_read_cost_only_themselves() -> None:
    task = MulticlassClassification(classes=[0, 1, 2])
    q = QualityComponent(task, window=60.0, now=0.0)
    good = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    q.ingest(CallBatch(now=1.0, wall=0.0, outputs=[good[:1], Hostile(), good[1:]], ids=[[0], [1], [2]], rows=[1, 1, 1]))
    q.log_feedback([0, 1, 2], [0, 1, 1], now=2.0)
    got = read(q, 3.0)
    assert got[("mlmon_labels_unmatched_total", ())] == 1
    assert got[("mlmon_top_k_accuracy", (("k", "1"),))] == 1.0
    assert got[("mlmon_roc_auc", (("class", "1"),))] == 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9), st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_all_classes_at_once_equal_the_binary_read_outs_class_by_class(k: int, n: int, seed: int) -> None:
    from mlmon.stats.binary import binned_auc, binned_average_precision
    from mlmon.stats.multiclass import RowMetrics

    rng = np.random.default_rng(seed)
    rows = rng.dirichlet(np.full(k, rng.uniform(0.1, 3.0)), size=n).astype(np.float32)
    r = RowMetrics(k, (1,), 20)  # coarse bins: many shared
    r.add(rows, rng.integers(0, k, n), (1,))
    auc, bound, ap = r.per_class()
    assert r.pos is not None and r.neg is not None
    cells = r.pos.size // k
    for c in range(k):
        pos, neg = r.pos[c * cells : (c + 1) * cells], r.neg[c * cells : (c + 1) * cells]
        a, e = binned_auc(pos, neg)
        v = binned_average_precision(pos, neg)
        if a is None:
            assert np.isnan(auc[c]) and np.isnan(bound[c])
        else:
            assert auc[c] == pytest.approx(a, abs=1e-12) and bound[c] == pytest.approx(e, abs=1e-12)
        if v is None:
            assert np.isnan(ap[c])
        else:
            assert ap[c] == pytest.approx(v, abs=1e-12)


def test_windows_without_rows_hold_no_histogram() -> None:
    q = QualityComponent(MulticlassClassification(classes=list(range(10))), window=60.0, now=0.0)
    q.ingest(CallBatch(now=1.0, wall=0.0, outputs=[np.array([1, 2, 3])], ids=[[0, 1, 2]], rows=[3]))
    q.log_feedback([0, 1, 2], [1, 2, 0], now=2.0)
    m = q._labels.merged(3.0)
    assert m.ranked is not None and m.ranked.pos is None and m.count == 3
    assert q.store._rows is None  # nor a row column in the join


def test_a_histogram_of_another_size_is_refused_before_anything_changes() -> None:
    from mlmon.quality import _LabelSlice
    from mlmon.stats.multiclass import RowMetrics

    task = MulticlassClassification(classes=[0, 1, 2])
    rows = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]], dtype=np.float32)
    good = _LabelSlice(task, True, 0, ((1,), 10))
    good.add(np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.zeros(2))
    good.add_rows(np.array([0.0, 1.0]), rows, None, (1,))
    bad = _LabelSlice(task, True, 0, ((1,), 10))
    bad.add(np.array([0.0]), np.array([2.0]), np.zeros(1))
    assert bad.ranked is not None
    bad.ranked.pos, bad.ranked.neg = np.zeros(7), np.zeros(7)  # as a corrupt state could decode
    before = (good.count, good.confusion.counts.copy() if good.confusion else None)
    with pytest.raises(ValueError, match="cells"):
        good.merge(bad)
    assert good.count == before[0] and good.confusion is not None
    np.testing.assert_array_equal(good.confusion.counts, before[1])
    with pytest.raises(ValueError, match="classes"):
        RowMetrics(3, (1,), 10).merge(RowMetrics(4, (1,), 10))


def test_the_monitor_takes_top_k_from_the_task_and_its_row_cap() -> None:
    import mlmon

    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(4), size=500)
    y = rng.choice(["a", "b", "c", "d"], 500).tolist()
    got = {}
    for cap in (64 << 20, 1 << 20):
        mon = mlmon.Monitor("mc-top-k", task=mlmon.MulticlassClassification(classes=["a", "b", "c", "d"], top_k=2),
                            emitters=[], max_row_bytes=cap)  # fmt: skip
        with mon.track(ids=list(range(500))) as call:
            call.outputs(P)
        mon.log_feedback(list(range(500)), y)
        snap = mon.snapshot()
        got[cap] = {dict(s.labels).get("k") for s in snap.select("mlmon_top_k_accuracy", k="*")}
        mon.close()
    assert got[64 << 20] == {"2"}
    # 4 classes x 1,000,000 pending x 4 bytes is over a 1 MiB cap: no rows kept, no top-k.
    assert got[1 << 20] == set()
    with pytest.raises(ValueError, match="top_k"):
        mlmon.MulticlassClassification(classes=["a", "b"], top_k=0)
