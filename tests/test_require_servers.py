"""Under CI (``MLMON_REQUIRE_SERVERS=1``) a skip is a failure: a missing server or package can
never pass unnoticed. Runs pytest on a small suite with this repository's ``tests/conftest.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = '''
import pytest

def test_skips_at_run_time():
    pytest.skip("carbon-cache is not installed")

@pytest.mark.skipif(True, reason="no redis-server")
def test_skipped_by_marker():
    pass

def test_passes():
    pass

@pytest.mark.xfail(strict=True, reason="a known bug")
def test_expected_failure():
    assert False
'''
IMPORT_SKIP = 'import pytest\npytest.importorskip("no_such_module_for_mlmon")\n\ndef test_never_runs():\n    pass\n'


def run(tmp_path: Path, required: str | None) -> str:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_import_skip.py").write_text(IMPORT_SKIP)
    env = {k: v for k, v in os.environ.items() if k != "MLMON_REQUIRE_SERVERS"}
    if required is not None:
        env["MLMON_REQUIRE_SERVERS"] = required
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--continue-on-collection-errors", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["1", "true"])
def test_every_skip_fails_when_servers_are_required(tmp_path: Path, value: str) -> None:
    summary = run(tmp_path, value)
    assert "1 passed" in summary and "1 xfailed" in summary
    assert "skipped" not in summary
    # the run-time skip fails; the marker's skip (at setup) and the import's (at collection) are
    # errors: the run is red either way
    assert "1 failed" in summary and "2 errors" in summary


def test_locally_a_missing_server_skips(tmp_path: Path) -> None:
    summary = run(tmp_path, None)
    assert "1 passed" in summary and "1 xfailed" in summary
    assert "3 skipped" in summary and " failed" not in summary and "error" not in summary
