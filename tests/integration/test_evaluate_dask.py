"""mlmon.evaluate on a Dask DataFrame, on a real dask.distributed LocalCluster of worker processes:
the merged per-partition states give pandas' results, exactly for counts, confusion and bins."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlmon

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_evaluate import TASK, make_log, make_reference  # noqa: E402

EXACT = ("rows", "out_of_order", "duplicate_ids", "chunk", "start", "end")
EXACT_PREFIXES = (
    "mlmon_confusion_total", "mlmon_feature_bin_total", "mlmon_output_bin_total", "mlmon_labels_",
    "mlmon_rows_total", "mlmon_output_count", "mlmon_output_invalid_total", "mlmon_outcome_total",
    "mlmon_pending_predictions", "mlmon_label_coverage_ratio", "mlmon_feature_drift_", "mlmon_output_drift_",
    "mlmon_output_class_ratio", "mlmon_precision", "mlmon_recall",
    "mlmon_accuracy", "mlmon_feature_min", "mlmon_feature_max", "mlmon_output{",
)  # fmt: skip


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
    )
    with cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(3, timeout=60)
        yield c


def _dask(df: pd.DataFrame, n: int) -> Any:
    return dd.from_pandas(df, npartitions=n, sort=False)


def assert_same(pandas_result: pd.DataFrame, dask_result: pd.DataFrame) -> None:
    assert list(pandas_result.columns) == list(dask_result.columns)
    exact = [c for c in pandas_result.columns if c in EXACT or c.startswith(EXACT_PREFIXES)]
    assert len(exact) > 40
    pd.testing.assert_frame_equal(pandas_result[exact], dask_result[exact], check_exact=True)
    rest = [c for c in pandas_result.columns if c not in exact]
    pd.testing.assert_frame_equal(pandas_result[rest], dask_result[rest], check_exact=False, rtol=1e-9, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Sending large graph")
def test_time_chunks_spanning_partitions_equal_pandas(client: Any) -> None:
    log, ref = make_log(6000), make_reference()
    kw: dict[str, Any] = dict(
        outputs="score", labels="label", outcomes=["click"], ids="id", timestamp="ts", chunk="6h",
        task=TASK, reference=ref, batch_rows=700,
    )  # fmt: skip
    expected = mlmon.evaluate(log, **kw)
    ddf = _dask(log, 7)  # 7 partitions of ~857 rows against 6h chunks of ~584 rows: chunks span partitions
    floors = log["ts"].dt.floor("6h")
    bounds = ddf.map_partitions(len).compute().cumsum().tolist()[:-1]
    spanning = [b for b in bounds if floors.iloc[b - 1] == floors.iloc[b]]
    assert spanning  # at least one chunk is split between two partitions (and merged)
    with distributed.get_task_stream(client) as stream:
        got = mlmon.evaluate(ddf, **kw)
    assert_same(expected, got)
    # the partitions were evaluated on the workers, by more than one of them
    ran = [t for t in stream.data if "_partition" in str(t["key"])]
    assert len(ran) == 7
    assert len({t["worker"] for t in ran}) >= 2


@pytest.mark.filterwarnings("ignore:Sending large graph")
def test_row_chunks_unsorted_rows_and_kept_duplicates_equal_pandas(client: Any) -> None:
    log, ref = make_log(5000, seed=4), make_reference()
    log = log.sample(frac=1.0, random_state=1).reset_index(drop=True)  # out of time order
    log.loc[[10, 2600, 4900], "id"] = "r77"  # duplicated across partitions
    kw: dict[str, Any] = dict(
        outputs="score", labels="label", ids="id", timestamp="ts", chunk=1200, task=TASK,
        reference=ref, duplicate_ids="keep",
    )  # fmt: skip
    expected = mlmon.evaluate(log, **kw)
    got = mlmon.evaluate(_dask(log, 6), **kw)
    assert_same(expected, got)
    assert got["duplicate_ids"].sum() == 4
    assert got["out_of_order"].sum() == int((log["ts"].to_numpy()[1:] < log["ts"].to_numpy()[:-1]).sum())
    assert got["rows"].tolist() == [1200, 1200, 1200, 1200, 200]


def test_dask_bad_input_is_named_before_any_work(client: Any) -> None:
    log = make_log(500)
    log.loc[3, "id"] = "r0"
    with pytest.raises(ValueError, match="ids column 'id' has 1 duplicated ids"):
        mlmon.evaluate(_dask(log, 3), outputs="score", ids="id", chunk=100, task=TASK)
    with pytest.raises(ValueError, match=r"column 'nope' \(labels\)"):
        mlmon.evaluate(_dask(log, 3), outputs="score", labels="nope", task=TASK)
    with pytest.raises(ValueError, match="timestamp column 'ts' has dtype"):
        mlmon.evaluate(_dask(log.assign(ts=log["ts"].astype(str)), 3), outputs="score", timestamp="ts", chunk="1h", task=TASK)


def test_dask_without_timestamps_or_ids(client: Any) -> None:
    rng = np.random.default_rng(5)
    n = 3000
    df = pd.DataFrame({"score": rng.uniform(size=n), "x": rng.normal(size=n)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = mlmon.evaluate(df, outputs="score", features=["x"], chunk=1000, task=TASK)
        got = mlmon.evaluate(_dask(df, 4), outputs="score", features=["x"], chunk=1000, task=TASK)
    assert_same(expected, got)
    assert got["start"].isna().all()
