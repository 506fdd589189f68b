"""The feedback join: every outcome of a label, ids of every kind, bounds, and a model check
against a plain-dict reference implementation on random operation sequences."""

from __future__ import annotations

import math
import os
import tracemalloc
from collections import deque
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlmon.feedback as fb
from mlmon.feedback import FeedbackJoin, as_batch, id_keys, label_array

NAN = math.nan


def join(store: FeedbackJoin, ids: Any, labels: list[float], now: float) -> fb.Joined:
    codes = np.array(labels, dtype=np.float64)
    return store.join(ids, codes, ~np.isnan(codes), now)


def counts(store: FeedbackJoin) -> dict[str, int]:
    names = ("joined", "unmatched", "expired", "duplicate", "evicted", "invalid")
    return {n: getattr(store, n) for n in names}


def fresh(**kw: Any) -> FeedbackJoin:
    return FeedbackJoin(**{"max_pending": 100, "ttl": 100.0, **kw})


# -- ids and batches ---------------------------------------------------------------------------
def test_integer_ids_are_their_own_keys() -> None:
    keys, ok = id_keys([0, -1, -2, 2**63 - 1, -(2**63)])
    assert keys.tolist() == [0, -1, -2, 2**63 - 1, -(2**63)]
    assert ok.all()


def test_ids_equal_in_python_share_a_key() -> None:
    keys, ok = id_keys([7, 7.0, np.int32(7), np.float64(7.0), True, 1])
    assert ok.all()
    assert keys.tolist() == [7, 7, 7, 7, 1, 1]
    assert id_keys(np.array([7.0, 8.0]))[0].tolist() == id_keys(np.array([7, 8]))[0].tolist()


def test_string_and_other_hashable_ids_use_their_hash() -> None:
    keys, ok = id_keys(["a", b"a", ("a", 1), 2**70, 0.5])
    assert ok.all()
    assert keys.tolist() == [hash("a"), hash(b"a"), hash(("a", 1)), hash(2**70), hash(0.5)]
    assert id_keys(np.array(["a", "b"]))[0].tolist() == [hash("a"), hash("b")]


def test_unusable_ids_are_flagged() -> None:
    _, ok = id_keys([None, NAN, [1], {"a": 1}, {1}, "fine"])
    assert ok.tolist() == [False, False, False, False, False, True]
    _, ok = id_keys(np.array([1.0, NAN]))
    assert ok.tolist() == [True, False]


def test_ranges_and_unsigned_arrays() -> None:
    assert id_keys(range(5, 8))[0].tolist() == [5, 6, 7]
    assert id_keys(range(2**64, 2**64 + 2))[0].tolist() == [hash(2**64), hash(2**64 + 1)]
    big = np.array([2**64 - 1], dtype=np.uint64)
    assert id_keys(big)[0].tolist() == [hash(2**64 - 1)]
    assert id_keys(np.array([1, 2], dtype=np.uint8))[0].tolist() == [1, 2]


def test_as_batch_tells_single_ids_from_batches() -> None:
    assert as_batch("abc") == ["abc"]
    assert as_batch(b"abc") == [b"abc"]
    assert as_batch(5) == [5]
    assert as_batch((1, 2)) == [1, 2]
    assert as_batch(x for x in [1, 2]) == [1, 2]
    assert as_batch(np.array(3)) == [3]
    assert as_batch(np.array([[1], [2]])).tolist() == [1, 2]
    assert as_batch({"a": 1}) == [{"a": 1}]
    assert as_batch(frozenset({1})) == [frozenset({1})]


def test_label_array_keeps_mixed_values_apart() -> None:
    assert label_array([1, 0]).dtype.kind == "i"
    assert label_array(["a", "b"]).dtype.kind == "U"
    mixed = label_array([1, "1", None])
    assert mixed.dtype == object and mixed.tolist() == [1, "1", None]


