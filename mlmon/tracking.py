"""The hot path: the ``track`` wrappers, and the :class:`Call` / :class:`Track` objects.

Per decorated sync call the fast wrapper reads the clock twice and appends to the bounded
buffers of :mod:`mlmon.buffers`; everything else — bucketing, sums, quantiles — happens when the
buffers are drained.

Sync calls in flight cost nothing to track: :func:`sync_calls_in_flight` finds them on the
threads' stacks by their code object and reads their start time. That reads two local names of
the wrappers (the start time and a closure variable naming the owner);
:func:`_register_sync_code` checks, when a wrapper is built, that the code really has them, so a
rename fails every test at once instead of silently hiding hung calls.
"""

from __future__ import annotations

import _thread
import functools
import inspect
import itertools
import sys
import warnings
from collections.abc import Callable
from itertools import accumulate, chain, repeat, takewhile
from operator import truth
from typing import Any, Protocol, TypeVar, cast

from mlmon import _env, _handover
from mlmon.buffers import (
    _IMMUTABLE,
    _NUMERIC,
    NO_OUTPUT,
    NO_SEGMENT,
    SEGMENT_FAILED,
    UNREADABLE,
    CallBuffers,
    Omitted,
    copy_value,
    feature_rows,
    nbytes,
    output_rows,
)
from mlmon.segments import FeatureSegment

__all__ = ["Call", "CallBuffers", "Track", "feature_rows", "output_rows", "sync_calls_in_flight"]

F = TypeVar("F", bound=Callable[..., Any])

# The local names sync_calls_in_flight() reads from the sync wrappers' frames: the start time,
# and a closure variable that tells whose buffers the call belongs to.
_START = "t0"


class Monitor(Protocol):
    """What the wrappers need of their monitor (:class:`mlmon.Monitor`)."""

    enabled: bool
    _buffers: CallBuffers
    _ids: itertools.count[int]
    _inflight: dict[int, int]

    @property
    def _scheduler(self) -> object: ...  # pragma: no cover - protocol

    def _perf(self) -> int: ...  # pragma: no cover - protocol

    def _internal_error(self, stage: str, exc: BaseException) -> None: ...  # pragma: no cover - protocol

    def _generate_ids(self, n: int) -> range: ...  # pragma: no cover - protocol

    def _start_background(self) -> None: ...  # pragma: no cover - protocol


# -- in-flight sync calls ----------------------------------------------------------------------
# Code objects of the sync wrappers, found on thread stacks, with the name of the closure
# variable that identifies the owner: "dts" (the fast wrappers' duration buffer) or "record"
# (the general wrapper's bound CallBuffers.record).
_SYNC_CODES: dict[Any, str] = {}
_WRAPPER_CODES: set[Any] = set()  # every wrapper's code: a wrapper is never wrapped again


def _register_sync_code(fn: Callable[..., Any], owner: str) -> None:
    code = fn.__code__
    if _START not in code.co_varnames or owner not in code.co_freevars:
        raise RuntimeError(
            f"mlmon: the sync wrapper {code.co_name} no longer has the local {_START!r} and the "
            f"closure variable {owner!r} that in-flight detection reads"
        )
    _SYNC_CODES[code] = owner
    _WRAPPER_CODES.add(code)


def sync_calls_in_flight(buffers: CallBuffers) -> list[int]:
    """Start times (ns) of the sync calls of ``buffers``' monitor now running on any thread."""
    starts: list[int] = []
    mine = {"dts": buffers.dts, "record": buffers.record}
    codes = _SYNC_CODES
    for stack in _stacks():
        for f in stack:
            owner = codes.get(f.f_code)
            if owner is not None:
                loc = f.f_locals
                t0 = loc.get(_START)
                ref = loc.get(owner)
                if t0 is not None and (ref is mine[owner] or (owner == "record" and ref == mine[owner])):
                    starts.append(t0)
    return starts


