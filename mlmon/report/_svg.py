"""Small inline-SVG builders for the HTML report: line charts, a heat map and a timeline.

Everything here returns markup as a string, escapes every piece of text it is given, and needs no
script to display. Charts carry ``data-*`` attributes (the plot rectangle and the data domains)
so a test, or a curious reader, can map a polyline's pixels back to the data.

>>> svg = line_chart([Series("p99", (0.0, 10.0), (1.0, 3.0), color="#2563eb")],
...                  chart_id="demo", x_range=(0.0, 10.0), y_format=fmt_number)
>>> svg.startswith("<svg") and 'data-series="p99"' in svg
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import attrs

from mlmon.report._format import (
    _FONT_W,
    PALETTE,
    Formatter,
    _c,
    _log_ticks,
    _time_label,
    esc,
    fmt_bytes,
    fmt_number,
    fmt_percent,
    fmt_ratio,
    fmt_seconds,
    nice_ticks,
    time_ticks,
)

_LIMIT = 1e300

__all__ = [
    "PALETTE",
    "HeatRow",
    "Series",
    "Span",
    "TimelineRow",
    "esc",
    "fmt_bytes",
    "fmt_number",
    "fmt_percent",
    "fmt_ratio",
    "fmt_seconds",
    "heat_map",
    "line_chart",
    "nice_ticks",
    "reliability_chart",
    "scale_color",
    "time_ticks",
    "timeline",
]

# ------------------------------------------------------------------------------ line chart


@attrs.frozen(slots=True)
class Series:
    """One line of a chart: legend text, x (Unix seconds) and y values, and its style.

    Attributes:
        name: legend text (escaped when rendered).
        xs, ys: the points, in time order; non-finite y values break the line.
        color: stroke colour.
        dashed: draw a dashed line (estimates, references).
        data: extra ``data-*`` attributes for the series group (keys without the prefix).
        gap: a jump in x wider than this breaks the line; None: three times the median step
            of the points given (pass ``math.inf`` when breaks are already marked with NaN, as
            for downsampled data whose steps are no longer regular).
    """

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = PALETTE[0]
    dashed: bool = False
    data: Mapping[str, str] = attrs.field(factory=dict)
    gap: float | None = None


def _segments(xs: Sequence[float], ys: Sequence[float], gap: float | None = None) -> list[list[tuple[float, float]]]:
    """Split a series where values are missing or where time jumps over a gap."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(x)]
    if len(pts) < 2:
        return [[p for p in pts if math.isfinite(p[1])]] if pts else []
    if gap is None:
        steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(pts) if b[0] > a[0])
        # A process that stopped reporting for a while shows as a gap, not a straight line.
        gap = 3.0 * steps[len(steps) // 2] if steps else math.inf
    out: list[list[tuple[float, float]]] = [[]]
    prev_x: float | None = None
    for x, y in pts:
        if not math.isfinite(y):
            if out[-1]:
                out.append([])
            prev_x = None
            continue
        if prev_x is not None and x - prev_x > gap and out[-1]:
            out.append([])
        out[-1].append((x, y))
        prev_x = x
    return [s for s in out if s]


def _legend(items: Sequence[tuple[str, str, bool]], x0: float, y0: float, width: float) -> tuple[str, float]:
    """Legend swatches and names laid out in rows; returns (markup, height used)."""
    parts = []
    x, y = x0, y0
    row_h = 16.0
    for name, color, dashed in items:
        label = name if len(name) <= 60 else name[:57] + "…"
        w = 22 + len(label) * _FONT_W + 14
        if x > x0 and x + w > x0 + width:
            x, y = x0, y + row_h
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(
            f'<g class="legend-item"><line x1="{_c(x)}" y1="{_c(y)}" x2="{_c(x + 16)}" y2="{_c(y)}" '
            f'stroke="{esc(color)}" stroke-width="2.5"{dash}/>'
            f'<text x="{_c(x + 21)}" y="{_c(y + 4)}">{esc(label)}</text></g>'
        )
        x += w
    return "".join(parts), (y - y0) + row_h if items else 0.0


def line_chart(
    series: Sequence[Series],
    *,
    chart_id: str,
    x_range: tuple[float, float],
    y_format: Formatter,
    width: int = 640,
    plot_height: int = 170,
    zero_based: bool = True,
    y_cap: float | None = None,
    y_scale: str = "linear",
    markers: int = 60,
    x_ticks: int = 6,
    y_ticks: int = 5,
    legend: bool = True,
) -> str:
    """An SVG line chart with a time x axis, a y axis with round ticks, and a legend.

    Args:
        series: the lines, drawn in order (each a ``<g class="series" data-series=...>`` holding
            one ``<polyline>`` per unbroken stretch, or a ``<circle>`` for a lone point).
        chart_id: goes into ``data-chart`` and keeps ids unique in the page.
        x_range: (start, end) Unix seconds shared by the charts of a report, so they line up.
        y_format: formats tick labels (``fmt_ratio``, ``fmt_seconds``, ...).
        width: total width in px; the height follows from ``plot_height`` and the legend.
        zero_based: start the y axis at 0 when no value is negative.
        y_cap: never extend the y axis past this (1.0 for ratios) unless the data does.
        y_scale: ``"linear"``, ``"log"`` (values <= 0 are left out), or ``"auto"``: log when the
            positive values span more than a factor of 50 (a latency max far above the median).
        markers: draw a dot on every point when a series has at most this many points.
        x_ticks, y_ticks: about how many ticks each axis gets (fewer for a small chart).
        legend: draw the legend (a small chart of one series needs none: its title says it).

    Returns:
        ``<svg ...>`` markup. The ``data-plot`` attribute holds ``left top width height`` of the
        plot area, ``data-x-domain`` and ``data-y-domain`` the values at its edges, and
        ``data-y-scale`` is ``linear`` or ``log``.
    """
    left, right, top = 62.0, 16.0, 12.0
    pw = width - left - right
    ph = float(plot_height)
    t0, t1 = x_range
    if not t1 > t0:
        t0, t1 = t0 - 1.0, t0 + 1.0
    # Values beyond +-1e300 are drawn as gaps, like non-finite ones: an axis spanning them
    # would overflow (1e308 - -1e308 is inf), and no metric mlmon writes gets there.
    series = [attrs.evolve(s, ys=[y if abs(y) < _LIMIT else math.nan for y in s.ys]) for s in series]
    finite = [y for s in series for y in s.ys if math.isfinite(y)]
    positive = [y for y in finite if y > 0]
    log = y_scale == "log" or (
        y_scale == "auto" and len(positive) == len(finite) and bool(positive) and max(positive) > 50 * min(positive)
    )
    if log and positive:
        ticks = _log_ticks(min(positive), max(positive))
    else:
        log = False
        lo = min(finite) if finite else 0.0
        hi = max(finite) if finite else 1.0
        if zero_based and lo >= 0:
            lo = 0.0
            if hi == 0:
                hi = y_cap if y_cap is not None else 1.0
        ticks = nice_ticks(lo, hi, y_ticks)
        if y_cap is not None and hi <= y_cap and ticks[-1] > y_cap:
            ticks = [t for t in ticks if t <= y_cap]
            if ticks[-1] < y_cap:
                ticks.append(y_cap)
    y0, y1 = ticks[0], ticks[-1]
    if y1 <= y0:
        y1 = y0 + 1.0
    f0, f1 = (math.log10(y0), math.log10(y1)) if log else (y0, y1)

    def px(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def py(v: float) -> float:
        return top + ph - ((math.log10(v) if log else v) - f0) / (f1 - f0) * ph

    out: list[str] = []
    bottom = top + ph
    # grid and y axis
    out.append('<g class="axis y-axis">')
    for v in ticks:
        y = py(v)
        out.append(
            f'<line class="grid" x1="{_c(left)}" y1="{_c(y)}" x2="{_c(left + pw)}" y2="{_c(y)}"/>'
            f'<text x="{_c(left - 6)}" y="{_c(y + 4)}" text-anchor="end">{esc(y_format(v))}</text>'
        )
    if log:
        out.append(f'<text class="scale-note" x="{_c(left + pw - 4)}" y="{_c(top + 11)}" text-anchor="end">log scale</text>')
    out.append("</g>")
    tticks, tfmt = time_ticks(t0, t1, x_ticks)
    out.append('<g class="axis x-axis">')
    out.append(f'<line class="axis-line" x1="{_c(left)}" y1="{_c(bottom)}" x2="{_c(left + pw)}" y2="{_c(bottom)}"/>')
    for t in tticks:
        x = px(t)
        out.append(
            f'<line class="tick" x1="{_c(x)}" y1="{_c(bottom)}" x2="{_c(x)}" y2="{_c(bottom + 4)}"/>'
            f'<text x="{_c(x)}" y="{_c(bottom + 16)}" text-anchor="middle">{esc(_time_label(t, tfmt))}</text>'
        )
    out.append("</g>")
    # series
    out.append(f'<g class="plot" clip-path="url(#clip-{esc(chart_id)})">')
    for s in series:
        ys = [y if y > 0 else math.nan for y in s.ys] if log else s.ys
        extra = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in s.data.items())
        n = sum(1 for y in s.ys if math.isfinite(y))
        last = next((y for y in reversed(s.ys) if math.isfinite(y)), math.nan)
        out.append(
            f'<g class="series" data-series="{esc(s.name)}" data-points="{n}"{extra}>'
            f"<title>{esc(s.name)}: last {esc(y_format(last))}</title>"
        )
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for seg in _segments(s.xs, ys, s.gap):
            if len(seg) == 1:
                x, y = seg[0]
                out.append(f'<circle cx="{_c(px(x))}" cy="{_c(py(y))}" r="3" fill="{esc(s.color)}"/>')
                continue
            pts = " ".join(f"{_c(px(x))},{_c(py(y))}" for x, y in seg)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{esc(s.color)}" stroke-width="1.8"{dash}/>')
        if 1 < n <= markers:
            for x, y in zip(s.xs, ys, strict=True):
                if math.isfinite(y):
                    out.append(f'<circle class="marker" cx="{_c(px(x))}" cy="{_c(py(y))}" r="2" fill="{esc(s.color)}"/>')
        out.append("</g>")
    out.append("</g>")
    items = [(s.name, s.color, s.dashed) for s in series] if legend else []
    legend_svg, lh = _legend(items, left, bottom + 36, pw)
    height = bottom + 36 + lh + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart line-chart" data-chart="{esc(chart_id)}" '
        f'width="{width}" height="{_c(height)}" viewBox="0 0 {width} {_c(height)}" role="img" '
        f'data-plot="{_c(left)} {_c(top)} {_c(pw)} {_c(ph)}" data-x-domain="{t0!r} {t1!r}" '
        f'data-y-domain="{y0!r} {y1!r}" data-y-scale="{"log" if log else "linear"}">'
        f'<defs><clipPath id="clip-{esc(chart_id)}"><rect x="{_c(left - 4)}" y="{_c(top - 4)}" '
        f'width="{_c(pw + 8)}" height="{_c(ph + 8)}"/></clipPath></defs>'
        f'<rect class="plot-bg" x="{_c(left)}" y="{_c(top)}" width="{_c(pw)}" height="{_c(ph)}"/>'
        + "".join(out)
        + f'<g class="legend">{legend_svg}</g></svg>'
    )


