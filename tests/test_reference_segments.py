"""Per-segment reference profiles: built on the overall reference's cells, chosen by size,
looked up with ``for_segment``, carried through the file format."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmon._component import CallBatch
from mlmon.drift import DriftConfig
from mlmon.features import FeatureComponent
from mlmon.reference import (
    MAX_SEGMENTS,
    CategoricalProfile,
    NumericProfile,
    Reference,
    binned_counts,
    category_key,
)
from mlmon.segments import MISSING, OVERFLOW, segment_name

SIZES = {"eu": 3000, "us": 2000, "jp": 1200, "br": 400}


def data(rng: np.random.Generator) -> dict[str, Any]:
    """Segments whose ``age`` distributions differ: eu young, us old, jp and br in between."""
    country = np.repeat(list(SIZES), list(SIZES.values()))
    rng.shuffle(country)
    shift = {"eu": -10.0, "us": 15.0, "jp": 0.0, "br": 5.0}
    age = np.array([rng.normal(40.0 + shift[c], 5.0) for c in country])
    age[rng.uniform(size=age.size) < 0.02] = np.nan
    color = rng.choice(["red", "green", "blue", "cyan"], size=age.size, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    color[country == "jp"] = rng.choice(["red", "violet"], size=int((country == "jp").sum()))
    color[rng.uniform(size=age.size) < 0.01] = None
    return {"age": age, "country": country, "color": color}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(11)


@pytest.fixture
def X(rng: np.random.Generator) -> dict[str, Any]:
    return data(rng)


def without(X: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in X.items() if k != key}


# --------------------------------------------------------------------------- building


def test_overall_profile_is_the_same_as_without_segments(X: dict[str, Any]) -> None:
    scores = np.linspace(0.0, 1.0, len(X["age"]))
    ref = Reference.from_data(X, segment="country", outputs=scores, max_categories=3)
    plain = Reference.from_data(without(X, "country"), outputs=scores, max_categories=3)
    assert ref.feature_names == ("age", "color")  # the segment column is not a feature
    assert (ref.rows, ref.features, ref.outputs) == (plain.rows, plain.features, plain.outputs)
    assert plain.segments == {} and plain.segment_invalid_rows == 0


def test_each_segment_is_counted_on_the_overall_cells(X: dict[str, Any]) -> None:
    scores = np.asarray(X["age"], dtype=np.float64) / 100.0
    scores[np.isnan(scores)] = 0.5
    ref = Reference.from_data(X, segment="country", outputs=scores, max_categories=2, min_segment_rows=1000)
    assert list(ref.segments) == ["eu", "us", "jp"]  # br has 400 rows, below min_segment_rows
    age, color = ref["age"], ref["color"]
    assert isinstance(age, NumericProfile) and isinstance(color, CategoricalProfile)
    assert color.categories == ("red", "green")
    for name, sub in ref.segments.items():
        rows = X["country"] == name
        assert sub.rows == SIZES[name] and sub.segment == name
        x = X["age"][rows]
        valid = x[np.isfinite(x)]
        p = sub["age"]
        assert isinstance(p, NumericProfile)
        assert p.edges == age.edges  # the overall edges: PSI per segment on the same bins
        assert list(p.counts) == binned_counts(valid, np.array(age.edges))[1:-1].tolist()
        assert (p.count, p.missing) == (valid.size, int((~np.isfinite(x)).sum()))
        assert (p.min, p.max) == (valid.min(), valid.max())
        assert p.mean == pytest.approx(valid.mean()) and p.variance == pytest.approx(valid.var())
        c = sub["color"]
        assert isinstance(c, CategoricalProfile) and c.categories == color.categories
        keys = [category_key(v) for v in X["color"][rows]]
        assert list(c.counts) == [keys.count("red"), keys.count("green")]
        assert c.missing == keys.count(None)
        assert c.other == sum(k not in (None, "red", "green") for k in keys)
        assert sub.outputs is not None and ref.outputs is not None
        assert sub.outputs.edges == ref.outputs.edges and sub.outputs.count == SIZES[name]
        assert len(p.cells()) == len(age.cells()) and len(c.cells()) == len(color.cells())
    assert ref["age"].count == sum(s["age"].count for s in ref.segments.values()) + (
        np.isfinite(X["age"][X["country"] == "br"]).sum()
    )


def test_segment_profiles_measure_drift_that_the_overall_reference_hides(rng: np.random.Generator) -> None:
    """Serving rows of eu look like eu's training rows: no drift against eu's reference, but
    large drift against the overall one (which mixes eu with the older us)."""
    X = data(rng)
    ref = Reference.from_data(X, segment="country", categorical=["color"])
    serving = data(np.random.default_rng(99))
    eu = serving["country"] == "eu"
    batch = np.empty((int(eu.sum()), 2), dtype=object)
    batch[:, 0] = serving["age"][eu]
    batch[:, 1] = serving["color"][eu]

    def psi(reference: Reference) -> float:
        comp = FeatureComponent(reference, window=60.0, now=0.0, drift=DriftConfig(min_rows=10))
        comp.ingest(CallBatch(now=1.0, wall=0.0, features=[batch], rows=[len(batch)]))
        values = [v for n, v, labels in comp.samples(1.0) if n == "mlmon_feature_drift_psi" and labels["feature"] == "age"]
        assert len(values) == 1
        return float(values[0])

    own, has_own = ref.for_segment("eu")
    assert has_own and own is ref.segments["eu"]
    assert psi(own) < 0.05
    assert psi(ref) > 1.0


def test_largest_segments_win_and_ties_go_by_name() -> None:
    seg = ["b"] * 5 + ["a"] * 5 + ["c"] * 7 + ["d"] * 2
    X = {"x": np.arange(len(seg), dtype=np.float64)}
    ref = Reference.from_data(X, segment=seg, min_segment_rows=2, max_segments=3)
    assert list(ref.segments) == ["c", "a", "b"]
    assert ref.for_segment("d") == (ref, False)
    assert ref.for_segment("never seen") == (ref, False)
    assert ref.for_segment("a") == (ref.segments["a"], True)
    only = Reference.from_data(X, segment=seg, min_segment_rows=6)
    assert list(only.segments) == ["c"]


def test_values_are_named_like_the_monitor_names_them() -> None:
    seg: list[Any] = [3] * 4 + [3.0] * 4 + ["3"] * 4 + [None] * 3 + [math.nan] * 3 + [True] * 5 + [math.inf] * 9
    ref = Reference.from_data({"x": np.zeros(len(seg))}, segment=seg, min_segment_rows=5)
    assert {k: v.rows for k, v in ref.segments.items()} == {"3": 12, MISSING: 6, "true": 5}
    # inf has no name: its rows go to the overflow segment, which never has a profile of its own
    assert ref.segment_invalid_rows == 9 and OVERFLOW not in ref.segments
    assert all(segment_name(k) == k for k in ref.segments)


def test_a_numeric_segment_array_is_named_by_value() -> None:
    seg = np.array([1, 2, 2, 1, 1], dtype=np.int64)
    ref = Reference.from_data(np.arange(10.0).reshape(5, 2), segment=seg, min_segment_rows=2)
    assert {k: v.rows for k, v in ref.segments.items()} == {"1": 3, "2": 2}
    as_floats = Reference.from_data(np.arange(10.0).reshape(5, 2), segment=seg.astype(float), min_segment_rows=2)
    assert as_floats == ref


def test_segment_column_of_a_dataframe_keeps_its_own_values(X: dict[str, Any]) -> None:
    df = pd.DataFrame({"age": X["age"], "flag": X["country"] == "eu", "color": X["color"]})
    ref = Reference.from_data(df, segment="flag", min_segment_rows=100)
    # booleans are named true/false as the monitor names them, not 1.0/0.0
    assert set(ref.segments) == {"true", "false"} and ref.feature_names == ("age", "color")
    series = Reference.from_data(df[["age", "color"]], segment=df["flag"], min_segment_rows=100)
    assert series == ref


def test_listing_the_segment_column_in_feature_names_keeps_it_a_feature(X: dict[str, Any]) -> None:
    ref = Reference.from_data(X, feature_names=["age", "country", "color"], segment="country")
    assert ref.feature_names == ("age", "country", "color") and list(ref.segments) == ["eu", "us", "jp"]
    renamed = Reference.from_data(X, feature_names=["a", "c"], segment="country")
    assert renamed.feature_names == ("a", "c")
    arr = np.column_stack([np.arange(5000.0), np.repeat([0.0, 1.0], 2500)])
    by_name = Reference.from_data(arr, feature_names=["x", "group"], segment="group")
    assert by_name.feature_names == ("x", "group") and set(by_name.segments) == {"0", "1"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"segment": "nope"}, r"segment: 'nope' is not a column of X \(columns: \['age', 'country', 'color'\]\)"),
        ({"segment": [1, 2, 3]}, r"segment must hold one value per row of X \(6600\), got shape \(3,\)"),
        ({"segment": 7}, "segment must be None, a column name of X or one value per row, got 7"),
        ({"segment": np.zeros((6600, 2))}, r"segment must hold one value per row of X \(6600\), got shape \(6600, 2\)"),
        ({"segment": "country", "feature_names": ["a"]}, "feature_names has 1 names for 2 columns .the segment column 'country'"),
        ({"segment": "country", "min_segment_rows": 0}, r"min_segment_rows must be an int in \[1, "),
        ({"segment": "country", "max_segments": MAX_SEGMENTS + 1}, r"max_segments must be an int in \[1, 1000\], got 1001"),
        ({"segment": "country", "max_segments": True}, r"max_segments must be an int in \[1, 1000\], got True"),
        ({"segment": "country", "outputs": [0.5, 0.6]}, r"outputs need one score per row of X \(6600\) to profile segments"),
    ],
)
def test_bad_segment_arguments_raise_naming_them(X: dict[str, Any], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Reference.from_data(X, **kwargs)


def test_segments_are_read_only_and_have_no_segments_or_calibration(rng: np.random.Generator) -> None:
    X = data(rng)
    scores = rng.uniform(size=len(X["age"]))
    labels = rng.uniform(size=scores.size) < scores
    ref = Reference.from_data(X, segment="country", outputs=scores, labels=labels)
    assert ref.calibration is not None
    with pytest.raises(TypeError):
        ref.segments["eu"] = ref  # type: ignore[index]
    for sub in ref.segments.values():
        assert sub.segments == {} and sub.calibration is None and sub.for_segment("eu") == (sub, False)
    with pytest.raises(ValueError, match="a segment's reference has no segments of its own"):
        Reference(rows=ref.segments["eu"].rows, features=ref.segments["eu"].features, segment="eu", segments=ref.segments)
    calibrated = ref.with_calibration(scores, labels)
    assert calibrated.segments == ref.segments


def test_an_all_missing_feature_in_a_segment_keeps_the_overall_edges() -> None:
    x = np.concatenate([np.arange(100.0), np.full(50, np.nan)])
    seg = ["a"] * 100 + ["b"] * 50
    ref = Reference.from_data({"x": x}, segment=seg, min_segment_rows=10)
    b, overall = ref.segments["b"]["x"], ref["x"]
    assert isinstance(b, NumericProfile) and isinstance(overall, NumericProfile)
    assert (b.count, b.edges, sum(b.counts), b.own_edges) == (0, overall.edges, 0, False)
    assert Reference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref


def test_a_segment_profile_on_other_edges_is_refused() -> None:
    ref = Reference.from_data({"x": np.arange(100.0)}, segment=["a"] * 60 + ["b"] * 40, min_segment_rows=10)
    mine = Reference.from_data({"x": np.arange(60.0)})
    sub = Reference(rows=60, features=mine.features, segment="a")
    with pytest.raises(ValueError, match=r"segments\['a'\]\.features\[0\]\.edges must be the overall reference's edges"):
        Reference(rows=100, features=ref.features, segments={"a": sub})
    with pytest.raises(ValueError, match=r"features\[0\]: min/max must equal the outer edges"):
        Reference(rows=60, features=ref.segments["a"].features)  # not a segment: its own edges


# --------------------------------------------------------------------------- files


def test_segments_round_trip_through_a_file(X: dict[str, Any], tmp_path: Path) -> None:
    ref = Reference.from_data(X, segment="country", outputs=np.linspace(0, 1, len(X["age"])))
    path = tmp_path / "ref.json"
    ref.save(path)
    back = Reference.load(path)
    assert back == ref and list(back.segments) == list(ref.segments)
    seg = json.loads(path.read_text())["segments"]
    assert (seg["mlmon_segments"], seg["invalid_rows"]) == (1, 0)
    assert [r["segment"] for r in seg["references"]] == ["eu", "us", "jp"]
    one = ref.segments["eu"]
    assert Reference.from_dict(json.loads(json.dumps(one.to_dict()))) == one


def test_a_file_without_segments_is_the_format_of_before(X: dict[str, Any]) -> None:
    d = Reference.from_data(without(X, "country")).to_dict()
    assert list(d) == ["mlmon_reference", "rows", "features", "outputs"] and d["mlmon_reference"] == 1


def test_a_reader_that_ignores_the_segments_object_gets_the_overall_reference(X: dict[str, Any]) -> None:
    """A reader of before ignores unknown keys: what it reads is the overall reference."""
    d = Reference.from_data(X, segment="country").to_dict()
    d.pop("segments")
    assert Reference.from_dict(d) == Reference.from_data(without(X, "country"))


segment_values = st.one_of(st.sampled_from(["eu", "us", "", "a\nb", "x" * 80]), st.none(), st.integers(0, 2), st.just(math.inf))


@given(st.lists(st.tuples(st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=32), st.none()),
                          st.sampled_from(["r", "g", None]), segment_values), min_size=1, max_size=60),
       st.integers(1, 8), st.integers(1, 4))  # fmt: skip
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_segmented_reference_round_trips(tmp_path: Path, rows: list[tuple[Any, Any, Any]], min_rows: int, cap: int) -> None:
    X = {"x": [r[0] for r in rows], "c": [r[1] for r in rows]}
    ref = Reference.from_data(X, categorical=["c"], segment=[r[2] for r in rows], min_segment_rows=min_rows,
                              max_segments=cap, outputs=[0.0 if r[0] is None or math.isnan(r[0]) else r[0] for r in rows])  # fmt: skip
    assert len(ref.segments) <= cap and all(s.rows >= min_rows for s in ref.segments.values())
    assert ref.segment_invalid_rows == sum(r[2] == math.inf for r in rows)
    path = tmp_path / "ref.json"
    ref.save(path)
    assert Reference.load(path) == ref


def test_on_edges_counts_on_given_edges_and_refuses_values_outside() -> None:
    p = NumericProfile.on_edges("x", [1.0, 1.5, 4.0, math.nan], (1.0, 2.0, 3.0, 4.0))
    assert (p.counts, p.count, p.missing, p.min, p.max, p.own_edges) == ((2, 0, 1), 3, 1, 1.0, 4.0, True)
    with pytest.raises(ValueError, match=r"feature 'x': 1 values outside the edges \[1\.0, 4\.0\]"):
        NumericProfile.on_edges("x", [0.5, 2.0], (1.0, 2.0, 3.0, 4.0))
    with pytest.raises(ValueError, match="feature 'x': 2 valid values but no edges"):
        NumericProfile.on_edges("x", [0.5, 2.0], ())
    with pytest.raises(ValueError, match="min/max must lie within the outer edges"):
        NumericProfile(name="x", rows=1, count=1, edges=(1.0, 2.0), counts=(1,), min=0.0, max=1.0, mean=1.0, variance=0.0)


def test_pandas_missing_values_are_the_missing_segment() -> None:
    seg = pd.Series([1, None, 2, 1, None], dtype="Int64")
    ref = Reference.from_data({"x": np.arange(5.0)}, segment=seg, min_segment_rows=2)
    assert {k: v.rows for k, v in ref.segments.items()} == {"1": 2, MISSING: 2}
    cat = pd.Series(["a", "b", None, "a", "a"], dtype="category")
    ref = Reference.from_data({"x": np.arange(5.0)}, segment=cat, min_segment_rows=1)
    assert {k: v.rows for k, v in ref.segments.items()} == {"a": 3, "b": 1, MISSING: 1}
