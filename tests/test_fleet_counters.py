"""Cumulative counters rebuild fleet values exactly: merge ≡ concatenation.

Two monitors (two processes, or two replicas) each see half of a stream. Summing their
counters, as ``sum by`` (Prometheus), ``sumSeries`` (Graphite) or StatsD's counter deltas do,
must give exactly the precision / recall / F1, MAE / RMSE, PSI, output histogram and outcome
rate of one monitor that saw the whole stream — checked against scikit-learn and mlmon's own
drift PSI on the same data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import (
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
)

import mlmon
from mlmon._component import CallBatch
from mlmon.drift import psi
from mlmon.features import FeatureComponent
from mlmon.features.component import MAX_BIN_SERIES
from mlmon.outputs import SCORE_EDGES, VALUE_EDGES, OutputComponent
from mlmon.quality import MAX_CONFUSION_CLASSES, QualityComponent
from mlmon.snapshot import CATALOG
from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression
from mlmon.testing import FakeClock

EPSILON = 1e-4  # DriftConfig's default floor, the clamp_min of the PromQL query


def monitor(instance: str, **kw: Any) -> tuple[mlmon.Monitor, FakeClock]:
    clock = FakeClock()
    return mlmon.Monitor("fleet", instance=instance, clock=clock, emitters=[], **kw), clock


def summed(snaps: Sequence[mlmon.Snapshot], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``sum by (every label but the identity)`` over the processes' snapshots."""
    out: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for snap in snaps:
        for s in snap.select(name):
            out[tuple(sorted(s.labels))] += s.value
    return dict(out)


def run_classifier(
    task: Any, outputs: npt.NDArray[Any], labels: Sequence[Any], parts: int
) -> list[mlmon.Snapshot]:
    """Feed ``parts`` monitors consecutive chunks of the stream; their snapshots."""
    snaps = []
    for k, idx in enumerate(np.array_split(np.arange(len(labels)), parts)):
        mon, clock = monitor(f"p{k}", task=task)

        @mon.track(ids="ids")
        def predict(out: Any, ids: Any) -> Any:
            return out

        for i in idx:
            predict(outputs[i], ids=[int(i)])
        clock.advance(1.0)
        mon.log_feedback([int(i) for i in idx], [labels[i] for i in idx])
        snaps.append(mon.flush())
        mon.close()
    return snaps


def fleet_binary(snaps: Sequence[mlmon.Snapshot], pos: str) -> tuple[float, float, float]:
    cm = summed(snaps, "mlmon_confusion_total")
    tp = sum(v for k, v in cm.items() if dict(k) == {"actual": pos, "predicted": pos})
    fp = sum(v for k, v in cm.items() if dict(k)["predicted"] == pos and dict(k)["actual"] != pos)
    fn = sum(v for k, v in cm.items() if dict(k)["actual"] == pos and dict(k)["predicted"] != pos)
    return tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)


def test_binary_confusion_counters_rebuild_fleet_precision_recall_f1() -> None:
    rng = np.random.default_rng(7)
    n = 1001
    truth = (rng.uniform(size=n) < 0.3).astype(int)
    scores = np.clip(0.35 * truth + rng.uniform(size=n) * 0.7, 0.0, 1.0)
    task = BinaryClassification(threshold=0.5)
    halves = run_classifier(task, scores, truth.tolist(), parts=2)
    (whole,) = run_classifier(task, scores, truth.tolist(), parts=1)
    p, r, f, _ = precision_recall_fscore_support(
        truth, (scores >= 0.5).astype(int), average="binary", zero_division=np.nan
    )
    fleet = fleet_binary(halves, "1")
    assert fleet == pytest.approx((p, r, f), rel=1e-12)
    assert fleet == pytest.approx(
        (whole.get("mlmon_precision"), whole.get("mlmon_recall"), whole.get("mlmon_f1")), rel=1e-12
    )
    # The halves' own gauges are not the fleet's: averaging them is the wrong aggregation.
    assert all(s.get("mlmon_precision") is not None for s in halves)
    assert summed(halves, "mlmon_confusion_total") == summed([whole], "mlmon_confusion_total")
    # Four cells, class labels as the task names them, every pair counted once.
    cells = summed([whole], "mlmon_confusion_total")
    assert len(cells) == 4 and sum(cells.values()) == n
    assert CATALOG["mlmon_confusion_total"].kind == "counter"


