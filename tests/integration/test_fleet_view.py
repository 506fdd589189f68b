"""The fleet view against a real Redis: states published, one leader merging them, fleet alerts
evaluated once, and the faults (store down, corrupt states, other configurations)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import mlmon
from mlmon.alerts import CallbackSink, Threshold
from mlmon.emitters import InMemoryEmitter as MemoryEmitter
from mlmon.stores import RedisStore
from mlmon.testing import FakeClock

pytestmark = pytest.mark.integration

TASK = mlmon.BinaryClassification(threshold=0.5)


def make(url: str, clock: FakeClock, name: str, *, fleet: mlmon.Fleet | None = None, **kw: Any) -> tuple[mlmon.Monitor, MemoryEmitter]:
    em = MemoryEmitter()
    mon = mlmon.Monitor(
        "fleetm", task=TASK, clock=clock, instance=name, emitters=[em], flush_interval=10.0,
        store=RedisStore(url, deadline=2.0), fleet=fleet if fleet is not None else mlmon.Fleet(emit_counters=True), **kw,
    )  # fmt: skip
    return mon, em


def feed(mon: mlmon.Monitor, scores: np.ndarray, ids: np.ndarray) -> None:
    with mon.track(ids=ids) as call:
        call.outputs(scores)


def values(snap: mlmon.Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for s in snap.samples}


def test_one_leader_merges_every_process(redis_server: Any) -> None:
    clock = FakeClock(start=time.time())
    rng = np.random.default_rng(1)
    scores = rng.random(4000)
    labels = (rng.random(4000) < scores).astype(int)
    mons = [make(redis_server.url, clock, f"p{i}") for i in range(4)]
    whole = mlmon.Monitor("fleetm", task=TASK, clock=clock, instance="whole", emitters=[])
    try:
        for k in range(40):
            sl = slice(k * 100, (k + 1) * 100)
            ids = np.arange(sl.start, sl.stop)
            feed(mons[k % 4][0], scores[sl], ids)
            feed(whole, scores[sl], ids)
        # labels arrive in one process only: the store joins them to whichever made them
        mons[2][0].log_feedback(np.arange(4000), labels)
        whole.log_feedback(np.arange(4000), labels)
        # round 1 writes the predictions, round 2 joins the labels (in the one process that got
        # them), round 3 lets the leader read the state that process published after the join
        for _ in range(3):
            for mon, _ in mons:
                mon.flush()
        leaders = [mon for mon, _ in mons if mon._fleet is not None and mon._fleet.leader]
        assert len(leaders) == 1
        fleet_snaps = [s for _, em in mons for s in em.snapshots if s.instance == "fleet"]
        assert fleet_snaps, "the leader emitted no fleet snapshot"
        fs = fleet_snaps[-1]
        ws = whole.snapshot()
        a, b = values(fs), values(ws)
        for name in ("mlmon_calls_total", "mlmon_rows_total", "mlmon_output_count", "mlmon_labels_total",
                     "mlmon_precision", "mlmon_recall", "mlmon_f1", "mlmon_accuracy"):  # fmt: skip
            assert a[(name, ())] == pytest.approx(b[(name, ())], rel=1e-12), name
        for key, v in b.items():
            if key[0] == "mlmon_confusion_total":
                assert a[key] == v
        assert a[("mlmon_fleet_processes", ())] == 4
        own = [values(mon.snapshot()) for mon, _ in mons]
        assert sum(o[("mlmon_fleet_leader", ())] for o in own) == 1
        assert all(o[("mlmon_fleet_up", ())] == 1 for o in own)
    finally:
        for mon, _ in mons:
            mon.close()
        whole.close()


def test_fleet_alert_fires_once_across_a_handover(redis_server: Any) -> None:
    clock = FakeClock(start=time.time())
    events: list[Any] = []
    rule = Threshold("mlmon_error_ratio", above=0.2, name="fleet_errors", min_samples=0)

    def fleet() -> mlmon.Fleet:
        return mlmon.Fleet(rules=[rule], sinks=[CallbackSink(events.append)], lease=15.0)

    mons = [make(redis_server.url, clock, f"q{i}", fleet=fleet()) for i in range(3)]

    @mons[0][0].track
    def bad(x: float) -> float:
        raise ValueError("x")

    try:
        for _ in range(10):
            try:
                bad(1.0)
            except ValueError:
                pass
        for mon, _ in mons:
            mon.flush()
        firing = [e for e in events if e.state == "firing"]
        assert len(firing) == 1 and firing[0].instance == "fleet"
        leader = next(mon for mon, _ in mons if mon._fleet.leader)  # type: ignore[union-attr]
        leader.close()  # the leader leaves: another takes over and carries the state on
        clock.advance(10.0)
        for mon, _ in mons:
            if mon is not leader:
                mon.flush()
        assert sum(1 for mon, _ in mons if mon is not leader and mon._fleet.leader) == 1  # type: ignore[union-attr]
        assert [e.state for e in events] == ["firing"], "the new leader sent the transition again"
    finally:
        for mon, _ in mons:
            mon.close()


def test_emitted_fleet_snapshots_leave_counters_to_the_processes(redis_server: Any) -> None:
    """By default the fleet's counters stay out of the emitters (queries sum the processes'),
    and an emitter without instances in its paths does not get the fleet at all."""
    from mlmon.emitters import StatsdEmitter

    clock = FakeClock(start=time.time())
    statsd = StatsdEmitter(port=9, instance_in_path=False)  # nothing listens: UDP, counted
    mons = [make(redis_server.url, clock, f"c{i}", fleet=mlmon.Fleet()) for i in range(2)]
    em_ids = mlmon.Monitor("fleetm", task=TASK, clock=clock, instance="c2", emitters=[statsd],
                           store=RedisStore(redis_server.url), fleet=mlmon.Fleet())  # fmt: skip
    try:
        for mon, _ in mons:
            feed(mon, np.array([0.2, 0.9]), np.array([1, 2]))
        for _ in range(2):
            for mon, _ in mons:
                mon.flush()
            em_ids.flush()
        leader = next((mon, em) for mon, em in mons if mon._fleet is not None and mon._fleet.leader)
        sent = [s for s in leader[1].snapshots if s.instance == "fleet"]
        assert sent and all(s.get("mlmon_calls_total") is None for s in sent)
        assert all(not any(x.name.endswith("_bucket") for x in s.samples) for s in sent)
        assert sent[-1].get("mlmon_output_count") == 4  # window values are there
        assert leader[0]._fleet is not None and leader[0]._fleet.last is not None
        assert leader[0]._fleet.last.get("mlmon_calls_total") == 2  # the snapshot itself has them
        assert em_ids._fleet is not None and em_ids._fleet._emitters == []
    finally:
        for mon, _ in mons:
            mon.close()
        em_ids.close()
