"""The emitter extension point: ``emit(snapshot)`` and ``close()``.

An emitter receives every :class:`~mlmon.snapshot.Snapshot` the reporter builds, on the
reporter thread (never on the predict path). It may be slow or raise: the reporter times each
call (``mlmon_emit_seconds{emitter}``) and counts failures (``mlmon_emit_errors_total{emitter}``)
without stopping the other emitters.

An emitter that drops data of its own (a full send buffer, say) reports it through the optional
``self_metrics()`` method; the reporter adds those samples to the next snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from mlmon.snapshot import Snapshot

__all__ = ["Emitter", "SelfMetric", "emitter_name"]

SelfMetric = tuple[str, float, Mapping[str, str]]
"""``(canonical metric name, value, labels)``, e.g. ``("mlmon_dropped_total", 3, {"buffer": "graphite"})``."""


@runtime_checkable
class Emitter(Protocol):
    """What the reporter needs of an emitter.

    >>> class Printer:
    ...     name = "printer"
    ...     def emit(self, snapshot): print(snapshot.get("mlmon_calls_total"))
    ...     def close(self): pass
    >>> isinstance(Printer(), Emitter)
    True
    """

    def emit(self, snapshot: Snapshot) -> None:
        """Deliver one snapshot. May raise; the reporter counts it."""

    def close(self) -> None:
        """Flush what is buffered and release sockets, threads and files. Idempotent."""


def emitter_name(emitter: object) -> str:
    """The ``emitter`` label: the object's ``name`` attribute, else its class name in lower case."""
    name = getattr(emitter, "name", None)
    if isinstance(name, str) and name:
        return name
    return type(emitter).__name__.lower()


def self_metrics(emitter: object) -> Iterable[SelfMetric]:
    """The emitter's own metrics, or nothing if it has no ``self_metrics()``."""
    fn = getattr(emitter, "self_metrics", None)
    if fn is None:
        return ()
    return list(fn())
