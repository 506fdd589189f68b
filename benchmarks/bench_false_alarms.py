"""False alarms and detection delay of the alert budget, against per-test rules and river's ADWIN.

Run: ``python benchmarks/bench_false_alarms.py [--days 7] [--seeds 2] [--runs 20]``

The stream is what a monitor's window accumulators hold, drawn slice by slice (time-compressed:
a slice's sufficient statistics are drawn directly, with the distribution the rows would give):
1,000 predictions/s split unevenly over 20 segments (Zipf-like, segment ``s04`` carrying 5%),
200 N(0, 1) features, a binary classifier with 30% predicted positives at precision 0.8, every
prediction labelled. Each 10 s flush is one slice; the window is the last 300 s (30 slices), as
in a monitor with ``window=300, flush_interval=10``. Series: each feature and precision per
segment and over all segments: 200 × 21 + 21 = 4,221.

Policies, all fed the same windows:

- **budget**: ``Shift("mlmon_feature_mean", labels={"feature": "*"}, effect=0.25,
  baseline="reference")`` and ``Shift("mlmon_precision", effect=0.10, baseline="reference")``
  under ``AlertBudget(false_alarms=1, per="week")``, decided with the very functions the engine
  runs (``series_statistics``, ``AlertBudget.limit``, ``decide_family``), with the engine's
  state machine (``for_=0``, ``resolve_after=60``);
- **per-test z**: the same statistics, each series held to a fixed one-sided level (no budget,
  the default ``min_samples``);
- **PercentDrop 10%** (precision only): the existing rule against the reference 0.8 (fires under
  0.72 for 60 s, 200 labels);
- **ADWIN** (river, ``delta=0.002``) fed the rows of segment ``s04`` one by one (feature ``f0``;
  precision: each predicted positive's 1/0 hit), as it is meant to be used. Its false alarms are
  measured on those two series and scaled to the 4,221 (the other segments carry more or fewer
  rows, so this is indicative).

False alarms: a stationary week (per seed; one alarm = a series going to firing). Delay: the
change starts at a random time 15 min in; delay to the first firing of a changed series, over
``--runs`` runs; "missed" = not within an hour.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import attrs
import numpy as np

from mlmon.alerts import AlertBudget, PercentDrop, Shift
from mlmon.alerts.budget import decide_family, series_statistics

try:
    from river.drift import ADWIN
except ImportError:  # pragma: no cover - river is in the bench extra
    ADWIN = None

FLUSH = 10.0
WINDOW = 300.0
K = int(WINDOW / FLUSH)
RATE = 1000.0
SEGMENTS = 20
FEATURES = 200
POSITIVE = 0.3
PRECISION = 0.8
SMALL = 4  # the segment carrying 5% of the traffic
RESOLVE_AFTER = 60.0
DAY = 86400.0

FEATURE_RULE = Shift("mlmon_feature_mean", labels={"feature": "*"}, effect=0.25, baseline="reference")
PRECISION_RULE = Shift("mlmon_precision", effect=0.10, baseline="reference")
PERCENT_DROP = PercentDrop("mlmon_precision", percent=10, baseline=PRECISION)
SERIES = FEATURES * (SEGMENTS + 1) + (SEGMENTS + 1)


def shares() -> np.ndarray:
    w = 1.0 / (np.arange(SEGMENTS) + 1.0)
    w[SMALL] = 0.0
    w = w / w.sum() * 0.95
    w[SMALL] = 0.05
    return w


class Stream:
    """Slices of the monitor's window: counts, feature sums and sums of squares, precision counts."""

    def __init__(self, rng: np.random.Generator, features: int) -> None:
        self.rng = rng
        self.f = features
        self.lam = RATE * shares() * FLUSH
        self.n = np.zeros((K, SEGMENTS))
        self.s = np.zeros((K, SEGMENTS, features))
        self.q = np.zeros((K, SEGMENTS, features))
        self.pp = np.zeros((K, SEGMENTS))
        self.tp = np.zeros((K, SEGMENTS))
        self.i = 0
        self.raw_x: list[float] = []
        self.raw_tp: list[float] = []

    def step(self, mu: np.ndarray, precision: np.ndarray) -> None:
        """One flush: ``mu`` (segments × features) feature means, ``precision`` per segment."""
        rng = self.rng
        n = rng.poisson(self.lam).astype(np.float64)
        root = np.sqrt(n)[:, None]
        s = rng.normal(n[:, None] * mu, np.broadcast_to(root, mu.shape))
        dev = rng.chisquare(np.broadcast_to(np.maximum(n - 1.0, 1.0)[:, None], mu.shape))
        safe = np.maximum(n, 1.0)[:, None]
        q = np.where(n[:, None] > 1, dev, 0.0) + s * s / safe
        pp = rng.binomial(n.astype(np.int64), POSITIVE).astype(np.float64)
        tp = rng.binomial(pp.astype(np.int64), precision).astype(np.float64)
        # Segment s04, feature 0 and its labels row by row, for ADWIN (same stream, same sums).
        x = rng.normal(mu[SMALL, 0], 1.0, int(n[SMALL]))
        s[SMALL, 0], q[SMALL, 0] = x.sum(), float(x @ x)
        hits = (rng.random(int(pp[SMALL])) < precision[SMALL]).astype(np.float64)
        tp[SMALL] = hits.sum()
        self.raw_x, self.raw_tp = x.tolist(), hits.tolist()
        j = self.i % K
        self.n[j], self.s[j], self.q[j], self.pp[j], self.tp[j] = n, s, q, pp, tp
        self.i += 1

    def window(self) -> dict[str, np.ndarray]:
        """Window values of every series; row ``SEGMENTS`` is the all-segments series."""
        n = self.n.sum(axis=0)
        s = self.s.sum(axis=0)
        q = self.q.sum(axis=0)
        pp = self.pp.sum(axis=0)
        tp = self.tp.sum(axis=0)
        n = np.append(n, n.sum())
        s = np.vstack([s, s.sum(axis=0)])
        q = np.vstack([q, q.sum(axis=0)])
        pp = np.append(pp, pp.sum())
        tp = np.append(tp, tp.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / n[:, None]
            var = np.maximum(q / n[:, None] - mean * mean, 0.0)
            prec = np.where(pp > 0, tp / pp, np.nan)
        return {"rows": n, "mean": mean, "var": var, "labels": n, "trials": pp, "precision": prec}


class States:
    """The engine's state machine, vectorised: inactive -> pending -> firing -> resolved."""

    def __init__(self, shape: tuple[int, ...], for_: float) -> None:
        self.firing = np.zeros(shape, dtype=bool)
        self.since = np.full(shape, np.nan)
        self.false_since = np.full(shape, np.nan)
        self.for_ = for_
        self.alarms = np.zeros(shape, dtype=np.int64)
        self.first: np.ndarray = np.full(shape, np.nan)
        self.active = False

    def step(self, cond: np.ndarray, now: float) -> None:
        if not self.active and not cond.any():
            return  # nothing pending, firing or starting: nothing changes
        self.since = np.where(cond & np.isnan(self.since), now, self.since)
        self.since = np.where(cond | self.firing, self.since, np.nan)
        fire = cond & ~self.firing & (now - self.since >= self.for_)
        self.alarms += fire
        self.first = np.where(fire & np.isnan(self.first), now, self.first)
        self.firing |= fire
        self.false_since = np.where(self.firing & ~cond & np.isnan(self.false_since), now, self.false_since)
        self.false_since = np.where(cond, np.nan, self.false_since)
        done = self.firing & ~cond & (now - self.false_since >= RESOLVE_AFTER)
        self.firing &= ~done
        self.since = np.where(done, np.nan, self.since)
        self.false_since = np.where(done, np.nan, self.false_since)
        self.active = bool(self.firing.any() or (~np.isnan(self.since)).any())


BUDGET = AlertBudget(false_alarms=1, per="week", interval=FLUSH)
BUDGET_BH = attrs.evolve(BUDGET, correction="bh")
HALF = (attrs.evolve(FEATURE_RULE, min_effect=0.125), attrs.evolve(PRECISION_RULE, min_effect=0.05))
ZERO = (attrs.evolve(FEATURE_RULE, min_effect=0.0), attrs.evolve(PRECISION_RULE, min_effect=0.0))

# label -> ("budget", budget, (feature rule, precision rule)) | ("z", limit) | ("drop",); and for_
POLICIES: list[tuple[str, tuple[Any, ...], float]] = [
    ("budget, 1/week", ("budget", BUDGET, (FEATURE_RULE, PRECISION_RULE)), 0.0),
    ("budget, 1/week, BH", ("budget", BUDGET_BH, (FEATURE_RULE, PRECISION_RULE)), 0.0),
    ("budget, 1/week, min_effect = effect/2", ("budget", BUDGET, HALF), 0.0),
    ("budget, 1/week, min_effect = 0", ("budget", BUDGET, ZERO), 0.0),
    ("per-test z, alpha 0.05", ("z", 1.645), 0.0),
    ("per-test z, alpha 0.001", ("z", 3.09), 0.0),
    ("per-test z, alpha 1e-5", ("z", 4.265), 0.0),
    ("PercentDrop 10% (precision)", ("drop",), PERCENT_DROP.for_),
]


class Evaluator:
    """Every policy on the same windows; the statistics are computed once per flush.

    The budget policies run what the engine runs for its Shift rules: ``series_statistics``
    per rule at the limit of ``AlertBudget.limit`` for all 4,221 series, then ``decide_family``
    across both rules, then the state machine.
    """

    def __init__(self, features: int) -> None:
        self.lim_f = BUDGET.limit(SERIES, WINDOW, FLUSH, FEATURE_RULE.sides)
        self.lim_p = BUDGET.limit(SERIES, WINDOW, FLUSH, PRECISION_RULE.sides)
        self.states = [
            {"f": States((SEGMENTS + 1, features), for_), "p": States((SEGMENTS + 1,), for_)}
            for _, _, for_ in POLICIES
        ]
        self.decide_seconds = 0.0
        self.others_until = math.inf  # the non-budget policies stop being evaluated then
        self.others_seconds = 0.0

    def step(self, w: dict[str, np.ndarray], now: float) -> None:
        t0 = time.perf_counter()
        zf, cf, okf = series_statistics(
            "mean", w["mean"], 0.0, w["rows"][:, None], None, w["var"], FEATURE_RULE.direction,
            limit=self.lim_f, effect=FEATURE_RULE.effect, power=FEATURE_RULE.power,
        )  # fmt: skip
        zp, cp, okp = series_statistics(
            "rate", w["precision"], PRECISION, w["trials"], None, None, PRECISION_RULE.direction,
            limit=self.lim_p, effect=PRECISION_RULE.effect, power=PRECISION_RULE.power,
        )  # fmt: skip
        okf &= w["rows"][:, None] >= FEATURE_RULE.min_samples
        okp &= w["labels"] >= PRECISION_RULE.min_samples
        z = np.concatenate([zf.ravel(), zp])
        change = np.concatenate([cf.ravel(), cp])
        ok = np.concatenate([okf.ravel(), okp])
        limits = np.concatenate([np.full(zf.size, self.lim_f), np.full(zp.size, self.lim_p)])
        first = True
        others = now <= self.others_until
        if others:
            self.others_seconds = now
        for (_label, how, _), st in zip(POLICIES, self.states, strict=True):
            if how[0] != "budget" and not others:
                continue
            if how[0] == "budget":
                frule, prule = how[2]
                cond = decide_family(
                    z, change, ok, limits,
                    np.concatenate([st["f"].firing.ravel(), st["p"].firing]),
                    np.concatenate([np.full(zf.size, frule.min_effect), np.full(zp.size, prule.min_effect)]),
                    np.concatenate([np.full(zf.size, frule.clear_ratio), np.full(zp.size, prule.clear_ratio)]),
                    how[1].correction,
                )  # fmt: skip
                if first:
                    self.decide_seconds += time.perf_counter() - t0
                    first = False
                df, dp = cond[: zf.size].reshape(zf.shape), cond[zf.size :]
            elif how[0] == "z":
                with np.errstate(invalid="ignore"):
                    df = (zf >= how[1]) & (w["rows"][:, None] >= 500)
                    dp = (zp >= how[1]) & (w["labels"] >= 200)
            else:
                dp = np.array([
                    bool(n >= PERCENT_DROP.min_samples and PERCENT_DROP.check(v, PRECISION, n, None, False)[0])
                    for v, n in zip(w["precision"].tolist(), w["labels"].tolist(), strict=True)
                ])  # fmt: skip
                df = np.zeros(zf.shape, dtype=bool)
            st["f"].step(df, now)
            st["p"].step(dp, now)


def null_week(seed: int, seconds: float, others: float) -> dict[str, Any]:
    """False alarms per week of every policy on one stationary stream, and ADWIN's on two series.

    The per-test policies and ADWIN, which alarm thousands of times, run for the first
    ``others`` seconds only, and their counts are scaled to a week.
    """
    rng = np.random.default_rng(seed)
    stream = Stream(rng, FEATURES)
    ev = Evaluator(FEATURES)
    ev.others_until = others
    mu = np.zeros((SEGMENTS, FEATURES))
    prec = np.full(SEGMENTS, PRECISION)
    adwins = [ADWIN(), ADWIN()] if ADWIN is not None else []
    adwin_alarms = 0
    steps = int(seconds / FLUSH)
    for i in range(steps):
        now = (i + 1) * FLUSH
        stream.step(mu, prec)
        if now <= others:
            for a, values in zip(adwins, (stream.raw_x, stream.raw_tp), strict=False):
                for v in values:
                    a.update(v)
                    adwin_alarms += a.drift_detected
        if i + 1 < K:
            continue  # the window fills first (a monitor's window grows; the benchmark waits)
        ev.step(stream.window(), now)
    week = 7 * DAY
    judged = steps * FLUSH - (K - 1) * FLUSH
    judged_others = ev.others_seconds - (K - 1) * FLUSH
    out: dict[str, Any] = {}
    for (label, how, _), st in zip(POLICIES, ev.states, strict=True):
        scale = week / (judged if how[0] == "budget" else judged_others)
        out[label] = (st["f"].alarms.sum() * scale, st["p"].alarms.sum() * scale)
    out["adwin"] = adwin_alarms / 2 * SERIES * week / min(others, steps * FLUSH) if adwins else math.nan
    out["decide_ms"] = ev.decide_seconds / max(1, steps - K + 1) * 1e3
    return out


SCENARIOS = {
    "precision -10 pts, segment s04 (5%)": ("precision", "segment"),
    "precision -10 pts, every segment": ("precision", "fleet"),
    "feature +0.25σ, segment s04 (5%)": ("feature", "segment"),
    "feature +0.25σ, every segment": ("feature", "fleet"),
}


def delay_run(seed: int, scenario: tuple[str, str]) -> dict[str, float]:
    """Delay of each policy (and ADWIN) on one run: the changed feature (or precision) only.

    Only the series of the changed feature and precision are simulated (21 + 21); the budget is
    still shared by all 4,221 series (its limit is computed for them).
    """
    what, where = scenario
    rng = np.random.default_rng(10_000 + seed)
    stream = Stream(rng, 1)
    change_at = 900.0 + float(rng.uniform(0, FLUSH))
    horizon = change_at + 3600.0
    ev = Evaluator(1)
    changed = np.zeros(SEGMENTS + 1, dtype=bool)
    if where == "segment":
        changed[SMALL] = True
    else:
        changed[:] = True
    adwin = ADWIN() if ADWIN is not None else None
    adwin_first = math.nan
    steps = int(horizon / FLUSH)
    mu = np.zeros((SEGMENTS, 1))
    prec = np.full(SEGMENTS, PRECISION)
    for i in range(steps):
        now = (i + 1) * FLUSH
        # The slice ending at ``now`` holds (now - change_at) / FLUSH of changed data.
        frac = min(1.0, max(0.0, (now - change_at) / FLUSH))
        seg = changed[:SEGMENTS]
        if what == "feature":
            mu[:, 0] = np.where(seg, 0.25 * frac, 0.0)
        else:
            prec = np.where(seg, PRECISION - 0.10 * frac, PRECISION)
        stream.step(mu, prec)
        if adwin is not None and math.isnan(adwin_first):
            # Row by row in segment s04; a row's time is spread evenly over the slice.
            values = stream.raw_x if what == "feature" else stream.raw_tp
            for k, v in enumerate(values):
                adwin.update(v)
                t = now - FLUSH + FLUSH * (k + 1) / len(values)
                if adwin.drift_detected and t > change_at:
                    adwin_first = t
                    break
        if i + 1 < K:
            continue
        ev.step(stream.window(), now)
    out = {}
    for (label, _, _), st in zip(POLICIES, ev.states, strict=True):
        first = st["f"].first[:, 0] if what == "feature" else st["p"].first
        hits = first[changed & (first > change_at)]
        out[label] = float(hits.min() - change_at) if hits.size else math.nan
    out["ADWIN (river, delta=0.002), rows of s04"] = adwin_first - change_at
    return out


def fmt_delay(values: list[float]) -> tuple[str, str, str]:
    got = sorted(v for v in values if math.isfinite(v))
    if not got:
        return f"0/{len(values)}", "–", "–"
    med = statistics.median(got)
    p90 = got[min(len(got) - 1, math.ceil(0.9 * len(got)) - 1)]
    return f"{len(got)}/{len(values)}", f"{med:.0f} s", f"{p90:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=7.0, help="simulated days per stationary stream")
    ap.add_argument("--seeds", type=int, default=2, help="stationary streams")
    ap.add_argument("--others-days", type=float, default=0.5,
                    help="simulated days the per-test rules and ADWIN run for (their counts are scaled to a week)")
    ap.add_argument("--runs", type=int, default=20, help="runs per change scenario")
    args = ap.parse_args()
    lim_f = BUDGET.limit(SERIES, WINDOW, FLUSH, 2)
    lim_p = BUDGET.limit(SERIES, WINDOW, FLUSH, 1)
    print(f"{SERIES:,} series (200 features x 21 + precision x 21), window {WINDOW:.0f} s, a decision every {FLUSH:.0f} s;")
    print(f"budget limits: z >= {lim_f:.2f} per side (features, two-sided), z >= {lim_p:.2f} (precision, one-sided)")
    print(f"segment shares: {', '.join(f'{x:.1%}' for x in shares())}\n")

    t0 = time.perf_counter()
    results = [null_week(seed, args.days * DAY, args.others_days * DAY) for seed in range(args.seeds)]
    elapsed = time.perf_counter() - t0
    print(f"**False alarms on stationary traffic**: {args.days:g} days x {args.seeds} streams "
          f"({elapsed:.0f} s to simulate); the per-test rules and ADWIN on the first {args.others_days:g} days, "
          f"scaled. Per week, mean over streams (each stream in brackets).\n")
    print("| policy | features | precision | total per week |")
    print("|---|---:|---:|---:|")
    for label, _, _ in POLICIES:
        f = [r[label][0] for r in results]
        p = [r[label][1] for r in results]
        tot = [a + b for a, b in zip(f, p, strict=True)]
        each = ", ".join(f"{x:.0f}" for x in tot)
        print(f"| {label} | {statistics.mean(f):,.1f} | {statistics.mean(p):,.1f} | {statistics.mean(tot):,.1f} ({each}) |")
    if ADWIN is not None:
        ad = [r["adwin"] for r in results]
        print(f"| ADWIN (river, delta=0.002) on the rows of s04 (feature f0, precision), scaled to {SERIES:,} series | | | {statistics.mean(ad):,.0f} |")
    print(f"\nBudget decision for all {SERIES:,} series: {statistics.median(r['decide_ms'] for r in results):.2f} ms per flush (median over streams).\n")

    print(f"**Detection delay** ({args.runs} runs each; the delay counts from the change to the first firing of a changed series; within 1 h)\n")
    print("| change | policy | detected | median delay | p90 delay |")
    print("|---|---|---:|---:|---:|")
    for name, scenario in SCENARIOS.items():
        runs = [delay_run(seed, scenario) for seed in range(args.runs)]
        for label in (runs[0] if runs else ()):
            if label.startswith("PercentDrop") and scenario[0] == "feature":
                continue
            det, med, p90 = fmt_delay([r[label] for r in runs])
            print(f"| {name} | {label} | {det} | {med} | {p90} |")


if __name__ == "__main__":
    main()
