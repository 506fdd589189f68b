"""One false-alarm budget for alert rules that fan out over many series.

A rule with ``labels={"feature": "*"}`` on a monitor with segments is thousands of series, each
decided on every flush. A per-series threshold that gives one false alarm a year per series
gives dozens a week for the monitor. :class:`AlertBudget` turns "at most ``false_alarms`` false
alarms per ``per``" for the whole monitor into the z-limit each series is held to:

1. **Across series** (``correction="bonferroni"``, the default): every series gets an equal
   share of the budget. The expected number of false alarms is a sum over series whatever their
   dependence (features of one segment move together), so the shares add up to the budget with
   no independence assumption. ``correction="bh"`` adds a weighted Benjamini–Hochberg step-up
   across the series decided in one flush: identical while at most one series is off (the
   stationary case the budget is about), and more sensitive when many series move at once (a
   fleet-wide change), at the price of controlling the *share* of false alarms among alarms
   there, not their number.
2. **Across time**: decisions come every flush, and consecutive windows share most of their data
   (a 300 s window flushed every 10 s shares 97% of it). An alarm is the moment a series crosses
   its limit, so what the budget counts is *upcrossings*. For a window statistic sampled every
   ``interval`` seconds, consecutive values are correlated ``rho = 1 - interval / window``, and
   the probability of an upcrossing of ``z`` at one decision is exactly
   ``P(Z_t <= z < Z_t+1)`` for the Gaussian pair (:func:`upcrossing_probability`). The limit solves
   ``series × sides × (per / interval) × P(upcross z) = false_alarms``. This is less
   conservative than Bonferroni over every decision (which would count each flush as a fresh
   test) and more than counting only disjoint windows (which misses the excursions between them).

The statistics held to the limit are one-sided z-scores (:func:`shift_statistic`): a signed-root
likelihood-ratio statistic for rates (far more accurate than the Wald z in the tails where the
limits sit) and a Welch z for means. ``docs/alerts.md`` (section 10) shows the detection delay
this costs, measured by ``benchmarks/bench_false_alarms.py``.

>>> budget = AlertBudget(false_alarms=1, per="week")
>>> round(budget.limit(series=4200, window=300, interval=10), 2)
5.67
>>> round(budget.limit(series=1, window=300, interval=10), 2)
3.94
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import attrs
import numpy as np
import numpy.typing as npt
from scipy import integrate, optimize, special

__all__ = [
    "PERIODS",
    "AlertBudget",
    "decide_family",
    "family_decisions",
    "min_samples_for",
    "series_statistics",
    "shift_statistic",
    "upcrossing_probability",
]

PERIODS: dict[str, float] = {"hour": 3600.0, "day": 86400.0, "week": 604800.0}
"""The named periods a budget may be given per (seconds)."""

Correction = Literal["bonferroni", "bh"]
Direction = Literal["down", "up", "both"]
FloatArray = npt.NDArray[np.float64]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _tail_integral(z: float, rho: float) -> float:
    """``∫_0^∞ exp(-z t - t²/2) Φ((z (1 - rho) - rho t) / sqrt(1 - rho²)) dt``.

    ``φ(z)`` times this is the upcrossing probability; factoring ``φ(z)`` out keeps the integral
    of order ``1/z`` whatever ``z``, so nothing underflows at the limits budgets give.
    """
    s = math.sqrt(1.0 - rho * rho)
    a = z * (1.0 - rho) / s
    b = rho / s

    def f(t: float) -> float:
        return math.exp(-z * t - 0.5 * t * t) * float(special.ndtr(a - b * t))

    value, _ = integrate.quad(f, 0.0, math.inf, epsabs=0.0, epsrel=1e-9, limit=200)
    return float(value)


def _log_upcrossing(z: float, rho: float) -> float:
    if rho <= 0.0:
        return float(special.log_ndtr(-z) + special.log_ndtr(z))
    rho = min(rho, 0.999999)
    return -0.5 * z * z - _LOG_SQRT_2PI + math.log(max(_tail_integral(z, rho), 1e-300))


def upcrossing_probability(z: float, rho: float) -> float:
    """``P(Z_1 <= z < Z_2)`` for standard normal ``Z_1, Z_2`` with correlation ``rho``.

    The expected number of times a stationary Gaussian sequence with lag-one correlation ``rho``
    crosses ``z`` upwards, per step. ``rho = 0`` gives ``Φ(z) (1 - Φ(z))``; as ``rho`` goes to 1
    (decisions much more frequent than the window) it goes to 0.

    >>> f"{upcrossing_probability(5.0, 0.0):.3e}"
    '2.867e-07'
    >>> f"{upcrossing_probability(5.0, 1 - 10 / 300):.3e}"
    '1.434e-07'
    """
    return math.exp(_log_upcrossing(float(z), float(rho)))


@functools.lru_cache(maxsize=256)
def _solve_limit(log_target: float, rho: float) -> float:
    """The z whose log upcrossing probability is ``log_target`` (clipped to [0, 40])."""

    def f(z: float) -> float:
        return _log_upcrossing(z, rho) - log_target

    if f(0.0) <= 0.0:
        return 0.0
    if f(40.0) >= 0.0:
        return 40.0
    return float(optimize.brentq(f, 0.0, 40.0, xtol=1e-6))


def _period(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str):
        if value not in PERIODS:
            raise ValueError(
                f"{attribute.name} must be 'hour', 'day', 'week' or a number of seconds > 0, got {value!r}"
            )
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (math.isfinite(float(value)) and float(value) > 0):  # type: ignore[arg-type]
        raise ValueError(
            f"{attribute.name} must be 'hour', 'day', 'week' or a number of seconds > 0, got {value!r}"
        )


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (math.isfinite(float(value)) and float(value) > 0):  # type: ignore[arg-type]
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _positive_or_none(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _positive(inst, attribute, value)


def _correction(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("bonferroni", "bh"):
        raise ValueError(f"{attribute.name} must be 'bonferroni' or 'bh', got {value!r}")


@attrs.frozen(kw_only=True)
class AlertBudget:
    """At most ``false_alarms`` false alarms per ``per`` across every budgeted series.

    Give it to the engine (``AlertEngine(rules, budget=...)``); every :class:`~mlmon.alerts.Shift`
    rule of the engine shares it, one equal share per series (feature × segment × class ...).
    Rules of the other kinds keep their own thresholds.

    Attributes:
        false_alarms: the expected number of false alarms allowed per ``per`` (> 0; 1 means one
            a week on a stationary stream, counted over all series together).
        per: ``"hour"``, ``"day"``, ``"week"`` or a number of seconds.
        correction: ``"bonferroni"`` (default: each series gets ``false_alarms / series``; holds
            under any dependence between series) or ``"bh"`` (Benjamini–Hochberg step-up over
            the series of one evaluation, more sensitive when many series change at once).
        interval: seconds between decisions; None: measured from the snapshot timestamps (the
            median gap of recent evaluations; the monitor's ``flush_interval``).

    >>> AlertBudget(false_alarms=2, per="day").seconds
    86400.0
    >>> AlertBudget(per="fortnight")
    Traceback (most recent call last):
    ...
    ValueError: per must be 'hour', 'day', 'week' or a number of seconds > 0, got 'fortnight'
    """

    false_alarms: float = attrs.field(default=1.0, validator=_positive)
    per: str | float = attrs.field(default="week", validator=_period)
    correction: Correction = attrs.field(default="bonferroni", validator=_correction)
    interval: float | None = attrs.field(default=None, validator=_positive_or_none)

    @property
    def seconds(self) -> float:
        """``per`` in seconds."""
        return PERIODS[self.per] if isinstance(self.per, str) else float(self.per)

    def limit(self, series: int, window: float, interval: float, sides: int = 1) -> float:
        """The one-sided z-limit each of ``series`` series is held to.

        Args:
            series: series sharing the budget (at least 1 is assumed).
            window: seconds of data behind each decision (the monitor's window).
            interval: seconds between decisions (the flush interval).
            sides: 2 for a rule that fires both ways (it spends half its share on each side).

        >>> b = AlertBudget()
        >>> b.limit(4200, 300, 10) > b.limit(42, 300, 10) > b.limit(42, 300, 300)
        True
        """
        m = max(1, int(series)) * max(1, int(sides))
        interval = max(float(interval), 1e-3)
        window = max(float(window), interval)
        decisions = self.seconds / interval
        rho = round(1.0 - interval / window, 6)
        log_target = math.log(self.false_alarms) - math.log(m) - math.log(decisions)
        return _solve_limit(round(log_target, 6), rho)


def min_samples_for(
    limit: npt.ArrayLike, sigma: npt.ArrayLike, effect: float, power: float
) -> FloatArray:
    """Samples a window needs for a change of ``effect`` to cross ``limit`` with ``power``.

    ``n = ((limit + z_power) · sigma / effect)²``, ``sigma`` the standard deviation of one
    observation (``sqrt(p (1 - p))`` for a rate p). NaN where ``sigma`` is not finite or < 0.

    >>> min_samples_for(5.5, [math.sqrt(0.8 * 0.2), float("nan")], 0.10, 0.9).round().tolist()
    [736.0, nan]
    """
    sg = np.asarray(sigma, dtype=np.float64)
    lim = np.asarray(limit, dtype=np.float64)
    z_power = float(special.ndtri(power))
    with np.errstate(invalid="ignore"):
        need = ((lim + z_power) * sg / effect) ** 2
        return np.asarray(np.where(np.isfinite(sg) & (sg >= 0), need, np.nan), dtype=np.float64)


def _kl(p: FloatArray, q: FloatArray) -> FloatArray:
    """Bernoulli KL divergence ``KL(p || q)`` (0 · log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - q)), 0.0)
    return np.asarray(a + b, dtype=np.float64)


