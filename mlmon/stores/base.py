"""The interface between the monitor and a shared prediction store.

A :class:`PredictionStore` keeps the predictions that wait for a label somewhere that every
process serving the model can reach (see :class:`~mlmon.stores.redis.RedisStore`), so that a
label given to ``log_feedback()`` in any worker or replica joins the prediction made in any
other. The monitor drives it from three places:

- ``record(ids, preds, made_at, segments=None)`` under the monitor's drain lock, possibly on a
  predict thread, and ``submit_labels(ids, labels, received_at)`` on the caller's thread: both
  only buffer (no I/O), bounded in bytes, and count what they drop;
- ``sync(now)`` on the reporter's background thread: writes the buffered predictions, looks the
  buffered labels up, and returns the pairs that joined (:class:`StoreJoined`); it has a total
  deadline and never raises;
- ``samples()`` for the store's own health metrics, ``after_fork()`` in a forked child and
  ``close(timeout)`` at shutdown.

Segments (issue 15). A store that keeps segments takes each prediction's segment code
(:func:`mlmon.segments.segment_code` of its name, 0 for none) in ``record(..., segments=)``,
returns it with the joined label in :attr:`StoreJoined.segments`, and names the codes in
:attr:`StoreJoined.segment_names`. A store may also have ``name_segments(names)`` (code → name,
no I/O), so that a process that never saw a segment can name it
(:meth:`mlmon.stores.redis.RedisStore.name_segments`). Both are optional for other
implementations: the monitor looks ``name_segments`` up with ``getattr`` and reads
``segments``/``segment_names`` with ``getattr`` too (a store written before segments returns
a :class:`StoreJoined` without them, or a tuple whose defaults say "no segment").

>>> j = StoreJoined(np.array([1.0]), np.array([1.0]), np.array([2.5]), {"joined": 1})
>>> j.preds.tolist(), j.delays.tolist(), j.counts["joined"]
([1.0], [2.5], 1)
>>> len(j.segments), dict(j.segment_names)
(0, {})
>>> j = j._replace(segments=np.array([7], np.uint32), segment_names={7: "eu"})
>>> j.segment_names[int(j.segments[0])]
'eu'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["REASONS", "CodeArray", "PredictionStore", "StoreJoined"]

FloatArray: TypeAlias = npt.NDArray[np.float64]
CodeArray: TypeAlias = npt.NDArray[np.uint32]

_NO_SEGMENTS: CodeArray = np.zeros(0, dtype=np.uint32)
_NO_SEGMENTS.flags.writeable = False
_NO_NAMES: Mapping[int, str] = MappingProxyType({})

#: The keys of :attr:`StoreJoined.counts`, in a stable order.
REASONS = ("joined", "unmatched", "expired", "duplicate", "invalid", "dropped")


class StoreJoined(NamedTuple):
    """What one :meth:`PredictionStore.sync` joined, aligned row by row.

    Attributes:
        preds: float64, the recorded prediction (class index, or regression value).
        labels: float64, the label codes as given.
        delays: float64 seconds from the prediction's ``made_at`` (wall clock) to the label's
            ``received_at``.
        counts: labels (and, for ``"dropped"``, buffered items of either kind) newly counted
            since the last sync, by reason: ``"joined"``, ``"unmatched"``, ``"expired"``,
            ``"duplicate"``, ``"invalid"``, ``"dropped"`` (buffer overflow).
        segments: uint32, the segment code recorded with each joined prediction, aligned with
            ``preds`` (0: the prediction had none). The default, an empty array, means that the
            store keeps no segments: every row has none.
        segment_names: code → segment name for every non-zero code in ``segments`` that the
            store could name (a code missing here has no known name, e.g. its names expired).
    """

    preds: FloatArray
    labels: FloatArray
    delays: FloatArray
    counts: dict[str, int]
    segments: CodeArray = _NO_SEGMENTS
    segment_names: Mapping[int, str] = _NO_NAMES


@runtime_checkable
class PredictionStore(Protocol):
    """A prediction store shared by processes; see the module docstring for who calls what."""

    def bind(self, model: str, version: str | None) -> None:
        """Namespace every key by ``model`` and ``version``; called once by the monitor."""

    def record(
        self,
        ids: object,
        preds: FloatArray,
        made_at: FloatArray,
        segments: CodeArray | None = None,
    ) -> None:
        """Buffer predictions (no I/O): ``ids`` as the user gave them (a list, range, numpy
        array or a single object), ``preds`` float64, ``made_at`` wall-clock Unix seconds per row,
        ``segments`` None or one uint32 segment code per row (0: no segment), returned with the
        row's label in :attr:`StoreJoined.segments`.
        Bounded in bytes; what does not fit is counted as dropped."""

    def submit_labels(self, ids: object, labels: FloatArray, received_at: float) -> None:
        """Buffer labels (no I/O, bounded). Raises only ValueError when ``len(ids)`` differs
        from ``len(labels)``."""

    def sync(self, now: float) -> StoreJoined:
        """Write buffered predictions, look buffered labels up, return the new joins.

        ``now`` is wall-clock Unix seconds, the clock of ``made_at`` and ``received_at``.

        Runs on a background thread, within a total deadline; never raises. Labels whose
        prediction is not found yet are retried on later syncs for a while, then counted
        ``"unmatched"``.
        """
        ...

    def samples(self) -> Iterable[tuple[str, float, Mapping[str, str]]]:
        """Cumulative health metrics of the store: ``(name, value, labels)``."""
        ...

    def after_fork(self) -> None:
        """In a forked child: drop the parent's buffers and connections."""

    def close(self, timeout: float = 5.0) -> None:
        """One last sync within ``timeout`` seconds, then release the connections."""
