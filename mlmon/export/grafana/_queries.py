"""The queries of every panel: the interface, one method per panel concept (:class:`Queries`)."""

from __future__ import annotations

from collections.abc import Sequence

from mlmon.export.grafana._common import Json, Query


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

    def fleet_quality(self, task: str, positive: str) -> list[Query]:
        """Fleet quality from the cumulative counters (confusion cells, error sums)."""
        raise NotImplementedError

    def estimated_vs_realized(self) -> list[Query]:
        raise NotImplementedError

    def _gauges(self, metrics: tuple[tuple[str, str], ...]) -> list[Query]:
        """One series per process of each unlabelled gauge ``(metric, legend)``."""
        raise NotImplementedError

    def estimate_band(self) -> list[Query]:
        """The estimated F1 and its 95% band."""
        return self._gauges((
            ("mlmon_estimated_f1", "estimated F1"),
            ("mlmon_estimated_f1_lower", "band low"),
            ("mlmon_estimated_f1_upper", "band high"),
        ))  # fmt: skip

    def score_quality(self) -> list[Query]:
        """ROC AUC (realized and estimated), PR AUC and calibration of the labelled scores."""
        return self._gauges((
            ("mlmon_roc_auc", "ROC AUC"),
            ("mlmon_estimated_roc_auc", "estimated ROC AUC"),
            ("mlmon_pr_auc", "PR AUC"),
            ("mlmon_expected_calibration_error", "calibration error"),
            ("mlmon_brier_score", "Brier score"),
        ))  # fmt: skip

    def label_coverage(self) -> list[Query]:
        raise NotImplementedError

    def labels_rate(self) -> list[Query]:
        raise NotImplementedError

    def label_delay(self) -> list[Query]:
        raise NotImplementedError

    # features
    def feature_worst(self, metric: str) -> list[Query]:
        raise NotImplementedError

    def fleet_feature_psi(self) -> list[Query]:
        """Fleet PSI per feature from the bin counters and the reference ratios."""
        raise NotImplementedError

    # fleet: the fleet snapshot (Monitor(fleet=Fleet(...))) and the processes' fleet health
    def fleet_value(self, metric: str, legend: str, **labels: str) -> list[Query]:
        """A window value of the fleet snapshot, one series (the fleet's, never a process's)."""
        raise NotImplementedError

    def fleet_by_label(self, metric: str, label: str, values: str) -> list[Query]:
        """A labelled window value of the fleet snapshot, one series per label value."""
        raise NotImplementedError

    def fleet_counter_by_label(self, metric: str, label: str) -> list[Query]:
        """Per-second rate of a counter of the fleet snapshot, one series per label value."""
        raise NotImplementedError

    def fleet_per_process(self, metric: str, legend: str) -> list[Query]:
        """A process's own fleet-health gauge, one series per process."""
        raise NotImplementedError

    def fleet_process_sum(self, metric: str, legend: str) -> list[Query]:
        """A fleet-health gauge summed over the processes (the fleet's own series left out)."""
        raise NotImplementedError

    def fleet_process_rate(self, metric: str, legend: str) -> list[Query]:
        """A fleet-health counter's rate summed over the processes."""
        raise NotImplementedError

    # segments: one segment's series ($segment, one value per repeated panel)
    def segment_variable(self) -> Json:
        """The ``segment`` variable: the segment names the model's series carry."""
        raise NotImplementedError

    def segment_rows(self) -> list[Query]:
        """Rows per second of the segment, summed over processes from the counters."""
        raise NotImplementedError

    def segment_error_ratio(self) -> list[Query]:
        """Errors / calls of the segment over every process, from the counters."""
        raise NotImplementedError

    def segment_quality(self, task: str) -> list[Query]:
        """The task's main quality gauge of the segment (F1, F1 macro or MAE), per process."""
        raise NotImplementedError

    def segment_drift(self) -> list[Query]:
        """The largest feature PSI of the segment (over features and processes)."""
        raise NotImplementedError

    # alerts
    def alerts_firing(self) -> list[Query]:
        raise NotImplementedError

    def alert_by_rule(self) -> list[Query]:
        raise NotImplementedError