def shift_statistic(
    kind: Literal["rate", "mean"],
    value: npt.ArrayLike,
    baseline: npt.ArrayLike,
    n: npt.ArrayLike,
    n_baseline: npt.ArrayLike | None = None,
    scale: npt.ArrayLike | None = None,
    direction: Direction = "both",
) -> tuple[FloatArray, FloatArray]:
    """The oriented z-score of each series and its change in the direction that matters.

    Args:
        kind: ``"rate"``: ``value`` and ``baseline`` are proportions of ``n`` and ``n_baseline``
            trials (signed root of the likelihood-ratio statistic, one-sample against an exact
            baseline, 2×2 otherwise); ``"mean"``: means of ``n`` and ``n_baseline``
            observations of variance ``scale`` (Welch z).
        n_baseline: None or ``inf`` for an exact baseline (a reference, a number).
        direction: ``"down"`` (a positive z means the value fell), ``"up"``, or ``"both"``
            (``|z|``).

    Returns:
        ``(z, change)``: NaN where a series cannot be decided (no samples, NaN or out-of-range
        values, a negative variance); ``change`` is ``baseline - value`` for ``"down"``,
        ``value - baseline`` for ``"up"`` and their absolute value for ``"both"``.

    >>> z, change = shift_statistic("rate", [0.70, 0.80, 0.5], [0.80, 0.80, 0.5], [1000, 1000, 0],
    ...                             direction="down")
    >>> z.round(2).tolist(), change.round(2).tolist()
    ([7.51, 0.0, nan], [0.1, 0.0, nan])
    >>> z, _ = shift_statistic("mean", [0.25], [0.0], [400], scale=[1.0])
    >>> z.tolist()
    [5.0]
    """
    v = np.asarray(value, dtype=np.float64)
    b = np.broadcast_to(np.asarray(baseline, dtype=np.float64), v.shape)
    nn = np.broadcast_to(np.asarray(n, dtype=np.float64), v.shape)
    nb = (
        np.full(v.shape, np.inf)
        if n_baseline is None
        else np.broadcast_to(np.asarray(n_baseline, dtype=np.float64), v.shape)
    )
    bad = ~(np.isfinite(v) & np.isfinite(b) & (nn > 0) & np.isfinite(nn) & ~(nb <= 0) & ~np.isnan(nb))
    exact = np.isinf(nb)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "rate":
            bad |= (v < 0) | (v > 1) | (b < 0) | (b > 1)
            vc = np.clip(v, 0.0, 1.0)
            bc = np.clip(b, 0.0, 1.0)
            nbf = np.where(exact, 0.0, nb)
            pooled = np.where(exact, bc, (vc * nn + bc * nbf) / (nn + nbf))
            g = 2.0 * (nn * _kl(vc, pooled) + np.where(exact, 0.0, nbf * _kl(bc, pooled)))
            # A baseline of exactly 0 or 1 makes any other value infinitely unlikely.
            g = np.where(np.isnan(g), np.inf, g)
            r = np.sign(vc - bc) * np.sqrt(np.maximum(g, 0.0))
            r = np.where(vc == bc, 0.0, r)
        elif kind == "mean":
            if scale is None:
                raise ValueError("kind='mean' needs scale (the variance of one observation)")
            s = np.broadcast_to(np.asarray(scale, dtype=np.float64), v.shape)
            bad |= ~np.isfinite(s) | (s < 0)
            se = np.sqrt(np.maximum(s, 0.0) * (1.0 / nn + np.where(exact, 0.0, 1.0 / nb)))
            diff = v - b
            r = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
        else:
            raise ValueError(f"kind must be 'rate' or 'mean', got {kind!r}")
        diff = v - b
        if direction == "down":
            z, change = 0.0 - r, b - v
        elif direction == "up":
            z, change = r, diff
        elif direction == "both":
            z, change = np.abs(r), np.abs(diff)
        else:
            raise ValueError(f"direction must be 'down', 'up' or 'both', got {direction!r}")
    z = np.where(bad, np.nan, z).astype(np.float64)
    change = np.where(bad, np.nan, change).astype(np.float64)
    return z, change


