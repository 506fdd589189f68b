"""mlmon.evaluate on pandas: equal to a live monitor fed the same rows; chunking; bad input; report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlmon
from mlmon.offline import LIVE_ONLY, META_COLUMNS, series_name
from mlmon.snapshot import Snapshot
from mlmon.testing import FakeClock

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["amount", "age", "plan"]


def make_log(n: int = 4000, seed: int = 0, tz: str | None = "UTC") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.uniform(size=n)
    log = pd.DataFrame({
        "id": [f"r{i}" for i in range(n)],
        "ts": pd.date_range("2026-03-01", periods=n, freq="37s", tz=tz),
        "amount": rng.normal(50, 10, n) + np.linspace(0, 15, n),  # drifts over time
        "age": rng.normal(40, 12, n),
        "plan": rng.choice(["free", "pro", "team"], n),
        "score": score,
        "label": (rng.uniform(size=n) < score).astype(float),
        "click": (rng.uniform(size=n) < 0.1).astype(int),
    })  # fmt: skip
    log.loc[rng.uniform(size=n) < 0.2, "label"] = np.nan  # a fifth never got a label
    return log


def make_reference(seed: int = 1) -> mlmon.Reference:
    rng = np.random.default_rng(seed)
    n = 3000
    train = pd.DataFrame({
        "amount": rng.normal(50, 10, n), "age": rng.normal(40, 12, n),
        "plan": rng.choice(["free", "pro", "team"], n, p=[0.5, 0.3, 0.2]),
    })  # fmt: skip
    return mlmon.Reference.from_data(train, categorical=["plan"], outputs=rng.uniform(size=n))


TASK = mlmon.BinaryClassification(threshold=0.5)


def live_snapshot(rows: pd.DataFrame, ref: mlmon.Reference, batch: int) -> Snapshot:
    """What a live monitor reports after serving ``rows`` in batches of ``batch``, written
    here with the public API only."""
    mon = mlmon.Monitor("offline", task=TASK, reference=ref, emitters=[], clock=FakeClock(), max_pending=len(rows) + 1)
    try:
        for s in range(0, len(rows), batch):
            b = rows.iloc[s : s + batch]
            with mon.track(features=b[FEATURES]) as call:
                call.outputs(b["score"].to_numpy())
            ids = np.asarray(list(call.ids))
            labelled = b["label"].notna().to_numpy()
            mon.log_feedback(ids[labelled], b["label"].to_numpy()[labelled])
            clicked = b["click"].to_numpy() != 0
            if clicked.any():
                mon.log_outcome("click", ids=ids[clicked], value=b["click"].to_numpy()[clicked].astype(float))
        return mon.snapshot()
    finally:
        mon.close()


def metric_columns(row: pd.Series[Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k not in META_COLUMNS and not pd.isna(v)}


def test_each_chunk_equals_what_a_live_monitor_fed_its_rows_reports() -> None:
    log, ref = make_log(), make_reference()
    result = mlmon.evaluate(
        log, outputs="score", labels="label", outcomes=["click"], ids="id", timestamp="ts",
        chunk="6h", task=TASK, reference=ref, batch_rows=500,
    )  # fmt: skip
    hours = log["ts"].dt.floor("6h")
    assert result["rows"].tolist() == hours.value_counts(sort=False).sort_index().tolist()
    assert len(result) >= 4
    for i, (start, rows) in enumerate(log.groupby(hours, sort=True)):
        live = live_snapshot(rows, ref, 500)
        expected = {series_name(s.name, s.labels): s.value for s in live if s.name not in LIVE_ONLY}
        expected = {k: v for k, v in expected.items() if not k.startswith(("mlmon_process_", "mlmon_system_", "mlmon_internal", "mlmon_emit"))}
        expected = {k: v for k, v in expected.items() if not (k.startswith("mlmon_dropped_total") and "outcomes" not in k)}
        got = metric_columns(result.iloc[i])
        assert got == expected
        assert result["start"].iloc[i] == start
        assert result["end"].iloc[i] == start + pd.Timedelta("6h")
    # independent of mlmon: the first chunk's confusion matrix from the raw columns
    first = log[hours == hours.iloc[0]]
    lab = first["label"].dropna()
    pred = (first.loc[lab.index, "score"] >= 0.5).astype(int)
    tp = int(((pred == 1) & (lab == 1)).sum())
    fp = int(((pred == 1) & (lab == 0)).sum())
    row = result.iloc[0]
    assert row['mlmon_confusion_total{actual="1",predicted="1"}'] == tp
    assert row['mlmon_confusion_total{actual="0",predicted="1"}'] == fp
    assert row["mlmon_precision"] == pytest.approx(tp / (tp + fp))
    assert row["mlmon_labels_total"] == len(lab)
    assert row["mlmon_pending_predictions"] == len(first) - len(lab)
    assert row['mlmon_outcome_total{outcome="click"}'] == first["click"].sum()
    # drift: the amount feature moves away from the reference over time, age does not
    psi = result['mlmon_feature_drift_psi{feature="amount"}']
    assert psi.iloc[-2] > 0.2 > psi.iloc[0]  # the last chunk is too small for a drift decision
    assert result['mlmon_feature_drift_psi{feature="age"}'].max() < 0.1
    assert not any(c.startswith(("mlmon_latency", "mlmon_calls")) for c in result.columns)
    assert (result[["out_of_order", "duplicate_ids", "internal_errors"]] == 0).all().all()


# -- the fast path against a live monitor, case by case --------------------------------------

SKIP_LIVE = ("mlmon_process_", "mlmon_system_", "mlmon_internal", "mlmon_emit")


def live_metrics(
    rows: pd.DataFrame, *, batch: int, outputs: str | list[str], features: list[str], labels: str,
    outcomes: tuple[str, ...] = (), **monitor: Any,
) -> dict[str, float]:
    """The metrics a live monitor reports after serving ``rows`` in batches of ``batch``
    through the public API (track, call.outputs, call.ids, log_feedback, log_outcome)."""
    mon = mlmon.Monitor("offline", emitters=[], clock=FakeClock(), max_pending=len(rows) + 1, **monitor)
    try:
        for s in range(0, len(rows), batch):
            b = rows.iloc[s : s + batch]
            out = b[outputs].to_numpy() if isinstance(outputs, str) else b[outputs].to_numpy(dtype=np.float64)
            with mon.track(features=b[features] if features else None) as call:
                call.outputs(out)
                ids = np.asarray(list(call.ids))  # read in the block: stored whatever the task
            labelled = b[labels].notna().to_numpy()
            if labelled.any():
                mon.log_feedback(ids[labelled], b[labels].to_numpy()[labelled])
            for name in outcomes:
                v = b[name].to_numpy(dtype=np.float64)
                hit = np.isfinite(v) & (v != 0)
                if hit.any():
                    mon.log_outcome(name, ids=ids[hit], value=v[hit])
        snap = mon.snapshot()
    finally:
        mon.close()
    got = {series_name(s.name, s.labels): s.value for s in snap if s.name not in LIVE_ONLY}
    got = {k: v for k, v in got.items() if not k.startswith(SKIP_LIVE)}
    return {k: v for k, v in got.items() if not (k.startswith("mlmon_dropped_total") and "outcomes" not in k)}


def awkward_log(n: int, seed: int) -> pd.DataFrame:
    """Rows with every kind of trouble a log has: missing and invalid labels, NaN outputs,
    missing features, zero / NaN / fractional outcomes, a nullable integer feature."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(size=n)
    score[rng.uniform(size=n) < 0.03] = np.nan  # outputs the task counts invalid
    score[5] = 1.7  # a score that is not a probability
    label: list[Any] = list((rng.uniform(size=n) < np.nan_to_num(score, nan=0.5)).astype(int))
    for i in np.flatnonzero(rng.uniform(size=n) < 0.2):
        label[i] = None if i % 2 else np.nan  # no label (yet)
    for i in np.flatnonzero(rng.uniform(size=n) < 0.02):
        label[i] = "yes"  # a label the task cannot read
    label[150:200] = [np.nan] * 50
    label[160], score[160] = 1, 0.8  # the only label of its batch (rows 150-199): a single-label join
    amount = rng.normal(50, 10, n)
    amount[rng.uniform(size=n) < 0.05] = np.nan
    return pd.DataFrame({
        "amount": amount,
        "age": pd.array(np.where(rng.uniform(size=n) < 0.05, -1, rng.integers(18, 90, n)), dtype="Int64").astype("Int64"),
        "plan": rng.choice(["free", "pro", "team", None], n),
        "score": score,
        "label": pd.Series(label, dtype=object),
        "click": np.where(rng.uniform(size=n) < 0.1, rng.choice([1.0, 2.5, np.nan], n), 0.0),
    })  # fmt: skip


