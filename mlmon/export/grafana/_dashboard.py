"""The public API: :func:`dashboard`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from mlmon.export.grafana._common import (
    _GRAPHITE_PREFIX_RE,
    _MODEL_RE,
    DATASOURCES,
    SCHEMA_VERSION,
    TASKS,
    VIAS,
    Json,
)
from mlmon.export.grafana._graphite import _Graphite
from mlmon.export.grafana._model import _Builder, _datasource_variable
from mlmon.export.grafana._prometheus import _Prometheus
from mlmon.export.grafana._queries import _Queries
from mlmon.export.grafana._rows import (
    _alerts_row,
    _features_row,
    _fleet_row,
    _outputs_row,
    _quality_row,
    _resources_row,
    _segments_row,
    _service_row,
)
from mlmon.naming import check_collisions

# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _check_features(features: Iterable[str]) -> tuple[str, ...]:
    if isinstance(features, str):
        raise TypeError(
            f"features must be a sequence of feature names, not a string; got {features!r}"
        )
    names = tuple(features)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"feature names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"feature names must be unique, got {list(names)!r}")
    check_collisions(names, what="feature name")
    return names


def dashboard(
    datasource: str,
    model: str | None,
    *,
    prefix: str = "",
    via: str = "direct",
    features: Sequence[str] = (),
    task: str | None = "binary",
    title: str | None = None,
    positive: str = "1",
    fleet: str | None = None,
    segments: bool = False,
) -> Json:
    """A Grafana dashboard (classic JSON model) over mlmon's metrics for one backend.

    Rows: service health, resources, model outputs, quality (left out for ``task="none"``),
    features (left out without ``features``) and alerts. Every query aggregates across
    processes the way ``docs/scale-out.md`` says is right (see ``docs/dashboards.md``).

    Args:
        datasource: ``"graphite"`` or ``"prometheus"``.
        model: the model selected when the dashboard opens (the ``model`` variable lists all);
            None selects the first one found.
        prefix: Graphite only: the ``prefix`` given to ``GraphiteEmitter``/``StatsdEmitter``
            (``*`` allowed in a segment, e.g. ``ml.*`` for per-host StatsD prefixes).
        via: Graphite only: ``"direct"`` (``GraphiteEmitter``, per-process paths) or
            ``"statsd"`` (``StatsdEmitter`` through a StatsD daemon, legacy namespace).
        features: feature names for the features row (drift and missing values per feature).
        task: ``"binary"``, ``"multiclass"``, ``"regression"`` or ``"none"`` (None is "none").
        title: dashboard title; default ``"mlmon: <model>"``.
        positive: binary task: the positive class as the task names it in
            ``mlmon_confusion_total`` labels (``BinaryClassification.class_names[1]``), for the
            fleet precision / recall / F1 panel.
        fleet: the fleet snapshot's instance (``Fleet(instance=...)``, ``"fleet"`` by default)
            when the monitors run with ``fleet=Fleet(...)``: adds a first row, ``Fleet``, with
            the fleet snapshot's window values and the fleet's health, and leaves the fleet's
            series out of every other panel (the processes' counters summed are already the
            fleet's: adding both would count every call twice). Prometheus, or Graphite with
            ``via="direct"``. None (default): no fleet row, queries as without a fleet.
        segments: the monitors track segments (``Monitor(max_segments=...)``,
            ``track(segment=...)``): adds a ``Segments`` row before the alerts and a
            ``segment`` variable; the row's panels (rows per second, error ratio, the task's
            quality metric, the largest feature drift) are repeated per selected segment.
            Whatever this is, every other panel reads the overall series only (Prometheus:
            ``segment=""``), so a segment's series are never added to them.

    Returns:
        The dashboard as a dict, ready for ``json.dumps``.

    Raises:
        ValueError: an unknown datasource, via or task, a bad model name or prefix, ``prefix``
            or ``via="statsd"`` with Prometheus, feature names that are not unique, an empty
            ``fleet``, or ``fleet`` with ``via="statsd"``.
        TypeError: ``features`` given as one string.

    >>> d = dashboard("prometheus", "fraud", features=["age", "income"])
    >>> [p["title"] for p in d["panels"] if p["type"] == "row"]
    ['Service health', 'Resources', 'Model outputs', 'Quality', 'Features', 'Alerts']
    >>> [v["name"] for v in d["templating"]["list"]]
    ['DS', 'model', 'instance', 'feature']
    >>> calls = next(p for p in d["panels"] if p["title"] == "Throughput")
    >>> calls["targets"][0]["expr"]
    'sum by (model) (rate(mlmon_calls_total{model="$model", instance=~"$instance", segment=""}[$__rate_interval]))'
    >>> g = dashboard("graphite", "fraud", prefix="ml", task="none")
    >>> [p["title"] for p in g["panels"] if p["type"] == "row"]
    ['Service health', 'Resources', 'Model outputs', 'Alerts']
    >>> f = dashboard("prometheus", "fraud", fleet="fleet")
    >>> [p["title"] for p in f["panels"] if p["type"] == "row"][:2]
    ['Fleet', 'Service health']
    >>> merged = next(p for p in f["panels"] if p["title"] == "Processes merged")
    >>> print(merged["targets"][0]["expr"])
    max by (model) (mlmon_fleet_processes{model="$model", segment="", exported_instance="fleet"} or mlmon_fleet_processes{model="$model", segment="", instance="fleet"})
    >>> dashboard("influxdb", "fraud")
    Traceback (most recent call last):
    ...
    ValueError: datasource must be 'graphite' or 'prometheus', got 'influxdb'
    """
    if datasource not in DATASOURCES:
        raise ValueError(f"datasource must be 'graphite' or 'prometheus', got {datasource!r}")
    if via not in VIAS:
        raise ValueError(f"via must be 'direct' or 'statsd', got {via!r}")
    task_name = "none" if task is None else task
    if task_name not in TASKS:
        raise ValueError(
            f"task must be 'binary', 'multiclass', 'regression' or 'none', got {task!r}"
        )
    if model is not None and (not isinstance(model, str) or not _MODEL_RE.fullmatch(model)):
        raise ValueError(f"model must match [A-Za-z0-9_-]+ or be None, got {model!r}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {prefix!r}")
    names = _check_features(features)
    if not isinstance(positive, str) or not positive:
        raise ValueError(f"positive must be a non-empty string, got {positive!r}")
    if fleet is not None:
        if not isinstance(fleet, str) or not fleet or len(fleet) > 128:
            raise ValueError(
                f"fleet must be the fleet's instance, a non-empty string of at most 128 characters, got {fleet!r}"
            )
        if via == "statsd":
            raise ValueError(
                "fleet panels need the fleet's own series: Prometheus, or Graphite via 'direct' "
                "(StatsdEmitter's paths have no instance, so the fleet's series would mix with "
                "the processes'); got via='statsd'"
            )

    queries: _Queries
    if datasource == "prometheus":
        if prefix:
            raise ValueError(
                f"prefix applies to Graphite paths only (Prometheus names have none), got {prefix!r}"
            )
        if via != "direct":
            raise ValueError(f"via={via!r} needs datasource='graphite' (StatsD writes to Graphite)")
        queries = _Prometheus(fleet)
    else:
        if prefix and not _GRAPHITE_PREFIX_RE.fullmatch(prefix):
            raise ValueError(
                "prefix must be dot-separated segments of [A-Za-z0-9_-] (or *), like 'ml' or "
                f"'ml.*', got {prefix!r}"
            )
        queries = _Graphite(prefix, via, fleet)

    b = _Builder(queries)
    if fleet is not None:
        _fleet_row(b, task_name, bool(names))
    _service_row(b)
    _resources_row(b)
    _outputs_row(b, task_name)
    if task_name != "none":
        _quality_row(b, task_name, positive)
    if names:
        _features_row(b)
    if segments:
        _segments_row(b, task_name)
    _alerts_row(b)

    shown = title if title is not None else f"mlmon: {model}" if model else "mlmon"
    key = json.dumps([datasource, via, prefix, model, title], separators=(",", ":"))
    uid = "mlmon-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    source = "StatsD → Graphite" if via == "statsd" else datasource.capitalize()
    return {
        "id": None,
        "uid": uid,
        "title": shown,
        "description": f"mlmon model monitoring ({source}); generated by "
        "python -m mlmon export grafana",
        "tags": ["mlmon", datasource] + (["statsd"] if via == "statsd" else []),
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "",
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                _datasource_variable(queries.datasource_type),
                *queries.variables(model, names),
                *([queries.segment_variable()] if segments else []),
            ]
        },
        "panels": b.panels,
    }


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
