"""The segments section: small multiples of the per-segment series, a table, the bookkeeping.

A segment's series carry the label ``segment`` (``Monitor(max_segments=...)``,
``track(segment=...)``); :class:`~mlmon.report._log.Log` keeps them apart from the overall
series, reduced to what is drawn here (``SEGMENT_METRICS``). The section shows one small card
per segment (the largest by rows first, ``_other`` last, at most :data:`MAX_CARDS`), each with
the same four small charts on the same time axis, so that segments compare at a glance.
Every segment name is escaped where it is written; the page's size does not grow with the
number of segment names in the log (cards and table rows are capped).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from mlmon.report import _svg
from mlmon.report._format import esc, utc
from mlmon.report._log import FloatArray, Log
from mlmon.report._sections import SEGMENT_BOOKKEEPING
from mlmon.report._series import counter_total, thin
from mlmon.segments import OVERFLOW


class Page(Protocol):
    """What the section reads of the page it is part of (:class:`mlmon.report._page.Page`)."""

    log: Log
    max_points: int
    multi: bool
    t0: float
    t1: float
    when: str

    def latest(self, name: str, match: Mapping[str, str] | None = ..., agg: Callable[[list[float]], float] = ...) -> float | None: ...

    def total(self, name: str) -> float | None: ...

MAX_CARDS = 24
"""Segment cards drawn; the others are counted ("and N more segments") and in the table."""

MAX_TABLE_ROWS = 200
"""Rows of the table of latest values."""

MAX_SMALL_LINES = 4
"""Lines (instances) per small chart."""

SMALL_POINTS = 120
"""Points per line of a small chart (min and max per bucket kept, as in the other charts)."""

QUALITY_ORDER: tuple[tuple[str, str, str], ...] = (
    ("f1", "F1", "mlmon_f1"),
    ("f1_macro", "F1 (macro)", 'mlmon_f1{average="macro"}'),
    ("accuracy", "accuracy", "mlmon_accuracy"),
    ("mae", "MAE", "mlmon_mae"),
)
"""The quality metric of the cards: the first of these any segment has."""

Agg = Callable[[list[float]], float]


def _sum(values: list[float]) -> float:
    return math.fsum(values)


def _worst_quality(what: str) -> Agg:
    return max if what == "mae" else min


class SegmentView:
    """The per-segment numbers of one log, in display order."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.data = log.segments
        present = {what for by_key in self.data.values() for what, _ in by_key}
        self.quality = next(((w, label, metric) for w, label, metric in QUALITY_ORDER if w in present), None)
        self.rows_total = {name: self._total(name, "rows_total") for name in self.data}
        by_counter = any(v is not None for v in self.rows_total.values())

        def volume(name: str) -> float:
            if by_counter:
                return self.rows_total[name] or 0.0
            means = [float(np.mean(ys)) for (w, _), (_, ys) in self.data[name].items() if w == "rows" and ys.size]
            return math.fsum(means)

        self.volume = {name: volume(name) for name in self.data}
        ranked = sorted((n for n in self.data if n != OVERFLOW), key=lambda n: (-self.volume[n], n))
        self.order = ranked + ([OVERFLOW] if OVERFLOW in self.data else [])
        self.all_volume = math.fsum(self.volume.values())

    def _total(self, name: str, what: str) -> float | None:
        found = [counter_total(ys) for (w, _), (_, ys) in self.data[name].items() if w == what]
        return math.fsum(found) if found else None

    def lines(self, name: str, what: str) -> list[tuple[str, FloatArray, FloatArray]]:
        """``(instance, xs, ys)`` of one segment's series ``what``, by instance name."""
        got = [(inst, xs, ys) for (w, inst), (xs, ys) in self.data[name].items() if w == what and xs.size]
        return sorted(got, key=lambda p: p[0])

    def latest(self, name: str, what: str, agg: Agg) -> float | None:
        vals = [float(ys[-1]) for _, _, ys in self.lines(name, what)]
        return agg(vals) if vals else None

    def last_seen(self, name: str) -> float | None:
        ends = [float(xs[-1]) for xs, _ in self.data[name].values() if xs.size]
        return max(ends) if ends else None

    def cards(self) -> list[str]:
        """The segments that get a card: the largest by rows, ``_other`` last."""
        if OVERFLOW in self.data and len(self.order) > MAX_CARDS:
            return [*self.order[: MAX_CARDS - 1], OVERFLOW]
        return self.order[:MAX_CARDS]


