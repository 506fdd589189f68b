"""The host directory behind HostEndpoint: atomic states, ended workers folded, bad files counted.

Other workers are real processes (``python -c``) writing into the same directory; "ended"
workers that never existed use pids above the kernel's limit (2**22), which no process has.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import mlmon
from mlmon.fleet import read_state
from mlmon.fleet.host import HostEndpoint, _key, _own_start, process_ended
from mlmon.testing import InMemoryEmitter

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
NO_PID = 2**22 + 1  # above pid_max on Linux: never a running process
KEY = _key("m", None)

WORKER = r"""
import os, sys, mlmon
from mlmon.fleet.host import HostEndpoint
from mlmon.testing import FakeClock
d, n, mode, window = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
clock = FakeClock()
host = HostEndpoint(d, port=0, lease=False, instance="h")
mon = mlmon.Monitor("m", emitters=[host], flush_interval=300, clock=clock, window=window)
def predict(x):
    if x == 0:
        clock.advance(0.25)  # one slow call: it shows in the window's maximum latency
    return 0.5
p = mon.track(predict)
for i in range(n):
    p(i)
mon.flush()
print("ready", flush=True)
if mode == "kill":
    os._exit(0)  # like SIGKILL: no close, the state stays behind
if mode == "wait":
    sys.stdin.readline()
mon.close()
"""


def run_worker(d: Path, n: int, mode: str = "kill", window: float = 300.0) -> None:
    subprocess.run([sys.executable, "-c", WORKER, str(d), str(n), mode, str(window)], env=ENV, check=True, timeout=120, capture_output=True)


@contextmanager
def running_worker(d: Path, n: int) -> Iterator[subprocess.Popen[str]]:
    """A worker that has published and waits (alive) until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(d), str(n), "wait", "300"], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


def states(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("w."))


def dead_name(i: int, start: str = "1") -> str:
    return f"w.{KEY}.{NO_PID + i}.{start}.00000000.state"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[HostEndpoint, mlmon.Monitor]]:
    host = HostEndpoint(tmp_path, port=0, instance="h")
    mon = mlmon.Monitor("m", emitters=[host], flush_interval=300)
    yield host, mon
    mon.close()


def calls(host: HostEndpoint) -> float | None:
    return host.scrape().snapshots[0].get("mlmon_calls_total")


def one_state(n: int, **kw: object) -> bytes:
    mon = mlmon.Monitor("m", emitters=[], **kw)  # type: ignore[arg-type]
    p = mon.track(lambda x: 0.5)
    for i in range(n):
        p(i)
    blob = mon.fleet_state()
    mon.close()
    return blob


# ------------------------------------------------------------------------------- publishing


