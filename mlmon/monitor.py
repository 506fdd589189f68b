"""The hot path: :class:`Monitor` and its ``track`` decorator / context manager.

Per call the wrapper reads the clock twice, takes an id from an ``itertools.count``, puts and
removes the call in an in-flight dict and appends one tuple to a bounded list. Everything else
(bucketing, sums, quantiles, rates) happens when the buffer is drained: by the reporter thread,
by ``snapshot()``/``flush()``, or by the reporter woken early when the buffer fills up.
"""

from __future__ import annotations

import array
import atexit
import functools
import inspect
import itertools
import logging
import math
import multiprocessing.util
import os
import re
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt

from mlmon._clock import Clock, SystemClock
from mlmon._component import CallBatch, Component, Triple
from mlmon.emitters.base import Emitter, emitter_name, self_metrics
from mlmon.resources import ResourceSampler
from mlmon.snapshot import Snapshot, samples_from
from mlmon.stats.loghist import LogHistogram
from mlmon.window import RollingWindow

__all__ = ["Call", "Monitor", "Track"]

log = logging.getLogger("mlmon")

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_MAX_ERROR_TYPES = 64

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
_NO_OUTPUT: Any = object()  # a fast-path call whose output is not recorded


def _copy(obj: Any) -> Any:
    """A copy the caller cannot mutate behind our back (shallow for containers)."""
    if obj.__class__ in _IMMUTABLE:
        return obj
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, list):
        return list(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if hasattr(obj, "to_numpy") and hasattr(obj, "copy"):
        return obj.copy()  # a DataFrame or Series: keep column / index names for feature matching
    return obj


def _rows(obj: Any) -> int:
    """Prediction rows in an output or feature object: 1 for scalars and single dict rows."""
    if obj is None or obj.__class__ in _IMMUTABLE or isinstance(obj, dict):
        return 1
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else 1
    try:
        return len(obj)
    except TypeError:
        return 1


_B = TypeVar("_B", list[Any], "array.array[Any]")


def _take(buf: _B) -> _B:
    """Remove and return what ``buf`` holds now; appends racing with this land after it."""
    n = len(buf)
    items = buf[:n]
    del buf[:n]
    return items


def _feature_rows(obj: Any) -> int:
    """Prediction rows in a features object: a 1-D array, a list of numbers, a dict or a Series
    is one row; a 2-D array, a list of rows or a DataFrame has one row per element."""
    if obj.__class__ is np.ndarray:
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
        return len(obj)  # a DataFrame
    return 1


def _fmt_le(x: float) -> str:
    return "+Inf" if math.isinf(x) else format(x, "g")


class _ServiceSlice:
    """Service counters of one window slice."""

    __slots__ = ("calls", "errors", "good", "lat_sum", "latency", "rows", "slow")

    def __init__(self) -> None:
        self.lat_sum = 0.0
        self.calls = 0
        self.rows = 0
        self.slow = 0
        self.good = 0
        self.errors = 0
        self.latency = LogHistogram(rel_error=0.01, min_value=1e-9, max_value=1e5)

    def merge(self, other: object) -> None:
        assert isinstance(other, _ServiceSlice)
        self.calls += other.calls
        self.rows += other.rows
        self.slow += other.slow
        self.good += other.good
        self.errors += other.errors
        self.lat_sum += other.lat_sum
        self.latency.merge(other.latency)

    def reset(self) -> None:
        self.calls = self.rows = self.slow = self.good = self.errors = 0
        self.lat_sum = 0.0
        self.latency.reset()


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

    __slots__ = ("_cid", "_features", "_ids", "_mon", "_out", "_t0")

    def __init__(self, mon: Monitor, features: Any, ids: Any) -> None:
        self._mon = mon
        self._features = features if features is None else _copy(features)
        self._ids = ids if ids is None else _copy(ids)
        self._out: Any = None
        self._cid = -1
        self._t0 = 0

    def outputs(self, values: Any) -> None:
        """Record the model's outputs for this call (copied; the caller may reuse the array)."""
        self._out = _copy(values)

    @property
    def ids(self) -> Any:
        """The prediction ids: those given to ``track(ids=...)``, else generated integers.

        Generated ids are a ``range`` with one id per row (rows from the features if given,
        else from the outputs recorded so far, else 1), unique within this monitor.
        """
        if self._ids is None:
            n = _feature_rows(self._features) if self._features is not None else _rows(self._out)
            self._ids = _call_ids(self._mon, self._cid, n)
        return self._ids


_ROWS_PER_CALL_ID = 1 << 20


def _call_ids(mon: Monitor, cid: int, n: int) -> range:
    """Generated prediction ids of one call: ``cid * 2**20 + row``, unique without a lock."""
    if 0 <= cid and n <= _ROWS_PER_CALL_ID:
        start = cid * _ROWS_PER_CALL_ID
        return range(start, start + n)
    return mon._generate_ids(n)  # a disabled monitor, or a batch over 2**20 rows


class Track:
    """The object ``mon.track(...)`` returns: a decorator and a context manager in one.

    As a decorator, ``features`` and ``ids`` name the arguments of the wrapped function that
    hold them; as a context manager they are the values themselves.

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

    __slots__ = ("_call", "_features", "_ids", "_mon", "_outputs")

    def __init__(
        self,
        mon: Monitor,
        features: Any = None,
        ids: Any = None,
        outputs: bool | Callable[[Any], Any] = True,
    ) -> None:
        if not (isinstance(outputs, bool) or callable(outputs)):
            raise TypeError(f"outputs must be True, False or a callable, got {outputs!r}")
        self._mon = mon
        self._features = features
        self._ids = ids
        self._outputs = outputs
        self._call: Call | None = None

    # -- decorator -------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"track() decorates a callable, got {func!r}")
        mon = self._mon
        if not mon.enabled:
            return func
        for arg in (self._features, self._ids):
            if arg is not None and not isinstance(arg, str):
                raise TypeError(
                    "as a decorator, track(features=..., ids=...) take argument names (str), "
                    f"got {arg!r}; pass values with the context-manager form"
                )
        mon._ensure_reporter()
        is_async = inspect.iscoroutinefunction(func)
        if self._features is None and self._ids is None and isinstance(self._outputs, bool):
            wrapper = _fast_wrapper(mon, func, self._outputs, is_async)
        else:
            wrapper = _general_wrapper(mon, func, self._features, self._ids, self._outputs, is_async)
        return cast(F, functools.wraps(func)(wrapper))

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Call:
        mon = self._mon
        call = Call(mon, self._features, self._ids)
        if mon.enabled:
            if mon._reporter is None:
                mon._ensure_reporter()
            call._cid = cid = next(mon._ids)
            call._t0 = t0 = mon._perf()
            mon._inflight[cid] = t0
        self._call = call
        return call

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        call = self._call
        if call is None or call._cid < 0:
            return
        self._call = None
        mon = call._mon
        end = mon._perf()
        dt = end - call._t0
        mon._inflight.pop(call._cid, None)
        if exc_type is None and call._ids is None:
            # Ids are joined at drain time, so they exist from here on even if never read.
            n = _feature_rows(call._features) if call._features is not None else _rows(call._out)
            call._ids = _call_ids(mon, call._cid, n)
        rec = (dt, exc_type, None if exc_type else call._out, call._features, call._ids, end)
        gen = mon._gen
        if len(gen) < mon._soft_cap:
            gen.append(rec)
        else:
            mon._record(rec)


def _fast_wrapper(mon: Monitor, func: Callable[..., Any], record_outputs: bool, is_async: bool) -> Callable[..., Any]:
    # Everything the call needs is hoisted into closure locals: each attribute lookup counts.
    # A sync call appends its duration to an int64 array and a numeric output to a float64
    # array (other outputs, copied, to a list); both drain with one np.frombuffer. It is found
    # "in flight" by the reporter reading thread stacks for this code object and its ``t0``
    # local, so it pays nothing for in-flight tracking.
    perf = mon._perf
    dts = mon._dts
    errs = mon._errs
    add_dt = dts.append
    add_num: Callable[[Any], None] = mon._nums.append
    add_obj = mon._add_obj
    add_err = errs.append
    soft = mon._soft_cap
    full = mon._full
    err_full = mon._err_full
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
                add_err((dt, exc.__class__)) if len(errs) < soft else err_full(dt, exc.__class__)
                raise
            dt = perf() - t0
            pop(cid, None)
            if not record_outputs:
                add_dt(dt) if len(dts) < soft else full(dt, _NO_OUTPUT)
            elif len(dts) < soft:
                add_dt(dt)
                add_num(result) if result.__class__ in numeric else add_obj(result)
            else:
                full(dt, result)
            return result

        return awrapper

    if record_outputs:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                dt = perf() - t0
                add_err((dt, exc.__class__)) if len(errs) < soft else err_full(dt, exc.__class__)
                raise
            dt = perf() - t0
            if len(dts) < soft:
                add_dt(dt)
                add_num(result) if result.__class__ in numeric else add_obj(result)
            else:
                full(dt, result)
            return result

        _SYNC_CODES.add(wrapper.__code__)
        return wrapper

    def nowrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = perf()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            dt = perf() - t0
            add_err((dt, exc.__class__)) if len(errs) < soft else err_full(dt, exc.__class__)
            raise
        dt = perf() - t0
        add_dt(dt) if len(dts) < soft else full(dt, _NO_OUTPUT)
        return result

    _SYNC_CODES.add(nowrapper.__code__)
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


def _general_wrapper(
    mon: Monitor,
    func: Callable[..., Any],
    features: str | None,
    ids: str | None,
    outputs: bool | Callable[[Any], Any],
    is_async: bool,
) -> Callable[..., Any]:
    get_features = _arg_getter(func, features, "features")
    get_ids = _arg_getter(func, ids, "ids")
    extract = outputs if callable(outputs) and not isinstance(outputs, bool) else None
    record_outputs = outputs is not False
    perf = mon._perf
    inflight = mon._inflight
    next_id = mon._ids.__next__
    record = mon._record
    gen = mon._gen
    add_gen = gen.append
    soft = mon._soft_cap
    internal = mon._internal_error
    immutable = _IMMUTABLE
    copy = _copy

    def out_of(result: Any) -> Any:
        if extract is None:
            return result if result.__class__ in immutable else copy(result)
        try:
            return copy(extract(result))
        except Exception as exc:
            internal("outputs", exc)
            return None

    if is_async:

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                f = copy(get_features(args, kwargs)) if get_features is not None else None
                i = copy(get_ids(args, kwargs)) if get_ids is not None else None
            except Exception as exc:  # never let our own bug reach predict
                internal("track", exc)
                f = i = None
            cid = next_id()
            t0 = perf()
            inflight[cid] = t0
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                dt = perf() - t0
                inflight.pop(cid, None)
                record((dt, exc.__class__, None, f, i, 0))
                raise
            end = perf()
            inflight.pop(cid, None)
            record((end - t0, None, out_of(result) if record_outputs else None, f, i, end))
            return result

        return awrapper

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            f = copy(get_features(args, kwargs)) if get_features is not None else None
            i = copy(get_ids(args, kwargs)) if get_ids is not None else None
        except Exception as exc:  # never let our own bug reach predict
            internal("track", exc)
            f = i = None
        t0 = perf()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            record((perf() - t0, exc.__class__, None, f, i, 0))
            raise
        end = perf()
        if record_outputs:
            out = (result if result.__class__ in immutable else copy(result)) if extract is None else out_of(result)
        else:
            out = None
        rec = (end - t0, None, out, f, i, end)
        add_gen(rec) if len(gen) < soft else record(rec)
        return result

    _SYNC_CODES.add(wrapper.__code__)
    return wrapper


_MONITORS: weakref.WeakSet[Monitor] = weakref.WeakSet()
_SYNC_CODES: set[Any] = set()  # code objects of sync wrappers, found on thread stacks


class Monitor:
    """Watches one model in this process: as software, and as a model.

    Args:
        name: model name, ``[A-Za-z0-9_-]+``.
        version: model version, emitted as a label.
        task: how outputs map to predictions (``BinaryClassification``, ...); None for none.
        window: seconds the rolling window covers.
        flush_interval: seconds between reporter cycles (each builds a snapshot and emits it).
        latency_budget: seconds; slower calls count in ``mlmon_slow_calls_total`` and against
            availability. None disables it.
        reference: a ``Reference`` profile of the training data, for drift.
        emitters: where snapshots go. None means none (``snapshot()`` still works).
        rules: alert rules evaluated on every reporter cycle.
        clock: where time comes from (``mlmon.testing.FakeClock`` in tests).
        slices: slices of the rolling window.
        max_buffered_calls: hard cap of the call buffer; calls beyond it are still counted (calls,
            rows, error types), their latency and outputs dropped and counted in
            ``mlmon_dropped_total{buffer="calls"}``.
        max_buffered_rows: rows of batch outputs buffered before an inline drain; four times
            this is the cap beyond which output values are dropped (``buffer="outputs"``).
        instance: process identity; ``host:pid`` by default, renewed in a forked child.
        enabled: False makes ``track`` return functions undecorated.
        max_pending: cap of the id → prediction store for ``log_feedback``.
        ttl: seconds a prediction waits for its label.
        drift: a ``DriftConfig`` for feature drift decisions.
        feature_names: names of the features ``track(features=...)`` passes, when there is no
            reference (without either, names come from the first features seen: dict keys,
            DataFrame columns, else ``f0, f1, ...``).
        categorical: which of ``feature_names`` are categorical.
        alert_sinks: where alert events go (``mlmon.alerts`` sinks); None logs them.
        reference_values: fixed baselines for ``baseline="reference"`` rules on metrics the
            reference cannot give, e.g. ``{"mlmon_precision": 0.91}`` from validation.
        max_timings: size of the uniform sample of raw latencies each reporter cycle hands to
            emitters that forward them (``StatsdEmitter(timings=...)``); kept only when one does.

    >>> import mlmon
    >>> mon = mlmon.Monitor("doc_monitor", version="1", latency_budget=0.5)
    >>> @mon.track
    ... def predict(x):
    ...     return 2 * x
    >>> [predict(i) for i in range(3)]
    [0, 2, 4]
    >>> snap = mon.snapshot()
    >>> snap.get("mlmon_calls_total"), snap.get("mlmon_error_ratio")
    (3.0, 0.0)
    >>> mon.close()
    """

    def __init__(
        self,
        name: str,
        *,
        version: str | None = None,
        task: Any = None,
        window: float = 300.0,
        flush_interval: float = 10.0,
        latency_budget: float | None = None,
        reference: Any = None,
        emitters: Sequence[Emitter] | None = None,
        rules: Sequence[Any] | None = None,
        clock: Clock | None = None,
        slices: int = 10,
        max_buffered_calls: int = 262_144,
        max_buffered_rows: int = 262_144,
        instance: str | None = None,
        enabled: bool = True,
        max_pending: int = 1_000_000,
        ttl: float = 7 * 24 * 3600.0,
        drift: Any = None,
        feature_names: Sequence[str] | None = None,
        categorical: Sequence[str] = (),
        alert_sinks: Sequence[Any] | None = None,
        reference_values: dict[str, float] | None = None,
        max_timings: int = 10_000,
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"name must match [A-Za-z0-9_-]+, got {name!r}")
        if version is not None and (not isinstance(version, str) or not version or "\n" in version):
            raise ValueError(f"version must be a non-empty one-line string or None, got {version!r}")
        for field, value in (("window", window), ("flush_interval", flush_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{field} must be a positive number of seconds, got {value!r}")
        if flush_interval > window:
            raise ValueError(f"flush_interval ({flush_interval!r}) must not exceed window ({window!r})")
        if latency_budget is not None and (
            isinstance(latency_budget, bool)
            or not isinstance(latency_budget, (int, float))
            or not (math.isfinite(latency_budget) and latency_budget > 0)
        ):
            raise ValueError(f"latency_budget must be a positive number of seconds or None, got {latency_budget!r}")
        if not isinstance(max_buffered_rows, int) or max_buffered_rows < 1:
            raise ValueError(f"max_buffered_rows must be an int >= 1, got {max_buffered_rows!r}")
        if not isinstance(max_buffered_calls, int) or max_buffered_calls < 16:
            raise ValueError(f"max_buffered_calls must be an int >= 16, got {max_buffered_calls!r}")
        emitter_list = list(emitters or ())
        for e in emitter_list:
            if not isinstance(e, Emitter):
                raise TypeError(f"emitters must have emit(snapshot) and close(), got {e!r}")
        names = [emitter_name(e) for e in emitter_list]
        if len(set(names)) != len(names):
            raise ValueError(f"emitter names must be unique (set name=...), got {names!r}")

        self.name = name
        self.version = version
        self.task = task
        self.window = float(window)
        self.flush_interval = float(flush_interval)
        self.latency_budget = latency_budget
        self.reference = reference
        self.emitters: list[Emitter] = emitter_list
        self.rules = list(rules or ())
        self.enabled = bool(enabled)
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self._instance_given = instance is not None
        self._slices = slices
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._perf = self._clock.perf_counter_ns

        # Hot-path state. The wrappers hoist these objects, so they are only ever cleared in
        # place, never replaced.
        self._ids = itertools.count()
        self._inflight: dict[int, int] = {}  # async calls and ``with`` blocks: id -> start ns
        self._dts = array.array("q")  # fast path: durations (ns) of successful calls
        self._nums = array.array("d")  # fast path: their numeric outputs
        self._objs: list[Any] = []  # fast path: their other outputs (copied)
        self._errs: list[tuple[int, type]] = []  # fast path: (duration, exception class)
        self._gen: list[tuple[Any, ...]] = []  # other forms: (dt, exc class, out, features, ids, end ns)
        self._hard_cap = max_buffered_calls
        self._max_rows = max_buffered_rows
        self._soft_cap = max(8, min(4096, max_buffered_calls // 4))

        self._drain_lock = threading.Lock()  # drain, snapshot; never taken by predict
        self._emit_lock = threading.Lock()  # serialises reporter cycles; never taken by predict
        self._misc_lock = threading.Lock()  # short: internal error counts, generated ids
        self._reporter: Any = None
        self._closed = False
        if not isinstance(max_timings, int) or max_timings < 1:
            raise ValueError(f"max_timings must be an int >= 1, got {max_timings!r}")
        self._max_timings = max_timings
        self._want_timings = any(float(getattr(e, "timing_rate", 0.0) or 0.0) > 0.0 for e in emitter_list)
        self._max_pending = max_pending
        self._ttl = ttl
        self._drift = drift
        self._feature_names = list(feature_names) if feature_names is not None else None
        self._categorical = tuple(categorical)
        from mlmon import _wiring

        _wiring.check_configuration(self, self._feature_names)
        self._engine = _wiring.alert_engine(self, alert_sinks, reference_values)
        self._init_state()
        _MONITORS.add(self)

    # -- state -----------------------------------------------------------------------------
    def _init_state(self) -> None:
        now = self._clock.monotonic()
        self._started = now
        self._service: RollingWindow[_ServiceSlice] = RollingWindow(_ServiceSlice, self.window, self._slices, now)
        self._calls_total = 0
        self._rows_total = 0
        self._slow_total = 0
        self._errors_total: dict[str, int] = {}
        self._le = np.array((*LATENCY_BUCKETS, math.inf))
        self._le_counts = np.zeros(len(self._le), dtype=np.int64)
        self._lat_sum = 0.0
        self._dropped: dict[str, int] = {"calls": 0}
        self._dropped_pending = [0, 0]  # calls, rows dropped since the last drain
        self._dropped_outputs = 0
        self._obj_rows = 0
        self._dropped_errors: dict[str, int] = {}
        self._internal: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._emit_errors: dict[str, int] = {emitter_name(e): 0 for e in self.emitters}
        self._emit_seconds: dict[str, float] = {}
        self._next_gen_id = 0
        self._resources = ResourceSampler()
        self._alert_state: tuple[Any, ...] = ()
        self._timings = np.empty(self._max_timings)  # reservoir of latencies since the last cycle
        self._timings_seen = 0
        self._timing_rng = np.random.default_rng()
        self._components: list[Component] = self._make_components(now)

    def _make_components(self, now: float) -> list[Component]:
        from mlmon import _wiring  # the optional parts, built from the monitor's configuration

        return _wiring.components(self, now)

    # -- hot-path helpers (slow paths only) ------------------------------------------------
    def _record(self, rec: tuple[Any, ...]) -> None:
        """Append a general record ``(dt, exc class, out, features, ids, end ns)`` (bounded)."""
        gen = self._gen
        if len(gen) < self._soft_cap:
            gen.append(rec)
            return
        try:
            if len(gen) < self._hard_cap:
                gen.append(rec)
            else:
                f, o = rec[3], rec[2]
                self._count_dropped(rec[1], 0 if rec[1] is not None else (_feature_rows(f) if f is not None else _rows(o)))
            self._drain_inline()
        except Exception as exc:
            self._internal_error("buffer", exc)

    def _full(self, dt: int, result: Any) -> None:
        """The fast-path buffer reached its soft cap: ``dt`` and the call's output."""
        try:
            if len(self._dts) < self._hard_cap:
                self._dts.append(dt)
                if result is _NO_OUTPUT:
                    pass
                elif result.__class__ in _NUMERIC:
                    self._nums.append(result)  # type: ignore[arg-type]
                else:
                    self._add_obj(result)
            else:
                self._count_dropped(None, 1 if result is _NO_OUTPUT else _rows(result))
            self._drain_inline()
        except Exception as exc:
            self._internal_error("buffer", exc)

    def _add_obj(self, result: Any) -> None:
        """Buffer a non-numeric output (an array of scores, say), bounded by rows as well.

        Batch outputs can be large, so besides the call caps there is a cap on the rows they
        hold: past ``max_buffered_rows`` the buffer is drained inline, and past four times that
        (a drain running elsewhere cannot keep up) the output's values are dropped and counted
        in ``mlmon_dropped_total{buffer="outputs"}``; its rows still count.
        """
        try:
            rows = _rows(result)
            if self._obj_rows + rows > 4 * self._max_rows:
                with self._misc_lock:
                    self._dropped_pending[1] += rows - 1
                    self._dropped_outputs += 1
                return
            self._objs.append(_copy(result))
            self._obj_rows += rows  # approximate under threads; only a trigger
            if self._obj_rows > self._max_rows:
                self._drain_inline()
        except Exception as exc:
            self._internal_error("buffer", exc)

    def _err_full(self, dt: int, cls: type) -> None:
        """The error buffer reached its soft cap."""
        try:
            if len(self._errs) < self._hard_cap:
                self._errs.append((dt, cls))
            else:
                self._count_dropped(cls, 0)
            self._drain_inline()
        except Exception as exc:
            self._internal_error("buffer", exc)

    def _count_dropped(self, cls: type | None, rows: int) -> None:
        # The call's details (latency, outputs) are lost; its count, rows and error type are not.
        with self._misc_lock:
            self._dropped_pending[0] += 1
            self._dropped_pending[1] += rows
            if cls is not None:
                key = getattr(cls, "__name__", "Exception")
                self._dropped_errors[key] = self._dropped_errors.get(key, 0) + 1

    def _drain_inline(self) -> None:
        """Drain on the calling thread, unless a drain is already running elsewhere.

        The thread that fills the buffer reduces it itself, so a predict loop that starves the
        reporter of the GIL cannot outrun it; one call in ``soft cap`` pays for the reduction
        (about 135 ns per buffered call). It never waits: if a flush holds the drain lock, it
        returns at once.
        """
        lock = self._drain_lock
        if lock.acquire(blocking=False):
            try:
                self._drain_locked()
            finally:
                lock.release()

    def _generate_ids(self, n: int) -> range:
        # Negative, so they never meet the ids derived from call ids.
        with self._misc_lock:
            self._next_gen_id -= n
            start = self._next_gen_id
        return range(start, start + n)

    def _internal_error(self, stage: str, exc: BaseException) -> None:
        """Count a failure inside mlmon and log it at most once per flush interval and stage."""
        try:
            with self._misc_lock:
                self._internal[stage] = self._internal.get(stage, 0) + 1
                now = self._clock.monotonic()
                last = self._last_log.get(stage)
                if last is not None and now - last < self.flush_interval:
                    return
                self._last_log[stage] = now
            log.warning("mlmon %s: internal error in %s: %r", self.name, stage, exc, exc_info=exc)
        except Exception:
            pass

    def _ensure_reporter(self) -> None:
        if self._reporter is None and not self._closed:
            from mlmon.reporter import Reporter

            with self._misc_lock:
                if self._reporter is None:
                    self._reporter = Reporter(self)
                    self._reporter.start()

    # -- drain -----------------------------------------------------------------------------
    def _drain_locked(self) -> None:
        """Reduce every buffered record into the windows. Caller holds the drain lock."""
        if self._dropped_pending[0] or self._dropped_pending[1] or self._dropped_outputs:
            with self._misc_lock:
                (calls, rows), errors = self._dropped_pending, self._dropped_errors
                self._dropped_pending, self._dropped_errors = [0, 0], {}
                outputs, self._dropped_outputs = self._dropped_outputs, 0
            self._calls_total += calls
            self._rows_total += rows
            self._dropped["calls"] += calls
            self._dropped["outputs"] = self._dropped.get("outputs", 0) + outputs
            for key, count in errors.items():
                self._add_error(key, count)
        # Take the outputs first: a call appends its duration before its output, so every
        # output taken here belongs to a duration that is taken too (or was taken before).
        nums = _take(self._nums)
        objs = _take(self._objs)
        self._obj_rows = 0
        dts = _take(self._dts)
        errs = _take(self._errs)
        gen = _take(self._gen)
        if not (len(dts) or errs or gen or len(nums) or objs):
            return
        try:
            self._reduce(dts, nums, objs, errs, gen, self._clock.monotonic())
        except Exception as exc:
            self._internal_error("drain", exc)

    def _add_error(self, key: str, count: int) -> None:
        if key not in self._errors_total and len(self._errors_total) >= _MAX_ERROR_TYPES:
            key = "other"
        self._errors_total[key] = self._errors_total.get(key, 0) + count

    def _reduce(
        self,
        dts: array.array[int],
        nums: array.array[float],
        objs: list[Any],
        errs: list[tuple[int, type]],
        gen: list[tuple[Any, ...]],
        now: float,
    ) -> None:
        # No Python-level loop over fast-path calls: a loop per call would cost more than the
        # call it describes. Durations and numeric outputs arrive as raw arrays.
        d_ok = np.frombuffer(dts, dtype=np.int64)
        scalars = np.frombuffer(nums, dtype=np.float64)
        outs: list[Any] = [scalars] if scalars.size else []
        rows_list: list[int] = [int(scalars.size)] if scalars.size else []
        feats: list[Any] = [None] * len(outs)
        ids: list[Any] = [None] * len(outs)
        times: list[float] = [now] * len(outs)
        # Each fast-path call is one row through its duration, plus (rows - 1) through an
        # object output: exact in total whichever drain the two halves land in.
        rows = int(d_ok.size)
        for o in objs:
            r = _rows(o)
            rows += r - 1
            outs.append(o)
            rows_list.append(r)
        feats.extend([None] * len(objs))
        ids.extend([None] * len(objs))
        times.extend([now] * len(objs))
        if gen:
            ok_gen = [g for g in gen if g[1] is None] if any(g[1] is not None for g in gen) else gen
            errs = errs + [(g[0], g[1]) for g in gen if g[1] is not None]
            if ok_gen:
                d_ok = np.concatenate((d_ok, np.array([g[0] for g in ok_gen], dtype=np.int64)))
                g_outs = [g[2] for g in ok_gen]
                g_feats = [g[3] for g in ok_gen]
                g_rows = [
                    _feature_rows(f) if f is not None else _rows(o) for f, o in zip(g_feats, g_outs, strict=True)
                ]
                rows += sum(g_rows)
                ends = np.array([g[5] for g in ok_gen], dtype=np.int64)
                g_times = now - np.maximum(0, self._perf() - ends) / 1e9
                outs.extend(g_outs)
                feats.extend(g_feats)
                ids.extend([g[4] for g in ok_gen])
                rows_list.extend(g_rows)
                times = np.concatenate((np.array(times), g_times))  # type: ignore[assignment]
        n_ok = int(d_ok.size)
        d_err = np.array([e[0] for e in errs], dtype=np.int64)
        secs = np.concatenate((d_ok, d_err)) / 1e9
        np.maximum(secs, 0.0, out=secs)  # a fake clock may go backwards
        n_err = len(errs)
        n = n_ok + n_err
        for _, cls in errs:
            self._add_error(getattr(cls, "__name__", "Exception"), 1)
        budget = self.latency_budget
        if budget is None:
            slow, good = 0, n_ok
        else:
            slow = int((secs > budget).sum())
            good = int((secs[:n_ok] <= budget).sum())

        sl = self._service.current(now)
        sl.calls += n
        sl.rows += rows
        sl.errors += n_err
        sl.slow += slow
        sl.good += good
        sl.latency.add_many(secs)
        total = float(secs.sum())
        sl.lat_sum += total

        self._calls_total += n
        self._rows_total += rows
        self._slow_total += slow
        self._le_counts += np.bincount(np.searchsorted(self._le, secs, side="left"), minlength=self._le.size)
        self._lat_sum += total
        if self._want_timings:
            self._sample_timings(secs)

        if self._components and outs:
            batch = CallBatch(
                now=now, wall=self._clock.time(), outputs=outs, features=feats, ids=ids, rows=rows_list, times=times
            )
            for comp in self._components:
                try:
                    comp.ingest(batch)
                except Exception as exc:
                    self._internal_error("ingest", exc)

    def _sample_timings(self, secs: npt.NDArray[np.float64]) -> None:
        """Keep a uniform sample of at most ``max_timings`` latencies (reservoir sampling)."""
        cap, seen = self._max_timings, self._timings_seen
        room = max(0, min(cap - seen, secs.size))
        if room:
            self._timings[seen : seen + room] = secs[:room]
        rest = secs[room:]
        if rest.size:
            # Value number j (1-based, over the cycle) replaces a random slot with probability cap/j.
            j = seen + room + np.arange(1, rest.size + 1)
            keep = self._timing_rng.random(rest.size) < cap / j
            slots = self._timing_rng.integers(0, cap, int(keep.sum()))
            self._timings[slots] = rest[keep]
        self._timings_seen = seen + int(secs.size)

    def _take_timings(self) -> tuple[tuple[float, ...], float]:
        """The cycle's latency sample and its sampling rate; starts the next cycle's sample."""
        seen = self._timings_seen
        if not seen:
            return (), 1.0
        n = min(seen, self._max_timings)
        sample = tuple(self._timings[:n].tolist())
        self._timings_seen = 0
        return sample, n / seen

    # -- read side -------------------------------------------------------------------------
    def _inflight_state(self) -> tuple[int, float]:
        """Calls in flight now and the age of the oldest, in seconds.

        Sync calls are found on the threads' stacks (frames of our wrappers owned by this
        monitor, with their ``t0``); async calls and ``with`` blocks are in the in-flight dict.
        """
        starts: list[int] = []
        for _ in range(8):
            try:
                starts = list(self._inflight.values())
                break
            except RuntimeError:  # resized while copying (free-threaded builds)
                continue
        dts = self._dts
        gen_record = self._record
        for frame in sys._current_frames().values():
            f: Any = frame
            while f is not None:
                if f.f_code in _SYNC_CODES:
                    loc = f.f_locals
                    t0 = loc.get("t0")
                    if t0 is not None and (loc.get("dts") is dts or loc.get("record") == gen_record):
                        starts.append(t0)
                f = f.f_back
        if not starts:
            return 0, 0.0
        return len(starts), max(0.0, (self._perf() - min(starts)) / 1e9)

    def _service_samples(self, now: float) -> list[Triple]:
        out: list[Triple] = []
        add = out.append
        add(("mlmon_up", 1.0, {}))
        add(("mlmon_calls_total", self._calls_total, {}))
        add(("mlmon_rows_total", self._rows_total, {}))
        add(("mlmon_slow_calls_total", self._slow_total, {}))
        for etype, count in sorted(self._errors_total.items()):
            add(("mlmon_errors_total", count, {"error_type": etype}))
        w = self._service.merged(now)
        covered = self._service.covered(now)
        add(("mlmon_calls_per_second", w.calls / covered, {}))
        add(("mlmon_rows_per_second", w.rows / covered, {}))
        if w.calls:
            add(("mlmon_error_ratio", w.errors / w.calls, {}))
            add(("mlmon_availability_ratio", w.good / w.calls, {}))
            for q in LATENCY_QUANTILES:
                add(("mlmon_latency_seconds", w.latency.quantile(q), {"quantile": format(q, "g")}))
            add(("mlmon_latency_seconds_mean", w.lat_sum / w.calls, {}))
        n_inflight, oldest = self._inflight_state()
        add(("mlmon_inflight_calls", n_inflight, {}))
        add(("mlmon_oldest_inflight_seconds", oldest, {}))
        cum = np.cumsum(self._le_counts)
        for le, c in zip(self._le.tolist(), cum.tolist(), strict=True):
            add(("mlmon_latency_seconds_bucket", c, {"le": _fmt_le(le)}))
        add(("mlmon_latency_seconds_sum", self._lat_sum, {}))
        add(("mlmon_latency_seconds_count", int(cum[-1]), {}))
        return out

    def _self_samples(self) -> list[Triple]:
        out: list[Triple] = []
        dropped = dict(self._dropped)
        with self._misc_lock:
            internal = dict(self._internal)
            emit_errors = dict(self._emit_errors)
            emit_seconds = dict(self._emit_seconds)
        if self._engine is not None:
            for stage, count in self._engine.errors.items():
                key = f"alerts:{stage}"
                internal[key] = internal.get(key, 0) + count
        for e in self.emitters:
            try:
                for name, value, labels in self_metrics(e):
                    if name == "mlmon_dropped_total":
                        key = str(labels.get("buffer", emitter_name(e)))
                        dropped[key] = dropped.get(key, 0) + int(value)
                    else:
                        out.append((name, value, labels))
            except Exception as exc:
                self._internal_error("self_metrics", exc)
        for k, v in sorted(dropped.items()):
            out.append(("mlmon_dropped_total", v, {"buffer": k}))
        for k, v in sorted(internal.items()):
            out.append(("mlmon_internal_errors_total", v, {"stage": k}))
        for k, v in sorted(emit_errors.items()):
            out.append(("mlmon_emit_errors_total", v, {"emitter": k}))
        for k, seconds in sorted(emit_seconds.items()):
            out.append(("mlmon_emit_seconds", seconds, {"emitter": k}))
        return out

    def _build_locked(self, resources: bool = True) -> Snapshot:
        """Build a snapshot from the windows. Caller holds the drain lock and has drained."""
        now = self._clock.monotonic()
        triples: list[Triple] = self._service_samples(now)
        for comp in self._components:
            try:
                triples.extend(comp.samples(now))
            except Exception as exc:
                self._internal_error("samples", exc)
        if resources:
            try:
                triples.extend((name, value, {}) for name, value in self._resources.sample())
            except Exception as exc:
                self._internal_error("resources", exc)
        triples.extend(self._self_samples())
        triples.extend(self._alert_samples())
        return Snapshot(
            model=self.name,
            version=self.version,
            instance=self.instance,
            timestamp=self._clock.time(),
            window=self._service.covered(now),
            samples=samples_from(triples),
            alerts=self._alert_state,
        )

    def _alert_samples(self) -> Iterable[Triple]:
        return self._engine.samples() if self._engine is not None else ()

    def _evaluate_rules(self, snap: Snapshot) -> Snapshot:
        """Run the alert rules on a reporter cycle's snapshot (failures counted, never raised)."""
        if self._engine is None:
            return snap
        try:
            snap = self._engine.evaluate(snap)
        except Exception as exc:
            self._internal_error("alerts", exc)
            return snap
        self._alert_state = snap.alerts
        return snap

    # -- public API ------------------------------------------------------------------------
    @overload
    def track(self, func: F, /) -> F: ...

    @overload
    def track(
        self,
        func: None = None,
        /,
        *,
        features: Any = None,
        ids: Any = None,
        outputs: bool | Callable[[Any], Any] = True,
    ) -> Track: ...

    def track(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        features: Any = None,
        ids: Any = None,
        outputs: bool | Callable[[Any], Any] = True,
    ) -> Any:
        """Track a predict function (decorator, bare or with arguments) or a block (``with``).

        Args:
            func: the function, when used as a bare decorator.
            features: decorator: the name of the argument holding the features; context
                manager: the features themselves.
            ids: likewise for prediction ids (joined to labels by ``log_feedback``).
            outputs: record the return value as outputs (True), not at all (False), or
                what a callable extracts from it.

        Returns:
            The wrapped function, or a :class:`Track` object.
        """
        t = Track(self, features=features, ids=ids, outputs=outputs)
        if func is not None:
            return t(func)
        return t

    def snapshot(self) -> Snapshot:
        """Drain the buffers and return the current :class:`Snapshot` (emits nothing)."""
        with self._drain_lock:
            self._drain_locked()
            return self._build_locked()

    def flush(self) -> Snapshot:
        """Run one reporter cycle now: drain, snapshot, evaluate rules, emit. Returns the snapshot."""
        from mlmon.reporter import run_cycle

        return run_cycle(self)

    def close(self) -> None:
        """Flush once more, stop the reporter and close the emitters. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        except Exception as exc:
            self._internal_error("close", exc)
        self._closed = True
        reporter, self._reporter = self._reporter, None
        if reporter is not None:
            reporter.stop()
        for e in self.emitters:
            try:
                e.close()
            except Exception as exc:
                self._internal_error("close", exc)
        if self._engine is not None:
            try:
                self._engine.close()
            except Exception as exc:
                self._internal_error("close", exc)
        _MONITORS.discard(self)

    def log_feedback(self, ids: Any, labels: Any) -> None:
        """Join true labels to earlier predictions by id (see ``docs/quality.md``).

        Raises:
            ValueError: when ``ids`` and ``labels`` differ in length.
        """
        from mlmon import _wiring

        _wiring.log_feedback(self, ids, labels)

    def log_outcome(self, name: str, ids: Any = None, value: float = 1.0) -> None:
        """Record a downstream outcome (a click, a purchase) that followed predictions."""
        from mlmon import _wiring

        _wiring.log_outcome(self, name, ids, value)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Monitor({self.name!r}, version={self.version!r}, instance={self.instance!r})"

    # -- fork ------------------------------------------------------------------------------
    def _after_fork_child(self) -> None:
        had_reporter = self._reporter is not None
        self._reporter = None
        self._drain_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._misc_lock = threading.Lock()
        for buf in (self._dts, self._nums, self._objs, self._errs, self._gen):
            del buf[:]
        self._inflight.clear()
        if not self._instance_given:
            self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._init_state()
        if self._engine is not None:
            self._engine.reset()
        for e in self.emitters:
            hook = getattr(e, "after_fork", None)
            if hook is not None:
                try:
                    hook()
                except Exception as exc:
                    self._internal_error("fork", exc)
        if had_reporter and not self._closed:
            self._ensure_reporter()


def _after_fork_in_child() -> None:
    for mon in list(_MONITORS):
        try:
            mon._after_fork_child()
        except Exception as exc:
            log.warning("mlmon: resetting %r after fork failed: %r", mon, exc)


def _close_all() -> None:
    """Flush and close every live monitor (at interpreter exit, and at a forked child's exit)."""
    for mon in list(_MONITORS):
        try:
            mon.close()
        except Exception as exc:
            log.warning("mlmon: closing %r at exit failed: %r", mon, exc)


class _Anchor:
    """A weak-referenceable object that multiprocessing's after-fork registry can hold."""


_ANCHOR = _Anchor()


def _mp_after_fork(_: object) -> None:
    # A multiprocessing child ends with os._exit, which skips atexit; multiprocessing runs its
    # own finalizers first, so the child's last data is flushed there.
    multiprocessing.util.Finalize(None, _close_all, exitpriority=10)


atexit.register(_close_all)
multiprocessing.util.register_after_fork(_ANCHOR, _mp_after_fork)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
