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
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import attrs

__all__ = [
    "CATALOG",
    "FORMAT_VERSION",
    "JsonlRecord",
    "LineError",
    "MetricInfo",
    "NewerFormat",
    "Sample",
    "Snapshot",
    "parse_line",
    "parse_record",
    "record_dict",
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


_HINTED: set[str] = set()  # metric names get() has already warned about


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

        Without labels, returns the unlabelled sample if there is one, else None. Asking
        without labels for a metric that only has labelled samples warns once per name
        (``UserWarning``), naming the labels to pass.

        >>> snap = Snapshot("m", None, "i", 0.0, 60.0, samples_from([("mlmon_latency_seconds", 0.2, {"quantile": "0.99"})]))
        >>> snap.get("mlmon_latency_seconds", quantile="0.99")
        0.2
        """
        key = _labels_key(labels)
        labelled: tuple[tuple[str, str], ...] | None = None
        for s in self.samples:
            if s.name == name:
                if s.labels == key:
                    return s.value
                labelled = s.labels
        if labelled and not key and name not in _HINTED:
            _HINTED.add(name)
            example = ", ".join(f"{k}={v!r}" for k, v in labelled)
            warnings.warn(
                f"{name} has only labelled samples: pass its labels, e.g. get({name!r}, {example})",
                UserWarning,
                stacklevel=2,
            )
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
        """A JSON-ready dict, one line of the JSON-lines format (:func:`record_dict`).

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

        Validation is that of :func:`parse_record`; a dict without the
        ``"mlmon"`` format field is read as format version 1.

        Raises:
            LineError: ``data`` is not a valid snapshot (a ``ValueError``
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


# ============================================================================ JSON-lines format
# The one definition of the JSON-lines snapshot format: JsonlEmitter writes each line with
# Snapshot.to_json (record_dict), and every reader (Snapshot.from_dict, python -m mlmon report)
# goes through parse_line / parse_record, so what counts as a valid line is decided here only.

FORMAT_VERSION = 1
"""The format version written (the ``"mlmon"`` field) and the newest one read."""

MAX_STRING = 1024
"""Longest model, version, instance, metric name, label key or label value accepted (characters)."""

MAX_TIMESTAMP = 253402300799.0
"""The last second of the year 9999: later timestamps are not times a monitor wrote."""

RawSample = tuple[str, Labels, "float | None"]


class LineError(ValueError):
    """A line or dict that is not a valid snapshot; ``reason`` says why in a few words.

    >>> try:
    ...     parse_line("[1, 2]")
    ... except LineError as exc:
    ...     print(exc.reason)
    not a JSON object
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NewerFormat(LineError):
    """A line written by a newer mlmon (``"mlmon"`` above :data:`FORMAT_VERSION`).

    >>> try:
    ...     parse_line('{"mlmon": 2}')
    ... except NewerFormat as exc:
    ...     print(exc.version)
    2
    """

    def __init__(self, version: int) -> None:
        super().__init__(f"format version {version} (this mlmon reads {FORMAT_VERSION})")
        self.version = version


@attrs.frozen(slots=True)
class JsonlRecord:
    """One valid snapshot line, as plain values.

    Attributes:
        model, version, instance: the snapshot's identity (``version`` may be None).
        timestamp: Unix seconds, finite, between 1970 and 9999.
        window: seconds the window gauges cover (finite, not negative).
        samples: ``(name, sorted labels, value)``; ``value`` is None for a non-finite value.
        alerts: the alert events as written (JSON values, not validated further).
    """

    model: str
    version: str | None
    instance: str
    timestamp: float
    window: float
    samples: tuple[RawSample, ...]
    alerts: tuple[Any, ...]


def record_dict(
    model: str,
    version: str | None,
    instance: str,
    timestamp: float,
    window: float,
    samples: Iterable[tuple[str, Mapping[str, str], float]],
    alerts: Iterable[Any] = (),
) -> dict[str, Any]:
    """The JSON-ready dict of one line (non-finite values become ``None``).

    >>> record_dict("m", None, "h:1", 1.0, 60.0, [("x", {}, float("nan"))])["samples"]
    [['x', {}, None]]
    """
    return {
        "mlmon": FORMAT_VERSION,
        "model": model,
        "version": version,
        "instance": instance,
        "timestamp": timestamp,
        "window": window,
        "samples": [[name, dict(labels), value if math.isfinite(value) else None] for name, labels, value in samples],
        "alerts": [a.to_dict() if hasattr(a, "to_dict") else repr(a) for a in alerts],
    }


def parse_line(text: str) -> JsonlRecord:
    """Parse one line of the JSON-lines format (surrounding whitespace ignored).

    A line (format version 1) is a JSON object::

        {"mlmon": 1, "model": "fraud", "version": "v3", "instance": "host:4242",
         "timestamp": 1700000000.0, "window": 60.0,
         "samples": [["mlmon_calls_total", {}, 120.0], ["mlmon_errors_total", {"error_type": "E"}, 2.0]],
         "alerts": [{"rule": "...", "state": "firing", ...}]}

    Sample values are numbers or ``null`` (a value that was not finite); label values are
    strings. Reading is strict about types and bounded in what it accepts, so hostile input
    (deep nesting, huge numbers, enormous names) is a :class:`LineError` with a short reason,
    never another exception.

    >>> rec = parse_line('{"mlmon": 1, "model": "m", "timestamp": 5, "samples": [["x", {"k": "v"}, 1]]}')
    >>> rec.model, rec.timestamp, rec.samples
    ('m', 5.0, (('x', (('k', 'v'),), 1.0),))
    >>> parse_line('{"mlmon": 1, "model": "m", "timestamp": 1e300, "samples": []}')
    Traceback (most recent call last):
    ...
    mlmon.snapshot.LineError: bad 'timestamp' (not a time between 1970 and 9999)

    Raises:
        NewerFormat: a newer mlmon wrote the line.
        LineError: anything else that makes it not a snapshot, with the reason.
    """
    try:
        obj = json.loads(text)
    except RecursionError:
        raise LineError("JSON nested too deeply") from None
    except ValueError:  # also json's own errors, and integers of more than 4300 digits
        raise LineError("not valid JSON (truncated?)") from None
    return parse_record(obj)


def _string(obj: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    """The string field ``field``; None when it is absent or null and not ``required``."""
    value = obj.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise LineError(f"bad or missing '{field}'" if required else f"bad '{field}'")
    if len(value) > MAX_STRING:
        raise LineError(f"'{field}' longer than {MAX_STRING} characters")
    return value


def _float(value: Any) -> float | None:
    """A JSON number as a float, or None when it is not a number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range
        return None


def _label_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and abs(value) < 1e300:
        return str(value)
    return None


def _sample(s: Any) -> RawSample:
    if not (isinstance(s, list) and len(s) == 3):
        raise LineError("bad sample")
    name, raw_labels, raw_value = s
    if not (isinstance(name, str) and isinstance(raw_labels, dict)):
        raise LineError("bad sample")
    if not name or len(name) > MAX_STRING:
        raise LineError("bad sample name")
    labels: Labels = ()
    if raw_labels:
        pairs = []
        for k, v in raw_labels.items():
            text = v if isinstance(v, str) else _label_value(v)
            if text is None or not k:
                raise LineError("bad sample label")
            if len(k) > MAX_STRING or len(text) > MAX_STRING:
                raise LineError(f"sample label longer than {MAX_STRING} characters")
            pairs.append((k, text))
        labels = tuple(sorted(pairs)) if len(pairs) > 1 else tuple(pairs)
    if raw_value is None:
        return name, labels, None
    value = raw_value if type(raw_value) is float else _float(raw_value)
    if value is None:
        raise LineError("bad sample value")
    return name, labels, value if math.isfinite(value) else None


def parse_record(obj: Any, *, require_version: bool = True) -> JsonlRecord:
    """Validate one decoded line (a dict from ``json.loads``) and return its :class:`JsonlRecord`.

    Args:
        obj: the decoded JSON value.
        require_version: a missing ``"mlmon"`` field is an error (lines in a log); when False
            it is taken as version 1 (dicts built by hand for :meth:`Snapshot.from_dict`).

    Raises:
        NewerFormat, LineError: as :func:`parse_line`.
    """
    if not isinstance(obj, dict):
        raise LineError("not a JSON object")
    ver = obj.get("mlmon", None if require_version else FORMAT_VERSION)
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
        raise LineError("no mlmon format version")
    if ver > FORMAT_VERSION:
        raise NewerFormat(ver)
    model = _string(obj, "model", required=True)
    instance = _string(obj, "instance", required=False) or ""
    version = _string(obj, "version", required=False)
    ts = _float(obj.get("timestamp"))
    if ts is None:
        raise LineError("bad or missing 'timestamp'")
    if not (0.0 <= ts <= MAX_TIMESTAMP):  # NaN fails too
        raise LineError("bad 'timestamp' (not a time between 1970 and 9999)")
    window = _float(obj.get("window", 0.0))
    if window is None or not (0.0 <= window < math.inf):
        raise LineError("bad 'window'")
    samples, alerts = obj.get("samples"), obj.get("alerts", [])
    if not isinstance(samples, list):
        raise LineError("bad or missing 'samples'")
    if alerts is None:
        alerts = []
    if not isinstance(alerts, list):
        raise LineError("bad 'alerts'")
    assert model is not None
    return JsonlRecord(
        model=model,
        version=version,
        instance=instance,
        timestamp=ts,
        window=window,
        samples=tuple(_sample(s) for s in samples),
        alerts=tuple(alerts),
    )
