"""Console, JSON lines and in-memory emitters."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import mlmon
from mlmon.emitters import ConsoleEmitter, JsonlEmitter
from mlmon.testing import FakeClock, InMemoryEmitter


def busy_monitor(emitter: object) -> mlmon.Monitor:
    clock = FakeClock()
    mon = mlmon.Monitor("shown", version="3", emitters=[emitter], clock=clock, latency_budget=0.05)  # type: ignore[list-item]

    @mon.track
    def predict(x: float) -> float:
        clock.advance(0.01 if x > 0 else 0.2)
        if x == 0:
            raise ValueError
        return x

    for x in (1.0, 2.0, -1.0, 0.0):
        try:
            predict(x)
        except ValueError:
            pass
    return mon


def test_console_table_shows_service_latency_and_resources() -> None:
    out = io.StringIO()
    mon = busy_monitor(ConsoleEmitter(out))
    mon.flush()
    text = out.getvalue()
    assert "mlmon shown v3" in text
    assert "calls 4" in text and "errors 1 (25.0%)" in text and "slow 2" in text
    assert "p50 10.0ms" in text and "max 200.0ms" in text
    assert "rss" in text and "threads" in text
    mon.close()


def test_jsonl_writes_one_parseable_line_per_flush(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.jsonl"
    mon = busy_monitor(JsonlEmitter(path))
    mon.flush()
    mon.flush()
    mon.close()  # close flushes once more
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    snaps = [mlmon.Snapshot.from_dict(json.loads(line)) for line in lines]
    assert [s.get("mlmon_calls_total") for s in snaps] == [4, 4, 4]
    assert snaps[0].version == "3"


def test_jsonl_rotation_bounds_disk_use(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    em = JsonlEmitter(path, max_bytes=8192, backups=2)  # a snapshot line is ~4.3 kB
    mon = busy_monitor(em)
    for _ in range(60):
        mon.flush()
    mon.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["m.jsonl", "m.jsonl.1", "m.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 8192
        for line in p.read_text().splitlines():
            json.loads(line)  # every line whole


def test_jsonl_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        JsonlEmitter("x.jsonl", max_bytes=10)
    with pytest.raises(TypeError, match="target"):
        JsonlEmitter(42)  # type: ignore[arg-type]


def test_in_memory_emitter_is_bounded() -> None:
    mem = InMemoryEmitter(maxlen=3)
    mon = busy_monitor(mem)
    for _ in range(5):
        mon.flush()
    assert len(mem.snapshots) == 3
    assert mem.values("mlmon_calls_total") == [4, 4, 4]
    mon.close()
