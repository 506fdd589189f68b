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

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from mlmon._files import atomic_write
from mlmon.naming import (
    PROMETHEUS_RENAMES,
    check_collisions,
    le_segment,
    quantile_segment,
    sanitize_segment,
)

__all__ = ["DATASOURCES", "SCHEMA_VERSION", "TASKS", "VIAS", "dashboard", "main"]

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


def _prom_name(name: str) -> str:
    return PROMETHEUS_RENAMES.get(name, name)


# ---------------------------------------------------------------------------------------------
# Queries: one class per backend, one method per panel concept
# ---------------------------------------------------------------------------------------------


class _Queries:
    """The queries of every panel; a method returns ``[]`` when the backend cannot answer."""

    datasource_type = ""
    per_process = True  # processes are told apart (instance variable, per-process panels)

    def target(self, expr: str, legend: str, ref: str, ds: Json) -> Json:
        raise NotImplementedError

    def variables(self, model: str | None, features: Sequence[str]) -> list[Json]:
        raise NotImplementedError

    # service
    def throughput(self) -> list[Query]:
        raise NotImplementedError

    def calls_rate(self) -> list[Query]:
        raise NotImplementedError

    def error_ratio(self) -> list[Query]:
        raise NotImplementedError

    def availability(self) -> list[Query]:
        raise NotImplementedError

    def processes(self) -> list[Query]:
        raise NotImplementedError

    def latency(self) -> list[Query]:
        raise NotImplementedError

    def latency_p99_by_process(self) -> list[Query]:
        raise NotImplementedError

    def latency_within(self) -> list[Query]:
        raise NotImplementedError

    def inflight(self) -> list[Query]:
        raise NotImplementedError

    def oldest_inflight(self) -> list[Query]:
        raise NotImplementedError

    def slow_calls(self) -> list[Query]:
        raise NotImplementedError

    # resources
    def resource(self, metric: str, legend: str) -> list[Query]:
        raise NotImplementedError

    # outputs
    def output_mean(self) -> list[Query]:
        raise NotImplementedError

    def output_variance(self) -> list[Query]:
        raise NotImplementedError

    def output_quantiles(self) -> list[Query]:
        raise NotImplementedError

    def class_ratio(self) -> list[Query]:
        raise NotImplementedError

    # quality
    def quality(self, metrics: Sequence[str], average: str | None) -> list[Query]:
        raise NotImplementedError

    def estimated_vs_realized(self) -> list[Query]:
        raise NotImplementedError

    def label_coverage(self) -> list[Query]:
        raise NotImplementedError

    def labels_rate(self) -> list[Query]:
        raise NotImplementedError

    def label_delay(self) -> list[Query]:
        raise NotImplementedError

    # features
    def feature_worst(self, metric: str) -> list[Query]:
        raise NotImplementedError

    # alerts
    def alerts_firing(self) -> list[Query]:
        raise NotImplementedError

    def alert_by_rule(self) -> list[Query]:
        raise NotImplementedError


