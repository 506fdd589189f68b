"""The report's sections: which charts each holds, and which metrics each chart draws."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import attrs

from mlmon.report import _svg
from mlmon.report._format import _g3


def qname(q: str) -> str:
    try:
        v = float(q)
    except ValueError:
        return q
    if v >= 1.0:
        return "max"
    if v <= 0.0:
        return "min"
    return "p" + _g3(v * 100)


def qsort(labels: Mapping[str, str]) -> float:
    try:
        return float(labels.get("quantile", "nan"))
    except ValueError:
        return math.nan


# ================================================================================== chart specs


@attrs.frozen(slots=True)
class Line:
    metric: str
    match: tuple[tuple[str, str], ...] = ()
    legend: str = ""
    dashed: bool = False
    rate: bool = False
    color: str | None = None  # lines with the same key share a colour (realized vs estimated)


@attrs.frozen(slots=True)
class Chart:
    id: str
    title: str
    fmt: Callable[[float], str]
    lines: tuple[Line, ...]
    y_cap: float | None = None
    hide_if_zero: bool = False
    y_scale: str = "linear"


def _q(metric: str, q: str, legend: str) -> Line:
    return Line(metric, (("quantile", q),), legend)


QUALITY_LINES = (
    Line("mlmon_precision", (), "precision", color="p"),
    Line("mlmon_recall", (), "recall", color="r"),
    Line("mlmon_f1", (), "F1", color="f"),
    Line("mlmon_precision", (("average", "macro"),), "precision (macro)", color="p"),
    Line("mlmon_recall", (("average", "macro"),), "recall (macro)", color="r"),
    Line("mlmon_f1", (("average", "macro"),), "F1 (macro)", color="f"),
    Line("mlmon_accuracy", (), "accuracy", color="a"),
)
"""Precision, recall, F1 (binary, and macro averages) and accuracy: a process's quality chart
and the fleet's."""

