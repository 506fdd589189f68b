"""Static checks run with the tests: ruff on the tree, mypy --strict on the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    proc = run(sys.executable, "-m", "ruff", "check", "mlmon", "tests", "benchmarks", "examples")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_mypy_strict_is_clean() -> None:
    proc = run(sys.executable, "-m", "mypy", "--strict", "mlmon")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
