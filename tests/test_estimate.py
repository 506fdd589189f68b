"""Performance estimated before labels: the reference calibration, the estimated metrics, their
bands and the out-of-range flag, against scikit-learn on the same rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

import mlmon
from mlmon._component import CallBatch
from mlmon.outputs import OutputComponent
from mlmon.reference import MIN_LABELS_PER_CLASS, Calibration, Reference
from mlmon.stats.binary import expected_binary
from mlmon.tasks import BinaryClassification
from mlmon.testing import FakeClock


def miscalibrated(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that rank well but are not probabilities: P(y=1 | s) = s**2."""
    s = np.clip(rng.beta(2.0, 2.0, size=n) + shift, 0.0, 1.0)
    y = (rng.uniform(size=n) < s**2).astype(np.int64)
    return s, y


def estimates(ref: Reference | None, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The estimate samples of a monitor fed ``scores`` in one call."""
    clock = FakeClock()
    mon = mlmon.Monitor("est_test", task=BinaryClassification(threshold=threshold), reference=ref, clock=clock)
    try:
        predict = mon.track(lambda X: X)
        predict(scores)
        snap = mon.snapshot()
        return {x.name: x.value for x in snap.samples if "estimate" in x.name}
    finally:
        mon.close()


def realized(scores: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    pred = (scores >= threshold).astype(int)
    return {
        "precision": precision_score(y, pred, zero_division=0),
        "recall": recall_score(y, pred),
        "f1": f1_score(y, pred),
        "accuracy": accuracy_score(y, pred),
        "roc_auc": roc_auc_score(y, scores),
    }


def test_calibration_matches_scikit_learn_isotonic_regression() -> None:
    rng = np.random.default_rng(1)
    s, y = miscalibrated(rng, 20_000)
    cal = Calibration.fit(s, y)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y)
    grid = np.concatenate([np.linspace(-0.5, 1.5, 2001), s[:500]])
    np.testing.assert_allclose(cal.apply(grid), iso.predict(grid), atol=1e-12)
    assert cal.positives == int(y.sum()) and cal.negatives == int(y.size - y.sum())
    assert cal.score_range == (float(s.min()), float(s.max()))


def test_calibrated_estimate_is_close_to_realized_and_closer_than_raw_scores() -> None:
    rng = np.random.default_rng(2)
    s_ref, y_ref = miscalibrated(rng, 50_000)
    ref = Reference.from_data(s_ref.reshape(-1, 1), outputs=s_ref, labels=y_ref)
    s, y = miscalibrated(rng, 20_000)
    truth = realized(s, y)
    cal = estimates(ref, s)
    raw = estimates(None, s)
    for name, value in truth.items():
        got = cal[f"mlmon_estimated_{name}"]
        assert abs(got - value) < 0.02, (name, got, value)
        assert cal[f"mlmon_estimated_{name}_lower"] <= got <= cal[f"mlmon_estimated_{name}_upper"]
    # The raw scores over-state P(y=1) (s > s**2): uncalibrated precision is far off.
    assert abs(raw["mlmon_estimated_precision"] - truth["precision"]) > 0.1
    assert abs(cal["mlmon_estimated_precision"] - truth["precision"]) < 0.02
    assert cal["mlmon_estimate_unreliable"] == 0
    assert "mlmon_estimate_unreliable" not in raw


def test_bands_hold_the_realized_value_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    s_ref, y_ref = miscalibrated(rng, 50_000)
    ref = Reference.from_data(s_ref.reshape(-1, 1), outputs=s_ref, labels=y_ref)
    comp = OutputComponent(BinaryClassification(), window=60.0, slices=2, now=0.0, reference=ref)
    inside = {name: 0 for name in ("precision", "recall", "f1", "accuracy", "roc_auc")}
    windows = 60
    for k in range(windows):
        s, y = miscalibrated(rng, 2_000)
        comp.reset()
        comp.observe(BinaryClassification().map_outputs(s), s.size, now=float(k))
        got = {n: v for n, v, _ in comp.samples(float(k))}
        for name, value in realized(s, y).items():
            lo, hi = got[f"mlmon_estimated_{name}_lower"], got[f"mlmon_estimated_{name}_upper"]
            inside[name] += lo <= value <= hi
    for name, n in inside.items():
        assert n >= 0.85 * windows, (name, n)  # 95% bands: 57 of 60 expected


def test_expected_binary_is_the_ratio_of_expected_counts() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(size=1000)
    pos = p >= 0.5
    out = expected_binary(pos.sum(), p[pos].sum(), (p * (1 - p))[pos].sum(), (~pos).sum(), p[~pos].sum(), (p * (1 - p))[~pos].sum())
    tp, fp, fn = p[pos].sum(), (1 - p[pos]).sum(), p[~pos].sum()
    tn = (1 - p[~pos]).sum()
    assert out["precision"][0] == pytest.approx(tp / (tp + fp))
    assert out["recall"][0] == pytest.approx(tp / (tp + fn))
    assert out["f1"][0] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert out["accuracy"][0] == pytest.approx((tp + tn) / 1000)


def test_scores_beyond_the_reference_range_flag_the_estimate_unreliable() -> None:
    rng = np.random.default_rng(5)
    s_ref, y_ref = miscalibrated(rng, 10_000)
    s_ref = s_ref * 0.8  # the reference never scored above 0.8
    ref = Reference.from_data(s_ref.reshape(-1, 1), outputs=s_ref, labels=y_ref)
    inside = estimates(ref, rng.uniform(0.1, 0.7, size=5000))
    assert inside["mlmon_estimate_unreliable"] == 0
    assert inside["mlmon_estimate_out_of_range_ratio"] == 0.0
    beyond = estimates(ref, np.concatenate([rng.uniform(0.1, 0.7, 4800), rng.uniform(0.9, 1.0, 200)]))
    assert beyond["mlmon_estimate_unreliable"] == 1
    assert beyond["mlmon_estimate_out_of_range_ratio"] == pytest.approx(200 / 5000)


def test_logits_calibrated_on_logits_estimate_and_without_calibration_are_off() -> None:
    rng = np.random.default_rng(6)
    s_ref, y_ref = miscalibrated(rng, 20_000)
    logit = lambda s: np.log(np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6)))  # noqa: E731
    ref = Reference.from_data(s_ref.reshape(-1, 1), outputs=logit(s_ref), labels=y_ref)
    s, y = miscalibrated(rng, 20_000)
    got = estimates(ref, logit(s), threshold=0.0)
    truth = realized(logit(s), y, threshold=0.0)
    for name in ("precision", "recall", "f1", "roc_auc"):
        assert abs(got[f"mlmon_estimated_{name}"] - truth[name]) < 0.02, name
    # Without a calibration, scores outside [0, 1] are not probabilities: no estimate at all.
    assert estimates(None, logit(s), threshold=0.0) == {}


def test_estimates_merge_across_slices_as_one_slice() -> None:
    rng = np.random.default_rng(7)
    s_ref, y_ref = miscalibrated(rng, 10_000)
    ref = Reference.from_data(s_ref.reshape(-1, 1), outputs=s_ref, labels=y_ref)
    s, _ = miscalibrated(rng, 3000)
    task = BinaryClassification()
    split = OutputComponent(task, window=30.0, slices=3, now=0.0, reference=ref)
    for k, part in enumerate(np.array_split(s, 3)):
        split.observe(task.map_outputs(part), part.size, now=10.0 * k + 1)
    whole = OutputComponent(task, window=30.0, slices=3, now=0.0, reference=ref)
    whole.observe(task.map_outputs(s), s.size, now=21.0)
    a = {n: v for n, v, _ in split.samples(25.0) if "estimate" in n}
    b = {n: v for n, v, _ in whole.samples(25.0) if "estimate" in n}
    assert a.keys() == b.keys() and len(a) == 17
    for n in a:
        assert a[n] == pytest.approx(b[n], abs=1e-9), n


# ---------------------------------------------------------------------------- bad input


def _ref(scores: Any, labels: Any) -> Reference:
    return Reference.from_data(np.zeros((len(labels), 1)), outputs=scores, labels=labels)


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        (np.linspace(0, 1, 1000), np.ones(1000), r"at least 100 reference labels of each class, got 1000 positive and 0 negative"),
        (np.linspace(0, 1, 40), np.arange(40) % 2, r"at least 100 .* got 20 positive and 20 negative"),
        (np.full(1000, 0.7), np.arange(1000) % 2, r"varying scores, the reference scores are all 0.7"),
        (np.where(np.arange(1000) == 3, np.nan, np.linspace(0, 1, 1000)), np.arange(1000) % 2, r"1 NaN or infinite scores"),
        (np.linspace(0, 1, 1000), np.where(np.arange(1000) == 5, 2, np.arange(1000) % 2), r"labels must be 0/1 .* got 2"),
        (np.linspace(0, 1, 1000), np.array(["a", "b"] * 500), r"labels must be 0/1 or booleans"),
        (np.linspace(0, 1, 1000), np.where(np.arange(1000) == 5, np.nan, np.arange(1000) % 2), r"labels must be 0/1 .* got nan"),
    ],
    ids=["one class", "a few dozen labels", "constant scores", "NaN score", "label 2", "string labels", "NaN label"],
)
def test_bad_calibration_input_is_a_clear_value_error(scores: Any, labels: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _ref(scores, labels)


def test_labels_need_outputs_and_one_per_row() -> None:
    with pytest.raises(ValueError, match=r"labels= needs outputs="):
        Reference.from_data(np.zeros((10, 1)), labels=np.zeros(10))
    with pytest.raises(ValueError, match=r"one label per row of X \(10\), got shape \(9,\)"):
        Reference.from_data(np.zeros((10, 1)), outputs=np.zeros(10), labels=np.zeros(9))


def test_no_labels_means_no_calibration_and_the_raw_estimate() -> None:
    rng = np.random.default_rng(8)
    s, _ = miscalibrated(rng, 1000)
    ref = Reference.from_data(s.reshape(-1, 1), outputs=s)
    assert ref.calibration is None
    assert estimates(ref, s) == estimates(None, s)


def test_calibration_round_trips_through_the_reference_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    s, y = miscalibrated(rng, 5000)
    ref = Reference.from_data(s.reshape(-1, 1), outputs=s, labels=y)
    path = tmp_path / "ref.json"
    ref.save(path)
    back = Reference.load(path)
    assert back == ref and back.calibration is not None
    data = json.loads(path.read_text())
    assert data["calibration"]["mlmon_calibration"] == 1 and data["calibration"]["method"] == "isotonic"
    assert estimates(back, s[:2000]) == estimates(ref, s[:2000])
    # with_calibration fits the same on the same data.
    assert Reference.from_data(s.reshape(-1, 1), outputs=s).with_calibration(s, y) == ref


def _edited(ref: Reference, edit: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(ref.to_dict()))
    edit(data["calibration"])
    return data


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.update(mlmon_calibration=2), r"calibration.mlmon_calibration must be 1"),
        (lambda c: c.update(method="platt"), r"calibration.method must be 'isotonic'"),
        (lambda c: c.update(y=c["y"][::-1]), r"calibration: calibration y must be non-decreasing"),
        (lambda c: c.update(x=c["x"][::-1]), r"x must be finite and strictly increasing"),
        (lambda c: c.update(x=c["x"][:-1]), r"one y per x"),
        (lambda c: c.update(positives=12), rf"positives must be >= {MIN_LABELS_PER_CLASS}"),
        (lambda c: c.update(negatives=-1), r"calibration.negatives must be an int >= 0"),
        (lambda c: c["y"].__setitem__(0, "0.1"), r"calibration.y\[0\] must be a finite number"),
        (lambda c: c.pop("edges"), r"calibration: missing field 'edges'"),
        (lambda c: c.update(edges=[0.5, 0.5]), r"edges must be finite and strictly increasing"),
    ],
    ids=["version", "method", "y decreasing", "x decreasing", "x short", "few positives", "negative count", "string y", "no edges", "flat edges"],
)
def test_a_corrupt_calibration_in_a_file_is_refused_naming_the_field(edit: Any, match: str) -> None:
    rng = np.random.default_rng(10)
    s, y = miscalibrated(rng, 3000)
    ref = Reference.from_data(s.reshape(-1, 1), outputs=s, labels=y)
    with pytest.raises(ValueError, match=match):
        Reference.from_dict(_edited(ref, edit))


def test_a_calibration_without_outputs_is_refused() -> None:
    rng = np.random.default_rng(11)
    s, y = miscalibrated(rng, 3000)
    data = Reference.from_data(s.reshape(-1, 1), outputs=s, labels=y).to_dict()
    data["outputs"] = None
    with pytest.raises(ValueError, match=r"calibration needs reference.outputs"):
        Reference.from_dict(data)


# ---------------------------------------------------------------------------- scikit-learn wrapper


def _model_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, 3))
    logit = 2.0 * X[:, 0] - X[:, 1]
    y = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logit)), "spam", "ham")
    return X, y


def test_the_sklearn_wrapper_calibrates_from_y_train_and_estimates_before_labels() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from mlmon.integrations.sklearn import monitor_estimator

    rng = np.random.default_rng(12)
    X_fit, y_fit = _model_data(rng, 3000)
    X_val, y_val = _model_data(rng, 5000)
    X_new, y_new = _model_data(rng, 5000)
    # A forest's scores are not calibrated probabilities.
    est = RandomForestClassifier(n_estimators=30, min_samples_leaf=20, random_state=0).fit(X_fit, y_fit)
    model = monitor_estimator(est, X_val, y_val, name="est_sklearn", clock=FakeClock())
    try:
        assert model.monitor.reference is not None and model.monitor.reference.calibration is not None
        scores = model.predict_proba(X_new)[:, 1]
        snap = model.monitor.snapshot()
        truth = realized(scores, (y_new == "spam").astype(int))
        for name in ("precision", "recall", "f1", "accuracy", "roc_auc"):
            assert abs(snap.get(f"mlmon_estimated_{name}") - truth[name]) < 0.03, name
    finally:
        model.close()


def test_the_sklearn_wrapper_warns_and_keeps_raw_scores_when_y_train_is_too_small(caplog: pytest.LogCaptureFixture) -> None:
    from sklearn.linear_model import LogisticRegression

    from mlmon.integrations.sklearn import monitor_estimator

    rng = np.random.default_rng(13)
    X, y = _model_data(rng, 60)
    with caplog.at_level("WARNING", logger="mlmon"):
        model = monitor_estimator(LogisticRegression().fit(X, y), X, y, name="est_sklearn_small", clock=FakeClock())
    try:
        assert model.monitor.reference is not None and model.monitor.reference.calibration is None
        assert "y_train cannot calibrate the scores (calibration needs at least 100" in caplog.text
        model.predict_proba(X)
        assert model.monitor.snapshot().get("mlmon_estimated_precision") is not None  # raw scores
    finally:
        model.close()


# ---------------------------------------------------------------------------- multiclass


def overconfident(rng: np.random.Generator, n: int, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Probability rows sharper than the truth: softmax(2 z) while y ~ softmax(z)."""
    z = rng.normal(size=(n, k)) * 1.2 + np.array([0.4, 0.0, -0.3])[:k]
    true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(true, axis=1)).sum(axis=1)
    sharp = np.exp(2 * z) / np.exp(2 * z).sum(axis=1, keepdims=True)
    return sharp, y


