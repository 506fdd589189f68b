"""RedisStore segments against a real Redis (single node and 3-master cluster): a label joined in
any process counts in the segment of the prediction it joins (issue 15), segment names reach
processes that never named them, old and new value formats mix on one Redis during a rolling
upgrade, and a join whose reply was cut after Redis ran it is not lost on retry."""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest
from _redis_v1 import v1_join, v1_write
from redis_servers import RedisCluster, RedisServer

from mlmon.segments import segment_code
from mlmon.stores import RedisStore
from mlmon.stores._ids import encode_ids
from mlmon.stores._redis_names import MAX_NAME_BYTES
from mlmon.stores._redis_scripts import SHARDS

NAMES = ["eu", "us", "apac"]
CODES = np.array([segment_code(n) for n in NAMES], dtype=np.uint32)


def _store(url: str, **kwargs: Any) -> RedisStore:
    kwargs.setdefault("ttl", 3600.0)
    kwargs.setdefault("deadline", 10.0)
    store = RedisStore(url, **kwargs)
    store.bind("churn", "v1")
    return store


def _m(store: RedisStore, name: str, **labels: str) -> float:
    return sum(v for n, v, lab in store.samples() if n == name and dict(lab) == labels)


@pytest.fixture(params=["single", "cluster"])
def redis_any(request: pytest.FixtureRequest) -> RedisServer | RedisCluster:
    """A fresh single redis-server, then a fresh 3-master Redis Cluster (``.url``, ``.client()``)."""
    if request.param == "single":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster


@pytest.fixture
def redis_url(redis_any: RedisServer | RedisCluster) -> str:
    return redis_any.url


def test_segments_survive_record_to_join_across_instances(redis_url: str) -> None:
    writer, reader = _store(redis_url), _store(redis_url)
    writer.name_segments(dict(zip(CODES.tolist(), NAMES, strict=True)))
    now = time.time()
    n = 3000
    ids = [f"req-{i}" for i in range(n)] + list(range(n))  # both wire paths: bytes and int fields
    seg = CODES[np.arange(2 * n) % 3]
    seg[::7] = 0  # some predictions without a segment
    preds = (np.arange(2 * n) % 5).astype(np.float64)
    writer.record(ids[:n], preds[:n], np.full(n, now - 4.0), seg[:n])
    writer.record(np.arange(n), preds[n:], np.full(n, now - 4.0), seg[n:])
    writer.record(["plain"], np.array([9.0]), np.array([now]))  # no segments at all
    writer.sync(now)
    order = np.random.default_rng(3).permutation(2 * n)
    label_ids = [ids[i] for i in order] + ["plain"]
    labels = np.append(order.astype(np.float64), -1.0)  # the label is the row's index
    reader.submit_labels(label_ids, labels, now)
    got = reader.sync(now)
    assert 2 * n + 1 == got.counts["joined"]
    assert got.segments.dtype == np.uint32 and len(got.segments) == len(got.preds)
    rows = got.labels.astype(np.int64)
    plain = rows == -1
    assert [0] == got.segments[plain].tolist() and [9.0] == got.preds[plain].tolist()
    assert np.array_equal(seg[rows[~plain]], got.segments[~plain])
    assert np.array_equal(preds[rows[~plain]], got.preds[~plain])
    assert np.allclose(got.delays[~plain], 4.0, atol=1e-3)
    # the reader never named a segment: it learnt every name from Redis
    assert dict(zip(CODES.tolist(), NAMES, strict=True)) == dict(got.segment_names)


def _spawn_namer(url: str, made_at: float) -> None:
    store = _store(url)
    store.name_segments({segment_code("emea"): "emea", segment_code("latam"): "latam"})
    ids = np.arange(100)
    codes = np.where(ids % 2 == 0, segment_code("emea"), segment_code("latam")).astype(np.uint32)
    store.record(ids, ids.astype(np.float64), np.full(100, made_at), codes)
    store.close(10.0)


