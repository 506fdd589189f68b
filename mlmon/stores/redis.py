"""A prediction store shared through Redis (a single node or a Redis Cluster).

Why: with several worker processes (gunicorn/uvicorn) or replicas, a label POSTed to
``/feedback`` lands in whichever worker accepted the request. An in-process id → prediction
join then finds only the predictions that worker made. :class:`RedisStore` keeps pending
predictions in Redis, so ``log_feedback()`` in any process joins predictions made in any process.

Interface (:class:`~mlmon.stores.base.PredictionStore`): the monitor calls ``bind(model,
version)`` once; ``record(ids, preds, made_at, segments=None)``, ``submit_labels(ids, labels,
received_at)`` and ``name_segments(names)`` only buffer (no I/O, bounded in bytes, overflow
counted ``"dropped"``); ``sync(now)`` runs on the reporter's background thread, writes the
buffered segment names and predictions, looks the buffered labels up and returns the new joins
as :class:`~mlmon.stores.base.StoreJoined`, each with the segment code of its prediction and
the names of those codes; ``samples()``, ``after_fork()`` and ``close(timeout)`` complete it.

Layout in Redis. One key per prediction with a TTL would cost about 100 bytes of key overhead
each, so predictions are grouped into small hashes that Redis stores in its compact listpack
encoding (about 20-30 bytes an entry):

- every id becomes a stable field and bucket (:mod:`mlmon.stores._ids`; never Python's
  randomised ``hash()``), every prediction a *generation* ``floor(made_at / generation)``;
- the hash ``<prefix>:{<model>|<version>|<shard>}:<bucket>:<generation>`` holds field →
  value: 16 bytes (prediction and ``made_at`` as two little-endian float64) for a prediction
  without a segment, 20 with its segment code (uint32) after them; ``shard`` is
  ``bucket % 256``, the hash tag that keeps the generations and buckets of a shard in one
  Redis Cluster slot, so one Lua call per shard writes or joins a whole batch (a write declares
  the hashes it writes, so that a slot being migrated routes it right; a join only reads and
  claims hashes that exist where it runs, and declares the shard's prefix);
- every hash key expires (``PEXPIREAT``) one ``ttl`` after its generation ends: Redis does the
  expiry, nothing in Python scans;
- a label probes its bucket in the generations that can still hold a prediction (newest first)
  in one atomic script, which replaces the first match by a tombstone: ``D``, the label's
  8-byte claim token, and the value. The first label wins across all processes; a later one
  finds the tombstone and counts ``"duplicate"``, but the same label retried (the reply to its
  join was lost: a timeout after Redis ran the script) gets the value again and joins.
  A match older than ``ttl`` when its label arrived counts ``"expired"``.
- segment names: ``<prefix>:{<model>|<version>|segments}``, code → name
  (:mod:`mlmon.stores._redis_names`).
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
[2.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
import os
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mlmon.feedback import as_batch
from mlmon.stores._ids import encode_ids
from mlmon.stores._redis_buffer import FloatArray, _Buffer, _Chunk, _concat
from mlmon.stores._redis_fleet import _FleetOps
from mlmon.stores._redis_names import _Names
from mlmon.stores._redis_scripts import SHARDS as SHARDS
from mlmon.stores._redis_scripts import _Scripts
from mlmon.stores.base import REASONS, CodeArray, StoreJoined

__all__ = ["RedisStore"]

Triple = tuple[str, float, Mapping[str, str]]

MIB = 1 << 20


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


_U32_MAX = (1 << 32) - 1


def _as_codes(segments: object, n: int) -> CodeArray:
    """``segments`` as ``n`` uint32 codes (a copy); ValueError when it cannot be."""
    if type(segments) is np.ndarray and segments.dtype == np.uint32 and segments.shape == (n,):
        fast: CodeArray = segments.copy()  # the monitor's case; a copy: the caller may reuse it
        return fast
    arr = np.asarray(segments)
    if arr.ndim == 0 or arr.shape == (1,):
        arr = np.broadcast_to(arr.reshape(-1), (n,))
    if arr.shape != (n,):
        raise ValueError(f"segments has shape {arr.shape}, expected ({n},)")
    if arr.dtype == np.uint32:
        same: CodeArray = np.array(arr, dtype=np.uint32)  # a copy: the caller may reuse arr
        return same
    if arr.dtype.kind not in "ui" or arr.dtype == np.bool_:
        raise ValueError(f"segments must be uint32 codes, got dtype {arr.dtype}")
    if n and (int(arr.min()) < 0 or int(arr.max()) > _U32_MAX):
        raise ValueError("segments must be uint32 codes, got values out of range")
    out: CodeArray = arr.astype(np.uint32)
    return out


def _pos_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


class RedisStore(_Scripts, _Names, _FleetOps):
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
        self._dropped = {"store_predictions": 0, "store_labels": 0, "store_segment_names": 0}
        self._invalid_preds = 0
        # recorded, not yet encoded: ids, preds, made_at, segment codes (or None)
        self._raw: list[tuple[object, FloatArray, FloatArray, CodeArray | None]] = []
        # Every label row gets a claim token, unique across processes (a random start per
        # process, also per forked child): a retry of the same row after a lost reply gets its
        # prediction again from the tombstone it left; any other label is a duplicate.
        self._token_next = int.from_bytes(os.urandom(8), "little")
        self._init_names(max(1 << 16, self.max_buffer_bytes // 16))
        self._raw_bytes = 0
        self._errors: dict[str, int] = {"connect": 0, "write": 0, "read": 0, "fleet": 0}
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
    def record(
        self,
        ids: object,
        preds: FloatArray,
        made_at: FloatArray,
        segments: CodeArray | None = None,
    ) -> None:
        """Buffer predictions for the next :meth:`sync` (no I/O; never raises).

        ``segments`` is None or one uint32 segment code per row (0: none), returned with the
        row's label in :attr:`~mlmon.stores.base.StoreJoined.segments`; a single code applies
        to every row. Segments that are not that (another length, negative or fractional
        codes) are counted in ``mlmon_store_errors_total{operation="record"}`` and the rows are
        kept without a segment.

        Rows with an unusable id are counted in ``mlmon_store_invalid_ids_total``; rows that do
        not fit in the buffer in ``mlmon_dropped_total{buffer="store_predictions"}``.
        """
        if os.getpid() != self._pid:
            self.after_fork()
        try:
            # Encoding ids costs per id: it is left to sync() on the background thread. Here the
            # batch is only kept, counted against the prediction buffer's bytes.
            p = np.asarray(preds, dtype=np.float64).reshape(-1)
            t = np.broadcast_to(np.asarray(made_at, dtype=np.float64), p.shape).reshape(-1).copy()
            raw = ids if isinstance(ids, (range, np.ndarray)) else list(as_batch(ids))
            n = len(p)
            s: CodeArray | None = None
            if segments is not None:
                try:
                    s = _as_codes(segments, n)
                except (TypeError, ValueError) as exc:
                    with self._lock:
                        self._errors["record"] = self._errors.get("record", 0) + 1
                    self._log("record", exc)
            size = (16 if s is None else 20) * n + (
                raw.nbytes if isinstance(raw, np.ndarray) else 64 * len(raw)
            )
            with self._lock:
                room = self._preds.limit - self._preds.nbytes - self._raw_bytes
                keep = n if size <= room else max(0, room * n // max(size, 1))
                if keep < n:  # what does not fit is dropped and counted, the rest kept
                    self._dropped["store_predictions"] += n - keep
                    self._counts["dropped"] += n - keep
                    raw, p, t, size = raw[:keep], p[:keep], t[:keep], size * keep // max(n, 1)
                    s = None if s is None else s[:keep]
                if keep:
                    self._raw.append((raw, p, t, s))
                    self._raw_bytes += size
        except Exception as exc:  # never into the predict path
            with self._lock:
                self._errors["record"] = self._errors.get("record", 0) + 1
            self._log("record", exc)

    def _encode_pending(self) -> None:
        """Encode the prediction batches :meth:`record` kept, into the write buffer (on the
        background thread, before a sync writes)."""
        with self._lock:
            raw, self._raw, self._raw_bytes = self._raw, [], 0
        for ids, p, t, s in raw:
            self._encode(ids, p, t, s)

    def _encode(
        self, ids: object, preds: FloatArray, made_at: FloatArray, segs: CodeArray | None = None
    ) -> None:
        try:
            fields, buckets = encode_ids(ids, self.buckets)
            p = np.asarray(preds, dtype=np.float64).reshape(-1)
            t = np.broadcast_to(np.asarray(made_at, dtype=np.float64), p.shape).reshape(-1)
            n = min(len(buckets), len(p))
            ok = buckets[:n] >= 0
            ok &= np.isfinite(t[:n])
            bad = int(n - ok.sum()) + abs(len(buckets) - len(p))
            idx = np.flatnonzero(ok)
            tags = None if segs is None or not segs[:n].any() else segs[:n]
            chunk = _Chunk(fields, buckets, p[:n], t[:n].copy(), tags=tags)
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
            with self._lock:
                first, self._token_next = self._token_next, (self._token_next + len(lab)) % (1 << 64)
            tokens = np.arange(len(lab), dtype=np.uint64) + np.uint64(first)  # wraps mod 2**64
            chunk = _Chunk(fields, buckets, lab.copy(), t, tags=tokens)
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
        self._encode_pending()
        with self._lock:
            pred_chunks = self._preds.take_all()
            label_chunks = self._labels.take_all()
        preds = _concat(pred_chunks) if pred_chunks else None
        labels = _concat(label_chunks) if label_chunks else None
        out_p: list[FloatArray] = []
        out_l: list[FloatArray] = []
        out_d: list[FloatArray] = []
        out_s: list[CodeArray] = []
        names: dict[int, str] = {}
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
            # Names first: a label joined anywhere after this sync's predictions can name them.
            if connected and not self._sync_names(now):
                ok = False
            if connected and preds is not None and not fired.is_set():
                preds, wrote = self._write(preds, now, end, fired, counts)
                ok = ok and wrote
            # A failed write (Redis out of memory, say) does not stop the joins: they may
            # still run, and free memory. A timeout does (the watchdog has fired).
            if connected and labels is not None and not fired.is_set():
                labels, joined_ok = self._join(
                    labels, now, end, fired, counts, out_p, out_l, out_d, out_s
                )
                ok = ok and joined_ok
            if out_s:
                names = self._resolve(np.concatenate(out_s), end, fired)
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

        segs: CodeArray = np.concatenate(out_s) if out_s else np.zeros(0, dtype=np.uint32)
        return StoreJoined(cat(out_p), cat(out_l), cat(out_d), counts, segs, names)

    # -- metrics, fork, close -----------------------------------------------------------------
    def samples(self) -> Iterable[Triple]:
        """Cumulative health metrics: errors by operation, buffered bytes and items, dropped
        items, ``mlmon_store_up`` and the last sync's duration."""
        self._encode_pending()  # so that unusable ids are counted by the time they are read
        with self._lock:
            out: list[Triple] = [
                ("mlmon_store_errors_total", float(v), {"operation": k})
                for k, v in sorted(self._errors.items())
            ]
            raw_items = sum(len(p) for _, p, _, _ in self._raw)
            out.append(("mlmon_store_buffered_bytes", float(self._preds.nbytes + self._raw_bytes), {"buffer": "store_predictions"}))
            out.append(("mlmon_store_buffered_bytes", float(self._labels.nbytes), {"buffer": "store_labels"}))
            out.append(("mlmon_store_buffered_items", float(self._preds.items + raw_items), {"buffer": "store_predictions"}))
            out.append(("mlmon_store_buffered_items", float(self._labels.items), {"buffer": "store_labels"}))
            names = "store_segment_names"
            out.append(("mlmon_store_buffered_bytes", float(self._names_pending_bytes), {"buffer": names}))
            out.append(("mlmon_store_buffered_items", float(len(self._names_pending)), {"buffer": names}))
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
        connection made by another pid alone); the next :meth:`sync` connects anew. Segment
        names are kept (names waiting to be written too): they are not counted data, and a
        pre-fork parent that named segments may never sync itself.
        """
        self._client = None  # not closed: the sockets belong to the parent
        kept = (self._names, self._names_pending, self._names_pending_bytes, self._names_check_at)
        self._init_state()  # a new claim-token start, new locks
        self._names, self._names_pending, self._names_pending_bytes, self._names_check_at = kept

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
