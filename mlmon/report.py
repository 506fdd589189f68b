"""``python -m mlmon report``: one self-contained HTML page from a :class:`JsonlEmitter` log.

The page is a dashboard of the whole log: summary cards, an alert timeline, service health,
resources, model outputs, quality, features, a drift heat map and outcomes. Charts are inline SVG
(:mod:`mlmon._svg`), styles are inline CSS, and there is no script at all: the file opens
offline, can be mailed or attached to an incident ticket, and a Content-Security-Policy forbids
it from loading anything.

Reading is forgiving and says what it skipped: malformed or truncated lines, lines from a newer
mlmon (``"mlmon": 2`` and up) and duplicate snapshots are skipped and counted, in the page and on
the command line. Only a log with nothing usable in it is an error (:class:`ReportError`).
See ``docs/report.md``.

>>> import io, mlmon
>>> from mlmon.emitters import JsonlEmitter
>>> log = io.StringIO()
>>> mon = mlmon.Monitor("doc_report", emitters=[JsonlEmitter(log)])
>>> mon.close()
>>> page = render(log.getvalue().splitlines())
>>> page.startswith("<!DOCTYPE html>"), "doc_report" in page
(True, True)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import attrs
import numpy as np
import numpy.typing as npt

from mlmon import _svg
from mlmon._files import atomic_write
from mlmon._svg import esc

__all__ = ["FORMAT_VERSION", "MAX_POINTS", "ReportError", "ReportInfo", "build", "main", "render", "write"]

FORMAT_VERSION = 1
"""The JSON-lines format version this mlmon reads (the ``"mlmon"`` field of each line)."""

MAX_POINTS = 600
"""Default bound on the points drawn per series; longer series are downsampled (min/max kept)."""

Source = Union[str, "os.PathLike[str]", Iterable[str]]
"""A log: a path, or an iterable of its lines."""

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels, str]  # metric name, labels, instance
FloatArray = npt.NDArray[np.float64]

_MAX_SERIES = 24  # lines per chart; more would make the legend unreadable
_MAX_HEAT_ROWS = 40
_MAX_HEAT_BINS = 120
_MAX_SPANS = 400  # spans per alert row
_MAX_EPISODES = 200  # rows of the alert table
_SHOWN_LINE_NUMBERS = 5


class ReportError(ValueError):
    """The log holds nothing to report on: empty, only malformed or newer lines, unknown model.

    >>> try:
    ...     render(['{"mlmon": 2, "model": "m"}'])
    ... except ReportError as exc:
    ...     print(exc)
    the log was written by a newer mlmon (format version 2); this mlmon reads format version 1: upgrade mlmon to report on it
    """


@attrs.frozen(kw_only=True, slots=True)
class ReportInfo:
    """What :func:`write` produced, and what it skipped on the way.

    Attributes:
        output: the HTML file written (None from :func:`build`).
        size: bytes of HTML.
        model: the model the report is about.
        models: every model in the log, in order of first appearance.
        instances: the instances shown.
        snapshots: lines (snapshots) used.
        start, end: Unix time of the first and last snapshot used.
        malformed: lines skipped because they were not valid mlmon lines (bad JSON, truncated,
            missing or bad fields).
        newer: lines skipped because a newer mlmon wrote them (``"mlmon"`` above
            :data:`FORMAT_VERSION`).
        newer_versions: the format versions of those lines.
        duplicates: lines skipped because the very same line came before (a file read twice).
        sections: ids of the sections with data (``service``, ``resources``, ``outputs``,
            ``quality``, ``features``, ``drift``, ``outcomes``, ``alerts``).
        omitted: ids of the sections left out for lack of data.
        notes: the warnings shown at the top of the page.
    """

    output: str | None
    size: int
    model: str
    models: tuple[str, ...]
    instances: tuple[str, ...]
    snapshots: int
    start: float
    end: float
    malformed: int
    newer: int
    newer_versions: tuple[int, ...]
    duplicates: int
    sections: tuple[str, ...]
    omitted: tuple[str, ...]
    notes: tuple[str, ...]

    def summary(self) -> str:
        """One line for the command line.

        >>> info = ReportInfo(output="r.html", size=2048, model="fraud", models=("fraud",),
        ...     instances=("h:1",), snapshots=10, start=0.0, end=20.0, malformed=2, newer=0,
        ...     newer_versions=(), duplicates=0, sections=("service",), omitted=(), notes=())
        >>> info.summary()
        'wrote r.html (2 KiB): model fraud, 10 snapshots from 1 instance over 20 s; skipped 2 malformed lines'
        """
        where = f"wrote {self.output}" if self.output else "rendered"
        n = len(self.instances)
        text = (
            f"{where} ({_svg.fmt_bytes(self.size)}): model {self.model}, {self.snapshots} snapshot"
            f"{'' if self.snapshots == 1 else 's'} from {n} instance{'' if n == 1 else 's'} over "
            f"{_duration(self.end - self.start)}"
        )
        skipped = []
        if self.malformed:
            skipped.append(f"{self.malformed} malformed line{'' if self.malformed == 1 else 's'}")
        if self.newer:
            versions = ", ".join(str(v) for v in self.newer_versions)
            skipped.append(f"{self.newer} line{'' if self.newer == 1 else 's'} of format version {versions}")
        if self.duplicates:
            skipped.append(f"{self.duplicates} duplicate snapshot{'' if self.duplicates == 1 else 's'}")
        return text + (f"; skipped {', '.join(skipped)}" if skipped else "")


# ================================================================================== reading


def _lines_of(source: Source) -> tuple[Iterable[str], str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return _read_file(path), path.name
    if isinstance(source, (bytes, bytearray)):
        raise TypeError("give a path (str or Path) or an iterable of lines, not bytes")
    return source, "the log"


def _read_file(path: Path) -> Iterator[str]:
    # Bytes in, text out per line: a line cut inside a UTF-8 sequence is one bad line, not a
    # UnicodeDecodeError that stops the whole report.
    with open(path, "rb") as f:
        for raw in f:
            yield raw.decode("utf-8", errors="replace")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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


class _Log:
    """The chosen model's series, read in one pass over the lines."""

    def __init__(self, model: str | None, instances: Sequence[str] | None) -> None:
        self.want_instances = set(instances) if instances else None
        self.model: str | None = model
        self.lines = 0
        self.malformed = 0
        self.malformed_why: dict[str, list[int]] = {}  # reason -> [count, first line numbers...]
        self.newer: dict[int, int] = {}
        self.duplicates = 0
        self.models: dict[str, int] = {}
        self.instances: dict[str, int] = {}
        self.hidden: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.stamps: dict[str, list[float]] = {}
        self.events: list[_Event] = []
        self._seen: set[tuple[str, float, int]] = set()
        self._t: dict[Key, array[float]] = {}
        self._v: dict[Key, array[float]] = {}
        self.by_name: dict[str, list[Key]] = {}
        self.series: dict[Key, tuple[FloatArray, FloatArray]] = {}

    # -- one line ----------------------------------------------------------------------------
    def _bad(self, lineno: int, why: str) -> None:
        self.malformed += 1
        seen = self.malformed_why.setdefault(why, [0])
        seen[0] += 1
        if len(seen) <= _SHOWN_LINE_NUMBERS:
            seen.append(lineno)

    def feed(self, lineno: int, text: str) -> None:
        text = text.strip()
        if not text:
            return
        self.lines += 1
        try:
            obj = json.loads(text)
        except ValueError:
            self._bad(lineno, "not valid JSON (truncated?)")
            return
        if not isinstance(obj, dict):
            self._bad(lineno, "not a JSON object")
            return
        ver = obj.get("mlmon")
        if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
            self._bad(lineno, "no mlmon format version")
            return
        if ver > FORMAT_VERSION:
            self.newer[ver] = self.newer.get(ver, 0) + 1
            return
        why = self._take(obj, hash(text))
        if why is not None:
            self._bad(lineno, why)

    def _take(self, obj: Mapping[str, Any], digest: int) -> str | None:
        model, instance, ts = obj.get("model"), obj.get("instance", ""), obj.get("timestamp")
        if not isinstance(model, str) or not model:
            return "bad or missing 'model'"
        if not isinstance(instance, str):
            return "bad 'instance'"
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
            return "bad or missing 'timestamp'"
        samples, alerts = obj.get("samples"), obj.get("alerts", [])
        if not isinstance(samples, list):
            return "bad or missing 'samples'"
        if not isinstance(alerts, list):
            return "bad 'alerts'"
        version = obj.get("version")
        if version is not None and not isinstance(version, str):
            return "bad 'version'"
        parsed: list[tuple[str, Labels, float | None]] = []
        for s in samples:
            if not (isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and isinstance(s[1], dict)):
                return "bad sample"
            value = s[2]
            if value is not None and not _number(value):
                return "bad sample value"
            labels = tuple(sorted((str(k), str(v)) for k, v in s[1].items()))
            parsed.append((s[0], labels, None if value is None else float(value)))
        # The line is valid: count it, then decide whether it belongs to the report.
        self.models[model] = self.models.get(model, 0) + 1
        if self.model is None:
            self.model = model
        if model != self.model:
            return None
        if self.want_instances is not None and instance not in self.want_instances:
            self.hidden[instance] = self.hidden.get(instance, 0) + 1
            return None
        t = float(ts)
        # The same line twice is a file concatenated twice, not two snapshots. Two different
        # snapshots may share a timestamp (a coarse clock, a flush at close): both are kept.
        if (instance, t, digest) in self._seen:
            self.duplicates += 1
            return None
        self._seen.add((instance, t, digest))
        self.instances[instance] = self.instances.get(instance, 0) + 1
        vkey = "–" if version is None else version
        self.versions[vkey] = self.versions.get(vkey, 0) + 1
        self.stamps.setdefault(instance, []).append(t)
        for name, labels, value in parsed:
            if value is None or not math.isfinite(value) or name not in _USED:
                continue
            key = (name, labels, instance)
            xs = self._t.get(key)
            if xs is None:
                xs = self._t[key] = array("d")
                self._v[key] = array("d")
                self.by_name.setdefault(name, []).append(key)
            xs.append(t)
            self._v[key].append(value)
        for a in alerts:
            if isinstance(a, dict) and isinstance(a.get("rule"), str) and a.get("state") in ("pending", "firing"):
                raw = a.get("labels")
                pairs = tuple(sorted((str(k), str(v)) for k, v in raw.items())) if isinstance(raw, dict) else ()
                msg = a.get("message") or a.get("summary") or a.get("condition") or ""
                self.events.append(_Event(t, instance, a["rule"], str(a["state"]), pairs, str(a.get("severity") or ""), str(msg)))
        return None

    def finish(self) -> None:
        """Sort every series by time (several instances, or concatenated files, interleave)."""
        for key, xs_arr in self._t.items():
            xs = np.frombuffer(xs_arr, dtype=np.float64).copy()
            ys = np.frombuffer(self._v[key], dtype=np.float64).copy()
            if xs.size > 1 and np.any(np.diff(xs) < 0):
                order = np.argsort(xs, kind="stable")
                xs, ys = xs[order], ys[order]
            self.series[key] = (xs, ys)
        self._t.clear()
        self._v.clear()
        for stamps in self.stamps.values():
            stamps.sort()
        self.events.sort(key=lambda e: e.t)

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