def _charts(view: SegmentView) -> list[tuple[str, str, str, Callable[[float], str], float | None]]:
    """``(what, title, metric, format, y cap)`` of the small charts of every card."""
    out: list[tuple[str, str, str, Callable[[float], str], float | None]] = [
        ("rows", "rows/s", "mlmon_rows_per_second", _svg.fmt_number, None),
        ("errors", "error ratio", "mlmon_error_ratio", _svg.fmt_ratio, 1.0),
    ]
    if view.quality is not None:
        what, label, metric = view.quality
        fmt = _svg.fmt_number if what == "mae" else _svg.fmt_ratio
        out.append((what, label, metric, fmt, None if what == "mae" else 1.0))
    out.append(("psi", "largest feature drift (PSI)", "max of mlmon_feature_drift_psi{feature}", _svg.fmt_number, None))
    return out


def _small_chart(page: Page, view: SegmentView, index: int, name: str, chart: tuple[str, str, str, Callable[[float], str], float | None]) -> str:
    what, title, metric, fmt, cap = chart
    lines = view.lines(name, what)
    head = f'<div class="seg-chart" data-what="{esc(what)}"><p class="metric" title="{esc(metric)}">{esc(title)}</p>'
    if not lines:
        return head + '<p class="note">no data</p></div>'
    series = []
    points = min(page.max_points, SMALL_POINTS)
    for k, (inst, xs, ys) in enumerate(lines[:MAX_SMALL_LINES]):
        txs, tys = thin(xs, ys, points)
        legend = inst if page.multi else title
        series.append(_svg.Series(legend, txs.tolist(), tys.tolist(), color=_svg.PALETTE[k % len(_svg.PALETTE)],
                                  data={"instance": inst}, gap=math.inf))  # fmt: skip
    svg = _svg.line_chart(series, chart_id=f"seg{index}-{what}", x_range=(page.t0, page.t1), y_format=fmt,
                          width=360, plot_height=56, y_cap=cap, markers=0, x_ticks=4, y_ticks=3,
                          legend=page.multi)  # fmt: skip
    more = len(lines) - MAX_SMALL_LINES
    note = f'<p class="note">{more} more instance{"s" if more > 1 else ""} not drawn.</p>' if more > 0 else ""
    return head + svg + note + "</div>"


def _card(page: Page, view: SegmentView, index: int, name: str) -> str:
    rows = view.rows_total.get(name)
    share = view.volume[name] / view.all_volume if view.all_volume > 0 else None
    sub = " · ".join(t for t in (
        f"{_svg.fmt_number(rows)} rows" if rows is not None else "",
        f"{_svg.fmt_ratio(share)} of rows" if share is not None else "",
        "values beyond the cap, and values with no name" if name == OVERFLOW else "",
    ) if t)  # fmt: skip
    charts = "".join(_small_chart(page, view, index, name, c) for c in _charts(view))
    cls = "card seg-card other" if name == OVERFLOW else "card seg-card"
    return (
        f'<figure class="{cls}" data-segment="{esc(name)}"><figcaption><h3>{esc(name)}</h3>'
        f'<p class="sub">{esc(sub)}</p></figcaption>{charts}</figure>'
    )


def _reference_word(view: SegmentView, name: str) -> str:
    vals = {float(ys[-1]) >= 0.5 for _, _, ys in view.lines(name, "reference")}
    if not vals:
        return "–"
    if len(vals) > 1:
        return "mixed"
    return "own" if vals.pop() else "overall"