SECTIONS: tuple[tuple[str, str, str, tuple[Chart, ...]], ...] = (
    (
        "service",
        "Service health",
        "No service metrics (calls, latency) in this log.",
        (
            Chart("calls", "Calls per second", _svg.fmt_number, (Line("mlmon_calls_per_second", (), "calls/s"),)),
            Chart("rows", "Predictions (rows) per second", _svg.fmt_number, (Line("mlmon_rows_per_second", (), "rows/s"),)),
            Chart("error-ratio", "Error ratio", _svg.fmt_ratio, (Line("mlmon_error_ratio", (), "error ratio"),), y_cap=1.0),
            Chart("availability", "Availability (succeeded within the latency budget)", _svg.fmt_ratio,
                   (Line("mlmon_availability_ratio", (), "availability"),), y_cap=1.0),
            Chart("latency", "Latency quantiles", _svg.fmt_seconds, (
                _q("mlmon_latency_seconds", "0.5", "p50"),
                _q("mlmon_latency_seconds", "0.9", "p90"),
                _q("mlmon_latency_seconds", "0.99", "p99"),
                _q("mlmon_latency_seconds", "1", "max"),
            ), y_scale="auto"),
            Chart("errors-by-type", "Errors per second, by type", _svg.fmt_number,
                   (Line("mlmon_errors_total", (("error_type", "*"),), "{error_type}", rate=True),)),
            Chart("slow", "Slow calls per second (over the latency budget)", _svg.fmt_number,
                   (Line("mlmon_slow_calls_total", (), "slow calls/s", rate=True),)),
            Chart("inflight", "Calls in flight", _svg.fmt_number, (Line("mlmon_inflight_calls", (), "in flight"),)),
            Chart("oldest-inflight", "Oldest call in flight", _svg.fmt_seconds,
                   (Line("mlmon_oldest_inflight_seconds", (), "oldest in flight"),)),
        ),
    ),
    (
        "resources",
        "Resources",
        "No resource metrics (CPU, memory, threads, file descriptors) in this log.",
        (
            Chart("cpu", "CPU (100% = one core)", _svg.fmt_percent, (
                Line("mlmon_process_cpu_percent", (), "process"),
                Line("mlmon_system_cpu_percent", (), "system", dashed=True),
            )),
            Chart("rss", "Resident memory", _svg.fmt_bytes, (Line("mlmon_process_resident_memory_bytes", (), "RSS"),)),
            Chart("threads-fds", "Threads and open file descriptors", _svg.fmt_number, (
                Line("mlmon_process_threads", (), "threads"),
                Line("mlmon_process_open_fds", (), "open fds"),
            )),
            Chart("system-memory", "System memory in use", _svg.fmt_ratio,
                   (Line("mlmon_system_memory_used_ratio", (), "used"),), y_cap=1.0),
        ),
    ),
    (
        "outputs",
        "Model outputs",
        "No output metrics in this log (the tracked function's outputs were not recorded).",
        (
            Chart("output-quantiles", "Output mean and quantiles", _svg.fmt_number, (
                Line("mlmon_output", (("quantile", "*"),), "{q}"),
                Line("mlmon_output_mean", (), "mean", dashed=True),
            )),
            Chart("output-variance", "Output variance", _svg.fmt_number, (Line("mlmon_output_variance", (), "variance"),)),
            Chart("class-ratio", "Predicted class ratios", _svg.fmt_ratio,
                   (Line("mlmon_output_class_ratio", (("class", "*"),), "class {class}"),), y_cap=1.0),
            Chart("output-psi", "Output drift (PSI against the reference)", _svg.fmt_number,
                   (Line("mlmon_output_drift_psi", (), "output PSI"),)),
            Chart("invalid-outputs", "Invalid outputs per second", _svg.fmt_number,
                   (Line("mlmon_output_invalid_total", (), "invalid/s", rate=True),), hide_if_zero=True),
        ),
    ),
    (
        "quality",
        "Quality",
        "No quality metrics in this log: give the Monitor a task and send true labels with "
        "log_feedback(ids, labels).",
        (
            Chart("quality", "Precision, recall and F1 (from labels)", _svg.fmt_ratio, QUALITY_LINES, y_cap=1.0),
            Chart("estimated", "Estimated (from scores) vs realized (from labels)", _svg.fmt_ratio, (
                Line("mlmon_precision", (), "precision", color="p"),
                Line("mlmon_estimated_precision", (), "estimated precision", dashed=True, color="p"),
                Line("mlmon_recall", (), "recall", color="r"),
                Line("mlmon_estimated_recall", (), "estimated recall", dashed=True, color="r"),
                Line("mlmon_f1", (), "F1", color="f"),
                Line("mlmon_estimated_f1", (), "estimated F1", dashed=True, color="f"),
            ), y_cap=1.0),
            Chart("estimated-more", "Accuracy and ROC AUC: estimated vs realized", _svg.fmt_ratio, (
                Line("mlmon_accuracy", (), "accuracy", color="a"),
                Line("mlmon_estimated_accuracy", (), "estimated accuracy", dashed=True, color="a"),
                Line("mlmon_roc_auc", (), "ROC AUC", color="u"),
                Line("mlmon_estimated_roc_auc", (), "estimated ROC AUC", dashed=True, color="u"),
                Line("mlmon_estimated_f1", (("average", "macro"),), "estimated F1 (macro)", dashed=True, color="f"),
                Line("mlmon_estimated_roc_auc", (("average", "macro"),), "estimated ROC AUC (macro)", dashed=True, color="u"),
                Line("mlmon_roc_auc", (("average", "macro"),), "ROC AUC (macro)", color="u"),
            ), y_cap=1.0),
            Chart("ranking", "Top-k accuracy and macro PR AUC (multiclass, from labels)", _svg.fmt_ratio, (
                Line("mlmon_top_k_accuracy", (("k", "*"),), "top-{k} accuracy"),
                Line("mlmon_pr_auc", (("average", "macro"),), "PR AUC (macro)", dashed=True),
            ), y_cap=1.0),
            Chart("estimate-reliability", "Scores outside the reference's range (estimate unreliable above 1%)",
                  _svg.fmt_ratio, (Line("mlmon_estimate_out_of_range_ratio", (), "out of range"),), hide_if_zero=True),
            Chart("score-quality", "Calibration error, Brier score and log loss (from labels)", _svg.fmt_number, (
                Line("mlmon_expected_calibration_error", (), "expected calibration error"),
                Line("mlmon_brier_score", (), "Brier score"),
                Line("mlmon_log_loss", (), "log loss", dashed=True),
            )),
            Chart("regression", "Regression errors", _svg.fmt_number, (
                Line("mlmon_mae", (), "MAE"),
                Line("mlmon_rmse", (), "RMSE"),
                Line("mlmon_mean_error", (), "mean error", dashed=True),
            )),
            Chart("label-coverage", "Label coverage (share of predictions labelled)", _svg.fmt_ratio,
                   (Line("mlmon_label_coverage_ratio", (), "coverage"),), y_cap=1.0),
            Chart("label-delay", "Label delay", _svg.fmt_seconds,
                   (Line("mlmon_label_delay_seconds", (("quantile", "*"),), "{q}"),), y_scale="auto"),
            Chart("labels-rate", "Labels per second: joined, unmatched, expired", _svg.fmt_number, (
                Line("mlmon_labels_total", (), "labels/s", rate=True),
                Line("mlmon_labels_unmatched_total", (), "unmatched/s", rate=True, dashed=True),
                Line("mlmon_labels_expired_total", (), "expired/s", rate=True, dashed=True),
            )),
        ),
    ),
    (
        "features",
        "Features",
        "No feature metrics in this log: name the features with track(features=...).",
        (
            Chart("missing", "Missing ratio per feature", _svg.fmt_ratio,
                   (Line("mlmon_feature_missing_ratio", (("feature", "*"),), "{feature}"),), y_cap=1.0),
            Chart("out-of-range", "Out-of-reference-range ratio per feature", _svg.fmt_ratio,
                   (Line("mlmon_feature_out_of_range_ratio", (("feature", "*"),), "{feature}"),), y_cap=1.0),
            Chart("unseen", "Unseen categories per feature", _svg.fmt_ratio,
                   (Line("mlmon_feature_unseen_ratio", (("feature", "*"),), "{feature}"),), y_cap=1.0),
        ),
    ),
    (
        "outcomes",
        "Outcomes",
        "No downstream outcomes in this log (log them with log_outcome(name, ids)).",
        (
            Chart("outcome-rate", "Outcomes per prediction", _svg.fmt_number,
                   (Line("mlmon_outcome_rate", (("outcome", "*"),), "{outcome}"),)),
        ),
    ),
)