class _Prometheus(_Queries):
    """PromQL over the series ``PrometheusEmitter`` exposes, scraped from every process."""

    datasource_type = "prometheus"

    def target(self, expr: str, legend: str, ref: str, ds: Json) -> Json:
        return {
            "refId": ref,
            "datasource": ds,
            "editorMode": "code",
            "expr": expr,
            "legendFormat": legend,
            "range": True,
        }

    def variables(self, model: str | None, features: Sequence[str]) -> list[Json]:
        out = [
            _query_variable(
                "model", "Model", "label_values(mlmon_up, model)", model, multi=False
            ),
            _query_variable(
                "instance",
                "Instance",
                'label_values(mlmon_up{model="$model"}, instance)',
                None,
                multi=True,
                all_value=".*",
            ),
        ]
        if features:
            out.append(_custom_variable("feature", "Feature", list(features)))
        return out

    @staticmethod
    def _sel(metric: str, **labels: str) -> str:
        parts = ['model="$model"', 'instance=~"$instance"']
        for key, value in labels.items():
            op = "=~" if key.endswith("_re") else "="
            parts.append(f'{key.removesuffix("_re")}{op}"{value}"')
        return f"{_prom_name(metric)}{{{', '.join(parts)}}}"

    def _rate(self, metric: str, **labels: str) -> str:
        return f"rate({self._sel(metric, **labels)}[$__rate_interval])"

    def _sum_rate(self, metric: str, **labels: str) -> str:
        return f"sum by (model) ({self._rate(metric, **labels)})"

    def _weighted(self, value: str, weight: str) -> str:
        # Exact fleet value of a window ratio: each process's ratio weighted by its own traffic
        # over the same window (ratio x rate = events per second), summed, divided by the rate.
        v, w = self._sel(value), self._sel(weight)
        return f"sum by (model) ({v} * {w}) / sum by (model) ({w} and {v})"

    def throughput(self) -> list[Query]:
        return [
            (self._sum_rate("mlmon_calls_total"), "calls/s"),
            (self._sum_rate("mlmon_rows_total"), "rows/s"),
        ]

    def calls_rate(self) -> list[Query]:
        return [(self._sum_rate("mlmon_calls_total"), "calls/s")]

    def error_ratio(self) -> list[Query]:
        errors, calls = self._sum_rate("mlmon_errors_total"), self._sum_rate("mlmon_calls_total")
        # mlmon_errors_total has no series before the first error: "or 0 * calls" keeps a 0 line.
        return [(f"({errors} or 0 * {calls}) / {calls}", "error ratio")]

    def availability(self) -> list[Query]:
        return [
            (self._weighted("mlmon_availability_ratio", "mlmon_calls_per_second"), "availability")
        ]

    def processes(self) -> list[Query]:
        return [(f"sum by (model) ({self._sel('mlmon_up')})", "processes")]

    def latency(self) -> list[Query]:
        buckets = self._rate("mlmon_latency_seconds_bucket")
        out = [
            (f"histogram_quantile({q}, sum by (le, model) ({buckets}))", f"p{_pct(q)}")
            for q in _LATENCY_QUANTILES
        ]
        total, count = self._sum_rate("mlmon_latency_seconds_sum"), self._sum_rate(
            "mlmon_latency_seconds_count"
        )
        out.append((f"{total} / {count}", "mean"))
        return out

    def latency_p99_by_process(self) -> list[Query]:
        return [(self._sel("mlmon_latency_seconds", quantile="0.99"), "{{instance}}")]

    def latency_within(self) -> list[Query]:
        total = self._sum_rate("mlmon_latency_seconds_bucket", le="+Inf")
        return [
            (f"{self._sum_rate('mlmon_latency_seconds_bucket', le=le)} / {total}", f"≤ {text}")
            for le, text in _SLO_BOUNDS
        ]

    def inflight(self) -> list[Query]:
        return [(f"sum by (model) ({self._sel('mlmon_inflight_calls')})", "in flight")]

    def oldest_inflight(self) -> list[Query]:
        return [
            (f"max by (model) ({self._sel('mlmon_oldest_inflight_seconds')})", "oldest in flight")
        ]

    def slow_calls(self) -> list[Query]:
        return [(self._sum_rate("mlmon_slow_calls_total"), "slow calls/s")]

    def resource(self, metric: str, legend: str) -> list[Query]:
        return [(self._sel(metric), "{{instance}}")]

    def output_mean(self) -> list[Query]:
        return [(self._weighted("mlmon_output_mean", "mlmon_output_count"), "mean score")]

    def output_variance(self) -> list[Query]:
        return [(self._sel("mlmon_output_variance"), "{{instance}}")]

    def output_quantiles(self) -> list[Query]:
        quantiles = "|".join(_OUTPUT_QUANTILES)
        return [(self._sel("mlmon_output", quantile_re=quantiles), "{{instance}} q{{quantile}}")]

    def class_ratio(self) -> list[Query]:
        ratio, rows = self._sel("mlmon_output_class_ratio"), self._sel("mlmon_rows_per_second")
        expr = (
            f"sum by (model, class) ({ratio} * ignoring (class) group_left {rows})"
            f" / ignoring (class) group_left sum by (model) ({rows})"
        )
        return [(expr, "{{class}}")]

    def quality(self, metrics: Sequence[str], average: str | None) -> list[Query]:
        labels = {"average": average} if average else {}
        return [
            (self._sel(m, **labels), f"{_short(m)} {{{{instance}}}}") for m in metrics
        ]

    def estimated_vs_realized(self) -> list[Query]:
        return [
            (self._sel("mlmon_f1"), "realized F1 {{instance}}"),
            (self._sel("mlmon_estimated_f1"), "estimated F1 {{instance}}"),
        ]

    def label_coverage(self) -> list[Query]:
        return [
            (self._weighted("mlmon_label_coverage_ratio", "mlmon_rows_per_second"), "coverage")
        ]

    def labels_rate(self) -> list[Query]:
        return [
            (self._sum_rate("mlmon_labels_total"), "joined/s"),
            (self._sum_rate("mlmon_labels_unmatched_total"), "unmatched/s"),
        ]

    def label_delay(self) -> list[Query]:
        quantiles = "|".join(_OUTPUT_QUANTILES)
        sel = self._sel("mlmon_label_delay_seconds", quantile_re=quantiles)
        return [(f"max by (model, quantile) ({sel})", "q{{quantile}} (max over instances)")]

    def feature_worst(self, metric: str) -> list[Query]:
        sel = self._sel(metric, feature_re="$feature")
        return [(f"max by (model, feature) ({sel})", "{{feature}}")]

    def alerts_firing(self) -> list[Query]:
        return [(f"sum by (model) ({self._sel('mlmon_alerts_firing')})", "rules firing")]

    def alert_by_rule(self) -> list[Query]:
        return [(f"max by (model, rule) ({self._sel('mlmon_alert_firing')})", "{{rule}}")]