def _table(page: Page, view: SegmentView) -> str:
    quality = view.quality
    head = ["segment", "rows", "rows/s, latest", "error ratio, latest"]
    if quality is not None:
        head.append(f"{quality[1]}, latest")
    head += ["largest feature PSI, latest", "drift reference", "last seen (UTC)"]
    body = []
    for name in view.order[:MAX_TABLE_ROWS]:
        rows = view.rows_total.get(name)
        rps = view.latest(name, "rows", _sum)
        err = view.latest(name, "errors", max)
        cells = [
            name,
            "–" if rows is None else _svg.fmt_number(rows),
            "–" if rps is None else _svg.fmt_number(rps),
            "–" if err is None else _svg.fmt_ratio(err),
        ]
        if quality is not None:
            q = view.latest(name, quality[0], _worst_quality(quality[0]))
            fmt = _svg.fmt_number if quality[0] == "mae" else _svg.fmt_ratio
            cells.append("–" if q is None else fmt(q))
        psi = view.latest(name, "psi", max)
        seen = view.last_seen(name)
        cells += [
            "–" if psi is None else _svg.fmt_number(psi),
            _reference_word(view, name),
            "–" if seen is None else utc(seen, page.when),
        ]
        body.append(f'<tr data-segment="{esc(name)}">' + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    more = len(view.order) - MAX_TABLE_ROWS
    note = f'<p class="note">{more:,} more segments not listed (at most {MAX_TABLE_ROWS}).</p>' if more > 0 else ""
    worst = " (several instances: rows/s summed, error ratio and PSI the highest, quality the worst)" if page.multi else ""
    return (
        f'<div class="card wide table-card"><h3>Latest values per segment{esc(worst)}</h3><table class="segments"><thead><tr>'
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>" + note + "</div>"
    )


def _bookkeeping(page: Page, view: SegmentView) -> str:
    log = page.log
    stats: list[tuple[str, str, str, str]] = []
    tracked = page.latest(SEGMENT_BOOKKEEPING[0], agg=max)
    cap = page.latest(SEGMENT_BOOKKEEPING[1], agg=max)
    overflow = page.total(SEGMENT_BOOKKEEPING[2])
    invalid = page.total(SEGMENT_BOOKKEEPING[3])
    worst = " (highest of the instances)" if len(log.instances) > 1 else ""
    if tracked is not None:
        stats.append(("Segments tracked, latest" + worst, _svg.fmt_number(tracked), f'"{OVERFLOW}" included', ""))
    if cap is not None:
        stats.append(("Cap (max_segments)", _svg.fmt_number(cap), "segments a monitor tracks", ""))
    if overflow is not None:
        stats.append((f'Rows folded into "{OVERFLOW}"', _svg.fmt_number(overflow), "the cap was reached", "warn" if overflow else ""))
    if invalid is not None:
        stats.append(("Invalid segment values", _svg.fmt_number(invalid), f'values with no name, in "{OVERFLOW}"', "warn" if invalid else ""))
    names = len(view.data) + len(log.dropped_segment_names)
    stats.append(("Segment names in this log", f"{names:,}", f"{min(len(view.order), MAX_CARDS)} drawn", ""))
    return '<div class="cards seg-book wide">' + "".join(
        f'<div class="card stat {cls}"><div class="label">{esc(label)}</div><div class="value">{esc(value)}</div>'
        f'<div class="sub">{esc(sub)}</div></div>'
        for label, value, sub, cls in stats
    ) + "</div>"


def segments_body(page: Page) -> str | None:
    """The section's HTML inside its ``<section>``; None when the log has no segment series."""
    if not page.log.segments:
        return None
    view = SegmentView(page.log)
    shown = view.cards()
    cards = "".join(_card(page, view, i, name) for i, name in enumerate(shown))
    more = len(view.order) - len(shown)
    more_note = (
        f'<p class="note wide seg-more" data-more="{more}">and {more:,} more segment{"s" if more > 1 else ""} '
        f"(smaller by rows: see the table).</p>" if more > 0 else ""
    )  # fmt: skip
    intro = (
        '<p class="note wide">One card per segment, the largest by rows first, '
        f'"{esc(OVERFLOW)}" last: the same charts on the same time axis. The overall series '
        "(the sections above) never include the segments' series.</p>"
    )
    return (
        intro + _bookkeeping(page, view) + f'<div class="seg-grid wide">{cards}</div>' + more_note + _table(page, view)
    )


def segment_names(log: Log) -> Sequence[str]:
    """Every segment name kept from the log, in display order."""
    return SegmentView(log).order if log.segments else ()


__all__ = ["MAX_CARDS", "MAX_TABLE_ROWS", "SegmentView", "segment_names", "segments_body"]
