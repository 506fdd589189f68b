"""The report of a log written by real fleet monitors through a real Redis: the fleet row first,
drawn from the fleet snapshots, whichever process led when; the processes after."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import skip_or_fail
from test_report import Svg

import mlmon
from mlmon import report
from mlmon.emitters import JsonlEmitter
from mlmon.stores import RedisStore
from mlmon.testing import FakeClock

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TASK = mlmon.BinaryClassification(threshold=0.5)
STEPS = 8
ROWS = 60


def last_values(path: Path, instance: str) -> dict[str, float]:
    """The last snapshot of ``instance`` in a JSON-lines log: metric (unlabelled) -> value."""
    found: dict[str, float] = {}
    for text in path.read_text().splitlines():
        rec = json.loads(text)
        if rec["instance"] == instance:
            found = {s[0]: s[2] for s in rec["samples"] if not s[1]}
    return found


def test_report_of_real_fleet_monitors(redis_server: Any, tmp_path: Path) -> None:
    clock = FakeClock(start=time.time())
    rng = np.random.default_rng(7)
    names = [f"p{i}" for i in range(3)]
    logs = {n: tmp_path / f"{n}.jsonl" for n in names}
    mons = {
        n: mlmon.Monitor(
            "fleetrep", task=TASK, clock=clock, instance=n, flush_interval=10.0,
            emitters=[JsonlEmitter(logs[n])], store=RedisStore(redis_server.url, deadline=2.0),
            fleet=mlmon.Fleet(emit_counters=True),
        )
        for n in names
    }  # fmt: skip
    closed: list[str] = []
    try:
        first_leader = None
        for step in range(STEPS):
            for k, n in enumerate(names):
                if n in closed:
                    continue
                scores = rng.random(ROWS)
                labels = (rng.random(ROWS) < scores).astype(int)
                ids = np.arange(ROWS) + (step * 10 + k) * ROWS
                with mons[n].track(ids=ids) as call:
                    call.outputs(scores)
                mons[n].log_feedback(ids, labels)
            for n in names:
                if n not in closed:
                    mons[n].flush()
            leaders = [n for n in names if n not in closed and mons[n]._fleet.leader]  # type: ignore[union-attr]
            assert len(leaders) == 1, leaders
            if step == 3:
                # the leader leaves: another process takes over and the fleet's series goes on
                first_leader = leaders[0]
                mons[first_leader].close()
                closed.append(first_leader)
            clock.advance(10.0)
        assert first_leader is not None
    finally:
        for n in names:
            if n not in closed:
                mons[n].close()
    out = tmp_path / "report.html"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "mlmon", "report", *map(str, logs.values()), "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    page = out.read_text()

    ids = re.findall(r'<section [^>]*data-section="([^"]+)"', page)
    assert ids[:2] == ["summary", "fleet"]
    # the fleet's snapshots came from two leaders' logs: one series, every step after the first
    records = [json.loads(t) for p in logs.values() for t in p.read_text().splitlines()]
    assert {r["instance"] for r in records} == {"fleet", *names}
    fleet_lines = [r for r in records if r["instance"] == "fleet"]
    writers = {n for n, p in logs.items() if any(json.loads(t)["instance"] == "fleet" for t in p.read_text().splitlines())}
    assert first_leader in writers and len(writers) >= 2, writers  # each leader to its own log
    quality = Svg(page, "fleet-quality")
    (precision,) = quality.series()["precision"]
    assert len(precision) == sum(1 for r in fleet_lines if any(s[0] == "mlmon_precision" for s in r["samples"]))
    px = (quality.y1 - quality.y0) / quality.height
    pt = (quality.x1 - quality.x0) / quality.width
    want = sorted(
        (r["timestamp"], s[2]) for r in fleet_lines for s in r["samples"] if s[0] == "mlmon_precision" and not s[1]
    )
    # every fleet snapshot, whichever leader wrote it, is a point of the one fleet line (two
    # leaders closing one after the other may write one timestamp each: both points are kept)
    for (t, _), (dt, _) in zip(want, sorted(precision), strict=True):
        assert dt == pytest.approx(t, abs=0.06 * pt)
    assert sorted(v for _, v in precision) == pytest.approx(sorted(v for _, v in want), abs=0.06 * px)
    # the processes' own charts hold the processes alone
    shown = set(re.findall(r'data-instance="([^"]+)"', page[page.index('data-section="service"'):]))
    assert shown == set(names)
    leader = Svg(page, "fleet-leader").series()
    led = {n for n in names if any(v > 0.5 for line in leader[f"leader · {n}"] for _, v in line)}
    assert first_leader in led and len(led) == 2  # the first leader, then its successor
    processes = Svg(page, "fleet-processes").series()["processes"]
    assert {round(v) for line in processes for _, v in line} >= {2, 3}



def test_chromium_draws_the_fleet_row_first(tmp_path: Path) -> None:
    from test_report_chromium import Charts, chromium_binary, read_png, run_chromium
    from test_report_fleet import PROCESSES, fleet_log

    binary = chromium_binary()
    if binary is None:
        skip_or_fail("chromium is not installed (apt-get install chromium; see scripts/install-test-servers.sh)")
        raise AssertionError("unreachable")
    html = tmp_path / "fleet.html"
    report.write(fleet_log(), html)
    url = html.resolve().as_uri()
    dom = run_chromium(binary, tmp_path / "profile-1", "--dump-dom", "--window-size=1400,1600", url)
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    charts = list(Charts(dom.stdout).charts.items())
    # in document order: the fleet's charts first, its own series only; then the processes'
    assert charts[0] == ("fleet-calls", ["calls/s"])
    assert dict(charts)["fleet-quality"] == ["precision", "recall"]
    assert set(dict(charts)["fleet-leader"]) == {f"leader · {p}" for p in PROCESSES}
    assert [c for c, _ in charts].index("calls") > [c for c, _ in charts].index("fleet-up")
    png = tmp_path / "fleet.png"
    shot = run_chromium(binary, tmp_path / "profile-2", f"--screenshot={png}", "--window-size=1400,1600", url)
    assert png.exists(), f"no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}"
    _, _, pixels = read_png(png.read_bytes())
    rgb = pixels[:, :, :3].astype(np.int64)
    blue = (abs(rgb[:, :, 0] - 0x1D) < 6) & (abs(rgb[:, :, 1] - 0x4E) < 6) & (abs(rgb[:, :, 2] - 0xD8) < 6)
    # the fleet's card and section heading carry the fleet's bar (4 px wide, a blue of no chart)
    assert blue.sum() > 4 * 40
