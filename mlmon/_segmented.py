"""The segment part: per segment, the monitor's window parts again, fed the segment's rows.

A monitor with ``track(segment=...)`` calls gets one :class:`SegmentComponent`. At each drain it
names every segmented call's segment (one value per call, or one per row of a batch), keeps at
most ``max_segments`` segments (the first seen; one much busier than the least busy replaces it,
see :meth:`SegmentComponent.samples`) and puts the rest in :data:`~mlmon.segments.OVERFLOW`,
splits batches row by row, and hands each segment its own sub-batch: its outputs part, its
features part (against the segment's reference profile when the reference has one), its outcomes
part and its quality part, which stores nothing itself: the monitor's one label join records each
prediction's segment code and hands the joined pairs back here (:meth:`add_joined`).

Every series comes out with the monitor's metric names plus the label ``segment``.

Under the monitor's drain lock, like every part; never raises on bad data (counted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlmon._component import CallBatch, Triple
from mlmon.buffers import NO_SEGMENT, SEGMENT_FAILED
from mlmon.features import FeatureComponent
from mlmon.outcomes import OutcomeComponent
from mlmon.outputs import OutputComponent, mapped_outputs
from mlmon.quality import QualityComponent
from mlmon.segments import OVERFLOW, FeatureSegment, segment_code, segment_name
from mlmon.tasks import Task
from mlmon.window import RollingWindow

__all__ = ["DEFAULT_MAX_SEGMENTS", "SegmentComponent"]

DEFAULT_MAX_SEGMENTS = 32
_MAX_NAMES = 4096  # codes remembered for labels of segments no longer tracked
_MAX_CANDIDATES = 256  # overflow values counted for promotion (Misra-Gries summary)
_PROMOTE_FACTOR = 2.0  # a value enters when its rows exceed this × the least busy segment's
_PROMOTE_MIN_ROWS = 100
_MAX_PENDING_BYTES = 8 << 20  # rows kept for the end of a drain, at most

U32 = npt.NDArray[np.uint32]
# Series a segment does not repeat: the cumulative bin counts (thousands of series per segment;
# its drift values are computed here) and mlmon's own failure counters (the overall ones count).
_OVERALL_ONLY = frozenset({
    "mlmon_feature_bin_total", "mlmon_feature_reference_ratio", "mlmon_output_bin_total",
    "mlmon_dropped_total", "mlmon_feature_errors_total", "mlmon_feature_unknown_keys_total",
})  # fmt: skip
Parts = tuple[OutputComponent, QualityComponent, OutcomeComponent, FeatureComponent, bool | None]


class _Counts:
    __slots__ = ("calls", "errors", "rows")

    def __init__(self) -> None:
        self.calls = self.rows = self.errors = 0

    def merge(self, other: object) -> None:
        assert isinstance(other, _Counts)
        self.calls += other.calls
        self.rows += other.rows
        self.errors += other.errors

    def reset(self) -> None:
        self.calls = self.rows = self.errors = 0


class _Segment:
    __slots__ = (
        "calls_total", "code", "counts", "errors_total", "features", "name", "outcomes", "outputs",
        "own_reference", "quality", "rows_total",
    )  # fmt: skip

    def __init__(self, name: str, parts: Parts, window: float, slices: int, now: float) -> None:
        self.name = name
        self.code = segment_code(name)
        self.outputs, self.quality, self.outcomes, self.features, self.own_reference = parts
        self.counts: RollingWindow[_Counts] = RollingWindow(_Counts, window, slices, now)
        self.calls_total = self.rows_total = 0
        self.errors_total: dict[str, int] = {}

    def add_error(self, error_type: str, now: float) -> None:
        c = self.counts.current(now)
        c.calls += 1
        c.errors += 1
        self.calls_total += 1
        if error_type not in self.errors_total and len(self.errors_total) >= 64:
            error_type = "other"
        self.errors_total[error_type] = self.errors_total.get(error_type, 0) + 1


def _is_scalar(value: Any) -> bool:
    """One value for the whole call (else one per row: a list, tuple, array or Series)."""
    if value is None or isinstance(value, (str, bytes, int, float, bool, np.generic, Mapping)):
        return True
    if isinstance(value, np.ndarray):
        return value.ndim == 0
    return not (hasattr(value, "__len__") and hasattr(value, "__getitem__"))


def _column(features: Any, name: str, names: Sequence[str]) -> Any:
    """The values of feature ``name`` in one call's copied features (scalar for one row)."""
    if isinstance(features, Mapping):
        return features[name]
    columns = getattr(features, "columns", None)
    if columns is not None:  # pandas or polars DataFrame
        col = features[name]
        return col.to_numpy() if hasattr(col, "to_numpy") else np.asarray(col)
    if isinstance(features, np.ndarray):
        j = list(names).index(name)
        return features[j] if features.ndim == 1 else features[:, j]
    if isinstance(features, (list, tuple)) and features and isinstance(features[0], Mapping):
        return [row.get(name) for row in features]
    if isinstance(features, (list, tuple)):
        j = list(names).index(name)
        if features and isinstance(features[0], (list, tuple, np.ndarray)):
            return [row[j] for row in features]
        return features[j]
    raise TypeError(f"cannot read feature {name!r} from {type(features).__name__}")