class _Graphite(_Queries):
    """Graphite functions over dotted paths, written directly (per-process paths) or by StatsD.

    Direct: ``[prefix.]model.instance.metric[.label]`` holding cumulative counters and gauges.
    StatsD (legacy namespace): ``stats.<path>`` (counter per second), ``stats_counts.<path>``
    (counter per flush), ``stats.gauges.<path>`` with ``<path>`` = ``[prefix.]model.metric``.
    """

    datasource_type = "graphite"

    def __init__(self, prefix: str, via: str) -> None:
        self.prefix = [p for p in prefix.split(".") if p]
        self.via = via
        self.per_process = via == "direct"

    def target(self, expr: str, legend: str, ref: str, ds: Json) -> Json:
        # textEditor: the visual editor cannot show nested functions; the legend is in the query.
        return {"refId": ref, "datasource": ds, "target": expr, "textEditor": True}

    def variables(self, model: str | None, features: Sequence[str]) -> list[Json]:
        root = ".".join(self.prefix)
        if self.via == "direct":
            models = f"{root}.*" if root else "*"
        else:
            models = ".".join(["stats_counts", *self.prefix, "*"])
        out = [_query_variable("model", "Model", models, model, multi=False)]
        if self.via == "direct":
            instances = ".".join([*self.prefix, "$model", "*"])
            out.append(
                _query_variable("instance", "Instance", instances, None, multi=True, all_value="*")
            )
        if features:
            names = [sanitize_segment(f) for f in features]
            out.append(_custom_variable("feature", "Feature", names))
        return out

    # paths ------------------------------------------------------------------------------------
    def _segments(self, root: Sequence[str]) -> list[str]:
        base = [*root, *self.prefix, "$model"]
        if self.via == "direct":
            base.append("$instance")
        return base

    def _gauge(self, metric: str, *labels: str) -> str:
        root = ("stats", "gauges") if self.via == "statsd" else ()
        return ".".join([*self._segments(root), metric, *labels])

    def _metric_node(self) -> int:
        return len(self._segments(("stats", "gauges") if self.via == "statsd" else ()))

    def _process_nodes(self) -> list[int]:
        """Nodes of a gauge path that differ between processes (instance, globbed prefix parts)."""
        root = ("stats", "gauges") if self.via == "statsd" else ()
        segments = self._segments(root)
        return [i for i, s in enumerate(segments) if s == "$instance" or "*" in s]

    def _rates(self, metric: str, *labels: str) -> str:
        """Per-second rate of a counter, one series per process (or per StatsD path)."""
        if self.via == "statsd":
            return ".".join(["stats", *self.prefix, "$model", metric, *labels])
        path = ".".join([*self._segments(()), metric, *labels])
        return f"perSecond(keepLastValue({path}, {_GAP_POINTS}))"

    def _rate(self, metric: str, *labels: str) -> str:
        return f"sumSeries({self._rates(metric, *labels)})"

    @staticmethod
    def _held(path: str) -> str:
        # A process whose point for this step is missing (jitter, a late flush) would make a
        # sum dip or a maximum drop for one step: hold its last value for a few steps.
        return f"keepLastValue({path}, {_GAP_POINTS})"

    def _by_process(self, path: str, name: str, *extra_nodes: int) -> str:
        nodes = [*self._process_nodes(), *extra_nodes]
        if nodes:
            return f"aliasByNode({path}, {', '.join(str(n) for n in nodes)})"
        return f"alias({path}, {_quote(name)})"

    # panels -----------------------------------------------------------------------------------
    def throughput(self) -> list[Query]:
        return [
            (f"alias({self._rate('mlmon_calls_total')}, 'calls/s')", ""),
            (f"alias({self._rate('mlmon_rows_total')}, 'rows/s')", ""),
        ]

    def calls_rate(self) -> list[Query]:
        return [(f"alias({self._rate('mlmon_calls_total')}, 'calls/s')", "")]

    def _errors_or_zero(self) -> str:
        # No error series exist before the first error: adding calls x 0 keeps a 0 line.
        errors = self._rates("mlmon_errors_total", "*")
        return f"sumSeries({errors}, scale({self._rates('mlmon_calls_total')}, 0))"

    def error_ratio(self) -> list[Query]:
        calls = self._rate("mlmon_calls_total")
        return [(f"alias(divideSeries({self._errors_or_zero()}, {calls}), 'error ratio')", "")]

    def availability(self) -> list[Query]:
        if self.via == "statsd":
            # Per-process availability gauges overwrite each other in StatsD; from counters,
            # 1 - (errors + slow) / calls is exact unless errored calls are also slow (then low).
            errors = self._rates("mlmon_errors_total", "*")
            bad = f"sumSeries({errors}, {self._rates('mlmon_slow_calls_total')})"
            ratio = f"divideSeries({bad}, {self._rate('mlmon_calls_total')})"
            return [(f"alias(offset(scale({ratio}, -1), 1), 'availability (lower bound)')", "")]
        pair = self._gauge("{mlmon_availability_ratio,mlmon_calls_per_second}")
        products = f"multiplySeriesWithWildcards({pair}, {self._metric_node()})"
        weighted = f"sumSeries({self._held(products)})"
        calls = f"sumSeries({self._held(self._gauge('mlmon_calls_per_second'))})"
        return [(f"alias(divideSeries({weighted}, {calls}), 'availability')", "")]

    def processes(self) -> list[Query]:
        if self.via == "statsd":
            return []
        return [(f"alias(sumSeries({self._held(self._gauge('mlmon_up'))}), 'processes')", "")]

    def latency(self) -> list[Query]:
        where = "max over instances" if self.via == "direct" else "last process to flush"
        out = []
        for q in _LATENCY_QUANTILES:
            seg = quantile_segment(q)
            assert seg is not None
            path = self._gauge("mlmon_latency_seconds", seg)
            out.append((f"alias(maxSeries({self._held(path)}), '{seg} ({where})')", ""))
        total = self._rate("mlmon_latency_seconds_sum")
        count = self._rate("mlmon_latency_seconds_count")
        out.append((f"alias(divideSeries({total}, {count}), 'mean')", ""))
        return out

    def latency_p99_by_process(self) -> list[Query]:
        if self.via == "statsd":
            return []
        return [(self._by_process(self._gauge("mlmon_latency_seconds", "p99"), "p99"), "")]

    def latency_within(self) -> list[Query]:
        inf = le_segment("+Inf")
        assert inf is not None
        total = self._rate("mlmon_latency_seconds_bucket", inf)
        out = []
        for le, text in _SLO_BOUNDS:
            seg = le_segment(le)
            assert seg is not None
            part = self._rate("mlmon_latency_seconds_bucket", seg)
            out.append((f"alias(divideSeries({part}, {total}), '≤ {text}')", ""))
        return out

    def inflight(self) -> list[Query]:
        path = self._held(self._gauge("mlmon_inflight_calls"))
        return [(f"alias(sumSeries({path}), 'in flight')", "")]

    def oldest_inflight(self) -> list[Query]:
        path = self._held(self._gauge("mlmon_oldest_inflight_seconds"))
        return [(f"alias(maxSeries({path}), 'oldest in flight')", "")]

    def slow_calls(self) -> list[Query]:
        return [(f"alias({self._rate('mlmon_slow_calls_total')}, 'slow calls/s')", "")]

    def resource(self, metric: str, legend: str) -> list[Query]:
        return [(self._by_process(self._gauge(metric), legend), "")]

    def output_mean(self) -> list[Query]:
        return [(self._by_process(self._gauge("mlmon_output_mean"), "mean score"), "")]

    def output_variance(self) -> list[Query]:
        return [(self._by_process(self._gauge("mlmon_output_variance"), "variance"), "")]

    def output_quantiles(self) -> list[Query]:
        segs = ",".join(s for s in (quantile_segment(q) for q in _OUTPUT_QUANTILES) if s)
        path = self._gauge("mlmon_output", "{" + segs + "}")
        nodes = [*self._process_nodes(), self._metric_node() + 1]
        return [(f"aliasByNode({path}, {', '.join(str(n) for n in nodes)})", "")]

    def class_ratio(self) -> list[Query]:
        path = self._gauge("mlmon_output_class_ratio", "*")
        nodes = [*self._process_nodes(), self._metric_node() + 1]
        return [(f"aliasByNode({path}, {', '.join(str(n) for n in nodes)})", "")]

    def quality(self, metrics: Sequence[str], average: str | None) -> list[Query]:
        labels = [f"average_{average}"] if average else []
        node = self._metric_node()
        return [(self._by_process(self._gauge(m, *labels), _short(m), node), "") for m in metrics]

    def estimated_vs_realized(self) -> list[Query]:
        node = self._metric_node()
        return [
            (self._by_process(self._gauge("mlmon_f1"), "realized F1", node), ""),
            (self._by_process(self._gauge("mlmon_estimated_f1"), "estimated F1", node), ""),
        ]

    def label_coverage(self) -> list[Query]:
        return [(self._by_process(self._gauge("mlmon_label_coverage_ratio"), "coverage"), "")]

    def labels_rate(self) -> list[Query]:
        return [
            (f"alias({self._rate('mlmon_labels_total')}, 'joined/s')", ""),
            (f"alias({self._rate('mlmon_labels_unmatched_total')}, 'unmatched/s')", ""),
        ]

    def label_delay(self) -> list[Query]:
        segs = ",".join(s for s in (quantile_segment(q) for q in _OUTPUT_QUANTILES) if s)
        path = self._gauge("mlmon_label_delay_seconds", "{" + segs + "}")
        return [(f"groupByNode({self._held(path)}, {self._metric_node() + 1}, 'max')", "")]

    def feature_worst(self, metric: str) -> list[Query]:
        path = self._held(self._gauge(metric, "feature_$feature"))
        grouped = f"groupByNode({path}, {self._metric_node() + 1}, 'max')"
        return [(f"aliasSub({grouped}, '^feature_', '')", "")]

    def alerts_firing(self) -> list[Query]:
        path = self._held(self._gauge("mlmon_alerts_firing"))
        return [(f"alias(sumSeries({path}), 'rules firing')", "")]

    def alert_by_rule(self) -> list[Query]:
        path = self._held(self._gauge("mlmon_alert_firing", "*"))
        grouped = f"groupByNode({path}, {self._metric_node() + 1}, 'max')"
        return [(f"aliasSub({grouped}, '^rule_', '')", "")]


