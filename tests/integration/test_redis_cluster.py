"""RedisStore against a real 3-master Redis Cluster: exact joins, and a slot moved mid-run."""

from __future__ import annotations

import time

import numpy as np
from redis_servers import RedisCluster

from mlmon.stores import RedisStore


def _store(cluster: RedisCluster, **kwargs: object) -> RedisStore:
    kwargs.setdefault("deadline", 10.0)
    store = RedisStore(cluster.url, ttl=3600.0, **kwargs)  # type: ignore[arg-type]
    store.bind("churn", "v1")
    return store


def test_cluster_is_detected_and_joins_exactly_across_instances(redis_cluster: RedisCluster) -> None:
    writer, reader = _store(redis_cluster), _store(redis_cluster)
    now = time.time()
    ids = [f"req-{i}" for i in range(3000)] + list(range(3000))
    preds = np.arange(6000, dtype=np.float64) % 5
    writer.record(ids, preds, np.full(6000, now - 10.0))
    assert 0 == writer.sync(now).counts["joined"]
    assert writer._is_cluster
    # every master holds some of the keys: the shards really spread over the slots
    sizes = [int(n.cli("DBSIZE")) for n in redis_cluster.nodes]
    assert all(s > 0 for s in sizes), sizes

    order = np.random.default_rng(1).permutation(6000)
    labels = (np.arange(6000, dtype=np.float64) % 3)[order]
    reader.submit_labels([ids[i] for i in order], labels, now)
    got = reader.sync(now)
    assert 6000 == got.counts["joined"]
    assert 0 == got.counts["unmatched"] + got.counts["duplicate"]
    # joined rows come back aligned: the prediction recorded for each id with its label
    pairs = sorted(zip(got.labels.tolist(), got.preds.tolist(), strict=True))
    expected = sorted(zip(labels.tolist(), preds[order].tolist(), strict=True))
    assert expected == pairs
    assert np.allclose(got.delays, 10.0, atol=1e-3)
    assert 1.0 == dict((n, v) for n, v, _ in reader.samples())["mlmon_store_up"]


def test_slot_moved_mid_run_still_joins(redis_cluster: RedisCluster) -> None:
    from redis.crc import key_slot  # redis-py is there: the fixture checked

    writer, reader = _store(redis_cluster, buckets=16), _store(redis_cluster, buckets=16)
    now = time.time()
    ids = np.arange(2000)
    writer.record(ids, ids % 2, np.full(2000, now))
    writer.sync(now)
    reader.sync(now)  # the reader's client has learnt the slot map before the move
    moved_total = 0
    for shard in range(16):
        slot = key_slot(writer._shard_key(shard).encode())
        source = redis_cluster.node_of_slot(slot)
        target = next(n for n in redis_cluster.nodes if n is not source)
        moved_total += redis_cluster.move_slot(slot, target)
    assert moved_total > 0
    # predictions recorded after the move land on the new owners too
    writer.record(np.arange(2000, 2500), np.ones(500), np.full(500, now))
    got_w = writer.sync(now)
    reader.submit_labels(np.arange(2500), np.ones(2500), now + 1.0)
    joined = 0
    for _ in range(5):  # MOVED replies refresh the slot map; errors are retried next sync
        got = reader.sync(now + 1.0)
        joined += got.counts["joined"]
        if joined == 2500:
            break
    assert 2500 == joined, (got_w.counts, dict((n, v) for n, v, _ in reader.samples() if "err" in n))


def test_writes_and_joins_while_slots_are_half_migrated(redis_cluster: RedisCluster) -> None:
    from redis.crc import key_slot

    writer, reader = _store(redis_cluster, buckets=16), _store(redis_cluster, buckets=16)
    now = time.time()
    # four generations: four hashes per bucket, so per slot
    made = now - (np.arange(2000) % 4) * writer.generation
    writer.record(np.arange(2000), np.arange(2000) % 2, made)
    writer.sync(now)
    moves = []
    for shard in range(16):
        slot = key_slot(writer._shard_key(shard).encode())
        source = redis_cluster.node_of_slot(slot)
        target = next(n for n in redis_cluster.nodes if n is not source)
        redis_cluster.begin_move(slot, target)
        redis_cluster.migrate_keys(slot, source, target, limit=2)  # half of its hashes moved
        moves.append((slot, source, target))
    # mid-migration: new predictions (into hashes on either side) and labels for all of them
    writer.record(np.arange(2000, 3000), np.arange(2000, 3000) % 2, np.full(1000, now))
    reader.submit_labels(np.arange(3000), np.arange(3000) % 2, now + 1.0)
    joined = 0
    for _ in range(3):
        writer.sync(now)
        joined += reader.sync(now + 1.0).counts["joined"]
    # the store never created a hash on the importing node that still existed on the source:
    # finishing the migration hits no BUSYKEY
    for slot, source, target in moves:
        redis_cluster.migrate_keys(slot, source, target)
        redis_cluster.finish_move(slot, target)
    for _ in range(5):
        writer.sync(now)
        joined += reader.sync(now + 1.0).counts["joined"]
        if joined == 3000:
            break
    assert 3000 == joined
    assert 0 == _m_buffered(writer)


def _m_buffered(store: RedisStore) -> float:
    return sum(v for n, v, _ in store.samples() if n == "mlmon_store_buffered_items")


def test_hung_cluster_node_keeps_the_deadline_then_recovers(redis_cluster: RedisCluster) -> None:
    store = _store(redis_cluster, deadline=0.5)
    now = time.time()
    store.record(np.arange(3000), np.ones(3000), np.full(3000, now))
    store.sync(now)
    redis_cluster.nodes[1].pause()  # one master stops answering; its sockets stay open
    try:
        store.record(np.arange(3000, 6000), np.ones(3000), np.full(3000, now))
        store.submit_labels(np.arange(6000), np.ones(6000), now)
        for _ in range(2):
            t0 = time.monotonic()
            store.sync(now)
            assert time.monotonic() - t0 < 1.0  # deadline 0.5 s, plus slack
        assert 0.0 == sum(v for n, v, _ in store.samples() if n == "mlmon_store_up")
    finally:
        redis_cluster.nodes[1].resume()
    joined = 0
    for _ in range(5):
        joined += store.sync(now).counts["joined"]
        if joined == 6000:
            break
    assert 6000 == joined
