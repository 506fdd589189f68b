"""The JSON-lines snapshot format: :func:`record_dict` writes a line, :func:`parse_line` reads one.

Re-exported by :mod:`mlmon.snapshot`; import the names from there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from mlmon._catalog import Labels

__all__ = [
    "FORMAT_VERSION",
    "MAX_STRING",
    "MAX_TIMESTAMP",
    "JsonlRecord",
    "LineError",
    "NewerFormat",
    "RawSample",
    "parse_line",
    "parse_record",
    "record_dict",
]

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
    mlmon._jsonl.LineError: bad 'timestamp' (not a time between 1970 and 9999)

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
