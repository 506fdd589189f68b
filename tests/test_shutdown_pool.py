"""``multiprocessing.Pool`` workers: what reaches the emitters when the pool ends, and how.

``with Pool() as pool:`` calls ``pool.terminate()`` on the way out: every worker gets SIGTERM and
dies at once, before multiprocessing's finalizers (where mlmon flushes a child) run. Each case
runs a real script (fork start method) whose workers record 1,000 calls into the monitor they
inherited, writing JSON lines and flushing every hour, so the only lines are the final ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import mlmon

ROOT = Path(__file__).resolve().parent.parent
CALLS = 1000

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs the fork start method")

SCRIPT = """
import multiprocessing, os, sys
import mlmon
from mlmon.emitters import JsonlEmitter
from mlmon.integrations.signals import install_sigterm_handler

mon = mlmon.Monitor("pool_model", window=3600.0, flush_interval=3600.0, emitters=[JsonlEmitter(sys.argv[1])])


@mon.track
def score(x):
    return 2 * x


def work(x):
    return score(x), os.getpid()


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    print(os.getpid())
    pattern = sys.argv[2]
    if pattern == "with-block":            # Pool.__exit__ terminates the workers
        with multiprocessing.Pool(2) as pool:
            results = pool.map(work, range({calls}), chunksize=10)
    elif pattern == "close-join":          # the workers finish and exit normally
        with multiprocessing.Pool(2) as pool:
            results = pool.map(work, range({calls}), chunksize=10)
            pool.close()
            pool.join()
    elif pattern == "sigterm-handler":     # terminated, but each worker flushes on SIGTERM
        with multiprocessing.Pool(2, initializer=install_sigterm_handler) as pool:
            results = pool.map(work, range({calls}), chunksize=10)
    elif pattern == "executor":            # ProcessPoolExecutor's with block waits for its workers
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as ex:
            results = list(ex.map(work, range({calls}), chunksize=10))
    assert [2 * x for x in range({calls})] == [r for r, _ in results]
    print(sorted(set(pid for _, pid in results)))
    mon.close()
""".replace("{calls}", str(CALLS))


def run(tmp_path: Path, pattern: str) -> tuple[int, list[int], dict[int, list[dict[str, Any]]]]:
    """(parent pid, worker pids that served, {pid: [final snapshots]}) after the script ran."""
    script = tmp_path / "pool_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "snapshots.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), str(out), pattern], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert 0 == proc.returncode, proc.stderr[-3000:]
    parent_line, workers_line = proc.stdout.splitlines()
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for line in out.read_text().splitlines():  # every line whole: one write per line
        snap = json.loads(line)
        by_pid.setdefault(int(snap["instance"].rsplit(":", 1)[1]), []).append(snap)
    return int(parent_line), json.loads(workers_line), by_pid


def worker_calls(parent: int, by_pid: dict[int, list[dict[str, Any]]]) -> dict[int, list[float | None]]:
    return {
        pid: [mlmon.Snapshot.from_dict(s).get("mlmon_calls_total") for s in snaps]
        for pid, snaps in by_pid.items()
        if pid != parent
    }


def test_leaving_the_with_block_terminates_the_workers_and_loses_their_calls(tmp_path: Path) -> None:
    """The cause, pinned: ``Pool.__exit__`` is ``terminate()``; nothing of the workers is flushed."""
    parent, workers, by_pid = run(tmp_path, "with-block")
    assert workers  # the workers did the work
    assert {} == worker_calls(parent, by_pid)
    assert [[0.0]] == [[mlmon.Snapshot.from_dict(s).get("mlmon_calls_total") for s in by_pid[parent]]]


def test_close_then_join_inside_the_with_block_reports_every_call(tmp_path: Path) -> None:
    parent, workers, by_pid = run(tmp_path, "close-join")
    per_worker = worker_calls(parent, by_pid)
    assert set(workers) <= set(per_worker)
    assert all(1 == len(v) for v in per_worker.values()), per_worker  # one final snapshot each
    assert CALLS == sum(v[0] or 0.0 for v in per_worker.values())


@pytest.mark.parametrize("pattern", ["sigterm-handler", "executor"])
def test_terminated_workers_with_the_handler_and_executor_workers_report_every_call(
    tmp_path: Path, pattern: str
) -> None:
    parent, workers, by_pid = run(tmp_path, pattern)
    per_worker = worker_calls(parent, by_pid)
    assert set(workers) <= set(per_worker)
    assert all(1 == len(v) for v in per_worker.values()), per_worker
    assert CALLS == sum(v[0] or 0.0 for v in per_worker.values())
