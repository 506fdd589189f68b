"""Drift scores from binned counts, and the decisions built on them.

Every function here compares two count vectors on the same cells: the reference's (from a
:class:`~mlmon.reference.Reference`) and the window's (from the serving-side histograms). No raw
data is kept, so each score costs O(cells) whatever the traffic. For numeric features the cells
are ordered: underflow, the reference quantile bins, overflow (see
:func:`mlmon.reference.binned_counts`). For categorical features they are the kept reference
categories plus "other" (which also receives categories unseen in the reference).

Scores (``p`` reference proportions, ``q`` window proportions):

- **PSI** ``sum((q - p) * ln(q / p))`` with both proportions floored at ``epsilon`` (1e-4) so an
  empty cell on either side stays finite (no renormalisation after flooring).
- **JS**: the Jensen–Shannon *distance* in base 2, ``sqrt(JSD)``, in ``[0, 1]``; equals
  ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
- **Wasserstein**: the W1 distance after mapping values through the reference CDF (probability
  integral transform), assuming values spread uniformly inside each bin. The reference becomes
  uniform on ``[0, 1]``, so the score is in ``[0, 1]`` and reads as "how far, in reference
  quantiles, the window moved on average"; underflow sits at 0 and overflow at 1.
- **KS**: ``max |F_ref - F_win|`` over the bin boundaries, with the two-sample p-value on the
  effective size ``n·m/(n+m)`` (:func:`ks_pvalue`: scipy's ``kstwo`` as in
  ``ks_2samp(method="asymp")`` up to 1000, Stephens' approximation above). Binning can only hide
  part of a CDF gap, so ``D_binned <= D_raw <= D_binned + max cell proportion``.
- **chi-squared** (categorical): the 2×k contingency test of reference counts against window
  counts (cells empty on both sides dropped, no Yates correction), as
  ``scipy.stats.chi2_contingency(table, correction=False)``.

>>> ref = [0, 100, 100, 100, 100, 0]
>>> round(psi(ref, [0, 100, 100, 100, 100, 0]), 6)
0.0
>>> round(psi(ref, [0, 50, 100, 100, 150, 0]), 4)
0.1373
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs
import numpy as np
import numpy.typing as npt
from scipy import special, stats

__all__ = [
    "DriftConfig",
    "DriftScores",
    "benjamini_hochberg",
    "chi2_binned",
    "decide",
    "drift_scores",
    "drift_scores_ordered",
    "js_distance",
    "ks_binned",
    "ks_pvalue",
    "psi",
    "wasserstein_binned",
]

Method = Literal["psi", "js", "wasserstein", "pvalue"]

DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "psi": (0.1, 0.2),
    "js": (0.13, 0.19),
    "wasserstein": (0.09, 0.125),
}
"""(warning, drift) thresholds per effect-size method when :class:`DriftConfig` leaves them None.