def _stacks() -> list[list[Any]]:
    """Every thread's frames, innermost first.

    A frame's ``f_back`` on another thread's stack is only consistent while that thread does not
    run, and another thread may run between any two bytecodes of a Python loop (every 0.1 ms
    while background work runs, see :mod:`mlmon._handover`): a walk one ``f_back`` per
    bytecode crashed the interpreter once in CI. So the whole walk is one chain of C-level
    iterators (``accumulate`` of ``getattr(frame, "f_back")``, cut at None), during which no
    bytecode runs and the GIL is not let go."""
    tops = sys._current_frames()
    # This thread's own frames do not move under it; walked from the caller's caller, so that
    # no frame in the result holds the result (no reference cycle left for the collector).
    own = tops.pop(_thread.get_ident(), None) is not None  # not kept: it is this very frame
    walks = map(accumulate, map(chain, zip(tops.values()), repeat(repeat("f_back"))), repeat(getattr))
    stacks = list(map(list, map(takewhile, repeat(truth), walks)))
    if own:
        mine: list[Any] = []
        f: Any = sys._getframe(2)
        while f is not None:
            mine.append(f)
            f = f.f_back
        stacks.append(mine)
    return stacks


# -- the wrappers ------------------------------------------------------------------------------
def fast_wrapper(mon: Monitor, func: Callable[..., Any], record_outputs: bool, is_async: bool) -> Callable[..., Any]:
    """The wrapper for ``@mon.track`` without features, ids or an output extractor."""
    # Everything the call needs is hoisted into closure locals: each attribute lookup counts.
    b = mon._buffers
    perf = mon._perf
    dts = b.dts
    errs = b.errs
    add_dt = dts.append
    add_num: Callable[[Any], None] = b.nums.append
    add_number = b.add_number
    add_obj = b.add_obj
    add_err = errs.append
    soft = b.soft_cap
    full = b.full
    err_full = b.err_full
    numeric = _NUMERIC

    if is_async:
        next_id = mon._ids.__next__
        inflight = mon._inflight
        pop = inflight.pop

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            # A suspended coroutine is on no thread's stack: async calls use the in-flight dict.
            cid = next_id()
            t0 = perf()
            inflight[cid] = t0
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                dt = perf() - t0
                pop(cid, None)
                add_err((dt, type(exc))) if len(errs) < soft else err_full(dt, type(exc))
                raise
            dt = perf() - t0
            pop(cid, None)
            if not record_outputs:
                add_dt(dt) if len(dts) < soft else full(dt, NO_OUTPUT)
            elif len(dts) < soft:
                add_dt(dt)
                try:
                    add_num(result) if result.__class__ in numeric else add_obj(result)
                except Exception:  # an int beyond float range
                    add_number(result)
            else:
                full(dt, result)
            return result

        _WRAPPER_CODES.add(awrapper.__code__)
        return awrapper

    if record_outputs:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                dt = perf() - t0
                add_err((dt, type(exc))) if len(errs) < soft else err_full(dt, type(exc))
                raise
            dt = perf() - t0
            if len(dts) < soft:
                add_dt(dt)
                try:
                    add_num(result) if result.__class__ in numeric else add_obj(result)
                except Exception:  # an int beyond float range
                    add_number(result)
            else:
                full(dt, result)
            return result

        _register_sync_code(wrapper, "dts")
        return wrapper

    def nowrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = perf()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            dt = perf() - t0
            add_err((dt, type(exc))) if len(errs) < soft else err_full(dt, type(exc))
            raise
        dt = perf() - t0
        add_dt(dt) if len(dts) < soft else full(dt, NO_OUTPUT)
        return result

    _register_sync_code(nowrapper, "dts")
    return nowrapper


