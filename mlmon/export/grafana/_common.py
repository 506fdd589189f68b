"""What every part of the Grafana export shares: names, types, constants, small helpers."""

from __future__ import annotations

import re
from typing import Any

from mlmon.naming import PROMETHEUS_RENAMES, quantile_segment

DATASOURCES: tuple[str, ...] = ("graphite", "prometheus")
"""The data source types :func:`dashboard` can write queries for."""

VIAS: tuple[str, ...] = ("direct", "statsd")
"""How metrics reach Graphite: ``GraphiteEmitter`` to carbon, or ``StatsdEmitter`` to StatsD."""

TASKS: tuple[str, ...] = ("binary", "multiclass", "regression", "none")
"""The monitor's task, which decides the quality and class panels."""

SCHEMA_VERSION = 39
"""Grafana dashboard schema version written (Grafana 10.3 and later import it as is)."""

Json = dict[str, Any]
Query = tuple[str, str]  # (expression, legend)

_MODEL_RE = re.compile(r"[A-Za-z0-9_-]+")
_GRAPHITE_PREFIX_RE = re.compile(r"[A-Za-z0-9_*-]+(\.[A-Za-z0-9_*-]+)*")
_GRID_WIDTH = 24

# Latency thresholds of the "share of calls within" panel. Bucket bounds mlmon always has, and
# whose text is the same in every Prometheus version (3.x rewrites le="1" as le="1.0").
_SLO_BOUNDS: tuple[tuple[str, str], ...] = (("0.01", "10 ms"), ("0.1", "100 ms"), ("0.25", "250 ms"))
_LATENCY_QUANTILES: tuple[str, ...] = ("0.5", "0.9", "0.99")
_OUTPUT_QUANTILES: tuple[str, ...] = ("0.5", "0.9", "0.99")
# keepLastValue fills a missing slot or two (two flushes landing in one whisper step) so that
# perSecond, which restarts after every gap, still sees consecutive points.
_GAP_POINTS = 3
# Fleet quality and drift from counters: increases over this range (the default window).
_FLEET_RANGE = "5m"
_FLEET_RANGE_GRAPHITE = "5min"
# The floor of both proportions in PSI (DriftConfig's default epsilon).
_PSI_EPSILON = "1e-4"


# The quality panel of a segment: (metric, legend, average label or None) per task.
_SEGMENT_QUALITY: dict[str, tuple[str, str, str | None]] = {
    "binary": ("mlmon_f1", "F1", None),
    "multiclass": ("mlmon_f1", "F1 (macro)", "macro"),
    "regression": ("mlmon_mae", "MAE", None),
}


def _prom_name(name: str) -> str:
    return PROMETHEUS_RENAMES.get(name, name)



def _pct(q: str) -> str:
    seg = quantile_segment(q)
    return seg[1:] if seg else q


def _short(metric: str) -> str:
    return metric.removeprefix("mlmon_").replace("_", " ")


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
