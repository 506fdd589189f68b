"""RedisStore against a real 3-master Redis Cluster: exact joins, and a slot moved mid-run."""

from __future__ import annotations

import time

import numpy as np
from redis_servers import RedisCluster

from mlmon.stores import RedisStore


def _store(cluster: RedisCluster, **kwargs: object) -> RedisStore:
    store = RedisStore(cluster.url, ttl=3600.0, deadline=10.0, **kwargs)  # type: ignore[arg-type]
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
