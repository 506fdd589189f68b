"""Drift scores against direct formulas and scipy, and decisions that do not cry wolf."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlmon._component import CallBatch
from mlmon.drift import (
    DriftConfig,
    benjamini_hochberg,
    chi2_binned,
    decide,
    drift_scores,
    drift_scores_ordered,
    js_distance,
    ks_binned,
    ks_pvalue,
    psi,
    wasserstein_binned,
)
from mlmon.features import FeatureComponent
from mlmon.reference import NumericProfile, Reference, binned_counts


def count_pairs(
    min_cells: int = 2, max_cells: int = 14
) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Two non-empty count vectors on the same cells."""

    def pair(k: int) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
        counts = arrays(np.int64, k, elements=st.integers(0, 1000))
        return st.tuples(counts, counts).filter(lambda rw: rw[0].sum() > 0 and rw[1].sum() > 0)

    return st.integers(min_cells, max_cells).flatmap(pair)


# --------------------------------------------------------------------------- scores vs formulas


@given(count_pairs())
@settings(max_examples=200, deadline=None)
def test_psi_equals_the_floored_formula(rw: tuple[np.ndarray, np.ndarray]) -> None:
    r, w = rw
    eps = 1e-4
    expected = 0.0
    for rc, wc in zip(r.tolist(), w.tolist(), strict=True):
        p = max(rc / r.sum(), eps)
        q = max(wc / w.sum(), eps)
        expected += (q - p) * math.log(q / p)
    assert psi(r, w) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_psi_floor_is_configurable() -> None:
    # A cell empty in the reference holding 10% of the window costs about 0.1 · ln(0.1 / eps).
    assert psi([0, 100], [10, 90], epsilon=1e-2) < psi([0, 100], [10, 90], epsilon=1e-4)


@given(count_pairs())
@settings(max_examples=200, deadline=None)
def test_js_equals_scipy_jensenshannon_base_2(rw: tuple[np.ndarray, np.ndarray]) -> None:
    r, w = rw
    assert js_distance(r, w) == pytest.approx(jensenshannon(r, w, base=2), abs=1e-7)


def _wasserstein_by_integration(r: np.ndarray, w: np.ndarray, grid: int = 200_000) -> float:
    """∫|u - G(u)| du on a fine grid, G the window CDF in reference-quantile space."""
    p = r / r.sum()
    q = w / w.sum()
    upper_u = np.cumsum(p)
    lower_u = upper_u - p
    cum_q = np.concatenate(([0.0], np.cumsum(q)))
    u = (np.arange(grid) + 0.5) / grid
    # The cell holding u: the first with upper edge > u (zero-width cells are never chosen).
    k = np.searchsorted(upper_u, u, side="right")
    k = np.minimum(k, len(p) - 1)
    frac = np.where(p[k] > 0, (u - lower_u[k]) / np.where(p[k] > 0, p[k], 1.0), 0.0)
    g = cum_q[k] + q[k] * frac
    return float(np.mean(np.abs(u - g)))


@given(count_pairs(3, 12))
@settings(max_examples=60, deadline=None)
def test_wasserstein_equals_direct_integration(rw: tuple[np.ndarray, np.ndarray]) -> None:
    r, w = rw
    assert wasserstein_binned(r, w) == pytest.approx(_wasserstein_by_integration(r, w), abs=2e-5)


def test_wasserstein_places_underflow_at_zero_and_overflow_at_one() -> None:
    ref = [0, 1, 1, 1, 1, 0]
    assert wasserstein_binned(ref, [1, 0, 0, 0, 0, 0]) == pytest.approx(0.5)
    assert wasserstein_binned(ref, [0, 0, 0, 0, 0, 1]) == pytest.approx(0.5)
    assert wasserstein_binned(ref, ref) == 0.0
    # Every value moved up one quartile bin; the top quarter lands in overflow, at u = 1:
    # the area is 0.25²/2 on [0, 0.25] plus 0.25 · 0.75 on [0.25, 1].
    assert wasserstein_binned(ref, [0, 0, 1, 1, 1, 1]) == pytest.approx(0.03125 + 0.1875)


