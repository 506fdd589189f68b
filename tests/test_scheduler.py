"""The scheduler: ticks by the injected clock, early drains on wake, survives what it runs."""

from __future__ import annotations

import threading

import pytest

from mlmon.scheduler import Scheduler
from mlmon.testing import FakeClock


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    ev = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():  # type: ignore[operator]
            return True
        ev.wait(0.01)
    return False


def test_ticks_follow_the_fake_clock_not_real_time() -> None:
    clock, ticks = FakeClock(), []
    s = Scheduler(clock, 10.0, lambda: ticks.append(clock.monotonic()))
    assert not s.run_pending()
    clock.advance(9.999)
    assert not s.run_pending()
    clock.advance(0.001)
    assert s.run_pending()
    assert not s.run_pending()  # once per interval
    clock.advance(10.0)
    assert s.run_pending()
    assert ticks == [10.0, 20.0]


def test_a_long_suspension_gives_one_tick_not_a_burst() -> None:
    clock, ticks = FakeClock(), []
    s = Scheduler(clock, 1.0, lambda: ticks.append(1))
    clock.advance(3600.0)
    assert s.run_pending()
    assert not s.run_pending()
    assert ticks == [1]
    clock.advance(1.0)
    assert s.run_pending()


def test_the_thread_runs_due_ticks_and_drains_when_woken() -> None:
    clock = FakeClock()
    ticks, drains = [], []
    s = Scheduler(clock, 5.0, lambda: ticks.append(1), lambda: drains.append(1))
    s.start()
    try:
        s.wake()
        assert wait_for(lambda: drains == [1])
        assert ticks == []  # woken, but no time has passed on the clock
        clock.advance(5.0)
        s.wake()
        assert wait_for(lambda: ticks == [1])
    finally:
        assert s.stop(5.0)
    assert not s.running


@pytest.mark.parametrize("exc", [RuntimeError("bug"), SystemExit(3), KeyboardInterrupt()])
def test_a_tick_that_raises_anything_is_reported_and_the_thread_lives_on(exc: BaseException) -> None:
    clock, errors, ticks = FakeClock(), [], []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 1:
            raise exc

    s = Scheduler(clock, 1.0, tick, on_error=lambda stage, e: errors.append((stage, e)))
    s.start()
    try:
        clock.advance(1.0)
        s.wake()
        assert wait_for(lambda: len(ticks) == 1)
        clock.advance(1.0)
        s.wake()
        assert wait_for(lambda: len(ticks) == 2), "the scheduler died after a failing tick"
        assert errors == [("tick", exc)]
    finally:
        s.stop()


def test_stop_ends_the_thread_promptly_even_with_a_long_interval() -> None:
    s = Scheduler(FakeClock(), 3600.0, lambda: None)
    s.start()
    assert s.running
    assert s.stop(5.0)
    assert not s.running


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        Scheduler(FakeClock(), 0.0, lambda: None)