def _row_names(values: Any, rows: int) -> tuple[list[str | None], npt.NDArray[np.intp]]:
    """Distinct names of per-row segment values and, per row, the index of its name (None:
    a value with no name)."""
    arr = values if isinstance(values, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(values)
        except Exception:
            arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biuUS" and arr.size == rows and rows <= 256:
        # A few strings or integers: a dict factorises them in order of first appearance (the
        # cap keeps the first values seen) faster than sorting them; more are sorted (below).
        codes: dict[Any, int] = {}
        setdefault = codes.setdefault
        inv = np.fromiter((setdefault(v, len(codes)) for v in arr.tolist()), np.intp, rows)
        return [_safe_name(v) for v in codes], inv
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biufUS" and arr.size == rows:
        uniq, first, inv = np.unique(arr, return_index=True, return_inverse=True)
        # In order of first appearance, so that the cap keeps the first values seen.
        perm = np.argsort(first, kind="stable")
        rank = np.empty_like(perm)
        rank[perm] = np.arange(perm.size)
        values_in_order = uniq[perm].tolist()
        return [_safe_name(u) for u in values_in_order], rank[inv.reshape(-1)]
    items = list(values)
    if len(items) != rows:
        raise ValueError(f"{len(items)} segment values for {rows} rows")
    memo: dict[Any, int] = {}
    names: list[str | None] = []
    inv = np.empty(rows, dtype=np.intp)
    for r, v in enumerate(items):
        try:
            k = memo.get(v)
            hashable = True
        except TypeError:
            k, hashable = None, False
        if k is None:
            k = len(names)
            names.append(_safe_name(v))
            if hashable:
                memo[v] = k
        inv[r] = k
    return names, inv


_MEMO: dict[tuple[type, Any], str | None] = {}
_MEMO_MAX = 4096


def _safe_name(value: Any) -> str | None:
    """:func:`segment_name`, None for a value with no name; remembered for the values seen
    most (keyed by type too: ``True``, ``1`` and ``1.0`` are equal keys with two names)."""
    try:
        key = (value.__class__, value)
        hit = _MEMO.get(key, _MEMO)
    except TypeError:  # unhashable
        key, hit = None, _MEMO
    if hit is not _MEMO:
        return hit  # type: ignore[return-value]
    try:
        name: str | None = segment_name(value)
    except Exception:
        name = None
    if key is not None:
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = name
    return name


def _take(obj: Any, idx: npt.NDArray[np.intp]) -> Any:
    """Rows ``idx`` of one call's outputs, features or ids."""
    if obj is None:
        return None
    if isinstance(obj, np.ndarray):
        return obj[idx]
    iloc = getattr(obj, "iloc", None)
    if iloc is not None:
        return iloc[idx]
    if isinstance(obj, range):
        return [obj[i] for i in idx.tolist()]
    if isinstance(obj, Mapping):  # columns of a batch
        return {k: _take(v, idx) if not _is_scalar(v) else v for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [obj[i] for i in idx.tolist()]
    if getattr(obj, "columns", None) is not None:  # polars
        return obj[idx]
    return [obj[i] for i in idx.tolist()]


class SegmentComponent:
    """Per-segment window parts of one monitor (see the module docstring).

    Args:
        make_parts: ``make_parts(name, now)`` builds a segment's outputs, quality, outcomes and
            features parts, and says whether its features use the segment's own reference
            (True), the overall one (False) or none (None).
        task: the monitor's task (to align segment codes with the label join's rows).
        feature_names: the monitor's feature names now (to read ``by_feature`` columns from
            arrays).
        max_segments: segments tracked at most, besides the overflow one.
        window, slices, now: the rolling window's configuration.

    >>> from mlmon._component import CallBatch
    >>> from mlmon.outputs import OutputComponent
    >>> def make(name, now):
    ...     return (OutputComponent(None, 60.0, 6, now), QualityComponent(None, 60.0, 6, now),
    ...             OutcomeComponent(60.0, 6, now), FeatureComponent(None, window=60.0, slices=6, now=now), None)
    >>> part = SegmentComponent(make, None, lambda: (), max_segments=2, window=60.0, slices=6, now=0.0)
    >>> part.ingest(CallBatch(now=1.0, wall=0.0, outputs=[[0.1, 0.2, 0.3]], features=[None],
    ...                       ids=[None], rows=[3], segments=[["eu", "us", "eu"]]))
    >>> out = {(n, l.get("segment")): v for n, v, l in part.samples(2.0)}
    >>> out[("mlmon_rows_total", "eu")], out[("mlmon_rows_total", "us")], out[("mlmon_segments", None)]
    (2, 1, 2)
    """

    def __init__(
        self,
        make_parts: Callable[[str, float], Parts],
        task: Task | None,
        feature_names: Callable[[], Sequence[str]],
        *,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        window: float,
        slices: int,
        now: float,
    ) -> None:
        self._make = make_parts
        self._task = task
        self._feature_names = feature_names
        self.max_segments = max_segments
        self._window_args = (float(window), int(slices))
        self._segs: dict[str, _Segment] = {}
        self._by_code: dict[int, _Segment] = {}
        self._names: dict[int, str] = {}  # every code this process has named (bounded)
        self._candidates: dict[str, int] = {}
        self._candidates_since = now
        self.overflow_rows = 0
        self.invalid_rows = 0
        self.evictions = 0
        self.errors = 0
        # Rows of drained calls kept per segment until the end of the drain (see drained()).
        self._pending: dict[str, list[tuple[Any, Any, int, float]]] = {}
        self._pending_bytes = 0
        # Told the code and name of each new segment (a shared store names codes for the fleet).
        self.on_new: Callable[[Mapping[int, str]], None] | None = None

    # -- slots ---------------------------------------------------------------------------------
    def _new(self, name: str, now: float) -> _Segment:
        window, slices = self._window_args
        seg = _Segment(name, self._make(name, now), window, slices, now)
        self._segs[name] = seg
        self._by_code[seg.code] = seg
        if len(self._names) < _MAX_NAMES:
            self._names[seg.code] = name
        if self.on_new is not None:
            try:
                self.on_new({seg.code: name})
            except Exception:
                self.errors += 1
        return seg

    def _slot(self, name: str | None, rows: int, now: float) -> _Segment:
        """The segment that takes ``rows`` rows named ``name`` (None: a value with no name)."""
        if name is None:
            self.invalid_rows += rows
            name = OVERFLOW
        else:
            seg = self._segs.get(name)
            if seg is not None:
                return seg
            if name != OVERFLOW and len(self._segs) - (OVERFLOW in self._segs) < self.max_segments:
                return self._new(name, now)
            if name != OVERFLOW:
                self.overflow_rows += rows
                self._count_candidate(name, rows)
        seg = self._segs.get(OVERFLOW)
        return seg if seg is not None else self._new(OVERFLOW, now)

    def _count_candidate(self, name: str, rows: int) -> None:
        c = self._candidates
        if name in c or len(c) < _MAX_CANDIDATES:
            c[name] = c.get(name, 0) + rows
            return
        # Misra-Gries: every count drops by the smallest; the ones at zero leave.
        low = min(rows, min(c.values()))
        for k in list(c):
            c[k] -= low
            if c[k] <= 0:
                del c[k]
        if rows > low:
            c[name] = rows - low

    # -- drain side ----------------------------------------------------------------------------
    def ingest(self, batch: CallBatch) -> None:
        """Split the drained calls by segment and feed each segment's parts. Never raises."""
        try:
            self._ingest(batch)
        except Exception:
            self.errors += 1

    def _ingest(self, batch: CallBatch) -> None:
        now = batch.now
        for value, error_type in batch.segment_errors:
            for name in self._error_names(value):
                self._slot(name, 0, now).add_error(error_type, now)
        segs = batch.segments
        if not segs:
            return
        # Each segmented entry's segment: one slot (an index into ``chosen``) for the call, or
        # one per row.
        chosen: list[_Segment] = []
        index: dict[str, int] = {}

        def local(seg: _Segment) -> int:
            k = index.get(seg.name)
            if k is None:
                k = index[seg.name] = len(chosen)
                chosen.append(seg)
            return k

        entries: list[tuple[int, int | npt.NDArray[np.intp]]] = []
        code_of_entry: list[Any] = [None] * len(segs)
        features = batch.features
        rows_of = batch.rows
        # Arrays of strings or integers, one value per row (the usual per-row form): named once
        # for the whole chunk, not call by call.
        bulk: dict[str, list[tuple[int, npt.NDArray[Any]]]] = {}
        for i, value in enumerate(segs):
            if (
                value.__class__ is np.ndarray
                and value.ndim == 1
                and value.dtype.kind in "USiu"
                and i < len(rows_of)
                and value.size == rows_of[i]
                and value.size > 1
            ):
                bulk.setdefault(value.dtype.kind, []).append((i, value))
        done = set()
        for group in bulk.values():
            arrays = [v for _, v in group]
            names, inv = _row_names(np.concatenate(arrays) if len(arrays) > 1 else arrays[0], sum(a.size for a in arrays))
            slots, codes = self._place(names, inv, now, local)
            start = 0
            for i, v in group:
                part = inv[start : start + v.size]
                start += v.size
                entries.append((i, slots[part]))
                code_of_entry[i] = codes[part]
                done.add(i)
        for i, value in enumerate(segs):
            if value is NO_SEGMENT or i in done:
                continue
            rows = int(rows_of[i]) if i < len(rows_of) else 1
            try:
                if value is SEGMENT_FAILED:
                    raise ValueError("the segment function failed")
                if isinstance(value, FeatureSegment):
                    value = _column(features[i], value.feature, self._feature_names())
                if _is_scalar(value):
                    seg = self._slot(_safe_name(value), rows, now)
                    entries.append((i, local(seg)))
                    code_of_entry[i] = seg.code
                    continue
                names, inv = _row_names(value, rows)
            except Exception:
                seg = self._slot(None, rows, now)
                entries.append((i, local(seg)))
                code_of_entry[i] = seg.code
                continue
            slots, codes = self._place(names, inv, now, local)
            entries.append((i, slots[inv]))
            code_of_entry[i] = codes[inv]
        if not entries:
            return
        self._codes_for_join(batch, code_of_entry)
        self._count(chosen, entries, rows_of, now)
        if not self._stack(batch, chosen, entries):
            self._split(batch, chosen, entries)
        if self._pending_bytes > _MAX_PENDING_BYTES:
            self.drained()

    def _place(
        self, names: list[str | None], inv: npt.NDArray[np.intp], now: float, local: Callable[[_Segment], int]
    ) -> tuple[npt.NDArray[np.intp], U32]:
        """For each distinct name of some rows (``inv``: each row's name), the segment that takes
        those rows: its index among this drain's segments, and its code."""
        counts = np.bincount(inv, minlength=len(names))
        slots = np.zeros(len(names), dtype=np.intp)
        codes = np.zeros(len(names), dtype=np.uint32)
        for k, name in enumerate(names):
            if counts[k]:
                seg = self._slot(name, int(counts[k]), now)
                slots[k] = local(seg)
                codes[k] = seg.code
        return slots, codes

    def _count(self, chosen: list[_Segment], entries: list[tuple[int, Any]], rows_of: Sequence[int], now: float) -> None:
        """Calls and rows per segment: a call counts once in each segment its rows fall in."""
        k = len(chosen)
        rows = np.zeros(k, dtype=np.int64)
        calls = np.zeros(k, dtype=np.int64)
        for i, slot in entries:
            if isinstance(slot, np.ndarray):
                per = np.bincount(slot, minlength=k)
                rows += per
                calls += per > 0
            else:
                rows[slot] += int(rows_of[i])
                calls[slot] += 1
        for j, seg in enumerate(chosen):
            c = seg.counts.current(now)
            c.calls += int(calls[j])
            c.rows += int(rows[j])
            seg.calls_total += int(calls[j])
            seg.rows_total += int(rows[j])

    def _stack(self, batch: CallBatch, chosen: list[_Segment], entries: list[tuple[int, Any]]) -> bool:
        """The usual case, vectorised: every entry's outputs and features are plain numeric
        arrays of one width. They are stacked once, sorted by segment once, and each segment
        gets one piece (kept until the end of the drain, see :meth:`drained`). False when the
        entries are not all like that."""
        outs = [batch.outputs[i] for i, _ in entries]
        rows = [int(batch.rows[i]) for i, _ in entries]
        feats = [batch.features[i] if i < len(batch.features) else None for i, _ in entries]
        if not _stackable(outs, rows, False):
            return False
        has_feats = any(f is not None for f in feats)
        if has_feats and (any(f is None for f in feats) or not _stackable(feats, rows, True)):
            return False
        out = _stack_rows(outs, rows, False)
        feat = _stack_rows(feats, rows, True) if has_feats else None
        if not any(isinstance(s, np.ndarray) for _, s in entries):
            slot = np.repeat(np.array([s for _, s in entries], dtype=np.intp), rows)
        else:
            slot = np.concatenate([s if isinstance(s, np.ndarray) else np.full(n, s, dtype=np.intp) for (_, s), n in zip(entries, rows, strict=True)])
        order = np.argsort(slot, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(slot, minlength=len(chosen)))))
        now = batch.now
        for j, seg in enumerate(chosen):
            a, b = int(bounds[j]), int(bounds[j + 1])
            if a == b:
                continue
            take = order[a:b]
            piece_out = out[take]
            piece_feat = None if feat is None else feat[take]
            self._pending.setdefault(seg.name, []).append((piece_out, piece_feat, b - a, now))
            self._pending_bytes += piece_out.nbytes + (0 if piece_feat is None else piece_feat.nbytes)
        return True

    def _split(self, batch: CallBatch, chosen: list[_Segment], entries: list[tuple[int, Any]]) -> None:
        """Any other entries: each segment gets its rows of each call, as they are."""
        groups: dict[int, list[tuple[int, npt.NDArray[np.intp] | None]]] = {}
        for i, slot in entries:
            if isinstance(slot, np.ndarray):
                order = np.argsort(slot, kind="stable")
                bounds = np.concatenate(([0], np.cumsum(np.bincount(slot, minlength=len(chosen)))))
                for j in range(len(chosen)):
                    if bounds[j + 1] > bounds[j]:
                        groups.setdefault(j, []).append((i, order[bounds[j] : bounds[j + 1]]))
            else:
                groups.setdefault(slot, []).append((i, None))
        for j, pieces in groups.items():
            self._feed(chosen[j], batch, pieces)

    def drained(self) -> None:
        """Feed every segment the pieces kept since the last call, one entry each (called at
        the end of each drain, before a snapshot, and when they pass a few MiB)."""
        pending, self._pending, self._pending_bytes = self._pending, {}, 0
        for name, pieces in pending.items():
            seg = self._segs.get(name)
            if seg is None:
                continue  # replaced meanwhile
            try:
                if len(pieces) == 1:
                    out, feat, n, now = pieces[0]
                else:
                    out = np.concatenate([p[0] for p in pieces])
                    feat = None if pieces[0][1] is None else np.concatenate([p[1] for p in pieces])
                    n, now = int(out.shape[0]), max(p[3] for p in pieces)
                if feat is not None and n == 1:
                    feat = feat.reshape(-1)
                sub = CallBatch(now=now, wall=0.0, outputs=[out], features=[feat], ids=[None], rows=[n], times=[now])
                self._feed_parts(seg, sub)
            except Exception:
                self.errors += 1

    def _feed_parts(self, seg: _Segment, sub: CallBatch) -> None:
        for part in (seg.outputs, seg.outcomes, seg.features):
            try:
                part.ingest(sub)
            except Exception:
                self.errors += 1

    def _error_names(self, value: Any) -> list[str | None]:
        if value is SEGMENT_FAILED or value is NO_SEGMENT or isinstance(value, FeatureSegment):
            return [None]
        if _is_scalar(value):
            return [_safe_name(value)]
        try:
            names, _ = _row_names(value, len(value))
        except Exception:
            return [None]
        return names or [None]

    def _codes_for_join(self, batch: CallBatch, code_of_entry: list[Any]) -> None:
        """One segment code per row the quality part stores (the task's mapped rows)."""
        if not any(i is not None for i in batch.ids):
            return
        mapped, lengths = mapped_outputs(self._task, batch)
        total = int(mapped.values.size)
        if total != sum(lengths):
            return
        codes = np.zeros(total, dtype=np.uint32)
        start = 0
        for i, n in enumerate(lengths):
            c = code_of_entry[i] if i < len(code_of_entry) else None
            if c is not None and n:
                if isinstance(c, np.ndarray):
                    if c.size == n:
                        codes[start : start + n] = c
                else:
                    codes[start : start + n] = c
            start += n
        batch.segment_codes = codes

    def _feed(self, seg: _Segment, batch: CallBatch, entries: list[tuple[int, npt.NDArray[np.intp] | None]]) -> None:
        outs: list[Any] = []
        feats: list[Any] = []
        rows: list[int] = []
        times: list[float] = []
        b_out, b_feat, b_rows = batch.outputs, batch.features, batch.rows
        for i, idx in entries:
            if idx is None:
                outs.append(b_out[i])
                feats.append(b_feat[i] if i < len(b_feat) else None)
                rows.append(int(b_rows[i]))
            else:
                outs.append(_take_or_none(b_out[i], idx))
                feats.append(_take_or_none(b_feat[i] if i < len(b_feat) else None, idx))
                rows.append(int(idx.size))
            times.append(batch.time_of(i))
        self._feed_parts(seg, CallBatch(now=batch.now, wall=batch.wall, outputs=outs, features=feats, ids=[None] * len(outs), rows=rows, times=times))

    # -- labels and outcomes -------------------------------------------------------------------
    def add_joined(
        self,
        codes: U32,
        preds: npt.NDArray[np.float64],
        labels: npt.NDArray[np.float64],
        delays: npt.NDArray[np.float64],
        now: float,
        names: Mapping[int, str] | None = None,
    ) -> None:
        """Joined pairs whose predictions had a segment (``codes``, 0: none): each to its
        segment's quality (a segment no longer tracked: the overflow one). Never raises."""
        try:
            uniq, inv = np.unique(codes, return_inverse=True)
            for k, code in enumerate(uniq.tolist()):
                if not code:
                    continue
                seg = self._by_code.get(code)
                if seg is None or seg.name not in self._segs:
                    name = self._names.get(code) or (names or {}).get(code)
                    seg = self._slot(name if name is not None else OVERFLOW, 0, now)
                sel = inv == k
                seg.quality.add_joined(preds[sel], labels[sel], delays[sel], now)
        except Exception:
            self.errors += 1

    def log_outcome(self, name: str, ids: Any, value: Any, now: float, segment: Any) -> None:
        """An outcome of the predictions of one segment (``log_outcome(..., segment=...)``)."""
        seg = self._slot(_safe_name(segment), 0, now)
        seg.outcomes.log(name, ids, value, now)

    # -- read side -----------------------------------------------------------------------------
    def samples(self, now: float) -> Iterator[Triple]:
        """Every segment's series (labelled ``segment``) and the bookkeeping. Before that, at
        most one change of the tracked set: when the cap is reached and a value in the overflow
        has had more than twice the rows of the least busy segment's window since the last
        change (and at least 100), it replaces that segment, whose series end."""
        if not self._segs and not self.overflow_rows and not self.evictions:
            return  # no call has had a segment: no series at all
        if self._pending:
            self.drained()
        self._rebalance(now)
        for seg in list(self._segs.values()):
            label = seg.name
            m = seg.counts.merged(now)
            covered = max(seg.counts.covered(now), 1e-9)
            yield ("mlmon_calls_total", seg.calls_total, {"segment": label})
            yield ("mlmon_rows_total", seg.rows_total, {"segment": label})
            for error_type, n in sorted(seg.errors_total.items()):
                yield ("mlmon_errors_total", n, {"error_type": error_type, "segment": label})
            yield ("mlmon_calls_per_second", m.calls / covered, {"segment": label})
            yield ("mlmon_rows_per_second", m.rows / covered, {"segment": label})
            if m.calls:
                yield ("mlmon_error_ratio", m.errors / m.calls, {"segment": label})
            if seg.own_reference is not None:
                yield ("mlmon_segment_reference", 1 if seg.own_reference else 0, {"segment": label})
            for source in (seg.outputs.samples(now), seg.quality.segment_samples(now), seg.outcomes.samples(now), seg.features.samples(now, bins=False)):
                try:
                    for name, value, labels in source:
                        if name not in _OVERALL_ONLY:
                            yield (name, value, {**labels, "segment": label})
                except Exception:
                    self.errors += 1
        yield ("mlmon_segments", len(self._segs), {})
        yield ("mlmon_segments_max", self.max_segments, {})
        yield ("mlmon_segment_overflow_rows_total", self.overflow_rows, {})
        yield ("mlmon_segment_invalid_total", self.invalid_rows, {})
        yield ("mlmon_segment_evictions_total", self.evictions, {})

    def _rebalance(self, now: float) -> None:
        cands = self._candidates
        if not cands:
            return
        named = [s for s in self._segs.values() if s.name != OVERFLOW]
        if len(named) < self.max_segments:
            cands.clear()
            return
        top = max(cands, key=cands.__getitem__)
        least = min(named, key=lambda s: s.counts.merged(now).rows)
        if cands[top] >= max(_PROMOTE_MIN_ROWS, _PROMOTE_FACTOR * least.counts.merged(now).rows):
            del self._segs[least.name]
            self._by_code.pop(least.code, None)
            self.evictions += 1
            del cands[top]
            self._new(top, now)
        if now - self._candidates_since >= self._window_args[0]:
            cands.clear()  # counts since the last change, at most a window old
            self._candidates_since = now

    def tracked(self) -> list[str]:
        """The segments tracked now (the overflow one included)."""
        return list(self._segs)

    def reset(self) -> None:
        """Forget everything (in a forked child)."""
        self._segs.clear()
        self._by_code.clear()
        self._names.clear()
        self._candidates.clear()
        self._pending.clear()
        self._pending_bytes = 0
        self.overflow_rows = self.invalid_rows = self.evictions = self.errors = 0


