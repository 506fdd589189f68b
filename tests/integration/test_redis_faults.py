"""RedisStore when Redis misbehaves: absent, killed, restarted empty, hung, black-holed; and
bad or flooding input. ``sync`` returns within its deadline, counts the failure, keeps its
buffers bounded, and recovers when Redis is back."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from redis_servers import Blackhole, RedisServer

from mlmon.stores import RedisStore


def _store(url: str, **kwargs: Any) -> RedisStore:
    kwargs.setdefault("ttl", 3600.0)
    store = RedisStore(url, **kwargs)
    store.bind("churn", "v1")
    return store


def _m(store: RedisStore, name: str, **labels: str) -> float:
    return sum(v for n, v, lab in store.samples() if n == name and dict(lab) == labels)


def _errors(store: RedisStore) -> float:
    return sum(v for n, v, _ in store.samples() if n == "mlmon_store_errors_total")


def _timed_sync(store: RedisStore, now: float) -> tuple[float, Any]:
    t0 = time.monotonic()
    got = store.sync(now)
    return time.monotonic() - t0, got


def test_absent_at_start_then_recovers(redis_server: RedisServer) -> None:
    redis_server.kill()  # nothing listens on its port any more
    store = _store(redis_server.url, deadline=1.0)
    now = time.time()
    store.record(range(500), np.ones(500), np.full(500, now))
    store.submit_labels(range(100), np.ones(100), now)
    took, got = _timed_sync(store, now)
    assert took < 1.5
    assert 0 == got.counts["joined"]
    assert _errors(store) >= 1 and 0.0 == _m(store, "mlmon_store_up")
    assert 500 == _m(store, "mlmon_store_buffered_items", buffer="store_predictions")
    assert 100 == _m(store, "mlmon_store_buffered_items", buffer="store_labels")
    redis_server.restart()  # same port
    got = store.sync(time.time())
    assert 100 == got.counts["joined"] and 1.0 == _m(store, "mlmon_store_up")
    assert 0 == _m(store, "mlmon_store_buffered_items", buffer="store_predictions")


def test_killed_mid_run_and_restarted_empty(redis_server: RedisServer) -> None:
    store = _store(redis_server.url, deadline=1.0, retry_for=5.0)
    now = time.time()
    store.record(range(1000), np.ones(1000), np.full(1000, now))
    store.sync(now)
    redis_server.kill()
    store.record(range(1000, 2000), np.ones(1000), np.full(1000, now))
    took, _ = _timed_sync(store, now)
    assert took < 1.5 and _m(store, "mlmon_store_errors_total", operation="write") >= 1
    redis_server.restart()  # no persistence: the first 1000 are gone
    store.submit_labels(range(2000), np.ones(2000), now)
    got = store.sync(now)
    assert 1000 == got.counts["joined"]  # the buffered second half was written after the restart
    got = store.sync(now + 6.0)
    assert 1000 == got.counts["unmatched"]  # the lost half: unmatched, never a wrong join


def test_hung_redis_sync_keeps_its_deadline_then_recovers(redis_server: RedisServer) -> None:
    store = _store(redis_server.url, deadline=0.5)
    now = time.time()
    store.record(range(100), np.ones(100), np.full(100, now))
    store.sync(now)  # connected
    redis_server.pause()  # SIGSTOP: the socket stays open, nothing answers
    try:
        store.record(range(100, 300), np.ones(200), np.full(200, now))
        store.submit_labels(range(300), np.ones(300), now)
        for _ in range(3):
            took, got = _timed_sync(store, now)
            assert took < 1.0, took  # deadline 0.5 s, plus slack for a loaded machine
            assert 0 == got.counts["joined"]
        assert _errors(store) >= 3 and 0.0 == _m(store, "mlmon_store_up")
    finally:
        redis_server.resume()
    got = store.sync(now)
    assert 300 == got.counts["joined"] and 1.0 == _m(store, "mlmon_store_up")


def test_blackhole_deadline_bounded_buffers_and_drops_counted(blackhole: Blackhole) -> None:
    limit = 64 * 1024
    store = _store(blackhole.url, deadline=0.4, max_buffer_bytes=limit)
    now = time.time()
    for k in range(4):
        store.record(np.arange(k * 2000, (k + 1) * 2000), np.ones(2000), np.full(2000, now))
        store.submit_labels([f"label-{i}" for i in range(k * 500, (k + 1) * 500)], np.ones(500), now)
        took, got = _timed_sync(store, now)
        assert took < 0.9, took  # deadline 0.4 s, plus slack for a loaded machine
        assert 0 == got.counts["joined"]
        assert _m(store, "mlmon_store_buffered_bytes", buffer="store_predictions") <= limit / 2
        assert _m(store, "mlmon_store_buffered_bytes", buffer="store_labels") <= limit / 2
    assert _errors(store) >= 4
    assert _m(store, "mlmon_dropped_total", buffer="store_predictions") > 0
    assert _m(store, "mlmon_dropped_total", buffer="store_labels") > 0
    kept = _m(store, "mlmon_store_buffered_items", buffer="store_predictions")
    assert kept + _m(store, "mlmon_dropped_total", buffer="store_predictions") == 8000


def test_close_on_a_blackhole_returns_within_its_timeout(blackhole: Blackhole) -> None:
    store = _store(blackhole.url, deadline=5.0)
    store.record(range(10), np.ones(10), np.full(10, time.time()))
    t0 = time.monotonic()
    store.close(timeout=0.5)
    assert time.monotonic() - t0 < 1.0  # timeout 0.5 s, plus slack


def test_bad_ids_and_label_floods_are_bounded_and_counted(redis_server: RedisServer) -> None:
    limit = 1 << 20
    store = _store(redis_server.url, retry_for=10.0, max_buffer_bytes=limit)
    client = redis_server.client()
    now = time.time()
    ids: list[Any] = [1, "ok", "y" * 300, b"z" * 257, None, float("nan"), object(), [1, 2], 3.0]
    store.record(ids, np.ones(len(ids)), np.full(len(ids), now))
    assert 6 == _m(store, "mlmon_store_invalid_ids_total", buffer="store_predictions")
    store.sync(now)
    store.submit_labels(ids, np.ones(len(ids)), now)
    got = store.sync(now)
    assert (3, 6) == (got.counts["joined"], got.counts["invalid"])
    # a flood of labels for unknown ids: bounded buffer, overflow dropped, the rest unmatched
    before = int(client.info("memory")["used_memory"])
    n = 100_000
    store.submit_labels([f"unknown-{i}" for i in range(n)], np.ones(n), now)
    assert _m(store, "mlmon_store_buffered_bytes", buffer="store_labels") <= limit / 2
    dropped = store.sync(now).counts["dropped"]
    assert dropped > 0
    got = store.sync(now + 11.0)
    assert n == dropped + got.counts["unmatched"]
    assert 0 == _m(store, "mlmon_store_buffered_items", buffer="store_labels")
    # looking labels up writes nothing to Redis
    assert int(client.info("memory")["used_memory"]) - before < 256 * 1024
