"""Fork safety: a child starts clean, with its own identity and reporter, and never re-emits."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

import mlmon
from mlmon.emitters import JsonlEmitter

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_child_reports_only_its_own_calls_and_parent_keeps_its_own() -> None:
    mon = mlmon.Monitor("forky", flush_interval=0.5, window=60.0)
    predict = mon.track(lambda x: x)
    for i in range(1000):
        predict(i)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            for i in range(500):
                predict(i)
            snap = mon.snapshot()
            alive = any(t.name == "mlmon-reporter-forky" for t in threading.enumerate())
            msg = json.dumps([snap.get("mlmon_calls_total"), snap.instance, alive])
            os.write(write, msg.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child_calls, child_instance, child_reporter_alive = json.loads(f.read())
    os.waitpid(pid, 0)
    parent = mon.snapshot()
    assert child_calls == 500
    assert parent.get("mlmon_calls_total") == 1000
    assert child_instance != parent.instance and child_instance.endswith(f":{pid}")
    assert child_reporter_alive
    mon.close()


def _child_work(n: int) -> None:
    from mlmon.monitor import monitors

    (mon,) = [m for m in monitors() if m.name == "mp"]
    predict = mon.track(lambda x: x)
    for i in range(n):
        predict(i)
    # no flush, no close: multiprocessing's exit must flush the child's data


def test_multiprocessing_fork_children_flush_their_own_data_at_exit(tmp_path: Path) -> None:
    out = tmp_path / "mp.jsonl"
    mon = mlmon.Monitor("mp", flush_interval=3600, window=3600, emitters=[JsonlEmitter(out)])
    predict = mon.track(lambda x: x)
    for i in range(1000):
        predict(i)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child_work, args=(n,)) for n in (300, 500)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    mon.close()
    finals: dict[str, float] = {}
    for line in out.read_text().splitlines():
        snap = mlmon.Snapshot.from_dict(json.loads(line))
        finals[snap.instance] = snap.get("mlmon_calls_total") or 0.0
    assert sorted(finals.values()) == [300, 500, 1000]
