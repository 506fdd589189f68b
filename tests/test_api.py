"""The process-wide default monitor and module-level functions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import mlmon
from mlmon import _default as _api


@pytest.fixture(autouse=True)
def fresh_default() -> Iterator[None]:
    yield
    if _api._default is not None:
        _api._default.close()
        _api._default = None


def test_track_works_before_configure_and_moves_to_the_configured_monitor() -> None:
    @mlmon.track
    def predict(x: int) -> int:
        return x

    predict(1)  # before configure(): the lazily created default monitor
    first = mlmon.get_monitor()
    assert first.snapshot().get("mlmon_calls_total") == 1
    mon = mlmon.configure(model="configured", version="7")
    predict(2)
    predict(3)
    assert mon.snapshot().get("mlmon_calls_total") == 2
    assert mon.version == "7"
    assert first._closed  # the replaced default was flushed and closed


def test_module_level_context_manager_and_async() -> None:
    mon = mlmon.configure(model="ctx")
    with mlmon.track() as call:
        call.outputs([0.1, 0.2])

    @mlmon.track(outputs=False)
    async def apredict(x: int) -> int:
        return x

    assert asyncio.run(apredict(5)) == 5
    snap = mlmon.snapshot()
    assert snap.get("mlmon_calls_total") == 2
    assert snap.get("mlmon_rows_total") == 3
    assert mlmon.flush().model == mon.name == "ctx"


def test_configure_validates_like_monitor() -> None:
    with pytest.raises(ValueError, match="name"):
        mlmon.configure(model="bad name")