def multiclass_estimates(ref: Reference, proba: np.ndarray) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    mon = mlmon.Monitor("est_mc", task=mlmon.MulticlassClassification(classes=["a", "b", "c"]), reference=ref, clock=FakeClock())
    try:
        predict = mon.track(lambda X: X)
        for block in np.array_split(proba, 20):
            predict(block)
        predict(proba[0])  # one row given as a 1-D array
        return {(x.name, x.labels): x.value for x in mon.snapshot().samples if "estimate" in x.name}
    finally:
        mon.close()


def test_multiclass_estimates_per_class_macro_and_micro_match_scikit_learn() -> None:
    rng = np.random.default_rng(14)
    p_ref, y_ref = overconfident(rng, 30_000)
    ref = Reference.from_data(np.zeros((30_000, 1)), outputs=p_ref, labels=y_ref)
    assert ref.class_calibration is not None and len(ref.class_calibration) == 3
    assert ref.outputs is not None and ref.outputs.max == pytest.approx(p_ref.max())
    p, y = overconfident(rng, 20_000)
    got = multiclass_estimates(ref, p)
    p_all, y_all = np.vstack([p, p[:1]]), np.append(y, y[0])
    pred = p_all.argmax(axis=1)
    for avg in ("macro", "micro"):
        for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            truth = fn(y_all, pred, average=avg)
            assert abs(got[(f"mlmon_estimated_{name}", (("average", avg),))] - truth) < 0.02, (name, avg)
    for c, cls in enumerate("abc"):
        truth = precision_score(y_all == c, pred == c)
        assert abs(got[("mlmon_estimated_precision", (("class", cls),))] - truth) < 0.03, cls
        auc = roc_auc_score(y_all == c, p_all[:, c])
        assert abs(got[("mlmon_estimated_roc_auc", (("class", cls),))] - auc) < 0.02, cls
    macro_auc = roc_auc_score(y_all, p_all, multi_class="ovr", average="macro")
    assert abs(got[("mlmon_estimated_roc_auc", (("average", "macro"),))] - macro_auc) < 0.02
    assert abs(got[("mlmon_estimated_accuracy", ())] - accuracy_score(y_all, pred)) < 0.02
    # The raw top probability over-states accuracy: the calibration is what makes it right.
    assert p_all.max(axis=1).mean() - accuracy_score(y_all, pred) > 0.05
    assert got[("mlmon_estimate_unreliable", ())] == 0