def test_names_resolved_in_a_process_that_never_named_them(redis_server: RedisServer) -> None:
    now = time.time()
    proc = multiprocessing.get_context("spawn").Process(target=_spawn_namer, args=(redis_server.url, now))
    proc.start()
    proc.join(60)
    assert 0 == proc.exitcode
    reader = _store(redis_server.url)
    reader.submit_labels(range(100), np.ones(100), now + 1.0)
    got = reader.sync(now + 1.0)
    assert 100 == got.counts["joined"]
    names = [got.segment_names[int(c)] for c in got.segments]
    assert names == ["emea" if p % 2 == 0 else "latam" for p in got.preds.astype(int).tolist()]
    # looked up once, then cached: a later join names the code without Redis's hash
    redis_server.client().delete(reader._names_key())
    w = _store(redis_server.url)
    w.record(["y"], np.ones(1), np.full(1, now), np.array([segment_code("emea")], np.uint32))
    w.sync(now)
    reader.submit_labels(["y"], np.ones(1), now + 2.0)
    again = reader.sync(now + 2.0)
    assert 1 == again.counts["joined"]
    assert {segment_code("emea"): "emea"} == dict(again.segment_names)
    # a process without that cache cannot name it any more: the code stays, unnamed
    w.record(["z"], np.ones(1), np.full(1, now), np.array([segment_code("emea")], np.uint32))
    w.sync(now)
    fresh = _store(redis_server.url)
    fresh.submit_labels(["z"], np.ones(1), now + 2.0)
    unnamed = fresh.sync(now + 2.0)
    assert ([segment_code("emea")], {}) == (unnamed.segments.tolist(), dict(unnamed.segment_names))


HOSTILE = [
    "x" * (MAX_NAME_BYTES - 1),  # long (the store keeps up to 4096 UTF-8 bytes)
    "\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \u05e2\u05d1\u05e8\u05d9\u05ea \U0001f600 \u4e2d\u6587",
    "line one\nline two\r\n\ttab",
    "nul\x00inside",
    "lone \ud800 surrogate",
    " leading and trailing ",
    "",
    "a,b:c {d} |e| 1234",
]


def test_hostile_names_round_trip_exactly(redis_url: str) -> None:
    writer, reader = _store(redis_url), _store(redis_url)
    codes = [segment_code(n) for n in HOSTILE]
    assert len(set(codes)) == len(HOSTILE)
    too_long = "y" * (MAX_NAME_BYTES + 1)
    writer.name_segments({**dict(zip(codes, HOSTILE, strict=True)), segment_code(too_long): too_long})
    assert 1.0 == _m(writer, "mlmon_dropped_total", buffer="store_segment_names")
    now = time.time()
    k = len(HOSTILE)
    writer.record(range(k), np.arange(k, dtype=np.float64), np.full(k, now), np.array(codes, np.uint32))
    writer.sync(now)
    reader.submit_labels(range(k), np.arange(k, dtype=np.float64), now)
    got = reader.sync(now)
    assert k == got.counts["joined"]
    for pred, code in zip(got.preds.astype(int).tolist(), got.segments.tolist(), strict=True):
        assert HOSTILE[pred] == got.segment_names[code]  # exactly: same characters, same length


def test_name_cache_stays_within_its_bound(redis_server: RedisServer) -> None:
    writer = _store(redis_server.url)
    reader = _store(redis_server.url, max_buffer_bytes=4096)  # name cache bound: 64 KiB
    bound = reader._names.max_bytes
    assert 1 << 16 == bound
    k = 300  # 300 names of 1,000 bytes: about 5 times the reader's bound
    names = [f"{i:04d}" + "n" * 996 for i in range(k)]
    codes = np.array([segment_code(n) for n in names], dtype=np.uint32)
    writer.name_segments(dict(zip(codes.tolist(), names, strict=True)))
    now = time.time()
    writer.record(range(k), np.arange(k, dtype=np.float64), np.full(k, now), codes)
    writer.sync(now)
    seen: dict[int, str] = {}
    for lo in range(0, k, 50):  # the reader's label buffer (2 KiB) is small: in batches of 50
        reader.submit_labels(range(lo, lo + 50), np.ones(50), now)
        got = reader.sync(now)
        assert 50 == got.counts["joined"]
        assert set(got.segments.tolist()) == set(got.segment_names)  # every code named
        seen.update(got.segment_names)
        assert reader._names.nbytes <= bound
    assert dict(zip(codes.tolist(), names, strict=True)) == seen
    assert reader._names.evicted > 0 and len(reader._names) < k


def test_names_are_written_once_and_again_after_the_hash_expired(redis_server: RedisServer) -> None:
    client = redis_server.client()
    store = _store(redis_server.url, ttl=600.0, generation=60.0)
    key = store._names_key()
    now = time.time()
    store.name_segments({int(CODES[0]): "eu"})
    store.sync(now)
    assert {b"%d" % CODES[0]: b"eu"} == client.hgetall(key)
    # the TTL covers every prediction that may carry the code: ttl + 2 generations
    assert 600_000 < client.pttl(key) <= 720_000
    client.config_resetstat()
    for _ in range(100):  # idempotent: a name written once is not written again
        store.name_segments({int(CODES[0]): "eu"})
    assert 0.0 == _m(store, "mlmon_store_buffered_items", buffer="store_segment_names")
    store.sync(now + 1.0)
    assert "cmdstat_hset" not in client.info("commandstats")
    client.delete(key)  # expired, evicted or flushed
    store.sync(now + 2.0)  # within the check interval: not noticed yet
    assert 0 == client.exists(key)
    store.sync(now + 61.0)  # the TTL refresh finds the hash gone
    store.sync(now + 62.0)  # and writes the names again
    assert {b"%d" % CODES[0]: b"eu"} == client.hgetall(key)


