"""The reporter: cycles, emitter isolation, exit and close."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import mlmon
from mlmon.snapshot import Snapshot
from mlmon.testing import FakeClock, InMemoryEmitter


class Raising:
    name = "raising"

    def emit(self, snapshot: Snapshot) -> None:
        raise ConnectionError("backend down")

    def close(self) -> None:
        raise OSError("close failed")


class Blocking:
    """Blocks inside emit until released: a backend that hangs."""

    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def emit(self, snapshot: Snapshot) -> None:
        self.entered.set()
        self.release.wait(30)

    def close(self) -> None:
        self.release.set()


def test_flush_emits_to_every_emitter_and_isolates_failures() -> None:
    a, b = InMemoryEmitter(name="a"), InMemoryEmitter(name="b")
    mon = mlmon.Monitor("m", emitters=[a, Raising(), b], clock=FakeClock())
    mon.track(lambda: 1.0)()
    mon.flush()
    snap = mon.flush()
    assert [len(a.snapshots), len(b.snapshots)] == [2, 2]
    assert snap.get("mlmon_emit_errors_total", emitter="raising") == 1  # counted before this flush
    assert snap.get("mlmon_emit_errors_total", emitter="a") == 0
    assert snap.get("mlmon_emit_seconds", emitter="b") is not None
    mon.close()  # a raising close() is counted, not raised
    assert a.closed and b.closed
    assert mon.snapshot().get("mlmon_internal_errors_total", stage="close") == 1


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    ev = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        ev.wait(0.01)
    return False


def test_the_background_thread_emits_every_flush_interval_of_the_monitors_clock() -> None:
    clock, mem = FakeClock(), InMemoryEmitter()
    mon = mlmon.Monitor("m", emitters=[mem], flush_interval=10.0, window=60.0, clock=clock)
    mon.track(lambda: 1.0)()  # starts the background thread
    assert mon._scheduler is not None
    for n in (1, 2, 3):
        clock.advance(10.0)
        mon._scheduler.wake()
        assert wait_for(lambda n=n: len(mem.snapshots) == n)
    assert mem.snapshots[-1].get("mlmon_calls_total") == 1
    assert [s.timestamp - clock.time() for s in mem.snapshots] == [-20.0, -10.0, 0.0]
    mon.close()


def test_a_hanging_emitter_blocks_neither_predict_nor_snapshot() -> None:
    blocking = Blocking()
    mon = mlmon.Monitor("m", emitters=[blocking])
    predict = mon.track(lambda x: x)
    flusher = threading.Thread(target=mon.flush)
    flusher.start()
    assert blocking.entered.wait(10)
    done = threading.Event()

    def work() -> None:
        for i in range(10_000):
            predict(i)
        mon.snapshot()
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    finished = done.wait(30)  # would deadlock if predict or snapshot waited on the emitter
    blocking.release.set()
    flusher.join(10)
    worker.join(10)
    assert finished
    assert mon.snapshot().get("mlmon_calls_total") == 10_000
    mon.close()


def test_close_is_idempotent_and_stops_the_reporter_thread() -> None:
    mon = mlmon.Monitor("m_close", clock=FakeClock())
    mon.track(lambda: 1)()
    assert any(t.name == "mlmon-reporter-m_close" for t in threading.enumerate())
    mon.close()
    mon.close()
    assert not any(t.name == "mlmon-reporter-m_close" for t in threading.enumerate())


def test_concurrent_close_emits_once_and_closes_each_emitter_once() -> None:
    class Counting(InMemoryEmitter):
        closes = 0

        def close(self) -> None:
            Counting.closes += 1
            super().close()

    mem = Counting()
    mon = mlmon.Monitor("m_cc", emitters=[mem], clock=FakeClock())
    mon.track(lambda: 1)()
    threads = [threading.Thread(target=mon.close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert (len(mem.snapshots), Counting.closes) == (1, 1)


def test_flush_after_close_emits_nothing_to_the_closed_emitters() -> None:
    mem = InMemoryEmitter()
    mon = mlmon.Monitor("m_fac", emitters=[mem], clock=FakeClock())
    mon.track(lambda: 1)()
    mon.close()
    snap = mon.flush()
    assert snap.get("mlmon_calls_total") == 1
    assert len(mem.snapshots) == 1


def test_a_hanging_emitter_starves_neither_the_others_nor_close() -> None:
    blocking, mem = Blocking(), InMemoryEmitter()
    mon = mlmon.Monitor("m_hang", emitters=[blocking, mem], emit_timeout=0.2, close_timeout=1.0, clock=FakeClock())
    mon.track(lambda: 1)()
    for _ in range(3):
        mon.flush()  # each waits at most emit_timeout for the hanging emitter
    assert len(mem.snapshots) == 3
    snap = mon.snapshot()
    assert snap.get("mlmon_emit_errors_total", emitter="blocking") == 1  # the first cycle timed out
    assert snap.get("mlmon_dropped_total", buffer="emit:blocking") == 2  # later cycles skipped it
    t0 = time.monotonic()
    mon.close()
    assert time.monotonic() - t0 < 6.0
    assert len(mem.snapshots) == 4 and mem.closed
    blocking.release.set()


@pytest.mark.parametrize("exc", [SystemExit(2), KeyboardInterrupt(), RuntimeError("x")])
def test_an_emitter_raising_any_exception_is_counted_and_keeps_getting_snapshots(exc: BaseException) -> None:
    class Raiser:
        name = "raiser"
        emits = 0

        def emit(self, snapshot: Snapshot) -> None:
            Raiser.emits += 1
            raise exc

        def close(self) -> None:
            pass

    mon = mlmon.Monitor("m_raise", emitters=[Raiser()], clock=FakeClock())
    mon.flush()
    mon.flush()
    assert Raiser.emits == 2
    assert mon.snapshot().get("mlmon_emit_errors_total", emitter="raiser") == 2
    mon.close()


def test_interpreter_exit_flushes_what_was_not_emitted(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    script = textwrap.dedent(
        f"""
        import mlmon
        from mlmon.emitters import JsonlEmitter
        mon = mlmon.Monitor("exiting", flush_interval=3600, window=3600,
                            emitters=[JsonlEmitter({str(out)!r})])
        predict = mon.track(lambda x: x)
        for i in range(123):
            predict(i)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    last = json.loads(out.read_text().splitlines()[-1])
    calls = [v for name, labels, v in last["samples"] if name == "mlmon_calls_total"]
    assert calls == [123]