def test_binned_ks_is_exact_when_every_value_is_a_bin_edge() -> None:
    """Integer data with one bin per value: binning loses nothing, so scipy's answer is ours."""
    rng = np.random.default_rng(3)
    ref_x = rng.integers(0, 8, size=3000).astype(float)
    win_x = rng.integers(0, 9, size=700).astype(float)
    prof = NumericProfile.from_values("x", ref_x, bins=10)
    d, p = ks_binned(prof.cells(), binned_counts(win_x, np.array(prof.edges)))
    expected = stats.ks_2samp(ref_x, win_x, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize("en", [1001.0, 2000.0, 10_000.0, 50_000.0])
@pytest.mark.parametrize("z", [0.4, 0.8, 1.0, 1.36, 1.8])
def test_large_sample_ks_pvalue_is_within_documented_tolerance_of_kstwo(
    en: float, z: float
) -> None:
    d = z / math.sqrt(en)
    exact = stats.kstwo.sf(d, round(en))
    assert ks_pvalue(d, en) == pytest.approx(exact, abs=5e-3 if exact > 0.1 else 3e-4)


def test_small_sample_ks_pvalue_is_scipys_kstwo() -> None:
    for en in (1.0, 10.0, 333.3, 1000.0):
        assert ks_pvalue(0.1, en) == stats.kstwo.sf(0.1, round(en))


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.3, 1.0])
def test_binned_ks_is_within_one_cell_of_the_raw_statistic(shift: float) -> None:
    """Documented tolerance: D_binned <= D_raw <= D_binned + the largest cell proportion."""
    rng = np.random.default_rng(int(shift * 10))
    ref_x = rng.normal(size=5000)
    win_x = rng.normal(shift, 1.0, size=1000)
    prof = NumericProfile.from_values("x", ref_x)
    r = prof.cells()
    w = binned_counts(win_x, np.array(prof.edges))
    d, p = ks_binned(r, w)
    raw = stats.ks_2samp(ref_x, win_x, method="asymp")
    max_cell = max((r / r.sum()).max(), (w / w.sum()).max())
    assert d <= raw.statistic + 1e-12
    assert raw.statistic <= d + max_cell
    # A smaller statistic on the same sizes: the binned p-value is conservative.
    assert p >= raw.pvalue - 1e-12


@given(count_pairs())
@settings(max_examples=200, deadline=None)
def test_chi2_equals_scipy_contingency_without_yates(rw: tuple[np.ndarray, np.ndarray]) -> None:
    r, w = rw
    stat, p = chi2_binned(r, w)
    keep = (r + w) > 0
    if keep.sum() < 2:
        assert (stat, p) == (0.0, 1.0)
        return
    expected = stats.chi2_contingency(np.vstack([r[keep], w[keep]]), correction=False)
    assert stat == pytest.approx(expected.statistic, rel=1e-9, abs=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=1e-7, abs=1e-12)


@given(arrays(np.float64, st.integers(1, 30), elements=st.floats(0.0, 1.0)))
@settings(max_examples=200, deadline=None)
def test_benjamini_hochberg_equals_scipy(p: np.ndarray) -> None:
    assert np.allclose(
        benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"), atol=1e-12
    )


def test_benjamini_hochberg_skips_nan() -> None:
    out = benjamini_hochberg([0.01, np.nan, 0.02])
    assert math.isnan(out[1])
    assert out[[0, 2]].tolist() == pytest.approx([0.02, 0.02])


# --------------------------------------------------------------------------- edge cases


def test_empty_side_gives_nan_scores() -> None:
    assert math.isnan(psi([0, 0], [1, 2]))
    assert math.isnan(js_distance([1, 2], [0, 0]))
    assert math.isnan(wasserstein_binned([0, 0], [1, 2]))
    assert all(math.isnan(v) for v in ks_binned([1, 2], [0, 0]))
    assert all(math.isnan(v) for v in chi2_binned([0, 0], [1, 2]))