def assert_chunks_equal_live(result: pd.DataFrame, log: pd.DataFrame, chunk: int, **live: Any) -> None:
    assert len(result) == -(-len(log) // chunk)
    for i, s in enumerate(range(0, len(log), chunk)):
        expected = live_metrics(log.iloc[s : s + chunk], **live)
        assert metric_columns(result.iloc[i]) == expected


def test_fast_path_binary_with_missing_and_invalid_labels_outputs_and_features() -> None:
    log = awkward_log(900, seed=11)
    log["age"] = log["age"].mask(log["age"] < 0)  # pd.NA in a nullable integer column
    rng = np.random.default_rng(12)
    train = pd.DataFrame({"amount": rng.normal(50, 10, 2000), "age": rng.integers(18, 90, 2000).astype(float), "plan": rng.choice(["free", "pro", "team"], 2000)})
    ref = mlmon.Reference.from_data(train, categorical=["plan"], outputs=rng.uniform(size=2000))
    res = mlmon.evaluate(log, outputs="score", labels="label", outcomes=["click"], chunk=300, task=TASK, reference=ref, batch_rows=50)
    assert_chunks_equal_live(
        res, log, 300, batch=50, outputs="score", features=["amount", "age", "plan"], labels="label",
        outcomes=("click",), task=TASK, reference=ref,
    )  # fmt: skip
    first = res.iloc[0]
    assert first["mlmon_labels_invalid_total"] > 0 and first["mlmon_output_invalid_total"] > 0
    assert first["mlmon_labels_unmatched_total"] > 0  # labels of NaN outputs: never stored
    assert first["mlmon_pending_predictions"] > 0
    assert (res["internal_errors"] == 0).all()


def test_fast_path_numeric_features_without_reference_and_no_task() -> None:
    log = awkward_log(700, seed=13)
    log["label"] = pd.to_numeric(log["label"], errors="coerce")
    ints = log.assign(age=log["age"].astype(np.int64))  # an int64 column read as numbers
    nullable = log.assign(age=log["age"].mask(log["age"] < 0))  # Int64 with pd.NA: missing
    kw: dict[str, Any] = dict(batch=64, outputs="score", features=["amount", "age"], labels="label")
    for frame, task in ((ints, TASK), (nullable, TASK), (ints, None)):
        res = mlmon.evaluate(frame, outputs="score", labels="label", features=["amount", "age"], chunk=350, task=task, batch_rows=64)
        assert_chunks_equal_live(res, frame, 350, task=task, feature_names=["amount", "age"], **kw)
        assert res['mlmon_feature_missing_ratio{feature="amount"}'].iloc[0] > 0
        assert (res['mlmon_feature_missing_ratio{feature="age"}'] > 0).all() == (frame is nullable)
        if task is None:  # labels join and count without a task
            assert res["mlmon_labels_total"].sum() == frame["label"].notna().sum() - (frame["label"].notna() & frame["score"].isna()).sum()


def test_fast_path_multiclass_and_regression() -> None:
    rng = np.random.default_rng(14)
    n = 800
    p = rng.dirichlet([1, 1, 1], size=n)
    p[3] = np.nan  # an unreadable probability row
    y: list[Any] = list(rng.choice(["a", "b", "c"], n))
    y[10], y[11], y[12] = "d", None, np.nan  # an unknown class, two missing labels
    log = pd.DataFrame({"a": p[:, 0], "b": p[:, 1], "c": p[:, 2], "y": pd.Series(y, dtype=object), "x": rng.normal(size=n)})
    task = mlmon.MulticlassClassification(classes=["a", "b", "c"])
    res = mlmon.evaluate(log, outputs=["a", "b", "c"], labels="y", features=["x"], chunk=400, task=task, batch_rows=90)
    assert_chunks_equal_live(res, log, 400, batch=90, outputs=["a", "b", "c"], features=["x"], labels="y", task=task, feature_names=["x"])
    assert res["mlmon_labels_invalid_total"].iloc[0] == 1

    t = rng.normal(size=n)
    reg = pd.DataFrame({"pred": t + rng.normal(0, 0.5, n), "y": np.where(rng.uniform(size=n) < 0.1, np.nan, t)})
    reg.loc[7, "pred"] = np.nan
    res = mlmon.evaluate(reg, outputs="pred", labels="y", chunk=500, task=mlmon.Regression(), batch_rows=128)
    assert_chunks_equal_live(res, reg, 500, batch=128, outputs="pred", features=[], labels="y", task=mlmon.Regression())
    assert res["mlmon_regression_labels_total"].sum() == reg["y"].notna().sum() - 1  # row 7's output is NaN


def test_the_callers_frame_is_left_as_it_was() -> None:
    log, ref = make_log(1000), make_reference()
    before = log.copy(deep=True)
    mlmon.evaluate(log, outputs="score", labels="label", outcomes=["click"], chunk=400, task=TASK, reference=ref)
    mlmon.evaluate(log, outputs="score", features=["amount", "age"], labels="label", chunk=400, task=TASK)
    pd.testing.assert_frame_equal(log, before)


def test_dask_on_a_local_cluster_equals_a_live_monitor() -> None:
    """The Dask path (worker processes, chunks spanning partitions, merged states) against a
    live monitor fed each chunk's rows."""
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    log = awkward_log(1200, seed=15)
    log["label"] = pd.to_numeric(log["label"], errors="coerce")  # Dask wants one dtype a column
    log["plan"] = log["plan"].astype(object)
    ref = make_reference()
    kw: dict[str, Any] = dict(outputs="score", labels="label", outcomes=["click"], chunk=400, task=TASK, reference=ref, batch_rows=400)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB") as cluster, distributed.Client(cluster):
        got = mlmon.evaluate(dd.from_pandas(log[["amount", "age", "plan", "score", "label", "click"]], npartitions=5, sort=False), **kw)
    assert got["rows"].tolist() == [400, 400, 400]
    exact_prefixes = ("mlmon_confusion_total", "mlmon_feature_bin_total", "mlmon_output_bin_total", "mlmon_labels_", "mlmon_rows_total", "mlmon_pending_predictions", "mlmon_outcome_total", "mlmon_output_invalid_total")
    for i, s in enumerate(range(0, len(log), 400)):
        live = live_metrics(log.iloc[s : s + 400], batch=400, outputs="score", features=FEATURES, labels="label", outcomes=("click",), task=TASK, reference=ref)
        row = metric_columns(got.iloc[i])
        assert set(row) == set(live)
        for k, v in live.items():
            if k.startswith(exact_prefixes):
                assert row[k] == v, k
            else:  # a chunk of two partitions: merged means and variances, up to float rounding
                assert row[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_row_chunks_and_batching_do_not_change_the_metrics() -> None:
    log, ref = make_log(3000), make_reference()
    kw: dict[str, Any] = dict(outputs="score", labels="label", timestamp="ts", task=TASK, reference=ref)
    a = mlmon.evaluate(log, chunk=1000, batch_rows=1000, **kw)
    b = mlmon.evaluate(log, chunk=1000, batch_rows=77, **kw)
    assert a["rows"].tolist() == [1000, 1000, 1000]
    assert a["start"].tolist() == [log["ts"].iloc[i] for i in (0, 1000, 2000)]
    assert a["end"].tolist() == [log["ts"].iloc[i] for i in (999, 1999, 2999)]
    exact = [c for c in a.columns if c.startswith(("mlmon_confusion", "mlmon_feature_bin", "mlmon_output_bin", "mlmon_labels", "mlmon_feature_drift"))]
    assert len(exact) > 30
    pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
    pd.testing.assert_frame_equal(a.drop(columns=exact), b.drop(columns=exact), rtol=1e-9)


def test_multiclass_probability_columns_and_regression() -> None:
    rng = np.random.default_rng(3)
    n = 900
    p = rng.dirichlet([1, 1, 1], size=n)
    log = pd.DataFrame({"a": p[:, 0], "b": p[:, 1], "c": p[:, 2], "y": rng.choice(["a", "b", "c"], n), "x": rng.normal(size=n)})
    task = mlmon.MulticlassClassification(classes=["a", "b", "c"])
    res = mlmon.evaluate(log, outputs=["a", "b", "c"], labels="y", features=["x"], chunk=300, task=task)
    pred = np.array(["a", "b", "c"])[p.argmax(axis=1)]
    acc = [(pred[i : i + 300] == log["y"].to_numpy()[i : i + 300]).mean() for i in range(0, n, 300)]
    assert res["mlmon_accuracy"].tolist() == pytest.approx(acc)
    assert res['mlmon_feature_mean{feature="x"}'].tolist() == pytest.approx([log["x"].iloc[i : i + 300].mean() for i in range(0, n, 300)])

    y = rng.normal(size=n)
    reg = pd.DataFrame({"pred": y + rng.normal(0, 0.5, n), "y": y})
    out = mlmon.evaluate(reg, outputs="pred", labels="y", chunk=n, task=mlmon.Regression())
    assert out["mlmon_mae"].iloc[0] == pytest.approx(np.abs(reg["pred"] - reg["y"]).mean())


def test_unsorted_timestamps_are_counted_and_change_nothing_else() -> None:
    log, ref = make_log(2000), make_reference()
    kw: dict[str, Any] = dict(outputs="score", labels="label", timestamp="ts", chunk="4h", task=TASK, reference=ref)
    base = mlmon.evaluate(log, **kw)
    shuffled = log.sample(frac=1.0, random_state=0)
    ts = shuffled["ts"].to_numpy()
    late = int((ts[1:] < ts[:-1]).sum())
    res = mlmon.evaluate(shuffled, **kw)
    assert res["out_of_order"].sum() == late > 0
    exact = [c for c in base.columns if "_bin_total" in c or "confusion" in c or c == "rows"]
    pd.testing.assert_frame_equal(base[exact], res[exact], check_exact=True)


def test_naive_and_aware_timestamps_give_the_same_chunks() -> None:
    aware = make_log(1500, tz="Europe/Paris")
    naive = aware.assign(ts=aware["ts"].dt.tz_convert("UTC").dt.tz_localize(None))
    kw: dict[str, Any] = dict(outputs="score", timestamp="ts", chunk="2h", task=TASK)
    a, b = mlmon.evaluate(aware, **kw), mlmon.evaluate(naive, **kw)
    assert a["rows"].tolist() == b["rows"].tolist()
    assert a["start"].tolist() == b["start"].tolist()  # both UTC


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["outputs", "labels", "ids", "timestamp", "features", "outcomes"])
def test_a_missing_column_is_named(role: str) -> None:
    log = make_log(200)
    kw: dict[str, Any] = dict(outputs="score", labels="label", ids="id", timestamp="ts", features=["age"], outcomes=["click"], chunk="1h", task=TASK)
    kw[role] = ["nope"] if role in ("features", "outcomes") else "nope"
    with pytest.raises(ValueError, match=rf"column 'nope' \({role}\)"):
        mlmon.evaluate(log, **kw)


def test_wrong_dtypes_are_named() -> None:
    log, ref = make_log(200), make_reference()
    with pytest.raises(ValueError, match="feature column 'amount' has dtype"):
        mlmon.evaluate(log.assign(amount=log["amount"].astype(str)), outputs="score", reference=ref, task=TASK)
    with pytest.raises(ValueError, match="output column 'score' has dtype"):
        mlmon.evaluate(log.assign(score=log["score"].astype(str)), outputs="score", task=mlmon.Regression())
    with pytest.raises(ValueError, match="outcome column 'plan'"):
        mlmon.evaluate(log, outputs="score", outcomes=["plan"], task=TASK)
    with pytest.raises(ValueError, match="timestamp column 'ts' has dtype"):
        mlmon.evaluate(log.assign(ts=log["ts"].astype(str)), outputs="score", timestamp="ts", chunk="1h", task=TASK)
    with pytest.raises(ValueError, match="timestamp column 'ts' has dtype int64"):
        mlmon.evaluate(log.assign(ts=np.arange(len(log))), outputs="score", timestamp="ts", chunk="1h", task=TASK)


def test_labels_of_the_wrong_kind_are_counted_as_the_live_monitor_counts_them() -> None:
    log = make_log(400)
    log["label"] = log["label"].astype(object)
    log.loc[log.index[:10], "label"] = "yes"  # not a label of a numeric binary task
    res = mlmon.evaluate(log, outputs="score", labels="label", chunk=400, task=TASK)
    assert res["mlmon_labels_invalid_total"].iloc[0] == 10
    assert res["mlmon_labels_total"].iloc[0] == log["label"].iloc[10:].notna().sum()


def test_mixed_time_zones_and_missing_timestamps_are_named() -> None:
    log = make_log(100)
    mixed = log.assign(ts=pd.Series([*log["ts"].iloc[:50], *log["ts"].iloc[50:].dt.tz_convert("America/New_York")], dtype=object))
    with pytest.raises(ValueError, match=r"timestamp column 'ts' has dtype object \(timestamps with different time zones\?\)"):
        mlmon.evaluate(mixed, outputs="score", timestamp="ts", chunk="1h", task=TASK)
    holes = log.assign(ts=log["ts"].where(log.index % 7 != 0))
    with pytest.raises(ValueError, match="timestamp column 'ts' has 15 missing values"):
        mlmon.evaluate(holes, outputs="score", timestamp="ts", chunk="1h", task=TASK)


def test_duplicate_ids_raise_or_are_counted() -> None:
    log = make_log(300)
    log.loc[[5, 6, 7], "id"] = "r0"  # four rows share r0
    with pytest.raises(ValueError, match="ids column 'id' has 1 duplicated ids"):
        mlmon.evaluate(log, outputs="score", ids="id", chunk=100, task=TASK)
    res = mlmon.evaluate(log, outputs="score", ids="id", chunk=100, task=TASK, duplicate_ids="keep")
    assert res["duplicate_ids"].tolist() == [4, 0, 0]
    assert res["rows"].sum() == 300
    with pytest.raises(ValueError, match="ids column 'id' has 2 missing values"):
        mlmon.evaluate(log.assign(id=log["id"].where(log.index > 1)), outputs="score", ids="id", task=TASK)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"chunk": "1h"}, "needs timestamp="),
        ({"chunk": 0}, "chunk must be >= 1 row"),
        ({"chunk": "soon"}, "chunk must be a number of rows or a length of time"),
        ({"batch_rows": 0}, "batch_rows must be an int >= 1"),
        ({"duplicate_ids": "drop"}, "duplicate_ids must be 'raise' or 'keep'"),
        ({"outcomes": {"bad name": "click"}}, "outcome name 'bad name'"),
        ({"outcomes": "click"}, "outcomes must be a list"),
        ({"outputs": []}, "outputs must name at least one column"),
    ],
)
def test_bad_arguments_are_named(kw: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"outputs": "score", "task": TASK, **kw}
    with pytest.raises(ValueError, match=match):
        mlmon.evaluate(make_log(50), **args)


