"""The dashboard's rows: which panels each holds, with which queries and units."""

from __future__ import annotations

from mlmon.export.grafana._common import _GRID_WIDTH, _LATENCY_QUANTILES, Query, _pct
from mlmon.export.grafana._graphite import _Graphite
from mlmon.export.grafana._model import _QUALITY_BY_TASK, _Builder
from mlmon.export.grafana._prometheus import _Prometheus
from mlmon.export.grafana._queries import _Queries


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


def _quality_row(b: _Builder, task: str, positive: str = "1") -> None:
    q = b.q
    metrics, average = _QUALITY_BY_TASK[task]
    b.row("Quality")
    what = "Precision / recall / F1" if task != "regression" else "MAE / RMSE"
    if average:
        what += f" ({average} average)"
    fleet = q.fleet_quality(task, positive)
    b.timeseries(
        f"Fleet {what[0].lower()}{what[1:]}" if task != "regression" else f"Fleet {what}",
        fleet,
        unit="percentunit" if task != "regression" else "none",
        description=_FLEET_QUALITY_DOC[task]
        + (" " + _FLEET_RANGE_DOC[q.datasource_type] if fleet else ""),
        w=12,
        ratio=task != "regression",
    )
    b.timeseries(
        what,
        q.quality(metrics, average),
        unit="percentunit" if task != "regression" else "none",
        description="Over each process's labelled predictions in its window: spot the odd "
        "replica. Never average these across processes; the fleet panel sums the counters.",
        w=12 if fleet else 24,
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
        b.timeseries(
            "Estimated F1 and its band",
            q.estimate_band(),
            unit="percentunit",
            description="The 95% band is the sampling error of the realized F1 at the window's "
            "size if the reference calibration holds. With a calibrated reference, "
            "mlmon_estimate_unreliable is 1 when over 1% of scores lie outside the reference's "
            "range (the calibration is extrapolated there).",
            ratio=True,
        )
        b.timeseries(
            "ROC AUC, PR AUC and calibration (from labels)",
            q.score_quality(),
            unit="percentunit",
            description="Over each process's labelled scores in its window; the estimated ROC AUC "
            "is from scores before labels. Calibration error: mean gap between score and share "
            "of positives over ten score bins (0 = calibrated).",
            ratio=True,
        )
    if task == "multiclass":
        b.timeseries(
            "Top-k accuracy and macro ROC / PR AUC (from labels)",
            _top_k_accuracy(q) + q.quality(("mlmon_roc_auc", "mlmon_pr_auc"), "macro"),
            unit="percentunit",
            description="Over each process's labelled probability rows in its window: the share "
            "whose true class is among the k most probable, and the one-vs-rest AUCs averaged "
            "over the classes. Absent for models that return class labels.",
            w=24,
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
        description="Labels joined to a prediction, labels matching none (unmatched) and "
        "labels after the ttl (expired), summed over processes from counters.",
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


def _top_k_accuracy(q: _Queries) -> list[Query]:
    """``mlmon_top_k_accuracy``: one series per ``k`` and process."""
    if isinstance(q, _Prometheus):
        return [(q._sel("mlmon_top_k_accuracy"), "top-{{k}} accuracy {{instance}}")]
    if isinstance(q, _Graphite):
        path = q._gauge("mlmon_top_k_accuracy", "*")
        nodes = [*q._process_nodes(), q._metric_node() + 1]
        return [(f"aliasByNode({path}, {', '.join(str(n) for n in nodes)})", "")]
    return []


_FLEET_QUALITY_DOC = {
    "binary": "From the cumulative confusion cells (mlmon_confusion_total) summed over "
    "processes: precision = TP / predicted positive, recall = TP / actual positive, "
    "F1 = 2 TP / (predicted + actual positive). Exact for the fleet, unlike any average of "
    "per-process precisions.",
    "multiclass": "From the cumulative confusion cells summed over processes: per class "
    "precision, recall and F1, then their mean over the classes where each is defined (the "
    "macro average, as the per-process gauges).",
    "regression": "From the cumulative error sums summed over processes: MAE = sum |error| / "
    "labels, RMSE = sqrt(sum error² / labels). Exact for the fleet.",
}

_FLEET_RANGE_DOC = {
    "prometheus": "Over the last 5 minutes (increase of each process's counters, summed).",
    "graphite": "Over the last 5 minutes (movingSum of the summed per-second rates).",
}


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
    b.timeseries(
        "Fleet drift (PSI) by feature",
        q.fleet_feature_psi(),
        unit="none",
        description="PSI of every process's values pooled, over the last 5 minutes: the bin "
        "counts (mlmon_feature_bin_total) summed over processes against the reference's "
        "shares (mlmon_feature_reference_ratio), both floored at 1e-4 as mlmon does.",
        w=24,
    )


def _segments_row(b: _Builder, task: str) -> None:
    """Small multiples: each panel repeated per value of the ``segment`` variable."""
    q = b.q
    b.row("Segments")
    b.timeseries(
        "Rows / s · $segment",
        q.segment_rows(),
        unit="reqps",
        description="The segment's predictions (rows) per second, summed over processes from "
        "the counters (mlmon_rows_total{segment}).",
        h=6,
        repeat="segment",
    )
    b.timeseries(
        "Error ratio · $segment",
        q.segment_error_ratio(),
        unit="percentunit",
        description="The segment's errors / calls over every process, both from counters.",
        h=6,
        ratio=True,
        repeat="segment",
    )
    if task != "none":
        b.timeseries(
            _SEGMENT_QUALITY_TITLE[task] + " · $segment",
            q.segment_quality(task),
            unit="percentunit" if task != "regression" else "none",
            description="The segment's window value over its labelled predictions, per process.",
            h=6,
            ratio=task != "regression",
            repeat="segment",
        )
    b.timeseries(
        "Largest feature drift (PSI) · $segment",
        q.segment_drift(),
        unit="none",
        description="The highest PSI of any feature in the segment, the maximum over processes "
        "(0.1: watch, 0.2: drift); against the segment's own reference where it has one "
        "(mlmon_segment_reference{segment} = 1), else against the overall one.",
        h=6,
        repeat="segment",
    )


_SEGMENT_QUALITY_TITLE = {"binary": "F1", "multiclass": "F1 (macro)", "regression": "MAE"}


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


def _fleet_row(b: _Builder, task: str, features: bool) -> None:
    """The fleet snapshot's window values (merged by the leader) and the fleet's health."""
    q = b.q
    merged = (
        "From the fleet snapshot: every process's window merged by the fleet's leader and the "
        "value computed on the merged counts (never an average of the processes' values)."
    )
    b.row("Fleet")
    b.stat(
        "Processes merged",
        q.fleet_value("mlmon_fleet_processes", "processes"),
        unit="short",
        description="Live processes merged into the last fleet snapshot (mlmon_fleet_processes).",
        w=8,
    )
    b.stat(
        "Leaders",
        q.fleet_process_sum("mlmon_fleet_leader", "leaders"),
        unit="short",
        description="Processes holding the fleet's lease (mlmon_fleet_leader summed over the "
        "processes): 1 is right; 0 means no fleet snapshot is being made (the store is down or "
        "no process has Fleet); 2 is a handover in progress.",
        steps=((None, "red"), (1, "green"), (2, "orange")),
        w=8,
    )
    b.stat(
        "Processes reaching the store",
        q.fleet_process_sum("mlmon_fleet_up", "up"),
        unit="short",
        description="Processes whose last publish of their state succeeded (mlmon_fleet_up "
        "summed). Fewer than the processes reporting: some are left out of the fleet.",
        w=8,
    )
    if task != "none":
        metrics, average = _QUALITY_BY_TASK[task]
        labels = {"average": average} if average else {}
        b.timeseries(
            "Fleet snapshot: " + ("precision / recall / F1" if task != "regression" else "MAE / RMSE"),
            [x for m in metrics for x in q.fleet_value(m, m.removeprefix("mlmon_"), **labels)],
            unit="percentunit" if task != "regression" else "none",
            description=merged + " Over the window of labelled predictions.",
            w=12,
            ratio=task != "regression",
        )
    b.timeseries(
        "Fleet snapshot: latency",
        [x for qn in _LATENCY_QUANTILES for x in q.fleet_value("mlmon_latency_seconds", f"p{_pct(qn)}", quantile=qn)],
        unit="s",
        description=merged + " The latency sketches are merged, so these are the fleet's "
        "quantiles within the sketch's error (not the maximum over processes).",
        w=12 if task != "none" else 24,
    )
    b.timeseries(
        "Fleet snapshot: calls / s",
        q.fleet_value("mlmon_calls_per_second", "calls/s") + q.fleet_value("mlmon_rows_per_second", "rows/s"),
        unit="reqps",
        description=merged,
    )
    b.timeseries(
        "Fleet snapshot: error ratio and availability",
        q.fleet_value("mlmon_error_ratio", "error ratio") + q.fleet_value("mlmon_availability_ratio", "availability"),
        unit="percentunit",
        description=merged,
        ratio=True,
    )
    b.timeseries(
        "Fleet snapshot: output mean and variance",
        q.fleet_value("mlmon_output_mean", "mean") + q.fleet_value("mlmon_output_variance", "variance"),
        unit="none",
        description=merged + " The variance is the pooled variance of every process's outputs.",
    )
    psi = q.fleet_value("mlmon_output_drift_psi", "outputs")
    if features:
        psi += q.fleet_by_label("mlmon_feature_drift_psi", "feature", "$feature")
    b.timeseries(
        "Fleet snapshot: drift (PSI)",
        psi,
        unit="none",
        description=merged + " PSI of the merged bin counts against the reference (0.1: watch, "
        "0.2: drift), for the outputs and each feature.",
        w=12,
    )
    b.timeseries(
        "Leader by process",
        q.fleet_per_process("mlmon_fleet_leader", "leader"),
        unit="short",
        description="1 while the process holds the fleet's lease: a handover shows as the 1 "
        "moving from one process to another (mlmon_fleet_takeovers_total counts them).",
        w=6,
    )
    b.timeseries(
        "Store reachable by process",
        q.fleet_per_process("mlmon_fleet_up", "up"),
        unit="short",
        description="mlmon_fleet_up per process: 0 while its state cannot be published (the "
        "process keeps its own snapshot and alerts; the fleet leaves it out).",
        w=6,
    )
    b.timeseries(
        "States rejected / s by reason",
        q.fleet_counter_by_label("mlmon_fleet_states_rejected_total", "reason"),
        unit="reqps",
        description="States the leader did not merge (corrupt, size, version, config, model), "
        "from the fleet snapshot's counter. No series: nothing was ever rejected.",
    )
    b.timeseries(
        "Publishes refused and takeovers / s",
        q.fleet_process_rate("mlmon_fleet_refused_total", "refused/s")
        + q.fleet_process_rate("mlmon_fleet_takeovers_total", "takeovers/s"),
        unit="reqps",
        description="Publishes refused because max_processes states were live, and lease "
        "takeovers, summed over the processes from their counters.",
    )
    b.timeseries(
        "Merge time",
        q.fleet_value("mlmon_fleet_merge_seconds", "merge"),
        unit="s",
        description="Time the leader took to merge the fleet snapshot (mlmon_fleet_merge_seconds).",
    )