def test_binary_cells_use_the_task_class_names() -> None:
    task = BinaryClassification(threshold=0.5, positive="spam", negative="ham")
    (snap,) = run_classifier(task, np.array([0.9, 0.1, 0.8]), ["spam", "spam", "ham"], parts=1)
    cells = {tuple(sorted(s.labels)): s.value for s in snap.select("mlmon_confusion_total")}
    assert cells == {
        (("actual", "ham"), ("predicted", "ham")): 0.0,
        (("actual", "ham"), ("predicted", "spam")): 1.0,
        (("actual", "spam"), ("predicted", "ham")): 1.0,
        (("actual", "spam"), ("predicted", "spam")): 1.0,
    }


def test_multiclass_confusion_counters_rebuild_per_class_and_averages() -> None:
    rng = np.random.default_rng(8)
    classes = ("a", "b", "c")
    n = 900
    truth = rng.integers(0, 3, size=n)
    pred = np.where(rng.uniform(size=n) < 0.6, truth, rng.integers(0, 3, size=n))
    outputs = np.array([classes[k] for k in pred], dtype=object)
    task = MulticlassClassification(classes=classes)
    labels = [classes[k] for k in truth]
    parts = run_classifier(task, outputs, labels, parts=3)
    (whole,) = run_classifier(task, outputs, labels, parts=1)
    cm = summed(parts, "mlmon_confusion_total")
    assert len(cm) == 9
    counts = np.zeros((3, 3))
    for key, v in cm.items():
        d = dict(key)
        counts[classes.index(d["actual"]), classes.index(d["predicted"])] = v
    tp = np.diag(counts)
    precision, recall = tp / counts.sum(axis=0), tp / counts.sum(axis=1)
    f1 = 2 * tp / (counts.sum(axis=0) + counts.sum(axis=1))
    sk = precision_recall_fscore_support(truth, pred, labels=[0, 1, 2], zero_division=np.nan)
    np.testing.assert_allclose(precision, sk[0], rtol=1e-12)
    np.testing.assert_allclose(recall, sk[1], rtol=1e-12)
    np.testing.assert_allclose(f1, sk[2], rtol=1e-12)
    for k, cls in enumerate(classes):
        assert whole.get("mlmon_precision", **{"class": cls}) == pytest.approx(
            precision[k], rel=1e-12
        )
    micro = precision_recall_fscore_support(truth, pred, average="micro")
    assert tp.sum() / counts.sum() == pytest.approx(micro[0], rel=1e-12)
    assert whole.get("mlmon_precision", average="macro") == pytest.approx(
        precision.mean(), rel=1e-12
    )


def test_many_classes_emit_only_the_cells_that_counted() -> None:
    names = tuple(f"c{i}" for i in range(MAX_CONFUSION_CLASSES + 1))
    q = QualityComponent(MulticlassClassification(classes=names), window=60.0)
    q.add_joined(np.array([0.0, 1.0, 1.0]), np.array([0.0, 2.0, 1.0]), np.zeros(3), 1.0)
    cells = {
        (lab["actual"], lab["predicted"]): v
        for name, v, lab in q.samples(2.0)
        if name == "mlmon_confusion_total"
    }
    assert cells == {("c0", "c0"): 1, ("c2", "c1"): 1, ("c1", "c1"): 1}
    small = QualityComponent(MulticlassClassification(classes=names[:3]), window=60.0)
    assert sum(1 for name, _, _ in small.samples(0.0) if name == "mlmon_confusion_total") == 9


def test_regression_error_sums_rebuild_fleet_mae_rmse() -> None:
    rng = np.random.default_rng(9)
    n = 1000
    truth = rng.normal(10.0, 3.0, size=n)
    pred = truth + rng.normal(0.5, 2.0, size=n)
    snaps = run_classifier(Regression(), pred, truth.tolist(), parts=2)
    (whole,) = run_classifier(Regression(), pred, truth.tolist(), parts=1)

    def total(name: str) -> float:
        return summed(snaps, name)[()]

    count = total("mlmon_regression_labels_total")
    assert count == n
    mae = total("mlmon_regression_abs_error_sum_total") / count
    rmse = math.sqrt(total("mlmon_regression_squared_error_sum_total") / count)
    bias = total("mlmon_regression_error_sum_total") / count
    assert mae == pytest.approx(mean_absolute_error(truth, pred), rel=1e-12)
    assert rmse == pytest.approx(math.sqrt(mean_squared_error(truth, pred)), rel=1e-12)
    assert bias == pytest.approx(float(np.mean(pred - truth)), rel=1e-9)
    assert (mae, rmse) == pytest.approx(
        (whole.get("mlmon_mae"), whole.get("mlmon_rmse")), rel=1e-12
    )


