"""Binary-classification metrics from fixed-size accumulators: binned ROC AUC and average
precision (:class:`ScoreBins`), and the metrics expected from calibrated probabilities with
their sampling bands (:func:`expected_binary`).

Binned ROC AUC. Scores fall in bins of increasing edges; each bin holds the weight of positive
and of negative rows in it (label counts, or for an estimate Σp and Σ(1 - p) of calibrated
probabilities). The AUC counts a (positive, negative) pair in the same bin as half, i.e. it is
the exact AUC of the scores rounded to their bin. Its distance to the exact AUC of the raw
scores is at most half the share of pairs that share a bin,
``bound = Σ_b pos_b neg_b / (2 P N)``, which :func:`binned_auc` returns with the value (0 when
no bin holds both classes: the binned AUC is then exact).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["Z95", "ScoreBins", "auc_se", "band", "binned_auc", "binned_average_precision", "expected_binary"]

FloatArray = npt.NDArray[np.float64]

Z95 = 1.959963984540054
"""The two-sided 95% normal quantile: bands are ``value ± Z95 * standard error``."""


class ScoreBins:
    """Positive and negative weight per score bin (``cells`` = bins plus under/overflow).

    >>> b = ScoreBins(4)
    >>> b.add(np.array([0, 1, 2, 3]), np.array([0.0, 0.0, 1.0, 1.0]))
    >>> binned_auc(b.pos, b.neg)
    (1.0, 0.0)
    """

    __slots__ = ("neg", "pos")

    def __init__(self, cells: int) -> None:
        self.pos = np.zeros(cells, dtype=np.float64)
        self.neg = np.zeros(cells, dtype=np.float64)

    def add(self, cell: npt.NDArray[np.intp], p: FloatArray) -> None:
        """Add rows in ``cell`` that are positive with weight ``p`` (a 0/1 label, or a
        calibrated probability) and negative with weight ``1 - p``."""
        n = self.pos.size
        self.pos += np.bincount(cell, weights=p, minlength=n)
        self.neg += np.bincount(cell, weights=1.0 - p, minlength=n)

    def merge(self, other: object) -> None:
        assert isinstance(other, ScoreBins)
        self.pos += other.pos
        self.neg += other.neg

    def reset(self) -> None:
        self.pos[:] = 0.0
        self.neg[:] = 0.0


def binned_auc(pos: FloatArray, neg: FloatArray) -> tuple[float | None, float]:
    """ROC AUC of binned weights (bins in increasing score order) and its error bound.

    None when either class has no weight.

    >>> binned_auc(np.array([0.0, 1.0, 1.0]), np.array([1.0, 1.0, 0.0]))
    (0.875, 0.125)
    """
    p, n = float(pos.sum()), float(neg.sum())
    if p <= 0.0 or n <= 0.0:
        return None, 0.0
    below = np.cumsum(neg) - neg
    auc = float(np.dot(pos, below + 0.5 * neg)) / p / n
    bound = float(np.dot(pos, neg)) / p / n / 2.0
    return min(max(auc, 0.0), 1.0), bound


def binned_average_precision(pos: FloatArray, neg: FloatArray) -> float | None:
    """Average precision (area under the precision-recall curve as scikit-learn's
    ``average_precision_score`` sums it) with one threshold per bin. None without positives.

    >>> binned_average_precision(np.array([0.0, 1.0, 1.0]), np.array([1.0, 1.0, 0.0]))
    0.8333333333333333
    """
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    total = float(tp[-1]) if tp.size else 0.0
    if total <= 0.0:
        return None
    step = pos[::-1] > 0
    precision = tp[step] / (tp[step] + fp[step])
    return float(np.dot(pos[::-1][step], precision)) / total


def band(value: float, se: float) -> tuple[float, float, float]:
    """``(value, lower, upper)``: ``value ± Z95 * se`` clipped to [0, 1].

    >>> band(0.9, 0.1)
    (0.9, 0.7040036015459946, 1.0)
    """
    half = Z95 * se
    return value, max(value - half, 0.0), min(value + half, 1.0)


def _se(var: float) -> float:
    return math.sqrt(max(var, 0.0))


def expected_binary(
    n_pp: float, a: float, va: float, n_pn: float, b: float, vb: float
) -> dict[str, tuple[float, float]]:
    """Precision, recall, F1 and accuracy expected from calibrated probabilities, each as
    ``(value, standard error)`` (:func:`band` makes the 95% band).

    Args:
        n_pp: rows predicted positive; ``a`` = Σp over them (expected true positives) and
            ``va`` = Σp(1 - p) (the variance of the true positives).
        n_pn: rows predicted negative; ``b`` = Σp over them (expected false negatives) and
            ``vb`` = Σp(1 - p).

    A row is positive with its probability ``p``, independently: the realized true positives
    ``A`` and false negatives ``B`` are sums of Bernoulli variables. Each value is the ratio of
    expectations (as NannyML's CBPE computes it); the standard error is that of the realized
    metric at this window's size (delta method). A metric whose denominator is 0 is left out.

    >>> est = expected_binary(n_pp=100, a=80.0, va=16.0, n_pn=100, b=20.0, vb=16.0)
    >>> [round(v, 4) for v in band(*est["precision"])]
    [0.8, 0.7216, 0.8784]
    >>> round(est["f1"][0], 4), round(est["accuracy"][0], 4)
    (0.8, 0.8)
    """
    out: dict[str, tuple[float, float]] = {}
    if n_pp > 0:
        out["precision"] = (a / n_pp, _se(va) / n_pp)
    if a + b > 0:
        s = a + b
        out["recall"] = (a / s, _se((b / s) ** 2 * va + (a / s) ** 2 * vb) / s)
    d = a + n_pp + b
    if d > 0:
        out["f1"] = (2.0 * a / d, 2.0 * _se(((n_pp + b) / d) ** 2 * va + (a / d) ** 2 * vb) / d)
    n = n_pp + n_pn
    if n > 0:
        out["accuracy"] = ((a + n_pn - b) / n, _se(va + vb) / n)
    return out


def auc_se(auc: float, positives: float, negatives: float) -> float:
    """The Hanley-McNeil standard error of an AUC over ``positives`` and ``negatives`` rows
    (expected counts for an estimate); 0.5 (no information) when either is 0.

    >>> [round(v, 4) for v in band(0.8, auc_se(0.8, 100.0, 100.0))]
    [0.8, 0.7385, 0.8615]
    """
    if positives < 1.0 or negatives < 1.0:
        return 0.5
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    var = (
        auc * (1.0 - auc) + (positives - 1.0) * (q1 - auc * auc) + (negatives - 1.0) * (q2 - auc * auc)
    ) / (positives * negatives)
    return _se(var)
