"""A prediction store shared through Redis (a single node or a Redis Cluster).

Why: with several worker processes (gunicorn/uvicorn) or replicas, a label POSTed to
``/feedback`` lands in whichever worker accepted the request. An in-process id → prediction
join then finds only the predictions that worker made. :class:`RedisStore` keeps pending
predictions in Redis, so ``log_feedback()`` in any process joins predictions made in any process.

Interface (:class:`~mlmon.stores.base.PredictionStore`): the monitor calls ``bind(model,
version)`` once; ``record(ids, preds, made_at)`` and ``submit_labels(ids, labels, received_at)``
only buffer (no I/O, bounded in bytes, overflow counted ``"dropped"``); ``sync(now)`` runs on the
reporter's background thread, writes the buffered predictions, looks the buffered labels up and
returns the new joins as :class:`~mlmon.stores.base.StoreJoined`; ``samples()``,
``after_fork()`` and ``close(timeout)`` complete it.

Layout in Redis. One key per prediction with a TTL would cost about 100 bytes of key overhead
each, so predictions are grouped into small hashes that Redis stores in its compact listpack
encoding (about 20-30 bytes an entry):

- every id becomes a stable field and bucket (:mod:`mlmon.stores._ids`; never Python's
  randomised ``hash()``), every prediction a *generation* ``floor(made_at / generation)``;
- the hash ``<prefix>:{<model>|<version>|<shard>}:<bucket>:<generation>`` holds field →
  16 bytes (prediction and ``made_at`` as two little-endian float64); ``shard`` is
  ``bucket % 256``, the hash tag that keeps the generations and buckets of a shard in one
  Redis Cluster slot, so one Lua call per shard writes or joins a whole batch (a write declares
  the hashes it writes, so that a slot being migrated routes it right; a join only reads and
  claims hashes that exist where it runs, and declares the shard's prefix);
- every hash key expires (``PEXPIREAT``) one ``ttl`` after its generation ends: Redis does the
  expiry, nothing in Python scans;
- a label probes its bucket in the generations that can still hold a prediction (newest first)
  in one atomic script, which replaces the first match by the one-byte tombstone ``D``. The first
  label wins across all processes; a later one finds the tombstone and counts ``"duplicate"``.
  A match older than ``ttl`` when its label arrived counts ``"expired"``.
- a label whose prediction is not found is retried on later syncs for ``retry_for`` seconds
  (the prediction may still sit in another process's buffer), then counted ``"unmatched"``.
  A key that Redis evicted (``maxmemory``) or that expired is simply not found: the label ends
  as ``"unmatched"``, never as a wrong join, because a field is the exact id.

Failures: ``sync`` has a total deadline (``deadline`` seconds, enforced by a watchdog that shuts
the store's sockets when it passes); a failed or timed-out connect, write or read is counted in
``mlmon_store_errors_total{operation}`` and its items stay buffered (bounded) for the next sync.
``mlmon_store_up`` is 0 after a failed sync, 1 after a good one. On a Redis Cluster the store
sends one pipeline per primary itself and follows ``MOVED``/``ASK`` redirections once.

Requires Redis 7.0 or newer (scripts use shebang flags). Every process that shares a model must
use the same ``ttl``, ``buckets``, ``generation`` and ``key_prefix``.

>>> store = RedisStore("redis://:s3cret@127.0.0.1:6379/0", ttl=3600.0)
>>> "s3cret" in repr(store), store.generation
(False, 450.0)
>>> store.record([1, 2], np.array([1.0, 0.0]), np.array([10.0, 10.0]))
>>> store.submit_labels(["a"], np.array([1.0]), received_at=11.0)
>>> [v for n, v, labels in store.samples() if n == "mlmon_store_buffered_items"]
[2.0, 1.0]
"""

from __future__ import annotations

import logging
import math
import os
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from mlmon.feedback import as_batch
from mlmon.stores._ids import encode_ids
from mlmon.stores.base import REASONS, StoreJoined

__all__ = ["RedisStore"]

log = logging.getLogger("mlmon.stores.redis")

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
Triple = tuple[str, float, Mapping[str, str]]

MIB = 1 << 20
SHARDS = 256
_TOMB = b"D"
_ROW_BYTES = 32  # int field, bucket, value, time
_OBJ_BYTES = 56  # a bytes field object beyond its length, and its list slot
_CHUNK_ROWS = 20_000  # rows per pipeline round trip
_MAX_SCRIPT_KEYS = 4096
_LOG_EVERY = 60.0
_VALUE = struct.Struct("<dd")

# Wire format of a row: one byte L, the L bytes of the field (an int id is b"\x00" + its int64
# little-endian), then (writes only) the 16-byte value. KEYS[1] is the shard's key prefix
# "<prefix>:{<ns>|<shard>}" (never created itself; every key the scripts touch shares its hash
# tag, so its Redis Cluster slot).