def test_counters_are_cumulative_past_the_window_and_restart_on_reset() -> None:
    q = QualityComponent(Regression(), window=10.0, now=0.0)
    q.add_joined(np.array([1.0, 2.0]), np.array([0.0, 4.0]), np.zeros(2), 1.0)
    q.add_joined(np.array([3.0]), np.array([3.0]), np.zeros(1), 50.0)
    got = {name: v for name, v, _ in q.samples(100.0)}
    assert got["mlmon_labels_window"] == 0  # the window forgot them ...
    assert got["mlmon_regression_labels_total"] == 3  # ... the counters did not
    assert got["mlmon_regression_abs_error_sum_total"] == 3.0
    assert got["mlmon_regression_squared_error_sum_total"] == 5.0
    assert got["mlmon_regression_error_sum_total"] == -1.0
    q.reset()
    got = {name: v for name, v, _ in q.samples(100.0)}
    assert got["mlmon_regression_labels_total"] == 0
    assert got["mlmon_regression_abs_error_sum_total"] == 0.0


def test_no_task_emits_no_quality_counters() -> None:
    q = QualityComponent(None, window=10.0)
    q.add_joined(np.array([1.0]), np.array([0.0]), np.zeros(1), 1.0)
    names = {name for name, _, _ in q.samples(2.0)}
    assert not {n for n in names if n.startswith(("mlmon_confusion", "mlmon_regression"))}


# --------------------------------------------------------------------------- drift