def test_each_flush_replaces_one_whole_state_file_per_worker(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    _host, mon = served
    p = mon.track(lambda x: x)
    p(1)
    mon.flush()
    first = states(tmp_path)
    assert len(first) == 1 and f".{os.getpid()}.{_own_start()}." in first[0]
    p(2)
    mon.flush()
    assert states(tmp_path) == first  # replaced, not added
    doc = read_state((tmp_path / first[0]).read_bytes())
    assert doc["pid"] == os.getpid() and doc["parts"]["service"]["totals"]["calls_total"] == 2
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_the_scrape_sums_every_workers_counters_and_folds_those_that_ended(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    host, mon = served
    p = mon.track(lambda x: x)
    for i in range(2):
        p(i)
    mon.flush()
    run_worker(tmp_path, 5, "kill")  # killed: its state stays until someone folds it
    assert len(states(tmp_path)) == 2  # ours, and the killed worker's
    run_worker(tmp_path, 7, "close")  # its flush folds the killed one; its close folds its own
    assert len(states(tmp_path)) == 1
    scrape = host.scrape()
    snap = scrape.snapshots[0]
    assert snap.instance == "h"
    assert snap.get("mlmon_calls_total") == 2 + 5 + 7
    assert snap.get("mlmon_host_retired_total") == 2
    assert snap.get("mlmon_host_workers", state="live") == 1
    assert len(states(tmp_path)) == 1  # only this process's
    assert sorted(os.listdir(tmp_path)) == sorted([*states(tmp_path), f"a.{KEY}.state", "host.lock"])
    with urllib.request.urlopen(host.url, timeout=10) as resp:  # this process took the port
        text = resp.read().decode()
    assert 'mlmon_calls_total{model="m",instance="h"} 14' in text.splitlines()
    assert 'mlmon_host_retired_total{model="m",instance="h"} 2' in text.splitlines()


def test_ended_workers_keep_their_counters_but_leave_the_window(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    host, mon = served
    p = mon.track(lambda x: x)
    p(1)
    mon.flush()
    with running_worker(tmp_path, 3):  # its slow call is in the host's window while it runs
        snap = host.scrape().snapshots[0]
        assert snap.get("mlmon_latency_seconds", quantile="1") >= 0.25
        assert snap.get("mlmon_host_workers", state="live") == 2
    snap = host.scrape().snapshots[0]
    assert snap.get("mlmon_calls_total") == 4
    assert snap.get("mlmon_latency_seconds_count") == 4
    assert snap.get("mlmon_latency_seconds", quantile="1") < 0.25  # the ended worker's window is gone


def test_a_running_workers_stale_state_counts_without_its_window(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    host, mon = served
    mon.flush()
    with running_worker(tmp_path, 3) as proc:
        theirs = [n for n in states(tmp_path) if f".{proc.pid}." in n]
        old = time.time() - host.stale_after - 5
        os.utime(tmp_path / theirs[0], (old, old))
        snap = host.scrape().snapshots[0]
        assert snap.get("mlmon_host_workers", state="stale") == 1
        assert snap.get("mlmon_calls_total") == 3
        assert snap.get("mlmon_latency_seconds", quantile="1") is None or snap.get("mlmon_latency_seconds", quantile="1") < 0.25
        assert theirs[0] in states(tmp_path)  # a running worker's state is never folded


def test_a_pid_reused_by_a_newer_process_ends_the_older_state(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    host, mon = served
    mon.flush()
    older = f"w.{KEY}.{os.getpid()}.1.00000000.state"  # our pid, another start time
    (tmp_path / older).write_bytes(one_state(4))
    assert process_ended(os.getpid(), "1") and not process_ended(os.getpid(), _own_start())
    assert calls(host) == 4
    assert older not in states(tmp_path)
    assert host.scrape().snapshots[0].get("mlmon_host_retired_total") == 1


# ------------------------------------------------------------------------------- bad files


def test_corrupt_truncated_oversize_and_foreign_states_are_removed_and_counted(tmp_path: Path) -> None:
    good = one_state(3)
    host = HostEndpoint(tmp_path, port=0, instance="h", max_state_bytes=len(good) + 100)
    mon = mlmon.Monitor("m", emitters=[host], flush_interval=300)
    try:
        mon.flush()
        files = {
            dead_name(0): good,
            dead_name(1): b"not a state at all",
            dead_name(2): good[: len(good) // 2],  # truncated
            dead_name(3): good + b"\0" * 200,  # over max_state_bytes
            dead_name(4): one_state(2, window=60.0),  # another configuration
            dead_name(5): one_state(2, version="v2"),  # another model version under this key
        }
        for name, blob in files.items():
            (tmp_path / name).write_bytes(blob)
        snap = host.scrape().snapshots[0]
        assert snap.get("mlmon_calls_total") == 3
        assert snap.get("mlmon_host_retired_total") == 1
        got = {r: snap.get("mlmon_host_rejected_total", reason=r) for r in ("corrupt", "size", "config", "model", "version")}
        assert got == {"corrupt": 2, "size": 1, "config": 1, "model": 1, "version": 0}
        assert len(states(tmp_path)) == 1
    finally:
        mon.close()


def test_a_running_workers_unreadable_state_is_skipped_by_the_scrape_and_kept(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    host, mon = served
    mon.flush()
    with running_worker(tmp_path, 3) as proc:
        theirs = tmp_path / next(n for n in states(tmp_path) if f".{proc.pid}." in n)
        theirs.write_bytes(theirs.read_bytes()[:40])
        snap = host.scrape().snapshots[0]
        assert snap.get("mlmon_host_skipped_states", reason="corrupt") == 1
        assert snap.get("mlmon_calls_total") == 0
        assert theirs.exists()


def test_an_unreadable_archive_is_counted_and_replaced(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    host, mon = served
    mon.flush()
    (tmp_path / f"a.{KEY}.state").write_bytes(b"garbage")
    (tmp_path / dead_name(0)).write_bytes(one_state(4))
    snap = host.scrape().snapshots[0]
    assert snap.get("mlmon_calls_total") == 4
    assert snap.get("mlmon_host_rejected_total", reason="corrupt") == 1


def test_a_fold_killed_before_deleting_its_files_never_counts_them_twice(served: tuple[HostEndpoint, mlmon.Monitor], tmp_path: Path) -> None:
    host, mon = served
    mon.flush()
    blob = one_state(5)
    for i in range(3):
        (tmp_path / dead_name(i)).write_bytes(blob)
    assert host.fold() == 3
    for i in range(3):  # as if the folder had died after writing the archive
        (tmp_path / dead_name(i)).write_bytes(blob)
    assert host.scrape().snapshots[0].get("mlmon_calls_total") == 15  # not in the archive and in their files
    for i in (0, 1, 2, 9):  # the scrape's fold died the same way; and a worker ended since
        (tmp_path / dead_name(i)).write_bytes(blob)
    assert host.fold() == 4
    for i in (0, 1, 2, 9):  # and the next folder dies the same way
        (tmp_path / dead_name(i)).write_bytes(blob)
    snap = host.scrape().snapshots[0]
    assert snap.get("mlmon_calls_total") == 20
    assert snap.get("mlmon_host_retired_total") == 4
    assert states(tmp_path) == [n for n in states(tmp_path) if f".{os.getpid()}." in n]


def test_a_last_emit_that_outlives_the_release_writes_nothing(tmp_path: Path) -> None:
    host = HostEndpoint(tmp_path, port=0)
    one = mlmon.Monitor("m", emitters=[host], instance="one", flush_interval=300)
    two = mlmon.Monitor("m", emitters=[host], instance="two", flush_interval=300)
    try:
        p = one.track(lambda x: x)
        for i in range(4):
            p(i)
        one.flush()
        two.flush()
        host.release("m", None, "one")  # what one.close() does after its last emit
        assert len(states(tmp_path)) == 1 and host.scrape().snapshots[0].get("mlmon_calls_total") == 4
        host.publish(one)  # an emit still running when the release came: too late, nothing written
        assert len(states(tmp_path)) == 1
        assert host.scrape().snapshots[0].get("mlmon_calls_total") == 4
    finally:
        one.close()
        two.close()


def test_two_processes_folding_at_once_fold_each_state_once(tmp_path: Path) -> None:
    blob = one_state(2)
    for i in range(120):
        (tmp_path / dead_name(i)).write_bytes(blob)
    hosts = [HostEndpoint(tmp_path, port=0, lease=False, fold_batch=16) for _ in range(2)]
    mons = [mlmon.Monitor("m", emitters=[h], flush_interval=300, instance=f"i{k}") for k, h in enumerate(hosts)]
    try:
        for h, m in zip(hosts, mons, strict=True):
            h.bind_monitor(m)

        def fold_all(h: HostEndpoint) -> None:
            for _ in range(40):
                h.fold(wait=True)

        threads = [threading.Thread(target=fold_all, args=(h,)) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        snap = hosts[0].scrape().snapshots[0]
        assert states(tmp_path) == []
        assert snap.get("mlmon_calls_total") == 240
        assert snap.get("mlmon_host_retired_total") == 120
    finally:
        for m in mons:
            m.close()


# ------------------------------------------------------------------------------- bounded


def _median_scrape(host: HostEndpoint, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        host.render()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_a_scrape_after_1000_restarts_costs_what_it_costs_after_ten(tmp_path: Path) -> None:
    blob = one_state(3)
    medians = {}
    for n in (10, 1000):
        d = tmp_path / str(n)
        d.mkdir()
        host = HostEndpoint(d, port=0, instance="h")
        mon = mlmon.Monitor("m", emitters=[host], flush_interval=300)
        try:
            mon.flush()
            for i in range(n):
                (d / dead_name(i)).write_bytes(blob)
            for _ in range(n // host.fold_batch + 1):  # what the workers' flushes do over time
                host.fold()
            assert states(d) == [s for s in states(d) if f".{os.getpid()}." in s]
            assert len(os.listdir(d)) == 3  # this worker's state, the archive, the lock
            snap = host.scrape().snapshots[0]
            assert snap.get("mlmon_calls_total") == 3 * n
            assert snap.get("mlmon_host_retired_total") == n
            medians[n] = _median_scrape(host)
        finally:
            mon.close()
    # reading 1,000 states would take seconds; the same work takes the same time, give or take load
    assert medians[1000] < 3 * medians[10] + 0.02, medians


def test_real_worker_restarts_leave_one_archive_and_every_call(tmp_path: Path) -> None:
    """200 forked workers in turn, like ``--max-requests`` restarts: each serves a few calls,
    flushes, and ends, two in three through close() (gunicorn's worker_exit), one in three
    killed (os._exit after its flush). Their pids really end; nothing is simulated."""
    host = HostEndpoint(tmp_path, port=0, lease=False, instance="h")
    mon = mlmon.Monitor("m", emitters=[host], flush_interval=300)
    predict = mon.track(lambda x: x)  # the parent never calls it: no reporter thread to fork
    restarts, per_worker = 200, 3
    t0 = time.perf_counter()
    try:
        for k in range(restarts):
            pid = os.fork()
            if pid == 0:  # the worker: the monitor was reset by the fork
                code = 1
                try:
                    for i in range(per_worker):
                        predict(i)
                    mon.flush()
                    if k % 3:
                        mon.close()
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        elapsed = time.perf_counter() - t0
        scrape = host.scrape()
        snap = scrape.snapshots[0]
        assert snap.get("mlmon_calls_total") == restarts * per_worker
        assert snap.get("mlmon_host_retired_total") == restarts
        assert sorted(os.listdir(tmp_path)) == [f"a.{KEY}.state", "host.lock"]
        assert scrape.live == scrape.ended == 0
        print(f"{restarts} restarts in {elapsed:.1f} s; a scrape then takes {scrape.seconds * 1000:.1f} ms")
    finally:
        mon.close()


def test_a_scrape_reads_at_most_max_states_and_counts_the_rest(tmp_path: Path) -> None:
    host = HostEndpoint(tmp_path, port=0, max_states=5, fold_batch=1)
    mon = mlmon.Monitor("m", emitters=[host], flush_interval=300)
    try:
        mon.flush()
        blob = one_state(1)
        for i in range(9):
            (tmp_path / dead_name(i)).write_bytes(blob)
        scrape = host.scrape()  # folds 1, reads 5 of the other 9, skips 4
        assert scrape.live + scrape.ended == 5 and scrape.skipped == {"max_states": 4}
        assert scrape.snapshots[0].get("mlmon_host_skipped_states", reason="max_states") == 4
    finally:
        mon.close()


def test_a_scrape_reads_at_most_max_scrape_bytes_and_counts_the_rest(tmp_path: Path) -> None:
    blob = one_state(1)
    host = HostEndpoint(tmp_path, port=0, max_scrape_bytes=3 * len(blob) + 10, fold_batch=1)
    mon = mlmon.Monitor("m", emitters=[host], flush_interval=300)
    try:
        for i in range(6):
            (tmp_path / dead_name(i)).write_bytes(blob)
        scrape = host.scrape()  # folds 1, reads 3 of the other 5, skips 2
        assert scrape.ended == 3 and scrape.skipped == {"max_bytes": 2}
        assert scrape.snapshots[0].get("mlmon_calls_total") == 4
    finally:
        mon.close()


# ------------------------------------------------------------------------------- serving


def test_one_page_serves_every_model_of_the_host(tmp_path: Path) -> None:
    host = HostEndpoint(tmp_path, port=0, instance="h")
    m = mlmon.Monitor("m", emitters=[host], flush_interval=300)
    n = mlmon.Monitor("n", version="2", emitters=[host], flush_interval=300)
    try:
        m.track(lambda x: x)(1)
        pn = n.track(lambda x: x)
        pn(1)
        pn(2)
        m.flush()
        n.flush()
        lines = host.render().splitlines()
        assert 'mlmon_calls_total{model="m",instance="h"} 1' in lines
        assert 'mlmon_calls_total{model="n",version="2",instance="h"} 2' in lines
        m.close()  # the endpoint stays up for n, and m's counters stay on the page
        assert host.serving
        assert 'mlmon_calls_total{model="m",instance="h"} 1' in host.render().splitlines()
    finally:
        m.close()
        n.close()


def test_the_port_passes_to_another_worker_when_the_server_closes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a, b = HostEndpoint(tmp_path, port=port), HostEndpoint(tmp_path, port=port)
    ma = mlmon.Monitor("m", emitters=[a], instance="a", flush_interval=300)
    mb = mlmon.Monitor("m", emitters=[b], instance="b", flush_interval=300)
    try:
        ma.track(lambda x: x)(1)
        ma.flush()
        mb.flush()
        assert a.serving and not b.serving
        assert sum(a.self_metrics()[i][1] for i in range(1, 5)) == 0  # a taken port is no error
        ma.close()  # its state goes to the archive, its port is free
        assert not a.serving
        mb.flush()
        assert b.serving
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            lines = resp.read().decode().splitlines()
        assert 'mlmon_calls_total{model="m",instance="' + socket.gethostname() + '"} 1' in lines
    finally:
        ma.close()
        mb.close()


def test_an_idle_worker_takes_the_port_within_the_lease_interval(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = HostEndpoint(tmp_path, port=port, lease_interval=0.05)
    b = HostEndpoint(tmp_path, port=port, lease_interval=0.05)
    ma = mlmon.Monitor("m", emitters=[a], instance="a", flush_interval=300)
    mb = mlmon.Monitor("m", emitters=[b], instance="b", flush_interval=300)  # never flushes
    try:
        ma.flush()
        assert a.serving
        ma.close()
        deadline = time.monotonic() + 10
        while not b.serving:
            assert time.monotonic() < deadline, "the idle worker never took the port"
            time.sleep(0.02)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert "mlmon_host_retired_total" in resp.read().decode()
    finally:
        ma.close()
        mb.close()


def test_a_scrape_that_fails_fails_alone_and_is_counted(tmp_path: Path) -> None:
    d = tmp_path / "host"
    d.mkdir()
    host = HostEndpoint(d, port=0)
    mon = mlmon.Monitor("m", emitters=[host], flush_interval=300)
    try:
        mon.flush()
        for p in d.iterdir():
            p.unlink()
        d.rmdir()  # the directory is gone: the scrape cannot lock it
        with pytest.raises(OSError):
            urllib.request.urlopen(host.url, timeout=10)
        d.mkdir()
        mon.flush()  # the next flush writes the state again, and the next scrape works
        with urllib.request.urlopen(host.url, timeout=10) as resp:
            assert resp.status == 200
        assert dict(((n, lab.get("stage")), v) for n, v, lab in host.self_metrics())["mlmon_internal_errors_total", "host_scrape"] == 1
    finally:
        mon.close()


def test_a_failing_write_is_counted_and_never_reaches_predict(tmp_path: Path) -> None:
    d = tmp_path / "gone"
    d.mkdir()
    host = HostEndpoint(d, port=0)
    mem = InMemoryEmitter()
    mon = mlmon.Monitor("m", emitters=[host, mem], flush_interval=300)
    try:
        d.rmdir()
        p = mon.track(lambda x: x)
        assert p(3) == 3
        mon.flush()
        mon.flush()
        snap = mon.flush()  # a snapshot counts the failures of the cycles before it
        assert snap.get("mlmon_emit_errors_total", emitter="host") == 2
        assert snap.get("mlmon_internal_errors_total", stage="host_publish") == 2
    finally:
        mon.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"port": -1}, "port"),
        ({"path": "metrics"}, "path"),
        ({"stale_after": 0}, "stale_after"),
        ({"lock_timeout": float("inf")}, "lock_timeout"),
        ({"max_states": 0}, "max_states"),
        ({"max_state_bytes": 1.5}, "max_state_bytes"),
        ({"max_scrape_bytes": 0}, "max_scrape_bytes"),
        ({"fold_batch": True}, "fold_batch"),
        ({"lease_interval": -1}, "lease_interval"),
        ({"instance": ""}, "instance"),
    ],
)
def test_bad_configuration_names_the_field(tmp_path: Path, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HostEndpoint(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_the_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="directory"):
        HostEndpoint(tmp_path / "missing")


def test_the_gunicorn_hook_needs_a_host_endpoint() -> None:
    from mlmon.integrations.gunicorn import serve_host_endpoint

    with pytest.raises(TypeError, match="HostEndpoint"):
        serve_host_endpoint(object())  # type: ignore[arg-type]