def test_not_a_dataframe() -> None:
    with pytest.raises(ValueError, match="data must be a pandas or Dask DataFrame, got dict"):
        mlmon.evaluate({"score": [0.1]}, outputs="score")


# -- the report from the output --------------------------------------------------------------


def test_the_html_report_is_made_from_the_jsonl_output(tmp_path: Path) -> None:
    log, ref = make_log(), make_reference()
    path = tmp_path / "offline.jsonl"
    res = mlmon.evaluate(
        log, outputs="score", labels="label", timestamp="ts", chunk="6h", task=TASK, reference=ref,
        model="fraud", jsonl=path,
    )  # fmt: skip
    lines = path.read_text().splitlines()
    assert len(lines) == len(res)
    for line, (_, row) in zip(lines, res.iterrows(), strict=True):
        snap = Snapshot.from_dict(json.loads(line))
        assert snap.model == "fraud"
        assert snap.timestamp == row["end"].timestamp()
        assert {series_name(s.name, s.labels): s.value for s in snap if s.value == s.value} == metric_columns(row)
    out = tmp_path / "offline.html"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "mlmon", "report", str(path), "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "fraud" in page and "amount" in page


def test_every_monitor_it_makes_is_closed() -> None:
    import threading

    from mlmon.monitor import monitors

    before_monitors = len(list(monitors()))
    before_threads = {t.ident for t in threading.enumerate()}
    mlmon.evaluate(make_log(1200), outputs="score", labels="label", chunk=300, task=TASK, reference=make_reference())
    assert len(list(monitors())) == before_monitors
    left = [t.name for t in threading.enumerate() if t.ident not in before_threads and t.name.startswith("mlmon")]
    assert left == []