# KEYS: the hashes written (declared, so that Redis Cluster routes a call whose slot is being
# migrated correctly); ARGV: one string per key: "<PEXPIREAT ms> " then its rows.
_WRITE = """#!lua
local args = {}
for a = 1, #KEYS do
  local key = KEYS[a]
  local blob = ARGV[a]
  local s1 = string.find(blob, ' ', 1, true)
  local at = string.sub(blob, 1, s1 - 1)
  local pos, len, n = s1 + 1, #blob, 0
  while pos <= len do
    local l = string.byte(blob, pos)
    args[n + 1] = string.sub(blob, pos + 1, pos + l)
    args[n + 2] = string.sub(blob, pos + l + 1, pos + l + 16)
    n = n + 2
    pos = pos + l + 17
    if n >= 2000 then
      redis.call('HSET', key, unpack(args, 1, n))
      n = 0
    end
  end
  if n > 0 then
    redis.call('HSET', key, unpack(args, 1, n))
  end
  redis.call('PEXPIREAT', key, at)
end
return 1
"""

# A join only reads and claims fields of hashes that exist on the node that runs it, so it
# declares one key per shard (the shard prefix, never created); it builds the hash names.
# ARGV[1]: the generations to probe, newest first, comma-separated; then one string per bucket:
# "<bucket>:" then its rows (no values). Returns 17 bytes per row, in order: "J" + the stored
# value (claimed now: replaced by the tombstone "D"), "D" + 16 zero bytes (claimed before, also
# by an earlier row of this call), or 17 zero bytes (not found).
_JOIN = """#!lua flags=allow-oom
local base = KEYS[1]
local gens = {}
for g in string.gmatch(ARGV[1], '[^,]+') do
  gens[#gens + 1] = g
end
local none = string.rep('\\0', 17)
local dup = 'D' .. string.rep('\\0', 16)
local out = {}
local fields = {}
for a = 2, #ARGV do
  local blob = ARGV[a]
  local c = string.find(blob, ':', 1, true)
  local prefix = base .. ':' .. string.sub(blob, 1, c) -- "<base>:<bucket>:"
  local pos, len, n = c + 1, #blob, 0
  while pos <= len do
    local l = string.byte(blob, pos)
    n = n + 1
    fields[n] = string.sub(blob, pos + 1, pos + l)
    pos = pos + l + 1
  end
  local first = #out
  local res = {}
  local left = {}
  for j = 1, n do
    left[j] = j
  end
  local seen = {}
  for g = 1, #gens do
    if #left == 0 then
      break
    end
    local key = prefix .. gens[g]
    if redis.call('EXISTS', key) == 1 then
      local still = {}
      local lo = 1
      while lo <= #left do
        local hi = math.min(#left, lo + 999)
        local ask = {}
        for k = lo, hi do
          ask[k - lo + 1] = fields[left[k]]
        end
        local vals = redis.call('HMGET', key, unpack(ask))
        local claims = {}
        for k = lo, hi do
          local j = left[k]
          local v = vals[k - lo + 1]
          local f = fields[j]
          if v and (v == 'D' or seen[f]) then
            res[j] = dup
          elseif v and #v == 16 then
            res[j] = 'J' .. v
            seen[f] = true
            claims[#claims + 1] = f
            claims[#claims + 1] = 'D'
          else
            still[#still + 1] = j
          end
        end
        if #claims > 0 then
          redis.call('HSET', key, unpack(claims))
        end
        lo = hi + 1
      end
      left = still
    end
  end
  for j = 1, n do
    out[first + j] = res[j] or none
  end
end
return table.concat(out)
"""