def family_decisions(
    z: npt.ArrayLike, limits: npt.ArrayLike, correction: Correction = "bonferroni"
) -> npt.NDArray[np.bool_]:
    """Which series cross their limit, corrected across the family.

    ``limits`` are the per-series z-limits of :meth:`AlertBudget.limit` (each series' share of
    the budget). ``"bonferroni"``: ``z >= limit``. ``"bh"``: the weighted Benjamini–Hochberg
    step-up on ``q = p / alpha`` (``p`` and ``alpha`` the one-sided tails of ``z`` and of the
    limit): the k series with the smallest q are kept when ``q_(k) <= k``. NaN never crosses.
    With at most one series off both give the same answer.

    >>> family_decisions([6.0, 5.4, 5.4, float("nan")], [5.5] * 4).tolist()
    [True, False, False, False]
    >>> family_decisions([6.0, 5.4, 5.4, float("nan")], [5.5] * 4, "bh").tolist()
    [True, True, True, False]
    """
    zz = np.asarray(z, dtype=np.float64)
    lim = np.broadcast_to(np.asarray(limits, dtype=np.float64), zz.shape)
    ok = np.isfinite(zz) | (zz == np.inf)
    with np.errstate(invalid="ignore"):
        plain = ok & (zz >= lim)
    if correction == "bonferroni":
        return np.asarray(plain, dtype=np.bool_)
    if correction != "bh":
        raise ValueError(f"correction must be 'bonferroni' or 'bh', got {correction!r}")
    m = int(np.count_nonzero(ok & ~np.isnan(zz)))
    out = np.zeros(zz.shape, dtype=np.bool_)
    if m == 0:
        return out
    # Only q <= m can be kept (q_(k) <= k <= m): those are the smallest q, so their ranks among
    # themselves are their ranks among all. log q = log p - log alpha, in logs so a z of 30 is
    # not a p of 0.
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(ok & (zz > 0))
    log_q = special.log_ndtr(-zz[idx]) - special.log_ndtr(-lim[idx])
    keep = log_q <= math.log(m)
    idx, log_q = idx[keep], log_q[keep]
    order = np.argsort(log_q, kind="stable")
    ranks = np.arange(1, idx.size + 1, dtype=np.float64)
    passing = np.flatnonzero(log_q[order] <= np.log(ranks))
    if passing.size:
        out[idx[order[: passing[-1] + 1]]] = True
    return np.asarray(out | plain, dtype=np.bool_)