def test_blas_runs_on_one_thread_while_chunks_are_fed_and_is_restored_after() -> None:
    import threading

    threadpoolctl = pytest.importorskip("threadpoolctl")
    from mlmon.offline import _one_blas_thread

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    log, ref = make_log(600), make_reference()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        with _one_blas_thread():
            assert blas_threads() == {1}
            with _one_blas_thread():  # nested (or concurrent): the outermost restores
                pass
            assert blas_threads() == {1}
        assert blas_threads() == {2}
        # two evaluations at once, from two threads: the limit is restored once both are done
        errors: list[BaseException] = []

        def run() -> None:
            try:
                mlmon.evaluate(log, outputs="score", labels="label", chunk=200, task=TASK, reference=ref)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and not any(t.is_alive() for t in threads)
        assert blas_threads() == {2}


# -- threads, and the snapshot read off a chunk's parts ----------------------------------------


def test_threads_change_nothing_and_each_chunk_is_fed_once() -> None:
    from mlmon import offline

    log, ref = make_log(3000, seed=4), make_reference()
    kw: dict[str, Any] = dict(outputs="score", labels="label", outcomes=["click"], ids="id", timestamp="ts", chunk=250, task=TASK, reference=ref, batch_rows=97)
    fed: list[int] = []
    threads: set[str] = set()
    real_feed = offline._feed

    def feed(chunk: Any, spec: Any, pdf: Any, rows: Any, *rest: Any) -> None:
        import threading

        fed.append(len(pdf.iloc[rows]))
        threads.add(threading.current_thread().name)
        real_feed(chunk, spec, pdf, rows, *rest)

    offline._feed = feed  # type: ignore[assignment]
    try:
        one = mlmon.evaluate(log, workers=1, **kw)
        assert threads == {threading_main_name()} and sum(fed) == 3000 and len(fed) == 12
        fed.clear()
        threads.clear()
        four = mlmon.evaluate(log, workers=4, **kw)
    finally:
        offline._feed = real_feed  # type: ignore[assignment]
    assert sorted(fed) == sorted([250] * 12) and all(t.startswith("mlmon-evaluate") for t in threads)
    pd.testing.assert_frame_equal(one, four, check_exact=True)
    assert len(one) == 12