# ------------------------------------------------------------------------------ calibration


def reliability_chart(
    series: Sequence[Series], *, chart_id: str, size: int = 300, width: int = 640
) -> str:
    """A calibration (reliability) chart: mean score (x) against the share of positives (y) per
    score bin, both on [0, 1], with the diagonal of perfect calibration dashed.

    ``series`` hold the points (``xs`` mean scores, ``ys`` observed shares), one series per
    instance. The markup follows :func:`line_chart`'s conventions (``data-plot``,
    ``data-x-domain``, ``data-y-domain``, a ``<g class="series">`` per series with its
    ``<polyline>`` and one ``<circle class="marker">`` per point).
    """
    left, top = 62.0, 12.0
    ph = pw = float(size)

    def px(v: float) -> float:
        return left + v * pw

    def py(v: float) -> float:
        return top + ph - v * ph

    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    bottom = top + ph
    out: list[str] = ['<g class="axis y-axis">']
    for v in ticks:
        out.append(
            f'<line class="grid" x1="{_c(left)}" y1="{_c(py(v))}" x2="{_c(left + pw)}" y2="{_c(py(v))}"/>'
            f'<text x="{_c(left - 6)}" y="{_c(py(v) + 4)}" text-anchor="end">{esc(fmt_ratio(v))}</text>'
        )
    out.append(f'<text class="scale-note" x="{_c(left + 4)}" y="{_c(top + 11)}">share of positives</text>')
    out.append('</g><g class="axis x-axis">')
    out.append(f'<line class="axis-line" x1="{_c(left)}" y1="{_c(bottom)}" x2="{_c(left + pw)}" y2="{_c(bottom)}"/>')
    for v in ticks:
        out.append(
            f'<line class="tick" x1="{_c(px(v))}" y1="{_c(bottom)}" x2="{_c(px(v))}" y2="{_c(bottom + 4)}"/>'
            f'<text x="{_c(px(v))}" y="{_c(bottom + 16)}" text-anchor="middle">{esc(fmt_ratio(v))}</text>'
        )
    out.append(f'<text x="{_c(left + pw)}" y="{_c(bottom + 30)}" text-anchor="end">mean score</text></g>')
    out.append(
        f'<line class="diagonal" x1="{_c(px(0))}" y1="{_c(py(0))}" x2="{_c(px(1))}" y2="{_c(py(1))}" '
        'stroke="#9ca3af" stroke-width="1.2" stroke-dasharray="5 3"/>'
    )
    for s in series:
        pts = [(x, y) for x, y in zip(s.xs, s.ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
        pts = [(min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)) for x, y in pts]
        extra = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in s.data.items())
        out.append(f'<g class="series" data-series="{esc(s.name)}" data-points="{len(pts)}"{extra}><title>{esc(s.name)}</title>')
        if len(pts) > 1:
            line = " ".join(f"{_c(px(x))},{_c(py(y))}" for x, y in pts)
            out.append(f'<polyline points="{line}" fill="none" stroke="{esc(s.color)}" stroke-width="1.8"/>')
        for x, y in pts:
            out.append(f'<circle class="marker" cx="{_c(px(x))}" cy="{_c(py(y))}" r="3" fill="{esc(s.color)}"/>')
        out.append("</g>")
    legend, lh = _legend(
        [("perfect calibration", "#9ca3af", True), *((s.name, s.color, s.dashed) for s in series)],
        left, bottom + 44, width - left - 16,
    )  # fmt: skip
    height = bottom + 44 + lh + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart reliability-chart" data-chart="{esc(chart_id)}" '
        f'width="{width}" height="{_c(height)}" viewBox="0 0 {width} {_c(height)}" role="img" '
        f'data-plot="{_c(left)} {_c(top)} {_c(pw)} {_c(ph)}" data-x-domain="0.0 1.0" data-y-domain="0.0 1.0">'
        f'<rect class="plot-bg" x="{_c(left)}" y="{_c(top)}" width="{_c(pw)}" height="{_c(ph)}"/>'
        + "".join(out)
        + f'<g class="legend">{legend}</g></svg>'
    )


