"""The feedback join: a bounded id → prediction store that labels are joined against.

Memory is the design constraint: a busy service keeps up to a million predictions waiting for
labels that may take days, so a dict of id → (prediction, time) tuple (about 180 bytes each for
integer ids, more for strings, whose objects it keeps alive) is too much. Instead:

- Every id is reduced to a 64-bit key: an integer id in the int64 range is its own key (exact);
  a float with an integral value is that integer (``7.0`` joins ``7``, as in a dict); any other
  hashable id (a string, bytes, a tuple, a large int) is keyed by Python's ``hash``. Two
  distinct ids with the same 64-bit hash would be joined as one; for a million pending string
  ids the chance that a given label meets such a collision is about 5e-14. The caller's id
  objects are never kept.
- Predictions live in a ring of columns (key, prediction, time, state) in arrival order,
  25 bytes a slot; the ring grows by doubling up to ``max_pending`` and shrinks when mostly
  empty. Its oldest slots are evicted when it is full, or dropped when older than ``2 × ttl``.
- An open-addressing table (linear probing, int64 key and int64 sequence number per cell,
  load at most 0.7, rebuilt to 0.4) maps a key to the sequence number of its latest prediction.
  A cell whose sequence number fell behind the ring's head is stale: lookups skip it, inserts
  reuse it, and a rebuild clears it, so eviction never touches the table.

Multiclass predictions may carry their probability row in an optional float32 column (``k``
floats a slot), capped in bytes: above the cap only each row's top classes are kept.

All of this is numpy: a batch of 1,000 labels is a handful of vectorised probe rounds.
About 65 bytes per stored prediction at capacity (see ``docs/quality.md`` for measurements).

Not thread-safe: the monitor calls it under its drain lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["FeedbackJoin", "Joined", "as_batch", "id_keys", "label_array"]

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

DEFAULT_MAX_PENDING = 1_000_000
DEFAULT_TTL = 7 * 86400.0
DEFAULT_MAX_ROW_BYTES = 64 * 1024 * 1024
"""Default cap of the probability-row column (``FeedbackJoin(max_row_bytes=...)``): full rows
of ``k`` float32 probabilities while ``k × max_pending × 4`` fits, else each row's top classes."""

_DEAD, _PENDING, _LABELLED = 0, 1, 2
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_MIN_RING = 1024
_MIN_TABLE = 4096
_PROBE = 8  # cells a vectorised probe round reads per key
_FEW = 8  # keys left below this are probed one by one
_CHUNK = 1 << 16
_STEPS = np.arange(_PROBE, dtype=np.int64)
_MAX_LOAD, _REBUILD_LOAD = 0.7, 0.4
_C1_INT, _C2_INT, _M64 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, (1 << 64) - 1
_C1, _C2 = np.uint64(_C1_INT), np.uint64(_C2_INT)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)


# -- ids and labels as batches ----------------------------------------------------------------
def as_batch(x: object) -> list[Any] | range | npt.NDArray[Any]:
    """``x`` as a batch: lists, tuples, ranges, arrays and other iterables are batches; a
    string, bytes, a number or any other single object is a batch of one.

    >>> as_batch("req-1"), as_batch((1, 2)), as_batch(range(3))
    (['req-1'], [1, 2], range(0, 3))
    """
    if isinstance(x, (str, bytes, Mapping)):
        return [x]
    if isinstance(x, (list, range)):
        return x
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return [x.item()]
        if x.ndim > 1 and all(d == 1 for d in x.shape[1:]):
            flat: npt.NDArray[Any] = x.reshape(x.shape[0])
            return flat
        return x if x.ndim == 1 else list(x)
    if hasattr(x, "__array__") and hasattr(x, "__len__"):  # pandas Series and the like
        return as_batch(np.asarray(x))
    if isinstance(x, Iterable) and not isinstance(x, (set, frozenset)):
        return list(x)
    return [x]