def threading_main_name() -> str:
    import threading

    return threading.main_thread().name


def test_the_row_read_off_a_chunk_equals_its_state_merged(tmp_path: Path) -> None:
    """A pandas frame's chunks give their rows straight from their parts (their values, or
    their snapshots when a JSON-lines file is asked for); the same rows as states (what a Dask
    partition sends) merge to the same metrics, every series equal."""
    from mlmon import offline

    log, ref = awkward_log(1500, seed=21), make_reference()
    kw: dict[str, Any] = dict(outputs="score", labels="label", outcomes=["click"], chunk=400, task=TASK, reference=ref, batch_rows=150)
    read: list[str] = []
    real_values, real_snapshot = offline._ChunkParts.values, offline._ChunkParts.snapshot

    def values(self: Any) -> Any:
        read.append("values")
        return real_values(self)

    def snapshot(self: Any) -> Any:
        read.append("snapshot")
        return real_snapshot(self)

    offline._ChunkParts.values, offline._ChunkParts.snapshot = values, snapshot  # type: ignore[method-assign]
    try:
        got = mlmon.evaluate(log, **kw)
        assert read == ["values"] * 4
        read.clear()
        with_file = mlmon.evaluate(log, jsonl=tmp_path / "chunks.jsonl", **kw)
        assert read == ["snapshot"] * 4
    finally:
        offline._ChunkParts.values, offline._ChunkParts.snapshot = real_values, real_snapshot  # type: ignore[method-assign]
    pd.testing.assert_frame_equal(got, with_file, check_exact=True)
    assert len((tmp_path / "chunks.jsonl").read_text().splitlines()) == 4
    spec = offline._make_spec(
        log, outputs="score", features=None, labels="label", outcomes=["click"], ids=None, timestamp=None, chunk=400,
        task=TASK, reference=ref, drift=None, categorical=(), model="offline", version=None, duplicate_ids="raise", batch_rows=150,
    )  # fmt: skip
    template = spec.monitor()
    try:
        parts = offline._partition(log, spec, 0, None, None, template, workers=1, out="state")
        assert all(p.snapshot is None and p.values is None and p.state for p in parts)
        rows, _ = offline._rows_of(spec, parts, template)
    finally:
        template.close()
    pd.testing.assert_frame_equal(got, offline._frame(rows), check_exact=True)
    assert len(got.columns) > 100 and len(got) == 4


