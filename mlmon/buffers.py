"""The bounded buffers between the ``track`` wrappers and the drain, and the helpers that
read what a call produced (rows, bytes, copies) without ever raising.

Per decorated sync call the fast wrapper appends the duration to an ``array('q')`` and a
numeric output to an ``array('d')`` (any other output, copied, to a list); errors append
``(duration, exception class)``; the general wrapper and the ``with`` form append one tuple per
call. :meth:`CallBuffers.take` hands them to a drain, bounded in records and bytes.
"""

from __future__ import annotations

import array
import threading
import weakref
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import is_, itemgetter
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from mlmon._component import CallBatch

__all__ = [
    "NO_OUTPUT", "NO_SEGMENT", "POOL", "SEGMENT_FAILED", "UNREADABLE", "CallBuffers", "CopyPool", "Omitted", "copy_value", "feature_rows", "nbytes", "output_rows",
    "reduce_records",
]  # fmt: skip

# Outputs of these types are immutable: the record can keep them as they are.
_IMMUTABLE: frozenset[type] = frozenset(
    {float, int, bool, str, bytes, type(None), np.float64, np.float32, np.float16,
     np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_}
)  # fmt: skip

# Outputs of these types go to the float64 output buffer as they are.
_NUMERIC: frozenset[type] = frozenset(
    {float, int, bool, np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
     np.int8, np.uint8, np.bool_}
)  # fmt: skip
NO_OUTPUT: Any = object()  # a fast-path call whose output is not recorded
NO_SEGMENT: Any = object()  # track() without segment=: its records have 8 fields
SEGMENT_FAILED: Any = object()  # the segment function raised: the call's rows go to the overflow


class _Unreadable:
    """Stands for an output that could not even be copied: the drain counts it as invalid."""

    def __repr__(self) -> str:
        return "<unreadable output>"


UNREADABLE = _Unreadable()



