"""Segments end to end in one process: track(segment=...) → per-segment parts → labels joined
by id → outcomes → snapshot series labelled ``segment`` → alerts; caps, overflow and bad input."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlmon
from mlmon.alerts import AlertBudget, Shift
from mlmon.emitters import JsonlEmitter
from mlmon.naming import PathRenderer, PrometheusRenderer
from mlmon.segments import MISSING, OVERFLOW, segment_name
from mlmon.snapshot import Snapshot
from mlmon.testing import FakeClock


def by_segment(snap: Snapshot, name: str, **labels: Any) -> dict[str, float]:
    """``segment -> value`` of one metric's segment series with these other labels."""
    out = {}
    for s in snap.select(name, **labels):
        d = dict(s.labels)
        seg = d.pop("segment", None)
        if seg is not None and d == {str(k): str(v) for k, v in labels.items()}:
            out[seg] = s.value
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def binary(clock: FakeClock, **kw: Any) -> mlmon.Monitor:
    return mlmon.Monitor("seg", task=mlmon.BinaryClassification(threshold=0.5), clock=clock, emitters=[], **kw)


def test_a_monitor_without_segments_emits_no_segment_series(clock: FakeClock) -> None:
    mon = binary(clock)
    predict = mon.track(lambda x: 0.7)
    predict(1)
    snap = mon.snapshot()
    assert not [s for s in snap.samples if "segment" in dict(s.labels) or s.name.startswith("mlmon_segment")]
    mon.close()


def test_decorator_constant_function_and_feature_column(clock: FakeClock) -> None:
    mon = binary(clock)

    @mon.track(segment="web")
    def web(x: float) -> float:
        return x

    @mon.track(segment=lambda x, country: country)
    def by_arg(x: float, country: str) -> float:
        return x

    @mon.track(features="X", segment=mlmon.by_feature("country"))
    def by_column(X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), 0.9)

    for _ in range(3):
        web(0.1)
    by_arg(0.2, "eu")
    by_arg(0.3, country="us")
    by_column(pd.DataFrame({"age": [1.0, 2.0, 3.0, 4.0], "country": ["eu", "eu", "fr", None]}))
    snap = mon.snapshot()
    assert by_segment(snap, "mlmon_rows_total") == {"web": 3, "eu": 3, "us": 1, "fr": 1, MISSING: 1}
    # A batch whose rows span segments is one call in each of them.
    assert by_segment(snap, "mlmon_calls_total") == {"web": 3, "eu": 2, "us": 1, "fr": 1, MISSING: 1}
    assert snap.get("mlmon_rows_total") == 9
    assert by_segment(snap, "mlmon_feature_mean", feature="age") == {"eu": 1.5, "fr": 3.0, MISSING: 4.0}
    assert snap.get("mlmon_segments") == 5
    mon.close()


def test_with_block_values_per_row_and_numpy_column(clock: FakeClock) -> None:
    mon = binary(clock, feature_names=["age", "tier"])
    X = np.array([[30.0, 1.0], [40.0, 2.0], [50.0, 1.0]])
    with mon.track(features=X, segment=mlmon.by_feature("tier")) as call:
        call.outputs(np.array([0.1, 0.6, 0.9]))
    with mon.track(segment=np.array(["a", "b", "a", "a"])) as call:
        call.outputs([0.2, 0.2, 0.8, 0.8])
    with mon.track(segment="solo") as call:
        call.outputs(0.3)
    snap = mon.snapshot()
    assert by_segment(snap, "mlmon_rows_total") == {"1": 2, "2": 1, "a": 3, "b": 1, "solo": 1}
    assert by_segment(snap, "mlmon_feature_mean", feature="age") == {"1": 40.0, "2": 40.0}
    # outputs per segment: the predicted-positive share of segment "a" is 2 of 3
    ratio = by_segment(snap, "mlmon_output_class_ratio", **{"class": "1"})
    assert ratio["a"] == pytest.approx(2 / 3)
    mon.close()