# -- the outcome of each label -----------------------------------------------------------------
def test_label_joins_its_prediction_with_delay() -> None:
    store = fresh()
    store.record(["a", "b"], np.array([1.0, 0.0]), now=10.0)
    j = join(store, ["b"], [1.0], now=14.0)
    assert (j.preds.tolist(), j.labels.tolist(), j.delays.tolist()) == ([0.0], [1.0], [4.0])
    assert counts(store)["joined"] == 1
    assert store.pending(14.0) == 1


def test_unknown_id_is_unmatched() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=0.0)
    join(store, [2], [1.0], now=1.0)
    assert counts(store)["unmatched"] == 1


def test_label_before_its_prediction_is_unmatched_and_a_later_label_joins() -> None:
    store = fresh()
    join(store, ["early"], [1.0], now=0.0)
    store.record(["early"], np.array([1.0]), now=1.0)
    join(store, ["early"], [1.0], now=2.0)
    assert (store.unmatched, store.joined) == (1, 1)


def test_label_after_ttl_is_expired() -> None:
    store = fresh(ttl=10.0)
    store.record([1, 2], np.array([1.0, 1.0]), now=0.0)
    join(store, [1], [1.0], now=10.0)  # exactly ttl old: still joinable
    join(store, [2], [1.0], now=10.5)
    assert (store.joined, store.expired) == (1, 1)
    assert store.pending(10.5) == 0


def test_expired_predictions_are_forgotten_after_twice_the_ttl() -> None:
    store = fresh(ttl=10.0)
    store.record([1], np.array([1.0]), now=0.0)
    store.record([2], np.array([1.0]), now=21.0)  # drops the prediction of id 1
    join(store, [1], [1.0], now=21.0)
    assert (store.expired, store.unmatched, store.stored) == (0, 1, 1)


def test_second_label_is_a_duplicate_and_the_first_wins() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=0.0)
    first = join(store, [1], [0.0], now=1.0)
    second = join(store, [1], [1.0], now=2.0)
    assert first.labels.tolist() == [0.0] and second.labels.size == 0
    assert (store.joined, store.duplicate) == (1, 1)


def test_duplicate_within_one_batch_first_wins() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=0.0)
    j = join(store, [1, 1, 1], [0.0, 1.0, 1.0], now=1.0)
    assert j.labels.tolist() == [0.0]
    assert (store.joined, store.duplicate) == (1, 2)


def test_second_label_for_an_expired_prediction_is_expired_too() -> None:
    store = fresh(ttl=1.0)
    store.record([1], np.array([1.0]), now=0.0)
    join(store, [1, 1], [1.0, 1.0], now=1.5)
    assert (store.expired, store.duplicate) == (2, 0)


def test_invalid_label_is_counted_and_the_prediction_stays_pending() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=0.0)
    join(store, [1], [NAN], now=1.0)
    assert (store.invalid, store.pending(1.0)) == (1, 1)
    join(store, [1], [1.0], now=2.0)
    assert store.joined == 1


def test_unhashable_and_missing_ids_are_invalid() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=0.0)
    join(store, [[1], None, NAN, {"a": 1}, 1], [1.0] * 5, now=1.0)
    assert (store.invalid, store.joined) == (4, 1)


def test_full_store_evicts_the_oldest_pending_predictions() -> None:
    store = fresh(max_pending=3)
    store.record([1, 2, 3], np.ones(3), now=0.0)
    join(store, [1], [1.0], now=0.5)  # a labelled prediction is not "lost" when evicted
    store.record([4, 5], np.ones(2), now=1.0)
    assert store.evicted == 1  # id 1 (labelled) and id 2 (pending) left; only 2 counts
    join(store, [2, 3, 4, 5], [1.0] * 4, now=2.0)
    assert (store.unmatched, store.joined) == (1, 4)
    assert store.stored == 3


def test_batch_larger_than_the_store_keeps_its_newest() -> None:
    store = fresh(max_pending=2)
    store.record([1, 2, 3, 4], np.ones(4), now=0.0)
    assert store.evicted == 2
    join(store, [1, 2, 3, 4], [1.0] * 4, now=1.0)
    assert (store.unmatched, store.joined) == (2, 2)