def _take_or_none(obj: Any, idx: npt.NDArray[np.intp]) -> Any:
    try:
        return _take(obj, idx)
    except Exception:
        return None


_SCALARS = frozenset({float, int})


def _stackable(values: list[Any], rows: list[int], features: bool) -> bool:
    """Whether one call's values each hold exactly their rows as numbers: scalars of one-row
    calls, arrays whose first axis is the call's rows (features: 1-D for one row)."""
    if _SCALARS.issuperset(map(type, values)) and rows.count(1) == len(rows):
        return True  # one number per one-row call (checked with C-level loops)
    width = None
    for v, n in zip(values, rows, strict=True):
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biuf":
                return False
            if v.ndim == 2 and v.shape[0] == n:
                w: Any = v.shape[1]
            elif v.ndim == 1 and (v.shape[0] == n if not features else n == 1):
                w = None if not features else v.shape[0]
            else:
                return False
        elif n == 1 and v.__class__ in (float, int):
            w = 1 if features else None
        else:
            return False
        if width is None:
            width = ("w", w)
        elif width != ("w", w):
            return False
    return True


def _stack_rows(values: list[Any], rows: list[int], features: bool) -> npt.NDArray[np.float64]:
    """Entries that passed :func:`_stackable` as one array, rows first."""
    if _SCALARS.issuperset(map(type, values)):
        flat = np.array(values, dtype=np.float64)
        return flat.reshape(-1, 1) if features else flat
    if features and rows.count(1) == len(rows):
        return np.array(values, dtype=np.float64).reshape(len(values), -1)  # one row each
    parts = []
    for v, n in zip(values, rows, strict=True):
        a = np.asarray(v, dtype=np.float64)
        parts.append(a.reshape(n, -1) if (features or a.ndim == 2) else a.reshape(n))
    return np.concatenate(parts)