FLEET_TITLE = "Fleet (merged by the leader)"

FLEET_CHARTS: tuple[Chart, ...] = (
    Chart("fleet-calls", "Fleet calls per second", _svg.fmt_number, (Line("mlmon_calls_per_second", (), "calls/s"),)),
    Chart("fleet-error-ratio", "Fleet error ratio", _svg.fmt_ratio, (Line("mlmon_error_ratio", (), "error ratio"),), y_cap=1.0),
    Chart("fleet-latency", "Fleet latency quantiles (merged sketch)", _svg.fmt_seconds, (
        _q("mlmon_latency_seconds", "0.5", "p50"),
        _q("mlmon_latency_seconds", "0.9", "p90"),
        _q("mlmon_latency_seconds", "0.99", "p99"),
        _q("mlmon_latency_seconds", "1", "max"),
    ), y_scale="auto"),
    Chart("fleet-quality", "Fleet precision, recall and F1 (merged confusion)", _svg.fmt_ratio, QUALITY_LINES, y_cap=1.0),
    Chart("fleet-regression", "Fleet regression errors", _svg.fmt_number, (
        Line("mlmon_mae", (), "MAE"),
        Line("mlmon_rmse", (), "RMSE"),
    )),
    Chart("fleet-output", "Fleet output mean and variance", _svg.fmt_number, (
        Line("mlmon_output_mean", (), "mean"),
        Line("mlmon_output_variance", (), "variance", dashed=True),
    )),
    Chart("fleet-psi", "Fleet drift (PSI of the merged bins)", _svg.fmt_number, (
        Line("mlmon_output_drift_psi", (), "outputs"),
        Line("mlmon_feature_drift_psi", (("feature", "*"),), "{feature}"),
    )),
    Chart("fleet-processes", "Processes merged", _svg.fmt_number, (Line("mlmon_fleet_processes", (), "processes"),)),
    Chart("fleet-rejected", "States rejected per second, by reason", _svg.fmt_number,
          (Line("mlmon_fleet_states_rejected_total", (("reason", "*"),), "{reason}", rate=True),)),
    Chart("fleet-merge", "Merge time", _svg.fmt_seconds, (Line("mlmon_fleet_merge_seconds", (), "merge"),)),
)
"""Charts of the fleet section drawn from the fleet snapshots."""

