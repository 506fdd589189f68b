"""Segment names in Redis: the code → name mapping every process of a model can read.

A prediction carries its segment as a 32-bit code (:func:`mlmon.segments.segment_code`); a
label may join it in a process that never saw that segment, so the names live in Redis too:

- ``<prefix>:{<model>|<version>|segments}`` — one hash, field = the code in decimal, value =
  the name's UTF-8 bytes (``surrogatepass``: every ``str`` round-trips exactly). Its TTL is
  ``ttl + 2 × generation`` from the last write or refresh, longer than any prediction that
  carries one of its codes can live;
- :meth:`_Names.name_segments` only buffers (no I/O); the next sync writes the names this
  process has not written yet (``HSET``), before its predictions. A process writes each name
  once; at most every ``min(ttl / 4, 60 s)`` it refreshes the hash's TTL (``PEXPIRE``), and
  when Redis says the hash is gone (expired, evicted, flushed) it writes its names again;
- after a join, codes this process cannot name are looked up (``HMGET``, at most
  :data:`MAX_LOOKUP` a sync) and cached. The cache holds names this process named or looked up,
  least recently used first out, bounded in bytes.

:class:`_Names` is a base of :class:`~mlmon.stores.redis.RedisStore`, which sets the attributes
declared here.

>>> cache = _NameCache(4096)
>>> cache.put(7, "eu", written=True)
>>> cache.get(7), cache.written(7), cache.get(8)
('eu', True, None)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from mlmon.stores._redis_cluster import _Connections

__all__ = ["MAX_LOOKUP", "MAX_NAME_BYTES", "_NameCache", "_Names"]

MAX_NAME_BYTES = 4096
"""Longest segment name the store keeps, in UTF-8 bytes (``segment_name`` gives at most 64
characters); a longer one is counted in ``mlmon_dropped_total{buffer="store_segment_names"}``."""
MAX_LOOKUP = 1024
"""Codes looked up in Redis per sync, at most (the rest wait for the next sync)."""
_ENTRY_BYTES = 120  # per name beyond its text: dict slot, int and str objects
_MAX_CODE = (1 << 32) - 1


def _size(name: str) -> int:
    return len(name.encode("utf-8", "surrogatepass")) + _ENTRY_BYTES


class _NameCache:
    """code → name, least recently used first out, bounded in bytes (callers hold a lock)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.evicted = 0
        self._map: OrderedDict[int, tuple[str, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._map)

    def get(self, code: int) -> str | None:
        hit = self._map.get(code)
        if hit is None:
            return None
        self._map.move_to_end(code)
        return hit[0]

    def written(self, code: int) -> bool:
        """True when this process wrote ``code``'s current name to Redis."""
        hit = self._map.get(code)
        return hit is not None and hit[1]

    def put(self, code: int, name: str, *, written: bool) -> None:
        old = self._map.pop(code, None)
        if old is not None:
            self.nbytes -= _size(old[0])
        size = _size(name)
        if size > self.max_bytes:
            return
        self._map[code] = (name, written)
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, (gone, _) = self._map.popitem(last=False)
            self.nbytes -= _size(gone)
            self.evicted += 1

    def unwrite_all(self) -> dict[int, str]:
        """Mark every name this process wrote as not written; returns them (to write again)."""
        out = {c: n for c, (n, w) in self._map.items() if w}
        for c, n in out.items():
            self._map[c] = (n, False)
        return out


def _valid(code: object, name: object) -> tuple[int, str] | None:
    if isinstance(code, bool) or not isinstance(code, (int, np.integer)):
        return None
    c = int(code)
    if not 0 < c <= _MAX_CODE or not isinstance(name, str):
        return None
    try:
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            return None
    except UnicodeError:  # pragma: no cover - surrogatepass encodes every str
        return None
    return c, name


class _Names(_Connections):
    """Segment names of a :class:`~mlmon.stores.redis.RedisStore` (see the module docstring)."""

    ttl: float
    generation: float
    key_prefix: str
    _ns: str
    _dropped: dict[str, int]
    _names: _NameCache
    _names_pending: dict[int, str]
    _names_pending_bytes: int
    _names_check_at: float

    def _init_names(self, max_bytes: int) -> None:
        self._names = _NameCache(max_bytes)
        self._names_pending = {}
        self._names_pending_bytes = 0
        self._names_check_at = -float("inf")

    def _names_key(self) -> str:
        """The hash of code → name: ``<prefix>:{<model>|<version>|segments}``."""
        return f"{self.key_prefix}:{{{self._ns}|segments}}"

    def name_segments(self, names: Mapping[int, str]) -> None:
        """Make segment names known to every process sharing this store (no I/O; never raises).

        ``names`` maps a segment code (:func:`mlmon.segments.segment_code` of the name) to the
        name. A name this process has written already costs a dictionary look-up; a new one is
        written to Redis at the next :meth:`sync`, before the predictions. Idempotent. A code
        outside ``1..2**32-1``, a name that is not a ``str`` or longer than 4096 UTF-8 bytes, and
        names beyond the buffer's bound are counted in
        ``mlmon_dropped_total{buffer="store_segment_names"}``.

        >>> from mlmon.segments import segment_code
        >>> from mlmon.stores import RedisStore
        >>> store = RedisStore()
        >>> store.name_segments({segment_code("eu"): "eu", 0: "no code"})
        >>> {n: v for n, v, labels in store.samples() if labels.get("buffer") == "store_segment_names"}
        {'mlmon_store_buffered_bytes': 122.0, 'mlmon_store_buffered_items': 1.0, 'mlmon_dropped_total': 1.0}
        """
        try:
            items: Iterable[tuple[Any, Any]] = list(names.items())
        except Exception as exc:
            self._fail("names", exc)
            return
        with self._lock:
            for code, name in items:
                ok = _valid(code, name)
                if ok is None:
                    self._dropped["store_segment_names"] += 1
                    continue
                c, n = ok
                cache = self._names
                if cache.written(c) and cache.get(c) == n:
                    continue
                if self._names_pending.get(c) == n:
                    continue
                size = _size(n)
                old = self._names_pending.get(c)
                if old is None and self._names_pending_bytes + size > self._names.max_bytes:
                    self._dropped["store_segment_names"] += 1
                    continue
                if old is not None:
                    self._names_pending_bytes -= _size(old)
                self._names_pending[c] = n
                self._names_pending_bytes += size
                cache.put(c, n, written=False)

    def _names_ttl_ms(self) -> int:
        return int(np.ceil((self.ttl + 2 * self.generation) * 1000.0))

    def _sync_names(self, now: float) -> bool:
        """Write pending names, or refresh the hash's TTL when due; True unless it failed.

        Runs in a sync, connected, under the sync's watchdog."""
        with self._lock:
            pending, self._names_pending = self._names_pending, {}
            self._names_pending_bytes = 0
            has_own = self._names_check_at > -float("inf")  # this process wrote names
        key = self._names_key()
        ttl_ms = self._names_ttl_ms()
        try:
            if pending:
                args: list[Any] = []
                for c, n in pending.items():
                    args += [str(c), n.encode("utf-8", "surrogatepass")]
                res = self._run([(key, ["HSET", key, *args]), (key, ["PEXPIRE", key, ttl_ms])])
                for r in res:
                    if isinstance(r, Exception):
                        raise r
                with self._lock:
                    for c, n in pending.items():
                        if self._names.get(c) in (None, n):
                            self._names.put(c, n, written=True)
                    self._names_check_at = now + min(self.ttl / 4, 60.0)
                return True
            if not has_own or now < self._names_check_at:
                return True
            (alive,) = self._run([(key, ["PEXPIRE", key, ttl_ms])])
            if isinstance(alive, Exception):
                raise alive
            with self._lock:
                self._names_check_at = now + min(self.ttl / 4, 60.0)
                if not alive:  # expired, evicted or flushed: write this process's names again
                    for c, n in self._names.unwrite_all().items():
                        if c not in self._names_pending:
                            self._names_pending[c] = n
                            self._names_pending_bytes += _size(n)
            return True
        except Exception as exc:
            self._fail("names", exc)
            with self._lock:  # written at the next sync (bounded: the pending bound)
                for c, n in pending.items():
                    if c in self._names_pending:
                        continue
                    size = _size(n)
                    if self._names_pending_bytes + size > self._names.max_bytes:
                        self._dropped["store_segment_names"] += 1
                        continue
                    self._names_pending[c] = n
                    self._names_pending_bytes += size
            return False

    def _resolve(self, codes: npt.NDArray[np.uint32], end: float, fired: threading.Event) -> dict[int, str]:
        """Names of the non-zero ``codes``: from the cache, then (within the deadline) Redis."""
        uniq = [int(c) for c in np.unique(codes).tolist() if c]
        out: dict[int, str] = {}
        missing: list[int] = []
        with self._lock:
            for c in uniq:
                n = self._names.get(c)
                if n is None:
                    missing.append(c)
                else:
                    out[c] = n
        missing = missing[:MAX_LOOKUP]
        if not missing or fired.is_set() or time.monotonic() >= end:
            return out
        key = self._names_key()
        try:
            (got,) = self._run([(key, ["HMGET", key, *[str(c) for c in missing]])])
            if isinstance(got, Exception):
                raise got
        except Exception as exc:
            self._fail("names", exc)
            return out
        with self._lock:
            for c, raw in zip(missing, got, strict=False):
                if not isinstance(raw, bytes):
                    continue
                try:
                    name = raw.decode("utf-8", "surrogatepass")
                except UnicodeDecodeError:  # not written by mlmon
                    continue
                out[c] = name
                self._names.put(c, name, written=False)
        return out
