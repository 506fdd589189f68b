"""The metric catalog: every canonical metric name mlmon emits, with its kind, unit and labels.

:data:`CATALOG` is re-exported by :mod:`mlmon.snapshot` (and :mod:`mlmon`); import it from there.

>>> CATALOG["mlmon_calls_total"].kind
'counter'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

__all__ = ["ANY_SERIES_LABELS", "CATALOG", "Kind", "Labels", "MetricInfo"]

Kind = Literal["counter", "gauge"]

ANY_SERIES_LABELS = frozenset({"segment"})
"""Labels any series may carry besides its own: a segment's series are the monitor's, labelled
``segment`` (docs/segments.md)."""
Labels = tuple[tuple[str, str], ...]


@attrs.frozen(slots=True)
class MetricInfo:
    """What a canonical metric name means.

    Attributes:
        name: canonical name, Prometheus style (``mlmon_calls_total``).
        kind: ``"counter"`` (cumulative, monotonic within a process) or ``"gauge"``.
        unit: base unit (``seconds``, ``bytes``, ``ratio``, ``1`` for counts).
        labels: the extra labels its samples may carry, besides model/version/instance.
        help: one line for HELP texts and docs.
        family: the histogram family a ``_bucket``/``_sum``/``_count`` sample belongs to.
    """

    name: str
    kind: Kind
    unit: str
    labels: tuple[str, ...]
    help: str
    family: str | None = None


def _m(
    name: str, kind: Kind, unit: str, help: str, labels: tuple[str, ...] = (), family: str | None = None
) -> MetricInfo:
    return MetricInfo(name=name, kind=kind, unit=unit, labels=labels, help=help, family=family)


_CATALOG_LIST = [
    # service
    _m("mlmon_calls_total", "counter", "1", "Calls of the tracked predict function."),
    _m("mlmon_errors_total", "counter", "1", "Calls that raised, by exception type.", ("error_type",)),
    _m("mlmon_rows_total", "counter", "1", "Prediction rows (a batch of n rows counts n)."),
    _m("mlmon_slow_calls_total", "counter", "1", "Calls slower than the latency budget."),
    _m("mlmon_calls_per_second", "gauge", "1/s", "Calls per second over the window."),
    _m("mlmon_rows_per_second", "gauge", "1/s", "Rows per second over the window."),
    _m("mlmon_error_ratio", "gauge", "ratio", "Share of the window's calls that raised."),
    _m(
        "mlmon_availability_ratio",
        "gauge",
        "ratio",
        "Share of the window's calls that succeeded within the latency budget.",
    ),
    _m("mlmon_up", "gauge", "1", "1 while the monitor is running in this process."),
    _m("mlmon_inflight_calls", "gauge", "1", "Calls started and not yet finished."),
    _m(
        "mlmon_oldest_inflight_seconds",
        "gauge",
        "seconds",
        "Age of the oldest call still in flight (0 when none).",
    ),
    # latency
    # The window quantiles keep this name in snapshots, StatsD, Graphite, JSON lines and the
    # report; where a histogram family owns mlmon_latency_seconds (Prometheus text, the
    # prometheus_client bridge, OTLP) they are mlmon_latency_window_seconds (naming.PROMETHEUS_RENAMES,
    # docs/metrics.md "Names by backend").
    _m(
        "mlmon_latency_seconds",
        "gauge",
        "seconds",
        "Latency quantiles over the window (quantile=\"1\" is the maximum).",
        ("quantile",),
    ),
    _m("mlmon_latency_seconds_mean", "gauge", "seconds", "Mean latency over the window."),
    _m("mlmon_time_to_first_item_seconds", "gauge", "seconds", "Time to the first item of streaming calls (generator predicts), over the window.", ("quantile",)),
    _m("mlmon_stream_items_mean", "gauge", "1", "Items per streaming call, over the window."),
    _m("mlmon_stream_items_total", "counter", "1", "Items streamed by streaming calls."),
    _m(
        "mlmon_latency_seconds_bucket",
        "counter",
        "1",
        "Cumulative latency histogram: calls with latency <= le.",
        ("le",),
        family="mlmon_latency_seconds",
    ),
    _m(
        "mlmon_latency_seconds_sum",
        "counter",
        "seconds",
        "Cumulative sum of latencies.",
        family="mlmon_latency_seconds",
    ),
    _m(
        "mlmon_latency_seconds_count",
        "counter",
        "1",
        "Cumulative count of timed calls.",
        family="mlmon_latency_seconds",
    ),
    # resources
    _m("mlmon_process_cpu_percent", "gauge", "percent", "CPU of this process since the last flush (100 = one core)."),
    _m("mlmon_process_resident_memory_bytes", "gauge", "bytes", "Resident set size of this process."),
    _m("mlmon_process_threads", "gauge", "1", "Threads of this process."),
    _m("mlmon_process_open_fds", "gauge", "1", "Open file descriptors of this process."),
    _m("mlmon_system_cpu_percent", "gauge", "percent", "System-wide CPU since the last flush."),
    _m("mlmon_system_memory_used_ratio", "gauge", "ratio", "System memory in use."),
    # outputs
    _m("mlmon_output_mean", "gauge", "1", "Mean of model outputs (scores) over the window."),
    _m("mlmon_output_variance", "gauge", "1", "Variance of model outputs over the window."),
    _m("mlmon_output_stddev", "gauge", "1", "Standard deviation of model outputs over the window."),
    _m("mlmon_output", "gauge", "1", "Quantiles of model outputs over the window.", ("quantile",)),
    _m("mlmon_output_count", "gauge", "1", "Valid output values in the window."),
    _m(
        "mlmon_output_class_ratio",
        "gauge",
        "ratio",
        "Share of the window's predictions per predicted class.",
        ("class",),
    ),
    _m("mlmon_output_invalid_total", "counter", "1", "Outputs that were None, NaN, inf, strings or ragged."),
    _m("mlmon_output_drift_psi", "gauge", "1", "PSI of the window's outputs against the reference."),
    _m("mlmon_output_bin_total", "counter", "1", "Finite outputs per fixed bin (scores: deciles of [0, 1]).", ("bin",)),
    _m(
        "mlmon_output_reference_bin_total", "counter", "1",
        "Finite outputs per cell of the reference's output bins.", ("bin",),
    ),
    _m("mlmon_output_reference_ratio", "gauge", "ratio", "The reference's share of outputs per cell.", ("bin",)),
    # quality
    _m("mlmon_precision", "gauge", "ratio", "Precision over the window's labelled predictions.", ("class", "average")),
    _m("mlmon_recall", "gauge", "ratio", "Recall over the window's labelled predictions.", ("class", "average")),
    _m("mlmon_f1", "gauge", "ratio", "F1 over the window's labelled predictions.", ("class", "average")),
    _m("mlmon_accuracy", "gauge", "ratio", "Accuracy over the window's labelled predictions."),
    _m("mlmon_mae", "gauge", "1", "Mean absolute error over the window's labelled predictions."),
    _m("mlmon_rmse", "gauge", "1", "Root mean squared error over the window's labelled predictions."),
    _m("mlmon_mean_error", "gauge", "1", "Mean signed error (prediction - label) over the window."),
    _m(
        "mlmon_confusion_total", "counter", "1",
        "Joined labels per (true class, predicted class) pair.", ("actual", "predicted"),
    ),
    _m("mlmon_regression_labels_total", "counter", "1", "Joined labels with a finite error (regression)."),
    _m("mlmon_regression_abs_error_sum_total", "counter", "1", "Sum of absolute errors of joined labels."),
    _m("mlmon_regression_squared_error_sum_total", "counter", "1", "Sum of squared errors of joined labels."),
    _m("mlmon_regression_error_sum_total", "counter", "1", "Sum of signed errors (prediction - label)."),
    _m("mlmon_roc_auc", "gauge", "ratio", "ROC AUC of the window's labelled scores (binary; multiclass one-vs-rest per class and macro; binned, see mlmon_roc_auc_error_bound).", ("class", "average")),
    _m("mlmon_roc_auc_error_bound", "gauge", "ratio", "Largest possible distance of mlmon_roc_auc from the exact AUC of the same scores.", ("class", "average")),
    _m("mlmon_pr_auc", "gauge", "ratio", "Average precision (area under the precision-recall curve) of the window's labelled scores (multiclass: one-vs-rest per class and macro).", ("class", "average")),
    _m("mlmon_top_k_accuracy", "gauge", "ratio", "Share of the window's labelled probability rows whose true class is among the k most probable (multiclass).", ("k",)),
    _m("mlmon_probability_rows_invalid_total", "counter", "1", "Multiclass probability rows not kept for top-k and AUCs: values outside [0, 1] or not summing to 1."),
    _m("mlmon_log_loss", "gauge", "1", "Mean log loss of the window's labelled scores (binary, scores in [0, 1])."),
    _m("mlmon_brier_score", "gauge", "1", "Mean squared difference of score and label over the window (binary, scores in [0, 1])."),
    _m("mlmon_expected_calibration_error", "gauge", "ratio", "Expected calibration error over 10 score bins of width 0.1 (binary, scores in [0, 1])."),
    _m("mlmon_calibration_rows", "gauge", "1", "Labelled scores in each calibration bin (bin 00 = [0, 0.1), .., 09 = [0.9, 1]).", ("bin",)),
    _m("mlmon_calibration_predicted", "gauge", "ratio", "Mean score in each calibration bin.", ("bin",)),
    _m("mlmon_calibration_observed", "gauge", "ratio", "Share of positive labels in each calibration bin.", ("bin",)),
    _m("mlmon_label_support", "gauge", "1", "Labels of each true class in the window.", ("class",)),
    _m("mlmon_estimated_precision", "gauge", "ratio", "Precision expected from the (reference-calibrated) scores, before labels.", ("class", "average")),
    _m("mlmon_estimated_precision_lower", "gauge", "ratio", "Lower end of the 95% band of mlmon_estimated_precision.", ("class", "average")),
    _m("mlmon_estimated_precision_upper", "gauge", "ratio", "Upper end of the 95% band of mlmon_estimated_precision.", ("class", "average")),
    _m("mlmon_estimated_recall", "gauge", "ratio", "Recall expected from the (reference-calibrated) scores, before labels.", ("class", "average")),
    _m("mlmon_estimated_recall_lower", "gauge", "ratio", "Lower end of the 95% band of mlmon_estimated_recall.", ("class", "average")),
    _m("mlmon_estimated_recall_upper", "gauge", "ratio", "Upper end of the 95% band of mlmon_estimated_recall.", ("class", "average")),
    _m("mlmon_estimated_f1", "gauge", "ratio", "F1 expected from the (reference-calibrated) scores, before labels.", ("class", "average")),
    _m("mlmon_estimated_f1_lower", "gauge", "ratio", "Lower end of the 95% band of mlmon_estimated_f1.", ("class", "average")),
    _m("mlmon_estimated_f1_upper", "gauge", "ratio", "Upper end of the 95% band of mlmon_estimated_f1.", ("class", "average")),
    _m("mlmon_estimated_accuracy", "gauge", "ratio", "Accuracy expected from the (reference-calibrated) scores, before labels."),
    _m("mlmon_estimated_accuracy_lower", "gauge", "ratio", "Lower end of the 95% band of mlmon_estimated_accuracy."),
    _m("mlmon_estimated_accuracy_upper", "gauge", "ratio", "Upper end of the 95% band of mlmon_estimated_accuracy."),
    _m("mlmon_estimated_roc_auc", "gauge", "ratio", "ROC AUC expected from the (reference-calibrated) scores, before labels.", ("class", "average")),
    _m("mlmon_estimated_roc_auc_lower", "gauge", "ratio", "Lower end of the 95% band of mlmon_estimated_roc_auc.", ("class", "average")),
    _m("mlmon_estimated_roc_auc_upper", "gauge", "ratio", "Upper end of the 95% band of mlmon_estimated_roc_auc.", ("class", "average")),
    _m("mlmon_estimate_out_of_range_ratio", "gauge", "ratio", "Share of the window's scores outside the calibration reference's score range."),
    _m("mlmon_estimate_unreliable", "gauge", "1", "1 when more than 1% of the window's scores lie outside the reference's range, else 0."),
    _m("mlmon_labels_total", "counter", "1", "Labels joined to a prediction."),
    _m("mlmon_labels_window", "gauge", "1", "Labels joined in the window (the sample size of quality metrics)."),
    _m("mlmon_labels_unmatched_total", "counter", "1", "Labels whose id matched no pending prediction."),
    _m("mlmon_labels_expired_total", "counter", "1", "Labels that arrived after the join ttl."),
    _m("mlmon_labels_duplicate_total", "counter", "1", "Second and later labels for the same id."),
    _m("mlmon_labels_evicted_total", "counter", "1", "Pending predictions evicted from a full join store."),
    _m("mlmon_labels_invalid_total", "counter", "1", "Labels that were NaN, None or of an unknown class."),
    _m("mlmon_label_coverage_ratio", "gauge", "ratio", "Share of the window's predictions that got a label."),
    _m("mlmon_label_delay_seconds", "gauge", "seconds", "Label delay quantiles over the window.", ("quantile",)),
    _m("mlmon_pending_predictions", "gauge", "1", "Predictions waiting for a label in the join store."),
    # features
    _m("mlmon_feature_missing_ratio", "gauge", "ratio", "Share of rows with the feature missing or invalid.", ("feature",)),
    _m("mlmon_feature_mean", "gauge", "1", "Mean of the feature over the window.", ("feature",)),
    _m("mlmon_feature_variance", "gauge", "1", "Variance of the feature over the window.", ("feature",)),
    _m("mlmon_feature_min", "gauge", "1", "Minimum of the feature over the window.", ("feature",)),
    _m("mlmon_feature_max", "gauge", "1", "Maximum of the feature over the window.", ("feature",)),
    _m(
        "mlmon_feature_out_of_range_ratio",
        "gauge",
        "ratio",
        "Share of values outside the reference range.",
        ("feature",),
    ),
    _m("mlmon_feature_unseen_ratio", "gauge", "ratio", "Share of categories unseen in the reference.", ("feature",)),
    _m("mlmon_feature_drift_psi", "gauge", "1", "Population stability index against the reference.", ("feature",)),
    _m("mlmon_feature_drift_js", "gauge", "1", "Jensen-Shannon distance (base 2) against the reference.", ("feature",)),
    _m("mlmon_feature_drift_ks", "gauge", "1", "Kolmogorov-Smirnov statistic against the reference.", ("feature",)),
    _m("mlmon_feature_drift_wasserstein", "gauge", "1", "Normalised Wasserstein distance on bins.", ("feature",)),
    _m("mlmon_feature_drift_pvalue", "gauge", "1", "p-value of the drift test (KS or chi-squared).", ("feature",)),
    _m("mlmon_feature_invalid_rows_total", "counter", "1", "Rows of calls whose features could not be read at all."),
    _m("mlmon_feature_unknown_keys_total", "counter", "1", "Feature values given under names that are not features."),
    _m("mlmon_feature_errors_total", "counter", "1", "Drains whose features mlmon failed to process (a bug)."),
    _m("mlmon_feature_bin_total", "counter", "1", "Valid values per cell of the reference's bins.", ("feature", "bin")),
    _m(
        "mlmon_feature_reference_ratio", "gauge", "ratio",
        "The reference's share of values per cell.", ("feature", "bin"),
    ),
    _m("mlmon_feature_drift_status", "gauge", "1", "0 ok, 1 warning, 2 drift (effect-size decision).", ("feature",)),
    # outcomes
    _m("mlmon_outcome_total", "counter", "1", "Downstream outcomes logged (count or summed value).", ("outcome",)),
    _m("mlmon_outcome_rate", "gauge", "1", "Outcomes per prediction in the window.", ("outcome",)),
    # segments
    _m("mlmon_segments", "gauge", "1", "Segments tracked now, the overflow one included."),
    _m("mlmon_segments_max", "gauge", "1", "The most segments tracked at once (max_segments)."),
    _m(
        "mlmon_segment_overflow_rows_total", "counter", "1",
        "Rows put in the segment _other because max_segments segments were tracked.",
    ),
    _m("mlmon_segment_invalid_total", "counter", "1", "Rows whose segment value had no name (put in _other)."),
    _m("mlmon_segment_evictions_total", "counter", "1", "Segments replaced by a busier value from the overflow."),
    _m(
        "mlmon_segment_reference", "gauge", "1",
        "1 when the segment's drift is against its own reference profile, 0 against the overall one.", ("segment",),
    ),
    # alerts
    _m("mlmon_alert_firing", "gauge", "1", "1 while the rule is firing.", ("rule",)),
    _m("mlmon_alerts_firing", "gauge", "1", "Rules firing."),
    _m(
        "mlmon_alert_notifications_total", "counter", "1",
        "Alert notifications by sink and outcome (sent, failed, redirected, timeout, dropped).", ("sink", "outcome"),
    ),
    # self
    _m("mlmon_dropped_total", "counter", "1", "Records dropped because a bounded buffer was full.", ("buffer",)),
    _m("mlmon_internal_errors_total", "counter", "1", "Failures inside mlmon, by stage.", ("stage",)),
    _m("mlmon_emit_errors_total", "counter", "1", "Emitter failures.", ("emitter",)),
    _m("mlmon_emit_seconds", "gauge", "seconds", "Time the emitter took on its last emit.", ("emitter",)),
    # shared prediction store
    _m("mlmon_store_up", "gauge", "1", "1 when the last sync with the shared prediction store succeeded."),
    _m("mlmon_store_errors_total", "counter", "1", "Failed shared-store operations, by operation.", ("operation",)),
    _m("mlmon_store_invalid_ids_total", "counter", "1", "Predictions whose ids the shared store cannot key.", ("buffer",)),
    _m("mlmon_store_buffered_bytes", "gauge", "bytes", "Bytes waiting for the next shared-store sync.", ("buffer",)),
    _m("mlmon_store_buffered_items", "gauge", "1", "Items waiting for the next shared-store sync.", ("buffer",)),
    _m("mlmon_store_sync_seconds", "gauge", "seconds", "Time the last shared-store sync took."),
    # fleet view (Monitor(fleet=Fleet(...)))
    _m("mlmon_fleet_up", "gauge", "1", "1 when the last publish to (and, as leader, read of) the fleet's states succeeded."),
    _m("mlmon_fleet_leader", "gauge", "1", "1 while this process holds the fleet's lease (and makes the fleet snapshot)."),
    _m("mlmon_fleet_state_bytes", "gauge", "bytes", "Size of the state this process published last."),
    _m("mlmon_fleet_refused_total", "counter", "1", "Publishes refused because the fleet had max_processes live states."),
    _m("mlmon_fleet_takeovers_total", "counter", "1", "Times this process took the fleet's lease."),
    _m("mlmon_fleet_processes", "gauge", "1", "Live processes merged into the fleet snapshot."),
    _m("mlmon_fleet_states_rejected_total", "counter", "1", "States not merged, by reason (corrupt, size, version, config, model).", ("reason",)),
    _m("mlmon_fleet_merge_seconds", "gauge", "seconds", "Time the leader took to merge the fleet snapshot."),
    # one endpoint per host (mlmon.fleet.host)
    _m("mlmon_host_workers", "gauge", "1", "Worker states merged by the host endpoint's scrape, by state (live, stale, ended).", ("state",)),
    _m("mlmon_host_retired_total", "counter", "1", "Ended workers' states folded into the host's archive."),
    _m("mlmon_host_rejected_total", "counter", "1", "Host state files removed unmerged, by reason.", ("reason",)),
    _m("mlmon_host_skipped_states", "gauge", "1", "States the host endpoint's scrape left out, by reason.", ("reason",)),
    _m("mlmon_host_scrape_seconds", "gauge", "seconds", "Time the host endpoint's previous scrape took."),
]

CATALOG: Mapping[str, MetricInfo] = {m.name: m for m in _CATALOG_LIST}
"""Every canonical metric name mlmon emits, with its kind, unit, labels and meaning."""
