"""The command-line style every ``python -m mlmon`` command shares: one parser shape, one
way to run it, one set of exit statuses (0 success, 1 runtime failure, 2 bad usage).

It imports no command: :mod:`mlmon.cli` puts the commands together, and each command module
uses :func:`new_parser` and :func:`run_parser` from here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["EXIT_CODES", "Runner", "new_parser", "run_parser"]

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