def _pct(q: str) -> str:
    seg = quantile_segment(q)
    return seg[1:] if seg else q


def _short(metric: str) -> str:
    return metric.removeprefix("mlmon_").replace("_", " ")


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------------------------------------
# Variables, panels, layout
# ---------------------------------------------------------------------------------------------

_DS: Json = {"uid": "${DS}"}


def _datasource_variable(kind: str) -> Json:
    return {
        "name": "DS",
        "label": "Data source",
        "type": "datasource",
        "query": kind,
        "regex": "",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "options": [],
        "skipUrlSync": False,
    }


def _query_variable(
    name: str,
    label: str,
    query: str,
    current: str | None,
    *,
    multi: bool,
    all_value: str | None = None,
) -> Json:
    var: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _DS,
        "query": query,
        "definition": query,
        "refresh": 2,  # on time range change: processes come and go
        "sort": 1,
        "regex": "",
        "multi": multi,
        "includeAll": all_value is not None,
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }
    if all_value is not None:
        var["allValue"] = all_value
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    elif current is not None:
        var["current"] = {"selected": True, "text": current, "value": current}
    else:
        var["current"] = {}
    return var


def _custom_variable(name: str, label: str, values: Sequence[str]) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(v.replace(",", "\\,") for v in values),
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [{"selected": True, "text": "All", "value": "$__all"}]
        + [{"selected": False, "text": v, "value": v} for v in values],
        "hide": 0,
        "skipUrlSync": False,
    }


