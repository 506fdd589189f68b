"""mlmon.stores without a Redis server: stable id keys, configuration, buffers, redaction."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from mlmon.stores import REASONS, PredictionStore, RedisStore, StoreJoined
from mlmon.stores._ids import DIGEST_OVER, MAX_ID_BYTES, encode_ids, int_buckets

MIXED = [7, 7.0, np.int16(7), np.float32(7.0), True, "7", b"7", 2.5, "req-α", 2**64, None]


def _m(store: RedisStore, name: str, **labels: str) -> float:
    return sum(v for n, v, lab in store.samples() if n == name and dict(lab) == labels)


def test_fields_follow_the_in_process_rules() -> None:
    fields, buckets = encode_ids(MIXED, 4096)
    assert [7, 7, 7, 7, 1, b"s7", b"b7", b"f2.5", b"s" + "req-α".encode(), b"i18446744073709551616", None] == fields
    assert len(set(buckets[:4].tolist())) == 1 and -1 == buckets[-1]
    assert all(0 <= b < 4096 for b in buckets[:-1].tolist())
    # a UUID is its canonical string; NaN and infinities are unusable
    u = uuid.UUID(int=12345)
    assert encode_ids([u], 64)[0] == encode_ids([str(u)], 64)[0]
    assert [None, None] == encode_ids([float("nan"), float("inf")], 64)[0]


def test_fast_paths_agree_with_the_per_id_path() -> None:
    ids = np.array([0, 1, -5, 2**40, 2**63 - 1], dtype=np.int64)
    fast, fb = encode_ids(ids, 1000)
    slow, sb = encode_ids([int(x) for x in ids] + ["pad"], 1000)
    assert fast.tolist() == slow[:-1] and fb.tolist() == sb[:-1].tolist()
    assert encode_ids(range(3, 6), 1000)[1].tolist() == encode_ids([3.0, 4.0, 5.0], 1000)[1].tolist()
    assert encode_ids(np.array([3.0, 4.0]), 1000)[0].tolist() == [3, 4]


def test_long_ids_are_digested_and_too_long_ids_are_unusable() -> None:
    a, b = "x" * 100 + "a", "x" * 100 + "b"
    fields, _ = encode_ids([a, b, "y" * MAX_ID_BYTES, "y" * (MAX_ID_BYTES + 1)], 64)
    assert fields[0] != fields[1]
    assert all(isinstance(f, bytes) and len(f) <= DIGEST_OVER for f in fields[:3])
    assert fields[3] is None


_CHILD = """
import sys
from mlmon.stores._ids import encode_ids
f, b = encode_ids(["req-1", b"bytes", 12345, 2.5, "ü" * 50], 4096)
print(repr(f), b.tolist())
"""


def test_keys_are_stable_across_processes_with_different_hash_seeds() -> None:
    outs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, check=True
        )
        outs.add(proc.stdout)
    assert 1 == len(outs), outs


def test_int_buckets_spread_sequential_ids() -> None:
    counts = np.bincount(int_buckets(np.arange(64_000, dtype=np.int64), 64), minlength=64)
    assert counts.min() > 800 and counts.max() < 1200


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"retry_for": -1.0}, "retry_for"),
        ({"deadline": 0}, "deadline"),
        ({"max_buffer_bytes": 10}, "max_buffer_bytes"),
        ({"max_buffer_bytes": 2.5}, "max_buffer_bytes"),
        ({"key_prefix": "a{b"}, "key_prefix"),
        ({"buckets": 0}, "buckets"),
        ({"cluster": "yes"}, "cluster"),
        ({"generation": -1.0}, "generation"),
        ({"ttl": 6400.0, "generation": 99.0}, "generation"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RedisStore(**kwargs)  # type: ignore[arg-type]


def test_bad_url_is_a_value_error_without_the_password() -> None:
    with pytest.raises(ValueError, match="url") as info:
        RedisStore("not-a-url")
    assert "not-a-url" in str(info.value)
    with pytest.raises(ValueError, match="url") as info:
        RedisStore("redis:/:hunter2-secret@127.0.0.1")
    assert "hunter2-secret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2-secret@127.0.0.1:6379/0",
        "rediss://alice:hunter2-secret@10.0.0.1:6380/1",
        "redis://127.0.0.1:6379/0?password=hunter2-secret",
    ],
)
def test_password_is_redacted(url: str) -> None:
    store = RedisStore(url)
    assert "hunter2-secret" not in repr(store)
    assert "***" in repr(store)
    assert "hunter2-secret" not in repr(list(store.samples()))


def test_is_a_prediction_store_and_counts_have_every_reason() -> None:
    store = RedisStore()
    assert isinstance(store, PredictionStore)
    empty = StoreJoined(np.empty(0), np.empty(0), np.empty(0), dict.fromkeys(REASONS, 0))
    assert ("joined", "unmatched", "expired", "duplicate", "invalid", "dropped") == tuple(empty.counts)


def test_submit_labels_length_mismatch_is_the_only_error() -> None:
    store = RedisStore()
    with pytest.raises(ValueError, match="same length"):
        store.submit_labels([1, 2], np.array([1.0]), time.time())
    store.submit_labels([None, "a", float("nan")], np.array([1.0, np.nan, 1.0]), time.time())
    store.record([[1], object()], np.array([1.0, 2.0]), np.array([1.0, 2.0]))  # unusable ids
    store.record([1, 2, 3], np.array([1.0]), np.array([1.0]))  # misaligned: counted, not raised
    assert 2 + 2 == _m(store, "mlmon_store_invalid_ids_total", buffer="store_predictions")
    assert 1 == _m(store, "mlmon_store_buffered_items", buffer="store_predictions")
    assert 0 == _m(store, "mlmon_store_buffered_items", buffer="store_labels")


def test_buffers_are_bounded_in_bytes_and_overflow_is_counted() -> None:
    store = RedisStore(max_buffer_bytes=64 * 1024)
    now = time.time()
    store.record(np.arange(10_000), np.ones(10_000), np.full(10_000, now))
    kept = _m(store, "mlmon_store_buffered_items", buffer="store_predictions")
    assert 0 < kept < 10_000
    assert _m(store, "mlmon_store_buffered_bytes", buffer="store_predictions") <= 32 * 1024
    assert 10_000 - kept == _m(store, "mlmon_dropped_total", buffer="store_predictions")
    store.submit_labels([f"id-{i}" for i in range(5000)], np.ones(5000), now)
    assert _m(store, "mlmon_store_buffered_bytes", buffer="store_labels") <= 32 * 1024
    assert _m(store, "mlmon_dropped_total", buffer="store_labels") > 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sync_without_redis_never_raises_and_keeps_the_buffer() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", deadline=1.0)
    now = time.time()
    store.record([1, 2], np.ones(2), np.full(2, now))
    store.submit_labels([1], np.ones(1), now)
    t0 = time.monotonic()
    got = store.sync(now)
    assert time.monotonic() - t0 < 4.0
    assert 0 == len(got.preds) and 0 == sum(got.counts.values())
    assert 1 == _m(store, "mlmon_store_errors_total", operation="connect")
    assert 0.0 == _m(store, "mlmon_store_up")
    assert (2, 1) == (
        _m(store, "mlmon_store_buffered_items", buffer="store_predictions"),
        _m(store, "mlmon_store_buffered_items", buffer="store_labels"),
    )
    store.close(timeout=0.5)


def test_counts_from_the_hot_paths_reach_the_next_sync() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", max_buffer_bytes=8192, deadline=0.5)
    store.submit_labels([None, 1], np.ones(2), time.time())
    store.record(np.arange(1000), np.ones(1000), np.full(1000, time.time()))
    got = store.sync(time.time())
    assert 1 == got.counts["invalid"] and got.counts["dropped"] > 0
    assert 0 == store.sync(time.time()).counts["invalid"]  # counted once


def test_after_fork_forgets_buffers_and_counters() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", deadline=0.5)
    store.record([1, 2], np.ones(2), np.full(2, time.time()))
    store.submit_labels([None], np.ones(1), time.time())
    store.after_fork()
    assert 0 == _m(store, "mlmon_store_buffered_items", buffer="store_predictions")
    assert 0 == store.sync(time.time()).counts["invalid"]


def test_bind_namespaces_keys_stably() -> None:
    a = RedisStore(ttl=3600.0, buckets=64, generation=60.0)
    b = RedisStore(ttl=3600.0, buckets=64, generation=60.0)
    a.bind("churn {model}", "v:1")
    b.bind("churn {model}", "v:1")
    key = a.key("req-1", 3600.0)
    assert key == b.key("req-1", 3600.0)
    assert key is not None and key.count("{") == 1 and key.endswith(":60")
    b.bind("churn {model}", "v:2")
    assert key != b.key("req-1", 3600.0)
    assert a.key(None, 1.0) is None


def test_labels_that_are_not_numbers_are_invalid_alone() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", deadline=0.5)
    store.submit_labels([1, 2, 3], ["1", "cat", None], time.time())  # type: ignore[arg-type]
    assert 1 == _m(store, "mlmon_store_buffered_items", buffer="store_labels")
    assert 2 == store.sync(time.time()).counts["invalid"]


def test_a_forked_child_never_resends_the_parents_buffer() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", deadline=0.5)
    store.record(range(100), np.ones(100), np.full(100, time.time()))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: the monitor forgot to call after_fork()
        store.record([1], np.ones(1), np.full(1, time.time()))
        ok = _m(store, "mlmon_store_buffered_items", buffer="store_predictions") == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    assert 100 == _m(store, "mlmon_store_buffered_items", buffer="store_predictions")


# -- segments ------------------------------------------------------------------------------------


def test_store_joined_keeps_its_four_field_constructor() -> None:
    j = StoreJoined(np.ones(2), np.ones(2), np.zeros(2), {"joined": 2})
    assert (0, np.uint32) == (len(j.segments), j.segments.dtype)
    assert {} == dict(j.segment_names)
    with pytest.raises(ValueError):  # the shared default cannot be changed in place
        j.segments.resize(3)
    with pytest.raises(TypeError):
        j.segment_names[1] = "x"  # type: ignore[index]
    full = StoreJoined(np.ones(1), np.ones(1), np.zeros(1), {}, np.array([5], np.uint32), {5: "eu"})
    assert ("eu", 5) == (full.segment_names[5], int(full.segments[0]))


class _OldStore:
    """A store written before segments: no ``segments`` argument, no ``name_segments``."""

    def bind(self, model: str, version: str | None) -> None: ...
    def record(self, ids: object, preds: object, made_at: object) -> None: ...
    def submit_labels(self, ids: object, labels: object, received_at: float) -> None: ...
    def sync(self, now: float) -> StoreJoined:
        return StoreJoined(np.empty(0), np.empty(0), np.empty(0), {})
    def samples(self) -> list[tuple[str, float, dict[str, str]]]:
        return []
    def after_fork(self) -> None: ...
    def close(self, timeout: float = 5.0) -> None: ...


def test_a_store_without_segments_is_still_a_prediction_store() -> None:
    old = _OldStore()
    assert isinstance(old, PredictionStore)
    assert getattr(old, "name_segments", None) is None
    got = old.sync(0.0)
    assert 0 == len(getattr(got, "segments", ())) and {} == dict(getattr(got, "segment_names", {}))
    assert callable(getattr(RedisStore(), "name_segments", None))


def test_name_segments_buffers_only_and_counts_what_it_cannot_keep() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", max_buffer_bytes=4096, deadline=0.5)
    store.name_segments({1: "eu", 2: "us"})
    store.name_segments({1: "eu", 2: "us"})  # idempotent: still two names waiting
    assert 2 == _m(store, "mlmon_store_buffered_items", buffer="store_segment_names")
    bad = {0: "zero", 2**32: "too big", -3: "negative", 4: None, 5: "x" * 4097}
    store.name_segments(bad)  # type: ignore[arg-type]
    assert 5 == _m(store, "mlmon_dropped_total", buffer="store_segment_names")
    store.name_segments(None)  # type: ignore[arg-type]  # not a mapping: counted, not raised
    assert 1 == _m(store, "mlmon_store_errors_total", operation="names")
    # bounded: 64 KiB of names waiting (the bound of a store of max_buffer_bytes=4096)
    store.name_segments({10 + i: f"{i:05d}" + "n" * 995 for i in range(200)})
    waiting = _m(store, "mlmon_store_buffered_bytes", buffer="store_segment_names")
    assert 0 < waiting <= 1 << 16
    kept = _m(store, "mlmon_store_buffered_items", buffer="store_segment_names")
    assert 200 + 2 - kept == _m(store, "mlmon_dropped_total", buffer="store_segment_names") - 5
    t0 = time.monotonic()
    store.sync(time.time())  # Redis is absent: the names stay waiting, bounded
    assert time.monotonic() - t0 < 4.0
    assert kept == _m(store, "mlmon_store_buffered_items", buffer="store_segment_names")


def test_name_cache_is_bounded_in_bytes_least_recently_used_out() -> None:
    from mlmon.stores._redis_names import _NameCache

    cache = _NameCache(10_000)
    for code in range(1, 1001):
        cache.put(code, "n" * 100, written=False)
        if code > 1:
            assert cache.get(1) is not None  # kept: used after every insertion
    assert cache.nbytes <= 10_000 and len(cache) < 1000
    assert cache.evicted == 1000 - len(cache)
    assert "n" * 100 == cache.get(1) and cache.get(2) is None
    cache.put(5000, "x" * 20_000, written=True)  # larger than the whole cache: not kept
    assert cache.get(5000) is None and cache.nbytes <= 10_000


def test_segments_are_buffered_with_their_predictions() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", deadline=0.5)
    now = time.time()
    store.record(np.arange(100), np.ones(100), np.full(100, now))
    plain = _m(store, "mlmon_store_buffered_bytes", buffer="store_predictions")
    store.record(np.arange(100, 200), np.ones(100), np.full(100, now), np.full(100, 7, np.uint32))
    both = _m(store, "mlmon_store_buffered_bytes", buffer="store_predictions")
    assert both - plain == plain + 4 * 100  # 4 more bytes a row for the segment code
    codes = np.full(100, 7, np.uint32)
    store.record(np.arange(200, 300), np.ones(100), np.full(100, now), codes)
    codes[:] = 9  # the caller reuses its array: the store kept a copy
    store._encode_pending()
    chunk = store._preds.take_all()
    tags = np.concatenate([c.tags if c.tags is not None else np.zeros(len(c), np.uint32) for c in chunk])
    assert [0] * 100 + [7] * 200 == tags.tolist()


def test_after_fork_keeps_segment_names_and_changes_claim_tokens() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", deadline=0.5)
    store.name_segments({1: "eu", 2: "us"})
    parent_next = store._token_next
    store.after_fork()
    assert 2 == _m(store, "mlmon_store_buffered_items", buffer="store_segment_names")
    assert "eu" == store._names.get(1)
    assert store._token_next != parent_next  # a child's labels never share a parent's tokens
