"""Reference.load on hostile files: a clear ValueError naming the file and the field, never more.

Every file here was accepted (or crashed with something other than ValueError) before the
loader checked what ``Reference.from_data`` guarantees; and a round trip of whatever
``from_data`` builds must load back equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmon._component import CallBatch
from mlmon.drift import DriftConfig
from mlmon.features import FeatureComponent
from mlmon.reference import MAX_BINS, MAX_CATEGORIES, MAX_FILE_BYTES, MAX_SEGMENTS, Reference


def good() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    ref = Reference.from_data(
        {"x": rng.normal(size=300), "c": rng.choice(["a", "b", "c"], size=300)},
        outputs=rng.uniform(size=300),
    )
    return ref.to_dict()


def edit(fn: Callable[[dict[str, Any]], None]) -> str:
    data = good()
    fn(data)
    return json.dumps(data)


def numeric(d: dict[str, Any]) -> dict[str, Any]:
    f: dict[str, Any] = d["features"][0]
    return f


def categorical(d: dict[str, Any]) -> dict[str, Any]:
    f: dict[str, Any] = d["features"][1]
    return f


def many_bins(d: dict[str, Any], bins: int) -> None:
    f = numeric(d)
    f.update(
        edges=list(range(bins + 1)),
        counts=[1] * bins,
        count=bins,
        rows=bins,
        min=0,
        max=bins,
    )
    d["rows"] = bins
    categorical(d).update(rows=bins)


def huge_count(d: dict[str, Any]) -> None:
    numeric(d)["counts"][0] = 10**30


HOSTILE: list[tuple[str, Callable[[], str | bytes], str]] = [
    ("deep nesting", lambda: "[" * 100_000 + "]" * 100_000, "nested too deep"),
    (
        "deep nesting in a field",
        lambda: '{"mlmon_reference": 1, "rows": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "nested too deep",
    ),
    ("bin count of 10**30", lambda: edit(huge_count), r"features\[0\]\.counts\[0\] must be an int >= 0 \(at most 2\*\*63 - 1\)"),
    ("rows of 10**30", lambda: edit(lambda d: d.update(rows=10**30)), r"reference\.rows must be an int"),
    ("count of 10**30", lambda: edit(lambda d: numeric(d).update(count=10**30)), r"features\[0\]\.count must be an int >= 0 .*got 10{30}$"),
    (
        "counts summing beyond int64",
        lambda: edit(lambda d: categorical(d).update(counts=[2**62, 2**62, 2**62], count=2**63 - 1)),
        r"features\[1\]\.counts must sum to at most 2\*\*63 - 1",
    ),
    ("3M bins", lambda: edit(lambda d: many_bins(d, 3_000_000)), r"features\[0\]\.edges must hold at most 10002 values, got 3000001"),
    ("10,002 bins", lambda: edit(lambda d: many_bins(d, MAX_BINS + 2)), r"features\[0\]\.edges must hold at most 10002"),
    (
        "too many categories",
        lambda: edit(
            lambda d: categorical(d).update(
                categories=[str(i) for i in range(MAX_CATEGORIES + 1)],
                counts=[0] * (MAX_CATEGORIES + 1),
                other=categorical(d)["count"],
            )
        ),
        r"features\[1\]\.categories must hold at most 100000 values",
    ),
    ("NaN literal", lambda: edit(lambda d: numeric(d).update(mean=math.nan)), "not valid JSON: NaN is not a number"),
    ("Infinity literal", lambda: json.dumps(good()).replace('"variance":', '"variance": Infinity, "v":', 1), "Infinity is not a number"),
    ("an edge of 1e400", lambda: json.dumps(good()).replace('"edges": [', '"edges": [1e400, ', 1), r"features\[0\]\.edges\[0\] must be a finite number, got inf"),
    ("an edge as a string", lambda: edit(lambda d: numeric(d)["edges"].__setitem__(0, "-9")), r"features\[0\]\.edges\[0\] must be a finite number, got '-9'"),
    ("decreasing edges", lambda: edit(lambda d: numeric(d).update(edges=numeric(d)["edges"][::-1])), "edges must increase"),
    ("a count of true", lambda: edit(lambda d: numeric(d).update(rows=True)), r"features\[0\]\.rows must be an int >= 0 .*got True"),
    ("a count of 5.0", lambda: edit(lambda d: categorical(d).update(other=5.0)), r"features\[1\]\.other must be an int >= 0 .*got 5\.0"),
    ("a negative count", lambda: edit(lambda d: categorical(d)["counts"].__setitem__(0, -1)), r"features\[1\]\.counts\[0\] must be an int >= 0"),
    ("counts not adding up", lambda: edit(lambda d: categorical(d).update(other=1)), r"features\[1\]: counts \+ other must sum to count"),
    ("feature rows differ from the reference", lambda: edit(lambda d: categorical(d).update(rows=301)), r"features\[1\]\.rows must equal the reference rows \(300\)"),
    ("unknown kind", lambda: edit(lambda d: numeric(d).update(kind="ordinal")), r"features\[0\]\.kind must be 'numeric' or 'categorical', got 'ordinal'"),
    ("a feature that is not an object", lambda: edit(lambda d: d["features"].__setitem__(0, [1, 2])), r"features\[0\]\.kind must be"),
    ("names colliding once sanitised", lambda: edit(lambda d: (numeric(d).update(name="a-b"), categorical(d).update(name="a.b"))), "both become 'a_b'"),
    ("an empty name", lambda: edit(lambda d: numeric(d).update(name="")), r"features\[0\]\.name must be a non-empty string"),
    ("a name that is a number", lambda: edit(lambda d: numeric(d).update(name=3)), r"features\[0\]\.name must be a non-empty string, got 3"),
    ("version true", lambda: edit(lambda d: d.update(mlmon_reference=True)), "unsupported mlmon reference version True"),
    ("version '1'", lambda: edit(lambda d: d.update(mlmon_reference="1")), "unsupported mlmon reference version '1'"),
    ("categories as one string", lambda: edit(lambda d: categorical(d).update(categories="abc")), r"features\[1\]\.categories must be a list, got 'abc'"),
    ("a category that is a number", lambda: edit(lambda d: categorical(d)["categories"].__setitem__(0, 1)), r"features\[1\]\.categories\[0\] must be a string"),
    ("no features", lambda: edit(lambda d: d.update(features=[])), r"reference\.features must be a non-empty list"),
    ("no rows", lambda: edit(lambda d: d.update(rows=0)), r"reference\.rows must be >= 1"),
    ("negative variance", lambda: edit(lambda d: numeric(d).update(variance=-1.0)), "variance >= 0"),
    ("outputs that are not an object", lambda: edit(lambda d: d.update(outputs=[0.5])), r"outputs must be a JSON object"),
    ("outputs of another kind", lambda: edit(lambda d: d["outputs"].update(kind="categorical")), r"outputs\.kind must be 'numeric'"),
    ("a 5000-digit integer", lambda: edit(lambda d: d.update(rows=0)).replace('"rows": 0', '"rows": ' + "9" * 5000, 1), "not valid JSON"),
    ("not UTF-8", lambda: b'{"mlmon_reference": 1, "rows": \xff}', "not UTF-8 text"),
    ("a JSON list", lambda: "[1, 2]", "not an mlmon reference"),
]


@pytest.mark.parametrize(("make", "match"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_file_raises_value_error_naming_file_and_field(
    tmp_path: Path, make: Callable[[], str | bytes], match: str
) -> None:
    content = make()
    path = tmp_path / "ref.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match) as err:
        Reference.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert len(str(err.value)) < 400 + len(str(path))  # a huge value is cut, not echoed


def test_the_untouched_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(good()))
    assert Reference.load(path) == Reference.from_dict(good())


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    text = json.dumps(good())
    path.write_text(text)
    assert Reference.load(path, max_bytes=len(text)) == Reference.from_dict(good())
    with pytest.raises(ValueError, match=f"larger than max_bytes={len(text) - 1} bytes"):
        Reference.load(path, max_bytes=len(text) - 1)
    assert MAX_FILE_BYTES == 64 * 2**20
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_FILE_BYTES + 1))  # whitespace: valid JSON padding, but too big
    with pytest.raises(ValueError, match="larger than max_bytes=67108864 bytes"):
        Reference.load(big)


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True, "64M"])
def test_bad_max_bytes_raises(tmp_path: Path, max_bytes: Any) -> None:
    with pytest.raises(ValueError, match="max_bytes must be an int > 0"):
        Reference.load(tmp_path / "nope.json", max_bytes=max_bytes)


def test_a_loaded_reference_at_the_limits_still_gives_feature_metrics(tmp_path: Path) -> None:
    """Counts at the int64 edge load and monitor without losing the feature metrics."""
    data = good()
    f = numeric(data)
    f["counts"][0] += 2**62
    f["count"] += 2**62
    f["rows"] += 2**62
    categorical(data)["rows"] += 2**62
    data["rows"] += 2**62
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(data))
    ref = Reference.load(path)
    comp = FeatureComponent(ref, window=60.0, now=0.0, drift=DriftConfig(min_rows=10))

    X = np.empty((50, 2), dtype=object)
    X[:, 0] = np.linspace(-1, 1, 50)
    X[:, 1] = "a"
    comp.ingest(CallBatch(now=1.0, wall=0.0, features=[X], rows=[50]))
    names = {(n, labels.get("feature")) for n, _, labels in comp.samples(1.0)}
    assert {("mlmon_feature_drift_psi", "x"), ("mlmon_feature_drift_psi", "c")} <= names


def test_max_categories_is_capped_like_bins() -> None:
    with pytest.raises(ValueError, match=r"max_categories must be an int in \[1, 100000\]"):
        Reference.from_data({"c": ["a"]}, max_categories=MAX_CATEGORIES + 1)


# --------------------------------------------------------------------------- round trip

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
cell = st.one_of(finite, st.none(), st.just(math.nan), st.integers(-5, 5))
category = st.one_of(st.sampled_from(["a", "b", "c", "ü", "", "a b"]), st.none(), st.integers(0, 3))


@st.composite
def datasets(draw: st.DrawFn) -> tuple[dict[str, list[Any]], list[float] | None, int, int]:
    rows = draw(st.integers(1, 60))
    n_num = draw(st.integers(0, 3))
    n_cat = draw(st.integers(0 if n_num else 1, 2))
    data: dict[str, list[Any]] = {}
    for j in range(n_num):
        data[f"n{j}"] = draw(st.lists(cell, min_size=rows, max_size=rows))
    for j in range(n_cat):
        data[f"c{j}"] = draw(st.lists(category, min_size=rows, max_size=rows))
    outputs = draw(st.none() | st.lists(finite, min_size=1, max_size=40))
    return data, outputs, draw(st.integers(1, 12)), draw(st.integers(1, 5))


@given(datasets())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_from_data_save_load_round_trip(tmp_path: Path, case: tuple[Any, ...]) -> None:
    data, outputs, bins, max_categories = case
    categorical_names = [n for n in data if n.startswith("c")]
    ref = Reference.from_data(
        data, categorical=categorical_names, outputs=outputs, bins=bins, max_categories=max_categories
    )
    path = tmp_path / "ref.json"
    ref.save(path)
    assert Reference.load(path) == ref
    assert Reference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref


# --------------------------------------------------------------------------- segments


def good_segmented() -> dict[str, Any]:
    rng = np.random.default_rng(8)
    ref = Reference.from_data(
        {"x": rng.normal(size=300), "c": rng.choice(["a", "b", "c"], size=300)},
        outputs=rng.uniform(size=300),
        segment=["eu"] * 150 + ["us"] * 100 + [math.inf] * 50,
        min_segment_rows=100,
    )
    d = ref.to_dict()
    assert [r["segment"] for r in d["segments"]["references"]] == ["eu", "us"]
    return d


def edit_seg(fn: Callable[[dict[str, Any]], None]) -> str:
    data = good_segmented()
    fn(data)
    return json.dumps(data)


def seg(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    s: dict[str, Any] = d["segments"]["references"][i]
    return s


def many_segments(d: dict[str, Any], n: int) -> None:
    d["segments"]["references"] = [{"segment": f"s{i}", "rows": 1, "features": [], "outputs": None} for i in range(n)]


SEGMENT_HOSTILE: list[tuple[str, Callable[[], str], str]] = [
    ("a name segment_name changes", lambda: edit_seg(lambda d: seg(d).update(segment="e\nu")),
     r"segments\.references\[0\]\.segment: 'e\\nu' is not a segment name \(segment_name gives 'e_u'\)"),
    ("a name longer than segment names", lambda: edit_seg(lambda d: seg(d).update(segment="x" * 100_000)),
     r"segments\.references\[0\]\.segment: 'x+\.\.\. is not a segment name \(segment_name gives 'x{48}_h"),
    ("the overflow segment", lambda: edit_seg(lambda d: seg(d).update(segment="_other")),
     r"segments\.references\[0\]\.segment: '_other' \(the overflow segment\) has no reference of its own"),
    ("a repeated name", lambda: edit_seg(lambda d: seg(d, 1).update(segment="eu")), r"segments\.references\[1\]\.segment 'eu' is repeated"),
    ("a name that is a number", lambda: edit_seg(lambda d: seg(d).update(segment=3)), r"segments\.references\[0\]\.segment must be a non-empty string, got 3"),
    ("1,001 segments", lambda: edit_seg(lambda d: many_segments(d, MAX_SEGMENTS + 1)),
     r"segments\.references must hold at most 1000 segments \(MAX_SEGMENTS\), got 1001"),
    ("a million segments", lambda: edit_seg(lambda d: many_segments(d, 200_000)), r"at most 1000 segments .*got 200000"),
    ("a feature fewer", lambda: edit_seg(lambda d: seg(d)["features"].pop()),
     r"segments\.references\[0\]\.features must be the overall reference's features \['x', 'c'\], got \['x'\]"),
    ("a feature renamed", lambda: edit_seg(lambda d: seg(d)["features"][1].update(name="k")),
     r"segments\.references\[0\]\.features must be the overall reference's features \['x', 'c'\], got \['x', 'k'\]"),
    ("a feature of another kind", lambda: edit_seg(lambda d: seg(d, 1)["features"].__setitem__(0, {**seg(d, 1)["features"][1], "name": "x"})),
     r"segments\.references\[1\]\.features\[0\]\.kind must be 'numeric' as in the overall reference, got 'categorical'"),
    ("its own edges", lambda: edit_seg(lambda d: seg(d)["features"][0].update(edges=[e + 0.5 for e in seg(d)["features"][0]["edges"]])),
     r"segments\.references\[0\]\.features\[0\]\.edges must be the overall reference's edges"),
    ("other categories", lambda: edit_seg(lambda d: seg(d)["features"][1].update(categories=seg(d)["features"][1]["categories"][::-1])),
     r"segments\.references\[0\]\.features\[1\]\.categories must be the overall reference's categories"),
    ("no outputs", lambda: edit_seg(lambda d: seg(d).update(outputs=None)), r"segments\.references\[0\]\.outputs must be present as in the overall reference"),
    ("a bad bin count", lambda: edit_seg(lambda d: seg(d)["features"][0]["counts"].__setitem__(0, -1)),
     r"segments\.references\[0\]\.features\[0\]\.counts\[0\] must be an int >= 0"),
    ("feature rows differ from the segment", lambda: edit_seg(lambda d: seg(d)["features"][1].update(rows=151)),
     r"segments\.references\[0\]\.features\[1\]\.rows must equal the reference rows \(150\), got 151"),
    ("more rows than the reference", lambda: edit_seg(lambda d: d["segments"]["references"].append({**seg(d), "segment": "jp"})),
     "reference.segments: segments: their references hold 400 rows in all, more than the reference's 300"),
    ("min beyond the edges", lambda: edit_seg(lambda d: seg(d)["features"][0].update(min=-1e9)), r"segments\.references\[0\]\.features\[0\]: min/max must lie within the outer edges"),
    ("segments version 2", lambda: edit_seg(lambda d: d["segments"].update(mlmon_segments=2)), r"segments\.mlmon_segments must be 1 \(the supported version\), got 2"),
    ("no version", lambda: edit_seg(lambda d: d["segments"].pop("mlmon_segments")), r"segments: missing field 'mlmon_segments'"),
    ("invalid rows of -1", lambda: edit_seg(lambda d: d["segments"].update(invalid_rows=-1)), r"segments\.invalid_rows must be an int >= 0"),
    ("invalid rows beyond the rows", lambda: edit_seg(lambda d: d["segments"].update(invalid_rows=301)), r"segment_invalid_rows must be <= rows \(300\), got 301"),
    ("segments that are a list", lambda: edit_seg(lambda d: d.update(segments=[1])), r"segments must be a JSON object, got \[1\]"),
    ("references that are an object", lambda: edit_seg(lambda d: d["segments"].update(references={"eu": {}})), r"segments\.references must be a list"),
    ("a reference that is a string", lambda: edit_seg(lambda d: d["segments"]["references"].__setitem__(0, "eu")), r"segments\.references\[0\] must be a JSON object"),
    ("a segment's file with segments", lambda: edit_seg(lambda d: d.update(segment="eu")), "a segment's reference has no segments of its own"),
    ("a segment's file named badly", lambda: edit(lambda d: d.update(segment="a\tb")), r"reference\.segment: 'a\\tb' is not a segment name"),
]


@pytest.mark.parametrize(("make", "match"), [h[1:] for h in SEGMENT_HOSTILE], ids=[h[0] for h in SEGMENT_HOSTILE])
def test_hostile_segments_raise_value_error_naming_file_and_field(tmp_path: Path, make: Callable[[], str], match: str) -> None:
    path = tmp_path / "ref.json"
    path.write_text(make(), encoding="utf-8")
    with pytest.raises(ValueError, match=match) as err:
        Reference.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert len(str(err.value)) < 400 + len(str(path))


def test_the_untouched_segmented_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(good_segmented()))
    ref = Reference.load(path)
    assert list(ref.segments) == ["eu", "us"] and ref.segment_invalid_rows == 50
    assert ref.for_segment("us") == (ref.segments["us"], True)


def test_a_file_of_many_large_segments_is_refused_by_size_before_parsing(tmp_path: Path) -> None:
    """Each segment repeats the overall bins: a file of many segments of many bins grows past the
    size limit, and is refused before it is parsed."""
    rng = np.random.default_rng(1)
    n = 40_000
    ref = Reference.from_data({"x": rng.normal(size=n)}, bins=2000, segment=np.arange(n) % 40, min_segment_rows=10, max_segments=40)
    path = tmp_path / "ref.json"
    ref.save(path)
    size = path.stat().st_size
    assert size > 40 * 2000 * 2  # every segment's counts are there
    assert Reference.load(path) == ref
    with pytest.raises(ValueError, match=f"larger than max_bytes={size // 2} bytes"):
        Reference.load(path, max_bytes=size // 2)
