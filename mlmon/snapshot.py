"""The read side: :class:`Sample`, :class:`Snapshot` and the metric catalog.

A snapshot is what every emitter and every alert rule sees: a frozen list of samples, each a
canonical metric name from :data:`CATALOG`, its extra labels (identity labels ``model``,
``version`` and ``instance`` live on the snapshot, not on every sample) and a float value.

Counters (``*_total``, ``*_bucket``, ``*_sum``, ``*_count``) are cumulative since the monitor
started in this process; gauges are window-scoped values. Emitters turn counters into deltas
(StatsD) or expose them as they are (Prometheus, Graphite).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import attrs

from mlmon.jsonl_format import parse_record, record_dict

__all__ = [
    "CATALOG",
    "MetricInfo",
    "Sample",
    "Snapshot",
]

Kind = Literal["counter", "gauge"]
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
    _m(
        "mlmon_latency_seconds",
        "gauge",
        "seconds",
        "Latency quantiles over the window (quantile=\"1\" is the maximum).",
        ("quantile",),
    ),
    _m("mlmon_latency_seconds_mean", "gauge", "seconds", "Mean latency over the window."),
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
    # quality
    _m("mlmon_precision", "gauge", "ratio", "Precision over the window's labelled predictions.", ("class", "average")),
    _m("mlmon_recall", "gauge", "ratio", "Recall over the window's labelled predictions.", ("class", "average")),
    _m("mlmon_f1", "gauge", "ratio", "F1 over the window's labelled predictions.", ("class", "average")),
    _m("mlmon_accuracy", "gauge", "ratio", "Accuracy over the window's labelled predictions."),
    _m("mlmon_mae", "gauge", "1", "Mean absolute error over the window's labelled predictions."),
    _m("mlmon_rmse", "gauge", "1", "Root mean squared error over the window's labelled predictions."),
    _m("mlmon_mean_error", "gauge", "1", "Mean signed error (prediction - label) over the window."),
    _m("mlmon_estimated_precision", "gauge", "ratio", "Precision expected from calibrated scores."),
    _m("mlmon_estimated_recall", "gauge", "ratio", "Recall expected from calibrated scores."),
    _m("mlmon_estimated_f1", "gauge", "ratio", "F1 expected from calibrated scores."),
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
    _m("mlmon_feature_drift_status", "gauge", "1", "0 ok, 1 warning, 2 drift (effect-size decision).", ("feature",)),
    # outcomes
    _m("mlmon_outcome_total", "counter", "1", "Downstream outcomes logged (count or summed value).", ("outcome",)),
    _m("mlmon_outcome_rate", "gauge", "1", "Outcomes per prediction in the window.", ("outcome",)),
    # alerts
    _m("mlmon_alert_firing", "gauge", "1", "1 while the rule is firing.", ("rule",)),
    _m("mlmon_alerts_firing", "gauge", "1", "Rules firing."),
    # self
    _m("mlmon_dropped_total", "counter", "1", "Records dropped because a bounded buffer was full.", ("buffer",)),
    _m("mlmon_internal_errors_total", "counter", "1", "Failures inside mlmon, by stage.", ("stage",)),
    _m("mlmon_emit_errors_total", "counter", "1", "Emitter failures.", ("emitter",)),
    _m("mlmon_emit_seconds", "gauge", "seconds", "Time the emitter took on its last emit.", ("emitter",)),
]

CATALOG: Mapping[str, MetricInfo] = {m.name: m for m in _CATALOG_LIST}
"""Every canonical metric name mlmon emits, with its kind, unit, labels and meaning."""


def _labels_key(labels: Mapping[str, Any]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


@attrs.frozen(slots=True)
class Sample:
    """One metric value: a canonical name, its extra labels and a float.

    >>> s = Sample("mlmon_errors_total", (("error_type", "ValueError"),), 3.0)
    >>> s.label("error_type"), s.value, s.kind
    ('ValueError', 3.0, 'counter')
    """

    name: str
    labels: Labels
    value: float

    @property
    def kind(self) -> Kind:
        """``"counter"`` or ``"gauge"``, from the catalog (unknown names are gauges)."""
        info = CATALOG.get(self.name)
        return info.kind if info is not None else "gauge"

    def label(self, key: str) -> str | None:
        """The value of label ``key``, or None."""
        for k, v in self.labels:
            if k == key:
                return v
        return None

    @classmethod
    def make(cls, name: str, value: float, **labels: Any) -> Sample:
        """Build a sample with labels given as keywords (sorted, stringified)."""
        return cls(name, _labels_key(labels), float(value))


@attrs.frozen(slots=True)
class Snapshot:
    """Everything a monitor knows at one instant, as a frozen list of samples.

    Args:
        model: model name (validated by the monitor).
        version: model version, or None.
        instance: process identity, ``host:pid`` by default.
        timestamp: wall-clock time of the snapshot, Unix seconds.
        window: seconds the window-scoped gauges actually cover.
        samples: the metric values.
        alerts: alert events of the last rule evaluation (filled by the alert engine).
        timings: a uniform sample of the raw latencies (seconds) of the calls since the previous
            reporter cycle, for emitters that forward them (StatsD timers); only on reporter
            cycles, and only when an emitter asks for them.
        timings_rate: the share of those calls the sample holds (1.0 when it holds all).

    >>> snap = Snapshot("fraud", "v1", "host:1", 0.0, 60.0, (
    ...     Sample.make("mlmon_calls_total", 10),
    ...     Sample.make("mlmon_errors_total", 2, error_type="ValueError"),
    ...     Sample.make("mlmon_errors_total", 1, error_type="KeyError"),
    ... ))
    >>> snap.get("mlmon_calls_total")
    10.0
    >>> snap.get("mlmon_errors_total", error_type="KeyError")
    1.0
    >>> snap.get("mlmon_precision") is None
    True
    >>> snap.total("mlmon_errors_total")
    3.0
    """

    model: str
    version: str | None
    instance: str
    timestamp: float
    window: float
    samples: tuple[Sample, ...]
    alerts: tuple[Any, ...] = ()
    timings: tuple[float, ...] = ()
    timings_rate: float = 1.0

    def select(self, name: str, **labels: Any) -> list[Sample]:
        """All samples named ``name`` whose labels include ``labels`` (``"*"`` matches any value)."""
        want = {str(k): str(v) for k, v in labels.items()}
        out = []
        for s in self.samples:
            if s.name != name:
                continue
            have = dict(s.labels)
            if all(k in have and (v == "*" or have[k] == v) for k, v in want.items()):
                out.append(s)
        return out

    def get(self, name: str, **labels: Any) -> float | None:
        """The value of the sample with exactly these labels, or None when absent.

        Without labels, returns the unlabelled sample if there is one, else None.
        """
        key = _labels_key(labels)
        for s in self.samples:
            if s.name == name and s.labels == key:
                return s.value
        return None

    def total(self, name: str, **labels: Any) -> float:
        """Sum of the values of all samples matching :meth:`select` (0.0 when none)."""
        return math.fsum(s.value for s in self.select(name, **labels))

    def names(self) -> set[str]:
        """The distinct metric names present."""
        return {s.name for s in self.samples}

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, one line of the JSON-lines format (:mod:`mlmon.jsonl_format`).

        Non-finite values become None.
        """
        return record_dict(
            self.model,
            self.version,
            self.instance,
            self.timestamp,
            self.window,
            ((s.name, dict(s.labels), s.value) for s in self.samples),
            self.alerts,
        )

    def to_json(self) -> str:
        """One compact JSON line (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """Inverse of :meth:`to_dict` (alerts are kept as plain dicts; a None value is NaN).

        Validation is that of :func:`mlmon.jsonl_format.parse_record`; a dict without the
        ``"mlmon"`` format field is read as format version 1.

        Raises:
            mlmon.jsonl_format.LineError: ``data`` is not a valid snapshot (a ``ValueError``
                naming what is wrong), or was written by a newer mlmon.

        >>> Snapshot.from_dict({"model": "m", "timestamp": 2, "samples": [["x", {}, None]]}).samples
        (Sample(name='x', labels=(), value=nan),)
        """
        rec = parse_record(data, require_version=False)
        return cls(
            model=rec.model,
            version=rec.version,
            instance=rec.instance,
            timestamp=rec.timestamp,
            window=rec.window,
            samples=tuple(
                Sample(name, labels, math.nan if value is None else value) for name, labels, value in rec.samples
            ),
            alerts=rec.alerts,
        )


def samples_from(pairs: Iterable[tuple[str, float, Mapping[str, Any]]]) -> tuple[Sample, ...]:
    """Build samples from ``(name, value, labels)`` triples, skipping non-finite gauge values."""
    out = []
    for name, value, labels in pairs:
        v = float(value)
        if not math.isfinite(v):
            continue
        out.append(Sample(name, _labels_key(labels), v))
    return tuple(out)
