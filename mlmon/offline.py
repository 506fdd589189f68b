"""Offline evaluation: the live monitor's metrics over a table of logged predictions.

:func:`evaluate` cuts a pandas (or Dask) DataFrame of logged predictions into chunks — of time,
``chunk="1h"``, or of rows, ``chunk=100_000`` — feeds each chunk's rows to a fresh set of a
:class:`~mlmon.Monitor`'s parts, and returns one DataFrame row per chunk with the monitor's own
metric names and values. Nothing is computed a second way: the accumulators, the drift against
the :class:`~mlmon.Reference`, the quality from the labels are the live monitor's. Each batch of
``batch_rows`` rows reaches the parts as one drained call would (its features as one 2-D array,
its outputs as one array), then its labels and outcomes as ``log_feedback`` and ``log_outcome``
would hand them over; only the id store of the label join is left out (the label is in the
row, see :class:`_RowJoin`). A chunk's metrics equal those of a live monitor fed its rows in
the same batches (``tests/test_evaluate.py`` checks it, case by case).

On a Dask DataFrame every partition makes, per chunk it touches, the state of those parts
(as ``Monitor.fleet_state()``), and the states of a chunk are merged with
:func:`mlmon.fleet.merge_states`: counts, confusion matrices and bins are exactly pandas';
quantiles too (sketch buckets add); means and variances up to float rounding (Chan's update).
The pandas path merges its one state per chunk the same way.

What is not reported, because offline there is nothing to measure: latency, calls (they depend on
how rows are batched), calls and rows per second, errors, calls in flight, label delay. Time only
places a row in its chunk; each chunk's monitor sees all its rows in one window, and the labels
in a row judge that row's prediction (so a chunk's quality is the quality of the predictions made
in it, whenever their labels arrived).

>>> import numpy as np, pandas as pd
>>> import mlmon
>>> rng = np.random.default_rng(0)
>>> log = pd.DataFrame({
...     "ts": pd.date_range("2026-01-01", periods=6000, freq="min", tz="UTC"),
...     "amount": rng.normal(50, 10, 6000),
...     "score": rng.uniform(size=6000),
... })
>>> log["label"] = (rng.uniform(size=6000) < log["score"]).astype(int)
>>> result = mlmon.evaluate(
...     log, outputs="score", features=["amount"], labels="label", timestamp="ts",
...     chunk="1D", task=mlmon.BinaryClassification(threshold=0.5),
... )
>>> result[["start", "rows", "mlmon_labels_total"]].head(2)
                      start  rows  mlmon_labels_total
0 2026-01-01 00:00:00+00:00  1440              1440.0
1 2026-01-02 00:00:00+00:00  1440              1440.0
>>> float(round(result["mlmon_precision"].iloc[0], 2))
0.71
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import attrs
import numpy as np
import numpy.typing as npt

from mlmon._clock import FakeClock
from mlmon._component import CallBatch
from mlmon.drift import DriftConfig
from mlmon.features.component import BinGroup
from mlmon.feedback import Joined, as_batch, id_keys
from mlmon.fleet.state import export_state, fleet_samples, merge_states
from mlmon.monitor import Monitor
from mlmon.reference import Reference, usable_cpus
from mlmon.snapshot import Labels, Snapshot, _labels_key, samples_from
from mlmon.tasks import MulticlassClassification, Regression, Task

__all__ = ["LIVE_ONLY", "META_COLUMNS", "evaluate", "series_name"]

LIVE_ONLY = frozenset({
    "mlmon_up", "mlmon_calls_total", "mlmon_errors_total", "mlmon_slow_calls_total",
    "mlmon_calls_per_second", "mlmon_rows_per_second", "mlmon_error_ratio",
    "mlmon_availability_ratio", "mlmon_inflight_calls", "mlmon_oldest_inflight_seconds",
    "mlmon_latency_seconds", "mlmon_latency_seconds_mean", "mlmon_latency_seconds_bucket",
    "mlmon_latency_seconds_sum", "mlmon_latency_seconds_count", "mlmon_time_to_first_item_seconds",
    "mlmon_stream_items_mean", "mlmon_stream_items_total", "mlmon_label_delay_seconds",
})  # fmt: skip
"""Metrics of a live monitor that :func:`evaluate` leaves out: offline there is no latency,
no call boundary that means anything, no rate and no label delay."""

META_COLUMNS = ("chunk", "start", "end", "rows", "out_of_order", "duplicate_ids", "internal_errors")
"""The columns of :func:`evaluate`'s result that are not metrics (they come first)."""

log = logging.getLogger("mlmon")

_OUTCOME_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_WORKERS = 8  # evaluate's default threads, at most (each holds a batch's temporaries)
_WORKERS_LIMIT = 256  # evaluate(workers=) above this is a mistake, not a machine
_WINDOW = 300.0  # time never moves in a chunk's monitor: nothing rotates out, nothing expires


def _pandas() -> Any:
    return importlib.import_module("pandas")


def series_name(name: str, labels: Iterable[tuple[str, str]] = ()) -> str:
    """The result's column for a metric and its labels, in Prometheus' notation.

    >>> series_name("mlmon_feature_drift_psi", [("feature", "amount")])
    'mlmon_feature_drift_psi{feature="amount"}'
    """
    pairs = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{pairs}}}" if pairs else name


# -- the configuration a partition needs (small and picklable: it travels to Dask workers) ----


@attrs.frozen
class _Spec:
    model: str
    version: str | None
    task: Task | None
    reference: Reference | None
    drift: DriftConfig | None
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    outputs: tuple[str, ...]
    labels: str | None
    outcomes: tuple[tuple[str, str], ...]  # (outcome name, column)
    ids: str | None
    timestamp: str | None
    chunk_rows: int | None
    chunk_ns: int | None
    batch_rows: int

    def monitor(self) -> Monitor:
        """A monitor of this configuration whose clock never moves: the template whose fresh
        parts each chunk is fed to (:class:`_ChunkParts`), and that merges their states. It
        tracks nothing itself (no background thread is ever started)."""
        return Monitor(
            self.model, version=self.version, task=self.task, reference=self.reference,
            drift=self.drift, emitters=[], clock=FakeClock(start=0.0), window=_WINDOW, slices=2,
            feature_names=None if self.reference is not None or not self.features else list(self.features),
            categorical=self.categorical if self.reference is None else (),
            max_pending=1, instance="offline", flush_interval=_WINDOW,
        )  # fmt: skip