class _Chunk:
    """Buffered rows: fields (int64 array or list), buckets, values and times."""

    __slots__ = ("buckets", "fields", "nbytes", "times", "values")

    def __init__(
        self,
        fields: IntArray | list[Any],
        buckets: IntArray,
        values: FloatArray,
        times: FloatArray,
        nbytes: int | None = None,
    ) -> None:
        self.fields = fields
        self.buckets = buckets
        self.values = values
        self.times = times
        if nbytes is None:
            nbytes = len(buckets) * _ROW_BYTES
            if isinstance(fields, list):
                nbytes += sum(len(f) + _OBJ_BYTES for f in fields if type(f) is bytes)
        self.nbytes = nbytes

    def __len__(self) -> int:
        return len(self.buckets)

    def take(self, idx: IntArray) -> _Chunk:
        """The rows ``idx``; their size in bytes is estimated pro rata."""
        n = len(self.buckets)
        if isinstance(self.fields, np.ndarray):
            fields: IntArray | list[Any] = self.fields[idx]
            nbytes = len(idx) * _ROW_BYTES
        else:
            fields = [self.fields[i] for i in idx.tolist()]
            nbytes = -(-self.nbytes * len(idx) // n) if n else 0
        return _Chunk(fields, self.buckets[idx], self.values[idx], self.times[idx], nbytes)

    def field_list(self) -> list[Any]:
        f = self.fields
        return f.tolist() if isinstance(f, np.ndarray) else f


def _concat(chunks: Sequence[_Chunk]) -> _Chunk:
    if len(chunks) == 1:
        return chunks[0]
    if all(isinstance(c.fields, np.ndarray) for c in chunks):
        fields: IntArray | list[Any] = np.concatenate([c.fields for c in chunks])
    else:
        fields = []
        for c in chunks:
            fields.extend(c.field_list())
    return _Chunk(
        fields,
        np.concatenate([c.buckets for c in chunks]),
        np.concatenate([c.values for c in chunks]),
        np.concatenate([c.times for c in chunks]),
        sum(c.nbytes for c in chunks),
    )


class _Buffer:
    """A byte-bounded queue of chunks (callers hold the store's lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[_Chunk] = []
        self.nbytes = 0
        self.items = 0

    def add(self, chunk: _Chunk) -> int:
        """Append what fits (a prefix of ``chunk``); returns how many rows were dropped."""
        n = len(chunk)
        if n == 0:
            return 0
        room = self.limit - self.nbytes
        if chunk.nbytes > room:
            per = chunk.nbytes / n
            keep = max(0, min(n, int(room // per)))
            if keep == 0:
                return n
            chunk = chunk.take(np.arange(keep, dtype=np.int64))
        self.chunks.append(chunk)
        self.nbytes += chunk.nbytes
        self.items += len(chunk)
        return n - len(chunk)

    def requeue(self, chunk: _Chunk) -> int:
        """Put ``chunk`` back in front; drops its oldest rows when over the limit."""
        n = len(chunk)
        if n == 0:
            return 0
        room = self.limit - self.nbytes
        dropped = 0
        if chunk.nbytes > room:
            per = chunk.nbytes / n
            keep = max(0, min(n, int(room // per)))
            dropped = n - keep
            if keep == 0:
                return n
            chunk = chunk.take(np.arange(n - keep, n, dtype=np.int64))
        self.chunks.insert(0, chunk)
        self.nbytes += chunk.nbytes
        self.items += len(chunk)
        return dropped

    def take_all(self) -> list[_Chunk]:
        chunks, self.chunks = self.chunks, []
        self.nbytes = self.items = 0
        return chunks


def _wire(
    part: _Chunk, order: IntArray, values: npt.NDArray[np.uint8] | None
) -> tuple[bytes, IntArray]:
    """The rows of ``part`` in ``order`` in the scripts' wire format, and row offsets (n + 1)."""
    n = len(order)
    extra = 0 if values is None else 16
    if isinstance(part.fields, np.ndarray):
        size = 10 + extra
        rec = np.empty((n, size), dtype=np.uint8)
        rec[:, 0] = 9
        rec[:, 1] = 0
        rec[:, 2:10] = part.fields[order].astype("<i8").view(np.uint8).reshape(n, 8)
        if values is not None:
            rec[:, 10:26] = values[order]
        offsets: IntArray = np.arange(n + 1, dtype=np.int64) * size
        return rec.tobytes(), offsets
    rows: list[bytes] = []
    vb = None if values is None else values.tobytes()
    fields = part.fields
    for i in order.tolist():
        f = fields[i]
        fb = b"\x00" + f.to_bytes(8, "little", signed=True) if type(f) is int else f
        row = bytes((len(fb),)) + fb
        if vb is not None:
            row += vb[16 * i : 16 * i + 16]
        rows.append(row)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    return b"".join(rows), offsets


def _redact(url: str) -> str:
    """``url`` with its password (and any query password) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        q = "&".join(
            f"{k}={'***' if k.lower() == 'password' else v}" for k, v in query
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, q, parts.fragment))
    except ValueError:
        return "<unparseable url>"


def _secrets(url: str) -> list[str]:
    out: list[str] = []
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            out += [parts.password, urllib.parse.unquote(parts.password)]
        for k, v in urllib.parse.parse_qsl(parts.query):
            if k.lower() == "password" and v:
                out.append(v)
    except ValueError:
        pass
    return [s for s in out if s]


def _as_float(x: object) -> float:
    """``x`` as a float, NaN (invalid) when it is not a number."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _escape(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _pos_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


class RedisStore:
    """Pending predictions in Redis, shared by every process that serves the model.

    Args:
        url: ``redis://[user:password@]host:port/db``; ``rediss://`` for TLS; passed to
            redis-py. The password never appears in ``repr()``, logs, metrics or errors.
        ttl: seconds a prediction stays joinable (default 7 days); Redis expires it.
        cluster: True for Redis Cluster, False for a single node, None (default) to ask the
            server (``INFO cluster``) on first connect.
        retry_for: seconds a label whose prediction is not in Redis yet is retried before it
            counts ``"unmatched"`` (default 30).
        deadline: total seconds one ``sync`` may spend on the network (default 2).
        max_buffer_bytes: memory for buffered predictions and labels together (default 16 MiB,
            half each); what does not fit is counted in ``mlmon_dropped_total``.
        key_prefix: first part of every Redis key (default ``"mlmon"``; no ``{``, ``}``).
        buckets: hashes per generation (default 4096). Size it so that one generation's
            predictions spread at most about 100 per hash (see docs/stores.md).
        generation: seconds per generation (default ``ttl / 8``, at least ``ttl / 64``: a label
            probes every generation within ``ttl``).

    Raises:
        ValueError: naming the argument and value when one is out of range.

    >>> store = RedisStore(ttl=60.0, deadline=0.5)
    >>> store.bind("churn", "v3")
    >>> store
    RedisStore(url='redis://127.0.0.1:6379/0', model='churn', version='v3', ttl=60.0)
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        ttl: float = 7 * 86400.0,
        cluster: bool | None = None,
        retry_for: float = 30.0,
        deadline: float = 2.0,
        max_buffer_bytes: int = 16 * MIB,
        key_prefix: str = "mlmon",
        buckets: int = 4096,
        generation: float | None = None,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            shown = "a string with credentials" if "@" in str(url) else repr(str(url))
            raise ValueError(f"url must be a redis:// or rediss:// URL, got {shown}")
        self.ttl = _pos_number("ttl", ttl)
        self.retry_for = _pos_number("retry_for", retry_for, allow_zero=True)
        self.deadline = _pos_number("deadline", deadline)
        if cluster is not None and not isinstance(cluster, bool):
            raise ValueError(f"cluster must be True, False or None, got {cluster!r}")
        if (
            isinstance(max_buffer_bytes, bool)
            or not isinstance(max_buffer_bytes, int)
            or max_buffer_bytes < 4096
        ):
            raise ValueError(f"max_buffer_bytes must be an int >= 4096, got {max_buffer_bytes!r}")
        if not isinstance(key_prefix, str) or not key_prefix or set(key_prefix) & set("{}"):
            raise ValueError(f"key_prefix must be a non-empty string without braces, got {key_prefix!r}")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 1 << 24:
            raise ValueError(f"buckets must be an int in [1, 16777216], got {buckets!r}")
        self.generation = (
            self.ttl / 8 if generation is None else _pos_number("generation", generation)
        )
        if self.ttl / self.generation > 64:  # a label probes every generation within ttl
            raise ValueError(
                f"generation must be at least ttl / 64 = {self.ttl / 64!r} s, got {generation!r}"
            )
        self._url = url
        self._secrets = _secrets(url)
        self._cluster_opt = cluster
        self.max_buffer_bytes = max_buffer_bytes
        self.key_prefix = key_prefix
        self.buckets = buckets
        self.model = "default"
        self.version: str | None = None
        self._ns = ""
        self.bind("default", None)
        self._init_state()

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        half = self.max_buffer_bytes // 2
        self._preds = _Buffer(half)
        self._labels = _Buffer(half)
        self._counts = dict.fromkeys(REASONS, 0)
        self._dropped = {"store_predictions": 0, "store_labels": 0}
        self._invalid_preds = 0
        self._errors: dict[str, int] = {"connect": 0, "write": 0, "read": 0}
        self._up = 0.0
        self._sync_seconds = 0.0
        self._syncs = 0
        self._client: Any = None
        self._is_cluster = False
        self._reload_slots = False
        self._fired = threading.Event()
        self._last_log: dict[str, float] = {}
        self._closed = False

    # -- configuration ---------------------------------------------------------------------
    def bind(self, model: str, version: str | None) -> None:
        """Namespace every key by ``model`` and ``version`` (called once, before any record)."""
        self.model = str(model)
        self.version = None if version is None else str(version)
        ns = f"{_escape(self.model)}|{_escape(self.version or '')}"
        if len(ns) > 200:  # keep keys short: a long name is replaced by a stable digest
            import hashlib

            ns = hashlib.blake2b(ns.encode(), digest_size=12).hexdigest()
        self._ns = ns

    def __repr__(self) -> str:
        return (
            f"RedisStore(url={_redact(self._url)!r}, model={self.model!r}, "
            f"version={self.version!r}, ttl={self.ttl!r})"
        )

    def _shard_key(self, shard: int) -> str:
        """The key prefix of a shard: ``<prefix>:{<model>|<version>|<shard>}``."""
        return f"{self.key_prefix}:{{{self._ns}|{shard}}}"

    def key(self, id_: object, made_at: float) -> str | None:
        """The Redis hash that holds the prediction of ``id_`` made at ``made_at`` (or None
        for an unusable id): for inspection and tests.

        >>> RedisStore(ttl=86400.0, buckets=64, generation=3600.0).key(7, 7300.0)
        'mlmon:{default||20}:20:2'
        """
        _, buckets = encode_ids([id_], self.buckets)
        b = int(buckets[0])
        if b < 0:
            return None
        return f"{self._shard_key(b % SHARDS)}:{b}:{math.floor(made_at / self.generation)}"

    # -- the hot paths: buffer only ---------------------------------------------------------
    def record(self, ids: object, preds: FloatArray, made_at: FloatArray) -> None:
        """Buffer predictions for the next :meth:`sync` (no I/O; never raises).

        Rows with an unusable id are counted in ``mlmon_store_invalid_ids_total``; rows that do
        not fit in the buffer in ``mlmon_dropped_total{buffer="store_predictions"}``.
        """
        if os.getpid() != self._pid:
            self.after_fork()
        try:
            fields, buckets = encode_ids(ids, self.buckets)
            p = np.asarray(preds, dtype=np.float64).reshape(-1)
            t = np.broadcast_to(np.asarray(made_at, dtype=np.float64), p.shape).reshape(-1)
            n = min(len(buckets), len(p))
            ok = buckets[:n] >= 0
            ok &= np.isfinite(t[:n])
            bad = int(n - ok.sum()) + abs(len(buckets) - len(p))
            idx = np.flatnonzero(ok)
            chunk = _Chunk(fields, buckets, p[:n], t[:n].copy())
            if len(idx) < len(buckets):
                chunk = chunk.take(idx)
            elif isinstance(chunk.fields, list):
                chunk.fields = list(chunk.fields)
            with self._lock:
                self._invalid_preds += bad
                dropped = self._preds.add(chunk)
                if dropped:
                    self._dropped["store_predictions"] += dropped
                    self._counts["dropped"] += dropped
        except Exception as exc:  # never into the predict path
            with self._lock:
                self._errors["record"] = self._errors.get("record", 0) + 1
            self._log("record", exc)

    def submit_labels(self, ids: object, labels: FloatArray, received_at: float) -> None:
        """Buffer labels for the next :meth:`sync` (no I/O).

        Raises:
            ValueError: when ``len(ids) != len(labels)``; nothing else.
        """
        if os.getpid() != self._pid:
            self.after_fork()
        try:
            batch, raw = as_batch(ids), as_batch(labels)
        except Exception as exc:  # an object that fails to iterate: counted, not raised
            self._fail("submit", exc)
            return
        if len(batch) != len(raw):
            raise ValueError(
                f"ids and labels must have the same length, got {len(batch)} and {len(raw)}"
            )
        try:
            lab = np.asarray(raw, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):  # not numbers: each label converted on its own
            lab = np.array([_as_float(x) for x in raw], dtype=np.float64)
        try:
            fields, buckets = encode_ids(batch, self.buckets)
            ok = (buckets >= 0) & np.isfinite(lab)
            t = np.full(len(lab), float(received_at), dtype=np.float64)
            chunk = _Chunk(fields, buckets, lab.copy(), t)
            idx = np.flatnonzero(ok)
            if len(idx) < len(lab):
                chunk = chunk.take(idx)
            elif isinstance(chunk.fields, list):
                chunk.fields = list(chunk.fields)
            with self._lock:
                self._counts["invalid"] += len(lab) - len(idx)
                dropped = self._labels.add(chunk)
                if dropped:
                    self._dropped["store_labels"] += dropped
                    self._counts["dropped"] += dropped
        except Exception as exc:
            with self._lock:
                self._errors["submit"] = self._errors.get("submit", 0) + 1
            self._log("submit", exc)

    # -- logging and errors ------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _log(self, operation: str, exc: BaseException) -> None:
        now = time.monotonic()
        last = self._last_log.get(operation)
        if last is not None and now - last < _LOG_EVERY:
            return
        self._last_log[operation] = now
        log.warning(
            "mlmon redis store: %s failed (%s: %s); items stay buffered, retried next sync",
            operation,
            type(exc).__name__,
            self._clean(str(exc))[:200],
        )

    def _fail(self, operation: str, exc: BaseException) -> None:
        with self._lock:
            self._errors[operation] = self._errors.get(operation, 0) + 1
        self._log(operation, exc)

    # -- connections ---------------------------------------------------------------------------
    def _client_kwargs(self, timeout: float) -> dict[str, Any]:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }

    def _connect(self, timeout: float) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        kwargs = self._client_kwargs(timeout)
        cluster = self._cluster_opt
        if cluster is None:
            probe = redis.Redis.from_url(self._url, **kwargs)
            self._client = probe  # so that the watchdog can abort it
            try:
                info = probe.info("cluster")
                cluster = bool(int(info.get("cluster_enabled", 0)))
            finally:
                if cluster:
                    probe.close()
        if cluster:
            # one retry, so that a MOVED reply (a slot migrated) is followed at once
            kwargs["retry"] = Retry(NoBackoff(), 1)
            client: Any = RedisCluster.from_url(self._url, **kwargs)
        elif self._client is not None:
            client = self._client
        else:
            client = redis.Redis.from_url(self._url, **kwargs)
        self._is_cluster = bool(cluster)
        return client

    def _connections(self) -> list[Any]:
        client = self._client
        if client is None:
            return []
        pools: list[Any] = []
        if hasattr(client, "get_nodes"):
            for node in client.get_nodes():
                rc = getattr(node, "redis_connection", None)
                if rc is not None:
                    pools.append(rc.connection_pool)
        else:
            pools.append(client.connection_pool)
        conns: list[Any] = []
        for pool in pools:
            conns += list(getattr(pool, "_available_connections", []))
            conns += list(getattr(pool, "_in_use_connections", []))
        return conns

    def _abort(self) -> None:
        """Watchdog: shut every socket of this store so that blocked reads return now."""
        for conn in self._connections():
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    # -- sync ----------------------------------------------------------------------------------
    def sync(self, now: float) -> StoreJoined:
        """Write buffered predictions and join buffered labels; see the module docstring.

        Args:
            now: wall-clock Unix seconds (``time.time()``), the clock of ``made_at`` and
                ``received_at``: it picks the generations to probe, ends the retries of labels
                (``retry_for``) and drops predictions older than ``ttl`` before writing.

        Returns within about ``deadline`` seconds (plus the time to hand the results back);
        never raises.
        """
        if os.getpid() != self._pid:
            self.after_fork()
        with self._sync_lock:
            return self._sync(float(now), self.deadline)

    def _sync(self, now: float, budget: float) -> StoreJoined:
        start = time.monotonic()
        end = start + budget
        with self._lock:
            pred_chunks = self._preds.take_all()
            label_chunks = self._labels.take_all()
        preds = _concat(pred_chunks) if pred_chunks else None
        labels = _concat(label_chunks) if label_chunks else None
        out_p: list[FloatArray] = []
        out_l: list[FloatArray] = []
        out_d: list[FloatArray] = []
        counts = dict.fromkeys(REASONS, 0)
        fired = threading.Event()

        def abort() -> None:
            fired.set()
            self._abort()

        self._fired = fired
        timer = threading.Timer(budget, abort)
        timer.daemon = True
        timer.start()
        ok = True
        try:
            if self._client is None:
                try:
                    # socket timeouts of a whole deadline: the watchdog bounds the total
                    self._client = self._connect(self.deadline)
                except Exception as exc:
                    self._fail("connect", exc)
                    self._drop_client()
                    ok = False
            if ok and self._reload_slots:
                self._reload_slots = False
                cluster_client: Any = self._client
                try:  # a MOVED reply last time: the slot map changed
                    cluster_client.nodes_manager.initialize()
                except Exception as exc:
                    self._fail("connect", exc)
                    ok = False
            if ok and preds is None and labels is None:
                client: Any = self._client
                try:  # nothing to do: still tell whether Redis answers (mlmon_store_up)
                    client.ping()
                except Exception as exc:
                    self._fail("connect", exc)
                    ok = False
            connected = ok
            if connected and preds is not None:
                preds, ok = self._write(preds, now, end, fired, counts)
            # A failed write (Redis out of memory, say) does not stop the joins: they may
            # still run, and free memory. A timeout does (the watchdog has fired).
            if connected and labels is not None and not fired.is_set():
                labels, joined_ok = self._join(labels, now, end, fired, counts, out_p, out_l, out_d)
                ok = ok and joined_ok
        except Exception as exc:  # a bug must not take the reporter thread down
            self._fail("sync", exc)
            ok = False
        finally:
            timer.cancel()
        if fired.is_set() or not ok:
            self._drop_client()
        with self._lock:
            if preds is not None and len(preds):
                d = self._preds.requeue(preds)
                self._dropped["store_predictions"] += d
                self._counts["dropped"] += d
            if labels is not None and len(labels):
                d = self._labels.requeue(labels)
                self._dropped["store_labels"] += d
                self._counts["dropped"] += d
            for k, v in self._counts.items():
                counts[k] += v
            self._counts = dict.fromkeys(REASONS, 0)
            self._up = 1.0 if ok and not fired.is_set() else 0.0
            self._sync_seconds = time.monotonic() - start
            self._syncs += 1

        def cat(parts: list[FloatArray]) -> FloatArray:
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)

        return StoreJoined(cat(out_p), cat(out_l), cat(out_d), counts)

    def _gens(self, times: FloatArray) -> IntArray:
        out: IntArray = np.floor(times / self.generation).astype(np.int64)
        return out

    def _write(
        self,
        preds: _Chunk,
        now: float,
        end: float,
        fired: threading.Event,
        counts: dict[str, int],
    ) -> tuple[_Chunk | None, bool]:
        """Write ``preds``; returns (what is left to write, success)."""
        fresh = preds.times >= now - self.ttl
        if not fresh.all():  # older than ttl already: would be expired on arrival
            stale = int((~fresh).sum())
            with self._lock:
                self._dropped["store_predictions"] += stale
            counts["dropped"] += stale
            preds = preds.take(np.flatnonzero(fresh))
        n = len(preds)
        pos = 0
        while pos < n:
            if fired.is_set() or time.monotonic() >= end:
                self._fail("write", TimeoutError(f"sync deadline of {self.deadline} s passed"))
                return preds.take(np.arange(pos, n, dtype=np.int64)), False
            stop = min(n, pos + _CHUNK_ROWS)
            part = preds.take(np.arange(pos, stop, dtype=np.int64))
            try:
                self._write_part(part)
            except Exception as exc:
                self._fail("write", exc)
                return preds.take(np.arange(pos, n, dtype=np.int64)), False
            pos = stop
        return None, True

    def _write_part(self, part: _Chunk) -> None:
        gens = self._gens(part.times)
        buckets = part.buckets
        shards = buckets % SHARDS
        order = np.lexsort((gens, buckets, shards))
        vals = np.empty((len(part), 2), dtype="<f8")
        vals[:, 0] = part.values
        vals[:, 1] = part.times
        blob, offsets = _wire(part, order, vals.view(np.uint8).reshape(-1, 16))
        s_o, b_o, g_o = shards[order], buckets[order], gens[order]
        cut = np.flatnonzero((np.diff(s_o) != 0) | (np.diff(b_o) != 0) | (np.diff(g_o) != 0)) + 1
        starts = np.concatenate(([0], cut)).astype(np.int64)
        stops = np.concatenate((cut, [len(order)])).astype(np.int64)
        expire = np.ceil(((g_o[starts] + 1) * self.generation + self.ttl) * 1000.0).astype(np.int64)
        calls: list[tuple[str, list[Any]]] = []
        keys: list[str] = []
        args: list[bytes] = []
        shard = int(s_o[0]) if len(order) else 0
        off = offsets.tolist()
        for st, sp, b, g, at in zip(
            starts.tolist(), stops.tolist(), b_o[starts].tolist(), g_o[starts].tolist(),
            expire.tolist(), strict=True,
        ):
            sh = b % SHARDS
            if sh != shard or len(keys) >= _MAX_SCRIPT_KEYS:
                if keys:
                    calls.append((keys[0], ["EVAL", _WRITE, len(keys), *keys, *args]))
                shard, keys, args = sh, [], []
            keys.append(f"{self._shard_key(sh)}:{b}:{g}")
            args.append(b"%d " % at + blob[off[st] : off[sp]])
        if keys:
            calls.append((keys[0], ["EVAL", _WRITE, len(keys), *keys, *args]))
        results = self._run(calls)
        for r in results:
            if isinstance(r, Exception):
                raise r

    def _join(
        self,
        labels: _Chunk,
        now: float,
        end: float,
        fired: threading.Event,
        counts: dict[str, int],
        out_p: list[FloatArray],
        out_l: list[FloatArray],
        out_d: list[FloatArray],
    ) -> tuple[_Chunk | None, bool]:
        """Join ``labels``; returns (labels to keep for a later sync, success)."""
        n = len(labels)
        retry: list[IntArray] = []
        pos = 0
        ok = True
        while pos < n:
            if fired.is_set() or time.monotonic() >= end:
                self._fail("read", TimeoutError(f"sync deadline of {self.deadline} s passed"))
                ok = False
                break
            stop = min(n, pos + _CHUNK_ROWS)
            idx = np.arange(pos, stop, dtype=np.int64)
            try:
                found = self._join_part(labels.take(idx), now)
            except Exception as exc:
                self._fail("read", exc)
                ok = False
                break
            values, done = found
            part_l = labels.values[idx]
            part_t = labels.times[idx]
            hit = np.flatnonzero(done == 1)
            if len(hit):
                rec = np.ascontiguousarray(values[hit]).view("<f8").reshape(-1, 2)
                p, made = rec[:, 0], rec[:, 1]
                delay = part_t[hit] - made
                fresh = delay <= self.ttl
                counts["expired"] += int((~fresh).sum())
                counts["joined"] += int(fresh.sum())
                out_p.append(p[fresh].astype(np.float64))
                out_l.append(part_l[hit][fresh])
                out_d.append(np.maximum(delay[fresh], 0.0))
            counts["duplicate"] += int((done == 2).sum())
            failed = np.flatnonzero(done < 0)
            if len(failed):
                ok = False
                retry.append(idx[failed])
            missing = np.flatnonzero(done == 0)
            if len(missing):
                young = now - part_t[missing] < self.retry_for
                counts["unmatched"] += int((~young).sum())
                retry.append(idx[missing[young]])
            pos = stop
        if pos < n:
            retry.append(np.arange(pos, n, dtype=np.int64))
        if not retry:
            return None, ok
        keep = np.concatenate(retry)
        return (labels.take(keep) if len(keep) else None), ok

    def _run(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Run commands in pipelines; one result (or exception) per command, in order.

        A single node: one pipeline. A cluster: one pipeline per primary (by the slot of each
        command's routing key); ``MOVED`` and ``ASK`` redirections are followed once, and a
        ``MOVED`` reply makes the next sync reload the whole slot map. redis-py's own cluster
        pipeline is not used: after a connection error it re-sends commands one by one on
        new connections, beyond any deadline.
        """
        from redis.exceptions import AskError, MovedError

        fired = self._fired
        client = self._client
        if fired.is_set():
            raise TimeoutError(f"sync deadline of {self.deadline} s passed")
        if not self._is_cluster:
            pipe = client.pipeline(transaction=False)
            for _, cmd in calls:
                pipe.execute_command(*cmd)
            return list(pipe.execute(raise_on_error=False))
        from redis.crc import key_slot

        results: list[Any] = [None] * len(calls)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, (key, _) in enumerate(calls):
            node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        asks: dict[str, tuple[Any, list[tuple[int, bool]]]] = {}
        for node, idxs in by_node.values():
            if fired.is_set():
                err: Exception = TimeoutError(f"sync deadline of {self.deadline} s passed")
                for i in idxs:
                    results[i] = err
                continue
            try:
                conn = node.redis_connection or client.get_redis_connection(node)
                pipe = conn.pipeline(transaction=False)
                for i in idxs:
                    pipe.execute_command(*calls[i][1])
                out = pipe.execute(raise_on_error=False)
            except Exception as exc:  # this node is down or hung: the others still run
                out = [exc] * len(idxs)
            for i, r in zip(idxs, out, strict=True):
                results[i] = r
                if isinstance(r, AskError):  # MovedError is one too
                    moved = isinstance(r, MovedError)
                    if moved:
                        self._reload_slots = True  # the whole map, at the next sync
                    target = client.get_node(host=r.host, port=int(r.port))
                    if target is not None:
                        asks.setdefault(target.name, (target, []))[1].append((i, not moved))
        # A redirection is followed once: MOVED (the slot has a new owner) and ASK (the slot is
        # being migrated and this key is on the target already, which needs ASKING first).
        for node, pending in asks.values():
            if fired.is_set():
                break
            try:
                conn = node.redis_connection or client.get_redis_connection(node)
                pipe = conn.pipeline(transaction=False)
                for i, asking in pending:
                    if asking:
                        pipe.execute_command("ASKING")
                    pipe.execute_command(*calls[i][1])
                out = pipe.execute(raise_on_error=False)
                replies = iter(out)
                got = []
                for _, asking in pending:
                    if asking:
                        next(replies)
                    got.append(next(replies))
            except Exception as exc:
                got = [exc] * len(pending)
            for (i, _), r in zip(pending, got, strict=True):
                results[i] = r
        return results

    def _probe_gens(self, now: float) -> list[int]:
        """Generations that may hold a joinable prediction, newest first (one of slack on
        each side for clocks that differ between hosts)."""
        hi = math.floor(now / self.generation) + 1
        lo = math.floor((now - self.ttl) / self.generation) - 1
        return list(range(hi, lo - 1, -1))

    def _join_part(
        self, part: _Chunk, now: float
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int8]]:
        """Per row: (16 value bytes, state) with state 0 not found, 1 claimed now (value),
        2 claimed before (duplicate), -1 failed (retry)."""
        gens = ",".join(map(str, self._probe_gens(now)))
        buckets = part.buckets
        shards = buckets % SHARDS
        order = np.lexsort((buckets, shards))
        blob, offsets = _wire(part, order, None)
        s_o, b_o = shards[order], buckets[order]
        cut = np.flatnonzero((np.diff(s_o) != 0) | (np.diff(b_o) != 0)) + 1
        starts = np.concatenate(([0], cut)).astype(np.int64)
        stops = np.concatenate((cut, [len(order)])).astype(np.int64)
        calls: list[tuple[str, list[Any]]] = []
        ranges: list[tuple[int, int]] = []  # sorted-row range of each call
        args: list[Any] = []
        shard = int(s_o[0]) if len(order) else 0
        first = 0
        off = offsets.tolist()
        for st, sp, b in zip(starts.tolist(), stops.tolist(), b_o[starts].tolist(), strict=True):
            sh = b % SHARDS
            if sh != shard or len(args) >= _MAX_SCRIPT_KEYS:
                if args:
                    key = self._shard_key(shard)
                    calls.append((key, ["EVAL", _JOIN, 1, key, gens, *args]))
                    ranges.append((first, st))
                shard, args, first = sh, [], st
            args.append(b"%d:" % b + blob[off[st] : off[sp]])
        if args:
            key = self._shard_key(shard)
            calls.append((key, ["EVAL", _JOIN, 1, key, gens, *args]))
            ranges.append((first, len(order)))
        results = self._run(calls)
        n = len(part)
        raw = np.zeros((n, 17), dtype=np.uint8)
        failed = np.zeros(n, dtype=np.bool_)
        failure: Exception | None = None
        for (lo, hi), res in zip(ranges, results, strict=False):
            if isinstance(res, Exception) or not isinstance(res, bytes) or len(res) != 17 * (hi - lo):
                failure = res if isinstance(res, Exception) else RuntimeError("bad script reply")
                failed[order[lo:hi]] = True
                continue
            raw[order[lo:hi]] = np.frombuffer(res, dtype=np.uint8).reshape(-1, 17)
        state = np.zeros(n, dtype=np.int8)
        state[raw[:, 0] == ord("J")] = 1
        state[raw[:, 0] == ord("D")] = 2
        state[failed] = -1
        if failure is not None:
            # Successful calls are final (their claims happened); failed ones are retried.
            self._fail("read", failure)
        return raw[:, 1:], state

    # -- metrics, fork, close -----------------------------------------------------------------
    def samples(self) -> Iterable[Triple]:
        """Cumulative health metrics: errors by operation, buffered bytes and items, dropped
        items, ``mlmon_store_up`` and the last sync's duration."""
        with self._lock:
            out: list[Triple] = [
                ("mlmon_store_errors_total", float(v), {"operation": k})
                for k, v in sorted(self._errors.items())
            ]
            for name, buf in (("store_predictions", self._preds), ("store_labels", self._labels)):
                out.append(("mlmon_store_buffered_bytes", float(buf.nbytes), {"buffer": name}))
            for name, buf in (("store_predictions", self._preds), ("store_labels", self._labels)):
                out.append(("mlmon_store_buffered_items", float(buf.items), {"buffer": name}))
            for name, v in self._dropped.items():
                out.append(("mlmon_dropped_total", float(v), {"buffer": name}))
            out.append(
                ("mlmon_store_invalid_ids_total", float(self._invalid_preds), {"buffer": "store_predictions"})
            )
            out.append(("mlmon_store_up", self._up, {}))
            out.append(("mlmon_store_sync_seconds", self._sync_seconds, {}))
        return out

    def after_fork(self) -> None:
        """In a forked child: forget the parent's buffers, counters and connections.

        The parent's sockets are never used or shut down by the child (redis-py leaves a
        connection made by another pid alone); the next :meth:`sync` connects anew.
        """
        self._client = None  # not closed: the sockets belong to the parent
        self._init_state()

    def close(self, timeout: float = 5.0) -> None:
        """One last sync (within ``timeout`` seconds, at most), then close the connections."""
        if os.getpid() != self._pid:
            self.after_fork()
        t0 = time.monotonic()
        got = self._sync_lock.acquire(timeout=max(0.0, float(timeout)))
        try:
            if got and not self._closed:
                budget = max(0.05, float(timeout) - (time.monotonic() - t0))
                self._sync(time.time(), budget)
        except Exception as exc:
            self._fail("close", exc)
        finally:
            if got:
                self._sync_lock.release()
            self._closed = True
            self._drop_client()
