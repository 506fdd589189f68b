"""``python -m mlmon export ...``: write configuration for other systems from mlmon's own.

``python -m mlmon export prometheus-rules --rules myapp.monitoring:RULES -o mlmon.rules.yml``
imports the list of rules ``RULES`` from the module ``myapp.monitoring`` (a ``path/to/file.py``
works too; the current directory is importable) and writes the Prometheus alerting rules.
``python -m mlmon export grafana ...`` writes a Grafana dashboard (:mod:`mlmon.export.grafana`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlmon._files import atomic_write

__all__ = ["main"]

PROG = "python -m mlmon export"


class _Usage(Exception):
    """A command-line mistake: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the interpreter
        raise _Usage(f"{self.prog}: {message}\n\n{self.format_usage()}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Export mlmon configuration to other systems.")
    sub = parser.add_subparsers(dest="what", metavar="WHAT", parser_class=_Parser)
    # Listed for --help; its arguments are parsed by mlmon.export.grafana.main.
    sub.add_parser("grafana", help="a Grafana dashboard (JSON) for mlmon's metrics (see --help)")
    prom = sub.add_parser(
        "prometheus-rules",
        help="Prometheus alerting rules (YAML) equivalent to your mlmon alert rules",
        description=(
            "Write the Prometheus alerting rules equivalent to a list of mlmon alert rules. "
            "Rules PromQL cannot express (pinned baselines, F-tests, reference baselines "
            "without a number) are listed in comments and on stderr."
        ),
    )
    prom.add_argument(
        "--rules",
        required=True,
        metavar="MODULE:ATTR",
        help="where the rules are: a module (or path/to/file.py) and an attribute holding a "
        "list of rules, a function returning one, or a Monitor",
    )
    prom.add_argument("--model", help='restrict the alerts to model="NAME"')
    prom.add_argument("--job", help='restrict the alerts to job="JOB" (the scrape job)')
    prom.add_argument("--group", default="mlmon", help="rule group name (default: mlmon)")
    prom.add_argument(
        "--window",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="the monitor's window in seconds (default: 300)",
    )
    prom.add_argument(
        "--interval", type=float, metavar="SECONDS", help="group evaluation interval in seconds"
    )
    prom.add_argument(
        "--reference",
        metavar="PATH",
        help="a saved mlmon Reference (JSON), for baseline='reference' rules",
    )
    prom.add_argument(
        "--approximate",
        action="store_true",
        help="export F-test rules without their test instead of leaving them out",
    )
    prom.add_argument(
        "--no-keep-firing-for",
        dest="keep_firing_for",
        action="store_false",
        help="leave out keep_firing_for (Prometheus before 2.42)",
    )
    prom.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any rule is left out"
    )
    prom.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    return parser


def _import(spec: str) -> Any:
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise _Usage(f"{PROG}: --rules must look like MODULE:ATTR, got {spec!r}")
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise LookupError(f"no such file: {module_part}")
        loader_spec = importlib.util.spec_from_file_location(f"_mlmon_rules_{path.stem}", path)
        if loader_spec is None or loader_spec.loader is None:
            raise LookupError(f"cannot import {module_part}")
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_part)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LookupError(f"{module_part} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_rules(spec: str) -> list[Any]:
    """The rules ``MODULE:ATTR`` points at (a list, a function returning one, or a Monitor)."""
    from mlmon.alerts.rules import Rule

    obj = _import(spec)
    if callable(obj) and not isinstance(obj, (list, tuple)):
        obj = obj()
    rules = getattr(obj, "rules", obj)
    if isinstance(rules, Rule):
        rules = [rules]
    if not isinstance(rules, (list, tuple)):
        raise TypeError(f"{spec} must be a list of rules, got {type(rules).__name__}")
    for r in rules:
        if not isinstance(r, Rule):
            raise TypeError(f"{spec} must hold mlmon.alerts rules, got {r!r}")
    return list(rules)




def _prometheus_rules(args: argparse.Namespace) -> int:
    from mlmon.alerts.engine import reference_lookup
    from mlmon.export.prometheus_rules import export_prometheus_rules

    rules = load_rules(args.rules)
    reference_value = None
    if args.reference:
        from mlmon.reference import Reference

        reference_value = reference_lookup(Reference.load(args.reference))
    result = export_prometheus_rules(
        rules,
        model=args.model,
        job=args.job,
        group=args.group,
        window=args.window,
        reference_value=reference_value,
        approximate=args.approximate,
        keep_firing_for=args.keep_firing_for,
        interval=args.interval,
    )
    if args.output:
        atomic_write(args.output, result.text)
    else:
        sys.stdout.write(result.text)
    for name, why in result.skipped:
        print(f"{PROG}: rule {name!r} not exported: {why}", file=sys.stderr)
    if args.output:
        print(
            f"{PROG}: wrote {len(result.exported)} alert(s) to {args.output}"
            + (f", left out {len(result.skipped)}" if result.skipped else ""),
            file=sys.stderr,
        )
    return 1 if args.strict and result.skipped else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m mlmon export`` with ``argv`` (the arguments after ``export``).

    Returns:
        0 on success; 1 when the rules cannot be loaded or exported (or, with ``--strict``,
        when a rule is left out); 2 on a usage error.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "grafana":
        from mlmon.export import grafana

        return grafana.main(args_list[1:])
    parser = _parser()
    try:
        if not args_list or args_list[0] in ("-h", "--help"):
            parser.print_help()
            return 0 if args_list else 2
        args = parser.parse_args(args_list)
        if args.what == "prometheus-rules":
            return _prometheus_rules(args)
        raise _Usage(f"{PROG}: unknown export {args.what!r}\n\n{parser.format_usage()}")
    except _Usage as exc:
        print(str(exc).rstrip("\n"), file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help of a subcommand
        return int(exc.code) if isinstance(exc.code, int) else 0
    except (ImportError, LookupError, TypeError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
