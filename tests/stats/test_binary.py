"""stats.binary: binned ROC AUC and average precision against scikit-learn, merging, and the
expected-confusion estimate against a Monte Carlo of its own model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from mlmon.stats.binary import (
    ScoreBins,
    auc_se,
    band,
    binned_auc,
    binned_average_precision,
    expected_binary,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.booleans()), min_size=2, max_size=200))
def test_binned_auc_and_ap_are_scikit_learns_on_the_bin_index(pairs: list[tuple[int, bool]]) -> None:
    cell = np.array([c for c, _ in pairs])
    y = np.array([float(t) for _, t in pairs])
    bins = ScoreBins(10)
    bins.add(cell, y)
    auc, bound = binned_auc(bins.pos, bins.neg)
    if 0 < y.sum() < y.size:
        assert auc == pytest.approx(roc_auc_score(y, cell), abs=1e-12)
        shared = sum(int(np.sum((cell == c) & (y == 1))) * int(np.sum((cell == c) & (y == 0))) for c in range(10))
        assert bound == pytest.approx(shared / (2 * y.sum() * (y.size - y.sum())))
        assert binned_average_precision(bins.pos, bins.neg) == pytest.approx(average_precision_score(y, cell), abs=1e-12)
    else:
        assert auc is None


def test_merging_slices_is_adding_their_rows() -> None:
    rng = np.random.default_rng(0)
    cell, p = rng.integers(0, 50, 1000), rng.uniform(size=1000)
    whole, a, b = ScoreBins(50), ScoreBins(50), ScoreBins(50)
    whole.add(cell, p)
    a.add(cell[:300], p[:300])
    b.add(cell[300:], p[300:])
    a.merge(b)
    np.testing.assert_allclose(a.pos, whole.pos)
    np.testing.assert_allclose(a.neg, whole.neg)
    a.reset()
    assert not a.pos.any() and not a.neg.any()


def test_expected_binary_standard_errors_match_a_simulation_of_the_labels() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(2, 3, 3000)
    pos = p >= 0.5
    est = expected_binary(pos.sum(), p[pos].sum(), (p * (1 - p))[pos].sum(), (~pos).sum(), p[~pos].sum(), (p * (1 - p))[~pos].sum())
    y = rng.uniform(size=(4000, p.size)) < p  # 4,000 draws of the window's labels
    tp = (y & pos).sum(axis=1)
    fp = (~y & pos).sum(axis=1)
    fn = (y & ~pos).sum(axis=1)
    sims = {
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "accuracy": (y == pos).mean(axis=1),
    }
    for name, values in sims.items():
        value, se = est[name]
        assert value == pytest.approx(values.mean(), abs=3 * se / np.sqrt(len(values)) + 2e-3), name
        assert se == pytest.approx(values.std(), rel=0.1), name
        lo, hi = band(value, se)[1:]
        assert 0.92 <= np.mean((values >= lo) & (values <= hi)) <= 0.98, name


def test_auc_standard_error_is_hanley_mcneil_and_uninformative_without_both_classes() -> None:
    assert auc_se(0.8, 100, 0) == 0.5
    a = 0.8
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    want = np.sqrt((a * (1 - a) + 99 * (q1 - a * a) + 199 * (q2 - a * a)) / (100 * 200))
    assert auc_se(a, 100, 200) == pytest.approx(want)
