"""The process-wide default monitor: ``mlmon.configure()`` and module-level ``mlmon.track``.

``@mlmon.track`` works at import time, before ``configure()``: the decorated function finds
the default monitor at its first call, and again after each ``configure()``, so a module can
decorate its predict function and leave the configuration to the application that imports it.
Until ``configure()`` is called the default monitor is named after ``$MLMON_MODEL`` (or
``default``) and has no emitters.

``configure()`` reads the environment (:mod:`mlmon._env`, docs/configuration.md): what the code
passes wins, the variables fill in what it leaves out (``MLMON_MODEL``, ``MLMON_MODEL_VERSION``,
``MLMON_EMITTERS``), and ``MLMON_DISABLED=1`` turns tracking off whatever the code says.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

from mlmon import _env
from mlmon.buffers import NO_SEGMENT
from mlmon.monitor import Monitor
from mlmon.snapshot import Snapshot
from mlmon.tracking import Call, Track

__all__ = ["configure", "flush", "get_monitor", "log_feedback", "log_outcome", "snapshot", "track"]

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("mlmon")
_lock = threading.Lock()
_default: Monitor | None = None
_generation = 0


def configure(model: str | None = None, **kwargs: Any) -> Monitor:
    """Create (or replace) the default monitor; takes :class:`Monitor`'s arguments.

    The previous default monitor, if any, is flushed and closed. Functions decorated with
    ``@mlmon.track`` move to the new monitor at their next call.

    Arguments the code gives win over the environment; what it leaves out comes from
    ``MLMON_MODEL`` (else ``default``), ``MLMON_MODEL_VERSION`` and ``MLMON_EMITTERS`` (emitter
    URLs, built only when ``emitters`` is not given). With ``MLMON_DISABLED=1`` the monitor is
    created disabled (it tracks nothing and starts no thread) and ``MLMON_EMITTERS`` is not
    read. A malformed variable raises ``ValueError`` naming it, before anything is replaced.

    >>> import mlmon
    >>> mon = mlmon.configure(model="doc_configure", version="2")
    >>> mlmon.get_monitor() is mon
    True
    >>> mon.close()
    """
    global _default, _generation
    killed = _env.kill_switch()
    name = model if model is not None else (_env.model_from_env() or "default")
    if kwargs.get("version") is None:  # a variable the code overrides is not even read
        kwargs["version"] = _env.version_from_env()
    if killed:
        kwargs["enabled"] = False
    built: list[Any] = []
    if kwargs.get("emitters") is None and not killed:
        built = kwargs["emitters"] = _env.emitters_from_env()
    try:
        new = Monitor(name, **kwargs)
    except BaseException:
        for em in built:  # emitters made from MLMON_EMITTERS are ours to close
            try:
                em.close()
            except Exception:
                pass
        raise
    with _lock:
        old, _default = _default, new
        _generation += 1
    if old is not None:
        old.close()
    return new


def get_monitor() -> Monitor:
    """The default monitor, created with defaults if ``configure()`` was not called."""
    global _default, _generation
    mon = _default
    if mon is not None and not mon._closed:
        return mon
    with _lock:
        if _default is None or _default._closed:
            name, version = _identity_or_default()
            _default = Monitor(name, version=version, enabled=not _env.KILLED)
            _generation += 1
            log.warning(
                "mlmon: using the default monitor %r, which configure() has not set up: it emits "
                "nowhere until mlmon.configure(model=..., emitters=[...]) is called",
                _default.name,
            )
        return _default


def _identity_or_default() -> tuple[str, str | None]:
    # On the caller's thread (a tracked function's first call): a malformed variable is
    # logged, never raised; configure() is where it raises.
    try:
        return _env.model_from_env() or "default", _env.version_from_env()
    except ValueError as exc:
        log.warning("mlmon: %s; the default monitor is named 'default', without a version", exc)
        return "default", None


class _LazyTrack:
    """``mlmon.track(...)``: binds to the default monitor when used, not when created."""

    __slots__ = ("_features", "_ids", "_outputs", "_segment", "_track")

    def __init__(self, features: Any, ids: Any, outputs: bool | Callable[[Any], Any], segment: Any = NO_SEGMENT) -> None:
        self._features = features
        self._ids = ids
        self._outputs = outputs
        self._segment = segment
        self._track: Track | None = None

    def _bind(self, func: Callable[..., Any]) -> tuple[int, Callable[..., Any]]:
        gen_before = _generation
        mon = get_monitor()
        gen = _generation if mon is _default else gen_before
        return gen, mon.track(features=self._features, ids=self._ids, outputs=self._outputs, segment=self._segment)(func)

    def __call__(self, func: F) -> F:
        if _env.kill_switch():  # MLMON_DISABLED: the function, unchanged
            return func
        bound: list[Any] = [-1, None]
        bind = self._bind
        if inspect.iscoroutinefunction(func):

            async def alazy(*args: Any, **kwargs: Any) -> Any:
                if bound[0] != _generation:
                    bound[:] = bind(func)
                return await bound[1](*args, **kwargs)

            return functools.wraps(func)(alazy)  # type: ignore[return-value]

        def lazy(*args: Any, **kwargs: Any) -> Any:
            if bound[0] != _generation:
                bound[:] = bind(func)
            return bound[1](*args, **kwargs)

        return functools.wraps(func)(lazy)  # type: ignore[return-value]

    def __enter__(self) -> Call:
        self._track = get_monitor().track(
            features=self._features, ids=self._ids, outputs=self._outputs, segment=self._segment
        )
        return self._track.__enter__()

    def __exit__(self, *exc: Any) -> None:
        track, self._track = self._track, None
        if track is not None:
            track.__exit__(*exc)


@overload
def track(func: F, /) -> F: ...


@overload
def track(
    func: None = None,
    /,
    *,
    features: Any = None,
    ids: Any = None,
    outputs: bool | Callable[[Any], Any] = True,
    segment: Any = NO_SEGMENT,
) -> _LazyTrack: ...


def track(
    func: Callable[..., Any] | None = None,
    /,
    *,
    features: Any = None,
    ids: Any = None,
    outputs: bool | Callable[[Any], Any] = True,
    segment: Any = NO_SEGMENT,
) -> Any:
    """``Monitor.track`` on the default monitor; usable at import time, before ``configure()``.

    >>> import mlmon
    >>> @mlmon.track
    ... def predict(x):
    ...     return x + 1
    >>> mon = mlmon.configure(model="doc_lazy")
    >>> predict(1)
    2
    >>> mlmon.snapshot().get("mlmon_calls_total")
    1.0
    >>> mon.close()
    """
    t = _LazyTrack(features, ids, outputs, segment)
    return t(func) if func is not None else t


def snapshot() -> Snapshot:
    """``snapshot()`` of the default monitor."""
    return get_monitor().snapshot()


def flush() -> Snapshot:
    """``flush()`` of the default monitor."""
    return get_monitor().flush()


def log_feedback(ids: Any, labels: Any) -> None:
    """``log_feedback()`` on the default monitor."""
    get_monitor().log_feedback(ids, labels)


def log_outcome(name: str, ids: Any = None, value: float = 1.0, *, segment: Any = NO_SEGMENT) -> None:
    """``log_outcome()`` on the default monitor."""
    get_monitor().log_outcome(name, ids=ids, value=value, segment=segment)
