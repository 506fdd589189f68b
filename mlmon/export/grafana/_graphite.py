"""Graphite functions for every panel, for GraphiteEmitter paths or StatsD's namespace."""

from __future__ import annotations

from collections.abc import Sequence

from mlmon.export.grafana._common import (
    _FLEET_RANGE_GRAPHITE,
    _GAP_POINTS,
    _LATENCY_QUANTILES,
    _OUTPUT_QUANTILES,
    _SEGMENT_QUALITY,
    _SLO_BOUNDS,
    Json,
    Query,
    _quote,
    _short,
)
from mlmon.export.grafana._model import _custom_variable, _query_variable
from mlmon.export.grafana._queries import _Queries
from mlmon.naming import le_segment, quantile_segment, sanitize_segment


class _Graphite(_Queries):
    """Graphite functions over dotted paths, written directly (per-process paths) or by StatsD.

    Direct: ``[prefix.]model.instance.metric[.label]`` holding cumulative counters and gauges.
    StatsD (legacy namespace): ``stats.<path>`` (counter per second), ``stats_counts.<path>``
    (counter per flush), ``stats.gauges.<path>`` with ``<path>`` = ``[prefix.]model.metric``.
    """

    datasource_type = "graphite"

    def __init__(self, prefix: str, via: str, fleet: str | None = None) -> None:
        self.prefix = [p for p in prefix.split(".") if p]
        self.via = via
        self.per_process = via == "direct"
        # The fleet snapshot's path segment (GraphiteEmitter puts the instance in the path):
        # left out of every process panel, read by the fleet row.
        self.fleet = None if fleet is None else sanitize_segment(fleet)

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
            var = _query_variable("instance", "Instance", instances, None, multi=True, all_value="*")
            if self.fleet is not None:
                var["regex"] = f"/^(?!{self.fleet}$).*/"  # the fleet is not a process
            out.append(var)
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
        return self._processes(".".join([*self._segments(root), metric, *labels]))

    def _processes(self, path: str) -> str:
        """``path`` without the fleet's series (its instance node is the one before the metric)."""
        if self.fleet is None or self.via != "direct":
            return path
        return f"exclude({path}, {_quote('[.]' + self.fleet + '[.]mlmon_')})"

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
        path = self._processes(".".join([*self._segments(()), metric, *labels]))
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

    def _moving(self, metric: str, *labels: str) -> str:
        """The fleet's counter increase over the fleet range (as a per-second sum: only ratios
        of two such series are meaningful, which is all the quality panels take)."""
        return f"movingSum({self._rate(metric, *labels)}, {_quote(_FLEET_RANGE_GRAPHITE)})"

    def fleet_quality(self, task: str, positive: str) -> list[Query]:
        if task == "regression":
            n = self._moving("mlmon_regression_labels_total")
            mae = self._moving("mlmon_regression_abs_error_sum_total")
            sq = self._moving("mlmon_regression_squared_error_sum_total")
            return [
                (f"alias(divideSeries({mae}, {n}), 'fleet mae')", ""),
                (f"alias(pow(divideSeries({sq}, {n}), 0.5), 'fleet rmse')", ""),
            ]
        if task != "binary":
            # The macro average needs the diagonal cells (actual == predicted): a wildcard
            # cannot pair two path nodes, so Graphite cannot rebuild it without the class names.
            return []
        cells = "mlmon_confusion_total"
        pos = sanitize_segment(positive)
        tp = self._moving(cells, f"actual_{pos}", f"predicted_{pos}")
        pp = self._moving(cells, "actual_*", f"predicted_{pos}")
        ap = self._moving(cells, f"actual_{pos}", "predicted_*")
        return [
            (f"alias(divideSeries({tp}, {pp}), 'fleet precision')", ""),
            (f"alias(divideSeries({tp}, {ap}), 'fleet recall')", ""),
            (f"alias(divideSeries(scale({tp}, 2), sumSeries({pp}, {ap})), 'fleet f1')", ""),
        ]

    def estimated_vs_realized(self) -> list[Query]:
        node = self._metric_node()
        return [
            (self._by_process(self._gauge("mlmon_f1"), "realized F1", node), ""),
            (self._by_process(self._gauge("mlmon_estimated_f1"), "estimated F1", node), ""),
        ]

    def _gauges(self, metrics: tuple[tuple[str, str], ...]) -> list[Query]:
        node = self._metric_node()
        return [(self._by_process(self._gauge(metric), legend, node), "") for metric, legend in metrics]

    def label_coverage(self) -> list[Query]:
        return [(self._by_process(self._gauge("mlmon_label_coverage_ratio"), "coverage"), "")]

    def labels_rate(self) -> list[Query]:
        return [
            (f"alias({self._rate('mlmon_labels_total')}, 'joined/s')", ""),
            (f"alias({self._rate('mlmon_labels_unmatched_total')}, 'unmatched/s')", ""),
            (f"alias({self._rate('mlmon_labels_expired_total')}, 'expired/s')", ""),
        ]

    def label_delay(self) -> list[Query]:
        segs = ",".join(s for s in (quantile_segment(q) for q in _OUTPUT_QUANTILES) if s)
        path = self._gauge("mlmon_label_delay_seconds", "{" + segs + "}")
        return [(f"groupByNode({self._held(path)}, {self._metric_node() + 1}, 'max')", "")]

    def feature_worst(self, metric: str) -> list[Query]:
        path = self._held(self._gauge(metric, "feature_$feature"))
        grouped = f"groupByNode({path}, {self._metric_node() + 1}, 'max')"
        return [(f"aliasSub({grouped}, '^feature_', '')", "")]

    def fleet_feature_psi(self) -> list[Query]:
        # PSI pairs each bin's window share with its reference share and floors both at
        # epsilon before the log: Graphite has no point-wise floor nor a by-node pairing of two
        # series lists for ln(q / p), so fleet PSI is Prometheus only (see docs/dashboards.md).
        return []

    # fleet ------------------------------------------------------------------------------------
    def _fleet_path(self, metric: str, *labels: str) -> str:
        assert self.fleet is not None and self.via == "direct"
        return ".".join([*self.prefix, "$model", self.fleet, metric, *labels])

    def fleet_value(self, metric: str, legend: str, **labels: str) -> list[Query]:
        segs = []
        for key, value in labels.items():
            seg = quantile_segment(value) if key == "quantile" else f"{key}_{sanitize_segment(value)}"
            assert seg is not None
            segs.append(seg)
        # maxSeries: one line even when a globbed prefix matches several fleets' paths
        path = self._held(self._fleet_path(metric, *segs))
        return [(f"alias(maxSeries({path}), {_quote(legend)})", "")]

    def fleet_by_label(self, metric: str, label: str, values: str) -> list[Query]:
        path = self._held(self._fleet_path(metric, f"{label}_{values}"))
        grouped = f"groupByNode({path}, {self._metric_node() + 1}, 'max')"
        return [(f"aliasSub({grouped}, {_quote('^' + label + '_')}, '')", "")]

    def fleet_counter_by_label(self, metric: str, label: str) -> list[Query]:
        rates = f"perSecond(keepLastValue({self._fleet_path(metric, '*')}, {_GAP_POINTS}))"
        grouped = f"groupByNode({rates}, {self._metric_node() + 1}, 'sumSeries')"
        return [(f"aliasSub({grouped}, {_quote('^' + label + '_')}, '')", "")]

    def fleet_per_process(self, metric: str, legend: str) -> list[Query]:
        return [(self._by_process(self._gauge(metric), legend), "")]

    def fleet_process_sum(self, metric: str, legend: str) -> list[Query]:
        return [(f"alias(sumSeries({self._held(self._gauge(metric))}), {_quote(legend)})", "")]

    def fleet_process_rate(self, metric: str, legend: str) -> list[Query]:
        return [(f"alias({self._rate(metric)}, {_quote(legend)})", "")]

    # segments ---------------------------------------------------------------------------------
    # A label is a path node after the metric and its other labels, in sorted key order, and
    # "segment" sorts after every label a segment series has (error_type, feature, average...):
    # a segment's series is one node deeper than its overall one, so no overall path (a fixed
    # number of nodes) ever matches it.
    _SEG = "segment_$segment"

    def segment_variable(self) -> Json:
        root = ("stats", "gauges") if self.via == "statsd" else ()
        nodes = [*root, *self.prefix, "$model"] + (["*"] if self.via == "direct" else [])
        query = ".".join([*nodes, "mlmon_rows_per_second", "segment_*"])
        var = _query_variable("segment", "Segment", query, None, multi=True, all_value="*")
        var["regex"] = "/^segment_(.+)$/"  # the name after the path part's "segment_"
        return var

    def segment_rows(self) -> list[Query]:
        return [(f"alias({self._rate('mlmon_rows_total', self._SEG)}, 'rows/s')", "")]

    def segment_error_ratio(self) -> list[Query]:
        errors = self._rates("mlmon_errors_total", "*", self._SEG)
        calls = self._rates("mlmon_calls_total", self._SEG)
        either = f"sumSeries({errors}, scale({calls}, 0))"
        return [(f"alias(divideSeries({either}, sumSeries({calls})), 'error ratio')", "")]

    def segment_quality(self, task: str) -> list[Query]:
        metric, legend, average = _SEGMENT_QUALITY[task]
        labels = [f"average_{average}"] if average else []
        path = self._gauge(metric, *labels, self._SEG)
        return [(self._by_process(path, legend), "")]

    def segment_drift(self) -> list[Query]:
        path = self._held(self._gauge("mlmon_feature_drift_psi", "*", self._SEG))
        return [(f"alias(maxSeries({path}), 'largest feature PSI')", "")]

    def alerts_firing(self) -> list[Query]:
        path = self._held(self._gauge("mlmon_alerts_firing"))
        return [(f"alias(sumSeries({path}), 'rules firing')", "")]

    def alert_by_rule(self) -> list[Query]:
        path = self._held(self._gauge("mlmon_alert_firing", "*"))
        grouped = f"groupByNode({path}, {self._metric_node() + 1}, 'max')"
        return [(f"aliasSub({grouped}, '^rule_', '')", "")]