def test_recording_an_id_again_replaces_its_prediction() -> None:
    store = fresh()
    store.record(["x"], np.array([0.0]), now=0.0)
    store.record(["x"], np.array([1.0]), now=5.0)
    j = join(store, ["x"], [1.0], now=6.0)
    assert (j.preds.tolist(), j.delays.tolist()) == ([1.0], [1.0])
    assert store.pending(6.0) == 0


def test_duplicate_ids_within_a_record_batch_last_wins() -> None:
    store = fresh()
    store.record(["x", "y", "x"], np.array([0.0, 0.0, 1.0]), now=0.0)
    assert store.pending(0.0) == 2
    assert join(store, ["x"], [1.0], now=1.0).preds.tolist() == [1.0]


def test_repeated_id_is_deduplicated_whatever_the_keys_magnitude() -> None:
    # Keys near both ends of int64: their differences overflow.
    ids = [5, 2**62 + 1, -(2**62) - 2, 5]
    store = fresh()
    store.record(ids, np.array([0.0, 1.0, 1.0, 1.0]), now=0.0)
    assert (store.stored, store.pending(0.0)) == (3, 3)
    assert join(store, [5, 5], [1.0, 1.0], now=1.0).preds.tolist() == [1.0]
    assert store.duplicate == 1


def test_invalid_predictions_and_ids_are_not_stored() -> None:
    store = fresh()
    store.record([1, 2, None], np.array([NAN, 1.0, 1.0]), now=0.0)
    assert (store.pending(0.0), store.bad_ids) == (1, 1)


def test_length_mismatch_raises_without_changing_anything() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=0.0)
    with pytest.raises(ValueError, match="length"):
        join(store, [1, 2], [1.0], now=1.0)
    with pytest.raises(ValueError, match="length"):
        store.record([1, 2], np.array([1.0]), now=1.0)
    assert counts(store) == counts(fresh())


def test_join_one_outcomes() -> None:
    store = fresh(ttl=10.0)
    store.record([1, 2], np.array([1.0, 0.0]), now=0.0)
    assert store.join_one(1, 1.0, now=2.0) == (1.0, 2.0, 0)
    assert store.join_one(1, 1.0, now=2.0) is None  # duplicate
    assert store.join_one(9, 1.0, now=2.0) is None  # unmatched
    assert store.join_one([1], 1.0, now=2.0) is None  # invalid id
    assert store.join_one(2, NAN, now=2.0) is None  # invalid label
    assert store.join_one(2, 1.0, now=11.0) is None  # expired
    assert counts(store) == {
        "joined": 1, "unmatched": 1, "expired": 1, "duplicate": 1, "evicted": 0, "invalid": 2
    }  # fmt: skip


def test_time_going_backwards_never_yields_negative_delays() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=10.0)
    assert join(store, [1], [1.0], now=5.0).delays.tolist() == [0.0]


def test_reset_forgets_everything() -> None:
    store = fresh()
    store.record([1], np.array([1.0]), now=0.0)
    join(store, [1, 2], [1.0, 1.0], now=0.0)
    store.reset()
    assert counts(store) == counts(fresh())
    assert store.stored == 0


@pytest.mark.parametrize(
    ("max_pending", "ttl"), [(0, 1.0), (True, 1.0), (1.5, 1.0), (1, 0), (1, NAN), (1, "1")]
)
def test_bad_configuration_raises(max_pending: Any, ttl: Any) -> None:
    with pytest.raises(ValueError, match="max_pending" if ttl == 1.0 else "ttl"):
        FeedbackJoin(max_pending=max_pending, ttl=ttl)


# -- memory ------------------------------------------------------------------------------------
def test_memory_per_stored_prediction_stays_under_150_bytes() -> None:
    n = 100_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = FeedbackJoin(max_pending=n)
        for lo in range(0, 2 * n, 10_000):  # fill, then churn through a second round
            store.record(range(lo, lo + 10_000), np.ones(10_000), now=float(lo))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.stored == n
    assert held / n < 150
    assert store.nbytes() / n < 150


