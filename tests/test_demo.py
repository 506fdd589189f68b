"""The demo (the README's first command) runs and shows the service metrics moving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlmon.demo import run


def test_demo_command_shows_tables_alerts_and_writes_the_report(tmp_path: Path) -> None:
    log, html = tmp_path / "m.jsonl", tmp_path / "r.html"
    proc = subprocess.run(
        [sys.executable, "-m", "mlmon", "demo", "--seconds", "20", "--flush-interval", "1",
         "--jsonl", str(log), "--report", str(html)],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    out = proc.stdout
    assert out.count("── mlmon demo v1.0") >= 15
    assert "latency p50" in out and "process cpu" in out and "quality precision" in out
    assert "mlmon demo: 20s served" in out and "ValueError=" in out
    assert "alert latency_p99_over_budget: pending → firing → resolved" in out
    assert "drifting features: x2" in out
    assert f"HTML report: {html}" in out
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<script" not in page


def test_every_service_and_resource_metric_moves(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    final = run(seconds=6.0, flush_interval=0.5, jsonl=str(path), quiet=True, report="")
    assert final.get("mlmon_errors_total", error_type="ValueError") > 0
    assert final.get("mlmon_slow_calls_total") > 0
    assert final.get("mlmon_rows_total") > final.get("mlmon_calls_total") > 0
    snaps = [json.loads(line) for line in path.read_text().splitlines()]
    max_latency = max(
        v for s in snaps for name, labels, v in s["samples"]
        if name == "mlmon_latency_seconds" and labels == {"quantile": "1"}
    )  # fmt: skip
    assert max_latency >= 1.0  # the hung request, seen in the window while it lasted
    series: dict[str, set[float]] = {}
    for snap in snaps:
        for name, labels, value in snap["samples"]:
            if not labels:
                series.setdefault(name, set()).add(value)
    moving = {
        "mlmon_calls_total", "mlmon_rows_total", "mlmon_calls_per_second", "mlmon_rows_per_second",
        "mlmon_error_ratio", "mlmon_availability_ratio", "mlmon_inflight_calls",
        "mlmon_oldest_inflight_seconds", "mlmon_slow_calls_total", "mlmon_latency_seconds_mean",
        "mlmon_process_cpu_percent", "mlmon_process_resident_memory_bytes", "mlmon_process_threads",
        "mlmon_process_open_fds", "mlmon_system_cpu_percent",
    }  # fmt: skip
    still = sorted(name for name in moving if len(series.get(name, ())) < 2)
    assert not still, f"did not move during the demo: {still}"