# ------------------------------------------------------------------------------ heat map


@attrs.frozen(slots=True)
class HeatRow:
    """One row of a heat map: its label and one value per time bin (None: no data)."""

    label: str
    cells: Sequence[float | None]


def _hex(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def scale_color(v: float, stops: Sequence[tuple[float, str]]) -> str:
    """The colour of ``v`` on a piecewise-linear scale of ``(value, "#rrggbb")`` stops.

    >>> scale_color(0.5, [(0.0, "#000000"), (1.0, "#ffffff")])
    '#808080'
    """
    if v <= stops[0][0]:
        return stops[0][1]
    for (a, ca), (b, cb) in itertools.pairwise(stops):
        if v <= b:
            f = (v - a) / (b - a) if b > a else 1.0
            ra, rb = _hex(ca), _hex(cb)
            mixed = (round(x + (y - x) * f) for x, y in zip(ra, rb, strict=True))
            return "#" + "".join(f"{c:02x}" for c in mixed)
    return stops[-1][1]


def heat_map(
    rows: Sequence[HeatRow],
    *,
    chart_id: str,
    edges: Sequence[float],
    stops: Sequence[tuple[float, str]],
    legend_ticks: Sequence[tuple[float, str]],
    value_name: str,
    value_format: Formatter,
    width: int = 1240,
) -> str:
    """A heat map: one row per label, one column per time bin, colour = value.

    Args:
        rows: labels and cell values; ``len(cells) == len(edges) - 1``.
        chart_id: goes into ``data-chart`` and keeps the gradient id unique.
        edges: the time-bin edges, Unix seconds, increasing (bins may differ in width).
        stops: the colour scale, ``(value, "#rrggbb")`` with increasing values; values past the
            last stop take its colour.
        legend_ticks: ``(value, label)`` marks under the legend's gradient bar.
        value_name: what the colour means (``"PSI"``), for the legend and tooltips.
        value_format: formats values in tooltips.
        width: total width in px.

    >>> svg = heat_map([HeatRow("age", [0.02, None, 0.4])], chart_id="psi", edges=[0.0, 10.0, 20.0, 30.0],
    ...                stops=[(0.0, "#ffffff"), (0.5, "#ff0000")], legend_ticks=[(0.0, "0")],
    ...                value_name="PSI", value_format=fmt_number)
    >>> svg.count("data-value="), 'data-value="0.4"' in svg  # the empty cell has none
    (2, True)
    """
    label_w = min(220.0, 24 + max((len(r.label[:32]) for r in rows), default=4) * _FONT_W)
    left, right, top = label_w, 96.0, 8.0
    row_h = 22.0
    pw = width - left - right
    n_bins = max(1, len(edges) - 1)
    t0, t1 = edges[0], edges[-1]
    span = (t1 - t0) or 1.0
    xs = [left + (e - t0) / span * pw for e in edges]
    out: list[str] = []
    for i, row in enumerate(rows):
        y = top + i * row_h
        label = row.label if len(row.label) <= 32 else row.label[:31] + "…"
        peak = max((v for v in row.cells if v is not None and math.isfinite(v)), default=None)
        out.append(
            f'<g class="heat-row" data-row="{esc(row.label)}">'
            f'<text class="row-label" x="{_c(left - 8)}" y="{_c(y + row_h / 2 + 4)}" text-anchor="end">'
            f"<title>{esc(row.label)}</title>{esc(label)}</text>"
        )
        for j, v in enumerate(row.cells):
            x, cw = xs[j], xs[j + 1] - xs[j]
            a, b = edges[j], edges[j + 1]
            when = f"{_time_label(a, '%H:%M:%S')}–{_time_label(b, '%H:%M:%S')} UTC"
            if v is None or not math.isfinite(v):
                fill, tip, val = "#eef0f3", f"{row.label} · {when} · no data", ""
            else:
                fill = scale_color(v, stops)
                tip = f"{row.label} · {when} · {value_name} {value_format(v)}"
                val = f' data-value="{v:.6g}"'
            # A hair of overlap keeps anti-aliased seams from showing between cells.
            out.append(
                f'<rect x="{_c(x)}" y="{_c(y + 1)}" width="{_c(cw + 0.6)}" height="{_c(row_h - 2)}" '
                f'fill="{fill}"{val}><title>{esc(tip)}</title></rect>'
            )
        peak_text = "–" if peak is None else f"max {value_format(peak)}"
        out.append(
            f'<text class="row-peak" x="{_c(left + pw + 6)}" y="{_c(y + row_h / 2 + 4)}">{esc(peak_text)}</text></g>'
        )
    bottom = top + len(rows) * row_h
    tticks, tfmt = time_ticks(t0, t1)
    out.append('<g class="axis x-axis">')
    for t in tticks:
        x = left + (t - t0) / span * pw
        out.append(
            f'<line class="tick" x1="{_c(x)}" y1="{_c(bottom)}" x2="{_c(x)}" y2="{_c(bottom + 4)}"/>'
            f'<text x="{_c(x)}" y="{_c(bottom + 16)}" text-anchor="middle">{esc(_time_label(t, tfmt))}</text>'
        )
    out.append("</g>")
    # legend: a gradient bar over the scale's range
    gid = f"grad-{esc(chart_id)}"
    lo, hi = stops[0][0], stops[-1][0]
    grad = "".join(
        f'<stop offset="{(v - lo) / (hi - lo):.4f}" stop-color="{c}"/>' for v, c in stops
    )
    lx, ly, lw = left, bottom + 34, min(360.0, pw)
    legend = [
        f'<g class="legend"><text x="{_c(lx)}" y="{_c(ly - 4)}">{esc(value_name)}</text>'
        f'<rect x="{_c(lx)}" y="{_c(ly)}" width="{_c(lw)}" height="12" fill="url(#{gid})"/>'
    ]
    for v, text in legend_ticks:
        x = lx + (min(max(v, lo), hi) - lo) / (hi - lo) * lw
        legend.append(
            f'<line class="tick" x1="{_c(x)}" y1="{_c(ly + 12)}" x2="{_c(x)}" y2="{_c(ly + 16)}"/>'
            f'<text x="{_c(x)}" y="{_c(ly + 28)}" text-anchor="middle">{esc(text)}</text>'
        )
    nx = lx + lw + 24
    legend.append(
        f'<rect x="{_c(nx)}" y="{_c(ly)}" width="18" height="12" fill="#eef0f3"/>'
        f'<text x="{_c(nx + 24)}" y="{_c(ly + 10)}">no data</text></g>'
    )
    height = ly + 36
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart heat-map" data-chart="{esc(chart_id)}" '
        f'width="{width}" height="{_c(height)}" viewBox="0 0 {width} {_c(height)}" role="img" '
        f'data-rows="{len(rows)}" data-bins="{n_bins}">'
        f'<defs><linearGradient id="{gid}">{grad}</linearGradient></defs>'
        + "".join(out)
        + "".join(legend)
        + "</svg>"
    )


