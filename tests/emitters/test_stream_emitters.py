"""JsonlEmitter and ConsoleEmitter on real pipes and sockets whose reader stopped, and with
names no stream can carry."""

from __future__ import annotations

import io
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import TextIO

import pytest

from mlmon.emitters.console import ConsoleEmitter
from mlmon.emitters.jsonl import JsonlEmitter
from mlmon.snapshot import Sample, Snapshot


def snap(*samples: Sample, model: str = "fraud") -> Snapshot:
    return Snapshot(model, None, "h:1", 1_700_000_000.0, 60.0, samples)


def big_snapshot(i: int) -> Snapshot:
    # ~9 KB per line: longer than PIPE_BUF, so a line can be cut by a full pipe.
    return snap(
        Sample.make("mlmon_calls_total", i),
        *(Sample.make("mlmon_feature_mean", j, feature=f"feature_{j:04d}") for j in range(150)),
    )


@pytest.fixture
def pipe() -> Iterator[tuple[int, TextIO]]:
    r, w = os.pipe()
    stream = open(w, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    yield r, stream
    stream.close()
    os.close(r)


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    for _ in range(100_000):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk
    os.set_blocking(fd, True)
    return out


def test_jsonl_to_a_full_pipe_never_blocks_past_the_timeout(pipe: tuple[int, TextIO]) -> None:
    r, stream = pipe
    em = JsonlEmitter(stream, timeout=0.2)
    failures = 0
    t0 = time.monotonic()
    for i in range(30):  # 30 * 9 KB: far past the 64 KB a pipe holds
        start = time.monotonic()
        try:
            em.emit(big_snapshot(i))
        except TimeoutError:
            failures += 1
        assert time.monotonic() - start < 0.2 + 0.3
    assert time.monotonic() - t0 < 30 * 0.5
    assert failures > 0
    dropped = em.self_metrics()[0]
    assert dropped[0] == "mlmon_dropped_total" and dropped[2] == {"buffer": "jsonl"}
    assert 0 < dropped[1] <= failures
    # The reader comes back: the cut line is finished first, then new lines follow whole.
    data = drain(r)
    em.emit(big_snapshot(100))
    data += drain(r)
    lines = data.decode().split("\n")
    assert lines[-1] == ""
    calls = [json.loads(line)["samples"][0][2] for line in lines[:-1]]
    assert calls[-1] == 100
    assert len(calls) + dropped[1] == 31  # every line arrived whole, or was counted as dropped
    assert calls == sorted(calls)
    em.close()
    assert not stream.closed  # the caller's stream stays open


def test_console_to_a_socket_whose_reader_stopped(tmp_path: object) -> None:
    a, b = socket.socketpair()
    stream = a.makefile("w", encoding="utf-8")
    em = ConsoleEmitter(stream, timeout=0.2)
    try:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        failures = 0
        for i in range(2000):
            start = time.monotonic()
            try:
                em.emit(snap(Sample.make("mlmon_calls_total", i)))
            except TimeoutError:
                failures += 1
                if failures >= 3:
                    break
            assert time.monotonic() - start < 0.2 + 0.3
        assert failures == 3
        assert em.self_metrics()[0][1] >= 1
    finally:
        em.close()
        stream.close()
        a.close()
        b.close()


def test_plain_streams_are_written_as_before() -> None:
    out = io.StringIO()
    em = JsonlEmitter(out)
    em.emit(snap(Sample.make("mlmon_calls_total", 3)))
    assert json.loads(out.getvalue())["samples"] == [["mlmon_calls_total", {}, 3.0]]


def test_jsonl_skips_and_counts_hostile_series_alone() -> None:
    out = io.StringIO()
    em = JsonlEmitter(out)
    em.emit(
        snap(
            Sample.make("mlmon_feature_mean", 1, feature="\ud800"),
            Sample.make("mlmon_feature_mean", 2, feature="a\x00b"),
            Sample.make("mlmon_feature_mean", 3, feature="x" * 5000),
            Sample.make("mlmon_feature_mean", 4, feature="new\nline"),
            Sample.make("mlmon_feature_mean", float("nan"), feature="nan"),
            Sample.make("mlmon_feature_mean", float("inf"), feature="inf"),
            Sample.make("mlmon_calls_total", 3),
        )
    )
    line = out.getvalue()
    assert line.count("\n") == 1
    line.encode("utf-8")  # valid Unicode throughout
    samples = json.loads(line)["samples"]
    assert samples == [
        ["mlmon_feature_mean", {"feature": "new\nline"}, 4.0],
        ["mlmon_feature_mean", {"feature": "nan"}, None],
        ["mlmon_feature_mean", {"feature": "inf"}, None],
        ["mlmon_calls_total", {}, 3.0],
    ]
    assert ("mlmon_dropped_total", 3.0, {"buffer": "jsonl_series"}) in em.self_metrics()
    with pytest.raises(ValueError, match="identity"):
        em.emit(snap(Sample.make("mlmon_calls_total", 3), model="m\udc80"))
    assert ("mlmon_dropped_total", 4.0, {"buffer": "jsonl_series"}) in em.self_metrics()
    em.emit(snap(Sample.make("mlmon_calls_total", 4)))  # later snapshots are unaffected
    assert out.getvalue().count("\n") == 2


def test_console_escapes_names_and_skips_ones_it_cannot_encode() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", write_through=True)
    em = ConsoleEmitter(stream)
    em.emit(
        snap(
            Sample.make("mlmon_latency_seconds", 0.0005, quantile="0.5"),
            Sample.make("mlmon_feature_drift_psi", 0.5, feature="\ud800"),
            Sample.make("mlmon_feature_drift_psi", 0.4, feature="evil\nALERTS firing: all"),
            Sample.make("mlmon_feature_drift_psi", 0.3, feature="âge"),
            Sample.make("mlmon_alert_firing", 1, rule="r\x00"),
            model="fraud\ninjected",
        )
    )
    text = raw.getvalue().decode("ascii")
    assert "fraud\\ninjected" in text
    assert "evil\\nALERTS firing: all 0.400" in text
    assert "\\xe2ge 0.300" in text  # the ASCII stream cannot carry it: escaped, not lost
    assert "ALERTS firing:" not in text.replace("evil\\nALERTS firing: all", "")
    assert "\\u00b5s" in text or "\\xb5s" in text  # the latency unit, escaped
    assert ("mlmon_dropped_total", 2.0, {"buffer": "console_series"}) in em.self_metrics()


@pytest.mark.parametrize("cls", [JsonlEmitter, ConsoleEmitter])
def test_bad_timeout_is_a_value_error_naming_it(cls: type) -> None:
    with pytest.raises(ValueError, match="timeout"):
        cls(io.StringIO(), timeout=0)