def test_ring_shrinks_after_predictions_expire() -> None:
    store = FeedbackJoin(max_pending=100_000, ttl=1.0)
    store.record(range(50_000), np.ones(50_000), now=0.0)
    big = store.nbytes()
    store.record([1], np.ones(1), now=10.0)
    assert store.nbytes() < big / 4
    assert store.join_one(1, 1.0, now=10.0) is not None


# -- model check against a plain reference -----------------------------------------------------
class Reference:
    """The documented semantics, written the obvious way."""

    def __init__(self, max_pending: int, ttl: float) -> None:
        self.cap, self.ttl = max_pending, ttl
        self.ring: deque[list[Any]] = deque()  # [id, pred, time, state, seq] oldest first
        self.seq = 0
        self.latest: dict[Any, list[Any]] = {}
        self.last = -math.inf
        self.c = dict.fromkeys(
            ("joined", "unmatched", "expired", "duplicate", "evicted", "invalid"), 0
        )

    def _stored(self, e: list[Any] | None) -> bool:
        return e is not None and bool(self.ring) and e[4] >= self.ring[0][4]

    def _drop(self, now: float) -> None:
        while self.ring and self.ring[0][2] < now - 2 * self.ttl:
            self.ring.popleft()

    def record(self, ids: list[Any], preds: list[float], now: float) -> None:
        last: dict[Any, int] = {}
        for i, (x, p) in enumerate(zip(ids, preds, strict=True)):
            if x is not None and not (isinstance(x, float) and math.isnan(x)) and not math.isnan(p):
                last.pop(x, None)
                last[x] = i
        order = sorted(last.values())
        if len(order) > self.cap:
            self.c["evicted"] += len(order) - self.cap
            order = order[-self.cap :]
        now = max(now, self.last)
        self.last = now
        self._drop(now)
        for i in order:
            e = self.latest.get(ids[i])
            if self._stored(e):
                e[3] = "dead"  # type: ignore[index]
        while len(self.ring) + len(order) > self.cap:
            e = self.ring.popleft()
            if e[3] == "pending" and e[2] >= now - self.ttl:
                self.c["evicted"] += 1
        for i in order:
            e = [ids[i], preds[i], now, "pending", self.seq]
            self.seq += 1
            self.ring.append(e)
            self.latest[ids[i]] = e

    def join(
        self, ids: list[Any], labels: list[float], now: float
    ) -> list[tuple[float, float, float]]:
        self._drop(now)
        out = []
        for x, y in zip(ids, labels, strict=True):
            if x is None or (isinstance(x, float) and math.isnan(x)) or math.isnan(y):
                self.c["invalid"] += 1
                continue
            e = self.latest.get(x)
            if not self._stored(e):
                self.c["unmatched"] += 1
            elif e[3] == "labelled":  # type: ignore[index]
                self.c["duplicate"] += 1
            elif e[2] < now - self.ttl:  # type: ignore[index]
                self.c["expired"] += 1
            else:
                e[3] = "labelled"  # type: ignore[index]
                self.c["joined"] += 1
                out.append((e[1], y, max(now - e[2], 0.0)))  # type: ignore[index]
        return out

    def pending(self, now: float) -> int:
        self._drop(now)
        return sum(1 for e in self.ring if e[3] == "pending" and e[2] >= now - self.ttl)