def test_multiclass_calibration_bad_input_and_task_mismatch() -> None:
    rng = np.random.default_rng(15)
    p, y = overconfident(rng, 3000)
    with pytest.raises(ValueError, match=r"class indices 0 \.\. 2 .* got 3"):
        Reference.from_data(np.zeros((3000, 1)), outputs=p, labels=np.where(np.arange(3000) == 7, 3, y))
    few = np.where(y == 2, 0, y)
    few[:30] = 2
    with pytest.raises(ValueError, match=r"class 2: calibration needs at least 100 .* got 30 positive"):
        Reference.from_data(np.zeros((3000, 1)), outputs=p, labels=few)
    ref = Reference.from_data(np.zeros((3000, 1)), outputs=p, labels=y)
    assert Reference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    with pytest.raises(ValueError, match=r"reference.class_calibration has 3 classes, the task 2"):
        mlmon.Monitor("est_mc_bad", task=mlmon.MulticlassClassification(classes=["a", "b"]), reference=ref)


def test_the_sklearn_wrapper_calibrates_a_multiclass_classifier_per_class() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from mlmon.integrations.sklearn import monitor_estimator

    rng = np.random.default_rng(16)

    def data(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(size=(n, 3))
        z = np.stack([X[:, 0], X[:, 1], -X[:, 0] - X[:, 1]], axis=1) * 1.5
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        y = np.array(["x", "y", "z"])[(rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)]
        return X, y

    X_fit, y_fit = data(3000)
    X_val, y_val = data(6000)
    X_new, y_new = data(6000)
    est = RandomForestClassifier(n_estimators=30, min_samples_leaf=20, random_state=0).fit(X_fit, y_fit)
    model = monitor_estimator(est, X_val, y_val, name="est_sklearn_mc", clock=FakeClock())
    try:
        ref = model.monitor.reference
        assert ref is not None and ref.class_calibration is not None and len(ref.class_calibration) == 3
        proba = model.predict_proba(X_new)
        snap = model.monitor.snapshot()
        pred = np.array(["x", "y", "z"])[proba.argmax(axis=1)]
        assert abs(snap.get("mlmon_estimated_accuracy") - accuracy_score(y_new, pred)) < 0.03
        macro = f1_score(y_new, pred, average="macro")
        assert abs(snap.get("mlmon_estimated_f1", average="macro") - macro) < 0.03
    finally:
        model.close()


# ---------------------------------------------------------------------------- hostile outputs

_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0.0, 1.0, 0.5, -1e308, 1e308, 5e-324]),
)
_junk = st.recursive(
    st.one_of(_numbers, st.none(), st.text(max_size=3), st.booleans()),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)