def series_statistics(
    kind: Literal["rate", "mean"],
    value: npt.ArrayLike,
    baseline: npt.ArrayLike,
    n: npt.ArrayLike,
    n_baseline: npt.ArrayLike | None = None,
    scale: npt.ArrayLike | None = None,
    direction: Direction = "both",
    *,
    limit: npt.ArrayLike,
    effect: float,
    power: float = 0.9,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """:func:`shift_statistic` and which series hold enough samples to be decided.

    A series is eligible when its statistic is defined and ``n`` reaches the power-based
    minimum (:func:`min_samples_for` at its ``limit``; ``sigma`` from the baseline rate, or
    from ``scale`` for means). This is what the engine runs for each :class:`~mlmon.alerts.Shift`
    rule, and what ``benchmarks/bench_false_alarms.py`` runs on its simulated windows.

    >>> z, change, ok = series_statistics("rate", [0.7, 0.7], [0.8, 0.8], [2000, 100],
    ...                                   direction="down", limit=5.5, effect=0.1)
    >>> z.round(1).tolist(), ok.tolist()
    ([10.6, 2.4], [True, False])
    """
    z, change = shift_statistic(kind, value, baseline, n, n_baseline, scale, direction)
    b = np.broadcast_to(np.asarray(baseline, dtype=np.float64), z.shape)
    with np.errstate(invalid="ignore"):
        if kind == "rate":
            sigma = np.where((b >= 0) & (b <= 1), np.sqrt(np.clip(b * (1 - b), 0, None)), np.nan)
        else:
            assert scale is not None  # shift_statistic raised otherwise
            s = np.broadcast_to(np.asarray(scale, dtype=np.float64), z.shape)
            sigma = np.where(s >= 0, np.sqrt(np.clip(s, 0, None)), np.nan)
        need = min_samples_for(limit, sigma, effect, power)
        nn = np.broadcast_to(np.asarray(n, dtype=np.float64), z.shape)
        eligible = ~np.isnan(z) & ~np.isnan(need) & (nn >= need)
    return z, change, np.asarray(eligible, dtype=np.bool_)


def decide_family(
    z: npt.ArrayLike,
    change: npt.ArrayLike,
    eligible: npt.ArrayLike,
    limits: npt.ArrayLike,
    firing: npt.ArrayLike,
    min_effect: npt.ArrayLike,
    clear_ratio: npt.ArrayLike,
    correction: Correction = "bonferroni",
) -> npt.NDArray[np.bool_]:
    """The condition of every series of the family in one evaluation.

    A series that is not firing needs to cross its limit after the family correction
    (:func:`family_decisions`) with a change of at least ``min_effect``; a firing one holds
    while ``z >= clear_ratio · limit`` and the change is at least ``clear_ratio · min_effect``.
    Series that are not ``eligible`` are False (the engine leaves them undecided).

    >>> decide_family([6.0, 6.0, 3.0], [0.2, 0.01, 0.2], [True, True, True], 5.5,
    ...               [False, False, True], 0.05, 0.5).tolist()
    [True, False, True]
    """
    zz = np.asarray(z, dtype=np.float64)
    ok = np.broadcast_to(np.asarray(eligible, dtype=np.bool_), zz.shape)
    ch = np.broadcast_to(np.asarray(change, dtype=np.float64), zz.shape)
    lim = np.broadcast_to(np.asarray(limits, dtype=np.float64), zz.shape)
    on = np.broadcast_to(np.asarray(firing, dtype=np.bool_), zz.shape)
    eff = np.broadcast_to(np.asarray(min_effect, dtype=np.float64), zz.shape)
    clear = np.broadcast_to(np.asarray(clear_ratio, dtype=np.float64), zz.shape)
    crossed = family_decisions(np.where(ok, zz, np.nan), lim, correction)
    with np.errstate(invalid="ignore"):
        hold = (zz >= clear * lim) & (ch >= clear * eff)
        new = crossed & (ch >= eff)
    return np.asarray(ok & np.where(on, hold, new), dtype=np.bool_)
