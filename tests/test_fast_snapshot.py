"""Sample labels: the shortcuts for zero, one or two labels give the sorted key as before."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlmon.snapshot import _labels_key, samples_from

keys = st.one_of(st.text(max_size=5), st.integers(), st.none())
vals = st.one_of(st.text(max_size=5), st.integers(), st.floats(allow_nan=True), st.none(), st.booleans())


@settings(max_examples=300)
@given(st.dictionaries(keys, vals, max_size=4))
def test_labels_key_is_the_sorted_string_pairs(labels: dict[Any, Any]) -> None:
    want = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
    assert _labels_key(labels) == want


def test_samples_from_keeps_labels_sorted_and_skips_non_finite() -> None:
    got = samples_from([("a", 1.0, {}), ("b", 2, {"z": 1, "c": "x"}), ("c", float("nan"), {"k": 1}), ("d", 3.0, {7: 8})])
    assert [(s.name, s.labels, s.value) for s in got] == [
        ("a", (), 1.0), ("b", (("c", "x"), ("z", "1")), 2.0), ("d", (("7", "8"),), 3.0),
    ]  # fmt: skip
