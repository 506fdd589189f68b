"""Large feature copies reuse memory the drain gave back, and never one still in use."""

from __future__ import annotations

import numpy as np

import mlmon
from mlmon.buffers import POOL, CopyPool
from mlmon.testing import FakeClock


def test_pooled_copies_keep_every_batch_exact_across_drains() -> None:
    rng = np.random.default_rng(3)
    mon = mlmon.Monitor("pool", clock=FakeClock(), feature_names=[f"f{j}" for j in range(20)], emitters=[])
    predict = mon.track(features="X")(lambda X: 0.5)
    seen = []
    for round_ in range(5):
        for _ in range(7):
            X = rng.normal(loc=round_, size=(1000, 20))  # 160 KB: a pooled copy
            seen.append(X.copy())
            predict(X)
            X[:] = 1e9  # the caller reuses its array: the monitor's copy must not change
        snap = mon.snapshot()  # a drain: the copies go back to the pool, then are reused
        assert POOL.free_bytes > 0
    allx = np.concatenate(seen)
    for j in (0, 7, 19):
        got = snap.get("mlmon_feature_mean", feature=f"f{j}")
        assert got is not None and abs(got - allx[:, j].mean()) < 1e-9
        assert snap.get("mlmon_feature_max", feature=f"f{j}") == allx[:, j].max()
    mon.close()


def test_the_pool_hands_a_buffer_out_once_and_only_after_it_is_given_back() -> None:
    pool = CopyPool(max_free=1 << 20)
    a = np.ones((1000, 20))
    c1 = pool.copy(a)
    c2 = pool.copy(a)
    assert c1.base is not c2.base  # nothing given back yet: two buffers
    pool.release(c1)
    pool.release(c1)  # twice: kept once
    assert pool.free_bytes == c1.base.nbytes
    c3 = pool.copy(a * 2)
    assert c3.base is c1.base and pool.free_bytes == 0
    c4 = pool.copy(a)
    assert c4.base is not c1.base
    pool.release(np.ones(3))  # not the pool's: ignored
    pool.release(a[:10])  # a view of the caller's array: ignored
    assert pool.free_bytes == 0
    small = pool.copy(np.ones(10))
    assert small.base is None  # small copies are plain copies
    objs = np.array([object()] * 20_000)
    assert pool.copy(objs).dtype == object  # non-numeric: a plain copy


def test_the_kept_memory_is_bounded_in_all_sizes_together() -> None:
    pool = CopyPool(max_free=3 * (192 << 10))
    copies = [pool.copy(np.ones(20_000)) for _ in range(10)]  # 160 KB each, 192 KiB buffers
    copies += [pool.copy(np.ones((n, 20))) for n in range(600, 1000, 40)]  # other sizes
    for c in copies:
        pool.release(c)
    assert pool.free_bytes <= 3 * (192 << 10)
    assert pool.free_bytes == 3 * (192 << 10)  # filled by the first three given back