def test_bad_segments_are_counted_and_the_rows_kept(redis_server: RedisServer) -> None:
    store = _store(redis_server.url)
    now = time.time()
    store.record([1, 2], np.ones(2), np.full(2, now), np.array([1, 2, 3], np.uint32))  # length
    store.record([3], np.ones(1), np.full(1, now), np.array([-5]))  # not a uint32
    store.record([4], np.ones(1), np.full(1, now), np.array([0.5]))  # not an integer
    store.record([5, 6], np.ones(2), np.full(2, now), np.uint32(CODES[1]))  # one code for all
    store.name_segments({0: "zero", 2**32: "big", True: "bool", 7: b"bytes"})  # type: ignore[dict-item]
    assert 3.0 == _m(store, "mlmon_store_errors_total", operation="record")
    assert 4.0 == _m(store, "mlmon_dropped_total", buffer="store_segment_names")
    store.submit_labels(range(1, 7), np.arange(1.0, 7.0), now)  # label = id
    got = store.sync(now)
    assert 6 == got.counts["joined"]
    by_id = dict(zip(got.labels.astype(int).tolist(), got.segments.tolist(), strict=True))
    assert {1: 0, 2: 0, 3: 0, 4: 0, 5: int(CODES[1]), 6: int(CODES[1])} == by_id


# -- a rolling upgrade: processes from before segments on the same Redis ------------------------


def _where(store: RedisStore, id_: int, made_at: float) -> tuple[str, str, int, list[int]]:
    """(hash key, shard key, bucket, generations to probe) of ``id_``, as both versions compute."""
    _, buckets = encode_ids([id_], store.buckets)
    b = int(buckets[0])
    key = store.key(id_, made_at)
    assert key is not None
    return key, store._shard_key(b % SHARDS), b, store._probe_gens(made_at)


def test_new_reader_reads_old_values_as_segment_zero(redis_any: RedisServer | RedisCluster) -> None:
    client = redis_any.client()
    store = _store(redis_any.url)
    now = time.time()
    ids = [11, 12]
    for id_, pred in zip(ids, (1.0, 2.0), strict=True):
        key, *_ = _where(store, id_, now - 3.0)
        v1_write(client, key, [(id_, pred, now - 3.0)], int((now + 3600) * 1000))
    assert {16} == {len(v) for id_ in ids for v in client.hvals(_where(store, id_, now - 3.0)[0])}
    store.submit_labels(ids, np.array([1.0, 0.0]), now)
    got = store.sync(now)
    assert 2 == got.counts["joined"]
    assert [1.0, 2.0] == sorted(got.preds.tolist())
    assert [0, 0] == got.segments.tolist() and {} == dict(got.segment_names)
    assert np.allclose(got.delays, 3.0, atol=1e-3)
    # the new tombstone of an old value (25 bytes): an old process finds nothing, never a value
    key11, shard11, b11, gens = _where(store, 11, now - 3.0)
    assert 25 == len(client.hget(key11, b"\x00" + (11).to_bytes(8, "little")))
    assert [("", bytes(16))] == v1_join(client, shard11, gens, b11, [11])
    # the old tombstone "D" (an old process joined first): a duplicate for a new reader
    key, *_ = _where(store, 13, now)
    v1_write(client, key, [(13, 1.0, now)], int((now + 3600) * 1000))
    client.hset(key, b"\x00" + (13).to_bytes(8, "little"), b"D")
    store.submit_labels([13], np.ones(1), now)
    dup = store.sync(now).counts
    assert (0, 1) == (dup["joined"], dup["duplicate"])