_rows = st.lists(st.lists(_numbers, min_size=3, max_size=3), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def calibrated() -> tuple[Reference, Reference]:
    rng = np.random.default_rng(17)
    s, y = miscalibrated(rng, 3000)
    p, c = overconfident(rng, 3000)
    return (Reference.from_data(s.reshape(-1, 1), outputs=s, labels=y),
            Reference.from_data(np.zeros((3000, 1)), outputs=p, labels=c))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(outputs=st.lists(st.one_of(_junk, _rows), max_size=5))
def test_hostile_outputs_never_raise_and_estimates_stay_in_0_1(
    calibrated: tuple[Reference, Reference], outputs: list[Any]
) -> None:
    binary, multi = calibrated
    for task, ref in ((BinaryClassification(), binary), (mlmon.MulticlassClassification(classes=["a", "b", "c"]), multi)):
        comp = OutputComponent(task, window=60.0, now=0.0, reference=ref)
        rows = [len(o) if isinstance(o, list) else 1 for o in outputs]
        comp.ingest(CallBatch(now=1.0, wall=0.0, outputs=outputs, ids=[None] * len(outputs), rows=rows))
        for name, value, _ in comp.samples(2.0):
            if name.startswith("mlmon_estimate"):
                assert 0.0 <= value <= 1.0, (name, value)


def test_a_calibration_of_the_wrong_kind_for_the_task_is_a_configuration_error() -> None:
    rng = np.random.default_rng(18)
    s, y = miscalibrated(rng, 3000)
    p, c = overconfident(rng, 3000)
    binary = Reference.from_data(s.reshape(-1, 1), outputs=s, labels=y)
    multi = Reference.from_data(np.zeros((3000, 1)), outputs=p, labels=c)
    with pytest.raises(ValueError, match=r"class_calibration .* does not fit a binary task"):
        mlmon.Monitor("est_kind_b", task=BinaryClassification(), reference=multi)
    with pytest.raises(ValueError, match=r"reference.calibration \(binary scores\) does not fit a multiclass task"):
        mlmon.Monitor("est_kind_m", task=mlmon.MulticlassClassification(classes=["a", "b", "c"]), reference=binary)


def test_logits_against_a_calibration_of_probabilities_are_flagged_unreliable() -> None:
    rng = np.random.default_rng(19)
    s, y = miscalibrated(rng, 10_000)
    ref = Reference.from_data(s.reshape(-1, 1), outputs=s, labels=y)
    z = np.log(np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6)))  # the same model's logits
    got = estimates(ref, z, threshold=0.0)
    assert got["mlmon_estimate_unreliable"] == 1
    assert got["mlmon_estimate_out_of_range_ratio"] > 0.4
