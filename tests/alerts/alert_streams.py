"""Synthetic snapshot streams for alert tests: windowed metrics as a monitor computes them.

A monitor's window metrics are sums over the slices of a rolling window. These streams draw each
slice's raw counts at random (labels, outputs, clicks), sum the last ``window / step`` slices and
build the snapshot the reporter would: one per ``step`` seconds, ``window`` growing from 0 until
it is full.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlmon.snapshot import Sample, Snapshot

T0 = 1_700_000_000.0


def _windowed(per_slice: np.ndarray, k: int) -> np.ndarray:
    """Sum of the last ``k`` rows up to and including each row."""
    c = np.cumsum(per_slice, axis=0)
    out = c.copy()
    out[k:] -= c[:-k]
    return out


def _level(n: int, step: float, before: float, after: float | None, change_at: float | None) -> np.ndarray:
    t = (np.arange(n) + 1) * step
    if after is None or change_at is None:
        return np.full(n, before)
    return np.where(t > change_at, after, before)


def _snap(i: int, step: float, window: float, samples: tuple[Sample, ...], model: str) -> Snapshot:
    t = (i + 1) * step
    return Snapshot(model, None, "test:1", T0 + t, min(t, window), samples)


def precision_stream(
    seconds: float,
    labels_per_second: float,
    before: float,
    after: float | None = None,
    change_at: float | None = None,
    *,
    positive_rate: float = 0.3,
    step: float = 10.0,
    window: float = 300.0,
    seed: int = 0,
    model: str = "m",
) -> list[Snapshot]:
    """``mlmon_precision`` and ``mlmon_labels_window`` of a binary classifier.

    Each label is a predicted positive with probability ``positive_rate``; a predicted positive is
    a true positive with probability ``before`` (``after`` once ``change_at`` seconds have passed).
    """
    rng = np.random.default_rng(seed)
    n = int(seconds // step)
    k = round(window / step)
    labels = rng.poisson(labels_per_second * step, n)
    pos = rng.binomial(labels, positive_rate)
    tp = rng.binomial(pos, _level(n, step, before, after, change_at))
    w_labels, w_pos, w_tp = (_windowed(a, k) for a in (labels, pos, tp))
    out = []
    for i in range(n):
        samples = [Sample.make("mlmon_labels_window", float(w_labels[i]))]
        if w_pos[i]:
            samples.append(Sample.make("mlmon_precision", w_tp[i] / w_pos[i]))
        out.append(_snap(i, step, window, tuple(samples), model))
    return out


def score_stream(
    seconds: float,
    outputs_per_second: float,
    sd: float,
    sd_after: float | None = None,
    change_at: float | None = None,
    *,
    mean: float = 0.5,
    step: float = 10.0,
    window: float = 300.0,
    seed: int = 0,
    model: str = "m",
) -> list[Snapshot]:
    """``mlmon_output_mean``, ``_variance`` and ``_count`` of normal scores (flat mean)."""
    rng = np.random.default_rng(seed)
    n = int(seconds // step)
    k = round(window / step)
    counts = rng.poisson(outputs_per_second * step, n)
    sds = _level(n, step, sd, sd_after, change_at)
    sums = np.zeros(n)
    sqs = np.zeros(n)
    for i in range(n):
        x = rng.normal(mean, sds[i], counts[i])
        sums[i] = x.sum()
        sqs[i] = (x * x).sum()
    w_n, w_s, w_q = (_windowed(a, k) for a in (counts.astype(float), sums, sqs))
    out = []
    for i in range(n):
        samples = [Sample.make("mlmon_output_count", float(w_n[i]))]
        if w_n[i] > 1:
            m = w_s[i] / w_n[i]
            samples.append(Sample.make("mlmon_output_mean", m))
            samples.append(Sample.make("mlmon_output_variance", max(0.0, w_q[i] / w_n[i] - m * m)))
        out.append(_snap(i, step, window, tuple(samples), model))
    return out


def ctr_stream(
    seconds: float,
    rows_per_second: float,
    ctr: float,
    ctr_after: float | None = None,
    change_at: float | None = None,
    *,
    step: float = 10.0,
    window: float = 300.0,
    seed: int = 0,
    model: str = "m",
) -> list[Snapshot]:
    """``mlmon_outcome_rate{outcome="click"}`` and ``mlmon_rows_per_second``."""
    rng = np.random.default_rng(seed)
    n = int(seconds // step)
    k = round(window / step)
    rows = rng.poisson(rows_per_second * step, n)
    clicks = rng.binomial(rows, _level(n, step, ctr, ctr_after, change_at))
    w_rows, w_clicks = _windowed(rows, k), _windowed(clicks, k)
    out = []
    for i in range(n):
        covered = min((i + 1) * step, window)
        samples = [Sample.make("mlmon_rows_per_second", w_rows[i] / covered)]
        if w_rows[i]:
            samples.append(Sample.make("mlmon_outcome_rate", w_clicks[i] / w_rows[i], outcome="click"))
        out.append(_snap(i, step, window, tuple(samples), model))
    return out


def series(
    values: list[float] | np.ndarray,
    metric: str,
    *,
    step: float = 10.0,
    window: float = 300.0,
    extra: Callable[[int], tuple[Sample, ...]] | None = None,
    model: str = "m",
    **labels: str,
) -> list[Snapshot]:
    """One snapshot per value of ``metric`` (plus ``extra(i)`` samples), ``step`` seconds apart."""
    out = []
    for i, v in enumerate(values):
        samples = (Sample.make(metric, float(v), **labels),)
        if extra is not None:
            samples += extra(i)
        out.append(_snap(i, step, window, samples, model))
    return out
