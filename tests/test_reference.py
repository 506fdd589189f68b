"""Reference building, binning and the versioned file format."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon.reference import (
    CategoricalProfile,
    NumericProfile,
    Reference,
    binned_counts,
    category_key,
    check_feature_names,
    sanitize_label,
)

try:
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is optional
    pd = None

needs_pandas = pytest.mark.skipif(pd is None, reason="pandas is not installed")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


# --------------------------------------------------------------------------- numeric summaries


def test_numeric_profile_keeps_deciles_and_moments_of_the_data(rng: np.random.Generator) -> None:
    x = rng.normal(3.0, 2.0, size=10_000)
    p = Reference.from_data(x.reshape(-1, 1)).features[0]
    assert isinstance(p, NumericProfile)
    assert np.allclose(p.edges, np.quantile(x, np.linspace(0, 1, 11)))
    assert p.counts == (1000,) * 10
    assert (p.rows, p.count, p.missing) == (10_000, 10_000, 0)
    assert p.min == x.min() and p.max == x.max()
    assert p.mean == pytest.approx(x.mean(), rel=1e-12)
    assert p.variance == pytest.approx(x.var(), rel=1e-12)
    assert p.proportions == pytest.approx((0.1,) * 10)


def test_bins_are_configurable(rng: np.random.Generator) -> None:
    p = Reference.from_data(rng.normal(size=(1000, 1)), bins=4).features[0]
    assert isinstance(p, NumericProfile)
    assert len(p.edges) == 5 and p.counts == (250,) * 4


@pytest.mark.parametrize("bins", [0, -1, 2.5, True, 10_001])
def test_bad_bins_raise_naming_the_value(bins: object) -> None:
    with pytest.raises(
        ValueError, match=r"bins must be an int .* got " + repr(bins).replace(".", r"\.")
    ):
        Reference.from_data([[1.0]], bins=bins)  # type: ignore[arg-type]


def test_missing_values_are_nan_none_inf_and_strings() -> None:
    ref = Reference.from_data([[1.0], [float("nan")], [None], [float("inf")], ["3.5"], [2.0]])
    p = ref.features[0]
    assert isinstance(p, NumericProfile)
    assert (p.rows, p.count, p.missing) == (6, 2, 4)
    assert p.mean == 1.5


def test_constant_feature_gets_a_single_point_bin() -> None:
    p = Reference.from_data(np.full((100, 1), 7.0)).features[0]
    assert isinstance(p, NumericProfile)
    assert p.edges == (7.0, 7.0) and p.counts == (100,)
    assert p.variance == 0.0
    # Anything off the constant is out of range: underflow or overflow.
    cells = binned_counts(np.array([6.9, 7.0, 7.0, 7.1]), np.array(p.edges))
    assert cells.tolist() == [1, 2, 1]


def test_low_cardinality_feature_gets_one_bin_per_value() -> None:
    x = np.array([0.0] * 50 + [1.0] * 30 + [2.0] * 20)
    p = Reference.from_data(x.reshape(-1, 1)).features[0]
    assert isinstance(p, NumericProfile)
    assert p.edges == (0.0, 1.0, 2.0, 2.0)
    assert p.counts == (50, 30, 20)


def test_clipped_maximum_gets_its_own_point_bin(rng: np.random.Generator) -> None:
    x = np.minimum(rng.normal(size=1000), 0.5)  # about 30% of the mass sits at 0.5
    p = Reference.from_data(x.reshape(-1, 1)).features[0]
    assert isinstance(p, NumericProfile)
    assert p.edges[-1] == p.edges[-2] == 0.5
    assert p.counts[-1] == int((x == 0.5).sum())


def test_all_missing_feature_has_no_bins() -> None:
    p = Reference.from_data([[None, 1.0], [None, 2.0]]).features[0]
    assert isinstance(p, NumericProfile)
    assert (p.count, p.rows, p.edges, p.counts) == (0, 2, (), ())
    assert math.isnan(p.mean)


def test_values_too_large_to_summarise_raise() -> None:
    with pytest.raises(ValueError, match="too large"):
        Reference.from_data([[1e300], [-1e300]], feature_names=["big"])


# --------------------------------------------------------------------------- binning


def test_binned_counts_puts_edges_left_closed_and_the_maximum_in_the_last_bin() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    values = np.array([-0.1, 0.0, 0.99, 1.0, 1.5, 2.0, 2.01, np.nan, np.inf])
    assert binned_counts(values, edges).tolist() == [1, 2, 3, 1]


@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30),
    st.lists(st.floats(-150, 150, allow_nan=False), min_size=0, max_size=50),
)
@settings(max_examples=100, deadline=None)
def test_binned_counts_equals_a_loop_over_the_definition(
    ref: list[float], vals: list[float]
) -> None:
    e = np.unique(ref)
    e = np.append(e, e[-1]) if e.size == 1 else e
    m = len(e) - 1
    expected = [0] * (m + 2)
    for v in vals:
        if v < e[0]:
            expected[0] += 1
        elif v > e[-1]:
            expected[m + 1] += 1
        elif v == e[-1]:
            expected[m] += 1
        else:
            expected[1 + max(i for i in range(m) if e[i] <= v)] += 1
    assert binned_counts(np.array(vals, dtype=float), e).tolist() == expected


def test_reference_cells_sum_to_count_and_have_empty_outer_cells(rng: np.random.Generator) -> None:
    x = rng.exponential(size=(500, 3))
    for p in Reference.from_data(x).features:
        assert isinstance(p, NumericProfile)
        cells = binned_counts(x[:, int(p.name[1:])], np.array(p.edges))
        assert cells[0] == cells[-1] == 0
        assert cells[1:-1].tolist() == list(p.counts)


# --------------------------------------------------------------------------- categorical


def test_strings_make_a_categorical_feature_with_frequencies() -> None:
    ref = Reference.from_data({"color": ["red", "red", "blue", None, "red"], "x": [1, 2, 3, 4, 5]})
    p = ref["color"]
    assert isinstance(p, CategoricalProfile)
    assert (p.categories, p.counts, p.other, p.missing) == (("red", "blue"), (3, 1), 0, 1)
    assert ref.categorical == ("color",)
    assert p.proportions == {"red": 0.75, "blue": 0.25}


def test_categories_are_capped_with_the_rest_counted_as_other() -> None:
    values = [f"c{i}" for i in range(10) for _ in range(10 - i)]  # c0 x10, c1 x9, ...
    p = Reference.from_data({"c": values}, max_categories=3)["c"]
    assert isinstance(p, CategoricalProfile)
    assert p.categories == ("c0", "c1", "c2")
    assert p.other == len(values) - 27


def test_tied_categories_are_ordered_by_name_for_a_stable_file() -> None:
    p = Reference.from_data({"c": ["b", "a", "c", "a", "b", "c"]})["c"]
    assert isinstance(p, CategoricalProfile)
    assert p.categories == ("a", "b", "c")


def test_categorical_can_be_chosen_by_name_or_index() -> None:
    X = np.array([[1, 10], [2, 20], [1, 10]])
    by_name = Reference.from_data(X, feature_names=["zip", "n"], categorical=["zip"])
    by_index = Reference.from_data(X, feature_names=["zip", "n"], categorical=[0])
    assert by_name == by_index
    p = by_name["zip"]
    assert isinstance(p, CategoricalProfile)
    assert p.categories == ("1", "2")


def test_unknown_categorical_name_raises() -> None:
    with pytest.raises(ValueError, match=r"categorical: 'nope' is not a feature name"):
        Reference.from_data([[1.0]], categorical=["nope"])
    with pytest.raises(ValueError, match="column index 3 out of range"):
        Reference.from_data([[1.0]], categorical=[3])


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("a", "a"),
        (3, "3"),
        (3.0, "3"),
        (np.int64(3), "3"),
        (2.5, "2.5"),
        (True, "True"),
        (b"x", "x"),
        (None, None),
        (float("nan"), None),
        (np.float32("nan"), None),
    ],
)
def test_category_key_normalises_values(value: object, key: str | None) -> None:
    assert category_key(value) == key


# --------------------------------------------------------------------------- inputs


def test_every_input_shape_gives_the_same_reference(rng: np.random.Generator) -> None:
    X = rng.normal(size=(50, 2))
    names = ["a", "b"]
    from_array = Reference.from_data(X, feature_names=names)
    from_rows = Reference.from_data(X.tolist(), feature_names=names)
    from_dict = Reference.from_data({"a": X[:, 0], "b": X[:, 1]})
    from_dicts = Reference.from_data([{"a": r[0], "b": r[1]} for r in X.tolist()])
    assert from_array == from_rows == from_dict == from_dicts


@needs_pandas
def test_dataframe_columns_and_dtypes_are_used(rng: np.random.Generator) -> None:
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 90, size=100),
            "city": pd.Categorical(rng.choice(["x", "y"], size=100)),
            "score": pd.array([1, None] * 50, dtype="Int64"),
            "flag": rng.integers(0, 2, size=100).astype(bool),
        }
    )
    ref = Reference.from_data(df)
    assert ref.feature_names == ("age", "city", "score", "flag")
    assert ref.categorical == ("city",)
    score = ref["score"]
    assert isinstance(score, NumericProfile) and score.missing == 50
    flag = ref["flag"]
    assert isinstance(flag, NumericProfile) and flag.edges[0] in (0.0, 1.0)


def test_default_names_are_positional() -> None:
    assert Reference.from_data(np.zeros((3, 2))).feature_names == ("f0", "f1")


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros((0, 3)), "0 rows"),
        ([], "no columns"),
        (np.zeros((3, 0)), "no columns"),
        (np.zeros(5), "must be 2-D"),
        ([[1, 2], [3]], "row 1 has 1 values, row 0 has 2"),
        ({"a": [1, 2], "b": [1]}, "equal lengths"),
        ([1, 2, 3], "row 0 must be a list"),
    ],
)
def test_unusable_data_raises_value_error(X: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Reference.from_data(X)


def test_unsupported_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="X must be"):
        Reference.from_data("not data")


def test_feature_names_must_match_the_columns() -> None:
    with pytest.raises(ValueError, match="feature_names has 1 names for 2 columns"):
        Reference.from_data(np.zeros((2, 2)), feature_names=["a"])


# --------------------------------------------------------------------------- names


def test_names_that_are_not_metric_safe_are_kept_as_they_are() -> None:
    ref = Reference.from_data(np.zeros((2, 2)), feature_names=["age (years)", "città"])
    assert ref.feature_names == ("age (years)", "città")
    assert sanitize_label("città") == "citt_"


def test_names_colliding_once_sanitised_raise_naming_both() -> None:
    with pytest.raises(ValueError, match=r"'a-b' and 'a\.b' both become 'a_b'"):
        Reference.from_data(np.zeros((2, 2)), feature_names=["a-b", "a.b"])


@pytest.mark.parametrize(
    ("names", "exc", "match"),
    [
        (["a", "a"], ValueError, "'a' is repeated"),
        ([""], ValueError, "must not be empty"),
        ([1], TypeError, "must be str"),
    ],
)
def test_bad_names_raise(names: list[object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        check_feature_names(names)


# --------------------------------------------------------------------------- outputs


def test_outputs_get_their_own_profile(rng: np.random.Generator) -> None:
    scores = rng.uniform(size=1000)
    ref = Reference.from_data(np.zeros((10, 1)), outputs=scores)
    assert ref.outputs is not None
    assert ref.outputs.count == 1000 and len(ref.outputs.edges) == 11
    column = Reference.from_data(np.zeros((10, 1)), outputs=scores.reshape(-1, 1))
    assert column.outputs == ref.outputs


@pytest.mark.parametrize(
    ("outputs", "match"), [(np.zeros((5, 3)), "1-D scores"), ([], "0 values"), (["a"], "numeric")]
)
def test_bad_outputs_raise(outputs: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Reference.from_data(np.zeros((5, 1)), outputs=outputs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- files


@pytest.fixture
def ref(rng: np.random.Generator) -> Reference:
    return Reference.from_data(
        {"x": rng.normal(size=200), "c": rng.choice(["a", "b"], size=200), "empty": [None] * 200},
        outputs=rng.uniform(size=200),
    )


def test_save_and_load_round_trip(ref: Reference, tmp_path: object) -> None:
    path = f"{tmp_path}/ref.json"
    ref.save(path)
    assert Reference.load(path) == ref
    with open(path) as fh:
        assert json.load(fh)["mlmon_reference"] == 1


def test_truncated_file_raises_value_error_naming_the_file(
    ref: Reference, tmp_path: object
) -> None:
    path = f"{tmp_path}/ref.json"
    ref.save(path)
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"ref\.json: not valid JSON \(corrupt or truncated"):
        Reference.load(path)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(mlmon_reference=2), "unsupported mlmon reference version 2"),
        (lambda d: d.pop("mlmon_reference"), "not an mlmon reference"),
        (lambda d: d.pop("rows"), "missing field 'rows'"),
        (lambda d: d["features"][0].pop("edges"), "missing field 'edges'"),
        (
            lambda d: d["features"][0].update(kind="weird"),
            "kind must be 'numeric' or 'categorical'",
        ),
        (lambda d: d["features"][0].update(counts=[-1] * 10), r"features\[0\]\.counts\[0\] must be an int >= 0"),
        (
            lambda d: d["features"][0].update(edges=d["features"][0]["edges"][::-1]),
            "edges must increase",
        ),
        (lambda d: d["features"][1].update(other=5), "counts \\+ other must sum to count"),
        (lambda d: d["features"][0].update(rows="many"), r"features\[0\]\.rows must be an int >= 0 \(at most 2\*\*63 - 1\), got 'many'"),
        (lambda d: d.update(features=7), "reference.features must be a non-empty list, got 7"),
    ],
)
def test_invalid_files_raise_value_error_naming_the_problem(
    ref: Reference, tmp_path: object, mutate: object, match: str
) -> None:
    data = ref.to_dict()
    mutate(data)  # type: ignore[operator]
    path = f"{tmp_path}/bad.json"
    with open(path, "w") as fh:
        json.dump(data, fh)
    with pytest.raises(ValueError, match=match):
        Reference.load(path)


def test_a_json_value_that_is_not_an_object_is_not_a_reference(tmp_path: object) -> None:
    path = f"{tmp_path}/list.json"
    with open(path, "w") as fh:
        fh.write("[1, 2]")
    with pytest.raises(ValueError, match="not an mlmon reference"):
        Reference.load(path)


def test_profile_validators_name_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"count must be an int >= 0 \(at most 2\*\*63 - 1\), got -1"):
        NumericProfile(
            name="x",
            rows=1,
            count=-1,
            edges=(),
            counts=(),
            min=0.0,
            max=0.0,
            mean=0.0,
            variance=0.0,
        )
    with pytest.raises(ValueError, match="name must be a non-empty str, got ''"):
        CategoricalProfile(name="", rows=1, count=1, categories=("a",), counts=(1,), other=0)
    with pytest.raises(ValueError, match="count must be <= rows"):
        CategoricalProfile(name="c", rows=1, count=2, categories=("a",), counts=(2,), other=0)


def test_reference_is_frozen(ref: Reference) -> None:
    with pytest.raises(AttributeError):
        ref.rows = 3  # type: ignore[misc]


def test_columns_profiled_on_threads_equal_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """From PARALLEL_VALUES values the numeric columns are profiled on threads: the same
    reference, and a column that fails raises what it raises one by one."""
    import threading

    from mlmon import _profiles, reference

    rng = np.random.default_rng(8)
    X = rng.normal(size=(5000, 6)) * [1, 10, 100, 1e-3, 1, 1]
    X[::7, 2] = np.nan
    X[:, 4] = 3.0  # constant
    cats = rng.choice(["a", "b", None], 5000).astype(object)
    data = {f"x{j}": X[:, j] for j in range(6)} | {"c": cats}
    threads: set[str] = set()
    presorted: set[str] = set()
    real = _profiles.NumericProfile.from_values.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, name: str, values: Any, bins: int = 10, **kw: Any) -> Any:
        threads.add(threading.current_thread().name)
        if kw.get("finite_sorted") is not None:
            presorted.add(name)
        return real(cls, name, values, bins, **kw)

    monkeypatch.setattr(_profiles.NumericProfile, "from_values", classmethod(spy))
    monkeypatch.setattr(reference, "usable_cpus", lambda limit=8: 3)
    monkeypatch.setattr(reference, "PARALLEL_VALUES", 10**12)
    alone = Reference.from_data(data)
    assert threads == {threading.main_thread().name}
    threads.clear()
    monkeypatch.setattr(reference, "PARALLEL_VALUES", 1000)
    together = Reference.from_data(data)
    assert threads and all(t.startswith("mlmon-reference") for t in threads)
    assert together.to_dict() == alone.to_dict()
    # Blocks of 2 columns a thread: sorted together when all finite (x2 has NaN: its block,
    # x2 and x3, goes column by column).
    assert presorted == {"x0", "x1", "x4", "x5"}

    bad = dict(data)
    bad["x3"] = np.array([1e300, -1e300] * 2500)  # variance overflows
    for limit in (10**12, 1000):
        monkeypatch.setattr(reference, "PARALLEL_VALUES", limit)
        with pytest.raises(ValueError, match="feature 'x3' has values too large"):
            Reference.from_data(bad)
