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
from mlmon.reference import MAX_BINS, MAX_CATEGORIES, MAX_FILE_BYTES, Reference


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
