"""Grafana dashboards for mlmon's metrics, generated for the backend you actually run.

:func:`dashboard` returns a dashboard in Grafana's classic JSON model (``schemaVersion`` 39,
``panels`` with ``gridPos``, row panels, ``timeseries`` and ``stat`` visualisations) with a data
source variable ``DS`` and variables for ``model``, ``instance`` (where per-process series exist)
and ``feature``. Import it with *Dashboards → New → Import* or the HTTP API.

Every query follows ``docs/scale-out.md``: counters are turned into rates per process and then
summed over processes; quantiles across processes come from the ``le`` buckets (Prometheus) or are
shown as an upper bound (``maxSeries``, Graphite), never averaged; window gauges that cannot be
added up are shown per process, as a worst case (``max``), or weighted by the process's traffic
when that weighting is exact. Names are rendered exactly as the emitters render them
(:mod:`mlmon.naming`), so a dashboard matches what is on the wire.

``python -m mlmon export grafana --datasource prometheus --model fraud -o fraud.json`` does the
same from the command line (:func:`main`). See ``docs/dashboards.md``.
"""

from __future__ import annotations

from mlmon.export.grafana._cli import main
from mlmon.export.grafana._common import DATASOURCES, SCHEMA_VERSION, TASKS, VIAS
from mlmon.export.grafana._dashboard import dashboard

__all__ = ["DATASOURCES", "SCHEMA_VERSION", "TASKS", "VIAS", "dashboard", "main"]