@attrs.frozen
class _Part:
    """One chunk's rows within one partition: what it says about itself, and its state."""

    key: int
    start: int | None  # ns since the epoch (UTC), or None without timestamps
    end: int | None
    rows: int
    out_of_order: int
    duplicate_ids: int
    internal_errors: int
    state: bytes  # empty when the snapshot or the values are given
    # When no other partition has rows of the chunk (a pandas frame), its snapshot (for the
    # JSON-lines file) or its row's metric values, read off the chunk's parts on the thread
    # that fed them, with no state to merge.
    snapshot: Snapshot | None = attrs.field(default=None, eq=False)
    values: dict[str, float] | None = attrs.field(default=None, eq=False)


_Out = Literal["state", "snapshot", "values"]
"""What a chunk's part carries: its state (to merge with other partitions'), its snapshot, or
only its row's metric values (no samples built: the result frame needs no more)."""


# -- checks (on dtypes only, so a Dask DataFrame is checked without computing) ----------------


def _check_columns(columns: Sequence[Any], dtypes: Mapping[Any, Any], spec: _Spec) -> None:
    pd = _pandas()

    present = set(columns)
    wanted: list[tuple[str, str]] = [(c, "outputs") for c in spec.outputs]
    wanted += [(c, "features") for c in spec.features]
    wanted += [(c, "outcomes") for _, c in spec.outcomes]
    for col, role in ((spec.labels, "labels"), (spec.ids, "ids"), (spec.timestamp, "timestamp")):
        if col is not None:
            wanted.append((col, role))
    for col, role in wanted:
        if col not in present:
            raise ValueError(f"evaluate: column {col!r} ({role}) is not in the DataFrame (columns: {sorted(map(str, present))[:20]})")

    def numeric(col: str) -> bool:
        dt = dtypes[col]
        return bool(pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))

    numeric_outputs = len(spec.outputs) > 1 or isinstance(spec.task, Regression) or spec.task is None
    for col in spec.outputs:
        if numeric_outputs and not numeric(col):
            raise ValueError(f"evaluate: output column {col!r} has dtype {dtypes[col]}, expected numbers")
    ref = spec.reference
    numeric_features = [f for f in spec.features if ref is not None and f not in ref.categorical]
    for col in numeric_features:
        if not numeric(col):
            raise ValueError(
                f"evaluate: feature column {col!r} has dtype {dtypes[col]}, but the reference profiles it as numeric"
            )
    for _, col in spec.outcomes:
        if not numeric(col):
            raise ValueError(f"evaluate: outcome column {col!r} has dtype {dtypes[col]}, expected numbers")
    if spec.timestamp is not None:
        dt = dtypes[spec.timestamp]
        if not pd.api.types.is_datetime64_any_dtype(dt):
            hint = " (timestamps with different time zones?)" if pd.api.types.is_object_dtype(dt) else ""
            raise ValueError(
                f"evaluate: timestamp column {spec.timestamp!r} has dtype {dt}{hint}; expected datetime64 "
                "(one time zone, or none): convert it with pandas.to_datetime(..., utc=True)"
            )


def _timestamps_ns(pdf: Any, col: str) -> npt.NDArray[np.int64]:
    """The timestamps as ns since the epoch (UTC for a tz-aware column)."""
    s = pdf[col]
    if s.isna().any():
        raise ValueError(f"evaluate: timestamp column {col!r} has {int(s.isna().sum())} missing values (NaT)")
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return np.asarray(s.to_numpy(dtype="datetime64[ns]").astype(np.int64))


# -- one partition ----------------------------------------------------------------------------


def _keys(spec: _Spec, n: int, offset: int, ts: npt.NDArray[np.int64] | None) -> npt.NDArray[np.int64]:
    if spec.chunk_rows is not None:
        return (np.arange(offset, offset + n, dtype=np.int64)) // spec.chunk_rows
    assert ts is not None and spec.chunk_ns is not None
    return ts // spec.chunk_ns  # floor division: chunks aligned on the epoch, as pandas' floor()


