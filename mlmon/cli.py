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
import sys
from collections.abc import Callable, Sequence

__all__ = ["EXIT_CODES", "main", "new_parser", "run_parser"]

EXIT_CODES = (
    "exit status: 0 success; 1 runtime failure (nothing to report on, a file that cannot be "
    "read or written, rules that cannot be loaded); 2 bad usage (unknown command or option, "
    "bad or missing value)"
)
"""The exit-status paragraph every ``--help`` ends with."""

Runner = Callable[[argparse.Namespace], int]


def new_parser(
    prog: str,
    description: str | None = None,
    *,
    parent: argparse._SubParsersAction[argparse.ArgumentParser] | None = None,
    name: str = "",
    help: str | None = None,
    add_help: bool = True,
) -> argparse.ArgumentParser:
    """A parser for ``prog``: standalone, or the subparser ``name`` of ``parent``.

    Either way it ends its ``--help`` with :data:`EXIT_CODES`, and ``args.parser`` is the parser
    itself (for usage errors found after parsing: ``args.parser.error(...)`` exits 2).

    >>> p = new_parser("python -m mlmon thing", "Does a thing.")
    >>> "exit status: 0 success; 1 runtime failure" in p.format_help()
    True
    """
    kwargs = {"description": description, "epilog": EXIT_CODES, "add_help": add_help}
    if parent is None:
        parser = argparse.ArgumentParser(prog=prog, **kwargs)  # type: ignore[arg-type]
    else:
        parser = parent.add_parser(name, help=help, **kwargs)  # type: ignore[arg-type]
    parser.set_defaults(parser=parser)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen command; return its exit status.

    The command is ``args.run(args)`` (set with ``set_defaults(run=...)``). Usage errors, found
    by argparse or by the command through ``args.parser.error``, return 2 and ``--help`` returns
    0, instead of exiting the interpreter. Arguments a command does not know are a usage error,
    except for a command that sets ``forward=True``: it gets them as ``args.rest``.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(args_list)
        if extra and not getattr(args, "forward", False):
            sub: argparse.ArgumentParser = getattr(args, "parser", parser)
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra
        run: Runner = args.run
        return run(args)
    except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 2


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
