"""``python -m mlmon export grafana``: the command line of the dashboard export.

Its arguments live in :func:`add_arguments`, shared by ``python -m mlmon export grafana`` and
:func:`main`; exit statuses are those of :mod:`mlmon.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from mlmon._command import new_parser, run_parser
from mlmon._files import atomic_write
from mlmon.export.grafana._dashboard import dashboard

__all__ = ["add_arguments", "add_parser", "main", "run"]

PROG = "python -m mlmon export grafana"
DESCRIPTION = (
    "Write a Grafana dashboard (JSON) for mlmon's metrics: service health, resources, outputs, "
    "quality, features and alerts, with queries that add up across processes. Import it in "
    "Grafana (Dashboards > New > Import)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The dashboard export's arguments, on ``p``."""
    p.add_argument(
        "--datasource",
        required=True,
        metavar="{graphite,prometheus}",
        help="the Grafana data source type the queries are written for",
    )
    p.add_argument("--model", help="model selected when the dashboard opens")
    p.add_argument("--prefix", default="", help="Graphite: the emitter's prefix (e.g. ml)")
    p.add_argument(
        "--via",
        default="direct",
        metavar="{direct,statsd}",
        help="Graphite: GraphiteEmitter straight to carbon (direct, default) or StatsdEmitter "
        "through a StatsD daemon",
    )
    p.add_argument(
        "--features",
        default="",
        metavar="A,B,...",
        help="comma-separated feature names (adds the features row)",
    )
    p.add_argument(
        "--task",
        default="binary",
        metavar="{binary,multiclass,regression,none}",
        help="the monitor's task (default: binary; none leaves out the quality row)",
    )
    p.add_argument("--title", help="dashboard title (default: mlmon: MODEL)")
    p.add_argument(
        "--positive",
        default="1",
        help="binary task: the positive class as mlmon_confusion_total labels name it "
        "(default: 1)",
    )
    p.add_argument(
        "--fleet",
        nargs="?",
        const="fleet",
        default=None,
        metavar="INSTANCE",
        help="the monitors run with fleet=Fleet(...): add the Fleet row (the fleet snapshot and "
        "the fleet's health) and leave the fleet's series out of the process panels; INSTANCE "
        "is Fleet(instance=...) (default: fleet)",
    )
    p.add_argument(
        "--segments",
        action="store_true",
        help="the monitors track segments (Monitor(max_segments=...), track(segment=...)): add "
        "the Segments row, its panels repeated per value of a segment variable",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(run=run)


def add_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Add the ``grafana`` command to the subparsers ``sub`` of ``python -m mlmon export``."""
    p = new_parser(PROG, DESCRIPTION, parent=sub, name="grafana",
                   help="a Grafana dashboard (JSON) for mlmon's metrics")  # fmt: skip
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the dashboard the parsed ``args`` ask for; return the exit status."""
    parser: argparse.ArgumentParser = args.parser
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    try:
        board = dashboard(
            args.datasource,
            args.model,
            prefix=args.prefix,
            via=args.via,
            features=features,
            task=args.task,
            title=args.title,
            positive=args.positive,
            fleet=args.fleet,
            segments=args.segments,
        )
    except (ValueError, TypeError) as exc:  # a bad option value: a usage error
        parser.error(str(exc))
    text = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write(args.output, text)
    except OSError as exc:
        print(f"{PROG}: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    n = sum(1 for p in board["panels"] if p["type"] != "row")
    print(f"{PROG}: wrote {n} panels to {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m mlmon export grafana`` with ``argv`` (the arguments after ``grafana``).

    Returns:
        0 when the dashboard was written; 2 on a usage error (unknown datasource, via or task,
        bad prefix, model or feature names, ``--fleet`` with ``--via statsd``); 1 when the output file cannot be written.

    >>> import json, os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "fraud.json")
    ...     code = main(["--datasource", "prometheus", "--model", "fraud", "-o", path])
    ...     with open(path) as f:
    ...         title = json.load(f)["title"]
    >>> code, title
    (0, 'mlmon: fraud')
    >>> main(["--datasource", "influxdb"])
    2
    """
    p = new_parser(PROG, DESCRIPTION)
    add_arguments(p)
    return run_parser(p, argv)