class _RowJoin:
    """The quality part's prediction store in a chunk's monitor, where each label is in its
    prediction's row.

    A live monitor keeps every prediction in a :class:`~mlmon.feedback.FeedbackJoin` (a hash
    table keyed by id) because its labels come later, in other calls. Offline, the labels of a
    batch are logged right after it, with the ids :func:`_feed` gave it (consecutive
    integers): this store keeps that one batch's predictions by position, and the counters the
    quality part reports (``joined``, ``invalid``, ``pending(now)``, ...) by the same rules as
    the FeedbackJoin: a prediction with a NaN value (an invalid output) is not stored (a label
    for it is unmatched), an invalid label leaves its prediction pending, a second label is a
    duplicate. Nothing expires or is evicted (time does not move in a chunk's monitor).
    """

    _NONE, _PENDING, _LABELLED = 0, 1, 2

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.joined = self.unmatched = self.expired = self.duplicate = 0
        self.evicted = self.invalid = 0
        self.bad_ids = 0
        self._pending = self._labelled = 0
        self._base = 0
        self._preds: npt.NDArray[np.float64] = np.empty(0)
        self._state: npt.NDArray[np.int8] = np.empty(0, dtype=np.int8)
        self._segs: npt.NDArray[np.uint32] | None = None
        self._rows: npt.NDArray[np.float32] | None = None
        # The probability row of the last join_one that joined, as FeedbackJoin.last_row.
        self.last_row: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64] | None] | None = None

    def pending(self, now: float) -> int:
        return self._pending

    def labelled_since(self, t: float) -> int:
        return self._labelled  # every prediction was made at the same (fake) time

    def record_keys(
        self,
        keys: npt.NDArray[np.int64],
        ok: npt.NDArray[np.bool_],
        preds: npt.NDArray[np.float64],
        now: float,
        times: npt.NDArray[np.float64] | None = None,
        segments: npt.NDArray[np.uint32] | None = None,
        rows: npt.NDArray[np.float32] | None = None,
    ) -> None:
        """Keep a batch's predictions (``keys`` its consecutive ids, as :func:`_feed` makes
        them), their segment codes and probability rows (full rows: the store holds one
        batch); the previous batch's predictions are no longer joinable."""
        self.bad_ids += int(ok.size - np.count_nonzero(ok))
        good = ok & np.isfinite(preds)
        if keys.size and not bool(np.all(keys == keys[0] + np.arange(keys.size))):
            raise RuntimeError("evaluate: a batch's ids are not consecutive")  # a bug here, counted
        self._base = int(keys[0]) if keys.size else 0
        self._preds = preds
        self._segs = segments
        self._rows = rows if rows is not None and rows.ndim == 2 and rows.shape[0] == keys.size else None
        self._state = np.where(good, self._PENDING, self._NONE).astype(np.int8)
        self._pending += int(np.count_nonzero(good))

    def _slots(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Each key's position in the batch, or -1 where no prediction is stored."""
        pos = keys - self._base
        inside = (pos >= 0) & (pos < self._state.size)
        pos = np.where(inside, pos, 0)
        return np.where(inside & (self._state[pos] != self._NONE), pos, -1)

    def join(self, ids: object, labels: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_], now: float) -> Joined:
        if isinstance(ids, range) and ids.step == 1 and len(ids) == labels.size:
            a, k = ids.start - self._base, len(ids)
            state = self._state[max(a, 0) : a + k]
            if k and a >= 0 and state.size == k and bool(valid.all()) and bool((state == self._PENDING).all()):
                # A batch's rows labelled in order, each for the first time (evaluate's usual
                # case): every label joins its prediction, slices rather than searches.
                self.joined += k
                self._pending -= k
                self._labelled += k
                state[:] = self._LABELLED
                segs = None if self._segs is None else self._segs[a : a + k]
                rows = None if self._rows is None else self._rows[a : a + k]
                return Joined(self._preds[a : a + k], labels, np.zeros(k), segs, rows)
        keys, ok = id_keys(as_batch(ids))
        if keys.size != labels.size:
            raise ValueError(f"ids and labels differ in length: {keys.size} != {labels.size}")
        good = ok & valid
        n_good = int(np.count_nonzero(good))
        self.invalid += int(keys.size) - n_good
        keys, labels = keys[good], labels[good]
        pos = self._slots(keys)
        found = np.flatnonzero(pos >= 0)
        self.unmatched += n_good - int(found.size)
        pos = pos[found]
        # As the FeedbackJoin: a label for a labelled prediction is a duplicate, and of several
        # labels for one prediction in this batch the first joins.
        dup = self._state[pos] == self._LABELLED
        if pos.size > 1 and not bool((pos[1:] > pos[:-1]).all()):  # ids in order: no repeats
            _, first = np.unique(pos, return_index=True)
            if first.size < pos.size:
                later = np.ones(pos.size, dtype=np.bool_)
                later[first] = False
                dup |= later
        take = ~dup
        hit = pos[take]
        k = int(hit.size)
        self.duplicate += int(pos.size) - k
        self.joined += k
        self._pending -= k
        self._labelled += k
        self._state[hit] = self._LABELLED
        segs = None if self._segs is None else self._segs[hit]
        rows = None if self._rows is None else self._rows[hit]
        return Joined(self._preds[hit], labels[found[take]], np.zeros(k), segs, rows)

    def join_one(self, id: object, label: float, now: float) -> tuple[float, float, int] | None:
        self.last_row = None
        keys, ok = id_keys([id])
        if not ok[0] or math.isnan(label):
            self.invalid += 1
            return None
        pos = int(self._slots(keys)[0])
        if pos < 0:
            self.unmatched += 1
            return None
        if self._state[pos] == self._LABELLED:
            self.duplicate += 1
            return None
        self.joined += 1
        self._pending -= 1
        self._labelled += 1
        self._state[pos] = self._LABELLED
        if self._rows is not None:
            self.last_row = (self._rows[pos : pos + 1], None)
        return float(self._preds[pos]), 0.0, 0 if self._segs is None else int(self._segs[pos])


def _readonly(a: Any) -> Any:
    """A read-only view of an array of the caller's frame: a part that tried to write into it
    would fail (counted as an internal error) instead of changing the caller's data."""
    if isinstance(a, np.ndarray):
        a = a.view()
        a.flags.writeable = False
    return a


