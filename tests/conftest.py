"""Suite-wide rule: under CI (``MLMON_REQUIRE_SERVERS=1``) nothing may be skipped.

Locally a test may skip when a server binary or an optional package is missing; in CI that would
hide a missing install step, so every skip (a ``pytest.skip``, a ``skipif``, an ``importorskip``
at import time) is reported as a failure that names the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


def _required() -> bool:
    return os.environ.get("MLMON_REQUIRE_SERVERS", "").strip().lower() in ("1", "true", "yes")


def _fail_skip(report: Any) -> None:
    if _required() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under MLMON_REQUIRE_SERVERS=1, which forbids skips: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_skip(outcome.get_result())
