"""``python -m mlmon``: one argparse command line, exit statuses 0 / 1 / 2, every documented
invocation still parses."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import mlmon
from mlmon.cli import EXIT_CODES, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
HELP_EXIT = "exit status: 0 success; 1 runtime failure"


def documented_commands() -> list[str]:
    """Every ``python -m mlmon ...`` command line in README.md and docs/*.md."""
    found: list[str] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text().replace("\\\n", " ")
        for m in re.finditer(r"python -m mlmon ([^`\n#|]*)", text):
            found.append(m.group(1).strip())
    return found


def test_the_docs_show_every_command() -> None:
    commands = {c.split()[0] for c in documented_commands() if c}
    assert {"demo", "report", "export"} <= commands


def invocations() -> list[str]:
    """Documented command lines with arguments (a bare ``python -m mlmon report`` is prose).

    The demo parses its own options; tests/test_demo.py runs it.
    """
    return sorted({c for c in documented_commands() if len(c.split()) > 1 and not c.startswith("demo")})


def test_the_invocations_are_found() -> None:
    assert len(invocations()) >= 8


@pytest.mark.parametrize("command", invocations())
def test_every_documented_invocation_parses(command: str) -> None:
    argv = shlex.split(command)
    args, extra = build_parser().parse_known_args(argv)
    assert [] == extra
    assert callable(args.run)


@pytest.mark.parametrize(
    ("argv", "code", "where", "message"),
    [
        ([], 2, "err", "the following arguments are required: COMMAND"),
        (["bogus"], 2, "err", "invalid choice: 'bogus'"),
        (["--help"], 0, "out", "export"),
        (["export"], 2, "err", "the following arguments are required: WHAT"),
        (["export", "grafana"], 2, "err", "the following arguments are required: --datasource"),
        (["export", "grafana", "--datasource", "influxdb"], 2, "err", "datasource must be 'graphite' or 'prometheus'"),
        (["export", "prometheus-rules", "--rules", "no_colon"], 2, "err", "--rules must look like MODULE:ATTR"),
        (["export", "prometheus-rules", "--rules", "mlmon_no_such_module:X"], 1, "err", "No module named"),
        (["report"], 2, "err", "the following arguments are required: METRICS.jsonl"),
        (["report", "/nonexistent/m.jsonl"], 1, "err", "cannot access /nonexistent/m.jsonl"),
        (["report", "m.jsonl", "--max-points", "3"], 2, "err", "--max-points must be at least 10"),
        (["report", "m.jsonl", "--bogus"], 2, "err", "unrecognized arguments: --bogus"),
    ],
)
def test_exit_statuses(argv: list[str], code: int, where: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert code == main(argv)
    captured = capsys.readouterr()
    assert message in (captured.out if where == "out" else captured.err)


@pytest.mark.parametrize(
    "argv", [[], ["report"], ["export"], ["export", "grafana"], ["export", "prometheus-rules"], ["version"]]
)
def test_every_help_states_the_exit_statuses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert HELP_EXIT in out
    assert " ".join(EXIT_CODES.split()) in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["version"])
    assert mlmon.__version__ == capsys.readouterr().out.strip()


def test_demo_options_are_the_demos(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "usage: python -m mlmon demo" in out and "--flush-interval" in out
    assert 2 == main(["demo", "--no-such-option"])


def test_export_grafana_through_the_top_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fraud.json"
    assert 0 == main(["export", "grafana", "--datasource", "prometheus", "--model", "fraud", "-o", str(out)])
    assert "mlmon: fraud" == json.loads(out.read_text())["title"]
    assert 1 == main(["export", "grafana", "--datasource", "prometheus", "-o", str(tmp_path / "no" / "x.json")])
    assert "cannot write" in capsys.readouterr().err


def test_python_dash_m_mlmon_exits_with_the_status() -> None:
    ok = subprocess.run([sys.executable, "-m", "mlmon", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    bad = subprocess.run([sys.executable, "-m", "mlmon", "bogus"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (0, 2) == (ok.returncode, bad.returncode)
    assert "usage: python -m mlmon" in ok.stdout and "invalid choice" in bad.stderr