class _ChunkParts:
    """A fresh set of a monitor's parts for one chunk (the ``Parts`` that
    :func:`mlmon.fleet.state.export_state` reads): what the chunk's rows are fed to.

    No :class:`~mlmon.Monitor` per chunk: its parts are all a chunk needs (no call buffers,
    no background thread, no reporter cycle at close). The configuration is the template
    monitor's, so the states merge with it.
    """

    def __init__(self, template: Monitor) -> None:
        self._template = template
        self.name = template.name
        self.version = template.version
        self.window = template.window
        self.parts = template._fresh_parts()
        self.service, self.outputs, self.quality, self.outcomes, self.features = self.parts[:5]
        self.quality.store = _RowJoin()
        self.errors = 0  # failures inside mlmon while feeding (the ``internal_errors`` column)

    def _state_parts(self) -> Any:
        return self.parts

    def _fresh_parts(self) -> Any:
        return self._template._fresh_parts()

    def _state_config(self) -> str:
        return self._template._state_config()

    def failed(self, stage: str, exc: BaseException) -> None:
        """Count a failure inside mlmon; the first of a chunk is logged."""
        self.errors += 1
        if self.errors == 1:
            log.warning("mlmon evaluate: internal error in %s: %r", stage, exc, exc_info=exc)

    def state(self) -> bytes:
        return export_state(self, now=0.0, wall=0.0, instance="offline")

    def snapshot(self) -> Snapshot:
        """What merging :meth:`state` alone would give (the same samples: tests compare the
        two), without writing and reading the state."""
        return Snapshot(
            model=self.name, version=self.version, instance="offline", timestamp=0.0,
            window=self.parts[0].covered(0.0), samples=samples_from(fleet_samples(self.parts, 0.0)),
        )  # fmt: skip

    def values(self) -> dict[str, float]:
        """The row's metric values by series name: the samples of :meth:`snapshot` (finite
        values, :data:`LIVE_ONLY` left out, in the same order), without building them. The
        feature part's bin counters go by :meth:`~mlmon.features.component.FeatureComponent.bin_groups`,
        a cell's two values at once, not a sample each."""
        row: dict[str, float] = {}
        isfinite = math.isfinite
        features = self.features
        for part in self.parts:
            if part is None:
                continue
            if part is self.service:
                # Its one sample kept offline (the others are LIVE_ONLY: calls, latency, calls
                # in flight), read without making and dropping the rest.
                row[_series(("mlmon_rows_total", ()))] = float(part.rows_total)
                continue
            binned = part is features
            for name, value, labels in part.samples(0.0, bins=False) if binned else part.samples(0.0):
                if name in LIVE_ONLY:
                    continue
                v = float(value)
                if not isfinite(v):
                    continue
                row[_series((name, _labels_key(labels)))] = v
            if binned:
                for group in features.bin_groups():
                    n = len(group.counts)
                    both = np.empty(2 * n, dtype=np.float64)  # a cell's counter, then its ratio
                    both[0::2] = group.counts
                    both[1::2] = group.ratios()
                    row.update(zip(_bin_series(group), both.tolist(), strict=True))
        return row


_SERIES: dict[Any, Any] = {}
"""Series names by metric and labels (and a bin group's, by its shape), for every evaluation
on any thread: a name is made once. Emptied at :data:`_SERIES_MAX` entries."""
_SERIES_MAX = 1 << 16


def _series(key: tuple[str, Labels]) -> str:
    """:func:`series_name` of ``key`` (metric and labels), remembered."""
    name: str | None = _SERIES.get(key)
    if name is None:
        name = series_name(*key)
        if len(_SERIES) >= _SERIES_MAX:
            _SERIES.clear()
        _SERIES[key] = name
    return name


def _bin_series(group: BinGroup) -> list[str]:
    """The series of a bin group's cells, in its samples' order: each cell's counter, then
    its ratio."""
    key = ("bins", group.counter, group.ratio, group.feature, len(group.counts))
    names: list[str] | None = _SERIES.get(key)
    if names is None:
        names = []
        for labels in group.labels():
            lk = _labels_key(labels)
            names.append(_series((group.counter, lk)))
            names.append(_series((group.ratio, lk)))
        if len(_SERIES) >= _SERIES_MAX:
            _SERIES.clear()
        _SERIES[key] = names
    return names


@attrs.frozen
class _Columns:
    """Where a partition's feature columns are, looked up once for all its chunks."""

    positions: npt.NDArray[np.intp] | slice | None  # of the feature columns in order (None: names repeat)
    numeric: bool  # every feature column is of a numeric dtype

    @classmethod
    def of(cls, pdf: Any, spec: _Spec) -> _Columns:
        names = list(spec.features)
        if not pdf.columns.is_unique:  # rare: read the dtypes off the selection
            return cls(None, all(getattr(d, "kind", "O") in "biuf" for d in pdf[names].dtypes))
        pos = np.asarray(pdf.columns.get_indexer(names), dtype=np.intp)
        dtypes = pdf.dtypes  # without selecting the columns (a copy of them, in older pandas)
        numeric = all(getattr(dtypes.iloc[int(p)], "kind", "O") in "biuf" for p in pos)
        if pos.size and bool((np.diff(pos) == 1).all()):
            # Columns side by side, in order: a slice of them is a view, not a copy of the rows.
            return cls(slice(int(pos[0]), int(pos[-1]) + 1), numeric)
        return cls(pos, numeric)

    def select(self, sub: Any, spec: _Spec) -> Any:
        """The feature columns of ``sub`` (rows of the partition), in the spec's order."""
        return sub.iloc[:, self.positions] if self.positions is not None else sub[list(spec.features)]


def _numeric_frame(spec: _Spec, chunk: _ChunkParts, cols: _Columns, feats: Any) -> Any:
    """``feats`` (the feature columns) when the feature part reads them all as numbers and
    every column is of a numeric dtype: then each batch goes as one float64 matrix (NaN for
    missing), what the feature part makes of such a DataFrame (:mod:`mlmon.features.inputs`).
    None otherwise (each batch goes as a DataFrame, as live)."""
    schema = chunk.features.schema
    if not cols.numeric or schema is None or schema.n_categorical or tuple(schema.names) != spec.features:
        return None
    return feats


