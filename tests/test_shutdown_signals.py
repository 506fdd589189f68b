"""The opt-in SIGTERM chain: close every monitor, then the previous handler (or die by SIGTERM).

Each case runs a real Python process that installs the handler, records calls into a monitor
writing JSON lines (flushing every hour, so a line can only come from ``close()``), tells the
test it is ready, and waits; the test sends the signal and reads what the process left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import mlmon
from mlmon.integrations.signals import (
    close_monitors,
    install_sigterm_handler,
    uninstall_sigterm_handler,
)

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

PRELUDE = """
import os, signal, sys, threading, time
import mlmon
from mlmon.emitters import JsonlEmitter
from mlmon.integrations.signals import install_sigterm_handler

OUT = sys.argv[1]
mon = mlmon.Monitor(
    "sigterm_script", window=3600.0, flush_interval=3600.0, close_timeout=2.0, emitters=[JsonlEmitter(OUT)]
)
predict = mon.track(lambda x: 2 * x)
for i in range(37):
    predict(i)
"""

WAIT = """
print("ready", flush=True)
for _ in range(300):      # at most 30 s
    time.sleep(0.1)
print("not signalled", flush=True)
"""


def run_until_signalled(
    tmp_path: Path, body: str, sig: int = signal.SIGTERM, after: str | None = None, again: float | None = None
) -> tuple[int, list[dict[str, Any]], str, float]:
    """(exit status, JSON lines written, stdout, seconds from the signal to the exit)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body))
    out = tmp_path / "snapshots.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the script prints or dies
        assert "ready\n" == line, (line, proc.stderr.read() if proc.stderr else "")
        start = time.monotonic()
        proc.send_signal(sig)
        if again is not None:  # a second signal while the first is being handled
            time.sleep(again)
            proc.send_signal(sig)
        if after is not None:  # the process lives on: wait for the flush before going on
            deadline = time.monotonic() + 10
            while not (out.exists() and out.read_text().endswith("\n")) and time.monotonic() < deadline:
                time.sleep(0.02)
        stdout, stderr = proc.communicate(after, timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    assert "Traceback" not in stderr, stderr
    return proc.returncode, lines, stdout, took


def calls(lines: list[dict[str, Any]]) -> list[float | None]:
    return [mlmon.Snapshot.from_dict(d).get("mlmon_calls_total") for d in lines]


def test_without_the_handler_sigterm_loses_the_last_data(tmp_path: Path) -> None:
    """The control: SIGTERM's default action skips atexit."""
    status, lines, _, _ = run_until_signalled(tmp_path, WAIT)
    assert (-signal.SIGTERM, []) == (status, lines)


def test_sigterm_flushes_then_the_process_still_dies_by_sigterm(tmp_path: Path) -> None:
    status, lines, stdout, _ = run_until_signalled(tmp_path, "install_sigterm_handler()\n" + WAIT)
    assert -signal.SIGTERM == status
    assert [37.0] == calls(lines)  # the final snapshot, once
    assert "not signalled" not in stdout


def test_installing_twice_chains_once(tmp_path: Path) -> None:
    body = "install_sigterm_handler()\ninstall_sigterm_handler()\n" + WAIT
    status, lines, _, _ = run_until_signalled(tmp_path, body)
    assert (-signal.SIGTERM, [37.0]) == (status, calls(lines))


def test_the_previous_python_handler_runs_after_the_flush(tmp_path: Path) -> None:
    body = textwrap.dedent("""
    def mine(signum, frame):
        # the monitor is closed already: its final line is on disk when this runs
        with open(OUT) as f:
            print(f"previous handler: {len(f.read().splitlines())} line(s) written", flush=True)
        sys.exit(3)

    signal.signal(signal.SIGTERM, mine)
    install_sigterm_handler()
    """) + WAIT
    status, lines, stdout, _ = run_until_signalled(tmp_path, body)
    assert 3 == status
    assert "previous handler: 1 line(s) written\n" in stdout
    assert [37.0] == calls(lines)  # once: atexit, run by sys.exit, finds it closed


def test_an_ignored_sigterm_stays_ignored_after_the_flush(tmp_path: Path) -> None:
    body = textwrap.dedent("""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    install_sigterm_handler()
    print("ready", flush=True)
    sys.stdin.readline()          # the test writes a line after the signal
    predict(1)                    # after close: never emitted
    print("still running", flush=True)
    """)
    status, lines, stdout, _ = run_until_signalled(tmp_path, body, after="go\n")
    assert 0 == status
    assert "still running\n" in stdout
    assert [37.0] == calls(lines)


def test_the_flush_is_bounded_when_a_monitor_cannot_close(tmp_path: Path) -> None:
    """A reporter cycle is stuck on a hung backend (holding that monitor's emit lock for up to
    its 30 s ``emit_timeout``) when SIGTERM arrives: the other monitor still flushes, and the
    handler stops waiting after the bound instead of the 30 s."""
    body = textwrap.dedent("""
    class Hung:
        name = "hung"
        def emit(self, snapshot):
            print("ready", flush=True)    # a flush of `slow` is under way now
            threading.Event().wait(60)
        def close(self):
            pass

    slow = mlmon.Monitor("sigterm_hung", emitters=[Hung()], emit_timeout=30.0, close_timeout=1.0)
    install_sigterm_handler()
    threading.Thread(target=slow.flush, daemon=True).start()
    for _ in range(300):          # the main thread runs Python code: the handler runs at once
        time.sleep(0.1)
    print("not signalled", flush=True)
    """)
    status, lines, stdout, took = run_until_signalled(tmp_path, body)
    assert -signal.SIGTERM == status
    assert "not signalled" not in stdout
    # `mon` closes on its own thread at once; `slow`'s close gives up waiting for its stuck cycle
    # within its own close_timeout; either way the handler stops waiting after the largest
    # close_timeout (2 s) plus 0.5 s, never the flush's 30 s.
    assert [37.0] == calls(lines)
    assert took < 2.5 + 3.0, took


def test_a_sigterm_during_close_lets_that_close_finish_then_dies_by_sigterm(tmp_path: Path) -> None:
    """Closing again from the handler would wait for the lock the interrupted close() holds."""
    body = textwrap.dedent("""
    class Slow:
        name = "slow"
        def emit(self, snapshot):
            print("ready", flush=True)    # the main thread is inside other.close() now
            time.sleep(1.0)
        def close(self):
            pass

    other = mlmon.Monitor("sigterm_closing", window=3600.0, flush_interval=3600.0,
                          emitters=[Slow(), JsonlEmitter(OUT)])
    other.track(lambda: None)()
    install_sigterm_handler()
    other.close()
    for _ in range(300):
        time.sleep(0.1)
    print("not signalled", flush=True)
    """)
    status, lines, stdout, took = run_until_signalled(tmp_path, body)
    assert -signal.SIGTERM == status and "not signalled" not in stdout
    # each monitor's final snapshot exactly once: `other` by its own close, `mon` by the handler
    assert [("sigterm_closing", 1.0), ("sigterm_script", 37.0)] == sorted(
        (d["model"], c) for d, c in zip(lines, calls(lines), strict=True)
    )
    assert took < 5.0, took


def test_a_second_sigterm_while_closing_waits_for_the_close(tmp_path: Path) -> None:
    body = textwrap.dedent("""
    class Slow:
        name = "slow"
        def emit(self, snapshot):
            time.sleep(1.0)
            with open(OUT + ".slow", "w") as f:
                f.write("delivered")
        def close(self):
            pass

    other = mlmon.Monitor("sigterm_twice", window=3600.0, flush_interval=3600.0, emitters=[Slow()])
    install_sigterm_handler()
    """) + WAIT
    status, lines, _, took = run_until_signalled(tmp_path, body, again=0.3)
    assert -signal.SIGTERM == status
    assert "delivered" == (tmp_path / "snapshots.jsonl.slow").read_text()  # not cut short at 0.3 s
    assert [37.0] == calls(lines)
    assert 1.0 <= took < 5.0, took


# --------------------------------------------------------------------------- in this process


def test_install_from_another_thread_is_refused() -> None:
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            install_sigterm_handler()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=attempt, name="not-main")
    thread.start()
    thread.join(10)
    assert 1 == len(errors) and "main thread" in str(errors[0]) and "not-main" in str(errors[0])


def test_install_keeps_the_previous_handler_and_uninstall_puts_it_back() -> None:
    def mine(signum: int, frame: Any) -> None:
        pass

    original = signal.signal(signal.SIGTERM, mine)
    try:
        install_sigterm_handler()
        installed = signal.getsignal(signal.SIGTERM)
        install_sigterm_handler()
        assert installed is signal.getsignal(signal.SIGTERM)
        assert mine is getattr(installed, "previous", None)
        assert (True, False) == (uninstall_sigterm_handler(), uninstall_sigterm_handler())
        assert mine is signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, original)


def test_close_monitors_closes_the_given_ones_only() -> None:
    a = mlmon.Monitor("close_given_a")
    b = mlmon.Monitor("close_given_b")
    assert close_monitors([a])
    assert a not in list(mlmon.monitor.monitors()) and b in list(mlmon.monitor.monitors())
    b.close()


def test_close_monitors_reports_a_close_that_outlives_the_bound() -> None:
    release = threading.Event()

    class Stuck:
        close_timeout = 5.0

        def close(self) -> None:
            release.wait(10)

    start = time.monotonic()
    assert close_monitors([Stuck()], timeout=0.2) is False
    assert time.monotonic() - start < 5.0
    release.set()