@pytest.mark.parametrize("workers", [0, -1, True, 1.5, "2", 257])
def test_bad_workers_are_named(workers: Any) -> None:
    with pytest.raises(ValueError, match="workers must be an int from 1 to 256 or None"):
        mlmon.evaluate(make_log(50), outputs="score", task=TASK, workers=workers)


def test_the_result_frame_is_what_pandas_makes_of_the_rows() -> None:
    """The frame built as one block equals pandas' own frame of the rows: chunks without a
    series (NaN), NaT bounds, the integer columns."""
    from mlmon import offline

    nat = pd.NaT
    t = pd.Timestamp("2026-01-01", tz="UTC")
    rows: list[dict[str, Any]] = [
        {"chunk": 0, "start": t, "end": t, "rows": 5, "out_of_order": 0, "duplicate_ids": 1, "internal_errors": 0, "a": 1.5, "b{x=\"1\"}": 2.0},
        {"chunk": 1, "start": t, "end": t, "rows": 3, "out_of_order": 2, "duplicate_ids": 0, "internal_errors": 0, "c": -0.0},
        {"chunk": 2, "start": t, "end": t, "rows": 1, "out_of_order": 0, "duplicate_ids": 0, "internal_errors": 1, "a": float("inf"), "c": 7.0},
    ]
    bare = [{**r, "start": nat, "end": nat} for r in rows]
    for rs in (rows, bare, rows[:1], [{k: v for k, v in rows[0].items() if k in META_COLUMNS}], []):
        slow = pd.DataFrame(rs, columns=offline._columns(rs))
        for col in ("chunk", "rows", "out_of_order", "duplicate_ids", "internal_errors"):
            slow[col] = slow[col].astype("int64")
        pd.testing.assert_frame_equal(offline._frame(rs), slow, check_exact=True)
