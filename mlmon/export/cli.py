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

from mlmon._command import new_parser, run_parser
from mlmon._files import atomic_write

__all__ = ["add_commands", "add_parser", "load_rules", "main"]

PROG = "python -m mlmon export"
DESCRIPTION = "Export mlmon configuration to other systems."


def _prometheus_arguments(prom: argparse.ArgumentParser) -> None:
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
    prom.set_defaults(run=_prometheus_rules)


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the export commands (``grafana``, ``prometheus-rules``) to ``parser``."""
    from mlmon.export.grafana import _cli as grafana_cli

    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    grafana_cli.add_parser(sub)
    prom = new_parser(
        "",
        parent=sub,
        name="prometheus-rules",
        help="Prometheus alerting rules (YAML) equivalent to your mlmon alert rules",
        description=(
            "Write the Prometheus alerting rules equivalent to a list of mlmon alert rules. "
            "Rules PromQL cannot express (pinned baselines, F-tests, reference baselines "
            "without a number) are listed in comments and on stderr."
        ),
    )
    _prometheus_arguments(prom)


def add_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Add the ``export`` command to the subparsers ``sub`` of ``python -m mlmon``."""
    parser = new_parser(PROG, DESCRIPTION, parent=sub, name="export",
                        help="export grafana ... | export prometheus-rules ... (see export --help)")  # fmt: skip
    add_commands(parser)
    return parser


def _import(spec: str) -> Any:
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ValueError(f"--rules must look like MODULE:ATTR, got {spec!r}")
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

    parser: argparse.ArgumentParser = args.parser
    module_part, sep, attr = args.rules.rpartition(":")
    if not sep or not module_part or not attr:
        parser.error(f"--rules must look like MODULE:ATTR, got {args.rules!r}")
    try:
        return _write_prometheus_rules(args)
    except (ImportError, SyntaxError, LookupError, TypeError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)  # rules that cannot be loaded, a file not written
        return 1


def _write_prometheus_rules(args: argparse.Namespace) -> int:
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
        when a rule is left out) or a file cannot be written; 2 on a usage error.

    >>> main(["prometheus-rules"])
    2
    """
    parser = new_parser(PROG, DESCRIPTION)
    add_commands(parser)
    return run_parser(parser, argv)