class _Builder:
    """Collects rows and panels, numbers them and lays them out on the 24-column grid."""

    def __init__(self, queries: _Queries) -> None:
        self.q = queries
        self.ds: Json = {"type": queries.datasource_type, "uid": "${DS}"}
        self.panels: list[Json] = []
        self._next_id = 1
        self._x = 0
        self._y = 0
        self._line_h = 0

    def _id(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": _GRID_WIDTH, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        self._y += self._line_h
        self._x = 0
        self._line_h = 0

    def _place(self, w: int, h: int) -> Json:
        if self._x + w > _GRID_WIDTH:
            self._newline()
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._line_h = max(self._line_h, h)
        return pos

    def _targets(self, queries: Sequence[Query]) -> list[Json]:
        return [
            self.q.target(expr, legend, _ref(i), self.ds) for i, (expr, legend) in enumerate(queries)
        ]

    def timeseries(
        self,
        title: str,
        queries: Sequence[Query],
        *,
        unit: str,
        description: str,
        w: int = 8,
        h: int = 8,
        ratio: bool = False,
    ) -> None:
        if not queries:
            return
        defaults: Json = {
            "unit": unit,
            "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": True},
        }
        if ratio:
            defaults["min"] = 0
            defaults["max"] = 1
        self.panels.append(
            {
                "type": "timeseries",
                "id": self._id(),
                "title": title,
                "description": description,
                "datasource": self.ds,
                "gridPos": self._place(w, h),
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": self._targets(queries),
            }
        )

    def stat(
        self,
        title: str,
        queries: Sequence[Query],
        *,
        unit: str,
        description: str,
        steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
        w: int = 6,
        h: int = 4,
    ) -> None:
        if not queries:
            return
        self.panels.append(
            {
                "type": "stat",
                "id": self._id(),
                "title": title,
                "description": description,
                "datasource": self.ds,
                "gridPos": self._place(w, h),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "thresholds": {
                            "mode": "absolute",
                            "steps": [{"color": c, "value": v} for v, c in steps],
                        },
                    },
                    "overrides": [],
                },
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value",
                    "graphMode": "area",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "textMode": "auto",
                },
                "targets": self._targets(queries),
            }
        )