def _matrix(frame: Any) -> Any:
    """A batch of numeric feature columns as a read-only ``(n, features)`` float64 matrix (a
    view of the frame when pandas can give one), or the frame itself if it does not read as
    such a matrix."""
    x = np.asarray(frame.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    return _readonly(x) if x.shape == frame.shape else frame


def _feed(
    chunk: _ChunkParts, spec: _Spec, pdf: Any, rows: npt.NDArray[np.intp] | slice, cols: _Columns | None = None, feats_all: Any = None
) -> None:
    """Feed rows (positions in ``pdf``) to a chunk's parts in batches of ``spec.batch_rows``.

    Each batch is what a monitor's drain hands its parts after one tracked call of its rows
    (``with mon.track(features=X) as call: call.outputs(y)``): one
    :class:`~mlmon._component.CallBatch` with the batch's 2-D features, its outputs as one
    array and consecutive integer ids; the service part counts its rows. Its labels then go
    to the quality part's ``log_feedback`` and its outcomes to the outcome part's ``log``, as
    ``Monitor.log_feedback`` and ``log_outcome`` hand them over. The quality part's prediction
    store is a :class:`_RowJoin` (the label is in the row): no hash table of ids, the same
    counts. ``feats_all``: the partition's feature columns when selected once for its chunks.
    """
    sub = pdf.iloc[rows]
    n = len(sub)
    feats: Any = None
    numeric = None
    if spec.features:
        if cols is None:
            cols = _Columns.of(pdf, spec)
        feats = feats_all.iloc[rows] if feats_all is not None else cols.select(sub, spec)
        numeric = _numeric_frame(spec, chunk, cols, feats)
    if len(spec.outputs) == 1:
        out_all: Any = _readonly(sub[spec.outputs[0]].to_numpy())
    else:
        out_all = _readonly(sub[list(spec.outputs)].to_numpy(dtype=np.float64))
    labels: Any = None
    labelled: Any = None
    if spec.labels is not None:
        col = sub[spec.labels]
        labels, labelled = col.to_numpy(), col.notna().to_numpy()
    now = wall = 0.0  # time never moves in a chunk
    no_time = np.zeros(1)
    ingest = (chunk.outputs.ingest, chunk.quality.ingest, chunk.outcomes.ingest, chunk.features.ingest)
    next_id = 0
    for s in range(0, n, spec.batch_rows):
        e = min(n, s + spec.batch_rows)
        ids = range(next_id, next_id + (e - s))
        next_id += e - s
        x: Any = None
        if feats is not None:
            x = feats.iloc[s:e] if numeric is None else _matrix(feats.iloc[s:e])
        batch = CallBatch(now=now, wall=wall, outputs=[out_all[s:e]], features=[x], ids=[ids], rows=[e - s], times=[now])
        # As Drain.reduce with one successful call: the service part counts its rows (its
        # latency is not reported offline), then each other part takes the batch, in order.
        chunk.service.observe(no_time, [], e - s, now)
        for take in ingest:
            try:
                take(batch)
            except Exception as exc:
                chunk.failed("ingest", exc)
        if labels is None and not spec.outcomes:
            continue
        id_arr = np.arange(ids.start, ids.stop)
        if labels is not None:
            mask = labelled[s:e]
            if mask.all():  # ids as a range: the join slices its predictions
                try:
                    chunk.quality.log_feedback(ids, labels[s:e], now, wall)
                except Exception as exc:
                    chunk.failed("feedback", exc)
            elif mask.any():
                try:
                    chunk.quality.log_feedback(id_arr[mask], labels[s:e][mask], now, wall)
                except Exception as exc:
                    chunk.failed("feedback", exc)
        for name, col in spec.outcomes:
            v = sub[col].iloc[s:e].to_numpy(dtype=np.float64)
            hit = np.isfinite(v) & (v != 0)
            if hit.any():
                try:
                    chunk.outcomes.log(name, id_arr[hit], v[hit], now)
                except Exception as exc:
                    chunk.failed("outcome", exc)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limits: Any = None


_blas_libs: Any = None


def _blas_controller() -> Any:
    """threadpoolctl's controller of the process's thread pools, made once (it lists the
    loaded libraries: about 1 ms, against 20 µs for a limit through it)."""
    global _blas_libs
    if _blas_libs is None:
        _blas_libs = importlib.import_module("threadpoolctl").ThreadpoolController()
    return _blas_libs


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run numpy's BLAS on one thread while chunks are fed (with threadpoolctl, when installed).

    The parts' vector products (a few per batch, 1-D) are too small to gain from BLAS threads,
    and on a machine whose cores are busy, threads that wait for each other cost several times
    the work: measured 2.3 s instead of 0.7 s for the benchmark's million rows. The limit is
    process-wide while any evaluation runs (counted, so concurrent evaluations restore it once,
    at the end of the last); without threadpoolctl nothing changes.
    """
    global _blas_users, _blas_limits
    with _blas_lock:
        if _blas_users == 0:
            try:
                _blas_limits = _blas_controller().limit(limits=1, user_api="blas")
            except Exception:  # not installed, or a BLAS it cannot drive: no limit
                _blas_limits = None
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limits is not None:
                try:
                    _blas_limits.restore_original_limits()
                except Exception:
                    log.debug("mlmon evaluate: the BLAS thread limits could not be restored", exc_info=True)
                _blas_limits = None


def _partition(
    pdf: Any,
    spec: _Spec,
    offset: int,
    prev_ts: int | None,
    dup_ids: Any | None,
    template: Monitor | None = None,
    workers: int = 1,
    out: _Out = "state",
) -> list[_Part]:
    """The parts of every chunk that this partition's rows touch (``template``: a monitor of
    ``spec``'s configuration, made here when not given), chunks fed on up to ``workers``
    threads; each part carries ``out`` (see :data:`_Out`: anything but the state only when the
    partition is the whole frame, so that no other partition has rows of its chunks)."""
    n = len(pdf)
    if n == 0:
        return []
    if template is None:
        own = spec.monitor()
        try:
            return _partition(pdf, spec, offset, prev_ts, dup_ids, own, workers, out)
        finally:
            own.close()
    with _one_blas_thread():
        return _chunks(pdf, spec, offset, prev_ts, dup_ids, template, workers, out)


def _chunks(
    pdf: Any, spec: _Spec, offset: int, prev_ts: int | None, dup_ids: Any | None, template: Monitor, workers: int, out: _Out
) -> list[_Part]:
    n = len(pdf)
    ts = _timestamps_ns(pdf, spec.timestamp) if spec.timestamp is not None else None
    cols = _Columns.of(pdf, spec) if spec.features else None
    # Feature columns side by side: selected once (a view), then each chunk's rows of them.
    feats_all = pdf.iloc[:, cols.positions] if cols is not None and isinstance(cols.positions, slice) else None
    late: npt.NDArray[np.bool_] | None = None
    if ts is not None:
        late = np.zeros(n, dtype=bool)
        late[1:] = ts[1:] < ts[:-1]
        if prev_ts is not None:
            late[0] = ts[0] < prev_ts
    dup: npt.NDArray[np.bool_] | None = None
    if dup_ids is not None and len(dup_ids):
        dup = pdf[spec.ids].isin(dup_ids).to_numpy()
    order: npt.NDArray[np.intp] | None = None  # None: the rows in order (chunks of rows)
    if spec.chunk_rows is not None:
        # Row k of the log is in chunk (offset + k) // chunk_rows: the bounds by arithmetic.
        c = spec.chunk_rows
        first = offset // c
        bounds = [0, *range((first + 1) * c - offset, n, c), n]
        chunk_keys = [first + i for i in range(len(bounds) - 1)]
    else:
        keys = _keys(spec, n, offset, ts)
        if n > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            order = np.argsort(keys, kind="stable")
        sk = keys if order is None else keys[order]
        cuts = np.flatnonzero(sk[1:] != sk[:-1]) + 1
        bounds = [0, *cuts.tolist(), n]
        chunk_keys = sk[bounds[:-1]].tolist()

    def one(i: int, a: int, b: int) -> _Part:
        rows: npt.NDArray[np.intp] | slice
        if order is None:
            rows = slice(a, b)
        else:
            idx = order[a:b]
            rows = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] == b - a - 1 else idx
        chunk = _ChunkParts(template)
        _feed(chunk, spec, pdf, rows, cols, feats_all)
        state, snap, values = b"", None, None
        if out == "values":
            values = chunk.values()
        elif out == "snapshot":
            snap = chunk.snapshot()
        else:
            state = chunk.state()
        key = int(chunk_keys[i])
        start: int | None = None
        end: int | None = None
        if ts is not None:
            t = ts[rows]
            start, end = (key * spec.chunk_ns, (key + 1) * spec.chunk_ns) if spec.chunk_ns else (int(t.min()), int(t.max()))
        n_late = 0 if late is None else int(late[rows].sum())
        n_dup = 0 if dup is None else int(dup[rows].sum())
        return _Part(key, start, end, b - a, n_late, n_dup, chunk.errors, state, snap, values)

    spans = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    if workers > 1 and len(spans) > 1:
        # numpy lets the GIL go in the heavy steps (sorts, sums, comparisons over a batch):
        # chunks fed on several threads use several cores. Each chunk has its own parts.
        with ThreadPoolExecutor(min(workers, len(spans)), thread_name_prefix="mlmon-evaluate") as ex:
            return list(ex.map(lambda span: one(*span), spans))
    return [one(*span) for span in spans]


# -- the whole frame --------------------------------------------------------------------------


def _summary(pdf: Any, col: str | None) -> tuple[int, int | None, int | None]:
    """A partition's length, and its first and last timestamps (ns)."""
    if col is None or len(pdf) == 0:
        return len(pdf), None, None
    ts = _timestamps_ns(pdf, col)
    return len(pdf), int(ts[0]), int(ts[-1])


def _duplicates_pandas(ids: Any) -> Any:
    if ids.isna().any():
        raise ValueError(f"evaluate: ids column {ids.name!r} has {int(ids.isna().sum())} missing values")
    vc = ids.value_counts(sort=False)
    return vc.index[vc.to_numpy() > 1]


def _duplicates_dask(data: Any, col: str) -> Any:
    dask: Any = importlib.import_module("dask")

    missing = data[col].isna().sum()
    vc = data[col].value_counts(split_out=max(1, data.npartitions // 4))
    dups = vc[vc > 1]
    n_missing, dup = dask.compute(missing, dups)
    if int(n_missing):
        raise ValueError(f"evaluate: ids column {col!r} has {int(n_missing)} missing values")
    return dup.index


def _rows_of(spec: _Spec, parts: list[_Part], template: Monitor) -> tuple[list[dict[str, Any]], list[Snapshot]]:
    """One row per chunk, and its snapshot for the JSON-lines file (none for chunks whose part
    carries only its values)."""
    pd = _pandas()

    by_key: dict[int, list[_Part]] = {}
    for p in parts:
        by_key.setdefault(p.key, []).append(p)
    rows: list[dict[str, Any]] = []
    snaps: list[Snapshot] = []
    columns: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}  # every chunk has the same series
    for i, key in enumerate(sorted(by_key)):
        group = by_key[key]
        values = group[0].values if len(group) == 1 else None
        given = group[0].snapshot if len(group) == 1 else None
        if given is None and values is None:
            merged = merge_states(template, [p.state for p in group], instance="offline", now=0.0)
            if merged.rejected:  # states made here by one configuration: this is a bug, not bad input
                raise RuntimeError(f"evaluate: chunk {key}: states rejected {merged.rejected}")
            given = merged.snapshot
        starts = [p.start for p in group if p.start is not None]
        ends = [p.end for p in group if p.end is not None]
        start = min(starts) if starts else None
        end = max(ends) if ends else None
        tz = "UTC" if spec.timestamp is not None else None
        row: dict[str, Any] = {
            "chunk": key if spec.chunk_rows is not None else i,
            "start": pd.Timestamp(start, tz=tz) if start is not None else pd.NaT,
            "end": pd.Timestamp(end, tz=tz) if end is not None else pd.NaT,
            "rows": sum(p.rows for p in group),
            "out_of_order": sum(p.out_of_order for p in group),
            "duplicate_ids": sum(p.duplicate_ids for p in group),
            "internal_errors": sum(p.internal_errors for p in group),
        }
        if values is not None:
            row.update(values)
            rows.append(row)
            continue
        assert given is not None
        kept = tuple(s for s in given.samples if s.name not in LIVE_ONLY)
        for s in kept:
            series = columns.get((s.name, s.labels))
            if series is None:
                series = columns[(s.name, s.labels)] = series_name(s.name, s.labels)
            row[series] = s.value
        rows.append(row)
        stamp = end / 1e9 if end is not None else float(key)
        snaps.append(attrs.evolve(given, samples=kept, timestamp=stamp))
    return rows, snaps


def _evaluate_pandas(data: Any, spec: _Spec, duplicate_ids: str, template: Monitor, workers: int, out: _Out) -> list[_Part]:
    _check_columns(list(data.columns), dict(data.dtypes), spec)
    dups = None
    if spec.ids is not None:
        dups = _duplicates_pandas(data[spec.ids])
        _raise_duplicates(spec.ids, dups, duplicate_ids)
    return _partition(data, spec, 0, None, dups, template, workers, out)


def _raise_duplicates(col: str, dups: Any, how: str) -> None:
    if len(dups) and how == "raise":
        raise ValueError(
            f"evaluate: ids column {col!r} has {len(dups)} duplicated ids (e.g. {dups[0]!r}); pass "
            "duplicate_ids='keep' to evaluate the rows as they are (counted in the 'duplicate_ids' column)"
        )


def _evaluate_dask(data: Any, spec: _Spec, duplicate_ids: str) -> list[_Part]:
    dask: Any = importlib.import_module("dask")

    _check_columns(list(data.columns), dict(data.dtypes), spec)
    dups = None
    if spec.ids is not None:
        dups = _duplicates_dask(data, spec.ids)
        _raise_duplicates(spec.ids, dups, duplicate_ids)
    cols = [spec.timestamp] if spec.timestamp is not None else list(data.columns[:1])
    summaries = dask.compute(*[dask.delayed(_summary)(p, spec.timestamp) for p in data[cols].to_delayed()])
    offsets = np.concatenate([[0], np.cumsum([s[0] for s in summaries])]).tolist()
    prev: list[int | None] = []
    last: int | None = None
    for n, _first, end in summaries:
        prev.append(last)
        if n:
            last = end
    run = dask.delayed(_partition, pure=True)
    shared = dask.delayed(dups) if dups is not None and len(dups) else None  # one copy in the graph
    tasks = [run(p, spec, int(offsets[i]), prev[i], shared) for i, p in enumerate(data.to_delayed())]
    results = dask.compute(*tasks)
    return [p for r in results for p in r]


def _workers(workers: int | None) -> int:
    """The number of threads for ``evaluate(workers=...)``."""
    if workers is None:
        return usable_cpus(_MAX_WORKERS)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 1 <= workers <= _WORKERS_LIMIT:
        raise ValueError(f"evaluate: workers must be an int from 1 to {_WORKERS_LIMIT} or None, got {workers!r}")
    return int(workers)


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(data, "to_delayed")


def evaluate(
    data: Any,
    *,
    outputs: str | Sequence[str],
    features: Sequence[str] | None = None,
    labels: str | None = None,
    outcomes: Sequence[str] | Mapping[str, str] = (),
    ids: str | None = None,
    timestamp: str | None = None,
    chunk: str | int | Any = 100_000,
    task: Task | None = None,
    reference: Reference | None = None,
    drift: DriftConfig | None = None,
    categorical: Sequence[str] = (),
    model: str = "offline",
    version: str | None = None,
    duplicate_ids: Literal["raise", "keep"] = "raise",
    batch_rows: int = 131_072,
    jsonl: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> Any:
    """The live monitor's metrics over logged predictions, one row per chunk.

    Args:
        data: a pandas DataFrame, or a Dask DataFrame (evaluated partition by partition on the
            current Dask scheduler, a ``dask.distributed`` cluster when a client is active).
        outputs: the column of the model's outputs (scores, classes or values, as ``track``
            would record them), or several columns of probabilities (one per class, in the
            task's order).
        features: the feature columns (default: the reference's features, else none).
        labels: the column of true labels; missing values (NaN, None) are rows without a label.
        outcomes: columns of downstream outcomes, by outcome name (a list uses each column's
            name); a row's value (0 or missing: no outcome) is logged against its prediction.
        ids: the column of prediction ids, checked for uniqueness (see ``duplicate_ids``).
        timestamp: the column of prediction times (datetime64, one time zone or none).
        chunk: rows per chunk (an int), or a length of time (``"1h"``, ``"1D"``, a
            ``pandas.Timedelta``; needs ``timestamp``): chunks aligned on the Unix epoch, UTC.
        task, reference, drift, categorical, model, version: as for :class:`~mlmon.Monitor`.
        duplicate_ids: ``"raise"`` (a ValueError naming the column), or ``"keep"``: rows are
            evaluated as they are and counted in the ``duplicate_ids`` column (rows whose id
            appears more than once in the whole frame).
        batch_rows: rows per tracked call (outputs, features and labels go in such batches;
            131,072 by default: fewer, longer numpy calls, which threads share better).
        jsonl: also write each chunk's snapshot to this JSON-lines file (the format of
            ``JsonlEmitter``; ``python -m mlmon report`` makes the HTML report from it).
        workers: threads that evaluate the chunks of a pandas DataFrame at once (default: one
            per CPU the process may use, at most 8; 1: all in the calling thread). The heavy
            steps are numpy's, which run without the GIL. Results do not depend on it. A Dask
            DataFrame's partitions run on Dask's workers (each partition in one thread).

    Returns:
        A pandas DataFrame: the :data:`META_COLUMNS` (``chunk``; ``start`` and ``end``, UTC —
        the chunk's bounds for time chunks, its first and last timestamps for row chunks;
        ``rows``; ``out_of_order``, rows whose timestamp is earlier than the row before them,
        which are evaluated in their chunk all the same; ``duplicate_ids``; ``internal_errors``,
        always 0 unless mlmon failed), then one column per metric series, named as
        :func:`series_name` writes them. Chunks without rows have no row.

    Raises:
        ValueError: for a missing column, a column of the wrong dtype, timestamps that are not
            datetime64 (strings, numbers, mixed time zones) or missing, missing or duplicated
            ids (unless ``duplicate_ids="keep"``), or a bad argument; each names the column or
            argument.
    """
    pd = _pandas()

    spec = _make_spec(
        data, outputs=outputs, features=features, labels=labels, outcomes=outcomes, ids=ids,
        timestamp=timestamp, chunk=chunk, task=task, reference=reference, drift=drift,
        categorical=categorical, model=model, version=version, duplicate_ids=duplicate_ids,
        batch_rows=batch_rows,
    )  # fmt: skip
    n_workers = _workers(workers)
    template = spec.monitor()
    try:
        if _is_dask(data):
            parts = _evaluate_dask(data, spec, duplicate_ids)
        elif isinstance(data, pd.DataFrame):
            parts = _evaluate_pandas(data, spec, duplicate_ids, template, n_workers, "values" if jsonl is None else "snapshot")
        else:
            raise ValueError(f"evaluate: data must be a pandas or Dask DataFrame, got {type(data).__name__}")
        rows, snaps = _rows_of(spec, parts, template)
    finally:
        template.close()
    if jsonl is not None:
        _write_jsonl(jsonl, snaps)
    return _frame(rows)


_INT_COLUMNS = ("chunk", "rows", "out_of_order", "duplicate_ids", "internal_errors")


def _frame(rows: list[dict[str, Any]]) -> Any:
    """The result DataFrame: the meta columns as pandas reads them from the rows, then every
    series as float64 (NaN in a chunk without it), built as one block: a frame of a few
    thousand series is made in about a millisecond, not one column at a time."""
    pd = _pandas()
    cols = _columns(rows)
    if rows:
        meta: dict[str, Any] = {c: [row[c] for row in rows] for c in META_COLUMNS}
        for col in _INT_COLUMNS:
            meta[col] = np.array(meta[col], dtype=np.int64)
        head = pd.DataFrame(meta, columns=list(META_COLUMNS))
    else:  # no chunk: the columns as pandas types them for no row
        head = pd.DataFrame([], columns=list(META_COLUMNS))
        for col in _INT_COLUMNS:
            head[col] = head[col].astype("int64")
    series = cols[len(META_COLUMNS) :]
    if not series:
        return head
    nan = math.nan
    block = np.array([[row.get(c, nan) for c in series] for row in rows], dtype=np.float64)
    return pd.concat([head, pd.DataFrame(block.reshape(len(rows), len(series)), columns=series)], axis=1)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = dict.fromkeys(META_COLUMNS)
    for row in rows:
        for k in row:
            seen.setdefault(k, None)
    return list(seen)


def _write_jsonl(path: str | os.PathLike[str], snaps: Sequence[Snapshot]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for snap in snaps:
            f.write(snap.to_json())
            f.write("\n")


def _make_spec(
    data: Any,
    *,
    outputs: str | Sequence[str],
    features: Sequence[str] | None,
    labels: str | None,
    outcomes: Sequence[str] | Mapping[str, str],
    ids: str | None,
    timestamp: str | None,
    chunk: Any,
    task: Task | None,
    reference: Reference | None,
    drift: DriftConfig | None,
    categorical: Sequence[str],
    model: str,
    version: str | None,
    duplicate_ids: str,
    batch_rows: int,
) -> _Spec:
    pd = _pandas()

    out_cols = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    if not out_cols:
        raise ValueError("evaluate: outputs must name at least one column")
    if len(out_cols) > 1 and isinstance(task, MulticlassClassification) and len(out_cols) != len(task.classes):
        raise ValueError(f"evaluate: outputs names {len(out_cols)} probability columns for {len(task.classes)} classes")
    if reference is not None:
        feats = tuple(reference.feature_names)
        if features is not None and tuple(features) != feats:
            raise ValueError(f"evaluate: features {list(features)!r} differ from the reference's {list(feats)!r}")
    else:
        feats = tuple(features or ())
    if isinstance(outcomes, Mapping):
        pairs = tuple((str(k), str(v)) for k, v in outcomes.items())
    elif isinstance(outcomes, str):
        raise ValueError("evaluate: outcomes must be a list of columns or a mapping name -> column, got a string")
    else:
        pairs = tuple((str(c), str(c)) for c in outcomes)
    for name, col in pairs:
        if _OUTCOME_NAME.fullmatch(name) is None:
            raise ValueError(f"evaluate: outcome name {name!r} (column {col!r}) must match [A-Za-z0-9_-]{{1,64}}")
    if duplicate_ids not in ("raise", "keep"):
        raise ValueError(f"evaluate: duplicate_ids must be 'raise' or 'keep', got {duplicate_ids!r}")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"evaluate: batch_rows must be an int >= 1, got {batch_rows!r}")
    chunk_rows: int | None = None
    chunk_ns: int | None = None
    if isinstance(chunk, (int, np.integer)) and not isinstance(chunk, bool):
        if chunk < 1:
            raise ValueError(f"evaluate: chunk must be >= 1 row, got {chunk!r}")
        chunk_rows = int(chunk)
    else:
        try:
            td = pd.Timedelta(chunk)
        except (ValueError, TypeError):
            raise ValueError(f"evaluate: chunk must be a number of rows or a length of time ('1h'), got {chunk!r}") from None
        if td is pd.NaT or td.value <= 0:
            raise ValueError(f"evaluate: chunk must be a positive length of time, got {chunk!r}")
        if timestamp is None:
            raise ValueError(f"evaluate: chunk={chunk!r} is a length of time: it needs timestamp= (a datetime column)")
        chunk_ns = int(td.value)
    if not _is_dask(data) and not isinstance(data, pd.DataFrame):
        raise ValueError(f"evaluate: data must be a pandas or Dask DataFrame, got {type(data).__name__}")
    return _Spec(
        model=model, version=version, task=task, reference=reference, drift=drift, features=feats,
        categorical=tuple(categorical), outputs=out_cols, labels=labels, outcomes=pairs, ids=ids,
        timestamp=timestamp, chunk_rows=chunk_rows, chunk_ns=chunk_ns, batch_rows=batch_rows,
    )  # fmt: skip