# ================================================================================== numbers


def _counter_total(ys: FloatArray) -> float:
    """What a cumulative counter counted over the log; a drop means the process restarted."""
    if ys.size == 0:
        return 0.0
    d = np.diff(ys)
    d = np.where(d < 0, ys[1:], d)
    return float(ys[0] + d.sum())


def _rate(xs: FloatArray, ys: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-second increase of a cumulative counter between consecutive snapshots."""
    if xs.size < 2:
        return xs[:0], ys[:0]
    dt = np.diff(xs)
    dv = np.diff(ys)
    dv = np.where(dv < 0, ys[1:], dv)
    ok = dt > 0
    return xs[1:][ok], dv[ok] / dt[ok]


def _downsample(xs: FloatArray, ys: FloatArray, max_points: int) -> tuple[FloatArray, FloatArray]:
    """At most ``max_points`` points: per bucket of consecutive points, its minimum and maximum.

    Keeping both extremes (rather than averaging) keeps spikes visible, which is what one looks
    for in a monitoring chart.
    """
    n = xs.size
    if n <= max_points:
        return xs, ys
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep: list[int] = []
    for a, b in itertools.pairwise(edges.tolist()):
        if b <= a:
            continue
        seg = ys[a:b]
        i, j = a + int(np.argmin(seg)), a + int(np.argmax(seg))
        keep.extend((i, j) if i < j else (j, i) if j < i else (i,))
    idx = np.asarray(keep, dtype=np.int64)
    return xs[idx], ys[idx]


def _thin(xs: FloatArray, ys: FloatArray, max_points: int) -> tuple[FloatArray, FloatArray]:
    """About ``max_points`` points of a series, with a NaN value where reporting had a gap.

    Gaps (a step over three times the median step) are found on the full series: after
    downsampling, steps are no longer regular and a gap could not be told from a thinned stretch.
    """
    if xs.size < 3:
        return xs, ys
    steps = np.diff(xs)
    positive = steps[steps > 0]
    cuts = np.nonzero(steps > 3.0 * float(np.median(positive)))[0] + 1 if positive.size else np.zeros(0, np.int64)
    if cuts.size == 0 or cuts.size > max_points // 4:  # no gaps, or so many that they are the pattern
        return _downsample(xs, ys, max_points)
    parts_x: list[FloatArray] = []
    parts_y: list[FloatArray] = []
    for px, py in zip(np.split(xs, cuts), np.split(ys, cuts), strict=True):
        dx, dy = _downsample(px, py, max(2, max_points * px.size // xs.size))
        if parts_x:
            parts_x.append(dx[:1])
            parts_y.append(np.array([math.nan]))
        parts_x.append(dx)
        parts_y.append(dy)
    return np.concatenate(parts_x), np.concatenate(parts_y)


def _heat_cells(edges: FloatArray, xs: FloatArray, ys: FloatArray) -> list[float | None]:
    """Per time bin, the highest value in it; an empty bin holds the value before it.

    A window gauge stays true until the next snapshot, so a bin that fell between two
    snapshots (flush jitter) shows the earlier one. After a real gap (more than twice the
    usual interval, e.g. a process that stopped) the bin stays empty.
    """
    n_bins = edges.size - 1
    idx = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, n_bins - 1)
    peak = np.full(n_bins, -np.inf)
    np.maximum.at(peak, idx, ys)
    steps = np.diff(xs)
    hold = 2.0 * float(np.median(steps)) if steps.size else 0.0
    cells: list[float | None] = []
    for j in range(n_bins):
        if np.isfinite(peak[j]):
            cells.append(float(peak[j]))
            continue
        prev = int(np.searchsorted(xs, edges[j], side="right")) - 1
        nxt = prev + 1
        held = prev >= 0 and nxt < xs.size and xs[nxt] - xs[prev] <= hold
        cells.append(float(ys[prev]) if held else None)
    return cells


def _duration(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        h, m = divmod(round(s / 60), 60)
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{s / 86400:.1f} days"


def _utc(t: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return time.strftime(fmt, time.gmtime(t))


def _qname(q: str) -> str:
    try:
        v = float(q)
    except ValueError:
        return q
    if v >= 1.0:
        return "max"
    if v <= 0.0:
        return "min"
    return "p" + _svg._g3(v * 100)


def _qsort(labels: Mapping[str, str]) -> float:
    try:
        return float(labels.get("quantile", "nan"))
    except ValueError:
        return math.nan


# ================================================================================== chart specs


@attrs.frozen(slots=True)
class _Line:
    metric: str
    match: tuple[tuple[str, str], ...] = ()
    legend: str = ""
    dashed: bool = False
    rate: bool = False
    color: str | None = None  # lines with the same key share a colour (realized vs estimated)


@attrs.frozen(slots=True)
class _Chart:
    id: str
    title: str
    fmt: Callable[[float], str]
    lines: tuple[_Line, ...]
    y_cap: float | None = None
    hide_if_zero: bool = False
    y_scale: str = "linear"


def _q(metric: str, q: str, legend: str) -> _Line:
    return _Line(metric, (("quantile", q),), legend)


_SECTIONS: tuple[tuple[str, str, str, tuple[_Chart, ...]], ...] = (
    (
        "service",
        "Service health",
        "No service metrics (calls, latency) in this log.",
        (
            _Chart("calls", "Calls per second", _svg.fmt_number, (_Line("mlmon_calls_per_second", (), "calls/s"),)),
            _Chart("rows", "Predictions (rows) per second", _svg.fmt_number, (_Line("mlmon_rows_per_second", (), "rows/s"),)),
            _Chart("error-ratio", "Error ratio", _svg.fmt_ratio, (_Line("mlmon_error_ratio", (), "error ratio"),), y_cap=1.0),
            _Chart("availability", "Availability (succeeded within the latency budget)", _svg.fmt_ratio,
                   (_Line("mlmon_availability_ratio", (), "availability"),), y_cap=1.0),
            _Chart("latency", "Latency quantiles", _svg.fmt_seconds, (
                _q("mlmon_latency_seconds", "0.5", "p50"),
                _q("mlmon_latency_seconds", "0.9", "p90"),
                _q("mlmon_latency_seconds", "0.99", "p99"),
                _q("mlmon_latency_seconds", "1", "max"),
            ), y_scale="auto"),
            _Chart("errors-by-type", "Errors per second, by type", _svg.fmt_number,
                   (_Line("mlmon_errors_total", (("error_type", "*"),), "{error_type}", rate=True),)),
            _Chart("slow", "Slow calls per second (over the latency budget)", _svg.fmt_number,
                   (_Line("mlmon_slow_calls_total", (), "slow calls/s", rate=True),)),
            _Chart("inflight", "Calls in flight", _svg.fmt_number, (_Line("mlmon_inflight_calls", (), "in flight"),)),
            _Chart("oldest-inflight", "Oldest call in flight", _svg.fmt_seconds,
                   (_Line("mlmon_oldest_inflight_seconds", (), "oldest in flight"),)),
        ),
    ),
    (
        "resources",
        "Resources",
        "No resource metrics (CPU, memory, threads, file descriptors) in this log.",
        (
            _Chart("cpu", "CPU (100% = one core)", _svg.fmt_percent, (
                _Line("mlmon_process_cpu_percent", (), "process"),
                _Line("mlmon_system_cpu_percent", (), "system", dashed=True),
            )),
            _Chart("rss", "Resident memory", _svg.fmt_bytes, (_Line("mlmon_process_resident_memory_bytes", (), "RSS"),)),
            _Chart("threads-fds", "Threads and open file descriptors", _svg.fmt_number, (
                _Line("mlmon_process_threads", (), "threads"),
                _Line("mlmon_process_open_fds", (), "open fds"),
            )),
            _Chart("system-memory", "System memory in use", _svg.fmt_ratio,
                   (_Line("mlmon_system_memory_used_ratio", (), "used"),), y_cap=1.0),
        ),
    ),
    (
        "outputs",
        "Model outputs",
        "No output metrics in this log (the tracked function's outputs were not recorded).",
        (
            _Chart("output-quantiles", "Output mean and quantiles", _svg.fmt_number, (
                _Line("mlmon_output", (("quantile", "*"),), "{q}"),
                _Line("mlmon_output_mean", (), "mean", dashed=True),
            )),
            _Chart("output-variance", "Output variance", _svg.fmt_number, (_Line("mlmon_output_variance", (), "variance"),)),
            _Chart("class-ratio", "Predicted class ratios", _svg.fmt_ratio,
                   (_Line("mlmon_output_class_ratio", (("class", "*"),), "class {class}"),), y_cap=1.0),
            _Chart("output-psi", "Output drift (PSI against the reference)", _svg.fmt_number,
                   (_Line("mlmon_output_drift_psi", (), "output PSI"),)),
            _Chart("invalid-outputs", "Invalid outputs per second", _svg.fmt_number,
                   (_Line("mlmon_output_invalid_total", (), "invalid/s", rate=True),), hide_if_zero=True),
        ),
    ),
    (
        "quality",
        "Quality",
        "No quality metrics in this log: give the Monitor a task and send true labels with "
        "log_feedback(ids, labels).",
        (
            _Chart("quality", "Precision, recall and F1 (from labels)", _svg.fmt_ratio, (
                _Line("mlmon_precision", (), "precision", color="p"),
                _Line("mlmon_recall", (), "recall", color="r"),
                _Line("mlmon_f1", (), "F1", color="f"),
                _Line("mlmon_precision", (("average", "macro"),), "precision (macro)", color="p"),
                _Line("mlmon_recall", (("average", "macro"),), "recall (macro)", color="r"),
                _Line("mlmon_f1", (("average", "macro"),), "F1 (macro)", color="f"),
                _Line("mlmon_accuracy", (), "accuracy", color="a"),
            ), y_cap=1.0),
            _Chart("estimated", "Estimated (from scores) vs realized (from labels)", _svg.fmt_ratio, (
                _Line("mlmon_precision", (), "precision", color="p"),
                _Line("mlmon_estimated_precision", (), "estimated precision", dashed=True, color="p"),
                _Line("mlmon_recall", (), "recall", color="r"),
                _Line("mlmon_estimated_recall", (), "estimated recall", dashed=True, color="r"),
                _Line("mlmon_f1", (), "F1", color="f"),
                _Line("mlmon_estimated_f1", (), "estimated F1", dashed=True, color="f"),
            ), y_cap=1.0),
            _Chart("regression", "Regression errors", _svg.fmt_number, (
                _Line("mlmon_mae", (), "MAE"),
                _Line("mlmon_rmse", (), "RMSE"),
                _Line("mlmon_mean_error", (), "mean error", dashed=True),
            )),
            _Chart("label-coverage", "Label coverage (share of predictions labelled)", _svg.fmt_ratio,
                   (_Line("mlmon_label_coverage_ratio", (), "coverage"),), y_cap=1.0),
            _Chart("label-delay", "Label delay", _svg.fmt_seconds,
                   (_Line("mlmon_label_delay_seconds", (("quantile", "*"),), "{q}"),), y_scale="auto"),
            _Chart("labels-rate", "Labels joined per second", _svg.fmt_number,
                   (_Line("mlmon_labels_total", (), "labels/s", rate=True),)),
        ),
    ),
    (
        "features",
        "Features",
        "No feature metrics in this log: name the features with track(features=...).",
        (
            _Chart("missing", "Missing ratio per feature", _svg.fmt_ratio,
                   (_Line("mlmon_feature_missing_ratio", (("feature", "*"),), "{feature}"),), y_cap=1.0),
            _Chart("out-of-range", "Out-of-reference-range ratio per feature", _svg.fmt_ratio,
                   (_Line("mlmon_feature_out_of_range_ratio", (("feature", "*"),), "{feature}"),), y_cap=1.0),
            _Chart("unseen", "Unseen categories per feature", _svg.fmt_ratio,
                   (_Line("mlmon_feature_unseen_ratio", (("feature", "*"),), "{feature}"),), y_cap=1.0),
        ),
    ),
    (
        "outcomes",
        "Outcomes",
        "No downstream outcomes in this log (log them with log_outcome(name, ids)).",
        (
            _Chart("outcome-rate", "Outcomes per prediction", _svg.fmt_number,
                   (_Line("mlmon_outcome_rate", (("outcome", "*"),), "{outcome}"),)),
        ),
    ),
)

_DRIFT_NOTE = "No drift metrics in this log: give the Monitor a reference=Reference.from_data(...)."
_ALERT_NOTE = "No alert rules in this log: give the Monitor rules=[...]."
_SECTION_TITLES = {sid: title for sid, title, _, _ in _SECTIONS} | {"alerts": "Alert timeline", "drift": "Drift"}

_USED = frozenset(line.metric for _, _, _, charts in _SECTIONS for c in charts for line in c.lines) | {
    "mlmon_calls_total", "mlmon_rows_total", "mlmon_errors_total", "mlmon_slow_calls_total",
    "mlmon_labels_total", "mlmon_feature_drift_psi", "mlmon_feature_drift_status",
    "mlmon_output_drift_psi", "mlmon_alert_firing", "mlmon_alerts_firing",
    "mlmon_internal_errors_total", "mlmon_dropped_total", "mlmon_emit_errors_total",
}  # fmt: skip

_PSI_STOPS = ((0.0, "#e8f5e9"), (0.1, "#fde68a"), (0.25, "#f97316"), (0.5, "#991b1b"))
_PSI_TICKS = ((0.0, "0"), (0.1, "0.1 moderate"), (0.25, "0.25 significant"), (0.5, "≥ 0.5"))
_ALERT_COLORS = {"firing": "#dc2626", "pending": "#f59e0b"}
_STATUS = {0: "ok", 1: "warning", 2: "drift"}
_EMPTY_CLASS = ' class="empty"'


class _Fill(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


# ================================================================================== page


class _Page:
    """Builds the HTML of one report from a finished :class:`_Log`."""

    def __init__(self, log: _Log, source: str, max_points: int) -> None:
        self.log = log
        self.source = source
        self.max_points = max_points
        self.multi = len(log.instances) > 1
        self.t0, self.t1 = log.start, log.end
        if self.t1 <= self.t0:
            # One snapshot: give the time axis some width around it.
            self.t0, self.t1 = self.t0 - 1.0, self.t1 + 1.0
        # Times in tables: the clock alone when the whole log is one UTC day.
        one_day = _utc(log.start, "%Y%m%d") == _utc(log.end, "%Y%m%d")
        self.when = "%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S"
        self.sections: list[str] = []
        self.omitted: list[str] = []
        self.notes: list[str] = []
        self.alert_rows: list[_AlertRow] | None = None
        self.alert_rules: list[str] = []

    # -- series ------------------------------------------------------------------------------
    def chart_series(self, chart: _Chart) -> tuple[list[_svg.Series], int]:
        found: list[tuple[str, str, bool, str, FloatArray, FloatArray, str]] = []
        for line in chart.lines:
            picked = self.log.select(line.metric, dict(line.match))
            if any(k == "quantile" for k, _ in line.match):
                picked.sort(key=lambda p: _qsort(p[0]))
            for labels, inst, xs, ys in picked:
                if line.rate:
                    # A labelled counter appears with its first event: before that it was 0.
                    stamps = np.asarray(self.log.stamps.get(inst, ()), dtype=np.float64)
                    before = stamps[stamps < xs[0]] if xs.size else stamps[:0]
                    if before.size:
                        xs = np.concatenate((before, xs))
                        ys = np.concatenate((np.zeros(before.size), ys))
                    xs, ys = _rate(xs, ys)
                fill = _Fill(labels)
                if "quantile" in labels:
                    fill["q"] = _qname(labels["quantile"])
                name = line.legend.format_map(fill)
                ckey = (line.color or name) + "\x00" + inst
                found.append((name, inst, line.dashed, ckey, xs, ys, line.metric))
        if chart.hide_if_zero and all(not np.any(f[5]) for f in found):
            return [], 0
        dropped = max(0, len(found) - _MAX_SERIES)
        colors: dict[str, str] = {}
        out = []
        for name, inst, dashed, ckey, xs, ys, metric in found[:_MAX_SERIES]:
            color = colors.setdefault(ckey, _svg.PALETTE[len(colors) % len(_svg.PALETTE)])
            xs, ys = _thin(xs, ys, self.max_points)
            legend = f"{name} · {inst}" if self.multi else name
            out.append(_svg.Series(legend, xs.tolist(), ys.tolist(), color=color, dashed=dashed,
                                   data={"metric": metric, "instance": inst}, gap=math.inf))  # fmt: skip
        return out, dropped

    def chart(self, chart: _Chart) -> str | None:
        series, dropped = self.chart_series(chart)
        if not series:
            return None
        svg = _svg.line_chart(series, chart_id=chart.id, x_range=(self.t0, self.t1), y_format=chart.fmt,
                              y_cap=chart.y_cap, y_scale=chart.y_scale)  # fmt: skip
        metrics = sorted({line.metric for line in chart.lines if self.log.has(line.metric)})
        note = f'<p class="note">{dropped} more series not drawn (at most {_MAX_SERIES} per chart).</p>' if dropped else ""
        return (
            f'<figure class="card chart-card" id="chart-{esc(chart.id)}"><figcaption><h3>{esc(chart.title)}</h3>'
            f'<p class="metric">{esc(", ".join(metrics))}</p></figcaption>{svg}{note}</figure>'
        )

    # -- sections ----------------------------------------------------------------------------
    def section(self, sid: str, title: str, empty: str, body: str | None, full: bool = False) -> str:
        if body is None:
            self.omitted.append(sid)
            return (
                f'<section class="empty" id="{sid}" data-section="{sid}" data-empty="1"><h2>{esc(title)}</h2>'
                f'<p class="note">{esc(empty)}</p></section>'
            )
        self.sections.append(sid)
        cls = "charts full" if full else "charts"
        return f'<section id="{sid}" data-section="{sid}"><h2>{esc(title)}</h2><div class="{cls}">{body}</div></section>'

    def chart_section(self, sid: str, title: str, empty: str, charts: Sequence[_Chart]) -> str:
        parts = [p for p in (self.chart(c) for c in charts) if p is not None]
        return self.section(sid, title, empty, "".join(parts) if parts else None)

    # -- summary cards -----------------------------------------------------------------------
    def total(self, name: str) -> float | None:
        keys = self.log.by_name.get(name)
        if not keys:
            return None
        return math.fsum(_counter_total(self.log.series[k][1]) for k in keys)

    def latest(self, name: str, match: Mapping[str, str] | None = None, agg: Callable[[list[float]], float] = max) -> float | None:
        vals = [float(ys[-1]) for _, _, _, ys in self.log.select(name, match) if ys.size]
        return agg(vals) if vals else None

    def cards(self) -> str:
        log = self.log
        n_inst = len(log.instances)
        cards: list[tuple[str, str, str, str]] = []  # (label, value, sub, class)
        worst = f" (worst of {n_inst} instances)" if n_inst > 1 else ""
        every = f" (sum of {n_inst} instances)" if n_inst > 1 else ""
        cards.append((
            "Time range", _duration(log.end - log.start),
            f"{_utc(log.start)} – {_utc(log.end, self.when)} UTC", "",
        ))  # fmt: skip
        cards.append(("Snapshots", f"{sum(log.instances.values()):,}", f"from {n_inst} instance{'s' if n_inst > 1 else ''}", ""))
        calls = self.total("mlmon_calls_total")
        if calls is not None:
            rows = self.total("mlmon_rows_total")
            cards.append(("Calls", _svg.fmt_number(calls), f"{_svg.fmt_number(rows)} predictions (rows)" if rows is not None else "", ""))
            errors = self.total("mlmon_errors_total") or 0.0
            by_type: dict[str, float] = {}
            for labels, _, _, ys in log.select("mlmon_errors_total", {"error_type": "*"}):
                by_type[labels["error_type"]] = by_type.get(labels["error_type"], 0.0) + _counter_total(ys)
            top = ", ".join(f"{k} {_svg.fmt_number(v)}" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])[:3])
            share = _svg.fmt_ratio(errors / calls) if calls else "–"
            cards.append(("Errors", _svg.fmt_number(errors), f"{share} of calls" + (f" · {top}" if top else ""), "bad" if errors else ""))
            slow = self.total("mlmon_slow_calls_total")
            if slow is not None:
                cards.append(("Slow calls", _svg.fmt_number(slow), "over the latency budget", "warn" if slow else ""))
        p99 = self.latest("mlmon_latency_seconds", {"quantile": "0.99"})
        if p99 is not None:
            p50 = self.latest("mlmon_latency_seconds", {"quantile": "0.5"})
            mx = self.latest("mlmon_latency_seconds", {"quantile": "1"})
            sub = " · ".join(f"{k} {_svg.fmt_seconds(v)}" for k, v in (("p50", p50), ("max", mx)) if v is not None)
            cards.append(("Latency p99, latest" + worst, _svg.fmt_seconds(p99), sub, ""))
        cps = self.latest("mlmon_calls_per_second", agg=sum)
        if cps is not None:
            rps = self.latest("mlmon_rows_per_second", agg=sum)
            cards.append(("Throughput, latest" + every, f"{_svg.fmt_number(cps)} calls/s", f"{_svg.fmt_number(rps)} rows/s" if rps is not None else "", ""))
        avail = self.latest("mlmon_availability_ratio", agg=min)
        if avail is not None:
            cards.append(("Availability, latest" + worst, _svg.fmt_ratio(avail), "succeeded within budget", "warn" if avail < 0.99 else ""))
        rss = self.latest("mlmon_process_resident_memory_bytes", agg=sum)
        if rss is not None:
            cpu = self.latest("mlmon_process_cpu_percent", agg=sum)
            cards.append(("Memory (RSS), latest" + every, _svg.fmt_bytes(rss), f"CPU {_svg.fmt_percent(cpu)}" if cpu is not None else "", ""))
        prec = self.latest("mlmon_precision", agg=min)
        if prec is None:
            prec = self.latest("mlmon_precision", {"average": "macro"}, agg=min)
        if prec is not None:
            f1 = self.latest("mlmon_f1", agg=min) or self.latest("mlmon_f1", {"average": "macro"}, agg=min)
            est = self.latest("mlmon_estimated_precision", agg=min)
            sub = " · ".join(t for t in (
                f"F1 {_svg.fmt_ratio(f1)}" if f1 is not None else "",
                f"estimated precision {_svg.fmt_ratio(est)}" if est is not None else "",
            ) if t)  # fmt: skip
            cards.append(("Precision, latest" + worst, _svg.fmt_ratio(prec), sub, ""))
        mae = self.latest("mlmon_mae")
        if mae is not None:
            rmse = self.latest("mlmon_rmse")
            cards.append(("MAE, latest" + worst, _svg.fmt_number(mae), f"RMSE {_svg.fmt_number(rmse)}" if rmse is not None else "", ""))
        labels_total = self.total("mlmon_labels_total")
        if labels_total is not None:
            cov = self.latest("mlmon_label_coverage_ratio", agg=min)
            cards.append(("Labels joined", _svg.fmt_number(labels_total), f"coverage {_svg.fmt_ratio(cov)} (latest)" if cov is not None else "", ""))
        if self.alert_rows is not None:
            firing_now = sorted({r.rule for r in self.alert_rows if r.firing_at_end})
            episodes = sum(1 for r in self.alert_rows for e in r.episodes if e.state == "firing")
            sub = ("firing at the end: " + ", ".join(firing_now)) if firing_now else f"{len(self.alert_rules)} rule{'s' if len(self.alert_rules) != 1 else ''} evaluated"
            cards.append(("Alerts fired", str(episodes), sub, "bad" if firing_now else ("warn" if episodes else "")))
        psi = self.log.select("mlmon_feature_drift_psi", {"feature": "*"})
        if psi:
            status = self.log.select("mlmon_feature_drift_status", {"feature": "*"})
            drifting = sorted({labels["feature"] for labels, _, _, ys in status if ys.size and ys[-1] >= 2})
            features = {labels["feature"] for labels, _, _, _ in psi}
            peak_labels, _, _, peak_ys = max(psi, key=lambda p: float(p[3].max()) if p[3].size else -1.0)
            sub = f"peak PSI {_svg.fmt_number(float(peak_ys.max()))} ({peak_labels['feature']})"
            if drifting:
                sub = "drifting: " + ", ".join(drifting[:4]) + (" …" if len(drifting) > 4 else "") + " · " + sub
            cards.append(("Features drifting at the end", f"{len(drifting)} of {len(features)}", sub, "bad" if drifting else ""))
        skipped = log.malformed + sum(log.newer.values())
        if skipped:
            cards.append(("Lines skipped", f"{skipped:,}", "see the notes above", "warn"))
        return "".join(
            f'<div class="card stat {cls}"><div class="label">{esc(label)}</div><div class="value">{esc(value)}</div>'
            f'<div class="sub">{esc(sub)}</div></div>'
            for label, value, sub, cls in cards
        )

    # -- alerts ------------------------------------------------------------------------------
    def collect_alerts(self) -> None:
        """Fill ``alert_rows`` (None: no rule in the log) and ``alert_rules`` (every rule seen)."""
        log = self.log
        keys = log.by_name.get("mlmon_alert_firing", [])
        rules = list(dict.fromkeys(dict(k[1]).get("rule", "?") for k in keys))
        rules += [r for r in dict.fromkeys(e.rule for e in log.events) if r not in rules]
        self.alert_rules = rules
        if not keys and not log.events:
            self.alert_rows = None
            return
        rows: dict[tuple[str, str, Labels], _AlertRow] = {}
        for key in keys:
            rule = dict(key[1]).get("rule", "?")
            series_labels = tuple(kv for kv in key[1] if kv[0] != "rule")
            row = rows.setdefault((key[2], rule, series_labels), _AlertRow(rule, key[2], series_labels))
            xs, ys = log.series[key]
            for t, v in zip(xs.tolist(), ys.tolist(), strict=True):
                if v >= 0.5:
                    row.states[t] = "firing"
        joined: dict[tuple[str, str, Labels], _AlertRow] = {}
        for e in log.events:
            best = joined.get((e.instance, e.rule, e.labels))
            if best is None:
                # The firing sample carries the labels that tell instances of a rule apart; the
                # event carries all the series' labels. Join on the sample's being a subset.
                ev_pairs = set(e.labels)
                for (r_inst, r_rule, r_labels), row in rows.items():
                    if r_inst == e.instance and r_rule == e.rule and set(r_labels) <= ev_pairs and (best is None or len(r_labels) > len(best.labels)):
                        best = row
                if best is None:
                    best = rows.setdefault((e.instance, e.rule, e.labels), _AlertRow(e.rule, e.instance, e.labels))
                joined[(e.instance, e.rule, e.labels)] = best
            if e.state == "firing" or best.states.get(e.t) != "firing":
                best.states[e.t] = e.state
            best.severity = e.severity or best.severity
            if e.message:
                best.messages[e.t] = e.message
        for row in rows.values():
            row.finish(log.stamps.get(row.instance, []))
        self.alert_rows = sorted(
            (r for r in rows.values()),
            key=lambda r: (r.episodes[0].start if r.episodes else math.inf, r.rule, r.labels, r.instance),
        )

    def alerts_section(self) -> str:
        if self.alert_rows is None:
            return self.section("alerts", "Alert timeline", _ALERT_NOTE, None)
        active = [r for r in self.alert_rows if r.episodes]
        quiet = [r for r in self.alert_rules if r not in {a.rule for a in active}]
        parts = []
        if active:
            tl_rows = []
            for r in active:
                spans = [
                    _svg.Span(e.start, e.end, e.state, f"{self.row_label(r)}: {e.state} {_utc(e.start, self.when)}–{_utc(e.end, self.when)} UTC"
                              + (" (still at the end of the log)" if e.open else "") + (f" · {e.message}" if e.message else ""))
                    for e in r.episodes[:_MAX_SPANS]
                ]  # fmt: skip
                tl_rows.append(_svg.TimelineRow(self.row_label(r), spans))
            svg = _svg.timeline(tl_rows, chart_id="alert-timeline", x_range=(self.t0, self.t1), colors=_ALERT_COLORS)
            parts.append(
                '<figure class="card wide"><figcaption><h3>When each rule was pending or firing</h3>'
                '<p class="metric">mlmon_alert_firing{rule}, alert events</p></figcaption>' + svg + "</figure>"
            )
            parts.append(self.alert_table(active))
        else:
            parts.append('<div class="card wide"><p>No rule was pending or firing in this log.</p></div>')
        if quiet:
            parts.append(
                f'<p class="note wide">Rules evaluated that never went pending or firing: {esc(", ".join(quiet))}.</p>'
            )
        return self.section("alerts", "Alert timeline", _ALERT_NOTE, "".join(parts), full=True)

    def row_label(self, r: _AlertRow) -> str:
        sel = ",".join(f"{k}={v}" for k, v in r.labels)
        text = r.rule + (f"{{{sel}}}" if sel else "")
        return f"{text} · {r.instance}" if self.multi else text

    def alert_table(self, rows: Sequence[_AlertRow]) -> str:
        episodes = sorted(((e, r) for r in rows for e in r.episodes), key=lambda er: er[0].start)
        body = []
        for e, r in episodes[:_MAX_EPISODES]:
            end = "still at the end" if e.open else _utc(e.end, self.when)
            body.append(
                f'<tr class="{esc(e.state)}"><td>{esc(self.row_label(r))}</td><td>{esc(r.severity)}</td>'
                f"<td>{esc(e.state)}</td><td>{esc(_utc(e.start, self.when))}</td><td>{esc(end)}</td>"
                f"<td>{esc(_duration(e.end - e.start))}</td><td>{esc(e.message)}</td></tr>"
            )
        more = (
            f'<p class="note">{len(episodes) - _MAX_EPISODES} more episodes not listed.</p>'
            if len(episodes) > _MAX_EPISODES else ""
        )  # fmt: skip
        return (
            '<div class="card wide table-card"><table class="alerts"><thead><tr><th>rule</th><th>severity</th>'
            "<th>state</th><th>from (UTC)</th><th>to</th><th>for</th><th>last message</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table>" + more + "</div>"
        )

    # -- drift -------------------------------------------------------------------------------
    def drift_section(self) -> str:
        log = self.log
        rows_src: list[tuple[str, str, FloatArray, FloatArray]] = []
        for labels, inst, xs, ys in log.select("mlmon_feature_drift_psi", {"feature": "*"}):
            rows_src.append((labels["feature"], inst, xs, ys))
        for _, inst, xs, ys in log.select("mlmon_output_drift_psi"):
            rows_src.append(("(model outputs)", inst, xs, ys))
        if not rows_src:
            return self.section("drift", "Drift", _DRIFT_NOTE, None)
        note = ""
        if len(rows_src) > _MAX_HEAT_ROWS:
            keep = sorted(range(len(rows_src)), key=lambda i: -float(rows_src[i][3].max()))[:_MAX_HEAT_ROWS]
            note = f'<p class="note">{len(rows_src) - _MAX_HEAT_ROWS} rows with the lowest peak PSI not drawn.</p>'
            rows_src = [rows_src[i] for i in sorted(keep)]
        edges = self.heat_edges()
        heat_rows = []
        for feature, inst, xs, ys in rows_src:
            label = f"{feature} · {inst}" if self.multi else feature
            heat_rows.append(_svg.HeatRow(label, _heat_cells(edges, xs, ys)))
        svg = _svg.heat_map(heat_rows, chart_id="drift-heatmap", edges=edges.tolist(), stops=_PSI_STOPS,
                            legend_ticks=_PSI_TICKS, value_name="PSI", value_format=_svg.fmt_number)  # fmt: skip
        fig = (
            '<figure class="card wide"><figcaption><h3>Population stability index per feature over time</h3>'
            '<p class="metric">mlmon_feature_drift_psi{feature}, mlmon_output_drift_psi · each cell: the highest '
            "value in its time bin</p></figcaption>" + svg + note + "</figure>"
        )
        return self.section("drift", "Drift", _DRIFT_NOTE, fig + self.drift_table(rows_src), full=True)

    def heat_edges(self) -> FloatArray:
        """Time-bin edges: one column per snapshot of a single instance, else even bins."""
        log = self.log
        if len(log.stamps) == 1:
            stamps = np.unique(np.asarray(next(iter(log.stamps.values()))))
            if stamps.size <= _MAX_HEAT_BINS:
                mids = (stamps[1:] + stamps[:-1]) / 2
                return np.concatenate(([self.t0], mids, [self.t1]))
        per_instance = max(len(s) for s in log.stamps.values())
        n_bins = max(1, min(_MAX_HEAT_BINS, per_instance))
        return np.linspace(self.t0, self.t1, n_bins + 1)

    def drift_table(self, rows_src: Sequence[tuple[str, str, FloatArray, FloatArray]]) -> str:
        status: dict[tuple[str, str], float] = {}
        for labels, inst, _, ys in self.log.select("mlmon_feature_drift_status", {"feature": "*"}):
            if ys.size:
                status[(labels["feature"], inst)] = float(ys[-1])
        body = []
        for feature, inst, xs, ys in rows_src:
            i = int(np.argmax(ys))
            st = status.get((feature, inst))
            word = "–" if st is None else _STATUS.get(int(st), f"{st:g}")
            who = f"{feature} · {inst}" if self.multi else feature
            body.append(
                f'<tr class="status-{esc(word)}"><td>{esc(who)}</td><td>{esc(_svg.fmt_number(float(ys[-1])))}</td>'
                f"<td>{esc(_svg.fmt_number(float(ys[i])))} at {esc(_utc(float(xs[i]), self.when))}</td><td>{esc(word)}</td></tr>"
            )
        return (
            '<div class="card wide table-card"><table class="drift"><thead><tr><th>feature</th><th>PSI, latest</th>'
            "<th>PSI, peak (UTC)</th><th>status at the end</th></tr></thead><tbody>" + "".join(body) + "</tbody></table></div>"
        )

    # -- whole page --------------------------------------------------------------------------
    def build_notes(self) -> None:
        log = self.log
        if log.malformed:
            whys = "; ".join(
                f"{why}: {seen[0]} (line{'s' if seen[0] > 1 else ''} "
                + ", ".join(str(n) for n in seen[1:]) + (", …" if seen[0] > len(seen) - 1 else "") + ")"
                for why, seen in log.malformed_why.items()
            )  # fmt: skip
            self.notes.append(f"Skipped {log.malformed} malformed line{'s' if log.malformed > 1 else ''} — {whys}.")
        if log.newer:
            n = sum(log.newer.values())
            versions = ", ".join(str(v) for v in sorted(log.newer))
            self.notes.append(
                f"Skipped {n} line{'s' if n > 1 else ''} written by a newer mlmon (format version {versions}); "
                f"this mlmon reads format version {FORMAT_VERSION}. Upgrade mlmon to report on them."
            )
        if log.duplicates:
            self.notes.append(f"Ignored {log.duplicates} duplicate line{'s' if log.duplicates > 1 else ''} (a snapshot seen before).")
        others = {m: n for m, n in log.models.items() if m != log.model}
        if others:
            listed = ", ".join(f"{m} ({n} snapshot{'s' if n > 1 else ''})" for m, n in others.items())
            self.notes.append(f"This log also holds other models: {listed}. Pick one with --model NAME.")
        if log.hidden:
            self.notes.append(
                f"Showing instance {', '.join(log.instances)} only; hidden by --instance: {', '.join(log.hidden)}."
            )
        if len(log.versions) > 1:
            listed = ", ".join(f"{v} ({n})" for v, n in log.versions.items())
            self.notes.append(f"Several model versions in this log (snapshots): {listed}.")

    def html(self) -> str:
        log = self.log
        assert log.model is not None
        self.collect_alerts()
        self.build_notes()
        body = [self.alerts_section()]
        for sid, title, empty, charts in _SECTIONS:
            if sid == "outcomes":
                body.append(self.drift_section())
            body.append(self.chart_section(sid, title, empty, charts))
        cards = self.cards()
        versions = [v for v in log.versions if v != "–"]
        version = f'<span class="version">version {esc(", ".join(versions))}</span>' if versions else ""
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.notes)
        nav = "".join(
            f'<a href="#{sid}"{_EMPTY_CLASS if sid in self.omitted else ""}>{esc(_SECTION_TITLES[sid])}</a>'
            for sid in ("alerts", "service", "resources", "outputs", "quality", "features", "drift", "outcomes")
        )
        internal = [
            (label, self.total(name))
            for label, name in (("internal errors", "mlmon_internal_errors_total"), ("dropped records", "mlmon_dropped_total"), ("emit errors", "mlmon_emit_errors_total"))
        ]  # fmt: skip
        internal_text = ", ".join(f"{label} {_svg.fmt_number(v)}" for label, v in internal if v is not None)
        from mlmon import __version__

        return "".join((
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            # No network, no script: even a label that slipped past escaping could not run.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="mlmon {esc(__version__)}">',
            f"<title>mlmon report: {esc(log.model)}</title><style>{_CSS}</style></head><body>",
            f'<header><h1>mlmon report: <span class="model">{esc(log.model)}</span> {version}</h1>',
            f'<p class="range">{esc(_utc(log.start))} – {esc(_utc(log.end))} UTC · {esc(self.source)}</p>',
            f"<nav>{nav}</nav></header>",
            f'<ul class="notes">{notes}</ul>' if notes else "",
            f'<section id="summary" data-section="summary" class="cards">{cards}</section>',
            *body,
            f'<footer>Generated by mlmon {esc(__version__)} at {esc(_utc(time.time()))} UTC from {esc(self.source)} · '
            f"{len(log.instances)} instance{'s' if len(log.instances) > 1 else ''}: {esc(', '.join(log.instances))}"
            + (f" · mlmon itself: {esc(internal_text)}" if internal_text else "")
            + f" · charts show at most {self.max_points} points per series (min and max kept)</footer>",
            "</body></html>\n",
        ))  # fmt: skip


@attrs.define(slots=True)
class _Episode:
    state: str
    start: float
    end: float
    open: bool
    message: str


class _AlertRow:
    """One alert instance (rule, series labels, process) and its states at each snapshot."""

    def __init__(self, rule: str, instance: str, labels: Labels) -> None:
        self.rule = rule
        self.instance = instance
        self.labels = labels
        self.severity = ""
        self.states: dict[float, str] = {}
        self.messages: dict[float, str] = {}
        self.episodes: list[_Episode] = []
        self.firing_at_end = False

    def finish(self, stamps: Sequence[float]) -> None:
        """Turn per-snapshot states into episodes: runs of one state, ended by the next snapshot."""
        times = sorted(set(stamps) | set(self.states))
        current: _Episode | None = None
        for t in times:
            state = self.states.get(t, "ok")
            if current is not None and state != current.state:
                current.end, current.open = t, False
                current = None
            if current is None and state != "ok":
                current = _Episode(state, t, t, True, "")
                self.episodes.append(current)
            if current is not None:
                current.end = t
                current.message = self.messages.get(t, current.message)
        self.firing_at_end = bool(self.episodes) and self.episodes[-1].open and self.episodes[-1].state == "firing"


_CSS = """
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9;--card:#fff;--bad:#dc2626;--warn:#d97706}
*{box-sizing:border-box}
body{margin:0;padding:0 24px 32px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 0 6px}
h1{font-size:22px;margin:0 0 4px;font-weight:600}
h1 .version{font-size:14px;color:var(--muted);font-weight:400;margin-left:8px}
h2{font-size:17px;margin:26px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:14px;margin:0;font-weight:600}
.range,.metric,.note,.sub,footer{color:var(--muted)}
.range{margin:0 0 8px}
nav a{display:inline-block;margin:0 14px 0 0;color:#2563eb;text-decoration:none;font-size:13px}
nav a.empty{color:var(--muted)}
.notes{background:#fffbeb;border:1px solid #fcd34d;border-radius:8px;padding:10px 14px 10px 30px;margin:8px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px;margin-top:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.stat .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.stat .value{font-size:24px;font-weight:600;margin:2px 0;font-variant-numeric:tabular-nums}
.stat .sub{font-size:12px}
.stat.bad{border-left:4px solid var(--bad)}.stat.bad .value{color:var(--bad)}
.stat.warn{border-left:4px solid var(--warn)}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.charts.full{grid-template-columns:1fr}
figure{margin:0}
figcaption{margin-bottom:6px}
.metric{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin:2px 0 0}
svg.chart{width:100%;height:auto;display:block;font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#374151}
svg .plot-bg{fill:#fcfcfd}
svg .grid{stroke:#eceef1;stroke-width:1}
svg .axis-line,svg .tick{stroke:#9ca3af;stroke-width:1}
svg .band{fill:#f9fafb}svg .band.odd{fill:#fff}
svg .scale-note{fill:#9ca3af;font-style:italic}
section.empty .note{margin:0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:500}
tr.firing td:nth-child(3){color:var(--bad);font-weight:600}
tr.pending td:nth-child(3){color:var(--warn)}
tr.status-drift td:last-child{color:var(--bad);font-weight:600}
tr.status-warning td:last-child{color:var(--warn)}
.table-card{margin-top:12px;overflow-x:auto}
footer{margin-top:30px;font-size:12px;border-top:1px solid var(--line);padding-top:10px}
"""


# ================================================================================== API


def _check_max_points(max_points: int) -> None:
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 10:
        raise ValueError(f"max_points must be an int >= 10, got {max_points!r}")


def _instances_arg(instance: str | Sequence[str] | None) -> list[str] | None:
    if instance is None:
        return None
    return [instance] if isinstance(instance, str) else [str(i) for i in instance]


def _read(lines: Iterable[str], label: str, model: str | None, instance: str | Sequence[str] | None) -> _Log:
    wanted = _instances_arg(instance)
    log = _Log(model, wanted)
    for lineno, text in enumerate(lines, 1):
        log.feed(lineno, text)
    log.finish()
    if log.lines == 0:
        raise ReportError(f"{label} is empty: no snapshots to report on (JsonlEmitter writes a line per flush)")
    if not log.models:
        if log.newer and not log.malformed:
            versions = ", ".join(str(v) for v in sorted(log.newer))
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
    if model is not None and model not in log.models:
        raise ReportError(f"model {model!r} is not in {label}; models there: {', '.join(log.models)}")
    if not log.instances:
        if log.duplicates:
            raise ReportError(f"every snapshot of model {log.model!r} in {label} is a duplicate")
        raise ReportError(
            f"no snapshot of model {log.model!r} from instance {', '.join(wanted or [])} in {label}; "
            f"instances there: {', '.join(log.hidden)}"
        )
    return log


def _build(lines: Iterable[str], label: str, model: str | None, instance: str | Sequence[str] | None, max_points: int) -> tuple[str, ReportInfo]:
    _check_max_points(max_points)
    log = _read(lines, label, model, instance)
    page = _Page(log, label, max_points)
    text = page.html()
    assert log.model is not None
    info = ReportInfo(
        output=None,
        size=len(text.encode("utf-8")),
        model=log.model,
        models=tuple(log.models),
        instances=tuple(log.instances),
        snapshots=sum(log.instances.values()),
        start=log.start,
        end=log.end,
        malformed=log.malformed,
        newer=sum(log.newer.values()),
        newer_versions=tuple(sorted(log.newer)),
        duplicates=log.duplicates,
        sections=tuple(page.sections),
        omitted=tuple(page.omitted),
        notes=tuple(page.notes),
    )
    return text, info


def build(
    source: Source,
    model: str | None = None,
    instance: str | Sequence[str] | None = None,
    *,
    max_points: int = MAX_POINTS,
) -> tuple[str, ReportInfo]:
    """Like :func:`render`, and also return the :class:`ReportInfo` (with ``output=None``).

    >>> page, info = build(['{"mlmon": 1, "model": "m", "timestamp": 0, "samples": []}', "{oops"])
    >>> info.model, info.snapshots, info.malformed
    ('m', 1, 1)
    """
    lines, label = _lines_of(source)
    return _build(lines, label, model, instance, max_points)


def render(
    path_or_lines: Source,
    model: str | None = None,
    instance: str | Sequence[str] | None = None,
    *,
    max_points: int = MAX_POINTS,
) -> str:
    """The HTML report of a JSON-lines log, as one self-contained string.

    Args:
        path_or_lines: the log written by :class:`~mlmon.emitters.JsonlEmitter`: a path, or an
            iterable of its lines.
        model: the model to report on; default the first model in the log (the page lists the
            others).
        instance: show only this instance (or these instances); default all, one series each.
        max_points: at most this many points per series in a chart (min and max per bucket
            are kept, so spikes stay visible).

    Returns:
        The HTML page.

    Raises:
        ReportError: the log is empty, holds only malformed lines or lines of a newer format
            version, or lacks the model or instance asked for.
        OSError: the file cannot be read.

    >>> line = ('{"mlmon": 1, "model": "fraud", "instance": "h:1", "timestamp": 1700000000,'
    ...         ' "samples": [["mlmon_calls_per_second", {}, 12.5]]}')
    >>> page = render([line, '{"truncated": '])
    >>> 'data-series="calls/s"' in page, "Skipped 1 malformed line" in page
    (True, True)
    """
    return build(path_or_lines, model, instance, max_points=max_points)[0]


def write(
    path: Source,
    out_path: str | os.PathLike[str],
    model: str | None = None,
    instance: str | Sequence[str] | None = None,
    *,
    max_points: int = MAX_POINTS,
) -> ReportInfo:
    """Render the report of ``path`` (see :func:`render`) into the file ``out_path``.

    The file is replaced atomically: a reader never sees half a page, and a failed run leaves an
    earlier report in place.

    Returns:
        A :class:`ReportInfo`: what was drawn and what was skipped.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> info = write(['{"mlmon": 1, "model": "m", "timestamp": 0, "samples": []}'],
    ...              os.path.join(d, "r.html"))
    >>> info.model, os.path.getsize(info.output) == info.size
    ('m', True)
    """
    text, info = build(path, model, instance, max_points=max_points)
    return _write_text(text, Path(out_path), info)


def _default_output(first: str) -> Path:
    p = Path(first)
    return p.with_suffix(".html") if p.suffix in (".jsonl", ".json", ".log", ".ndjson") else p.with_name(p.name + ".html")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlmon report METRICS.jsonl [-o report.html] [--model NAME] [--instance ID]``.

    Returns the exit code: 0 with a report written, 1 when there is nothing to report on (empty
    log, only malformed or newer lines, unknown model or instance) or a file cannot be read or
    written, 2 for bad arguments.

    >>> main(["/nonexistent/metrics.jsonl"])
    1
    """
    ap = argparse.ArgumentParser(
        prog="python -m mlmon report",
        description="Turn a JsonlEmitter log into one self-contained HTML report (inline SVG charts, no scripts).",
    )
    ap.add_argument("metrics", nargs="+", metavar="METRICS.jsonl",
                    help="JSON-lines logs written by JsonlEmitter; several files (e.g. rotated ones) are read as one log")  # fmt: skip
    ap.add_argument("-o", "--output", help="HTML file to write (default: the first log's name with .html)")
    ap.add_argument("--model", help="the model to report on (default: the first in the log)")
    ap.add_argument("--instance", action="append", metavar="ID", help="show only this instance (repeatable)")
    ap.add_argument("--max-points", type=int, default=MAX_POINTS, help=f"points per series in charts (default {MAX_POINTS})")
    args = ap.parse_args(argv)
    if args.max_points < 10:
        ap.error(f"--max-points must be at least 10, got {args.max_points}")
    out = Path(args.output) if args.output else _default_output(args.metrics[0])
    if any(Path(p).resolve() == out.resolve() for p in args.metrics):
        ap.error(f"the report {out} would overwrite a log it reads")
    label = ", ".join(Path(p).name for p in args.metrics)
    lines = itertools.chain.from_iterable(_read_file(Path(p)) for p in args.metrics)
    try:
        text, info = _build(lines, label, args.model, args.instance, args.max_points)
        info = _write_text(text, out, info)
    except ReportError as exc:
        print(f"mlmon report: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"mlmon report: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for note in info.notes:
        print(f"mlmon report: note: {note}", file=sys.stderr)
    print(info.summary())
    return 0


def _write_text(text: str, out: Path, info: ReportInfo) -> ReportInfo:
    size = atomic_write(out, text)
    return attrs.evolve(info, output=str(out), size=size)


if __name__ == "__main__":  # pragma: no cover - `python -m mlmon.report`, until `mlmon report` is wired
    sys.exit(main())