class CopyPool:
    """Reused memory for the copies of large numeric arrays (a batch's features).

    A fresh 160 KB copy per call costs its caller the kernel's page faults (about half of what a
    1000×20 batch's capture costs). Copies of at least :attr:`MIN_BYTES` are written into
    buffers that the drain gives back (:meth:`release`) once the parts have reduced them; up to
    ``max_free`` bytes of given-back buffers are kept for the next copies, the rest left to the
    garbage collector. A copy that is never given back (dropped past a cap, an error) is simply
    freed. Taking and giving back are single list operations, safe under the GIL (only the
    drain gives back). The memory kept is bounded: ``max_free`` bytes in all (32 MiB).

    >>> pool = CopyPool()
    >>> a = np.arange(20_000, dtype=np.float64)
    >>> c = pool.copy(a)
    >>> bool((c == a).all()), c is a
    (True, False)
    >>> pool.release(c); pool.free_bytes
    196608
    """

    MIN_BYTES = 64 << 10

    def __init__(self, max_free: int = 32 << 20) -> None:
        self.max_free = max_free
        self._free: dict[int, list[npt.NDArray[np.uint8]]] = {}
        self._free_ids: set[int] = set()
        self._mine: weakref.WeakValueDictionary[int, npt.NDArray[np.uint8]] = weakref.WeakValueDictionary()

    def copy(self, a: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A C-ordered copy of ``a`` (numeric or bool, at least MIN_BYTES; else ``a.copy()``)."""
        n = a.nbytes
        if n < self.MIN_BYTES or a.dtype.kind not in "biuf":
            plain: npt.NDArray[Any] = a.copy()
            return plain
        k = (n + 0xFFFF) >> 16
        buf: npt.NDArray[np.uint8] | None = None
        lst = self._free.get(k)
        if lst:
            try:
                buf = lst.pop()
            except IndexError:  # another thread took the last one
                buf = None
        if buf is None:
            buf = np.empty(k << 16, dtype=np.uint8)
            self._mine[id(buf)] = buf
        else:
            self._free_ids.discard(id(buf))
        out: npt.NDArray[Any] = buf[:n].view(a.dtype).reshape(a.shape)
        np.copyto(out, a)
        return out

    def release(self, copy: object) -> None:
        """Give back the buffer of a copy made by :meth:`copy` (anything else is ignored). The
        caller must hold no other reference to the copy."""
        base = getattr(copy, "base", None)
        if base is None or type(copy) is not np.ndarray:
            return
        key = id(base)
        mine = self._mine.get(key)
        if mine is None or mine is not base or key in self._free_ids:
            return
        size = int(mine.nbytes)
        if self.free_bytes + size > self.max_free:  # kept: up to max_free bytes in all
            return
        lst = self._free.setdefault(size >> 16, [])
        self._free_ids.add(key)
        lst.append(mine)

    @property
    def free_bytes(self) -> int:
        """Bytes of buffers kept for the next copies."""
        return sum((k << 16) * len(lst) for k, lst in list(self._free.items()))

    def clear(self) -> None:
        """Forget every kept buffer (after a fork)."""
        self._free.clear()
        self._free_ids.clear()


POOL = CopyPool()
"""The process's pool for large array copies (features)."""


def copy_value(obj: Any) -> Any:
    """A copy the caller cannot mutate behind our back (shallow for containers)."""
    if type(obj) in _IMMUTABLE:
        return obj
    if isinstance(obj, np.ndarray):
        # Only a large copy goes to the pool: a one-row batch keeps the plain copy's cost.
        return POOL.copy(obj) if obj.nbytes >= CopyPool.MIN_BYTES else obj.copy()
    if isinstance(obj, list):
        return list(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if hasattr(obj, "to_numpy") and hasattr(obj, "copy"):
        return obj.copy()  # a DataFrame or Series: keep column / index names for feature matching
    return obj


def output_rows(obj: Any) -> int:
    """Prediction rows in an output object: 1 for scalars and single dict rows, and for
    anything whose length cannot be read."""
    if obj is None or type(obj) in _IMMUTABLE or isinstance(obj, dict):
        return 1
    if type(obj) is Omitted:
        return obj.rows
    try:
        shape = getattr(obj, "shape", None)
        if shape is not None:
            return max(0, int(shape[0])) if len(shape) else 1
        return max(0, len(obj))
    except Exception:  # shape (None, 3), a lazy frame, a len() that raises
        return 1


def feature_rows(obj: Any) -> int:
    """Prediction rows in a features object: a 1-D array, a list of numbers, a dict or a Series
    is one row; a 2-D array, a list of rows or a DataFrame has one row per element. Anything
    whose rows cannot be read counts as one row."""
    try:
        if type(obj) is np.ndarray:
            return 1 if obj.ndim <= 1 else int(obj.shape[0])
        if isinstance(obj, (list, tuple)):
            if obj and isinstance(obj[0], (list, tuple, dict, np.ndarray)):
                return len(obj)
            return 1
        if isinstance(obj, dict):
            first: Any = next(iter(obj.values()), None)
            if isinstance(first, (list, tuple, np.ndarray)) or hasattr(first, "to_numpy"):
                return len(first)  # a dict of columns
            return 1
        if hasattr(obj, "columns"):
            return max(0, len(obj))  # a DataFrame
        return 1
    except Exception:
        return 1


class Omitted:
    """Stands for the features of a call made while the buffers are at their byte cap: they
    are not copied, only their ``rows`` counted (see :meth:`CallBuffers.record`)."""

    __slots__ = ("rows",)

    def __init__(self, rows: int) -> None:
        self.rows = rows


def nbytes(obj: Any) -> int:
    """About how many bytes a copied output, features or ids object holds (cheap, never raises)."""
    if obj is None or type(obj) in _IMMUTABLE:
        return 0
    try:
        n = getattr(obj, "nbytes", None)
        if n.__class__ is int:
            return n
        if isinstance(obj, (list, tuple, dict)):
            first = next(iter(obj.values() if isinstance(obj, dict) else obj), None)
            inner = len(first) if isinstance(first, (list, tuple, dict)) else 1
            return 64 + len(obj) * (16 + 32 * inner)
        shape = getattr(obj, "shape", None)
        if shape is not None:
            size = 8
            for d in shape:
                size *= int(d)
            return size
    except Exception:
        pass
    return 64


def _rows_of(rec: tuple[Any, ...]) -> int:
    f, o = rec[3], rec[2]
    return feature_rows(f) if f is not None else output_rows(o)


def _nothing() -> None:
    pass


_Buf = TypeVar("_Buf", list[Any], "array.array[Any]")


BACK_TO_BACK_NS = 20_000
"""Calls closer together than this on average (ns between their ends) are a loop, not a
service's requests: the background thread is not woken early for them."""


def _back_to_back(gen: list[tuple[Any, ...]], n: int) -> bool:
    """Whether the first ``n`` buffered records ended less than :data:`BACK_TO_BACK_NS` apart
    on average (records of failed calls carry no end: then no)."""
    first, last = gen[0][5], gen[n - 1][5]
    return bool(0 < first < last and last - first < (n - 1) * BACK_TO_BACK_NS)


def _take(buf: _Buf) -> _Buf:
    """Remove and return what ``buf`` holds now; appends racing with this land after it."""
    n = len(buf)
    items = buf[:n]
    del buf[:n]
    return items


class CallBuffers:
    """The bounded buffers between the wrappers and the drain.

    The wrappers hoist these objects into their closures, so they are only ever cleared in
    place, never replaced. Below ``soft_cap`` entries a call only appends; the call that
    reaches it asks for a drain; past ``hard_cap`` a call's details (latency, outputs) are
    dropped and its count, rows and error type kept.

    Calls that carry features, ids or batch outputs are also bounded in bytes: past
    ``soft_bytes`` the background thread is woken to drain them (many small records are
    reduced by the calling thread instead: that is cheap); past half of ``max_bytes`` the
    calling thread drains one bounded chunk itself; past ``max_bytes`` a call's features,
    outputs and ids are not kept (counted in ``mlmon_dropped_total{buffer="details"}``), while
    its latency, rows and error type still are.

    Args:
        hard_cap: most calls buffered per buffer.
        max_rows: rows of batch outputs buffered before a drain is asked for; past four times
            this, output values are dropped (their rows still count).
        drain_inline: drains one bounded chunk on the calling thread if no drain runs
            elsewhere (never waits).
        internal_error: counts a failure inside mlmon (never raises).
        max_bytes: the byte cap of buffered features, ids and outputs.
    """

    def __init__(
        self,
        hard_cap: int,
        max_rows: int,
        drain_inline: Callable[[], bool | None],
        internal_error: Callable[[str, BaseException], None],
        max_bytes: int = 64 << 20,
    ) -> None:
        self.dts = array.array("q")  # fast path: durations (ns) of successful calls
        self.nums = array.array("d")  # fast path: their numeric outputs
        self.objs: list[Any] = []  # fast path: their other outputs (copied)
        self.errs: list[tuple[int, type]] = []  # fast path: (duration, exception class)
        # other forms: (dt, exc class, out, features, ids, end ns, bytes, call id or -1): the
        # call id of a ``with`` block whose ids were neither given nor read
        self.gen: list[tuple[Any, ...]] = []
        self.streams: list[tuple[int, int]] = []  # streaming calls: (ns to first item or -1, items)
        self.hard_cap = hard_cap
        self.max_rows = max_rows
        self.soft_cap = max(8, min(4096, hard_cap // 4))
        self.max_bytes = max_bytes
        self.soft_bytes = max(1, min(max_bytes // 8, 8 << 20))
        # Small enough that reducing one chunk holds the GIL for about a millisecond.
        self.chunk_bytes = max(1, min(max_bytes // 16, 256 << 10))
        self.bytes = 0  # approximate under threads: only a trigger
        self.wake: Callable[[], None] = _nothing
        self.drain_inline = drain_inline
        # Batch outputs and records wake the background thread long before their caps, unless
        # it has been seen to fall behind (see :meth:`set_early`); the reporter's flush sets it
        # again. Below ``gen_soft`` records a wrapper only appends.
        self.early_wake = True
        self.gen_soft = max(1, self.soft_cap >> 2)
        self.internal_error = internal_error
        self.lock = threading.Lock()  # short: the dropped counts below
        self.obj_rows = 0
        self.dropped_calls = 0
        self.dropped_rows = 0
        self.dropped_outputs = 0
        self.dropped_details = 0
        self.dropped_errors: dict[str, int] = {}

    # -- slow paths of the wrappers (a buffer is at its soft cap, or an output is not a number)
    def record(self, rec: tuple[Any, ...]) -> None:
        """Append a general record ``(dt, exc class, out, features, ids, end ns, bytes, call
        id or -1)``, bounded in calls and bytes."""
        try:
            gen = self.gen
            n = len(gen)
            if n >= self.hard_cap:
                self.count_dropped(rec[1], 0 if rec[1] is not None else _rows_of(rec))
                self.drain_inline()
                return
            size = rec[6]
            if type(rec[3]) is Omitted or (size and self.bytes + size > self.max_bytes):
                # Past the byte cap a call keeps its latency and rows and nothing else: its
                # duration goes to the fast-path buffer (8 bytes, one row), its other rows to a
                # counter, so the byte cap bounds the memory whatever the traffic.
                rows = _rows_of(rec)
                if len(self.dts) < self.hard_cap:
                    self.dts.append(rec[0])
                    with self.lock:
                        self.dropped_details += 1
                        self.dropped_rows += rows - 1
                else:
                    self.count_dropped(None, rows)
                self.wake()
                if self.bytes >= self.max_bytes // 2:
                    self.drain_inline()
                return
            gen.append(rec)
            self.bytes += size
            if self.bytes >= self.max_bytes // 2:
                self.drain_inline()  # the background thread cannot keep up: one bounded chunk
            elif self.bytes >= self.soft_bytes:
                self.wake()  # big records: reduced on the background thread
            elif n >= self.soft_cap:
                self._drain_here()  # many small records: cheap to reduce here
            elif n >= self.gen_soft:  # a quarter of the soft cap while early wakes are on
                if n == self.gen_soft and _back_to_back(gen, n):
                    # Calls back to back (a batch loop): the calling thread reduces them at the
                    # soft cap, cheaper than handing the GIL to and fro; until the next flush.
                    self.set_early(False)
                else:
                    self.wake()  # reduced on the background thread, long before the soft cap
        except Exception as exc:
            self.internal_error("buffer", exc)

    def set_early(self, on: bool) -> None:
        """Wake the background thread early (past a quarter of the caps), or not: off when a
        call at a cap finds it still draining (a predict loop that keeps the GIL starves it;
        the calling threads then drain, one bounded chunk at a time), on again at each flush."""
        self.early_wake = on
        self.gen_soft = max(1, self.soft_cap >> 2) if on else self.soft_cap

    def _drain_here(self) -> None:
        """A cap is reached: drain one chunk on this thread; if a drain runs elsewhere, it is
        behind the predict calls, and early wakes stop until the next flush."""
        if self.drain_inline() is False:
            self.set_early(False)

    def full(self, dt: int, result: Any) -> None:
        """The fast-path buffer reached its soft cap: ``dt`` and the call's output."""
        try:
            if len(self.dts) < self.hard_cap:
                self.dts.append(dt)
                if result is NO_OUTPUT:
                    pass
                elif result.__class__ in _NUMERIC:
                    self.add_number(result)
                else:
                    self.add_obj(result)
            else:
                self.count_dropped(None, 1 if result is NO_OUTPUT else output_rows(result))
            self.drain_inline()
        except Exception as exc:
            self.internal_error("buffer", exc)

    def add_number(self, result: Any) -> None:
        """A numeric output that ``array('d')`` refused (an int beyond float range)."""
        try:
            self.nums.append(result)
        except Exception:
            self.add_obj(result)  # kept as an object: the drain counts it as invalid

    def add_obj(self, result: Any) -> None:
        """Buffer a non-numeric output (an array of scores, say), bounded by rows as well.

        Batch outputs can be large, so besides the call caps there is a cap on the rows they
        hold: past a quarter of ``max_rows`` the background thread is woken to reduce them,
        past ``max_rows`` the calling thread drains one chunk itself (and if the background
        thread holds the drain then, it is not woken early again until the next flush: a
        predict loop that keeps the GIL would starve it), and past four times that (a drain
        running elsewhere cannot keep up) the output's values are dropped and counted in
        ``mlmon_dropped_total{buffer="outputs"}``; its rows still count.
        """
        try:
            rows = output_rows(result)
            if self.obj_rows + rows > 4 * self.max_rows:
                with self.lock:
                    self.dropped_rows += rows - 1
                    self.dropped_outputs += 1
                return
            self.objs.append(copy_value(result))
            self.obj_rows += rows  # approximate under threads; only a trigger
            if self.obj_rows > self.max_rows:
                self._drain_here()
            elif self.early_wake and self.obj_rows > self.max_rows >> 2:
                self.wake()  # reduced on the background thread, long before the row cap
        except Exception as exc:
            self.objs.append(UNREADABLE)  # keeps outputs aligned with durations; counted invalid
            self.internal_error("outputs", exc)

    def err_full(self, dt: int, cls: type) -> None:
        """The error buffer reached its soft cap."""
        try:
            if len(self.errs) < self.hard_cap:
                self.errs.append((dt, cls))
            else:
                self.count_dropped(cls, 0)
            self.drain_inline()
        except Exception as exc:
            self.internal_error("buffer", exc)

    def count_dropped(self, cls: type | None, rows: int) -> None:
        # The call's details (latency, outputs) are lost; its count, rows and error type are not.
        with self.lock:
            self.dropped_calls += 1
            self.dropped_rows += rows
            if cls is not None:
                key = getattr(cls, "__name__", "Exception")
                self.dropped_errors[key] = self.dropped_errors.get(key, 0) + 1

    # -- drain side ------------------------------------------------------------------------
    def take_dropped(self) -> tuple[int, int, int, int, dict[str, int]]:
        """Calls, rows, outputs, details and error types dropped since the last take."""
        with self.lock:
            out = (self.dropped_calls, self.dropped_rows, self.dropped_outputs, self.dropped_details, self.dropped_errors)
            self.dropped_calls = self.dropped_rows = self.dropped_outputs = self.dropped_details = 0
            self.dropped_errors = {}
        return out

    def take(
        self, max_records: int | None = None
    ) -> tuple[array.array[int], array.array[float], list[Any], list[tuple[int, type]], list[tuple[Any, ...]]]:
        """What is buffered now: durations, numeric outputs, other outputs, errors, and the
        oldest general records — all of them, or at most ``max_records`` and about
        ``chunk_bytes`` of them, so one drain's work and memory stay bounded."""
        # Outputs first: a call appends its duration before its output, so every output taken
        # here belongs to a duration that is taken too (or was taken before).
        nums = _take(self.nums)
        objs = _take(self.objs)
        self.obj_rows = 0
        dts = _take(self.dts)
        gen = self.gen
        n = len(gen)
        if max_records is not None and n:
            n = min(n, max_records)
            size, cut = 0, 0
            limit = self.chunk_bytes
            for rec in gen[:n]:
                size += rec[6]
                cut += 1
                if size >= limit:
                    break
            n = cut
        records = gen[:n]
        del gen[:n]
        taken = sum(r[6] for r in records)
        self.bytes = max(0, self.bytes - taken)
        return dts, nums, objs, _take(self.errs), records

    def take_streams(self) -> list[tuple[int, int]]:
        """Streaming calls finished since the last take: (ns to first item or -1, items)."""
        return _take(self.streams) if self.streams else []

    @property
    def pending_records(self) -> int:
        """General records waiting to be drained."""
        return len(self.gen)

    def clear(self) -> None:
        """Forget everything buffered (in a forked child: the parent reports it)."""
        for buf in (self.dts, self.nums, self.objs, self.errs, self.gen, self.streams):
            del buf[:]
        self.lock = threading.Lock()
        self.obj_rows = self.dropped_calls = self.dropped_rows = self.dropped_outputs = 0
        self.dropped_details = self.bytes = 0
        self.dropped_errors = {}
        self.set_early(True)


_DT, _EXC, _OUT, _FEATURES, _IDS, _END, _CID = (itemgetter(k) for k in (0, 1, 2, 3, 4, 5, 7))


def _all_none(xs: list[Any]) -> bool:
    """Every item is None (by identity: an array's ``==`` would not do), in a C-level loop."""
    return all(map(is_, xs, repeat(None)))


def _plain_numbers(
    outs: list[Any], feats: list[Any], ids: list[Any]
) -> tuple[npt.NDArray[np.float64], list[int]] | None:
    """Of general records, those whose output is one number and that have no features and no
    ids: their outputs as one float64 array, and the indices of the others. None when fewer
    than two (or when a number does not fit a float64: each then stays its own entry)."""
    n = len(outs)
    if not _all_none(feats):
        return None
    numeric = _NUMERIC
    if _all_none(ids) and numeric.issuperset(map(type, outs)):
        plain: list[int] = list(range(n))  # the usual case, found with C-level loops
    else:
        plain = [k for k, (o, i) in enumerate(zip(outs, ids, strict=True)) if i is None and o.__class__ in numeric]
    if len(plain) < 2:
        return None
    try:
        if len(plain) == n:
            values = np.array(outs, dtype=np.float64)
        else:
            values = np.fromiter((outs[k] for k in plain), np.float64, len(plain))
    except (OverflowError, ValueError, TypeError):
        return None
    if len(plain) == len(outs):
        return values, []
    chosen = set(plain)
    return values, [k for k in range(len(outs)) if k not in chosen]


def reduce_records(
    dts: array.array[int],
    nums: array.array[float],
    objs: list[Any],
    errs: list[tuple[int, type]],
    gen: list[tuple[Any, ...]],
    now: float,
    wall: float,
    perf_now: int,
    resolve_ids: Callable[[Sequence[Any], Sequence[int], Sequence[int]], Sequence[Any]],
) -> tuple[npt.NDArray[np.float64], list[str], int, CallBatch | None]:
    """Turn what :meth:`CallBuffers.take` returned into the service part's inputs (durations in
    seconds, successful calls first; the error types; the prediction rows) and one
    :class:`~mlmon._component.CallBatch` for the other parts (None without outputs).

    ``now``/``wall`` are the monitor's clock readings, ``perf_now`` its ``perf_counter_ns()``
    (for when each call finished) and ``resolve_ids(ids, call ids, rows)`` gives the records'
    ids (a ``with`` block's ids are generated late, from its call id).
    """
    # No Python-level loop over fast-path calls: a loop per call would cost more than the
    # call it describes. Durations and numeric outputs arrive as raw arrays.
    d_ok = np.frombuffer(dts, dtype=np.int64)
    scalars = np.frombuffer(nums, dtype=np.float64)
    outs: list[Any] = [scalars] if scalars.size else []
    rows_list: list[int] = [int(scalars.size)] if scalars.size else []
    # Each fast-path call is one row through its duration, plus (rows - 1) through an
    # object output: exact in total whichever drain the two halves land in.
    obj_rows = [output_rows(o) for o in objs]
    rows = int(d_ok.size) + sum(obj_rows) - len(objs)
    outs.extend(objs)
    rows_list.extend(obj_rows)
    feats: list[Any] = [None] * len(outs)
    ids: list[Any] = [None] * len(outs)
    times: Any = [now] * len(outs)
    segs: list[Any] | None = None
    seg_errs: list[tuple[Any, str]] = []
    if gen:
        if any(map(_EXC, gen)):
            errs = errs + [(g[0], g[1]) for g in gen if g[1] is not None]
            seg_errs = [(g[8], getattr(g[1], "__name__", "Exception")) for g in gen if g[1] is not None and len(g) > 8]
            gen = [g for g in gen if g[1] is None]
        if gen:
            if max(map(len, gen)) > 8:
                segs = [NO_SEGMENT] * len(outs) + [g[8] if len(g) > 8 else NO_SEGMENT for g in gen]
            # Columns taken with C-level loops (map and itemgetter); per-record Python work only
            # where a column needs it.
            n = len(gen)
            g_outs = list(map(_OUT, gen))
            g_feats = list(map(_FEATURES, gen))
            g_ids = list(map(_IDS, gen))
            g_cids = list(map(_CID, gen))
            d_ok = np.concatenate((d_ok, np.fromiter(map(_DT, gen), np.int64, n)))
            if _all_none(g_feats):
                if _IMMUTABLE.issuperset(map(type, g_outs)):
                    g_rows = [1] * len(g_outs)
                else:
                    g_rows = [output_rows(o) for o in g_outs]
            else:
                g_rows = [feature_rows(f) if f is not None else output_rows(o) for f, o in zip(g_feats, g_outs, strict=True)]
            rows += sum(g_rows)
            g_idr = list(resolve_ids(g_ids, g_cids, g_rows))
            ends = np.fromiter(map(_END, gen), np.int64, n)
            g_times = now - np.maximum(0, perf_now - ends) / 1e9
            plain = _plain_numbers(g_outs, g_feats, g_idr) if segs is None else None
            if plain is not None:
                # ``with`` blocks that gave one number and nothing else (no features, ids or
                # segment): one float64 entry, as the decorator's fast path makes, instead of
                # one entry per block for every part to walk through.
                values, rest = plain
                outs.append(values)
                feats.append(None)
                ids.append(None)
                rows_list.append(int(values.size))
                times = [*list(times), now]
                g_outs = [g_outs[k] for k in rest]
                g_feats = [None] * len(rest)
                g_idr = [g_idr[k] for k in rest]
                g_rows = [g_rows[k] for k in rest]
                g_times = g_times[rest]
            outs.extend(g_outs)
            feats.extend(g_feats)
            ids.extend(g_idr)
            rows_list.extend(g_rows)
            times = np.concatenate((np.array(times, dtype=np.float64), g_times))
    secs = np.concatenate((d_ok, np.array([e[0] for e in errs], dtype=np.int64))) / 1e9
    np.maximum(secs, 0.0, out=secs)  # a fake clock may go backwards
    error_types = [getattr(cls, "__name__", "Exception") for _, cls in errs]
    batch = None
    if outs or seg_errs:
        batch = CallBatch(now=now, wall=wall, outputs=outs, features=feats, ids=ids, rows=rows_list, times=times)
        if segs is not None:
            batch.segments = segs
        if seg_errs:
            batch.segment_errors = seg_errs
    return secs, error_types, rows, batch