@pytest.fixture
def tiny_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small minimum sizes, so random runs grow, shrink and rebuild ring and table often."""
    monkeypatch.setattr(fb, "_MIN_RING", 4)
    monkeypatch.setattr(fb, "_MIN_TABLE", 16)


ident = st.one_of(
    st.integers(0, 40),
    st.sampled_from(["a", "b", "c", 3.0, None, NAN, 2**62 + 1, -(2**62) - 2, 2**63 - 1, -(2**63)]),
)
code = st.one_of(st.sampled_from([0.0, 1.0, 2.0]), st.just(NAN))
op = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 3.0, 7.0, 25.0])),
    st.tuples(st.just("record"), st.lists(st.tuples(ident, code), max_size=30)),
    st.tuples(st.just("join"), st.lists(st.tuples(ident, code), max_size=30)),
    st.tuples(st.just("join_one"), st.tuples(ident, code)),
)


@settings(
    max_examples=int(os.environ.get("MLMON_MODEL_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(op, max_size=40), cap=st.integers(1, 25), ttl=st.sampled_from([5.0, 20.0]))
def test_store_behaves_as_the_reference(
    tiny_tables: None, ops: list[Any], cap: int, ttl: float
) -> None:
    store, ref = FeedbackJoin(max_pending=cap, ttl=ttl), Reference(cap, ttl)
    now = 0.0
    for kind, arg in ops:
        if kind == "advance":
            now += arg
        elif kind == "record":
            ids, preds = [x for x, _ in arg], [p for _, p in arg]
            store.record(ids, np.array(preds, dtype=np.float64), now)
            ref.record(ids, preds, now)
        elif kind == "join":
            ids, labels = [x for x, _ in arg], [y for _, y in arg]
            j = join(store, ids, labels, now)
            got = list(zip(j.preds.tolist(), j.labels.tolist(), j.delays.tolist(), strict=True))
            assert got == ref.join(ids, labels, now)
        else:
            x, y = arg
            hit = store.join_one(x, y, now)
            want = ref.join([x], [y], now)
            assert ([] if hit is None else [(hit[0], y, hit[1])]) == want
        assert counts(store) == ref.c
        assert store.pending(now) == ref.pending(now)


def test_large_store_behaves_as_the_reference() -> None:
    """Default sizes: the ring grows and the table is rebuilt several times on the way."""
    rng = np.random.default_rng(7)
    store, ref = FeedbackJoin(max_pending=5000, ttl=50.0), Reference(5000, 50.0)
    now = 0.0
    for step in range(60):
        now += float(rng.choice([0.0, 1.0, 10.0]))
        ids = rng.integers(0, 8000, int(rng.integers(1, 600))).tolist()
        preds = rng.integers(0, 2, len(ids)).astype(float).tolist()
        store.record(ids, np.array(preds), now)
        ref.record(ids, preds, now)
        ask = rng.integers(0, 9000, 300).tolist()
        labels = rng.choice([0.0, 1.0, NAN], 300, p=[0.45, 0.45, 0.1]).tolist()
        j = join(store, ask, labels, now)
        got = list(zip(j.preds.tolist(), j.labels.tolist(), j.delays.tolist(), strict=True))
        assert got == ref.join(ask, labels, now), step
        assert counts(store) == ref.c
    assert store.pending(now) == ref.pending(now)


# -- probability rows ---------------------------------------------------------------------------
def record_rows(store: FeedbackJoin, keys: np.ndarray, rows: np.ndarray | None, now: float, preds: np.ndarray | None = None) -> None:
    p = np.zeros(keys.size) if preds is None else preds
    store.record_keys(keys.astype(np.int64), np.ones(keys.size, np.bool_), p, now, rows=None if rows is None else rows.astype(np.float32))


def test_rows_ride_with_their_predictions_through_growth_eviction_and_replacement() -> None:
    rng = np.random.default_rng(1)
    store = FeedbackJoin(max_pending=3000, ttl=100.0)
    rows = rng.dirichlet(np.ones(5), size=5000).astype(np.float32)
    for lo in range(0, 5000, 500):  # the ring grows from 1,024 to 3,000, then evicts
        record_rows(store, np.arange(lo, lo + 500), rows[lo : lo + 500], now=1.0)
    assert store.evicted == 2000
    replaced = rng.dirichlet(np.ones(5), size=1).astype(np.float32)
    record_rows(store, np.array([4000]), replaced, now=1.5)
    # Re-recording 4000 took a new slot: 2000, the oldest, was evicted for it.
    j = join(store, [*range(1990, 2011), 4000, 4999], [0.0] * 23, now=2.0)
    assert j.rows is not None and j.row_classes is None
    assert j.rows.shape == (12, 5) and j.rows.dtype == np.float32
    np.testing.assert_array_equal(j.rows[:10], rows[2001:2011])
    np.testing.assert_array_equal(j.rows[10], replaced[0])
    np.testing.assert_array_equal(j.rows[11], rows[4999])
    assert store.nbytes() >= 3000 * 5 * 4


def test_predictions_without_rows_join_with_a_nan_row_and_single_joins_give_theirs() -> None:
    store = FeedbackJoin(max_pending=100, ttl=100.0)
    record_rows(store, np.arange(3), None, now=1.0)  # before any row: no column yet
    assert store._rows is None and store.nbytes() == FeedbackJoin(max_pending=100, ttl=100.0).nbytes()
    row = np.array([[0.2, 0.3, 0.5]])
    record_rows(store, np.array([3]), row, now=1.0)
    record_rows(store, np.array([4]), None, now=1.0)
    j = join(store, [0, 3, 4], [1.0, 1.0, 1.0], now=2.0)
    assert j.rows is not None
    assert np.isnan(j.rows[0]).all() and np.isnan(j.rows[2]).all()
    np.testing.assert_allclose(j.rows[1], row[0], rtol=1e-7)
    record_rows(store, np.array([5]), np.array([[0.6, 0.3, 0.1]]), now=2.0)
    assert store.join_one(5, 0.0, now=3.0) is not None and store.last_row is not None
    np.testing.assert_allclose(store.last_row[0], [[0.6, 0.3, 0.1]], rtol=1e-7)
    assert store.join_one(5, 0.0, now=3.0) is None and store.last_row is None  # a duplicate
    store.reset()
    assert store._rows is None and store.rows_dropped == 0


def test_rows_of_another_width_are_dropped_and_counted() -> None:
    store = FeedbackJoin(max_pending=100, ttl=100.0)
    record_rows(store, np.arange(2), np.full((2, 3), 1 / 3), now=1.0)
    record_rows(store, np.arange(2, 6), np.full((4, 4), 0.25), now=1.0)
    assert store.rows_dropped == 4
    j = join(store, [1, 5], [0.0, 0.0], now=2.0)
    assert j.rows is not None and j.rows.shape == (2, 3) and np.isnan(j.rows[1]).all()
    with pytest.raises(ValueError, match="rows"):
        record_rows(store, np.arange(3), np.full((2, 3), 1 / 3), now=1.0)


def test_above_the_byte_cap_only_the_top_classes_are_kept_ties_to_the_higher_index() -> None:
    store = FeedbackJoin(max_pending=1000, ttl=100.0, max_row_bytes=12_000)
    assert store.row_layout(3) == 3 and store.row_layout(10) == 2 and store.row_layout(10_000) == 2
    assert FeedbackJoin(max_pending=10, max_row_bytes=0).row_layout(2) == 0
    rows = np.array([[0.1, 0.4, 0.1, 0.4, 0.0, 0, 0, 0, 0, 0], [0.05] * 8 + [0.3, 0.3]])
    record_rows(store, np.arange(2), rows, now=1.0)
    j = join(store, [0, 1], [0.0, 0.0], now=2.0)
    assert j.row_classes is not None and j.rows is not None
    assert j.row_classes.tolist() == [[3, 1], [9, 8]]
    np.testing.assert_allclose(j.rows, [[0.4, 0.4], [0.3, 0.3]], rtol=1e-7)
    plain = FeedbackJoin(max_pending=1000, ttl=100.0)
    record_rows(plain, np.arange(2), None, now=1.0)
    assert store.nbytes() - plain.nbytes() == 1000 * 2 * (4 + 2)  # 2 float32 and 2 uint16 a slot
    none = FeedbackJoin(max_pending=10, max_row_bytes=0)
    record_rows(none, np.arange(2), rows, now=1.0)
    assert join(none, [0], [0.0], now=2.0).rows is None


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_a_bad_row_cap_raises(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_row_bytes"):
        FeedbackJoin(max_row_bytes=bad)