FLEET_HEALTH: tuple[Chart, ...] = (
    Chart("fleet-leader", "Leader (1 while the process holds the lease)", _svg.fmt_number,
          (Line("mlmon_fleet_leader", (), "leader"),)),
    Chart("fleet-up", "Fleet store reachable, per process", _svg.fmt_number, (Line("mlmon_fleet_up", (), "up"),)),
)
"""Charts of the fleet section drawn from the processes' own snapshots."""

SEGMENT_LABEL = "segment"
"""The label of every per-segment series (the overall series carry none)."""

SEGMENT_METRICS: dict[tuple[str, tuple[str, ...]], str] = {
    ("mlmon_rows_total", ()): "rows_total",
    ("mlmon_rows_per_second", ()): "rows",
    ("mlmon_error_ratio", ()): "errors",
    ("mlmon_f1", ()): "f1",
    ("mlmon_f1", ("average",)): "f1_macro",
    ("mlmon_accuracy", ()): "accuracy",
    ("mlmon_mae", ()): "mae",
    ("mlmon_feature_drift_psi", ("feature",)): "psi",
    ("mlmon_segment_reference", ()): "reference",
}
"""What the segments section reads of the segment-labelled samples: ``(metric, other label
keys)`` -> its short name. The drift of every feature is reduced to the largest per snapshot."""

SEGMENT_BOOKKEEPING = ("mlmon_segments", "mlmon_segments_max", "mlmon_segment_overflow_rows_total", "mlmon_segment_invalid_total")
"""The monitor's segment bookkeeping series (no segment label)."""

DRIFT_NOTE = "No drift metrics in this log: give the Monitor a reference=Reference.from_data(...)."
ALERT_NOTE = "No alert rules in this log: give the Monitor rules=[...]."
SECTION_TITLES = {sid: title for sid, title, _, _ in SECTIONS} | {
    "alerts": "Alert timeline", "drift": "Drift", "fleet": "Fleet", "segments": "Segments",
}  # fmt: skip

USED = frozenset(line.metric for _, _, _, charts in SECTIONS for c in charts for line in c.lines) | {
    "mlmon_calls_total", "mlmon_rows_total", "mlmon_errors_total", "mlmon_slow_calls_total",
    "mlmon_labels_total", "mlmon_feature_drift_psi", "mlmon_feature_drift_status",
    "mlmon_output_drift_psi", "mlmon_alert_firing", "mlmon_alerts_firing",
    "mlmon_internal_errors_total", "mlmon_dropped_total", "mlmon_emit_errors_total",
    "mlmon_calibration_predicted", "mlmon_calibration_observed", "mlmon_output_mean",
} | frozenset(line.metric for c in FLEET_CHARTS + FLEET_HEALTH for line in c.lines) | frozenset(SEGMENT_BOOKKEEPING)  # fmt: skip

PSI_STOPS = ((0.0, "#e8f5e9"), (0.1, "#fde68a"), (0.25, "#f97316"), (0.5, "#991b1b"))
PSI_TICKS = ((0.0, "0"), (0.1, "0.1 moderate"), (0.25, "0.25 significant"), (0.5, "≥ 0.5"))
ALERT_COLORS = {"firing": "#dc2626", "pending": "#f59e0b"}
STATUS = {0: "ok", 1: "warning", 2: "drift"}
EMPTY_CLASS = ' class="empty"'


class Fill(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"