def _ref(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[i] if i < len(letters) else f"Q{i}"


_QUALITY_BY_TASK: dict[str, tuple[tuple[str, ...], str | None]] = {
    "binary": (("mlmon_precision", "mlmon_recall", "mlmon_f1"), None),
    "multiclass": (("mlmon_precision", "mlmon_recall", "mlmon_f1"), "macro"),
    "regression": (("mlmon_mae", "mlmon_rmse"), None),
}


def _service_row(b: _Builder) -> None:
    q = b.q
    fleet = "Summed over processes from cumulative counters (rates first, then the sum)."
    b.row("Service health")
    n_stats = 4 if q.processes() else 3
    w = _GRID_WIDTH // n_stats
    b.stat("Calls / s", q.calls_rate(), unit="reqps", description=fleet, w=w)
    b.stat(
        "Error ratio",
        q.error_ratio(),
        unit="percentunit",
        description="Errors / calls over every process, both from counters.",
        steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
        w=w,
    )
    b.stat(
        "Availability",
        q.availability(),
        unit="percentunit",
        description=_AVAILABILITY_DOC[q.datasource_type if q.per_process else "statsd"],
        steps=((None, "red"), (0.99, "orange"), (0.999, "green")),
        w=w,
    )
    b.stat(
        "Processes reporting",
        q.processes(),
        unit="short",
        description="Processes whose monitor is running (mlmon_up summed).",
        w=w,
    )
    b.timeseries("Throughput", q.throughput(), unit="reqps", description=fleet)
    b.timeseries(
        "Error ratio and availability",
        q.error_ratio() + q.availability(),
        unit="percentunit",
        description="Error ratio from counters; availability: "
        + _AVAILABILITY_DOC[q.datasource_type if q.per_process else "statsd"],
        ratio=True,
    )
    b.timeseries(
        "Slow calls / s",
        q.slow_calls(),
        unit="reqps",
        description="Calls over the latency budget, summed over processes from counters.",
    )
    by_process = q.latency_p99_by_process()
    w = 8 if by_process else 12
    b.timeseries(
        "Latency",
        q.latency(),
        unit="s",
        description=_LATENCY_DOC[q.datasource_type if q.per_process else "statsd"],
        w=w,
    )
    b.timeseries(
        "Share of calls within latency",
        q.latency_within(),
        unit="percentunit",
        description="Calls at or under each bound / all calls, from the cumulative le buckets "
        "summed over processes (an exact fleet SLO view).",
        w=w,
        ratio=True,
    )
    b.timeseries(
        "p99 latency by process (window)",
        by_process,
        unit="s",
        description="Each process's own window p99: spot the slow replica. Never averaged.",
        w=w,
    )
    b.timeseries(
        "In flight",
        q.inflight(),
        unit="short",
        description="Calls started and not finished, summed over processes.",
        w=12,
    )
    b.timeseries(
        "Oldest in flight",
        q.oldest_inflight(),
        unit="s",
        description="Age of the oldest unfinished call, the maximum over processes: a hung "
        "call shows while it hangs.",
        w=12,
    )


_AVAILABILITY_DOC = {
    "prometheus": "Each process's window availability weighted by its calls per second, "
    "summed and divided by the total: the fleet's share of calls that succeeded within budget.",
    "graphite": "Each process's window availability weighted by its calls per second "
    "(multiplySeriesWithWildcards), summed and divided by the total calls per second.",
    "statsd": "1 - (errors + slow calls) / calls from counters summed by StatsD; a lower bound "
    "when errored calls are also slow (gauges of several processes overwrite each other).",
}

_LATENCY_DOC = {
    "prometheus": "Fleet quantiles from the le buckets summed over processes "
    "(histogram_quantile); mean = latency sum / count. Quantiles are never averaged.",
    "graphite": "Each quantile is the maximum over processes of their window quantile: an upper "
    "bound of the fleet quantile (an average of p99s is not a p99). Mean = sum / count of "
    "the cumulative counters.",
    "statsd": "Quantile gauges of the last process to flush (exact with one process); the mean "
    "is the fleet's, from the sum and count counters summed by StatsD.",
}


def _resources_row(b: _Builder) -> None:
    q = b.q
    per = "Per process: a process's own reading, not meaningful summed."
    b.row("Resources")
    for title, metric, unit, legend in (
        ("Process CPU", "mlmon_process_cpu_percent", "percent", "cpu %"),
        ("Resident memory", "mlmon_process_resident_memory_bytes", "bytes", "rss"),
        ("Threads", "mlmon_process_threads", "short", "threads"),
        ("Open file descriptors", "mlmon_process_open_fds", "short", "fds"),
    ):
        b.timeseries(title, q.resource(metric, legend), unit=unit, description=per, w=6)


def _outputs_row(b: _Builder, task: str) -> None:
    q = b.q
    prom = q.datasource_type == "prometheus"
    b.row("Model outputs")
    b.timeseries(
        "Mean score",
        q.output_mean(),
        unit="none",
        description=(
            "Each process's window mean weighted by its number of outputs: the fleet mean."
            if prom
            else "Window mean of the scores, per process."
        ),
        w=6,
    )
    b.timeseries(
        "Score variance",
        q.output_variance(),
        unit="none",
        description="Window variance of the scores, per process (variances do not add up).",
        w=6,
    )
    b.timeseries(
        "Score quantiles",
        q.output_quantiles(),
        unit="none",
        description="Window quantiles of the scores, per process.",
        w=6 if task in ("binary", "multiclass") else 12,
    )
    if task in ("binary", "multiclass"):
        b.timeseries(
            "Predicted class ratio",
            q.class_ratio(),
            unit="percentunit",
            description=(
                "Each process's class shares weighted by its rows per second: the fleet's share."
                if prom
                else "Share of the window's predictions per class, per process."
            ),
            w=6,
            ratio=True,
        )


def _quality_row(b: _Builder, task: str) -> None:
    q = b.q
    metrics, average = _QUALITY_BY_TASK[task]
    b.row("Quality")
    what = "Precision / recall / F1" if task != "regression" else "MAE / RMSE"
    if average:
        what += f" ({average} average)"
    b.timeseries(
        what,
        q.quality(metrics, average),
        unit="percentunit" if task != "regression" else "none",
        description="Over each process's labelled predictions in its window. Per process: "
        "these ratios cannot be rebuilt from other series.",
        ratio=task != "regression",
    )
    if task == "binary":
        b.timeseries(
            "F1: estimated vs realized",
            q.estimated_vs_realized(),
            unit="percentunit",
            description="Estimated from calibrated scores at prediction time, realized once "
            "labels arrive. A growing gap means the scores are no longer calibrated.",
            ratio=True,
        )
    prom = q.datasource_type == "prometheus"
    b.timeseries(
        "Label coverage",
        q.label_coverage(),
        unit="percentunit",
        description=(
            "Each process's coverage weighted by its rows per second: the fleet's share of "
            "predictions that got a label."
            if prom
            else "Share of the window's predictions that got a label, per process."
        ),
        w=8,
        ratio=True,
    )
    b.timeseries(
        "Labels / s",
        q.labels_rate(),
        unit="reqps",
        description="Labels joined to a prediction and labels matching none, summed over "
        "processes from counters.",
        w=12 if task == "binary" else 8,
    )
    b.timeseries(
        "Label delay",
        q.label_delay(),
        unit="s",
        description="Window quantiles of the delay between prediction and label, the maximum "
        "over processes (an upper bound of the fleet quantile).",
        w=12 if task == "binary" else 24,
    )


def _features_row(b: _Builder) -> None:
    q = b.q
    worst = "The maximum over processes per feature: a drifting replica is not averaged away."
    b.row("Features")
    b.timeseries(
        "Missing ratio by feature",
        q.feature_worst("mlmon_feature_missing_ratio"),
        unit="percentunit",
        description="Share of rows with the feature missing or invalid. " + worst,
        w=12,
        ratio=True,
    )
    b.timeseries(
        "Drift (PSI) by feature",
        q.feature_worst("mlmon_feature_drift_psi"),
        unit="none",
        description="Population stability index against the reference (0.1: watch, 0.2: "
        "drift). " + worst,
        w=12,
    )


def _alerts_row(b: _Builder) -> None:
    q = b.q
    b.row("Alerts")
    b.stat(
        "Rules firing",
        q.alerts_firing(),
        unit="short",
        description="mlmon alert rules firing, summed over processes (0 without rules).",
        steps=((None, "green"), (1, "red")),
        w=6,
        h=8,
    )
    b.timeseries(
        "Firing by rule",
        q.alert_by_rule(),
        unit="short",
        description="1 while the rule fires in any process (maximum over processes).",
        w=18,
    )


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

    Returns:
        The dashboard as a dict, ready for ``json.dumps``.

    Raises:
        ValueError: an unknown datasource, via or task, a bad model name or prefix, ``prefix``
            or ``via="statsd"`` with Prometheus, or feature names that are not unique.
        TypeError: ``features`` given as one string.

    >>> d = dashboard("prometheus", "fraud", features=["age", "income"])
    >>> [p["title"] for p in d["panels"] if p["type"] == "row"]
    ['Service health', 'Resources', 'Model outputs', 'Quality', 'Features', 'Alerts']
    >>> [v["name"] for v in d["templating"]["list"]]
    ['DS', 'model', 'instance', 'feature']
    >>> calls = next(p for p in d["panels"] if p["title"] == "Throughput")
    >>> calls["targets"][0]["expr"]
    'sum by (model) (rate(mlmon_calls_total{model="$model", instance=~"$instance"}[$__rate_interval]))'
    >>> g = dashboard("graphite", "fraud", prefix="ml", task="none")
    >>> [p["title"] for p in g["panels"] if p["type"] == "row"]
    ['Service health', 'Resources', 'Model outputs', 'Alerts']
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

    queries: _Queries
    if datasource == "prometheus":
        if prefix:
            raise ValueError(
                f"prefix applies to Graphite paths only (Prometheus names have none), got {prefix!r}"
            )
        if via != "direct":
            raise ValueError(f"via={via!r} needs datasource='graphite' (StatsD writes to Graphite)")
        queries = _Prometheus()
    else:
        if prefix and not _GRAPHITE_PREFIX_RE.fullmatch(prefix):
            raise ValueError(
                "prefix must be dot-separated segments of [A-Za-z0-9_-] (or *), like 'ml' or "
                f"'ml.*', got {prefix!r}"
            )
        queries = _Graphite(prefix, via)

    b = _Builder(queries)
    _service_row(b)
    _resources_row(b)
    _outputs_row(b, task_name)
    if task_name != "none":
        _quality_row(b, task_name)
    if names:
        _features_row(b)
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
            "list": [_datasource_variable(queries.datasource_type), *queries.variables(model, names)]
        },
        "panels": b.panels,
    }


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

PROG = "python -m mlmon export grafana"


class _Usage(Exception):
    """A command-line mistake: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit the interpreter
        raise _Usage(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Write a Grafana dashboard (JSON) for mlmon's metrics: service health, "
        "resources, outputs, quality, features and alerts, with queries that add up across "
        "processes. Import it in Grafana (Dashboards > New > Import).",
    )
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
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    return p




def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m mlmon export grafana`` with ``argv`` (the arguments after ``grafana``).

    Returns:
        0 when the dashboard was written; 2 on a usage error (unknown datasource, via or task,
        bad prefix, model or feature names); 1 when the output file cannot be written.

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
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = _parser().parse_args(args_list)
        except SystemExit as exc:  # --help
            return int(exc.code) if isinstance(exc.code, int) else 0
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
            )
        except (ValueError, TypeError) as exc:
            raise _Usage(f"{PROG}: {exc}") from None
    except _Usage as exc:
        print(f"{exc}\nusage: {PROG} --datasource {{graphite,prometheus}} [options]; see --help",
              file=sys.stderr)
        return 2
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
