"""``python -m mlmon report``: the command line of the report.

Its arguments live in :func:`add_arguments`, shared by ``python -m mlmon report`` (a subparser of
:func:`mlmon.cli.build_parser`) and :func:`main`; exit statuses are those of :mod:`mlmon.cli`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlmon._command import new_parser, run_parser
from mlmon.report._api import build_text, write_text
from mlmon.report._format import clean
from mlmon.report._info import MAX_POINTS, ReportError
from mlmon.report._log import read_file

__all__ = ["add_arguments", "add_parser", "main", "run"]

PROG = "python -m mlmon report"
DESCRIPTION = "Turn a JsonlEmitter log into one self-contained HTML report (inline SVG charts, no scripts)."


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The report's arguments, on ``ap``."""
    ap.add_argument("metrics", nargs="+", metavar="METRICS.jsonl",
                    help="JSON-lines logs written by JsonlEmitter; several files (e.g. rotated ones) are read as one log")  # fmt: skip
    ap.add_argument("-o", "--output", help="HTML file to write (default: the first log's name with .html)")
    ap.add_argument("--model", help="the model to report on (default: the first in the log)")
    ap.add_argument("--instance", action="append", metavar="ID", help="show only this instance (repeatable)")
    ap.add_argument("--max-points", type=int, default=MAX_POINTS, help=f"points per series in charts (default {MAX_POINTS}, at least 10)")
    ap.set_defaults(run=run)


def add_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Add the ``report`` command to the subparsers ``sub`` of ``python -m mlmon``."""
    ap = new_parser(PROG, DESCRIPTION, parent=sub, name="report",
                    help="turn a JsonlEmitter log into a self-contained HTML report")  # fmt: skip
    add_arguments(ap)
    return ap


def default_output(first: str) -> Path:
    p = Path(first)
    return p.with_suffix(".html") if p.suffix in (".jsonl", ".json", ".log", ".ndjson") else p.with_name(p.name + ".html")


def _say(text: str, err: bool = False) -> None:
    # Names in messages come from the log and the command line: no control characters on a terminal.
    print(clean(text), file=sys.stderr if err else sys.stdout)


def run(args: argparse.Namespace) -> int:
    """Write the report the parsed ``args`` ask for; return the exit status."""
    ap: argparse.ArgumentParser = args.parser
    if args.max_points < 10:
        ap.error(f"--max-points must be at least 10, got {args.max_points}")
    out = Path(args.output) if args.output else default_output(args.metrics[0])
    try:
        if any(Path(p).resolve() == out.resolve() for p in args.metrics):
            ap.error(f"the report {out} would overwrite a log it reads")
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable directory
        _say(f"mlmon report: cannot resolve {out}: {exc}", err=True)
        return 1
    label = ", ".join(Path(p).name for p in args.metrics)
    lines = itertools.chain.from_iterable(read_file(Path(p)) for p in args.metrics)
    try:
        text, info = build_text(lines, label, args.model, args.instance, args.max_points)
        info = write_text(text, out, info)
    except ReportError as exc:
        _say(f"mlmon report: {exc}", err=True)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _say(f"mlmon report: cannot access{where}: {exc.strerror or exc}", err=True)
        return 1
    for note in info.notes:
        _say(f"mlmon report: note: {note}", err=True)
    _say(info.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlmon report METRICS.jsonl [-o report.html] [--model NAME] [--instance ID]``.

    Returns the exit code: 0 with a report written, 1 when there is nothing to report on (empty
    log, only malformed or newer lines, unknown model or instance) or a file cannot be read or
    written, 2 for bad arguments.

    >>> main(["/nonexistent/metrics.jsonl"])
    1
    >>> main(["x.jsonl", "--max-points", "3"])
    2
    """
    ap = new_parser(PROG, DESCRIPTION)
    add_arguments(ap)
    return run_parser(ap, argv)
