"""The fleet view when the store fails: a hung store, a restarted Redis, a flood of processes.
Nothing raises into predict; each process keeps its own snapshot; the fleet pauses, says so,
and resumes."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import mlmon
from mlmon.emitters import InMemoryEmitter
from mlmon.fleet import combine_states, retire_state
from mlmon.stores import RedisStore
from mlmon.testing import FakeClock

pytestmark = pytest.mark.integration
TASK = mlmon.BinaryClassification(threshold=0.5)


def monitor(url: str, clock: FakeClock, name: str, deadline: float = 0.5) -> tuple[mlmon.Monitor, InMemoryEmitter]:
    em = InMemoryEmitter()
    mon = mlmon.Monitor("faults", task=TASK, clock=clock, instance=name, emitters=[em], flush_interval=10.0,
                        store=RedisStore(url, deadline=deadline), fleet=mlmon.Fleet(emit_counters=True))  # fmt: skip
    return mon, em


def test_a_hung_store_pauses_the_fleet_and_never_blocks_predict(blackhole: Any) -> None:
    clock = FakeClock(start=time.time())
    mon, em = monitor(blackhole.url, clock, "h0", deadline=0.3)

    @mon.track
    def predict(x: float) -> float:
        return x

    try:
        t0 = time.perf_counter()
        for _ in range(1000):
            assert predict(0.5) == 0.5
        # a hang bound, not a speed claim: one store round trip per call would take 300 s here
        assert time.perf_counter() - t0 < 30.0
        t1 = time.monotonic()
        snap = mon.flush()
        took = time.monotonic() - t1
        assert took < 4 * 0.3 + 5.0  # every store call is bounded by the deadline
        assert snap.get("mlmon_calls_total") == 1000  # the process's own view is intact
        after = mon.snapshot()  # the fleet step runs after the cycle's snapshot: seen in the next
        assert after.get("mlmon_fleet_up") == 0.0
        assert after.get("mlmon_fleet_leader") == 0.0
        assert after.get("mlmon_store_errors_total", operation="fleet") >= 1
        assert not [s for s in em.snapshots if s.instance == "fleet"]
    finally:
        mon.close()


def test_redis_restarted_the_fleet_pauses_and_resumes(redis_factory: Any) -> None:
    server = redis_factory()
    clock = FakeClock(start=time.time())
    mons = [monitor(server.url, clock, f"r{i}") for i in range(2)]
    try:
        for mon, _ in mons:
            with mon.track(ids=np.arange(3)) as call:
                call.outputs(np.array([0.1, 0.6, 0.9]))
        for _ in range(2):  # the first leader may merge before the other has published
            for mon, _ in mons:
                mon.flush()
        leader = next(m for m, _ in mons if m._fleet is not None and m._fleet.leader)
        assert leader._fleet is not None and leader._fleet.last is not None
        assert leader._fleet.last.get("mlmon_calls_total") == 2
        server.kill()  # nothing listens on its port any more
        for mon, _ in mons:
            mon.flush()
            snap = mon.snapshot()
            assert snap.get("mlmon_fleet_up") == 0.0
            assert snap.get("mlmon_calls_total") == 1
        server.restart()  # same port, empty (no persistence): the processes publish again
        for _ in range(2):
            for mon, _ in mons:
                mon.flush()
                assert mon.snapshot().get("mlmon_fleet_up") == 1.0
        leaders = [m for m, _ in mons if m._fleet is not None and m._fleet.leader]
        assert len(leaders) == 1
        fleet = leaders[0]._fleet
        assert fleet is not None and fleet.last is not None
        assert fleet.last.get("mlmon_calls_total") == 2
        assert fleet.last.get("mlmon_fleet_processes") == 2
    finally:
        for mon, _ in mons:
            mon.close()


def test_ten_thousand_processes_over_a_day_stay_bounded(redis_server: Any) -> None:
    """Processes that publish once and die: the live set stays empty, the retired ones are
    folded 256 per cycle into one archive state, and Redis's memory returns to where it was."""
    clock = FakeClock(start=time.time())
    mon, _ = monitor(redis_server.url, clock, "survivor")
    with mon.track(ids=np.arange(2)) as call:
        call.outputs(np.array([0.2, 0.8]))
    state = mon.fleet_state()
    store = RedisStore(redis_server.url, deadline=5.0)
    store.bind("faults", None)
    client = redis_server.client()
    before = int(client.info("memory")["used_memory"])
    try:
        for i in range(10_000):
            assert store.fleet_publish(f"gone{i}", state, 0.05, 1024) is True
        time.sleep(0.1)
        archive: bytes | None = None
        cycles = 0
        while cycles < 100:
            read = store.fleet_read(0.05, 1024)
            assert read is not None
            assert read.live == [] and len(read.retired) <= 256
            if not read.retired:
                break
            blobs = ([] if archive is None else [archive]) + [retire_state(b) for _, b in read.retired]
            archive, rejected = combine_states(mon, blobs)
            assert rejected == {}
            assert store.fleet_lease("tok", 30.0)
            assert store.fleet_commit("tok", b"{}", 60.0, archive, [n for n, _ in read.retired])
            cycles += 1
        assert 39 <= cycles <= 41  # 10,000 / 256
        assert archive is not None and len(archive) < 16_000  # one state, whatever the count
        total = mlmon.fleet.merge_states(mon, [archive]).snapshot
        assert total.get("mlmon_calls_total") == 10_000  # every dead process's calls kept
        after = int(client.info("memory")["used_memory"])
        assert after - before < 1_000_000
    finally:
        mon.close()