def test_old_reader_never_misreads_a_new_value(redis_any: RedisServer | RedisCluster) -> None:
    client = redis_any.client()
    store = _store(redis_any.url)
    now = time.time()
    store.record([21], np.array([5.0]), np.full(1, now), np.array([CODES[0]], np.uint32))
    store.record([22], np.array([6.0]), np.full(1, now))  # no segment: the old 16-byte format
    store.sync(now)
    key21, shard21, b21, gens = _where(store, 21, now)
    before = client.hgetall(key21)
    assert [20] == [len(v) for v in before.values()]
    # an old process's join does not see the 20-byte value: "not found", value left untouched
    assert [("", bytes(16))] == v1_join(client, shard21, gens, b21, [21])
    assert before == client.hgetall(key21)
    # an unsegmented prediction keeps the old format, which old processes join as before
    key22, shard22, b22, _ = _where(store, 22, now)
    stored = client.hget(key22, b"\x00" + (22).to_bytes(8, "little"))
    assert stored is not None and 16 == len(stored)  # recorded in the same sync as 21
    state, value = v1_join(client, shard22, gens, b22, [22])[0]
    assert ("J", [6.0, now]) == (state, np.frombuffer(value, "<f8").tolist())
    # the new process then joins the segmented one, with its segment
    store.submit_labels([21], np.ones(1), now)
    got = store.sync(now)
    assert ([5.0], [int(CODES[0])]) == (got.preds.tolist(), got.segments.tolist())
    # and an old process sees the new tombstone as "not found" (its label ends unmatched),
    # never as a value
    assert [("", bytes(16))] == v1_join(client, shard21, gens, b21, [21])
    assert [29] == [len(v) for v in client.hvals(key21)]


# -- a join whose reply is lost after Redis ran it ----------------------------------------------


class ReplyCutter:
    """A loopback TCP proxy to Redis that forwards requests always and replies unless
    ``cut`` is set: then Redis runs what it receives and the client never hears back."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.cut = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._accept = threading.Thread(target=self._run, daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                down, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            self._socks += [down, up]
            for src, dst, replies in ((down, up, False), (up, down, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, replies), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        src.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if replies and self.cut.is_set():
                continue  # Redis answered; the client never hears it
            try:
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._stop.set()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        for s in [self.sock, *self._socks]:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def reply_cutter(redis_server: RedisServer) -> Any:
    proxy = ReplyCutter(redis_server.port)
    yield proxy
    proxy.stop()


def test_join_retried_after_its_reply_was_cut_gets_its_predictions(
    redis_server: RedisServer, reply_cutter: ReplyCutter
) -> None:
    client = redis_server.client()
    writer = _store(redis_server.url)
    writer.name_segments({int(CODES[2]): "apac"})
    now = time.time()
    n = 500
    writer.record(np.arange(n), np.arange(n, dtype=np.float64) % 3, np.full(n, now - 2.0), np.full(n, CODES[2]))
    writer.sync(now)
    reader = _store(reply_cutter.url, deadline=1.0)
    assert 1.0 == (reader.sync(now), _m(reader, "mlmon_store_up"))[1]  # connected through the proxy
    reader.submit_labels(np.append(np.arange(n), 0), np.ones(n + 1), now)  # id 0 twice
    reply_cutter.cut.set()
    t0 = time.monotonic()
    cut = reader.sync(now)
    assert time.monotonic() - t0 < 3.0  # the deadline (1 s) holds
    assert 0 == cut.counts["joined"] + cut.counts["duplicate"]
    assert _m(reader, "mlmon_store_errors_total", operation="read") >= 1
    # Redis did run the join: every prediction is claimed (a 29-byte tombstone) ...
    key = writer.key(0, now - 2.0)
    assert key is not None
    field = b"\x00" + (0).to_bytes(8, "little")
    claimed = client.hget(key, field)
    assert claimed is not None and claimed[:1] == b"D" and 29 == len(claimed)
    # ... and the labels are still buffered, with their claim tokens
    assert n + 1 == _m(reader, "mlmon_store_buffered_items", buffer="store_labels")
    reply_cutter.cut.clear()
    got = reader.sync(now)
    # each prediction once; the second label for id 0 stays a duplicate
    assert (n, 1) == (got.counts["joined"], got.counts["duplicate"])
    assert np.array_equal(np.sort(got.preds), np.sort(np.arange(n, dtype=np.float64) % 3))
    assert {int(CODES[2])} == set(got.segments.tolist())
    assert {int(CODES[2]): "apac"} == dict(got.segment_names)
    assert np.allclose(got.delays, 2.0, atol=1e-3)
    # another claimer, and a new label of the same process, are duplicates
    other = _store(redis_server.url)
    other.submit_labels(np.arange(n), np.zeros(n), now)
    assert (0, n) == (lambda c: (c["joined"], c["duplicate"]))(other.sync(now).counts)
    reader.submit_labels(np.arange(10), np.zeros(10), now)
    assert (0, 10) == (lambda c: (c["joined"], c["duplicate"]))(reader.sync(now).counts)