def label_array(batch: list[Any] | range | npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A batch of labels as a 1-D numpy array (object dtype when the values are mixed)."""
    if isinstance(batch, np.ndarray) and batch.ndim == 1:
        return batch
    if isinstance(batch, range):
        return np.arange(batch.start, batch.stop, batch.step)
    items = list(batch)
    kinds = {type(v) for v in items}
    if kinds and kinds <= {int, float, bool, str}:
        arr = np.asarray(items)
        if arr.ndim == 1 and (arr.dtype.kind != "U" or kinds == {str}):
            return arr
    return np.fromiter(items, dtype=object, count=len(items))


def _key(x: Any) -> int | None:
    """The 64-bit key of one id (see the module docstring); None for unusable ids."""
    if type(x) is int:
        return x if _I64_MIN <= x <= _I64_MAX else hash(x)
    if x is None:
        return None
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if math.isnan(f):
            return None
        if f.is_integer() and -(2.0**63) <= f < 2.0**63:
            return int(f)
        return hash(f)
    if isinstance(x, (int, np.integer)):
        v = int(x)
        return v if _I64_MIN <= v <= _I64_MAX else hash(v)
    try:
        return hash(x)
    except TypeError:
        return None


def _keys_generic(items: Iterable[Any], n: int) -> tuple[IntArray, BoolArray]:
    raw = [_key(x) for x in items]
    ok = np.fromiter((k is not None for k in raw), dtype=np.bool_, count=n)
    keys = np.fromiter((0 if k is None else k for k in raw), dtype=np.int64, count=n)
    return keys, ok


def id_keys(ids: list[Any] | range | npt.NDArray[Any]) -> tuple[IntArray, BoolArray]:
    """64-bit keys of a batch of ids, and a mask of the usable ones (not None, NaN, unhashable).

    >>> keys, ok = id_keys([7, 7.0, None, "a", [1]])
    >>> keys[:2].tolist(), ok.tolist()
    ([7, 7], [True, True, False, True, False])
    """
    n = len(ids)
    if isinstance(ids, range):
        if n == 0 or (min(ids[0], ids[-1]) >= _I64_MIN and max(ids[0], ids[-1]) <= _I64_MAX):
            return np.arange(ids.start, ids.stop, ids.step, dtype=np.int64), np.ones(n, np.bool_)
        return _keys_generic(ids, n)
    if isinstance(ids, np.ndarray):
        kind = ids.dtype.kind
        if kind in "ib" or (kind == "u" and (ids.size == 0 or int(ids.max()) <= _I64_MAX)):
            return ids.astype(np.int64), np.ones(n, np.bool_)
        if kind == "f":
            f = ids.astype(np.float64)
            exact = (f == np.floor(f)) & (np.abs(f) < 2.0**63)
            if exact.all():
                return f.astype(np.int64), np.ones(n, np.bool_)
        return _keys_generic(ids.tolist(), n)
    if n and all(type(x) is int for x in ids):
        try:
            return np.array(ids, dtype=np.int64), np.ones(n, np.bool_)
        except OverflowError:
            pass
    elif n and all(type(x) is str for x in ids):
        return np.fromiter(map(hash, ids), dtype=np.int64, count=n), np.ones(n, np.bool_)
    return _keys_generic(ids, n)


def _mix(keys: IntArray) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: sequential ids spread over the whole table."""
    z: npt.NDArray[np.uint64] = keys.view(np.uint64)
    z = (z ^ (z >> _S30)) * _C1
    z = (z ^ (z >> _S27)) * _C2
    out: npt.NDArray[np.uint64] = z ^ (z >> _S31)
    return out


class Joined(NamedTuple):
    """The labels that joined a prediction, aligned: prediction, label code, delay (seconds),
    the segment code the prediction was recorded with (None when no prediction had one), and
    its probability row (None when the store keeps none): ``rows`` is ``(n, k)`` float32, or
    with ``row_classes`` (``(n, m)``, the top classes in rank order) their ``m`` probabilities;
    a prediction recorded without a row has a NaN row."""

    preds: FloatArray
    labels: FloatArray
    delays: FloatArray
    segments: npt.NDArray[np.uint32] | None = None
    rows: npt.NDArray[np.float32] | None = None
    row_classes: npt.NDArray[np.int64] | None = None


_NO_JOIN = Joined(np.empty(0), np.empty(0), np.empty(0))


class FeedbackJoin:
    """A bounded store of recent predictions by id, and the join of labels against it.

    Args:
        max_pending: most predictions kept (default 1,000,000, about 65 MB at capacity); when
            full the oldest are evicted (counted in ``evicted`` if still waiting for a label).
        ttl: seconds a prediction stays joinable (default 7 days). A label for an older
            prediction counts as ``expired``; the store remembers expired predictions for
            another ``ttl`` so that late labels are told apart from unknown ids.
        max_row_bytes: cap of the optional probability-row column (multiclass rows, made at
            the first prediction recorded with one): full float32 rows while
            ``k × max_pending × 4`` bytes fit, else each row's top classes (see
            :meth:`row_layout`); default 64 MiB.

    Outcome of each label, counted in the attribute of the same name:

    - ``joined``: matched a prediction waiting for its first label;
    - ``invalid``: the id is unusable (None, NaN, unhashable) or the label is invalid; the
      prediction stays pending, so a corrected label can still join;
    - ``unmatched``: no stored prediction has this id (never recorded, recorded without ids,
      recorded after this label, or dropped long ago);
    - ``duplicate``: the prediction already has a label: the first label wins, later ones
      (also within one batch) are counted and ignored;
    - ``expired``: the prediction is older than ``ttl``.

    Recording an id again replaces its earlier prediction (the latest wins, also within one
    batch); a label then joins the latest.

    >>> store = FeedbackJoin(max_pending=1000, ttl=60.0)
    >>> store.record(range(0, 3), np.array([1.0, 0.0, 1.0]), now=10.0)
    >>> j = store.join(as_batch([2, 0, 9]), np.array([1.0, 1.0, 0.0]), np.ones(3, bool), now=12.5)
    >>> j.preds.tolist(), j.labels.tolist(), j.delays.tolist()
    ([1.0, 1.0], [1.0, 1.0], [2.5, 2.5])
    >>> store.joined, store.unmatched, store.pending(12.5)
    (2, 1, 1)
    """

    def __init__(
        self,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        ttl: float = DEFAULT_TTL,
        max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
    ) -> None:
        if not (
            isinstance(max_pending, int) and not isinstance(max_pending, bool) and max_pending >= 1
        ):
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if not (
            isinstance(max_row_bytes, int) and not isinstance(max_row_bytes, bool) and max_row_bytes >= 0
        ):
            raise ValueError(f"max_row_bytes must be an int >= 0, got {max_row_bytes!r}")
        self.max_pending = max_pending
        self.ttl = float(ttl)
        self.max_row_bytes = max_row_bytes
        self._clear()

    def _clear(self) -> None:
        cap = min(self.max_pending, _MIN_RING)
        self._cap = cap
        self._keys: IntArray = np.zeros(cap, dtype=np.int64)
        self._preds: FloatArray = np.zeros(cap, dtype=np.float64)
        self._times: FloatArray = np.zeros(cap, dtype=np.float64)
        self._state: npt.NDArray[np.int8] = np.zeros(cap, dtype=np.int8)
        # Segment codes (mlmon.segments.segment_code), made at the first prediction with one.
        self._segs: npt.NDArray[np.uint32] | None = None
        # Probability rows (float32), made at the first prediction with one: ``(cap, k)``, or
        # the top ``m`` probabilities with their classes in ``_ridx`` when k rows do not fit
        # max_row_bytes (see row_layout). ``_rwidth`` is k, 0 before any row.
        self._rows: npt.NDArray[np.float32] | None = None
        self._ridx: npt.NDArray[Any] | None = None
        self._rwidth = 0
        self.rows_dropped = 0  # rows not kept: of another width than the first, or no room at all
        # The probability row of the last join_one that joined (None: it had none).
        self.last_row: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64] | None] | None = None
        # Sequence numbers: [head, tail) are stored, [live, tail) are not known to be expired.
        self._head = self._live = self._tail = 0
        self._last_time = -math.inf
        self._new_table(_MIN_TABLE)
        self._pending = 0  # _PENDING slots in [live, tail)
        self.joined = self.unmatched = self.expired = self.duplicate = 0
        self.evicted = self.invalid = 0
        self.bad_ids = 0  # recorded predictions whose id was unusable (not stored)

    def reset(self) -> None:
        """Forget every prediction and zero the counters (after a fork, say)."""
        self._clear()

    # -- the table -------------------------------------------------------------------------
    def _new_table(self, size: int) -> None:
        self._tsize = size
        self._tkeys: IntArray = np.zeros(size, dtype=np.int64)
        self._tseq: IntArray = np.full(size, -1, dtype=np.int64)
        self._used = 0  # cells ever filled since the table was made (live or stale)

    def _home(self, keys: IntArray) -> IntArray:
        # Lemire's multiply-shift maps the top 32 hash bits onto [0, size) without a modulo.
        top = _mix(keys) >> _S32
        home: IntArray = ((top * np.uint64(self._tsize)) >> _S32).astype(np.int64)
        return home

    def _home_one(self, key: int) -> int:
        """:meth:`_home` of one key, in Python integers (same result)."""
        z = key & _M64
        z = ((z ^ (z >> 30)) * _C1_INT) & _M64
        z = ((z ^ (z >> 27)) * _C2_INT) & _M64
        z ^= z >> 31
        return ((z >> 32) * self._tsize) >> 32

    def _probe_one(self, key: int, pos: int) -> int:
        """Scalar :meth:`_lookup` of one key from cell ``pos`` on: for single labels and the
        few keys left after the vectorised rounds, where numpy's per-call cost dominates."""
        tkeys, tseq = memoryview(self._tkeys), memoryview(self._tseq)  # type: ignore[arg-type]
        size = self._tsize
        while True:
            seq = tseq[pos]
            if seq < 0:
                return -1
            if tkeys[pos] == key:
                return pos
            pos += 1
            if pos == size:
                pos = 0

    def _window(self, pos: IntArray) -> IntArray:
        """The ``_PROBE`` cells from each position on, wrapping at the end of the table."""
        idx = pos[:, None] + _STEPS
        idx[idx >= self._tsize] -= self._tsize
        return idx

    def _lookup(self, keys: IntArray) -> IntArray:
        """The cell holding each key (live or stale), or -1.

        Linear probing, ``_PROBE`` cells a round: a key is in the first cell of its probe
        sequence that holds it, and absent if an empty cell comes first.
        """
        out = np.full(keys.size, -1, dtype=np.int64)
        act = np.arange(keys.size)
        pos = self._home(keys)
        k = keys
        while act.size > _FEW:
            idx = self._window(pos)
            empty = self._tseq[idx] < 0
            hit = (self._tkeys[idx] == k[:, None]) & ~empty
            event = hit | empty
            first = event.argmax(axis=1)
            rows = np.arange(act.size)
            found = hit[rows, first]
            out[act[found]] = idx[rows[found], first[found]]
            more = ~event.any(axis=1)
            act, k, pos = act[more], k[more], idx[more, -1] + 1
            pos[pos == self._tsize] = 0
        for i, key, p in zip(act.tolist(), k.tolist(), pos.tolist(), strict=True):
            out[i] = self._probe_one(key, p)
        return out

    def _insert(self, keys: IntArray, seqs: IntArray) -> None:
        """Put keys that are not in the table into free (empty or stale) cells."""
        for lo in range(0, keys.size, _CHUNK):  # bounds the (n, _PROBE) temporaries
            self._insert_chunk(keys[lo : lo + _CHUNK], seqs[lo : lo + _CHUNK])

    def _insert_chunk(self, keys: IntArray, seqs: IntArray) -> None:
        act = np.arange(keys.size)
        pos = self._home(keys)
        head = self._head
        while act.size:
            idx = self._window(pos)
            free = self._tseq[idx] < head
            has = free.any(axis=1)
            first = free.argmax(axis=1)
            rows = np.flatnonzero(has)
            cand = idx[rows, first[rows]]
            # Several keys may want one free cell: the first of them in the batch takes it.
            cells, win = np.unique(cand, return_index=True)
            won = rows[win]
            self._used += int(np.count_nonzero(self._tseq[cells] < 0))
            self._tseq[cells] = seqs[act[won]]
            self._tkeys[cells] = keys[act[won]]
            # Losers look again from the cell they lost (now taken); the rest move a window on.
            nxt = idx[:, -1] + 1
            nxt[nxt == self._tsize] = 0
            nxt[rows] = cand
            keep = np.ones(act.size, dtype=np.bool_)
            keep[won] = False
            act, pos = act[keep], nxt[keep]

    def _fit_table(self, incoming: int) -> bool:
        """Rebuild the table if ``incoming`` inserts could overfill it, or it is mostly empty.

        A growing table gets room for half as many entries again, so that a store filling up
        rebuilds a few times, not at every step; at capacity it is sized for ``max_pending``.
        """
        need = self._tail - self._head + incoming
        size = self._tsize
        if self._used + incoming <= _MAX_LOAD * size and (size <= _MIN_TABLE or need > size // 16):
            return False
        room = max(need, min(need * 3 // 2, self.max_pending))
        self._new_table(max(_MIN_TABLE, int(room / _REBUILD_LOAD) + 1))
        seqs = np.arange(self._head, self._tail, dtype=np.int64)
        slots = seqs % self._cap
        alive = self._state[slots] != _DEAD
        self._insert(self._keys[slots[alive]], seqs[alive])
        return True

    # -- the ring --------------------------------------------------------------------------
    def _resize_ring(self, cap: int) -> None:
        seqs = np.arange(self._head, self._tail, dtype=np.int64)
        old, new = seqs % self._cap, seqs % cap
        for name in ("_keys", "_preds", "_times", "_state", "_segs", "_rows", "_ridx"):
            arr = getattr(self, name)
            if arr is None:
                continue
            fresh = np.zeros((cap, *arr.shape[1:]), dtype=arr.dtype)
            fresh[new] = arr[old]
            setattr(self, name, fresh)
        self._cap = cap

    def _first_at_or_after(self, lo: int, hi: int, t: float) -> int:
        """The first sequence number in [lo, hi) stored at time >= t (times never decrease)."""
        if lo >= hi or self._times[lo % self._cap] >= t:
            return lo
        cap = self._cap
        start = lo % cap
        first = min(hi - lo, cap - start)
        i = int(np.searchsorted(self._times[start : start + first], t, side="left"))
        if i < first:
            return lo + i
        rest = hi - lo - first
        return lo + first + int(np.searchsorted(self._times[:rest], t, side="left"))

    def _count_state(self, lo: int, hi: int, state: int) -> int:
        if lo >= hi:
            return 0
        cap = self._cap
        start = lo % cap
        first = min(hi - lo, cap - start)
        n = int(np.count_nonzero(self._state[start : start + first] == state))
        return n + int(np.count_nonzero(self._state[: hi - lo - first] == state))

    def _expire(self, now: float) -> None:
        live = self._first_at_or_after(self._live, self._tail, now - self.ttl)
        if live > self._live:
            self._pending -= self._count_state(self._live, live, _PENDING)
            self._live = live
        # Expired predictions are kept another ttl, so late labels count as expired.
        self._head = self._first_at_or_after(self._head, self._live, now - 2.0 * self.ttl)

    def _evict(self, n: int) -> None:
        end = self._head + n
        lost = self._count_state(self._live, end, _PENDING)
        self.evicted += lost
        self._pending -= lost
        self._head = end
        self._live = max(self._live, end)

    # -- public ----------------------------------------------------------------------------
    def pending(self, now: float) -> int:
        """Predictions stored, not expired, and still waiting for a label."""
        self._expire(now)
        return self._pending

    @property
    def stored(self) -> int:
        """Slots in use (pending, labelled and expired predictions not yet dropped)."""
        return self._tail - self._head

    def nbytes(self) -> int:
        """Bytes held by the store's arrays."""
        arrays = (self._keys, self._preds, self._times, self._state, self._tkeys, self._tseq)
        extra = (self._segs, self._rows, self._ridx)
        return sum(a.nbytes for a in arrays) + sum(a.nbytes for a in extra if a is not None)

    def row_layout(self, k: int) -> int:
        """Probabilities kept per row for rows of ``k`` classes: ``k`` (full rows) when
        ``k × max_pending × 4`` bytes fit ``max_row_bytes``, else the ``m`` highest with their
        class indices (2 bytes each up to 65,536 classes, else 4), as many as fit; 0: none.

        >>> FeedbackJoin(max_pending=1000, max_row_bytes=40_000).row_layout(10)
        10
        >>> FeedbackJoin(max_pending=1000, max_row_bytes=40_000).row_layout(100)
        6
        """
        if k * self.max_pending * 4 <= self.max_row_bytes:
            return k
        per = 4 + (2 if k <= 65536 else 4)
        return min(k, self.max_row_bytes // (self.max_pending * per))

    def _make_rows(self, k: int) -> None:
        m = self.row_layout(k)
        self._rwidth = k
        if m == 0:
            return
        self._rows = np.full((self._cap, m), np.nan, dtype=np.float32)
        if m < k:
            self._ridx = np.zeros((self._cap, m), dtype=np.uint16 if k <= 65536 else np.uint32)

    def _row_values(
        self, rows: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any] | None]:
        """Rows as stored: full, or the top m (ties: the higher class index first, as
        scikit-learn's top-k accuracy ranks them) with their classes."""
        assert self._rows is not None
        m = self._rows.shape[1]
        if self._ridx is None:
            return rows, None
        k = rows.shape[1]
        # A stable sort of the reversed row, descending: of equal values the higher index first.
        order = np.argsort(-rows[:, ::-1], axis=1, kind="stable")[:, :m]
        top = (k - 1 - order).astype(self._ridx.dtype)
        vals = np.take_along_axis(rows, top.astype(np.intp), axis=1)
        return vals, top

    def _joined_rows(
        self, slots: IntArray
    ) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.int64] | None]:
        if self._rows is None:
            return None, None
        idx = None if self._ridx is None else self._ridx[slots].astype(np.int64)
        return self._rows[slots], idx

    def labelled_since(self, t: float) -> int:
        """Stored predictions made at or after ``t`` that have a label."""
        lo = self._first_at_or_after(self._head, self._tail, t)
        return self._count_state(lo, self._tail, _LABELLED)

    def record(self, ids: object, preds: FloatArray, now: float) -> None:
        """Store predictions (one per id; NaN predictions are skipped) made at ``now``.

        Args:
            ids: a batch of ids (see :func:`as_batch`), as long as ``preds``.
            preds: float64 predictions: a class index, or a value for regression.
            now: the monitor's monotonic clock.
        """
        keys, ok = id_keys(as_batch(ids))
        if keys.size != preds.size:
            raise ValueError(f"ids and preds differ in length: {keys.size} != {preds.size}")
        self.record_keys(keys, ok, preds, now)

    def record_keys(
        self,
        keys: IntArray,
        ok: BoolArray,
        preds: FloatArray,
        now: float,
        times: FloatArray | None = None,
        segments: npt.NDArray[np.uint32] | None = None,
        rows: npt.NDArray[np.float32] | None = None,
    ) -> None:
        """:meth:`record` with keys from :func:`id_keys` (aligned arrays).

        ``times`` (aligned too) are when each prediction was made, for label delays; they are
        clamped to never decrease, since the store expires in time order. Default: ``now``.
        ``segments`` (aligned) are the predictions' segment codes (0: none); a join gives them
        back with the predictions. ``rows`` (aligned, ``(n, k)``) are probability rows (NaN
        rows: none), kept as :meth:`row_layout` says; rows of another width than the first
        rows recorded are dropped (counted in ``rows_dropped``).
        """
        self.bad_ids += int(ok.size - np.count_nonzero(ok))
        if rows is not None:
            if rows.ndim != 2 or rows.shape[0] != keys.size:
                raise ValueError(f"rows must be (n, k) with n = {keys.size}, got shape {rows.shape}")
            if self._rwidth == 0 and rows.shape[1] > 0:
                self._make_rows(rows.shape[1])
            if rows.shape[1] != self._rwidth or self._rows is None:
                self.rows_dropped += int(np.count_nonzero(ok & ~np.isnan(rows).all(axis=1)))
                rows = None
        good = ok & np.isfinite(preds)
        if times is None:
            times = np.full(keys.size, float(now))
        if segments is not None and self._segs is None:
            self._segs = np.zeros(self._cap, dtype=np.uint32)
        if not good.all():
            keys, preds, times = keys[good], preds[good], times[good]
            if segments is not None:
                segments = segments[good]
            if rows is not None:
                rows = rows[good]
        # Strictly increasing keys (generated ids) are unique; np.diff could overflow here.
        if keys.size > 1 and not (keys[1:] > keys[:-1]).all():
            # The latest prediction for an id wins: keep each key's last occurrence.
            _, last = np.unique(keys[::-1], return_index=True)
            sel = np.sort(keys.size - 1 - last)
            keys, preds, times = keys[sel], preds[sel], times[sel]
            if segments is not None:
                segments = segments[sel]
            if rows is not None:
                rows = rows[sel]
        m = int(keys.size)
        if m == 0:
            return
        if m > self.max_pending:  # only the newest fit; the rest are evicted at once
            self.evicted += m - self.max_pending
            keys, preds = keys[-self.max_pending :], preds[-self.max_pending :]
            times = times[-self.max_pending :]
            if segments is not None:
                segments = segments[-self.max_pending :]
            if rows is not None:
                rows = rows[-self.max_pending :]
            m = self.max_pending
        # Time never goes backwards in the ring, so expiry is a binary search.
        stamps = np.maximum.accumulate(np.maximum(np.minimum(times, float(now)), self._last_time))
        now = max(float(now), self._last_time)
        self._last_time = float(stamps[-1])
        self._expire(now)

        cells = self._lookup(keys)
        old = self._tseq[cells[cells >= 0]]
        old = old[old >= self._head]
        if old.size:  # superseded by this batch
            slots = old % self._cap
            self._pending -= int(
                np.count_nonzero((self._state[slots] == _PENDING) & (old >= self._live))
            )
            self._state[slots] = _DEAD
        over = self._tail - self._head + m - self.max_pending
        if over > 0:
            self._evict(over)
        size = self._tail - self._head + m
        if size > self._cap:
            self._resize_ring(min(self.max_pending, max(2 * self._cap, size)))
        elif size < self._cap // 4 and self._cap > _MIN_RING:
            self._resize_ring(max(_MIN_RING, 2 * size))
        if self._fit_table(m):
            cells = self._lookup(keys)

        seqs = np.arange(self._tail, self._tail + m, dtype=np.int64)
        have = cells >= 0
        self._tseq[cells[have]] = seqs[have]
        if not have.all():
            self._insert(keys[~have], seqs[~have])
        slots = seqs % self._cap
        self._keys[slots] = keys
        self._preds[slots] = preds
        self._times[slots] = stamps
        if self._segs is not None:
            self._segs[slots] = segments if segments is not None else 0
        if self._rows is not None:
            if rows is None:
                self._rows[slots] = np.nan
            else:
                vals, top = self._row_values(rows)
                self._rows[slots] = vals
                if top is not None and self._ridx is not None:
                    self._ridx[slots] = top
        self._state[slots] = _PENDING
        self._tail += m
        self._pending += m

    def join_one(self, id: object, label: float, now: float) -> tuple[float, float, int] | None:
        """:meth:`join` for one id and one label code (NaN when invalid), without numpy's
        per-call costs: a label stream logged one by one stays cheap.

        Returns:
            ``(prediction, delay, segment code)`` when the label joined, else None. The
            prediction's probability row is then in ``last_row`` (``(rows (1, w), classes or
            None)``, see :class:`Joined`; None when the store keeps no rows).
        """
        self._expire(now)
        self.last_row = None
        key = _key(id)
        if key is None or math.isnan(label):
            self.invalid += 1
            return None
        cell = self._probe_one(key, self._home_one(key))
        seq = self._tseq.item(cell) if cell >= 0 else -1
        if seq < self._head:
            self.unmatched += 1
            return None
        slot = seq % self._cap
        if self._state.item(slot) == _LABELLED:
            self.duplicate += 1
            return None
        t = self._times.item(slot)
        if t < now - self.ttl:
            self.expired += 1
            return None
        self.joined += 1
        self._state[slot] = _LABELLED
        if seq >= self._live:
            self._pending -= 1
        if self._rows is not None:
            sl = np.array([slot])
            r, c = self._joined_rows(sl)
            assert r is not None
            self.last_row = (r, c)
        segs = self._segs
        return self._preds.item(slot), max(now - t, 0.0), 0 if segs is None else int(segs.item(slot))

    def join(self, ids: object, labels: FloatArray, valid: BoolArray, now: float) -> Joined:
        """Join a batch of encoded labels to stored predictions, counting every outcome.

        Args:
            ids: a batch of ids as long as ``labels``.
            labels: label codes from the task (class index or value).
            valid: which labels are valid.
            now: the monitor's monotonic clock.

        Returns:
            The joined predictions, their labels and their delays.
        """
        keys, ok = id_keys(as_batch(ids))
        if keys.size != labels.size:
            raise ValueError(f"ids and labels differ in length: {keys.size} != {labels.size}")
        self._expire(now)
        good = ok & valid
        n_good = int(np.count_nonzero(good))
        self.invalid += int(keys.size) - n_good
        if n_good < keys.size:
            keys, labels = keys[good], labels[good]
        if n_good == 0:
            return _NO_JOIN
        cells = self._lookup(keys)
        seq = np.where(cells >= 0, self._tseq[cells], -1)
        found = np.flatnonzero(seq >= self._head)
        self.unmatched += n_good - int(found.size)
        if found.size == 0:
            return _NO_JOIN
        seq = seq[found]
        slots = seq % self._cap
        # As if the labels came one by one: a label for a labelled prediction is a duplicate,
        # one for an expired prediction is expired, and of several labels for one pending
        # prediction in this batch the first joins and the others are duplicates.
        labelled = self._state[slots] == _LABELLED
        late = ~labelled & (self._times[slots] < now - self.ttl)
        dup = labelled
        if found.size > 1:
            _, first = np.unique(seq, return_index=True)
            if first.size < seq.size:
                later = np.ones(seq.size, dtype=np.bool_)
                later[first] = False
                dup = labelled | (later & ~late)
        take = ~(dup | late)
        self.duplicate += int(np.count_nonzero(dup))
        self.expired += int(np.count_nonzero(late))
        hit = slots[take]
        k = int(hit.size)
        self.joined += k
        if k == 0:
            return _NO_JOIN
        self._state[hit] = _LABELLED
        self._pending -= int(np.count_nonzero(seq[take] >= self._live))
        delays = np.maximum(now - self._times[hit], 0.0)
        segs = self._segs
        rows, row_classes = self._joined_rows(hit)
        return Joined(
            self._preds[hit], labels[found[take]], delays, None if segs is None else segs[hit], rows, row_classes
        )