@pytest.mark.parametrize(
    ("r", "w", "match"),
    [([1, 2], [1, 2, 3], "same cells"), ([1, -2], [1, 2], ">= 0"), ([1, np.nan], [1, 2], "finite")],
)
def test_bad_counts_raise(r: list[float], w: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        psi(r, w)


def test_identical_distributions_score_zero() -> None:
    s = drift_scores([0, 10, 20, 30, 0], [0, 10, 20, 30, 0], ordered=True)
    assert (s.psi, s.js, s.ks, s.wasserstein, s.pvalue) == (0.0, 0.0, 0.0, 0.0, 1.0)


def test_categorical_scores_have_no_ks_or_wasserstein() -> None:
    s = drift_scores([10, 20, 0], [10, 10, 10], ordered=False)
    assert math.isnan(s.ks) and math.isnan(s.wasserstein)
    assert s.pvalue == chi2_binned([10, 20, 0], [10, 10, 10])[1]


def test_constant_reference_sends_everything_else_to_the_outer_cells() -> None:
    """A constant feature: all reference mass in one bin, any other value is out of range."""
    prof = NumericProfile.from_values("c", np.full(1000, 5.0))
    same = binned_counts(np.full(600, 5.0), np.array(prof.edges))
    moved = binned_counts(np.r_[np.full(500, 5.0), np.full(100, 6.0)], np.array(prof.edges))
    assert psi(prof.cells(), same) == 0.0
    assert moved.tolist() == [0, 500, 100]
    assert psi(prof.cells(), moved) > 0.2


# --------------------------------------------------------------------------- config and decisions


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "kl"}, "method must be .* got 'kl'"),
        ({"warning": -1.0}, "warning must be a positive number or None, got -1.0"),
        ({"drift": math.inf}, "drift must be a positive number or None, got inf"),
        ({"warning": 0.3, "drift": 0.2}, r"warning \(0.3\) must be <= drift \(0.2\)"),
        ({"alpha": 1.5}, r"alpha must be a number in \(0, 1\), got 1.5"),
        ({"min_rows": 0}, "min_rows must be an int >= 1, got 0"),
        ({"min_rows": 10.0}, "min_rows must be an int >= 1, got 10.0"),
        ({"epsilon": 0.0}, "epsilon must be a number in"),
        ({"fdr": "yes"}, "fdr must be a bool, got 'yes'"),
        ({"method": "pvalue", "drift": 0.2}, "do not apply to method='pvalue'"),
    ],
)
def test_drift_config_validators_name_field_and_value(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        DriftConfig(**kwargs)  # type: ignore[arg-type]


def test_defaults_decide_by_psi_with_warning_at_0_1_and_drift_at_0_2() -> None:
    cfg = DriftConfig()
    assert (cfg.method, cfg.thresholds, cfg.min_rows) == ("psi", (0.1, 0.2), 500)


def test_decide_maps_effect_size_to_status() -> None:
    ref = [0, 500, 500, 0]
    ok = drift_scores(ref, [0, 490, 510, 0], ordered=True)
    warn = drift_scores(ref, [0, 330, 670, 0], ordered=True)
    bad = drift_scores(ref, [0, 200, 800, 0], ordered=True)
    assert 0.1 <= warn.psi < 0.2 <= bad.psi
    assert decide([ok, warn, bad], DriftConfig()) == [0, 1, 2]


def test_decide_makes_no_decision_below_min_rows() -> None:
    few = drift_scores([0, 500, 500, 0], [0, 0, 499, 0], ordered=True)
    assert decide([few], DriftConfig()) == [None]
    assert decide([few], DriftConfig(min_rows=499)) == [2]


def test_pvalue_decisions_use_benjamini_hochberg() -> None:
    ref = [0, 5000, 5000, 0]
    small = drift_scores(ref, [0, 450, 550, 0], ordered=True)  # p ≈ 0.021
    null = drift_scores(ref, [0, 500, 500, 0], ordered=True)  # p = 1
    assert small.pvalue == pytest.approx(0.0205, abs=1e-3)
    # Alone, or with one null companion (adjusted p ≈ 0.041), it is a discovery at 0.05 ...
    assert decide([small, null], DriftConfig(method="pvalue")) == [2, 0]
    # ... but one small p-value among 31 tests is not, unless the correction is turned off.
    many = [small] + [null] * 30
    assert decide(many, DriftConfig(method="pvalue"))[0] == 0
    assert decide(many, DriftConfig(method="pvalue", fdr=False))[0] == 2


# --------------------------------------------------------------------------- end to end: no wolf, real drift


def _component(ref: Reference, **kwargs: object) -> FeatureComponent:
    return FeatureComponent(ref, window=10.0, slices=10, now=0.0, **kwargs)  # type: ignore[arg-type]


def _statuses(comp: FeatureComponent, X: np.ndarray, k: int) -> dict[str, float]:
    """Feed one window of rows at t = 10k + 0.5 (earlier windows have rotated out)."""
    t = 10.0 * k + 0.5
    comp.ingest(CallBatch(now=t, wall=t, features=[X], rows=[len(X)]))
    return {
        lab["feature"]: v
        for name, v, lab in comp.samples(t)
        if name == "mlmon_feature_drift_status"
    }


def test_stationary_data_never_raises_a_status_at_default_settings() -> None:
    """200 windows of 1000 rows for 20 features, drawn like the reference: all statuses 0."""
    rng = np.random.default_rng(2024)
    ref = Reference.from_data(rng.normal(size=(20_000, 20)))
    comp = _component(ref)
    worst = 0.0
    for k in range(200):
        statuses = _statuses(comp, rng.normal(size=(1000, 20)), k)
        assert len(statuses) == 20
        worst = max(worst, *statuses.values())
    assert worst == 0.0


def test_stationary_data_with_pvalue_decisions_and_fdr_keeps_false_alarms_rare() -> None:
    rng = np.random.default_rng(7)
    ref = Reference.from_data(rng.normal(size=(20_000, 20)))
    comp = _component(ref, drift=DriftConfig(method="pvalue"))
    windows_with_alarm = 0
    for k in range(100):
        statuses = _statuses(comp, rng.normal(size=(1000, 20)), k)
        windows_with_alarm += any(v > 0 for v in statuses.values())
    # BH at 0.05 bounds the chance of any alarm under the global null by 0.05 per window.
    assert windows_with_alarm <= 12


def test_half_sigma_shift_is_detected_on_that_feature_only() -> None:
    rng = np.random.default_rng(11)
    ref = Reference.from_data(rng.normal(size=(20_000, 20)))
    comp = _component(ref)
    X = rng.normal(size=(1000, 20))
    X[:, 7] += 0.5
    statuses = _statuses(comp, X, 0)
    assert statuses.pop("f7") == 2.0
    assert set(statuses.values()) == {0.0}


# --------------------------------------------------------------------------- many features at once


def any_pairs() -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Count vectors on the same cells, either side possibly empty."""
    return st.integers(2, 14).flatmap(
        lambda k: st.tuples(
            arrays(np.int64, k, elements=st.integers(0, 1000)),
            arrays(np.int64, k, elements=st.integers(0, 1000)),
        )
    )


@given(st.lists(any_pairs(), max_size=8), st.sampled_from([1e-4, 1e-6]))
@settings(max_examples=300, deadline=None)
def test_scores_of_many_features_equal_one_feature_at_a_time(
    pairs: list[tuple[np.ndarray, np.ndarray]], epsilon: float
) -> None:
    many = drift_scores_ordered([r for r, _ in pairs], [w for _, w in pairs], epsilon)
    assert len(many) == len(pairs)
    for (r, w), got in zip(pairs, many, strict=True):
        want = drift_scores(r, w, ordered=True, epsilon=epsilon)
        assert (got.n_reference, got.n_window) == (want.n_reference, want.n_window)
        for field in ("psi", "js", "ks", "wasserstein", "pvalue"):
            a, b = getattr(got, field), getattr(want, field)
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12), field


def test_scores_of_many_features_reject_bad_counts_like_one_feature() -> None:
    with pytest.raises(ValueError, match="counts must be finite and >= 0"):
        drift_scores_ordered([[1, 2], [1, 2]], [[1, 2], [-1, 2]])
    with pytest.raises(ValueError, match="same cells"):
        drift_scores_ordered([[1, 2, 3]], [[1, 2]])
    assert drift_scores_ordered([], []) == []
