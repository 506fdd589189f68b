"""Mergeable window state: a fleet's merge equals one process fed the whole stream; a state
that cannot be merged is rejected with its reason and never spoils its neighbours."""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlmon
from mlmon.fleet import StateError, combine_states, merge_states, read_state, retire_state
from mlmon.fleet.state import MAX_STATE_BYTES, STATE_VERSION, pack_state
from mlmon.testing import FakeClock

RNG = np.random.default_rng(7)
N = 4000
X = RNG.normal(size=(N, 5))
X[::97, 2] = np.nan
SCORES = RNG.random(N)
LABELS = (RNG.random(N) < SCORES).astype(int)
REF = mlmon.Reference.from_data(RNG.normal(size=(2000, 5)), outputs=RNG.random(2000), feature_names=list("abcde"))

Key = tuple[str, tuple[tuple[str, str], ...]]


def values(snap: mlmon.Snapshot) -> dict[Key, float]:
    return {(s.name, s.labels): s.value for s in snap.samples}


def fleet_and_whole(task: Any, parts: int, outputs: np.ndarray, labels: np.ndarray, **kw: Any) -> tuple[dict[Key, float], dict[Key, float], list[bytes], mlmon.Monitor]:
    clock = FakeClock()
    mons = [mlmon.Monitor("m", task=task, emitters=[], clock=clock, instance=f"p{i}", **kw) for i in range(parts)]
    whole = mlmon.Monitor("m", task=task, emitters=[], clock=clock, instance="whole", **kw)
    for k in range(N // 100):
        sl = slice(k * 100, (k + 1) * 100)
        ids = np.arange(sl.start, sl.stop)
        for mon in (mons[k % parts], whole):
            with mon.track(features=X[sl], ids=ids) as call:
                call.outputs(outputs[sl])
            mon.log_outcome("click", ids=ids[::3])
        clock.advance(0.5)
    for k in range(N // 100):
        ids = np.arange(k * 100, (k + 1) * 100)
        mons[k % parts].log_feedback(ids, labels[ids])
    whole.log_feedback(np.arange(N), labels)
    clock.advance(1.0)
    blobs = [m.fleet_state() for m in mons]
    merged = merge_states(mons[0], blobs)
    assert merged.merged == parts and merged.rejected == {}
    w = values(whole.snapshot())
    for m in [*mons[1:], whole]:
        m.close()
    return values(merged.snapshot), w, blobs, mons[0]


SKIP_PREFIX = ("mlmon_process_", "mlmon_system_", "mlmon_dropped_total", "mlmon_internal_errors_total")
QUANTILE_METRICS = {"mlmon_latency_seconds", "mlmon_output", "mlmon_label_delay_seconds"}
FLOAT_METRICS = {"mlmon_output_mean", "mlmon_output_variance", "mlmon_output_stddev", "mlmon_feature_mean",
                 "mlmon_feature_variance", "mlmon_latency_seconds_mean", "mlmon_latency_seconds_sum",
                 "mlmon_mae", "mlmon_rmse", "mlmon_mean_error", "mlmon_regression_abs_error_sum_total",
                 "mlmon_regression_squared_error_sum_total", "mlmon_regression_error_sum_total",
                 "mlmon_brier_score", "mlmon_log_loss", "mlmon_expected_calibration_error",
                 "mlmon_calibration_predicted", "mlmon_calibration_observed"}  # fmt: skip
"""Float sums: equal up to the order of additions."""


def check_equal(fleet: dict[Key, float], whole: dict[Key, float]) -> None:
    timing = {"mlmon_latency_seconds", "mlmon_latency_seconds_mean", "mlmon_latency_seconds_sum",
              "mlmon_latency_seconds_bucket", "mlmon_label_delay_seconds"}  # fmt: skip
    checked = 0
    for key, v in whole.items():
        name = key[0]
        if name.startswith(SKIP_PREFIX) or name in timing:
            continue  # per process, or real durations of different calls
        assert key in fleet, key
        if name in QUANTILE_METRICS:
            assert fleet[key] == pytest.approx(v, rel=0.021, abs=1e-12), key
        elif name in FLOAT_METRICS or name.startswith("mlmon_estimate"):
            assert fleet[key] == pytest.approx(v, rel=1e-9, abs=1e-12), key
        else:
            assert fleet[key] == v, key  # counts, confusion, bins, ratios and PSI: exact
        checked += 1
    assert checked > 50


def test_binary_fleet_equals_one_process_fed_everything() -> None:
    task = mlmon.BinaryClassification(threshold=0.5)
    fleet, whole, _, first = fleet_and_whole(task, 8, SCORES, LABELS, reference=REF)
    try:
        check_equal(fleet, whole)
        for name in ("mlmon_precision", "mlmon_recall", "mlmon_f1", "mlmon_output_drift_psi", "mlmon_calls_total"):
            assert ("mlmon_precision", ()) in fleet and (name, ()) in fleet, name
        assert fleet[("mlmon_feature_drift_psi", (("feature", "a"),))] == whole[("mlmon_feature_drift_psi", (("feature", "a"),))]
    finally:
        first.close()


def test_regression_and_multiclass_merge_exactly() -> None:
    reg = mlmon.Regression()
    fleet, whole, _, first = fleet_and_whole(reg, 3, SCORES * 10, SCORES * 10 + RNG.normal(size=N), feature_names=list("abcde"))
    first.close()
    check_equal(fleet, whole)
    assert fleet[("mlmon_mae", ())] == pytest.approx(whole[("mlmon_mae", ())], rel=1e-12)
    multi = mlmon.MulticlassClassification(classes=["x", "y", "z"])
    probs = RNG.dirichlet([1, 1, 1], size=N)
    fleet, whole, _, first = fleet_and_whole(multi, 5, probs, RNG.integers(0, 3, size=N), feature_names=list("abcde"))
    first.close()
    check_equal(fleet, whole)
    assert any(k[0] == "mlmon_confusion_total" for k in fleet)


def test_combine_is_associative_and_retire_keeps_only_counters() -> None:
    task = mlmon.BinaryClassification(threshold=0.5)
    fleet, _, blobs, first = fleet_and_whole(task, 4, SCORES, LABELS, reference=REF)
    try:
        ab, rejected = combine_states(first, blobs[:2])
        assert rejected == {}
        again = values(merge_states(first, [ab, *blobs[2:]]).snapshot)
        assert again == fleet
        retired = retire_state(blobs[0])
        one = values(merge_states(first, [retired]).snapshot)
        alone = values(merge_states(first, [blobs[0]]).snapshot)
        assert one[("mlmon_calls_total", ())] == alone[("mlmon_calls_total", ())] > 0
        assert one[("mlmon_output_count", ())] == 0  # its window is gone
        assert ("mlmon_precision", ()) not in one
    finally:
        first.close()


def good_state() -> tuple[mlmon.Monitor, bytes]:
    clock = FakeClock()
    mon = mlmon.Monitor("m", task=mlmon.BinaryClassification(), emitters=[], clock=clock, instance="g", reference=REF)
    with mon.track(features=X[:200], ids=np.arange(200)) as call:
        call.outputs(SCORES[:200])
    mon.log_feedback(np.arange(200), LABELS[:200])
    return mon, mon.fleet_state()


def repack(header: Any, table: list[bytes] | None = None) -> bytes:
    """A state container around any JSON header (what a corrupt or hostile writer could send)."""
    table = table or []
    if isinstance(header, dict):
        header = {**header, "$lens": [len(b) for b in table]}
    head = json.dumps(header).encode()
    return b"MLM2" + zlib.compress(len(head).to_bytes(4, "little") + head + b"".join(table))


def edit(blob: bytes, path: list[Any], value: Any) -> bytes:
    doc = read_state(blob)
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return pack_state(doc)


def test_each_bad_state_is_rejected_with_its_reason_and_spoils_nothing() -> None:
    mon, good = good_state()
    other_window = mlmon.Monitor("m", task=mlmon.BinaryClassification(), emitters=[], window=60.0, reference=REF)
    other_model = mlmon.Monitor("n", task=mlmon.BinaryClassification(), emitters=[], reference=REF)
    try:
        le = read_state(good)["parts"]["service"]["totals"]["le_counts"]["$a"]
        bad = {
            "corrupt": [
                b"", b"garbage", b"MLM2" + b"\x00" * 50, good[: len(good) // 2],  # truncated
                repack([1, 2]), repack({"v": STATE_VERSION}),
                repack(json.loads("[" * 50 + "]" * 50)),  # nested, not a state
                b"MLM2" + zlib.compress((100_000).to_bytes(4, "little") + b"[" * 100_000),  # deep nesting
                b"MLM2" + zlib.compress((10).to_bytes(4, "little") + b"{}"),  # header past the end
                repack({**read_state(good), "$table": None}, [b"x" * 7]),  # arrays refer to data that is not there
                edit(good, ["parts", "service", "totals", "calls_total"], 10**30),  # beyond int64
                edit(good, ["parts", "service", "totals", "calls_total"], "12"),
                edit(good, ["parts", "service", "totals", "le_counts", "$a"], ["i8", [3], le[2]]),  # shape
                edit(good, ["parts", "outputs", "window", "acc", "$o", "count"], 1.5),
                edit(good, ["parts", "quality", "window", "acc", "$o", "hist", "$o", "rel_error"], 0.05),
                edit(good, ["parts", "service", "totals", "lat_sum"], float("nan")),
                edit(good, ["parts", "features", "window"], {"acc": {"$o": {}}, "covered": 1.0}),
                edit(good, ["parts", "service", "inflight"], "x"),
                edit(good, ["parts", "outcomes", "totals", "totals"], {"$d": [["k" * 300, 1]]}),
            ],
            "version": [edit(good, ["v"], 1), edit(good, ["v"], None), b"MLMS" + zlib.compress(b"{}")],
            "config": [other_window.fleet_state()],
            "model": [other_model.fleet_state()],
            "size": [b"MLM2" + zlib.compress(b" " * (MAX_STATE_BYTES + 10))],
        }
        blobs = [good] + [b for v in bad.values() for b in v] + [good]
        result = merge_states(mon, blobs)
        assert result.merged == 2
        assert result.rejected == {k: len(v) for k, v in bad.items()}
        doubled = values(result.snapshot)
        once = values(merge_states(mon, [good]).snapshot)
        assert doubled[("mlmon_calls_total", ())] == 2 * once[("mlmon_calls_total", ())]
        assert doubled[("mlmon_precision", ())] == once[("mlmon_precision", ())]
        for b in bad["corrupt"][:6]:
            with pytest.raises(StateError):
                read_state(b)
    finally:
        for m in (mon, other_window, other_model):
            m.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_states_never_raise_and_never_corrupt_a_good_neighbour(data: st.DataObject) -> None:
    mon, good = STATE
    raw = bytearray(zlib.decompress(good[4:]))
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    mutated = b"MLM2" + zlib.compress(bytes(raw))
    result = merge_states(mon, [good, mutated])
    assert result.merged + sum(result.rejected.values()) == 2
    got = values(result.snapshot)
    once = values(merge_states(mon, [good]).snapshot)
    if result.merged == 1:
        assert got == once
    else:  # accepted: the neighbour still counts in full, and every value is a number
        assert got[("mlmon_output_count", ())] >= 0


STATE = good_state()


def test_a_skewed_wall_clock_does_not_change_the_merge() -> None:
    mon, good = STATE
    skewed = edit(good, ["wall"], read_state(good)["wall"] - 600.0)  # ten minutes behind
    a = values(merge_states(mon, [good, skewed]).snapshot)
    b = values(merge_states(mon, [good, good]).snapshot)
    assert a == b


def test_state_is_small() -> None:
    _, good = STATE
    assert len(good) < 16_000
