"""``python -m mlmon``: the command line.

One argparse parser with a subparser per command: ``demo``, ``report``, ``export grafana``,
``export prometheus-rules`` and ``version``. Every command module adds its own arguments to the
subparser it is given (``add_arguments``) and runs from the parsed namespace (``run``), and its
standalone ``main(argv)`` (:func:`mlmon.report.main`, :func:`mlmon.export.cli.main`,
:func:`mlmon.export.grafana.main`) builds the same parser, so both ways behave the same.

Exit status, for every command: **0** success, **1** a runtime failure (nothing to report on, a
file that cannot be read or written, rules that cannot be loaded), **2** bad usage (an unknown
command or option, a bad or missing value). ``main`` returns it rather than exiting.

>>> main(["no-such-command"])
2
>>> main(["report", "/nonexistent/metrics.jsonl"])
1
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mlmon._command import EXIT_CODES, new_parser, run_parser

__all__ = ["EXIT_CODES", "main", "new_parser", "run_parser"]

def _version(args: argparse.Namespace) -> int:
    import mlmon

    print(mlmon.__version__)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mlmon.demo import main as demo_main

    return demo_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m mlmon`` and all its commands."""
    from mlmon.export import cli as export_cli
    from mlmon.report import _cli as report_cli

    parser = new_parser("python -m mlmon", "Monitor ML models in production: command-line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # The demo parses its own options (see python -m mlmon demo --help): they are forwarded.
    demo = new_parser(
        "", parent=sub, name="demo", add_help=False,
        help="serve a simulated model for ~20 s and watch it (see demo --help)",
    )  # fmt: skip
    demo.set_defaults(run=_demo, forward=True)
    report_cli.add_parser(sub)
    export_cli.add_parser(sub)
    version = new_parser("", parent=sub, name="version", help="print mlmon's version")
    version.set_defaults(run=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m mlmon`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    return run_parser(build_parser(), argv)