def test_labels_join_into_the_segment_of_their_prediction(clock: FakeClock) -> None:
    mon = binary(clock)
    rng = np.random.default_rng(3)
    n = 4000
    seg = rng.choice(["eu", "us"], size=n)
    scores = rng.uniform(size=n)
    ids = np.arange(n)
    for lo in range(0, n, 500):
        with mon.track(ids=ids[lo : lo + 500], segment=seg[lo : lo + 500]) as call:
            call.outputs(scores[lo : lo + 500])
    # In "eu" every positive prediction is right; in "us" half of them are wrong.
    pred = scores >= 0.5
    labels = np.where(seg == "eu", pred, np.where(pred, ids % 2 == 0, False)).astype(int)
    mon.log_feedback(ids[: n // 2], labels[: n // 2])
    for i in range(n // 2, n):  # one by one: the single-label path carries the segment too
        mon.log_feedback(int(ids[i]), int(labels[i]))
    snap = mon.snapshot()
    precision = by_segment(snap, "mlmon_precision")
    assert precision["eu"] == 1.0
    us = (seg == "us") & pred
    assert precision["us"] == pytest.approx(labels[us].mean())
    assert by_segment(snap, "mlmon_labels_total") == {"eu": int((seg == "eu").sum()), "us": int((seg == "us").sum())}
    cells = {
        (dict(s.labels)["actual"], dict(s.labels)["predicted"]): s.value
        for s in snap.select("mlmon_confusion_total", segment="us")
    }
    assert cells[("1", "1")] == int((labels[us] == 1).sum())
    mon.close()


def test_errors_and_outcomes_per_segment(clock: FakeClock) -> None:
    mon = binary(clock)

    @mon.track(segment=lambda x: "eu" if x else "us")
    def predict(x: int) -> float:
        if x < 0:
            raise KeyError(x)
        return 0.4

    for x in (1, 1, 0, -1, -2):
        try:
            predict(x)
        except KeyError:
            pass
    mon.log_outcome("click", ids=["a", "b"], segment="eu")
    mon.log_outcome("click", segment="us")
    snap = mon.snapshot()
    assert by_segment(snap, "mlmon_errors_total", error_type="KeyError") == {"eu": 2}
    assert by_segment(snap, "mlmon_calls_total") == {"eu": 4, "us": 1}
    assert by_segment(snap, "mlmon_error_ratio") == {"eu": 0.5, "us": 0.0}
    assert by_segment(snap, "mlmon_outcome_total", outcome="click") == {"eu": 2.0, "us": 1.0}
    assert snap.get("mlmon_outcome_total", outcome="click") == 3.0
    mon.close()


def test_the_cap_folds_the_rest_into_the_overflow_and_counts_it(clock: FakeClock) -> None:
    mon = binary(clock, max_segments=3)
    with mon.track(segment=[f"s{i}" for i in range(100_000)]) as call:
        call.outputs(np.full(100_000, 0.2))
    snap = mon.snapshot()
    rows = by_segment(snap, "mlmon_rows_total")
    assert set(rows) == {"s0", "s1", "s2", OVERFLOW}
    assert rows[OVERFLOW] == 100_000 - 3
    assert snap.get("mlmon_segment_overflow_rows_total") == 100_000 - 3
    assert snap.get("mlmon_segments") == 4 and snap.get("mlmon_segments_max") == 3
    # bounded: the overflow values counted for promotion stay under their cap
    assert len(mon._segments._candidates) <= 256
    mon.close()


def test_a_much_busier_value_replaces_the_least_busy_segment(clock: FakeClock) -> None:
    mon = binary(clock, max_segments=2, window=60.0)
    predict = mon.track(lambda x, s: 0.5, segment=lambda x, s: s)
    for s in ("a", "b"):
        predict(0, s)
    for _ in range(300):
        predict(0, "a")
        predict(0, "c")  # in the overflow, 300 rows; "b" has 1 in the window
    snap = mon.snapshot()
    assert set(by_segment(snap, "mlmon_rows_total")) == {"a", "c", OVERFLOW}
    assert snap.get("mlmon_segment_evictions_total") == 1
    for _ in range(5):
        predict(0, "c")
    assert by_segment(mon.snapshot(), "mlmon_rows_total")["c"] == 5  # counted from its entry
    mon.close()


class NoStr:
    def __str__(self) -> str:
        raise RuntimeError("no name")


HOSTILE: list[Any] = [
    None, math.nan, math.inf, -math.inf, 10**400, "", "x" * 10_000, "é\u202e\n\t;k=v", b"\xff\xfe",
    NoStr(), ("tuple",), {"a": 1}, np.float32("nan"), np.int64(7), True, pd.NA,
]  # fmt: skip


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
def test_hostile_segment_values_never_raise_and_never_lose_rows(clock: FakeClock, value: Any) -> None:
    mon = binary(clock)
    predict = mon.track(lambda x: 0.6, segment=lambda x: value)
    with_block = mon.track(segment=[value, "ok", value])
    for _ in range(3):
        assert predict(1) == 0.6
    with with_block as call:
        call.outputs([0.1, 0.2, 0.3])
    snap = mon.snapshot()
    rows = by_segment(snap, "mlmon_rows_total")
    assert sum(rows.values()) == 6 == snap.get("mlmon_rows_total")
    for name in rows:
        assert name.isprintable() and 0 < len(name) <= 64
    # Each lands in its safe name, or in the overflow counted as invalid.
    try:
        expected = segment_name(value)
    except ValueError:
        expected = None
    if expected is None:
        assert snap.get("mlmon_segment_invalid_total") >= 3
    elif isinstance(value, tuple):
        assert rows["tuple"] == 3  # a one-row call's tuple is one value per row, like a list
    else:
        assert rows[expected] >= 3
    mon.close()


def test_a_segment_function_that_raises_is_counted_and_the_call_returns(clock: FakeClock) -> None:
    mon = binary(clock)

    def boom(x: int) -> str:
        raise ZeroDivisionError

    predict = mon.track(lambda x: 0.1, segment=boom)
    assert [predict(i) for i in range(4)] == [0.1] * 4
    snap = mon.snapshot()
    assert snap.get("mlmon_internal_errors_total", stage="segment") == 4
    assert by_segment(snap, "mlmon_rows_total") == {OVERFLOW: 4}
    assert snap.get("mlmon_segment_invalid_total") == 4
    mon.close()


def test_per_row_values_of_the_wrong_length_cost_only_their_call(clock: FakeClock) -> None:
    mon = binary(clock)
    with mon.track(segment=["a", "b"]) as call:  # 3 rows, 2 values
        call.outputs([0.1, 0.2, 0.3])
    with mon.track(segment=["a", "b"]) as call:
        call.outputs([0.1, 0.9])
    snap = mon.snapshot()
    assert by_segment(snap, "mlmon_rows_total") == {OVERFLOW: 3, "a": 1, "b": 1}
    assert snap.get("mlmon_segment_invalid_total") == 3
    mon.close()


def test_by_feature_requires_features() -> None:
    mon = mlmon.Monitor("seg-conf", emitters=[])
    with pytest.raises(ValueError, match="needs track\\(features"):
        mon.track(lambda x: x, segment=mlmon.by_feature("country"))
    with pytest.raises(ValueError, match="max_segments"):
        mlmon.Monitor("seg-conf2", max_segments=0)
    mon.close()


def test_async_and_default_monitor(clock: FakeClock) -> None:
    mon = binary(clock)

    @mon.track(segment=lambda x: "async")
    async def apredict(x: int) -> float:
        return 0.8

    asyncio.run(apredict(1))
    assert by_segment(mon.snapshot(), "mlmon_rows_total") == {"async": 1}
    mon.close()

    @mlmon.track(segment="lazy")
    def predict(x: int) -> int:
        return x

    default = mlmon.configure(model="seg-default", emitters=[])
    predict(1)
    assert by_segment(mlmon.snapshot(), "mlmon_rows_total") == {"lazy": 1}
    default.close()


def test_drift_per_segment_against_its_own_reference(clock: FakeClock) -> None:
    rng = np.random.default_rng(5)
    train = pd.DataFrame({
        "age": np.concatenate([rng.normal(30, 5, 5000), rng.normal(60, 5, 5000)]),
        "country": ["eu"] * 5000 + ["us"] * 5000,
    })  # fmt: skip
    ref = mlmon.Reference.from_data(train, segment="country")
    mon = mlmon.Monitor("seg-drift", reference=ref, clock=clock, emitters=[])
    serve = pd.DataFrame({"age": rng.normal(30, 5, 2000), "country": ["eu"] * 1000 + ["fr"] * 1000})
    serve.loc[1000:, "age"] = rng.normal(60, 5, 1000)
    with mon.track(features=serve[["age"]], segment=serve["country"].to_numpy()) as call:
        call.outputs(np.zeros(2000))
    snap = mon.snapshot()
    assert by_segment(snap, "mlmon_segment_reference") == {"eu": 1, "fr": 0}
    psi = by_segment(snap, "mlmon_feature_drift_psi", feature="age")
    assert psi["eu"] < 0.05  # eu as in training
    assert psi["fr"] > 0.5  # fr has no profile: against the overall reference, it has moved
    mon.close()


def test_segment_series_render_safely_for_every_backend(clock: FakeClock) -> None:
    mon = binary(clock)
    evil = 'eu"}\nmlmon_fake 1\n.a.b;c=d'
    with mon.track(segment=evil) as call:
        call.outputs(0.9)
    snap = mon.snapshot()
    prom = PrometheusRenderer()
    sample = snap.select("mlmon_rows_total", segment="*")[0]
    text = prom.labels("seg", None, "h", sample.labels)
    assert sample.labels == (("segment", 'eu"}_mlmon_fake 1_.a.b;c=d'),)  # control characters gone
    assert "\n" not in text and 'segment="eu\\"}_mlmon_fake 1_.a.b;c=d"' in text
    for style in ("path", "graphite_tags", "dogstatsd"):
        key, suffix = PathRenderer(style=style).render("seg", None, "h", "mlmon_rows_total", sample.labels)
        assert "\n" not in key + suffix and " " not in key + suffix
        assert "segment" in key + suffix
    mon.close()


def test_alerts_fan_out_over_segments_and_fire_for_the_one_that_dropped(clock: FakeClock) -> None:
    rule = Shift("mlmon_precision", effect=0.2, baseline=0.9, labels={"segment": "*"})
    mon = binary(clock, rules=[rule], window=300.0, flush_interval=10.0, alert_budget=AlertBudget(false_alarms=1, per="week"))
    rng = np.random.default_rng(11)
    next_id = 0
    for step in range(40):
        ids = np.arange(next_id, next_id + 400)
        next_id += 400
        seg = np.where(np.arange(400) % 2 == 0, "eu", "us")
        with mon.track(ids=ids, segment=seg) as call:
            call.outputs(np.full(400, 0.9))
        bad = (seg == "us") & (step >= 20)
        labels = np.where(bad, rng.uniform(size=400) < 0.5, rng.uniform(size=400) < 0.9).astype(int)
        mon.log_feedback(ids, labels)
        clock.advance(10.0)
        mon.flush()
    firing = {dict(a.labels).get("segment") for a in mon._engine.alerts() if a.state == "firing"}
    assert firing == {"us"}
    mon.close()


def test_json_lines_carry_the_segment_label(clock: FakeClock, tmp_path: Any) -> None:
    path = tmp_path / "m.jsonl"
    mon = mlmon.Monitor("seg-jsonl", clock=clock, emitters=[JsonlEmitter(str(path))])
    with mon.track(segment="eu") as call:
        call.outputs(1.0)
    mon.flush()
    mon.close()
    assert '"segment": "eu"' in path.read_text() or '"segment":"eu"' in path.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_starts_without_the_parents_segments(clock: FakeClock) -> None:
    mon = binary(clock)
    with mon.track(segment="parent") as call:
        call.outputs(0.2)
    mon.snapshot()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            snap = mon.snapshot()
            os.write(w, repr(sorted(by_segment(snap, "mlmon_rows_total").items())).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1000).decode()
    os.waitpid(pid, 0)
    assert got == "[]"
    mon.close()


# -- the fleet: segments merge like every window part --------------------------------------------


def _fed(clock: FakeClock, instance: str, lo: int, hi: int, **kw: Any) -> mlmon.Monitor:
    mon = mlmon.Monitor(
        "seg-fleet", task=mlmon.BinaryClassification(threshold=0.5), clock=clock, emitters=[], instance=instance, **kw
    )
    rng = np.random.default_rng(lo)
    ids = np.arange(lo, hi)
    seg = np.array(["eu", "us", "fr"])[ids % 3]
    scores = rng.uniform(size=ids.size)
    X = pd.DataFrame({"age": rng.normal(40, 10, ids.size)})
    with mon.track(features=X, ids=ids, segment=seg) as call:
        call.outputs(scores)
    mon.log_feedback(ids, (rng.uniform(size=ids.size) < scores).astype(int))
    mon.log_outcome("click", ids[:10], segment="eu")
    return mon


def _segment_values(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for s in snap.samples if "segment" in dict(s.labels)}


def test_the_fleet_merges_segments_exactly(clock: FakeClock) -> None:
    a, b = _fed(clock, "a", 0, 3000), _fed(clock, "b", 3000, 5000)
    fleet = mlmon.fleet.merge_states(a, [a.fleet_state(), b.fleet_state()]).snapshot
    # One monitor fed both processes' rows and labels reports the same segment series.
    one = mlmon.Monitor("seg-fleet", task=mlmon.BinaryClassification(threshold=0.5), clock=clock, emitters=[], instance="one")
    for lo, hi in ((0, 3000), (3000, 5000)):
        rng = np.random.default_rng(lo)
        ids = np.arange(lo, hi)
        scores = rng.uniform(size=ids.size)
        X = pd.DataFrame({"age": rng.normal(40, 10, ids.size)})
        with one.track(features=X, ids=ids, segment=np.array(["eu", "us", "fr"])[ids % 3]) as call:
            call.outputs(scores)
        one.log_feedback(ids, (rng.uniform(size=ids.size) < scores).astype(int))
        one.log_outcome("click", ids[:10], segment="eu")
    want = _segment_values(one.snapshot())
    got = _segment_values(fleet)
    exact = ("mlmon_rows_total", "mlmon_calls_total", "mlmon_labels_total", "mlmon_confusion_total", "mlmon_precision",
             "mlmon_recall", "mlmon_outcome_total", "mlmon_output_count")  # fmt: skip
    checked = 0
    for key, value in want.items():
        if key[0] in exact:
            assert got[key] == value, key
            checked += 1
        elif key[0] in ("mlmon_feature_mean", "mlmon_feature_variance"):
            assert got[key] == pytest.approx(value, rel=1e-9), key
    assert checked > 30
    assert fleet.get("mlmon_rows_total", segment="eu") == 5000 // 3 + 1
    for mon in (a, b, one):
        mon.close()


def test_the_fleet_caps_segments_and_retired_states_keep_their_counters(clock: FakeClock) -> None:
    a = _fed(clock, "a", 0, 300, max_segments=2)  # eu, us tracked; fr in the overflow
    b = mlmon.Monitor("seg-fleet", task=mlmon.BinaryClassification(threshold=0.5), clock=clock, emitters=[],
                      instance="b", max_segments=2)  # fmt: skip
    with b.track(segment=["de", "de", "eu"]) as call:
        call.outputs([0.1, 0.2, 0.3])
    merged = mlmon.fleet.merge_states(a, [a.fleet_state(), b.fleet_state()]).snapshot
    rows = by_segment(merged, "mlmon_rows_total")
    assert set(rows) == {"eu", "us", OVERFLOW}
    assert rows[OVERFLOW] == 100 + 2  # fr from a, de from b folded in the fleet
    assert sum(rows.values()) == 303
    retired = mlmon.fleet.retire_state(a.fleet_state())
    after = mlmon.fleet.merge_states(a, [retired]).snapshot
    assert by_segment(after, "mlmon_rows_total")["eu"] == 100  # counters stay
    assert by_segment(after, "mlmon_rows_per_second").get("eu", 0.0) == 0.0  # the window went
    a.close()
    b.close()


def test_a_state_with_a_forged_segment_name_is_rejected(clock: FakeClock) -> None:
    from mlmon.fleet.state import pack_state, read_state

    a = _fed(clock, "a", 0, 30)
    doc = read_state(a.fleet_state())
    doc["parts"]["segments"]["list"][0]["name"] = "eu\nmlmon_fake 1"
    out = mlmon.fleet.merge_states(a, [pack_state(doc)])
    assert out.merged == 0 and out.rejected == {"corrupt": 1}
    a.close()


def test_arrays_and_lists_give_the_same_segment_values(clock: FakeClock) -> None:
    """Numeric arrays take the vectorised path (stacked once per drain), lists the general one:
    the values per segment are the same."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3000, 4))
    out = rng.uniform(size=3000)
    seg = rng.choice(["a", "b", "c"], size=3000)
    snaps = []
    for as_list in (False, True):
        mon = binary(clock, feature_names=["f0", "f1", "f2", "f3"])
        for lo in range(0, 3000, 100):
            sl = slice(lo, lo + 100)
            with mon.track(features=X[sl].tolist() if as_list else X[sl], segment=seg[sl]) as call:
                call.outputs(out[sl].tolist() if as_list else out[sl])
        snaps.append(_segment_values(mon.snapshot()))
        mon.close()
    assert snaps[0].keys() == snaps[1].keys()
    for key, value in snaps[0].items():
        assert snaps[1][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_a_real_segmented_monitor_log_makes_the_report_and_dashboard_sections(clock: FakeClock, tmp_path: Any) -> None:
    """track → labels → JSON lines → the HTML report's Segments section; and the Grafana export."""
    from mlmon import report
    from mlmon.export.grafana import dashboard

    path = tmp_path / "m.jsonl"
    mon = mlmon.Monitor("seg-report", task=mlmon.BinaryClassification(threshold=0.5), clock=clock,
                        emitters=[JsonlEmitter(str(path))], flush_interval=10.0)  # fmt: skip
    rng = np.random.default_rng(4)
    for step in range(6):
        ids = np.arange(step * 300, step * 300 + 300)
        seg = rng.choice(["north", "south", "<b>east</b>"], size=300)
        with mon.track(ids=ids, segment=seg) as call:
            call.outputs(rng.uniform(size=300))
        mon.log_feedback(ids, rng.integers(0, 2, 300))
        clock.advance(10.0)
        mon.flush()
    mon.close()
    page, _ = report.build(str(path))
    assert "Segments" in page and "north" in page and "south" in page
    assert "<b>east</b>" not in page and "&lt;b&gt;east&lt;/b&gt;" in page
    board = dashboard("prometheus", "seg-report", segments=True)
    text = json.dumps(board)
    assert "label_values(mlmon_rows_per_second" in text and 'segment=\\"\\"' in text


def test_a_flood_of_distinct_values_over_many_calls_stays_bounded(clock: FakeClock) -> None:
    from mlmon import _segmented

    mon = binary(clock, max_segments=8)
    predict = mon.track(lambda x: 0.3, segment=lambda x: x)
    for i in range(30_000):
        predict(f"user-{i}")
        if i % 3000 == 0:
            clock.advance(10.0)
            mon.snapshot()  # promotions are decided here, at most one per snapshot
    snap = mon.snapshot()
    part = mon._segments
    assert len(part.tracked()) <= 8 + 1
    assert len(part._candidates) <= 256 and len(part._names) <= 4096 and len(_segmented._MEMO) <= 4096
    rows = by_segment(snap, "mlmon_rows_total")
    assert sum(rows.values()) <= 30_000 and rows[OVERFLOW] >= 30_000 - 8 - snap.get("mlmon_segment_evictions_total")
    assert snap.get("mlmon_segment_overflow_rows_total") >= 30_000 - 8 - 11
    assert snap.get("mlmon_rows_total") == 30_000
    mon.close()


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(), st.text(max_size=80), st.binary(max_size=8),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.sampled_from([np.float32("nan"), np.int64(-3), np.datetime64("2026-01-01"), pd.NA, pd.Timestamp("2026-01-01")]),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.lists(_JUNK, min_size=1, max_size=6), min_size=1, max_size=6), per_row=st.booleans())
def test_any_segment_values_keep_every_row_and_name_it_safely(calls: list[list[Any]], per_row: bool) -> None:
    mon = mlmon.Monitor("seg-fuzz", task=mlmon.BinaryClassification(), emitters=[], clock=FakeClock(), max_segments=4)
    total = 0
    for values in calls:
        n = len(values)
        segment: Any = values if per_row else values[0]
        with mon.track(ids=[f"{total}-{i}" for i in range(n)], segment=segment) as call:
            call.outputs(np.linspace(0.0, 1.0, n))
        total += n
    snap = mon.snapshot()
    rows = by_segment(snap, "mlmon_rows_total")
    assert sum(rows.values()) == total == snap.get("mlmon_rows_total")
    assert len(rows) <= 4 + 1
    for name in rows:
        assert name.isprintable() and 0 < len(name) <= 64
    mon.close()
