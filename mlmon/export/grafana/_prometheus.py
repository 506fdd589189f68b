"""PromQL for every panel: rates per process summed, quantiles from ``le`` buckets."""

from __future__ import annotations

from collections.abc import Sequence

from mlmon.export.grafana._common import (
    _FLEET_RANGE,
    _LATENCY_QUANTILES,
    _OUTPUT_QUANTILES,
    _PSI_EPSILON,
    _SEGMENT_QUALITY,
    _SLO_BOUNDS,
    Json,
    Query,
    _pct,
    _prom_name,
    _short,
)
from mlmon.export.grafana._model import _custom_variable, _query_variable
from mlmon.export.grafana._queries import _Queries


def _prom_str(value: str) -> str:
    """``value`` inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


SEGMENT = "segment"
"""The label of every per-segment series; the overall series have none (``segment=""``)."""


def _matchers(labels: dict[str, str]) -> list[str]:
    """``key="value"`` (``key=~"value"`` for a ``key_re``), then ``segment=""`` unless the
    segment is chosen: an overall panel never sums a segment's series into the overall ones."""
    parts = []
    for key, value in labels.items():
        op = "=~" if key.endswith("_re") else "="
        parts.append(f'{key.removesuffix("_re")}{op}"{value}"')
    if not any(key.removesuffix("_re") == SEGMENT for key in labels):
        parts.append(f'{SEGMENT}=""')
    return parts


