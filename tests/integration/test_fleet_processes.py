"""Eight real processes serve one stream through a real Redis (single node and cluster): the
fleet snapshot equals one process fed the whole stream; a leader killed with SIGKILL is
replaced; Redis restarted, the fleet pauses (and says so) and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlmon
from mlmon.snapshot import Snapshot
from mlmon.testing import FakeClock

sys.path.insert(0, str(Path(__file__).parent))
import _fleet_worker as worker

pytestmark = pytest.mark.integration
INTERVAL = 0.5
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def fleet(tmp_path: Path, url: str, workers: int, events: Path | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    stop = tmp_path / "stop"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "_fleet_worker.py"), url, str(i), str(workers),
             str(tmp_path / f"w{i}.jsonl"), str(INTERVAL), str(stop), *([str(events)] if events else [])],
            env=env, stderr=(tmp_path / f"w{i}.err").open("wb"),
        )
        for i in range(workers)
    ]
    try:
        yield procs
    finally:
        stop.touch()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def records(tmp_path: Path) -> list[Snapshot]:
    out = []
    for path in sorted(tmp_path.glob("w*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                out.append(Snapshot.from_dict(json.loads(line)))
            except ValueError:
                pass  # a line being written
    return out


def fleet_snaps(tmp_path: Path) -> list[Snapshot]:
    return sorted((s for s in records(tmp_path) if s.instance == "fleet"), key=lambda s: s.timestamp)


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def whole_stream() -> dict[tuple[str, Any], float]:
    _, _, labels, ref = worker.stream()
    m = mlmon.Monitor("fleet8", task=mlmon.BinaryClassification(threshold=0.5), reference=ref,
                      emitters=[], clock=FakeClock(start=time.time()), window=600.0)  # fmt: skip
    worker.serve(m, lambda k: True)
    m.log_feedback(np.arange(worker.N_CALLS * worker.ROWS), labels)
    snap = m.snapshot()
    m.close()
    return {(s.name, s.labels): s.value for s in snap.samples}


def complete(tmp_path: Path) -> Snapshot | None:
    want = worker.N_CALLS * worker.ROWS
    for s in reversed(fleet_snaps(tmp_path)):
        if s.get("mlmon_labels_total") == want and s.get("mlmon_fleet_processes") == 8:
            return s
    return None


def check_against_whole(snap: Snapshot) -> None:
    whole = whole_stream()
    got = {(s.name, s.labels): s.value for s in snap.samples}
    exact = [k for k in whole if k[0] in {
        "mlmon_calls_total", "mlmon_rows_total", "mlmon_errors_total", "mlmon_output_count",
        "mlmon_labels_total", "mlmon_confusion_total", "mlmon_precision", "mlmon_recall", "mlmon_f1",
        "mlmon_accuracy", "mlmon_error_ratio", "mlmon_feature_drift_psi", "mlmon_output_drift_psi",
        "mlmon_feature_bin_total", "mlmon_output_bin_total", "mlmon_output_class_ratio",
    }]  # fmt: skip
    assert len(exact) > 40
    for k in exact:
        assert got[k] == whole[k], k
    for q in ("0.5", "0.9", "0.99"):
        k = ("mlmon_output", (("quantile", q),))
        assert got[k] == pytest.approx(whole[k], rel=0.02)
    for k in whole:
        if k[0] in ("mlmon_output_variance", "mlmon_feature_variance", "mlmon_feature_mean"):
            assert got[k] == pytest.approx(whole[k], rel=1e-9, abs=1e-12), k


def run_eight(tmp_path: Path, url: str) -> None:
    events = tmp_path / "events.jsonl"
    with fleet(tmp_path, url, 8, events) as procs:
        try:
            snap = wait_for(lambda: complete(tmp_path), 90.0, "a complete fleet snapshot")
        except AssertionError:
            last = fleet_snaps(tmp_path)[-1:] or [None]
            own = {
                s.instance: (
                    s.get("mlmon_labels_total"), s.get("mlmon_labels_unmatched_total"),
                    {dict(x.labels)["operation"]: x.value for x in s.samples if x.name == "mlmon_store_errors_total" and x.value},
                    s.get("mlmon_store_buffered_items", buffer="store_labels"),
                    s.get("mlmon_store_buffered_items", buffer="store_predictions"),
                )
                for s in records(tmp_path) if s.instance != "fleet"
            }  # fmt: skip
            shown = None if last[0] is None else (last[0].get("mlmon_labels_total"), last[0].get("mlmon_fleet_processes"), last[0].get("mlmon_calls_total"))
            raise AssertionError(f"no complete fleet snapshot: last {shown}, processes {own}") from None
        check_against_whole(snap)
        # one fleet alert, once, whatever the number of processes
        fired = wait_for(lambda: [json.loads(x) for x in events.read_text().splitlines()] if events.exists() else None, 10.0, "the fleet alert")
        assert [e["state"] for e in fired] == ["firing"] and fired[0]["instance"] == "fleet"

        # SIGKILL the leader: another process leads within lease + one interval
        leader_pid = fired[0]["pid"]
        victim = next(p for p in procs if p.pid == leader_pid)
        t_kill = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        new = wait_for(
            lambda: [s for s in fleet_snaps(tmp_path) if s.timestamp > t_kill + 0.05], 10.0, "a new leader's fleet snapshot"
        )
        gap = new[0].timestamp - t_kill
        print(f"leader replaced {gap:.2f} s after SIGKILL")  # shown with pytest -s
        assert gap <= 2 * INTERVAL + 0.5, gap  # lease (half an interval) + one flush, plus slack
        # the dead process's counters stay in the fleet's totals; its window drops out after the TTL
        later = wait_for(lambda: [s for s in fleet_snaps(tmp_path) if s.get("mlmon_fleet_processes") == 7 and s.timestamp > t_kill], 15.0, "the fleet without the dead process")
        assert later[-1].get("mlmon_calls_total") == snap.get("mlmon_calls_total")
        time.sleep(3 * INTERVAL)
        assert [json.loads(x)["state"] for x in events.read_text().splitlines()] == ["firing"], "handover re-sent the alert"


def test_eight_processes_single_redis(tmp_path: Path, redis_server: Any) -> None:
    run_eight(tmp_path, redis_server.url)


def test_eight_processes_redis_cluster(tmp_path: Path, redis_cluster: Any) -> None:
    run_eight(tmp_path, redis_cluster.url)