# ------------------------------------------------------------------------------ timeline


@attrs.frozen(slots=True)
class Span:
    """A stretch of time in one state, with its tooltip text."""

    start: float
    end: float
    state: str
    tip: str


@attrs.frozen(slots=True)
class TimelineRow:
    """One row of a timeline: a label and its spans."""

    label: str
    spans: Sequence[Span]


def timeline(
    rows: Sequence[TimelineRow],
    *,
    chart_id: str,
    x_range: tuple[float, float],
    colors: Mapping[str, str],
    width: int = 1240,
) -> str:
    """Horizontal bars on a time axis: one row per label, one bar per span, coloured by state.

    Args:
        rows: the rows, top to bottom.
        chart_id: goes into ``data-chart``.
        x_range: (start, end) Unix seconds.
        colors: state → colour; also the legend, in this order.
        width: total width in px.

    >>> svg = timeline([TimelineRow("errors_high", [Span(10.0, 20.0, "firing", "fired")])],
    ...                chart_id="alerts", x_range=(0.0, 60.0), colors={"firing": "#dc2626"})
    >>> 'data-state="firing" data-start="10.0" data-end="20.0"' in svg
    True
    """
    label_w = min(320.0, 24 + max((len(r.label[:48]) for r in rows), default=4) * _FONT_W)
    left, right, top = label_w, 20.0, 8.0
    row_h = 24.0
    pw = width - left - right
    t0, t1 = x_range
    if not t1 > t0:
        t0, t1 = t0 - 1.0, t0 + 1.0

    def px(t: float) -> float:
        return left + (min(max(t, t0), t1) - t0) / (t1 - t0) * pw

    out: list[str] = []
    for i, row in enumerate(rows):
        y = top + i * row_h
        label = row.label if len(row.label) <= 48 else row.label[:47] + "…"
        shade = ' class="band"' if i % 2 == 0 else ' class="band odd"'
        out.append(
            f'<g class="timeline-row" data-row="{esc(row.label)}">'
            f'<rect{shade} x="{_c(left)}" y="{_c(y)}" width="{_c(pw)}" height="{_c(row_h)}"/>'
            f'<text class="row-label" x="{_c(left - 8)}" y="{_c(y + row_h / 2 + 4)}" text-anchor="end">'
            f"<title>{esc(row.label)}</title>{esc(label)}</text>"
        )
        for s in row.spans:
            x0, x1 = px(s.start), px(s.end)
            w = max(x1 - x0, 3.0)  # an episode of one flush still shows
            out.append(
                f'<rect class="span" data-state="{esc(s.state)}" data-start="{s.start!r}" data-end="{s.end!r}" '
                f'x="{_c(x0)}" y="{_c(y + 4)}" width="{_c(w)}" height="{_c(row_h - 8)}" rx="2" '
                f'fill="{esc(colors.get(s.state, "#9ca3af"))}"><title>{esc(s.tip)}</title></rect>'
            )
        out.append("</g>")
    bottom = top + len(rows) * row_h
    tticks, tfmt = time_ticks(t0, t1)
    out.append(
        f'<g class="axis x-axis"><line class="axis-line" x1="{_c(left)}" y1="{_c(bottom)}" '
        f'x2="{_c(left + pw)}" y2="{_c(bottom)}"/>'
    )
    for t in tticks:
        x = px(t)
        out.append(
            f'<line class="tick" x1="{_c(x)}" y1="{_c(bottom)}" x2="{_c(x)}" y2="{_c(bottom + 4)}"/>'
            f'<text x="{_c(x)}" y="{_c(bottom + 16)}" text-anchor="middle">{esc(_time_label(t, tfmt))}</text>'
        )
    out.append("</g>")
    legend, lh = _legend([(state, color, False) for state, color in colors.items()], left, bottom + 36, pw)
    height = bottom + 36 + lh + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart timeline" data-chart="{esc(chart_id)}" '
        f'width="{width}" height="{_c(height)}" viewBox="0 0 {width} {_c(height)}" role="img" '
        f'data-rows="{len(rows)}">' + "".join(out) + f'<g class="legend">{legend}</g></svg>'
    )
