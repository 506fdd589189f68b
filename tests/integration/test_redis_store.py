"""RedisStore against a real single redis-server: joins across instances and processes,
first-label-wins, retries, TTL expiry, eviction, passwords, fork."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from typing import Any

import numpy as np
import pytest
from redis_servers import RedisServer

from mlmon.stores import RedisStore


def _store(url: str, **kwargs: Any) -> RedisStore:
    kwargs.setdefault("ttl", 3600.0)
    kwargs.setdefault("deadline", 10.0)
    store = RedisStore(url, **kwargs)
    store.bind("churn", "v1")
    return store


def _metrics(store: RedisStore) -> dict[tuple[str, str], float]:
    return {(n, ",".join(f"{k}={v}" for k, v in sorted(lab.items()))): v for n, v, lab in store.samples()}


def test_exact_join_across_instances_with_mixed_ids(redis_server: RedisServer) -> None:
    writer, reader = _store(redis_server.url), _store(redis_server.url)
    now = time.time()
    ids: list[Any] = [7, "req-1", b"raw", 2.5, np.int32(11), "ü-ñ", 2**70, "x" * 200]
    preds = np.arange(len(ids), dtype=np.float64) + 0.5
    writer.record(ids, preds, now - np.arange(len(ids), dtype=np.float64))
    writer.sync(now)
    # 7.0 joins 7, np.int64(11) joins np.int32(11); ids in another order, each on its own
    label_ids: list[Any] = ["x" * 200, 2**70, "ü-ñ", 11, 2.5, b"raw", "req-1", 7.0]
    reader.submit_labels(label_ids, np.arange(8, dtype=np.float64), now + 1.0)
    got = reader.sync(now + 1.0)
    assert 8 == got.counts["joined"]
    assert [7.5, 6.5, 5.5, 4.5, 3.5, 2.5, 1.5, 0.5] == sorted(got.preds.tolist(), reverse=True)
    by_label = dict(zip(got.labels.tolist(), zip(got.preds.tolist(), got.delays.tolist(), strict=True), strict=True))
    for label, id_ in enumerate(label_ids):
        i = next(k for k, x in enumerate(ids) if x == id_ or (id_ == 11 and x == 11))
        assert (preds[i], pytest.approx(1.0 + i)) == by_label[float(label)]
    # "7" (a string) is not 7, b"req-1" is not "req-1"
    reader.submit_labels(["7", b"req-1"], np.array([1.0, 1.0]), now + 2.0)
    got = reader.sync(now + 2.0 + 31.0)  # past retry_for: counted
    assert (0, 2) == (got.counts["joined"], got.counts["unmatched"])


def _spawn_writer(url: str, start: int, stop: int, made_at: float) -> None:
    store = _store(url)
    ids = np.arange(start, stop)
    store.record(ids, (ids % 7).astype(np.float64), np.full(stop - start, made_at))
    store.close(5.0)


def _spawn_reader(url: str, ids: list[int], received_at: float, out: Any) -> None:
    store = _store(url)
    store.submit_labels(ids, np.array([float(i % 3) for i in ids]), received_at)
    got = store.sync(received_at)
    out.put((got.preds.tolist(), got.labels.tolist(), got.counts))
    store.close(1.0)


def test_exact_join_across_spawned_processes(redis_server: RedisServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    now = time.time()
    writers = [
        ctx.Process(target=_spawn_writer, args=(redis_server.url, k * 5000, (k + 1) * 5000, now))
        for k in range(2)
    ]
    for p in writers:
        p.start()
    for p in writers:
        p.join(60)
        assert 0 == p.exitcode
    out = ctx.Queue()
    # each reader gets every other id: labels for both writers' predictions
    readers = [
        ctx.Process(target=_spawn_reader, args=(redis_server.url, list(range(k, 10000, 2)), now + 5, out))
        for k in range(2)
    ]
    for p in readers:
        p.start()
    results = [out.get(timeout=60) for _ in readers]
    for p in readers:
        p.join(60)
        assert 0 == p.exitcode
    assert [5000, 5000] == [r[2]["joined"] for r in results]
    pairs = sorted(pair for r in results for pair in zip(r[1], r[0], strict=True))
    assert sorted((float(i % 3), float(i % 7)) for i in range(10000)) == pairs


def test_first_label_wins_across_processes(redis_server: RedisServer) -> None:
    writer = _store(redis_server.url)
    a, b = _store(redis_server.url), _store(redis_server.url)
    now = time.time()
    writer.record(range(1000), np.ones(1000), np.full(1000, now))
    writer.sync(now)
    a.submit_labels(range(0, 600), np.zeros(600), now)
    b.submit_labels(range(400, 1000), np.ones(600), now)
    b.submit_labels([999, 999], np.ones(2), now)  # and duplicates within one process
    got_a, got_b = a.sync(now), b.sync(now)
    assert (600, 400) == (got_a.counts["joined"], got_b.counts["joined"])
    assert (0, 202) == (got_a.counts["duplicate"], got_b.counts["duplicate"])
    assert np.all(got_a.labels == 0.0) and np.all(got_b.labels == 1.0)


def test_early_labels_are_retried_then_unmatched(redis_server: RedisServer) -> None:
    writer, reader = _store(redis_server.url), _store(redis_server.url, retry_for=30.0)
    now = time.time()
    reader.submit_labels(["early-1", "early-2", "never"], np.array([1.0, 0.0, 1.0]), now)
    first = reader.sync(now)
    assert (0, 0) == (first.counts["joined"], first.counts["unmatched"])
    assert 3.0 == _metrics(reader)[("mlmon_store_buffered_items", "buffer=store_labels")]
    writer.record(["early-1", "early-2"], np.array([1.0, 1.0]), np.full(2, now + 0.5))
    writer.sync(now + 1.0)
    second = reader.sync(now + 10.0)
    assert (2, 0) == (second.counts["joined"], second.counts["unmatched"])
    # the label came before its prediction: the delay is negative, reported as 0
    assert [0.0, 0.0] == second.delays.tolist()
    third = reader.sync(now + 31.0)
    assert (0, 1) == (third.counts["joined"], third.counts["unmatched"])
    assert 0.0 == _metrics(reader)[("mlmon_store_buffered_items", "buffer=store_labels")]


def test_redis_expires_predictions_after_ttl(redis_server: RedisServer) -> None:
    store = _store(redis_server.url, ttl=1.0, retry_for=0.0)
    client = redis_server.client()
    now = time.time()
    store.record(range(100), np.ones(100), np.full(100, now))
    store.sync(now)
    keys = client.keys("mlmon:*")
    assert keys and all(0 < client.pttl(k) <= 1500 for k in keys)
    deadline = time.monotonic() + 10
    while client.dbsize() and time.monotonic() < deadline:  # Redis expires, nothing in Python
        time.sleep(0.1)
    assert 0 == client.dbsize()
    store.submit_labels(range(100), np.ones(100), time.time())
    got = store.sync(time.time())
    assert (0, 100) == (got.counts["joined"], got.counts["unmatched"])


def test_label_after_ttl_counts_expired(redis_server: RedisServer) -> None:
    store = _store(redis_server.url, ttl=2.0, generation=2.0)
    now = time.time()
    start = 2.0 * (now // 2.0) + 0.01  # early in a generation: its key lives ~4 s
    store.record([1, 2], np.ones(2), np.array([start, start + 1.0]))
    store.sync(now)
    store.submit_labels([1, 2], np.ones(2), start + 2.5)  # 2.5 s and 1.5 s after them
    got = store.sync(time.time())
    assert (1, 1) == (got.counts["joined"], got.counts["expired"])
    assert [1.5] == pytest.approx(got.delays.tolist())


def test_memory_per_pending_prediction_is_small(redis_server: RedisServer) -> None:
    client = redis_server.client()
    store = _store(redis_server.url, buckets=2048)
    before = int(client.info("memory")["used_memory"])
    now = time.time()
    n = 100_000
    store.record(np.arange(10**9, 10**9 + n), np.ones(n), np.full(n, now))
    store.sync(now)
    per = (int(client.info("memory")["used_memory"]) - before) / n
    assert per <= 100, per
    key = client.keys("mlmon:*")[0]
    assert b"listpack" == client.object("encoding", key)


def test_eviction_never_makes_a_wrong_join(redis_factory: Any) -> None:
    server = redis_factory(extra={"maxmemory": "3mb", "maxmemory-policy": "allkeys-random"})
    store = _store(server.url, retry_for=0.0, buckets=512)
    now = time.time()
    n = 200_000  # about 6 MB of predictions: most are evicted
    ids = np.arange(n)
    for k in range(0, n, 20_000):
        store.record(ids[k : k + 20_000], (ids[k : k + 20_000] % 5).astype(np.float64), np.full(20_000, now))
        store.sync(now)
    store.submit_labels(ids, (ids % 5).astype(np.float64), now + 1.0)
    got = store.sync(now + 1.0)
    assert n == got.counts["joined"] + got.counts["unmatched"]
    assert 0 < got.counts["unmatched"] and 0 < got.counts["joined"]
    assert np.array_equal(got.preds, got.labels)  # label = id % 5 = the prediction recorded


def test_noeviction_oom_counts_write_errors_and_joins_still_work(redis_factory: Any) -> None:
    server = redis_factory(extra={"maxmemory": "2mb", "maxmemory-policy": "noeviction"})
    store = _store(server.url, retry_for=0.0, buckets=256, max_buffer_bytes=1 << 20)
    now = time.time()
    store.record(range(100), np.ones(100), np.full(100, now))
    store.sync(now)
    for k in range(10):
        store.record(np.arange(1000 + k * 20_000, 1000 + (k + 1) * 20_000), np.ones(20_000), np.full(20_000, now))
        store.sync(now)
    m = _metrics(store)
    assert m[("mlmon_store_errors_total", "operation=write")] >= 1
    assert m[("mlmon_store_buffered_bytes", "buffer=store_predictions")] <= (1 << 20) // 2
    assert m[("mlmon_dropped_total", "buffer=store_predictions")] > 0
    # the join script may still run when Redis is out of memory (a tombstone frees memory)
    store.submit_labels(range(100), np.ones(100), now + 1)
    assert 100 == store.sync(now + 1).counts["joined"]


def test_password_never_shows(redis_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret = "pa55-w0rd-zq"
    server = redis_factory(password=secret)
    url = f"redis://:{secret}@127.0.0.1:{server.port}/0"
    good = _store(url)
    now = time.time()
    good.record([1], np.ones(1), np.full(1, now))
    good.submit_labels([1], np.ones(1), now)
    assert 1 == good.sync(now).counts["joined"]
    bad = _store(f"redis://:wrong-{secret}@127.0.0.1:{server.port}/0", deadline=2.0)
    bad.record([1], np.ones(1), np.full(1, now))
    with caplog.at_level(logging.DEBUG, logger="mlmon"):
        bad.sync(now)
    m = _metrics(bad)
    assert 1.0 == m[("mlmon_store_errors_total", "operation=write")] + m[("mlmon_store_errors_total", "operation=connect")]
    assert 0.0 == m[("mlmon_store_up", "")]
    assert caplog.records
    texts = [repr(good), repr(bad), caplog.text, repr(list(bad.samples()))]
    assert all(secret not in t for t in texts), texts


def test_fork_child_uses_its_own_connection_and_buffers(redis_server: RedisServer) -> None:
    store = _store(redis_server.url)
    now = time.time()
    store.record(range(10), np.ones(10), np.full(10, now))
    store.sync(now)  # the parent now has an open connection
    store.record(range(10, 20), np.ones(10), np.full(10, now))  # buffered in the parent
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            store.after_fork()
            buffered = [v for n, v, _ in store.samples() if n == "mlmon_store_buffered_items"]
            store.record(range(100, 110), np.ones(10), np.full(10, now))
            store.submit_labels(range(5), np.zeros(5), now)
            got = store.sync(now)
            code = 0 if buffered == [0.0, 0.0, 0.0] and got.counts["joined"] == 5 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    # the parent's connection still works and its buffer (10..19) was written once, by it
    store.submit_labels(range(200), np.ones(200), now)
    got = store.sync(now)
    # 5..19 from the parent, 100..109 from the child; 0..4 were joined by the child
    assert (25, 5) == (got.counts["joined"], got.counts["duplicate"])


def test_close_flushes_within_its_timeout(redis_server: RedisServer) -> None:
    store = _store(redis_server.url)
    now = time.time()
    store.record(range(1000), np.ones(1000), np.full(1000, now))
    t0 = time.monotonic()
    store.close(timeout=3.0)
    assert time.monotonic() - t0 < 3.5
    reader = _store(redis_server.url)
    reader.submit_labels(range(1000), np.ones(1000), now)
    assert 1000 == reader.sync(now).counts["joined"]


def test_one_bucket_holds_thousands_of_rows(redis_server: RedisServer) -> None:
    # buckets=1: every row in one hash, so the scripts work through it in slices
    writer, reader = _store(redis_server.url, buckets=1), _store(redis_server.url, buckets=1)
    now = time.time()
    ids = [f"id-{i}" for i in range(5000)]
    writer.record(ids, np.arange(5000, dtype=np.float64), np.full(5000, now))
    writer.sync(now)
    reader.submit_labels([*ids[::-1], "id-7"], np.arange(5001, dtype=np.float64), now)
    got = reader.sync(now)
    assert (5000, 1) == (got.counts["joined"], got.counts["duplicate"])
    assert np.array_equal(np.sort(got.preds), np.arange(5000.0))
    assert np.array_equal(got.preds, 4999.0 - got.labels)


def test_record_and_submit_on_other_threads_while_syncing(redis_server: RedisServer) -> None:
    import threading

    writer, reader = _store(redis_server.url), _store(redis_server.url)
    now = time.time()
    n_threads, per_thread = 4, 5000
    done = threading.Event()
    joined = 0

    def predict(k: int) -> None:
        for lo in range(k * per_thread, (k + 1) * per_thread, 500):
            writer.record(np.arange(lo, lo + 500), np.ones(500), np.full(500, now))

    def label(k: int) -> None:
        for lo in range(k * per_thread, (k + 1) * per_thread, 250):
            reader.submit_labels(np.arange(lo, lo + 250), np.ones(250), now)

    def reporter() -> None:
        nonlocal joined
        while not done.is_set():
            writer.sync(now)
            joined += reader.sync(now).counts["joined"]

    rep = threading.Thread(target=reporter)
    rep.start()
    workers = [threading.Thread(target=f, args=(k,)) for k in range(n_threads) for f in (predict, label)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    done.set()
    rep.join(60)
    for _ in range(3):  # what the last cycle left buffered
        writer.sync(now)
        joined += reader.sync(now).counts["joined"]
    assert n_threads * per_thread == joined