def _arg_getter(func: Callable[..., Any], name: str | None, what: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Any] | None:
    if name is None:
        return None
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params]
    if name not in names:
        raise ValueError(f"track({what}={name!r}): {func.__qualname__} has no argument {name!r}")
    p = params[names.index(name)]
    index = names.index(name) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) else None

    def get(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if index is not None and index < len(args):
            return args[index]
        return kwargs.get(name, p.default if p.default is not p.empty else None)

    return get


def general_wrapper(
    mon: Monitor,
    func: Callable[..., Any],
    features: str | None,
    ids: str | None,
    outputs: bool | Callable[[Any], Any],
    is_async: bool,
    segment: Any = NO_SEGMENT,
) -> Callable[..., Any]:
    """The wrapper for ``@mon.track(features=..., ids=..., outputs=callable, segment=...)``.

    A ``segment`` makes every record one field longer: the segment value, a function's result
    (computed here, before the call; failures counted), or the :class:`FeatureSegment` the
    drain reads from the copied features."""
    get_features = _arg_getter(func, features, "features")
    if isinstance(segment, FeatureSegment) and get_features is None:
        raise ValueError(f"track(segment=by_feature({segment.feature!r})) needs track(features=...)")
    seg_of = segment if callable(segment) and not isinstance(segment, FeatureSegment) else None
    segmented = segment is not NO_SEGMENT
    tail: tuple[Any, ...] = (segment,) if segmented and seg_of is None else ()
    get_ids = _arg_getter(func, ids, "ids")
    extract = outputs if callable(outputs) and not isinstance(outputs, bool) else None
    record_outputs = outputs is not False
    b = mon._buffers
    perf = mon._perf
    inflight = mon._inflight
    next_id = mon._ids.__next__
    record = b.record
    gen = b.gen
    add_gen = gen.append
    soft_bytes = b.soft_bytes
    max_bytes = b.max_bytes
    internal = mon._internal_error
    immutable = _IMMUTABLE
    copy = copy_value
    sizeof = nbytes
    pausing = get_features is not None
    busy = _handover.BUSY
    next_key = _handover.next_key
    parked = _handover._parked
    ended = _handover.call_ended

    def out_of(result: Any) -> Any:
        try:
            if extract is None:
                return result if result.__class__ in immutable else copy(result)
            return copy(extract(result))
        except Exception as exc:
            internal("outputs", exc)
            return UNREADABLE

    def inputs_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, int]:
        try:
            if b.bytes >= max_bytes and get_features is not None:
                # At the byte cap: nothing is copied, the call will count its rows only.
                return Omitted(feature_rows(get_features(args, kwargs))), None, 0
            f = copy(get_features(args, kwargs)) if get_features is not None else None
            if get_ids is None:
                return f, None, sizeof(f) if f is not None else 0
            i = copy(get_ids(args, kwargs))
            return f, i, sizeof(f) + sizeof(i)
        except Exception as exc:  # never let our own bug reach predict
            internal("track", exc)
            return None, None, 0

    def seg_tail(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if seg_of is None:
            return tail
        try:
            value = seg_of(*args, **kwargs)
            return (value if value.__class__ in immutable else copy(value),)
        except Exception as exc:  # the user's segment function: counted, never raised
            internal("segment", exc)
            return (SEGMENT_FAILED,)

    if is_async:

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            f, i, size = inputs_of(args, kwargs)
            sg = seg_tail(args, kwargs)
            cid = next_id()
            t0 = perf()
            inflight[cid] = t0
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                dt = perf() - t0
                inflight.pop(cid, None)
                record((dt, type(exc), None, None, None, 0, 0, -1, *sg))
                raise
            end = perf()
            inflight.pop(cid, None)
            out = out_of(result) if record_outputs else None
            record((end - t0, None, out, f, i, end, size + sizeof(out), -1, *sg))
            return result

        _WRAPPER_CODES.add(awrapper.__code__)
        return awrapper

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if pausing:  # a call with features: a background drain pauses while it runs
            key = next_key()
            busy[key] = 1
        try:
            f, i, size = inputs_of(args, kwargs)
            sg = seg_tail(args, kwargs) if segmented else tail
            t0 = perf()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                record((perf() - t0, type(exc), None, None, None, 0, 0, -1, *sg))
                raise
            end = perf()
            out = out_of(result) if record_outputs else None
            if type(out) not in immutable:
                size += sizeof(out)
            rec = (end - t0, None, out, f, i, end, size, -1, *sg)
            if len(gen) < b.gen_soft and b.bytes + size < soft_bytes:
                add_gen(rec)
                b.bytes += size
            else:
                record(rec)
            return result
        finally:
            if pausing:
                busy.pop(key, None)
                if parked[0] and not busy:
                    ended()

    _register_sync_code(wrapper, "record")
    return wrapper


def stream_wrapper(mon: Monitor, func: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """The wrapper for a predict that streams (a generator or async generator function, as
    LLM serving code is): the call lasts from the call to the last item, and its time to first
    item and its item count are recorded. Items are not recorded as outputs. A consumer that
    stops early ends the call there, without an error; an exception raised by the stream is
    counted by type and re-raised."""
    b = mon._buffers
    perf = mon._perf
    inflight = mon._inflight
    next_id = mon._ids.__next__
    record = b.record
    streams = b.streams

    def done(cid: int, t0: int, first: int, items: int, exc: BaseException | None) -> None:
        end = perf()
        inflight.pop(cid, None)
        try:
            if len(streams) < b.hard_cap:
                streams.append((first - t0 if first else -1, items))
            if exc is None or isinstance(exc, GeneratorExit):
                record((end - t0, None, None, None, None, end, 0, -1))
            else:
                record((end - t0, type(exc), None, None, None, end, 0, -1))
        except Exception as err:
            mon._internal_error("track", err)

    if is_async:

        async def agen(*args: Any, **kwargs: Any) -> Any:
            cid = next_id()
            t0 = perf()
            inflight[cid] = t0
            first = items = 0
            try:
                async for item in func(*args, **kwargs):
                    if not items:
                        first = perf()
                    items += 1
                    yield item
            except BaseException as exc:
                done(cid, t0, first, items, exc)
                raise
            done(cid, t0, first, items, None)

        _WRAPPER_CODES.add(agen.__code__)
        return agen

    def gen(*args: Any, **kwargs: Any) -> Any:
        cid = next_id()
        t0 = perf()
        inflight[cid] = t0
        first = items = 0
        try:
            for item in func(*args, **kwargs):
                if not items:
                    first = perf()
                items += 1
                yield item
        except BaseException as exc:
            done(cid, t0, first, items, exc)
            raise
        done(cid, t0, first, items, None)

    _WRAPPER_CODES.add(gen.__code__)
    return gen


# -- the public objects ------------------------------------------------------------------------
_ROWS_PER_CALL_ID = 1 << 20


def call_ids(mon: Monitor, cid: int, n: int) -> range:
    """Generated prediction ids of one call: ``cid * 2**20 + row``, unique without a lock."""
    if 0 <= cid and n <= _ROWS_PER_CALL_ID:
        start = cid * _ROWS_PER_CALL_ID
        return range(start, start + n)
    return mon._generate_ids(n)  # a disabled monitor, or a batch over 2**20 rows


class Call:
    """One call being tracked with ``with mon.track(...) as call:``.

    >>> import mlmon
    >>> mon = mlmon.Monitor("doc_call")
    >>> with mon.track() as call:
    ...     call.outputs([0.1, 0.9, 0.4])
    >>> len(call.ids)  # generated ids, one per output row
    3
    >>> mon.snapshot().get("mlmon_rows_total")
    3.0
    >>> mon.close()
    """

    __slots__ = ("_cid", "_features", "_ids", "_mon", "_out", "_seg", "_t0")

    def __init__(self, mon: Monitor, features: Any, ids: Any) -> None:
        self._mon = mon
        self._features = features
        self._ids = ids
        self._out: Any = None
        self._seg: Any = NO_SEGMENT
        self._cid = -1
        self._t0 = 0
        if features is not None or ids is not None:
            try:
                self._features = features if features is None else copy_value(features)
                self._ids = ids if ids is None else copy_value(ids)
            except Exception as exc:  # an object whose copy() raises
                mon._internal_error("track", exc)

    def outputs(self, values: Any) -> None:
        """Record the model's outputs for this call (copied; the caller may reuse the array)."""
        if type(values) in _IMMUTABLE:
            self._out = values
            return
        try:
            self._out = copy_value(values)
        except Exception as exc:
            self._out = UNREADABLE
            self._mon._internal_error("outputs", exc)

    @property
    def ids(self) -> Any:
        """The prediction ids: those given to ``track(ids=...)``, else generated integers.

        Generated ids are a ``range`` with one id per row (rows from the features if given,
        else from the outputs recorded so far, else 1), unique within this monitor.
        """
        if self._ids is None:
            n = feature_rows(self._features) if self._features is not None else output_rows(self._out)
            self._ids = call_ids(self._mon, self._cid, n)
        return self._ids


class Track(Call):
    """The object ``mon.track(...)`` returns: a decorator and a context manager in one.

    As a decorator, ``features`` and ``ids`` name the arguments of the wrapped function that
    hold them; as a context manager they are the values themselves, and the ``with`` statement
    gives back this object as the :class:`Call` (one ``mon.track(...)`` per ``with`` block).

    >>> import mlmon
    >>> mon = mlmon.Monitor("doc_track")
    >>> @mon.track
    ... def predict(x):
    ...     return x * 0.5
    >>> predict(3.0)
    1.5
    >>> @mon.track(outputs=False)
    ... async def apredict(x):
    ...     return x
    >>> mon.snapshot().get("mlmon_calls_total")
    1.0
    >>> mon.close()
    """

    __slots__ = ("_active", "_ids_given", "_record")

    def __init__(
        self,
        mon: Monitor,
        features: Any = None,
        ids: Any = None,
        outputs: bool | Callable[[Any], Any] = True,
        segment: Any = NO_SEGMENT,
    ) -> None:
        if outputs is not True and outputs is not False and not callable(outputs):
            raise TypeError(f"outputs must be True, False or a callable, got {outputs!r}")
        self._seg = segment
        self._mon = mon
        self._features = features
        self._ids = ids
        self._record = outputs
        self._ids_given = ids is not None
        self._out = None
        self._cid = -1  # _t0 is set when a block starts
        self._active: Track | None = None

    # -- decorator -------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"track() decorates a callable, got {func!r}")
        mon = self._mon
        if not mon.enabled or _env.kill_switch():  # MLMON_DISABLED: the function, unchanged
            return func
        seg = self._seg
        if isinstance(seg, FeatureSegment) and self._features is None:
            raise ValueError(f"track(segment=by_feature({seg.feature!r})) needs track(features=...)")
        for arg in (self._features, self._ids):
            if arg is not None and not isinstance(arg, str):
                raise TypeError(
                    "as a decorator, track(features=..., ids=...) take argument names (str), "
                    f"got {arg!r}; pass values with the context-manager form"
                )
        if getattr(func, "__code__", None) in _WRAPPER_CODES and getattr(func, "__mlmon_monitor__", None) is mon:
            # Decorated twice by the same monitor: every call would count twice.
            warnings.warn(f"{func.__qualname__} is already tracked by {mon!r}; not wrapping it again", stacklevel=2)
            return func
        mon._start_background()
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            wrapper = stream_wrapper(mon, func, inspect.isasyncgenfunction(func))
        elif self._features is None and self._ids is None and isinstance(self._record, bool) and seg is NO_SEGMENT:
            wrapper = fast_wrapper(mon, func, self._record, inspect.iscoroutinefunction(func))
        else:
            wrapper = general_wrapper(
                mon, func, self._features, self._ids, self._record, inspect.iscoroutinefunction(func), seg
            )
        wrapped = functools.wraps(func)(wrapper)
        wrapped.__mlmon_monitor__ = mon  # type: ignore[attr-defined]
        return cast(F, wrapped)

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Call:
        if self._cid >= 0:
            # This object already tracked a block: a fresh one tracks this one, so the record
            # of the earlier block keeps its own ids.
            ids = self._ids if self._ids_given else None  # not the ids generated for the last block
            fresh = self._active = Track(self._mon, self._features, ids, self._record, self._seg)
            return fresh.__enter__()
        mon = self._mon
        if self._features is not None or self._ids is not None:
            try:
                if self._features is not None:
                    self._features = copy_value(self._features)
                if self._ids is not None:
                    self._ids = copy_value(self._ids)
            except Exception as exc:  # an object whose copy() raises
                mon._internal_error("track", exc)
        seg = self._seg
        if seg is not NO_SEGMENT and seg.__class__ not in _IMMUTABLE and not isinstance(seg, FeatureSegment):
            try:
                if callable(seg):
                    raise TypeError("in a with block, track(segment=...) takes the value, not a function")
                self._seg = copy_value(seg)
            except Exception as exc:
                self._seg = SEGMENT_FAILED
                mon._internal_error("segment", exc)
        if mon.enabled and not _env.KILLED:
            if mon._scheduler is None:
                mon._start_background()
            self._cid = cid = next(mon._ids)
            self._t0 = t0 = mon._perf()
            mon._inflight[cid] = t0
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        call = self
        if call._active is not None:
            call, self._active = call._active, None
        cid = call._cid
        if cid < 0:
            return
        mon = call._mon
        end = mon._perf()
        mon._inflight.pop(cid, None)
        try:
            b = mon._buffers
            seg = call._seg
            if exc_type is not None:
                if seg is NO_SEGMENT:
                    b.record((end - call._t0, exc_type, None, None, None, end, 0, -1))
                else:
                    b.record((end - call._t0, exc_type, None, None, None, end, 0, -1, seg))
                return
            out, f, i = call._out, call._features, call._ids
            size = 0 if type(out) in _IMMUTABLE else nbytes(out)
            if f is not None:
                size += nbytes(f)
            if i is not None:
                size += nbytes(i)
            # Without ids given or read, the record carries the call's sequence number: the
            # drain generates the same ids ``call.ids`` would, if predictions are to be stored.
            # (The record then holds only plain values, which the garbage collector skips.)
            rec: tuple[Any, ...] = (end - call._t0, None, out, f, i, end, size, -1 if i is not None else call._cid)
            if seg is not NO_SEGMENT:
                rec = (*rec, seg)
            gen = b.gen
            if not size:
                if len(gen) < b.soft_cap:
                    gen.append(rec)
                    return
            elif len(gen) < b.gen_soft and b.bytes + size < b.soft_bytes:
                gen.append(rec)
                b.bytes += size
                return
            b.record(rec)
        except Exception as err:
            mon._internal_error("track", err)


def block_class(mon: Monitor) -> type[Track]:
    """The :class:`Track` that ``mon.track()`` without arguments returns: the same object, whose
    ``with`` block takes the shortest path (the monitor's clock, counter, in-flight table and
    buffers held in closure variables). Anything out of the ordinary — a block reused, an
    exception, outputs that are not one number, ``call.ids`` read, a full buffer, a disabled
    monitor — goes through :class:`Track`'s own code."""
    perf = mon._perf
    inflight = mon._inflight
    next_id = mon._ids.__next__
    buffers = mon._buffers
    immutable = _IMMUTABLE
    enter = Track.__enter__
    leave = Track.__exit__

    class Block(Track):
        __slots__ = ()

        def __init__(self, mon: Monitor) -> None:
            self._mon = mon
            self._features = self._ids = self._out = self._active = None
            self._record = True
            self._ids_given = False
            self._seg = NO_SEGMENT
            self._cid = -1

        def __enter__(self) -> Call:
            m = self._mon
            if self._cid >= 0 or m._scheduler is None or not m.enabled or _env.KILLED:
                return enter(self)
            self._cid = cid = next_id()
            self._t0 = t0 = perf()
            inflight[cid] = t0
            return self

        def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
            out = self._out
            if exc_type is None and self._active is None and self._ids is None and out.__class__ in immutable:
                cid = self._cid
                if cid < 0:
                    return
                end = perf()
                gen = buffers.gen
                if len(gen) < buffers.soft_cap:
                    inflight.pop(cid, None)
                    gen.append((end - self._t0, None, out, None, None, end, 0, cid))
                    return
            leave(self, exc_type, exc, tb)

    Block.__name__ = Block.__qualname__ = "Track"
    return Block