class _Prometheus(_Queries):
    """PromQL over the series ``PrometheusEmitter`` exposes, scraped from every process."""

    datasource_type = "prometheus"

    def __init__(self, fleet: str | None = None) -> None:
        # The fleet snapshot's instance: its series are left out of every process panel (the
        # processes' counters summed are already the fleet's) and selected by the fleet row.
        # Prometheus keeps mlmon's instance under "exported_instance" (honor_labels: false,
        # the default) or "instance" (honor_labels: true): both are matched.
        self.fleet = None if fleet is None else _prom_str(fleet)

    def _not_fleet(self) -> list[str]:
        if self.fleet is None:
            return []
        return [f'instance!="{self.fleet}"', f'exported_instance!="{self.fleet}"']

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
                "label_values(mlmon_up{" + ", ".join(['model="$model"', *self._not_fleet()]) + "}, instance)",
                None,
                multi=True,
                all_value=".*",
            ),
        ]
        if features:
            out.append(_custom_variable("feature", "Feature", list(features)))
        return out

    def _sel(self, metric: str, **labels: str) -> str:
        parts = ['model="$model"', 'instance=~"$instance"', *self._not_fleet()]
        parts += _matchers(labels)
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

    def _increase(self, metric: str, by: str, **labels: str) -> str:
        return f"sum by ({by}) (increase({self._sel(metric, **labels)}[{_FLEET_RANGE}]))"

    def fleet_quality(self, task: str, positive: str) -> list[Query]:
        if task == "regression":
            n = self._increase("mlmon_regression_labels_total", "model")
            mae = self._increase("mlmon_regression_abs_error_sum_total", "model")
            sq = self._increase("mlmon_regression_squared_error_sum_total", "model")
            return [(f"{mae} / {n}", "fleet mae"), (f"sqrt({sq} / {n})", "fleet rmse")]
        cells = "mlmon_confusion_total"
        if task == "binary":
            pos = positive.replace("\\", "\\\\").replace('"', '\\"')
            tp = self._increase(cells, "model", actual=pos, predicted=pos)
            pp = self._increase(cells, "model", predicted=pos)
            ap = self._increase(cells, "model", actual=pos)
            return [
                (f"{tp} / {pp}", "fleet precision"),
                (f"{tp} / {ap}", "fleet recall"),
                (f"2 * {tp} / ({pp} + {ap})", "fleet f1"),
            ]
        # Multiclass, macro average: per class (diagonal cell, predicted, actual), then the mean
        # over the classes where the ratio is defined. PromQL cannot compare two labels, so the
        # diagonal is the cells joined with a copy whose "predicted" is set to "actual".
        rate = f"increase({self._sel(cells)}[{_FLEET_RANGE}])"
        ones = f'label_join(sum by (model, instance, actual) ({self._sel(cells)}), "predicted", "", "actual")'
        diag = f"sum by (model, actual) ({rate} and on (model, instance, actual, predicted) {ones})"
        pp = f'sum by (model, actual) (label_join(sum by (model, predicted) ({rate}), "actual", "", "predicted"))'
        ap = f"sum by (model, actual) ({rate})"
        return [
            (f"avg by (model) ({diag} / ({pp} > 0))", "fleet precision (macro)"),
            (f"avg by (model) ({diag} / ({ap} > 0))", "fleet recall (macro)"),
            (f"avg by (model) (2 * {diag} / (({pp} + {ap}) > 0))", "fleet f1 (macro)"),
        ]

    def estimated_vs_realized(self) -> list[Query]:
        return [
            (self._sel("mlmon_f1"), "realized F1 {{instance}}"),
            (self._sel("mlmon_estimated_f1"), "estimated F1 {{instance}}"),
        ]

    def _gauges(self, metrics: tuple[tuple[str, str], ...]) -> list[Query]:
        return [(self._sel(metric), f"{legend} {{{{instance}}}}") for metric, legend in metrics]

    def label_coverage(self) -> list[Query]:
        return [
            (self._weighted("mlmon_label_coverage_ratio", "mlmon_rows_per_second"), "coverage")
        ]

    def labels_rate(self) -> list[Query]:
        return [
            (self._sum_rate("mlmon_labels_total"), "joined/s"),
            (self._sum_rate("mlmon_labels_unmatched_total"), "unmatched/s"),
            (self._sum_rate("mlmon_labels_expired_total"), "expired/s"),
        ]

    def label_delay(self) -> list[Query]:
        quantiles = "|".join(_OUTPUT_QUANTILES)
        sel = self._sel("mlmon_label_delay_seconds", quantile_re=quantiles)
        return [(f"max by (model, quantile) ({sel})", "q{{quantile}} (max over instances)")]

    def feature_worst(self, metric: str) -> list[Query]:
        sel = self._sel(metric, feature_re="$feature")
        return [(f"max by (model, feature) ({sel})", "{{feature}}")]

    def fleet_feature_psi(self) -> list[Query]:
        counts = self._increase("mlmon_feature_bin_total", "model, feature, bin", feature_re="$feature")
        total = self._increase("mlmon_feature_bin_total", "model, feature", feature_re="$feature")
        ref = self._sel("mlmon_feature_reference_ratio", feature_re="$feature")
        q = f"clamp_min({counts} / on (model, feature) group_left {total}, {_PSI_EPSILON})"
        p = f"clamp_min(max by (model, feature, bin) ({ref}), {_PSI_EPSILON})"
        return [(f"sum by (model, feature) (({q} - {p}) * ln({q} / {p}))", "{{feature}}")]

    # fleet ------------------------------------------------------------------------------------
    def _fleet_either(self, metric: str, wrap: str = "{}", **labels: str) -> str:
        """``wrap`` applied to the fleet's series under either label that holds mlmon's
        instance, joined with ``or`` (one of the two is empty)."""
        assert self.fleet is not None
        parts = ['model="$model"', *_matchers(labels)]
        name = _prom_name(metric)
        fleet = self.fleet
        sels = [
            name + "{" + ", ".join([*parts, f'{label}="{fleet}"']) + "}"
            for label in ("exported_instance", "instance")
        ]
        return " or ".join(wrap.format(sel) for sel in sels)

    def fleet_value(self, metric: str, legend: str, **labels: str) -> list[Query]:
        # max by (model): one line across a handover, when two leaders' endpoints (two scrape
        # targets) may both carry the fleet's series for a scrape or two.
        by = ", ".join(["model", *(k.removesuffix("_re") for k in labels)])
        return [(f"max by ({by}) ({self._fleet_either(metric, **labels)})", legend)]

    def fleet_by_label(self, metric: str, label: str, values: str) -> list[Query]:
        expr = self._fleet_either(metric, **{f"{label}_re": values})
        return [(f"max by (model, {label}) ({expr})", f"{{{{{label}}}}}")]

    def fleet_counter_by_label(self, metric: str, label: str) -> list[Query]:
        expr = self._fleet_either(metric, "rate({}[$__rate_interval])")
        return [(f"sum by (model, {label}) ({expr})", f"{{{{{label}}}}}")]

    def fleet_per_process(self, metric: str, legend: str) -> list[Query]:
        return [(self._sel(metric), "{{instance}}")]

    def fleet_process_sum(self, metric: str, legend: str) -> list[Query]:
        return [(f"sum by (model) ({self._sel(metric)})", legend)]

    def fleet_process_rate(self, metric: str, legend: str) -> list[Query]:
        return [(self._sum_rate(metric), legend)]

    # segments ---------------------------------------------------------------------------------
    def segment_variable(self) -> Json:
        query = f'label_values(mlmon_rows_per_second{{model="$model", {SEGMENT}!=""}}, {SEGMENT})'
        return _query_variable(SEGMENT, "Segment", query, None, multi=True, all_value=".+")

    def _seg(self) -> dict[str, str]:
        # =~: Grafana escapes a multi-value variable's regex characters for it.
        return {f"{SEGMENT}_re": "$segment"}

    def segment_rows(self) -> list[Query]:
        rate = self._rate("mlmon_rows_total", **self._seg())
        return [(f"sum by (model, {SEGMENT}) ({rate})", "rows/s")]

    def segment_error_ratio(self) -> list[Query]:
        errors = f"sum by (model, {SEGMENT}) ({self._rate('mlmon_errors_total', **self._seg())})"
        calls = f"sum by (model, {SEGMENT}) ({self._rate('mlmon_calls_total', **self._seg())})"
        return [(f"({errors} or 0 * {calls}) / {calls}", "error ratio")]

    def segment_quality(self, task: str) -> list[Query]:
        metric, legend, average = _SEGMENT_QUALITY[task]
        labels = {"average": average} if average else {}
        return [(self._sel(metric, **labels, **self._seg()), f"{legend} {{{{instance}}}}")]

    def segment_drift(self) -> list[Query]:
        sel = self._sel("mlmon_feature_drift_psi", **self._seg())
        return [(f"max by (model, {SEGMENT}) ({sel})", "largest feature PSI")]

    def alerts_firing(self) -> list[Query]:
        return [(f"sum by (model) ({self._sel('mlmon_alerts_firing')})", "rules firing")]

    def alert_by_rule(self) -> list[Query]:
        return [(f"max by (model, rule) ({self._sel('mlmon_alert_firing')})", "{{rule}}")]
