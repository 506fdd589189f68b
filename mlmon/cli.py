"""``python -m mlmon``: the command line (``demo``; more subcommands come with exports and reports)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

USAGE = """usage: python -m mlmon COMMAND [ARGS]

commands:
  demo      serve a simulated model for ~20 s and watch it (see --help)
  export    export grafana ... | export prometheus-rules ... (see --help)
  report    turn a JsonlEmitter log into a self-contained HTML report
  version   print mlmon's version
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from mlmon.demo import main as demo_main

        return demo_main(rest)
    if command == "export":
        from mlmon.export.cli import main as export_main

        return export_main(rest)
    if command == "report":
        from mlmon.report import main as report_main

        return report_main(rest)
    if command == "version":
        import mlmon

        print(mlmon.__version__)
        return 0
    print(f"python -m mlmon: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2
