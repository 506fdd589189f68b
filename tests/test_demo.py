"""The demo (the README's first command) runs and shows the service metrics moving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlmon.demo import run


def test_demo_command_prints_tables_and_a_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mlmon", "demo", "--seconds", "5", "--flush-interval", "1"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out = proc.stdout
    assert out.count("── mlmon demo v1.0") >= 4
    assert "latency p50" in out and "process cpu" in out
    assert "mlmon demo: 5s served" in out and "ValueError=" in out


def test_every_service_and_resource_metric_moves(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    final = run(seconds=6.0, flush_interval=0.5, jsonl=str(path), quiet=True)
    assert final.get("mlmon_errors_total", error_type="ValueError") > 0
    assert final.get("mlmon_slow_calls_total") > 0
    assert final.get("mlmon_latency_seconds", quantile="1") >= 1.0  # the hung request
    assert final.get("mlmon_rows_total") > final.get("mlmon_calls_total") > 0
    snaps = [json.loads(line) for line in path.read_text().splitlines()]
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
