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
from typing import Any

import attrs

from mlmon._catalog import CATALOG, MetricInfo
from mlmon._catalog import Kind as Kind
from mlmon._catalog import Labels as Labels
from mlmon._handover import handover
from mlmon._jsonl import (
    FORMAT_VERSION,
    JsonlRecord,
    LineError,
    NewerFormat,
    parse_line,
    parse_record,
    record_dict,
)
from mlmon._jsonl import MAX_STRING as MAX_STRING
from mlmon._jsonl import MAX_TIMESTAMP as MAX_TIMESTAMP
from mlmon._jsonl import RawSample as RawSample

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


def _labels_key(labels: Mapping[str, Any]) -> Labels:
    # Most samples have no label or one (feature, bin, class): nothing to sort then.
    if not labels:
        return ()
    if len(labels) == 1:
        for k, v in labels.items():
            return ((str(k), str(v)),)
    if len(labels) == 2:
        (k1, v1), (k2, v2) = labels.items()
        a, b = (str(k1), str(v1)), (str(k2), str(v2))
        return (a, b) if a <= b else (b, a)  # as sorted() orders two (stable on equal pairs)
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
    for k, (name, value, labels) in enumerate(pairs, 1):
        v = float(value)
        if not math.isfinite(v):
            continue
        out.append(Sample(name, _labels_key(labels), v))
        if not k % 32:
            handover()  # on the reporter thread, a pause point every sample block
    return tuple(out)
