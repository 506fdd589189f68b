"""Reading the log: JSON lines in, the chosen model's time series out (:class:`Log`).

Each line goes through :func:`mlmon.snapshot.parse_line`, the one definition of the format;
a line it refuses is skipped and counted by reason, never raised.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import attrs
import numpy as np
import numpy.typing as npt

from mlmon.report._format import clean
from mlmon.report._info import ReportError
from mlmon.report._sections import SEGMENT_LABEL, SEGMENT_METRICS, USED
from mlmon.segments import OVERFLOW as OTHER
from mlmon.snapshot import (
    FORMAT_VERSION,
    MAX_STRING,
    JsonlRecord,
    LineError,
    NewerFormat,
    parse_line,
)

Source = Union[str, "os.PathLike[str]", Iterable[str]]
"""A log: a path, or an iterable of its lines."""

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels, str]  # metric name, labels, instance
FloatArray = npt.NDArray[np.float64]

MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest line read (bytes of UTF-8, or characters of a given line); longer lines are malformed."""

MAX_SERIES = 20_000
"""Distinct series (metric, labels, instance) kept; samples of further series are dropped, counted."""

MAX_MESSAGE = 500
"""Characters of an alert message kept for the page."""

FLEET_MARK = "mlmon_fleet_processes"
"""The sample only a fleet snapshot carries (made by the fleet's leader): its instance is a fleet."""

ALERT_METRICS = frozenset({"mlmon_alert_firing", "mlmon_alerts_firing"})

MAX_SEGMENT_NAMES = 5_000
"""Distinct segment names kept (``_other`` always is); samples of further names are dropped, counted."""

MAX_SEGMENT_SERIES = 20_000
"""Per-segment series (segment, metric, instance) kept; further samples are dropped, counted."""

SegKey = tuple[str, str]  # what (a SEGMENT_METRICS value), instance

_SHOWN_LINE_NUMBERS = 5
_TOO_LONG = "\x00too long"  # what read_file yields for an over-long line (a real line has no NUL)