PSI's 0.1/0.2 are the usual credit-scoring bands; the JS and Wasserstein pairs are set to agree
with them on a mean shift of a normal feature with decile bins (0.1 ≈ a 0.32σ shift, 0.2 ≈ 0.46σ).
"""


def _pair(
    reference: npt.ArrayLike, window: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """The two count vectors as float64, or None when either is empty (no score then)."""
    r = np.asarray(reference, dtype=np.float64).ravel()
    w = np.asarray(window, dtype=np.float64).ravel()
    if r.shape != w.shape:
        raise ValueError(
            f"reference and window must have the same cells, got {r.size} and {w.size}"
        )
    if (r < 0).any() or (w < 0).any() or not (np.isfinite(r).all() and np.isfinite(w).all()):
        raise ValueError("counts must be finite and >= 0")
    if r.sum() <= 0 or w.sum() <= 0:
        return None
    return r, w


def psi(reference: npt.ArrayLike, window: npt.ArrayLike, epsilon: float = 1e-4) -> float:
    """Population stability index of the window against the reference (NaN when either is empty).

    Both proportions are floored at ``epsilon`` before the log ratio; cells empty on both sides
    then contribute 0, and a cell empty in the reference but holding a share ``q`` of the window
    contributes about ``q · ln(q / epsilon)``.

    >>> round(psi([50, 50], [40, 60]), 6)
    0.040547
    """
    pair = _pair(reference, window)
    return math.nan if pair is None else _psi(*pair, epsilon)


def _psi(r: npt.NDArray[np.float64], w: npt.NDArray[np.float64], epsilon: float) -> float:
    p = np.maximum(r / r.sum(), epsilon)
    q = np.maximum(w / w.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: npt.ArrayLike, window: npt.ArrayLike) -> float:
    """Jensen–Shannon distance, base 2, in ``[0, 1]`` (NaN when either side is empty).

    >>> round(js_distance([1, 0], [0, 1]), 6), round(js_distance([3, 1], [3, 1]), 6)
    (1.0, 0.0)
    """
    pair = _pair(reference, window)
    return math.nan if pair is None else _js(*pair)


def _js(r: npt.NDArray[np.float64], w: npt.NDArray[np.float64]) -> float:
    p = r / r.sum()
    q = w / w.sum()
    m = 0.5 * (p + q)
    # 0 · log 0 = 0: only cells with mass on the left side of each KL term count.
    kl_p = np.sum(p[p > 0] * np.log2(p[p > 0] / m[p > 0]))
    kl_q = np.sum(q[q > 0] * np.log2(q[q > 0] / m[q > 0]))
    return float(math.sqrt(max(0.0, 0.5 * (kl_p + kl_q))))


def wasserstein_binned(reference: npt.ArrayLike, window: npt.ArrayLike) -> float:
    """W1 distance in reference-quantile units, in ``[0, 1]`` (NaN when either side is empty).

    The cells must be ordered. Cell ``k`` spans ``[U[k-1], U[k]]`` of the reference CDF ``U``;
    inside it both CDFs are linear, so the area between them is integrated exactly.

    >>> wasserstein_binned([0, 1, 1, 0], [0, 1, 1, 0])
    0.0
    >>> wasserstein_binned([0, 1, 1, 0], [1, 0, 0, 0])   # everything below the reference minimum
    0.5
    """
    pair = _pair(reference, window)
    return math.nan if pair is None else _wasserstein(*pair)


def _wasserstein(r: npt.NDArray[np.float64], w: npt.NDArray[np.float64]) -> float:
    width = r / r.sum()
    upper_u = np.cumsum(width)
    upper_q = np.cumsum(w / w.sum())
    lower_u = upper_u - width
    lower_q = np.concatenate(([0.0], upper_q[:-1]))
    a = lower_q - lower_u  # CDF gap at the start of each cell
    b = upper_q - upper_u  # and at its end
    # Equal CDFs reached through different sums differ by rounding only: that is no gap.
    a[np.abs(a) < 1e-12] = 0.0
    b[np.abs(b) < 1e-12] = 0.0
    abs_a, abs_b = np.abs(a), np.abs(b)
    same_sign = a * b >= 0
    denom = np.where(abs_a + abs_b > 0, abs_a + abs_b, 1.0)
    # A linear gap that crosses zero: two triangles, of total area w·(a² + b²) / (2(|a| + |b|)).
    area = np.where(same_sign, 0.5 * (abs_a + abs_b), 0.5 * (a * a + b * b) / denom) * width
    return float(min(1.0, max(0.0, area.sum())))


def ks_binned(reference: npt.ArrayLike, window: npt.ArrayLike) -> tuple[float, float]:
    """Kolmogorov–Smirnov statistic on the bin boundaries and its p-value.

    The p-value is :func:`ks_pvalue` at the effective size ``n·m/(n+m)``, ``n`` and ``m`` the
    reference and window counts. Returns ``(nan, nan)`` when either side is empty.

    >>> d, p = ks_binned([0, 50, 50, 0], [0, 50, 50, 0])
    >>> d, p
    (0.0, 1.0)
    """
    pair = _pair(reference, window)
    return (math.nan, math.nan) if pair is None else _ks(*pair)


def _ks(r: npt.NDArray[np.float64], w: npt.NDArray[np.float64]) -> tuple[float, float]:
    d = float(np.max(np.abs(np.cumsum(r / r.sum()) - np.cumsum(w / w.sum()))))
    d = min(1.0, d)
    if d <= 1e-12:
        return 0.0, 1.0
    n, m = r.sum(), w.sum()
    return d, ks_pvalue(d, n * m / (n + m))


KS_EXACT_MAX_N = 1000
"""Effective sizes up to which :func:`ks_pvalue` uses the exact distribution (scipy's ``kstwo``)."""


def ks_pvalue(d: float, en: float) -> float:
    """Two-sided p-value of a KS statistic ``d`` at effective sample size ``en = n·m/(n+m)``.

    Up to :data:`KS_EXACT_MAX_N` this is ``scipy.stats.kstwo.sf(d, round(en))``, exactly what
    ``ks_2samp(method="asymp")`` reports. Above it, ``kstwo`` gets slow in the tail (tens of ms
    per call), so the limiting Kolmogorov distribution with Stephens' correction is used,
    ``kolmogorov(d · (√en + 0.12 + 0.11/√en))``: within 0.005 of ``kstwo`` there (the largest
    gap is near p ≈ 0.7; below p = 0.1, where decisions are made, within 0.0003), and closer as
    ``en`` grows.

    >>> round(ks_pvalue(0.05, 500.0), 4), round(ks_pvalue(0.02, 5000.0), 4)
    (0.1587, 0.0361)
    """
    if d <= 0:
        return 1.0
    if en <= KS_EXACT_MAX_N:
        p = stats.kstwo.sf(d, max(1, round(en)))
    else:
        root = math.sqrt(en)
        p = special.kolmogorov(d * (root + 0.12 + 0.11 / root))
    return float(min(1.0, max(0.0, p)))


def chi2_binned(reference: npt.ArrayLike, window: npt.ArrayLike) -> tuple[float, float]:
    """Chi-squared test of homogeneity between reference and window counts: ``(statistic, p)``.

    Cells empty on both sides are dropped; with fewer than two cells left there is nothing to
    test and the result is ``(0.0, 1.0)``. Returns ``(nan, nan)`` when either side is empty.

    >>> stat, p = chi2_binned([50, 50], [50, 50])
    >>> stat, p
    (0.0, 1.0)
    """
    pair = _pair(reference, window)
    return (math.nan, math.nan) if pair is None else _chi2(*pair)


def _chi2(r: npt.NDArray[np.float64], w: npt.NDArray[np.float64]) -> tuple[float, float]:
    keep = (r + w) > 0
    if keep.sum() < 2:
        return 0.0, 1.0
    table = np.vstack([r[keep], w[keep]])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = int(keep.sum()) - 1
    return stat, float(stats.chi2.sf(stat, dof))


def benjamini_hochberg(pvalues: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Benjamini–Hochberg adjusted p-values (NaN stays NaN and does not count as a test).

    Rejecting where the adjusted p-value is below ``alpha`` controls the false discovery rate
    across the features at ``alpha``.

    >>> benjamini_hochberg([0.01, 0.04, 0.03, float("nan")]).round(3).tolist()
    [0.03, 0.04, 0.04, nan]
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    # Step-up: each adjusted value is the smallest of those at its rank and above.
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out[order] = np.minimum(adjusted, 1.0)
    return out


@attrs.frozen(slots=True)
class DriftScores:
    """All drift scores of one feature in one window.

    ``ks`` and ``wasserstein`` are NaN for categorical features; ``pvalue`` is the KS p-value
    for numeric features and the chi-squared p-value for categorical ones.

    >>> s = drift_scores([0, 50, 50, 0], [0, 40, 60, 0], ordered=True)
    >>> round(s.psi, 4), round(s.ks, 2), s.n_window
    (0.0405, 0.1, 100)
    """

    psi: float
    js: float
    ks: float
    wasserstein: float
    pvalue: float
    n_reference: int
    n_window: int


def drift_scores(
    reference: npt.ArrayLike, window: npt.ArrayLike, ordered: bool, epsilon: float = 1e-4
) -> DriftScores:
    """Every score for one feature. ``ordered`` is True for numeric cells, False for categories.

    The counts are checked once (see :func:`psi`); NaN scores when either side is empty.
    """
    r = np.asarray(reference, dtype=np.float64)
    w = np.asarray(window, dtype=np.float64)
    pair = _pair(r, w)
    nan = math.nan
    if pair is None:
        ps = js = ks = wd = pvalue = nan
    else:
        ps, js = _psi(*pair, epsilon), _js(*pair)
        if ordered:
            ks, pvalue = _ks(*pair)
            wd = _wasserstein(*pair)
        else:
            ks, wd = nan, nan
            _, pvalue = _chi2(*pair)
    return DriftScores(
        psi=ps,
        js=js,
        ks=ks,
        wasserstein=wd,
        pvalue=pvalue,
        n_reference=int(r.sum()),
        n_window=int(w.sum()),
    )


def drift_scores_ordered(
    references: Sequence[npt.ArrayLike], windows: Sequence[npt.ArrayLike], epsilon: float = 1e-4
) -> list[DriftScores]:
    """:func:`drift_scores` of many numeric features at once (``ordered=True``).

    The features' cells are padded with empty cells to one matrix and every score is computed
    for all features together (a few dozen numpy calls in all instead of a few dozen per
    feature); the values equal :func:`drift_scores` up to rounding (an empty cell on both
    sides adds nothing to any score). Only the KS p-value is computed feature by feature.

    >>> a = drift_scores_ordered([[0, 50, 50, 0], [0, 5, 5, 5, 0]], [[0, 40, 60, 0], [0, 5, 5, 5, 0]])
    >>> [round(s.psi, 4) for s in a], a[0] == drift_scores([0, 50, 50, 0], [0, 40, 60, 0], True)
    ([0.0405, 0.0], True)
    """
    k = len(references)
    if len(windows) != k:
        raise ValueError(f"got {k} references and {len(windows)} windows")
    if k == 0:
        return []
    rs = [np.asarray(r, dtype=np.float64).ravel() for r in references]
    ws = [np.asarray(w, dtype=np.float64).ravel() for w in windows]
    width = max(len(r) for r in rs)
    R = np.zeros((k, width))
    W = np.zeros((k, width))
    for i, (r, w) in enumerate(zip(rs, ws, strict=True)):
        if r.shape != w.shape:
            return [drift_scores(a, b, True, epsilon) for a, b in zip(rs, ws, strict=True)]
        R[i, : len(r)] = r
        W[i, : len(w)] = w
    if not (np.isfinite(R).all() and np.isfinite(W).all()) or (R < 0).any() or (W < 0).any():
        # Let the one-feature function raise its ValueError for the bad feature.
        return [drift_scores(a, b, True, epsilon) for a, b in zip(rs, ws, strict=True)]
    n_ref = R.sum(axis=1)
    n_win = W.sum(axis=1)
    ok = (n_ref > 0) & (n_win > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        P = R / np.where(ok, n_ref, 1.0)[:, None]
        Q = W / np.where(ok, n_win, 1.0)[:, None]
        # PSI, proportions floored at epsilon (empty padding: epsilon on both sides, adds 0).
        fp = np.maximum(P, epsilon)
        fq = np.maximum(Q, epsilon)
        psi_v = np.sum((fq - fp) * np.log(fq / fp), axis=1)
        # Jensen-Shannon, base 2.
        M = 0.5 * (P + Q)
        kl_p = np.sum(np.where(P > 0, P * np.log2(P / M), 0.0), axis=1)
        kl_q = np.sum(np.where(Q > 0, Q * np.log2(Q / M), 0.0), axis=1)
        js_v = np.sqrt(np.maximum(0.0, 0.5 * (kl_p + kl_q)))
        # KS on the bin boundaries.
        upper_u = np.cumsum(P, axis=1)
        upper_q = np.cumsum(Q, axis=1)
        ks_v = np.minimum(1.0, np.max(np.abs(upper_u - upper_q), axis=1))
        # Wasserstein, exact between piecewise-linear CDFs (see wasserstein_binned).
        lower_u = upper_u - P
        lower_q = np.concatenate((np.zeros((k, 1)), upper_q[:, :-1]), axis=1)
        a = lower_q - lower_u
        b = upper_q - upper_u
        a[np.abs(a) < 1e-12] = 0.0
        b[np.abs(b) < 1e-12] = 0.0
        abs_a, abs_b = np.abs(a), np.abs(b)
        denom = np.where(abs_a + abs_b > 0, abs_a + abs_b, 1.0)
        area = np.where(a * b >= 0, 0.5 * (abs_a + abs_b), 0.5 * (a * a + b * b) / denom) * P
        wd_v = np.minimum(1.0, np.maximum(0.0, area.sum(axis=1)))
    out = []
    nan = math.nan
    for i in range(k):
        if not ok[i]:
            out.append(DriftScores(nan, nan, nan, nan, nan, int(n_ref[i]), int(n_win[i])))
            continue
        d = float(ks_v[i])
        if d <= 1e-12:
            d, pvalue = 0.0, 1.0
        else:
            n, m = n_ref[i], n_win[i]
            pvalue = ks_pvalue(d, n * m / (n + m))
        out.append(
            DriftScores(
                psi=float(psi_v[i]),
                js=float(js_v[i]),
                ks=d,
                wasserstein=float(wd_v[i]),
                pvalue=pvalue,
                n_reference=int(n_ref[i]),
                n_window=int(n_win[i]),
            )
        )
    return out


def _method(_inst: object, attribute: attrs.Attribute[str], value: object) -> None:
    if value not in ("psi", "js", "wasserstein", "pvalue"):
        raise ValueError(
            f"{attribute.name} must be 'psi', 'js', 'wasserstein' or 'pvalue', got {value!r}"
        )


def _positive_or_none(
    _inst: object, attribute: attrs.Attribute[float | None], value: object
) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{attribute.name} must be a positive number or None, got {value!r}")


def _open_unit(_inst: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1):
        raise ValueError(f"{attribute.name} must be a number in (0, 1), got {value!r}")


def _min_rows(_inst: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _bool(_inst: object, attribute: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be a bool, got {value!r}")


@attrs.frozen(kw_only=True)
class DriftConfig:
    """How drift scores turn into a status (0 ok, 1 warning, 2 drift), tuned not to cry wolf.

    Attributes:
        method: the score that decides: ``"psi"`` (default), ``"js"`` or ``"wasserstein"``
            (effect sizes, compared with ``warning``/``drift``), or ``"pvalue"`` (a test: drift
            when the p-value, adjusted across features when ``fdr``, is below ``alpha``; there
            is no warning level).
        warning: effect size at or above which the status is 1 (default per method, see
            :data:`DEFAULT_THRESHOLDS`; PSI 0.1).
        drift: effect size at or above which the status is 2 (PSI default 0.2).
        alpha: significance level of the ``"pvalue"`` method.
        fdr: adjust p-values with Benjamini–Hochberg across the features of one snapshot.
        min_rows: valid values a feature needs in the window before any drift score or status
            is emitted for it; below it, scores are sampling noise and nothing is emitted.
        epsilon: floor of the proportions in PSI.

    >>> cfg = DriftConfig()
    >>> cfg.thresholds, cfg.min_rows
    ((0.1, 0.2), 500)
    >>> DriftConfig(method="js").thresholds
    (0.13, 0.19)
    >>> DriftConfig(warning=0.3, drift=0.2)
    Traceback (most recent call last):
    ...
    ValueError: warning (0.3) must be <= drift (0.2)
    """

    method: Method = attrs.field(default="psi", validator=_method)
    warning: float | None = attrs.field(default=None, validator=_positive_or_none)
    drift: float | None = attrs.field(default=None, validator=_positive_or_none)
    alpha: float = attrs.field(default=0.05, validator=_open_unit)
    fdr: bool = attrs.field(default=True, validator=_bool)
    min_rows: int = attrs.field(default=500, validator=_min_rows)
    epsilon: float = attrs.field(default=1e-4, validator=_open_unit)

    def __attrs_post_init__(self) -> None:
        if self.method == "pvalue":
            if self.warning is not None or self.drift is not None:
                raise ValueError(
                    f"warning/drift thresholds do not apply to method='pvalue' (use alpha), got {self.warning!r}/{self.drift!r}"
                )
            return
        warning, drift = self.thresholds
        if warning > drift:
            raise ValueError(f"warning ({warning!r}) must be <= drift ({drift!r})")

    @property
    def thresholds(self) -> tuple[float, float]:
        """``(warning, drift)`` effect-size thresholds, defaults filled in (NaN for ``"pvalue"``)."""
        if self.method == "pvalue":
            return math.nan, math.nan
        dw, dd = DEFAULT_THRESHOLDS[self.method]
        return (
            dw if self.warning is None else float(self.warning),
            dd if self.drift is None else float(self.drift),
        )


def decide(scores: Sequence[DriftScores | None], config: DriftConfig) -> list[int | None]:
    """The status of each feature: 0 ok, 1 warning, 2 drift, or None (no decision).

    No decision is made for a feature without scores or with fewer than ``config.min_rows``
    values in the window. With ``method="pvalue"`` and ``fdr``, p-values are adjusted across
    the features that get a decision.

    >>> ok = drift_scores([0, 500, 500, 0], [0, 500, 500, 0], ordered=True)
    >>> moved = drift_scores([0, 500, 500, 0], [0, 100, 900, 0], ordered=True)
    >>> few = drift_scores([0, 500, 500, 0], [0, 1, 9, 0], ordered=True)
    >>> decide([ok, moved, few, None], DriftConfig())
    [0, 2, None, None]
    """
    eligible = [s is not None and s.n_window >= config.min_rows for s in scores]
    out: list[int | None] = [None] * len(scores)
    if config.method == "pvalue":
        raw = np.array(
            [
                s.pvalue if (s is not None and e) else math.nan
                for s, e in zip(scores, eligible, strict=True)
            ]
        )
        adjusted = benjamini_hochberg(raw) if config.fdr else raw
        for i, e in enumerate(eligible):
            if e and math.isfinite(adjusted[i]):
                out[i] = 2 if adjusted[i] < config.alpha else 0
        return out
    warning, drift = config.thresholds
    for i, (s, e) in enumerate(zip(scores, eligible, strict=True)):
        if not e or s is None:
            continue
        value = getattr(s, config.method)
        if not math.isfinite(value):
            continue  # e.g. Wasserstein of a categorical feature: no decision
        out[i] = 2 if value >= drift else 1 if value >= warning else 0
    return out
