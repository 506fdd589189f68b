"""The emitter extension point: ``emit(snapshot)`` and ``close()``.

An emitter receives every :class:`~mlmon.snapshot.Snapshot` the reporter builds, on the
reporter thread (never on the predict path). It may be slow or raise: the reporter times each
call (``mlmon_emit_seconds{emitter}``) and counts failures (``mlmon_emit_errors_total{emitter}``)
without stopping the other emitters.

An emitter that drops data of its own (a full send buffer, say) reports it through the optional
``self_metrics()`` method; the reporter adds those samples to the next snapshot.

Optional hooks, looked up by name (an emitter without them works as before):

* ``after_fork()``: called by the monitor in a forked child, before anything else touches the
  emitter (forget the parent's sockets, threads and state; start nothing that an ``exec``
  would leak: start lazily at the first emit).
* ``open(model, version, instance)``: called once by each monitor that uses the emitter, when
  the monitor is constructed (:func:`open_emitter`). An emitter shared by several monitors
  (``PrometheusEmitter``) counts its openers, refuses with ValueError an identity that is
  already open (two monitors would overwrite each other's series), and releases its resources
  only when the last opener closes.
* ``release(model, version, instance)``: the monitor with that identity is done
  (:func:`close_emitter`); without it, ``close()`` is called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, cast, runtime_checkable

from mlmon.snapshot import Snapshot

__all__ = ["Emitter", "SelfMetric", "close_emitter", "emitter_name", "open_emitter"]

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


def open_emitter(emitter: object, model: str, version: str | None, instance: str) -> None:
    """Call the emitter's optional ``open(model, version, instance)`` hook, if it has one.

    A monitor calls this once per emitter at construction; the ValueError of an identity that
    is already open propagates (it is a configuration error).

    >>> from mlmon.emitters.memory import InMemoryEmitter
    >>> open_emitter(InMemoryEmitter(), "fraud", None, "web1:7")  # no hook: nothing to do
    """
    hook = getattr(emitter, "open", None)
    if hook is not None and callable(hook):
        hook(model, version, instance)


def close_emitter(emitter: object, model: str, version: str | None, instance: str) -> None:
    """End one monitor's use of the emitter: ``release(model, version, instance)`` when the
    emitter has it (a shared emitter then stops only after its last opener), else ``close()``.

    >>> from mlmon.emitters.memory import InMemoryEmitter
    >>> mem = InMemoryEmitter()
    >>> close_emitter(mem, "fraud", None, "web1:7"); mem.closed
    True
    """
    hook = getattr(emitter, "release", None)
    if hook is not None and callable(hook):
        hook(model, version, instance)
        return
    cast(Emitter, emitter).close()