def lines_of(source: Source) -> tuple[Iterable[str], str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return read_file(path), path.name
    if isinstance(source, (bytes, bytearray)):
        raise TypeError("give a path (str or Path) or an iterable of lines, not bytes")
    return source, "the log"


def read_file(path: Path) -> Iterator[str]:
    # Bytes in, text out per line: a line cut inside a UTF-8 sequence is one bad line, not a
    # UnicodeDecodeError that stops the whole report. A line is read at most MAX_LINE_BYTES at a
    # time, so one enormous line costs no more memory than that.
    with open(path, "rb") as f:
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                    raw = f.readline(MAX_LINE_BYTES)
                yield _TOO_LONG
                continue
            yield raw.decode("utf-8", errors="replace")


def listed(names: Iterable[str], limit: int = 10) -> str:
    """``a, b, c``: at most ``limit`` names, then how many more.

    >>> listed(["a", "b", "c"], limit=2)
    'a, b and 1 more'
    """
    items = list(names)
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


@attrs.frozen(slots=True)
class _Event:
    """The part of an alert event (a line's ``alerts``) that the timeline needs."""

    t: float
    instance: str
    rule: str
    state: str
    labels: Labels
    severity: str
    message: str


def _event_text(value: Any, limit: int) -> str:
    """An alert event's text field as clean text: a string (cut at ``limit``), anything else empty."""
    if not isinstance(value, str):
        return ""
    return clean(value[:limit] + ("…" if len(value) > limit else ""))


class Log:
    """The chosen model's series, read in one pass over the lines.

    Every text taken from the log (model, instance, version, label keys and values, rule names,
    alert messages) has its control characters replaced (:func:`~mlmon.report._format.clean`),
    so neither the page nor the command line's output carries them.
    """

    def __init__(self, model: str | None, instances: Sequence[str] | None) -> None:
        self.want_instances = {clean(i) for i in instances} if instances else None
        self.model: str | None = None if model is None else clean(model)
        self.lines = 0
        self.malformed = 0
        self.malformed_why: dict[str, list[int]] = {}  # reason -> [count, first line numbers...]
        self.newer: dict[int, int] = {}
        self.duplicates = 0
        self.max_series = MAX_SERIES
        self.dropped_series = 0  # samples of series beyond max_series
        self.models: dict[str, int] = {}
        self.instances: dict[str, int] = {}
        self.hidden: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.stamps: dict[str, list[float]] = {}
        self.fleet: dict[str, int] = {}  # instances whose snapshots carry FLEET_MARK: snapshots each
        self.fleet_log: Log | None = None  # after split_fleet(): the fleet's series
        self.events: list[_Event] = []
        self._seen: set[tuple[str, float, int]] = set()
        self._labels: dict[Labels, Labels] = {}  # labels as read -> cleaned (they repeat every line)
        self._t: dict[Key, array[float]] = {}
        self._v: dict[Key, array[float]] = {}
        self.by_name: dict[str, list[Key]] = {}
        self.series: dict[Key, tuple[FloatArray, FloatArray]] = {}
        # Segment-labelled samples never go into by_name/series (whose readers all mean the
        # overall series): they are kept here, per segment name, reduced to what the segments
        # section draws (see SEGMENT_METRICS).
        self.max_segment_names = MAX_SEGMENT_NAMES
        self.segment_samples = 0  # segment-labelled samples read (kept or not)
        self.dropped_segment_samples = 0  # of segment names, or series, beyond the caps
        self.dropped_segment_names: set[str] = set()  # bounded: at most max_segment_names
        self._seg_t: dict[str, dict[SegKey, array[float]]] = {}
        self._seg_v: dict[str, dict[SegKey, array[float]]] = {}
        self._seg_count = 0
        self.segments: dict[str, dict[SegKey, tuple[FloatArray, FloatArray]]] = {}

    # -- one line ----------------------------------------------------------------------------
    def _bad(self, lineno: int, why: str) -> None:
        self.malformed += 1
        seen = self.malformed_why.setdefault(why, [0])
        seen[0] += 1
        if len(seen) <= _SHOWN_LINE_NUMBERS:
            seen.append(lineno)

    def feed(self, lineno: int, text: object) -> None:
        """Take line number ``lineno``; a bad line is counted by reason, never raised."""
        if isinstance(text, (bytes, bytearray)):  # a file opened in binary mode
            text = bytes(text).decode("utf-8", errors="replace")
        if not isinstance(text, str):
            self.lines += 1
            self._bad(lineno, "not a line of text")
            return
        if text is _TOO_LONG or len(text) > MAX_LINE_BYTES:
            self.lines += 1
            self._bad(lineno, f"longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
            return
        text = text.strip()
        if not text:
            return
        self.lines += 1
        try:
            rec = parse_line(text)
        except NewerFormat as exc:
            self.newer[exc.version] = self.newer.get(exc.version, 0) + 1
            return
        except LineError as exc:
            self._bad(lineno, exc.reason)
            return
        self._take(rec, hash(text))

    def _take(self, rec: JsonlRecord, digest: int) -> None:
        # The line is valid: count it, then decide whether it belongs to the report.
        model = clean(rec.model)
        self.models[model] = self.models.get(model, 0) + 1
        if self.model is None:
            self.model = model
        if model != self.model:
            return
        instance = clean(rec.instance)
        if self.want_instances is not None and instance not in self.want_instances:
            self.hidden[instance] = self.hidden.get(instance, 0) + 1
            return
        t = rec.timestamp
        # The same line twice is a file concatenated twice, not two snapshots. Two different
        # snapshots may share a timestamp (a coarse clock, a flush at close): both are kept.
        if (instance, t, digest) in self._seen:
            self.duplicates += 1
            return
        self._seen.add((instance, t, digest))
        self.instances[instance] = self.instances.get(instance, 0) + 1
        vkey = "–" if rec.version is None else clean(rec.version)
        self.versions[vkey] = self.versions.get(vkey, 0) + 1
        self.stamps.setdefault(instance, []).append(t)
        if any(name == FLEET_MARK for name, _, _ in rec.samples):
            self.fleet[instance] = self.fleet.get(instance, 0) + 1
        for name, labels, value in rec.samples:
            # Labels are sorted by key: a last key before "segment" means no segment label
            # (the common case, checked without a scan).
            if labels and labels[-1][0] >= SEGMENT_LABEL and any(k == SEGMENT_LABEL for k, _ in labels):
                self._take_segment(name, labels, value, instance, t)
                continue
            if value is None or name not in USED:
                continue
            clean_labels = self._labels.get(labels)
            if clean_labels is None:
                clean_labels = tuple((clean(k), clean(v)) for k, v in labels)
                if len(self._labels) < MAX_SERIES:
                    self._labels[labels] = clean_labels
            key = (name, clean_labels, instance)
            xs = self._t.get(key)
            if xs is None:
                if len(self._t) >= self.max_series:
                    self.dropped_series += 1
                    continue
                xs = self._t[key] = array("d")
                self._v[key] = array("d")
                self.by_name.setdefault(name, []).append(key)
            xs.append(t)
            self._v[key].append(value)
        for a in rec.alerts:
            if not isinstance(a, dict) or a.get("state") not in ("pending", "firing"):
                continue
            rule = a.get("rule")
            if not isinstance(rule, str) or not rule or len(rule) > MAX_STRING:
                continue
            raw = a.get("labels")
            pairs = tuple(sorted(
                (clean(k), _event_text(v, 1024)) for k, v in raw.items() if isinstance(v, str)
            )) if isinstance(raw, dict) else ()  # fmt: skip
            msg = next((m for m in (a.get(k) for k in ("message", "summary", "condition")) if isinstance(m, str) and m), "")
            self.events.append(_Event(
                t, instance, _event_text(rule, 1024), str(a["state"]), pairs,
                _event_text(a.get("severity"), 100), _event_text(msg, MAX_MESSAGE),
            ))  # fmt: skip

    def _take_segment(self, name: str, labels: Labels, value: float | None, instance: str, t: float) -> None:
        """One segment-labelled sample: kept per segment name when the segments section uses it."""
        self.segment_samples += 1
        if value is None:
            return
        rest = tuple(kv for kv in labels if kv[0] != SEGMENT_LABEL)
        what = SEGMENT_METRICS.get((name, tuple(k for k, _ in rest)))
        if what is None or (what == "f1_macro" and rest != (("average", "macro"),)):
            return
        segment = clean(next(v for k, v in labels if k == SEGMENT_LABEL))
        ts = self._seg_t.get(segment)
        if ts is None:
            if len(self._seg_t) >= self.max_segment_names and segment != OTHER:
                self.dropped_segment_samples += 1
                if len(self.dropped_segment_names) < self.max_segment_names:
                    self.dropped_segment_names.add(segment)
                return
            ts = self._seg_t[segment] = {}
            self._seg_v[segment] = {}
        key = (what, instance)
        xs = ts.get(key)
        if xs is None:
            if self._seg_count >= MAX_SEGMENT_SERIES:
                self.dropped_segment_samples += 1
                return
            self._seg_count += 1
            xs = ts[key] = array("d")
            self._seg_v[segment][key] = array("d")
        ys = self._seg_v[segment][key]
        if what == "psi" and xs and xs[-1] == t:
            # Every feature's drift of one snapshot: the largest is kept.
            ys[-1] = max(ys[-1], value)
            return
        xs.append(t)
        ys.append(value)

    def finish(self) -> None:
        """Sort every series by time (several instances, or concatenated files, interleave)."""
        for key, xs_arr in self._t.items():
            self.series[key] = _sorted(xs_arr, self._v[key])
        self._t.clear()
        self._v.clear()
        for segment, ts in self._seg_t.items():
            vs = self._seg_v[segment]
            self.segments[segment] = {k: _sorted(xs_arr, vs[k]) for k, xs_arr in ts.items()}
        self._seg_t.clear()
        self._seg_v.clear()
        for stamps in self.stamps.values():
            stamps.sort()
        self.events.sort(key=lambda e: e.t)

    def split_fleet(self) -> Log | None:
        """Move the fleet instances' series into a :class:`Log` of their own (``fleet_log``).

        Only when the log also holds processes: a log of fleet snapshots alone is reported as
        is. The fleet's alert series stay here, next to the processes' (one alert timeline).
        Call after :meth:`finish`.
        """
        fleet = set(self.fleet)
        if not fleet or fleet >= set(self.instances):
            return None
        sub = Log(self.model, None)
        sub.model = self.model
        for inst in list(self.instances):
            if inst in fleet:
                sub.instances[inst] = self.instances.pop(inst)
                sub.stamps[inst] = self.stamps.pop(inst)
        sub.fleet = dict(self.fleet)
        for segment, by_key in list(self.segments.items()):
            moved_seg = {k: v for k, v in by_key.items() if k[1] in fleet}
            if moved_seg:
                sub.segments[segment] = moved_seg
                kept_seg = {k: v for k, v in by_key.items() if k[1] not in fleet}
                if kept_seg:
                    self.segments[segment] = kept_seg
                else:
                    del self.segments[segment]
        for name, keys in list(self.by_name.items()):
            if name in ALERT_METRICS:
                continue
            moved = [k for k in keys if k[2] in fleet]
            if not moved:
                continue
            kept = [k for k in keys if k[2] not in fleet]
            if kept:
                self.by_name[name] = kept
            else:
                del self.by_name[name]
            sub.by_name[name] = moved
            for k in moved:
                sub.series[k] = self.series.pop(k)
        self.fleet_log = sub
        return sub

    def stamps_of(self, instance: str) -> list[float]:
        """Snapshot times of ``instance``, a process's or (after :meth:`split_fleet`) the fleet's."""
        got = self.stamps.get(instance)
        if got is None and self.fleet_log is not None:
            got = self.fleet_log.stamps.get(instance)
        return got or []

    # -- queries -----------------------------------------------------------------------------
    def select(self, name: str, match: Mapping[str, str] | None = None) -> list[tuple[dict[str, str], str, FloatArray, FloatArray]]:
        """Series of ``name`` whose label keys are exactly ``match``'s (``"*"`` matches any value)."""
        want = dict(match or {})
        out = []
        for key in self.by_name.get(name, ()):
            labels = dict(key[1])
            if set(labels) != set(want):
                continue
            if all(v == "*" or labels[k] == v for k, v in want.items()):
                xs, ys = self.series[key]
                out.append((labels, key[2], xs, ys))
        return out

    def has(self, name: str) -> bool:
        return bool(self.by_name.get(name))

    @property
    def start(self) -> float:
        return min(s[0] for s in self.stamps.values())

    @property
    def end(self) -> float:
        return max(s[-1] for s in self.stamps.values())



def _sorted(xs_arr: array[float], ys_arr: array[float]) -> tuple[FloatArray, FloatArray]:
    xs = np.frombuffer(xs_arr, dtype=np.float64).copy()
    ys = np.frombuffer(ys_arr, dtype=np.float64).copy()
    if xs.size > 1 and np.any(np.diff(xs) < 0):
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
    return xs, ys


def _instances_arg(instance: str | Sequence[str] | None) -> list[str] | None:
    if instance is None:
        return None
    return [instance] if isinstance(instance, str) else [str(i) for i in instance]


def read(lines: Iterable[str], label: str, model: str | None, instance: str | Sequence[str] | None) -> Log:
    wanted = _instances_arg(instance)
    log = Log(model, wanted)
    for lineno, text in enumerate(lines, 1):
        log.feed(lineno, text)
    log.finish()
    if log.lines == 0:
        raise ReportError(f"{label} is empty: no snapshots to report on (JsonlEmitter writes a line per flush)")
    if not log.models:
        if log.newer and not log.malformed:
            versions = listed((str(v) for v in sorted(log.newer)), 5)
            raise ReportError(
                f"{label} was written by a newer mlmon (format version {versions}); this mlmon reads "
                f"format version {FORMAT_VERSION}: upgrade mlmon to report on it"
            )
        why, seen = next(iter(log.malformed_why.items()))
        extra = f"; {sum(log.newer.values())} more lines are from a newer mlmon" if log.newer else ""
        raise ReportError(
            f"{label} holds no valid mlmon snapshot: {log.malformed} malformed line"
            f"{'s' if log.malformed > 1 else ''} (line {seen[1]}: {why}){extra}"
        )
    if model is not None and log.model not in log.models:
        raise ReportError(f"model {model!r} is not in {label}; models there: {listed(log.models)}")
    if not log.instances:
        if log.duplicates:
            raise ReportError(f"every snapshot of model {log.model!r} in {label} is a duplicate")
        raise ReportError(
            f"no snapshot of model {log.model!r} from instance {listed(wanted or [])} in {label}; "
            f"instances there: {listed(log.hidden)}"
        )
    return log