def test_reporter_survives_a_failing_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, mem = FakeClock(), InMemoryEmitter()
    mon = mlmon.Monitor("m", emitters=[mem], flush_interval=10.0, window=60.0, clock=clock)
    calls: list[Any] = []
    real = mon._build_locked

    def flaky(*args: Any, **kwargs: Any) -> Snapshot:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first cycle fails")
        return real(*args, **kwargs)

    monkeypatch.setattr(mon, "_build_locked", flaky)
    mon.track(lambda: 1)()
    assert mon._scheduler is not None
    sched = mon._scheduler
    for i in (1, 2):
        clock.advance(10.0)
        sched.wake()
        assert wait_for(lambda i=i: sched.ticks >= i)
    assert wait_for(lambda: bool(mem.snapshots)), "the reporter died after one failing cycle"
    assert mem.snapshots[-1].get("mlmon_internal_errors_total", stage="reporter") == 1
    mon.close()


def test_close_keeps_its_bound_while_a_cycle_is_stuck_on_a_hanging_emitter() -> None:
    blocking = Blocking()
    mon = mlmon.Monitor("m_stuck", emitters=[blocking], emit_timeout=30.0, close_timeout=1.0, clock=FakeClock())
    mon.track(lambda: 1)()
    flusher = threading.Thread(target=mon.flush)  # a cycle that waits up to 30 s for the emitter
    flusher.start()
    assert blocking.entered.wait(10)
    t0 = time.monotonic()
    mon.close()
    assert time.monotonic() - t0 < 4.0
    assert mon.snapshot().get("mlmon_internal_errors_total", stage="close") >= 1
    blocking.release.set()
    flusher.join(10)
