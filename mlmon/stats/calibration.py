"""Monotone (isotonic) calibration of binary scores, fitted on labelled reference scores.

:func:`isotonic_knots` fits the non-decreasing step function that minimises the squared error
to the 0/1 labels (pool-adjacent-violators, :func:`scipy.optimize.isotonic_regression`) and
returns it as knots ``(x, y)``: both ends of every constant block, so that :func:`calibrate`
(``numpy.interp``) joins blocks linearly and clips outside ``[x[0], x[-1]]``, as scikit-learn's
``IsotonicRegression(out_of_bounds="clip")`` predicts. Scores may be any real numbers
(probabilities, logits, margins): only their order matters.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import isotonic_regression

__all__ = ["MAX_KNOTS", "calibrate", "isotonic_knots", "quantile_edges"]

MAX_KNOTS = 4096
"""Most knots kept of a fit; a fit with more (near-separable data) keeps every other block end
until it fits, which changes calibrated values by at most one block's step."""

FloatArray = npt.NDArray[np.float64]


def isotonic_knots(
    scores: FloatArray, labels: FloatArray, max_knots: int = MAX_KNOTS
) -> tuple[FloatArray, FloatArray]:
    """Knots of the isotonic fit of ``labels`` (0/1) on ``scores`` (finite, same length).

    >>> x, y = isotonic_knots(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 0.0, 1.0]))
    >>> x.tolist(), y.tolist()
    ([0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.5, 1.0])
    """
    order = np.argsort(scores, kind="stable")
    s, t = scores[order], labels[order]
    # Tied scores are one point, weighted by their count.
    ux, start, counts = np.unique(s, return_index=True, return_counts=True)
    sums = np.add.reduceat(t, start)
    fit = isotonic_regression(sums / counts, weights=counts.astype(np.float64)).x
    # Keep both ends of each constant block.
    change = np.flatnonzero(np.diff(fit) != 0)
    keep = np.unique(np.concatenate(([0, ux.size - 1], change, change + 1)))
    x, y = ux[keep], np.clip(fit[keep], 0.0, 1.0)
    while x.size > max_knots:
        sel = np.unique(np.concatenate((np.arange(0, x.size, 2), [x.size - 1])))
        x, y = x[sel], y[sel]
    return x.astype(np.float64), y.astype(np.float64)


def calibrate(x: FloatArray, y: FloatArray, scores: FloatArray) -> FloatArray:
    """Calibrated probabilities of ``scores`` from knots ``(x, y)`` (clipped outside ``x``).

    >>> calibrate(np.array([0.0, 1.0]), np.array([0.2, 0.6]), np.array([-1.0, 0.5, 2.0])).tolist()
    [0.2, 0.4, 0.6]
    """
    return np.interp(scores, x, y)


def quantile_edges(scores: FloatArray, bins: int) -> FloatArray:
    """Increasing bin edges at ``bins`` quantiles of ``scores`` (fewer when scores repeat).

    >>> quantile_edges(np.arange(101.0), 4).tolist()
    [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    return np.unique(np.quantile(scores, np.linspace(0.0, 1.0, bins + 1)))
