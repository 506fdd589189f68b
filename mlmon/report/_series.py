"""Numbers behind the charts: counter totals and rates, downsampling, gaps, heat-map cells."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def counter_total(ys: FloatArray) -> float:
    """What a cumulative counter counted over the log; a drop means the process restarted."""
    if ys.size == 0:
        return 0.0
    d = np.diff(ys)
    d = np.where(d < 0, ys[1:], d)
    return float(ys[0] + d.sum())


def rate(xs: FloatArray, ys: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-second increase of a cumulative counter between consecutive snapshots."""
    if xs.size < 2:
        return xs[:0], ys[:0]
    dt = np.diff(xs)
    dv = np.diff(ys)
    dv = np.where(dv < 0, ys[1:], dv)
    ok = dt > 0
    return xs[1:][ok], dv[ok] / dt[ok]


def downsample(xs: FloatArray, ys: FloatArray, max_points: int) -> tuple[FloatArray, FloatArray]:
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


def thin(xs: FloatArray, ys: FloatArray, max_points: int) -> tuple[FloatArray, FloatArray]:
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
        return downsample(xs, ys, max_points)
    parts_x: list[FloatArray] = []
    parts_y: list[FloatArray] = []
    for px, py in zip(np.split(xs, cuts), np.split(ys, cuts), strict=True):
        dx, dy = downsample(px, py, max(2, max_points * px.size // xs.size))
        if parts_x:
            parts_x.append(dx[:1])
            parts_y.append(np.array([math.nan]))
        parts_x.append(dx)
        parts_y.append(dy)
    return np.concatenate(parts_x), np.concatenate(parts_y)


def heat_cells(edges: FloatArray, xs: FloatArray, ys: FloatArray) -> list[float | None]:
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

