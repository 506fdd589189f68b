"""The Prometheus text exposition format 0.0.4: :func:`render_exposition` and what it needs.

Used by :class:`~mlmon.emitters.prometheus.PrometheusEmitter` (the endpoint and the push);
:mod:`mlmon.emitters.prometheus` re-exports the public names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from mlmon.naming import (
    PrometheusRenderer,
    escape_help,
    format_prometheus_value,
    identity_problem,
    series_problem,
)
from mlmon.snapshot import CATALOG, Labels, Snapshot

__all__ = ["CONTENT_TYPE", "render_exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the text exposition format the endpoint serves."""


def _clean(snapshot: Snapshot) -> tuple[Snapshot, int]:
    """The snapshot without the series no exposition can carry, and how many were removed.

    A name or label value with an unpaired surrogate (``json.loads`` of a request body can
    produce one), a NUL or more than ``MAX_NAME_CHARS`` characters, or a value that is not a
    number: that series alone is left out, never the whole snapshot.
    """
    if identity_problem(snapshot.model, snapshot.version, snapshot.instance):
        return attrs.evolve(snapshot, samples=()), len(snapshot.samples)
    samples = snapshot.samples
    good = [s for s in samples if not series_problem(s.name, s.labels, s.value)]
    if len(good) == len(samples):
        return snapshot, 0
    return attrs.evolve(snapshot, samples=tuple(good)), len(samples) - len(good)


class _Family:
    __slots__ = ("help", "hist", "lines", "name", "type")

    def __init__(self, name: str, type_: str, help_: str) -> None:
        self.name = name
        self.type = type_
        self.help = help_
        self.lines: list[str] = []
        # histogram: (model, version, instance, labels without le) -> [buckets, sum, count]
        self.hist: dict[tuple[str, str | None, str, Labels], list[Any]] = {}


def _help_for(name: str, family: str, type_: str) -> str:
    if type_ == "histogram":
        info = CATALOG.get(family + "_bucket") or CATALOG.get(name)
    else:
        info = CATALOG.get(name)
    return info.help if info is not None else f"mlmon metric {name}."


def render_exposition(
    snapshots: Iterable[Snapshot], renderer: PrometheusRenderer | None = None
) -> str:
    """The text exposition (format 0.0.4) of one or more snapshots, one family per name.

    Histogram series (``*_bucket``/``_sum``/``_count``) form one ``histogram`` family with a
    ``+Inf`` bucket equal to ``_count``; window quantiles form ``summary`` families (the latency
    quantiles as ``mlmon_latency_window_seconds``, since the histogram owns
    ``mlmon_latency_seconds``). Every series carries ``model``, ``version`` (when not None) and
    ``instance``. A series whose name or label values cannot be encoded (unpaired surrogate,
    NUL, over 1024 characters) or whose value is not a number is left out.

    >>> from mlmon.snapshot import Sample, Snapshot
    >>> snap = Snapshot("fraud", None, "web1:7", 0.0, 60.0, (
    ...     Sample.make("mlmon_calls_total", 3),
    ...     Sample.make("mlmon_latency_seconds_bucket", 2, le="0.1"),
    ...     Sample.make("mlmon_latency_seconds_sum", 0.25),
    ...     Sample.make("mlmon_latency_seconds_count", 3)))
    >>> print(render_exposition([snap]), end="")
    # HELP mlmon_calls_total Calls of the tracked predict function.
    # TYPE mlmon_calls_total counter
    mlmon_calls_total{model="fraud",instance="web1:7"} 3
    # HELP mlmon_latency_seconds Cumulative latency histogram: calls with latency <= le.
    # TYPE mlmon_latency_seconds histogram
    mlmon_latency_seconds_bucket{model="fraud",instance="web1:7",le="0.1"} 2
    mlmon_latency_seconds_bucket{model="fraud",instance="web1:7",le="+Inf"} 3
    mlmon_latency_seconds_sum{model="fraud",instance="web1:7"} 0.25
    mlmon_latency_seconds_count{model="fraud",instance="web1:7"} 3
    """
    r = renderer if renderer is not None else PrometheusRenderer()
    fams: dict[str, _Family] = {}
    for snap in snapshots:
        snap, _ = _clean(snap)  # a series no exposition can carry is left out, alone
        model, version, instance = snap.model, snap.version, snap.instance
        for s in snap.samples:
            fam_name, type_, sample_name = r.family(s.name, s.labels)
            fam = fams.get(fam_name)
            if fam is None:
                fam = fams[fam_name] = _Family(fam_name, type_, _help_for(s.name, fam_name, type_))
            elif fam.type != type_:
                continue  # a name that would break the family it collides with
            if type_ == "histogram":
                _add_histogram_sample(fam, model, version, instance, s.name, s.labels, s.value)
                continue
            if type_ == "summary" and not any(k == "quantile" for k, _ in s.labels):
                continue
            fam.lines.append(
                f"{sample_name}{r.labels(model, version, instance, s.labels)} "
                f"{format_prometheus_value(s.value)}"
            )
    out: list[str] = []
    for fam in fams.values():
        if fam.type == "histogram":
            _render_histogram(fam, r)
        if not fam.lines:
            continue
        out.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        out.append(f"# TYPE {fam.name} {fam.type}")
        out.extend(fam.lines)
    return "\n".join(out) + "\n" if out else ""


def _add_histogram_sample(
    fam: _Family,
    model: str,
    version: str | None,
    instance: str,
    name: str,
    labels: Labels,
    value: float,
) -> None:
    rest = tuple(kv for kv in labels if kv[0] != "le")
    group = fam.hist.setdefault((model, version, instance, rest), [[], None, None])
    if name.endswith("_bucket"):
        le = dict(labels).get("le")
        if le is None:
            return
        try:
            bound = float(le)
        except ValueError:
            return
        if not math.isnan(bound):
            group[0].append((bound, value))
    elif name.endswith("_sum"):
        group[1] = value
    elif name.endswith("_count"):
        group[2] = value


def _render_histogram(fam: _Family, r: PrometheusRenderer) -> None:
    base = fam.name
    for (model, version, instance, rest), (buckets, total, count) in fam.hist.items():
        buckets.sort(key=lambda b: b[0])
        finite = [(b, v) for b, v in buckets if not math.isinf(b)]
        inf = [v for b, v in buckets if math.isinf(b) and b > 0]
        if count is None:
            count = inf[-1] if inf else (finite[-1][1] if finite else None)
        if count is None:
            continue
        for bound, value in finite:
            le = format_prometheus_value(bound)
            fam.lines.append(
                f"{base}_bucket{r.labels(model, version, instance, (*rest, ('le', le)))} "
                f"{format_prometheus_value(value)}"
            )
        # The +Inf bucket is _count by definition.
        fam.lines.append(
            f"{base}_bucket{r.labels(model, version, instance, (*rest, ('le', '+Inf')))} "
            f"{format_prometheus_value(count)}"
        )
        ident = r.labels(model, version, instance, rest)
        if total is not None:
            fam.lines.append(f"{base}_sum{ident} {format_prometheus_value(total)}")
        fam.lines.append(f"{base}_count{ident} {format_prometheus_value(count)}")