def fleet_psi(snaps: Sequence[mlmon.Snapshot], counter: str, ratio: str, **labels: str) -> float:
    """The PromQL of docs/metrics.md, in numpy: window shares of the summed counts against the
    reference shares, both floored at epsilon."""
    counts = summed(snaps, counter)
    ref = {}
    for snap in snaps:  # the same constant in every process (max by in PromQL)
        for s in snap.select(ratio, **labels):
            ref[tuple(sorted(s.labels))] = s.value
    keys = sorted(ref)
    c = np.array([counts[k] for k in keys])
    p = np.maximum(np.array([ref[k] for k in keys]), EPSILON)
    q = np.maximum(c / c.sum(), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


@pytest.fixture(scope="module")
def reference() -> mlmon.Reference:
    rng = np.random.default_rng(10)
    X = np.empty((4000, 3), dtype=object)
    X[:, 0] = rng.normal(size=4000)
    X[:, 1] = rng.exponential(size=4000)
    X[:, 2] = rng.choice(["red", "green", "blue"], size=4000, p=[0.5, 0.3, 0.2])
    return mlmon.Reference.from_data(
        X, feature_names=["a", "b", "color"], categorical=["color"], outputs=rng.uniform(size=4000)
    )


def run_features(
    reference: mlmon.Reference, X: npt.NDArray[Any], y: npt.NDArray[Any], parts: int
) -> list[mlmon.Snapshot]:
    snaps = []
    for k, idx in enumerate(np.array_split(np.arange(len(X)), parts)):
        mon, clock = monitor(f"p{k}", reference=reference, drift=mlmon.DriftConfig(min_rows=10))

        @mon.track(features="X")
        def predict(X: Any, out: Any) -> Any:
            return out

        predict(X[idx], y[idx])
        clock.advance(1.0)
        snaps.append(mon.flush())
        mon.close()
    return snaps


def test_feature_and_output_bin_counters_rebuild_fleet_psi(reference: mlmon.Reference) -> None:
    rng = np.random.default_rng(11)
    n = 3000
    X = np.empty((n, 3), dtype=object)
    X[:, 0] = rng.normal(0.4, 1.2, size=n)  # drifted
    X[:, 1] = rng.exponential(size=n)
    X[:, 2] = rng.choice(["red", "green", "blue", "pink"], size=n, p=[0.3, 0.3, 0.2, 0.2])
    y = rng.beta(2.0, 3.0, size=n)
    halves = run_features(reference, X, y, parts=2)
    (whole,) = run_features(reference, X, y, parts=1)
    for feature in ("a", "b", "color"):
        fleet = fleet_psi(
            halves, "mlmon_feature_bin_total", "mlmon_feature_reference_ratio", feature=feature
        )
        gauge = whole.get("mlmon_feature_drift_psi", feature=feature)
        assert gauge is not None and fleet == pytest.approx(gauge, rel=1e-9, abs=1e-12)
        # and against drift.psi on the raw counts of the whole stream
        prof = reference[feature]
        assert fleet == pytest.approx(
            psi(
                prof.cells(),
                [
                    v
                    for k, v in sorted(summed([whole], "mlmon_feature_bin_total").items())
                    if ("feature", feature) in k
                ],
            ),
            rel=1e-9,
        )
    fleet_out = fleet_psi(
        halves, "mlmon_output_reference_bin_total", "mlmon_output_reference_ratio"
    )
    assert fleet_out == pytest.approx(whole.get("mlmon_output_drift_psi"), rel=1e-9)
    assert (
        fleet_psi(halves, "mlmon_feature_bin_total", "mlmon_feature_reference_ratio", feature="a")
        > 0.1
    )
    # 10 quantile bins + underflow + overflow per numeric feature; the categories + "other".
    bins_a = [s for s in whole.select("mlmon_feature_bin_total", feature="a")]
    assert [s.label("bin") for s in bins_a] == [f"{i:02d}" for i in range(12)]
    assert sum(s.value for s in bins_a) == n
    ratios = [s.value for s in whole.select("mlmon_feature_reference_ratio", feature="color")]
    assert len(ratios) == 4 and sum(ratios) == pytest.approx(1.0)


def test_features_with_more_cells_than_the_cap_emit_no_bin_series() -> None:
    rng = np.random.default_rng(12)
    ref = mlmon.Reference.from_data(
        rng.normal(size=(5000, 2)), feature_names=["fine", "coarse"], bins=MAX_BIN_SERIES
    )
    coarse = mlmon.Reference.from_data(
        rng.normal(size=(5000, 1)), feature_names=["coarse"], bins=MAX_BIN_SERIES - 2
    )
    ref = mlmon.Reference(rows=ref.rows, features=(ref["fine"], coarse["coarse"]))
    comp = FeatureComponent(ref, window=60.0, now=0.0, drift=mlmon.DriftConfig(min_rows=10))
    comp.ingest(CallBatch(now=1.0, wall=0.0, features=[rng.normal(size=(100, 2))], rows=[100]))
    feats = {
        lab["feature"] for name, _, lab in comp.samples(2.0) if name == "mlmon_feature_bin_total"
    }
    assert feats == {"coarse"}  # 50 cells: kept; 52 cells: over the cap
    assert any(
        lab.get("feature") == "fine"
        for name, _, lab in comp.samples(2.0)
        if name == "mlmon_feature_drift_psi"
    )


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize(
    ("task", "edges", "values"),
    [
        (BinaryClassification(), SCORE_EDGES, [0.0, 0.05, 0.1, 0.55, 0.999, 1.0, 1.5, -0.2]),
        (None, VALUE_EDGES, [-2e6, -3.0, -1e-4, 0.0, 2e-3, 7.0, 1e6, 5e6]),
    ],
)
def test_output_bins_of_halves_sum_to_the_whole(
    task: Any, edges: tuple[float, ...], values: list[float]
) -> None:
    rng = np.random.default_rng(13)
    stream = np.concatenate([values, rng.choice(values, size=200)])
    parts = [OutputComponent(task, 60.0) for _ in range(2)]
    whole = OutputComponent(task, 60.0)
    for comp, chunk in [(parts[0], stream[:77]), (parts[1], stream[77:]), (whole, stream)]:
        comp.ingest(CallBatch(now=1.0, wall=0.0, outputs=[chunk], rows=[chunk.size]))

    def bins(comp: OutputComponent) -> dict[str, float]:
        return {
            lab["bin"]: v for name, v, lab in comp.samples(2.0) if name == "mlmon_output_bin_total"
        }

    fleet = {k: bins(parts[0])[k] + bins(parts[1])[k] for k in bins(whole)}
    assert fleet == bins(whole)
    e = np.array(edges)
    expected = np.concatenate(
        ([np.sum(stream < e[0])], np.histogram(stream, bins=e)[0], [np.sum(stream > e[-1])])
    )
    assert [fleet[f"{i:02d}"] for i in range(len(edges) + 1)] == expected.tolist()


def test_no_output_bins_before_a_finite_score() -> None:
    comp = OutputComponent(None, 60.0)
    assert not [n for n, _, _ in comp.samples(1.0) if n == "mlmon_output_bin_total"]


# --------------------------------------------------------------------------- outcomes


def test_outcome_and_row_counters_rebuild_the_fleet_outcome_rate() -> None:
    snaps = []
    clicks = [3, 0, 5, 1]
    for k, rows in enumerate((4, 12, 7, 1)):
        mon, clock = monitor(f"p{k}")

        @mon.track
        def predict(x: Any) -> Any:
            return x

        predict(np.zeros(rows))
        clock.advance(1.0)
        mon.log_outcome("click", ids=list(range(clicks[k])))
        snaps.append(mon.flush())
        mon.close()
    outcome = summed(snaps, "mlmon_outcome_total")[(("outcome", "click"),)]
    rows = summed(snaps, "mlmon_rows_total")[()]
    assert outcome / rows == 9 / 24
    # Averaging each process's rate is the wrong aggregation: it weighs 1 row like 12.
    rates = [s.get("mlmon_outcome_rate", outcome="click") for s in snaps]
    assert sum(r for r in rates if r is not None) / len(rates) != pytest.approx(9 / 24)
