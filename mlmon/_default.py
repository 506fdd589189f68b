"""The process-wide default monitor: ``mlmon.configure()`` and module-level ``mlmon.track``.

``@mlmon.track`` works at import time, before ``configure()``: the decorated function finds
the default monitor at its first call, and again after each ``configure()``, so a module can
decorate its predict function and leave the configuration to the application that imports it.
Until ``configure()`` is called the default monitor is named after ``$MLMON_MODEL`` (or
``default``) and has no emitters.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

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

    >>> import mlmon
    >>> mon = mlmon.configure(model="doc_configure", version="2")
    >>> mlmon.get_monitor() is mon
    True
    >>> mon.close()
    """
    global _default, _generation
    name = model if model is not None else os.environ.get("MLMON_MODEL", "default")
    new = Monitor(name, **kwargs)
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
            _default = Monitor(os.environ.get("MLMON_MODEL", "default"))
            _generation += 1
            log.warning(
                "mlmon: using the default monitor %r, which configure() has not set up: it emits "
                "nowhere until mlmon.configure(model=..., emitters=[...]) is called",
                _default.name,
            )
        return _default


class _LazyTrack:
    """``mlmon.track(...)``: binds to the default monitor when used, not when created."""

    __slots__ = ("_features", "_ids", "_outputs", "_track")

    def __init__(self, features: Any, ids: Any, outputs: bool | Callable[[Any], Any]) -> None:
        self._features = features
        self._ids = ids
        self._outputs = outputs
        self._track: Track | None = None

    def _bind(self, func: Callable[..., Any]) -> tuple[int, Callable[..., Any]]:
        gen_before = _generation
        mon = get_monitor()
        gen = _generation if mon is _default else gen_before
        return gen, mon.track(features=self._features, ids=self._ids, outputs=self._outputs)(func)

    def __call__(self, func: F) -> F:
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
        self._track = get_monitor().track(features=self._features, ids=self._ids, outputs=self._outputs)
        return self._track.__enter__()

    def __exit__(self, *exc: Any) -> None:
        track, self._track = self._track, None
        if track is not None:
            track.__exit__(*exc)


@overload
def track(func: F, /) -> F: ...


@overload
def track(
    func: None = None, /, *, features: Any = None, ids: Any = None, outputs: bool | Callable[[Any], Any] = True
) -> _LazyTrack: ...


def track(
    func: Callable[..., Any] | None = None,
    /,
    *,
    features: Any = None,
    ids: Any = None,
    outputs: bool | Callable[[Any], Any] = True,
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
    t = _LazyTrack(features, ids, outputs)
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


def log_outcome(name: str, ids: Any = None, value: float = 1.0) -> None:
    """``log_outcome()`` on the default monitor."""
    get_monitor().log_outcome(name, ids=ids, value=value)
