"""Monitors sharing a RedisStore: labels join in any process, counted where they arrive."""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, precision_recall_fscore_support

import mlmon
from mlmon.stores import RedisStore
from mlmon.testing import FakeClock

pytestmark = pytest.mark.integration


def monitor(url: str, name: str = "shared", **kw: Any) -> mlmon.Monitor:
    kw.setdefault("task", mlmon.BinaryClassification())
    return mlmon.Monitor(name, store=RedisStore(url, retry_for=5.0), flush_interval=60.0, window=600.0, **kw)


def stream(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    labels = (rng.random(n) < np.where(scores > 0.5, 0.8, 0.3)).astype(int)
    return scores, labels


def check_labels_join_in_another_monitor(url: str) -> None:
    n = 2000
    scores, labels = stream(n)
    ids = [f"req-{i}" for i in range(n)]
    a, b = monitor(url), monitor(url)
    predict = a.track(ids="rid")(lambda x, rid: x)
    for i in range(n):
        predict(float(scores[i]), ids[i])
    a.flush()  # the background cycle writes the predictions
    b.log_feedback(ids, labels.tolist())  # the labels arrive in another worker
    snap = b.flush()
    want = precision_recall_fscore_support(labels, (scores >= 0.5).astype(int), average="binary")
    assert snap.get("mlmon_labels_total") == n
    assert snap.get("mlmon_labels_unmatched_total") == 0
    assert (snap.get("mlmon_precision"), snap.get("mlmon_recall"), snap.get("mlmon_f1")) == pytest.approx(want[:3], rel=1e-12)
    assert a.flush().get("mlmon_labels_total") == 0  # counted where the label arrived
    assert snap.get("mlmon_store_up") == 1.0
    a.close()
    b.close()


def test_labels_join_in_another_monitor_single_node(redis_server: Any) -> None:
    check_labels_join_in_another_monitor(redis_server.url)


def test_labels_join_in_another_monitor_cluster(redis_cluster: Any) -> None:
    check_labels_join_in_another_monitor(redis_cluster.url)


def test_a_label_that_arrives_before_its_prediction_is_written_is_retried(redis_server: Any) -> None:
    a, b = monitor(redis_server.url), monitor(redis_server.url)
    predict = a.track(ids="rid")(lambda x, rid: x)
    predict(0.9, "early")
    b.log_feedback(["early"], [1])
    assert b.flush().get("mlmon_labels_total") == 0  # not written yet: retried, not unmatched
    assert b.flush().get("mlmon_labels_unmatched_total") == 0
    a.flush()
    snap = b.flush()
    assert (snap.get("mlmon_labels_total"), snap.get("mlmon_labels_unmatched_total")) == (1.0, 0.0)
    a.close()
    b.close()


def test_regression_errors_join_across_monitors(redis_server: Any) -> None:
    rng = np.random.default_rng(3)
    y_pred, y_true = rng.normal(size=500), rng.normal(size=500)
    a = monitor(redis_server.url, "reg", task=mlmon.Regression())
    b = monitor(redis_server.url, "reg", task=mlmon.Regression())
    predict = a.track(ids="rid")(lambda x, rid: x)
    for i, v in enumerate(y_pred):
        predict(float(v), i)
    a.flush()
    b.log_feedback(list(range(500)), y_true.tolist())
    snap = b.flush()
    assert snap.get("mlmon_mae") == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-9)
    a.close()
    b.close()


def test_generated_ids_never_reach_the_shared_store(redis_server: Any) -> None:
    a = monitor(redis_server.url, "gen")
    with a.track() as call:
        call.outputs(0.9)
        ids = list(call.ids)
    a.flush()
    assert redis_server.client().dbsize() == 0  # ids another process could never know
    a.log_feedback(ids, [1])  # with a store, labels go to the store: generated ids do not join
    snap = a.flush()
    assert snap.get("mlmon_labels_total") == 0
    a.close()


def test_redis_down_never_reaches_predict_and_is_counted(redis_server: Any) -> None:
    url = redis_server.url
    redis_server.stop()
    a = mlmon.Monitor("down", task=mlmon.BinaryClassification(), store=RedisStore(url, deadline=0.5), clock=FakeClock())
    predict = a.track(ids="rid")(lambda x, rid: x)
    for i in range(100):
        assert predict(0.7, i) == 0.7
    a.log_feedback(list(range(100)), [1] * 100)
    snap = a.flush()
    assert snap.get("mlmon_calls_total") == 100
    assert snap.get("mlmon_store_up") == 0.0
    assert sum(s.value for s in snap.samples if s.name == "mlmon_store_errors_total") >= 1
    a.close()


def _worker(url: str, lo: int, hi: int) -> None:
    scores, _ = stream(4000, seed=7)
    mon = monitor(url, "mp")
    predict = mon.track(ids="rid")(lambda x, rid: x)
    for i in range(lo, hi):
        predict(float(scores[i]), f"r{i}")
    mon.close()  # the last cycle writes what is left


def test_predictions_from_spawned_processes_join_labels_given_to_a_third(redis_server: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(redis_server.url, k * 1000, (k + 1) * 1000)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    scores, labels = stream(4000, seed=7)
    b = monitor(redis_server.url, "mp")
    b.log_feedback([f"r{i}" for i in range(4000)], labels.tolist())
    snap = b.flush()
    want = precision_recall_fscore_support(labels, (scores >= 0.5).astype(int), average="binary")
    assert snap.get("mlmon_labels_total") == 4000
    assert snap.get("mlmon_precision") == pytest.approx(want[0], rel=1e-12)
    b.close()


def check_segments_join_in_another_monitor(url: str) -> None:
    """A prediction's segment travels through Redis: the label joined in another monitor counts
    in that segment, named there although that monitor never saw the segment."""
    n = 3000
    scores, labels = stream(n, seed=3)
    ids = [f"seg-{i}" for i in range(n)]
    segs = np.array(["eu", "us", "é\nx"])[np.arange(n) % 3]
    a, b = monitor(url, name="shared-seg"), monitor(url, name="shared-seg")
    for lo in range(0, n, 500):
        with a.track(ids=ids[lo : lo + 500], segment=segs[lo : lo + 500]) as call:
            call.outputs(scores[lo : lo + 500])
    a.flush()
    b.log_feedback(ids, labels.tolist())
    snap = b.flush()
    assert snap.get("mlmon_labels_total") == n
    for name in ("eu", "us", "é_x"):
        sel = segs == {"é_x": "é\nx"}.get(name, name)
        want = precision_recall_fscore_support(labels[sel], (scores[sel] >= 0.5).astype(int), average="binary")
        assert snap.get("mlmon_labels_total", segment=name) == int(sel.sum())
        assert snap.get("mlmon_precision", segment=name) == pytest.approx(want[0], rel=1e-12)
    a.close()
    b.close()


def test_segments_join_in_another_monitor_single_node(redis_server: Any) -> None:
    check_segments_join_in_another_monitor(redis_server.url)


def test_segments_join_in_another_monitor_cluster(redis_cluster: Any) -> None:
    check_segments_join_in_another_monitor(redis_cluster.url)


def test_a_reporter_cycle_syncs_the_store_with_the_interval_given_back(redis_server: Any, monkeypatch: Any) -> None:
    """The store's network round trip is a wait inside background work: the switch interval
    goes back to the application's for its duration, and is short again after."""
    import sys

    from mlmon._handover import SWITCH_S, handing_over

    seen: list[float] = []
    real_sync = RedisStore.sync

    def sync(self: RedisStore, now: float) -> Any:
        seen.append(sys.getswitchinterval())
        return real_sync(self, now)

    monkeypatch.setattr(RedisStore, "sync", sync)
    old = sys.getswitchinterval()
    mon = monitor(redis_server.url, name="switch_store")
    try:
        sys.setswitchinterval(0.005)
        predict = mon.track(ids="rid")(lambda x, rid: x)
        predict(0.9, "a")
        with handing_over():  # as the reporter's tick runs the cycle
            snap = mon.flush()
            assert sys.getswitchinterval() == pytest.approx(SWITCH_S)
        assert seen == [0.005]
        assert snap.get("mlmon_store_up") == 1.0
        assert sys.getswitchinterval() == 0.005
    finally:
        mon.close()
        sys.setswitchinterval(old)
