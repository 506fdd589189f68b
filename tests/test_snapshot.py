"""Snapshot read-outs, JSON round trip, and the catalog's naming conventions."""

from __future__ import annotations

import json
import math
import re

from mlmon.snapshot import CATALOG, Sample, Snapshot, samples_from


def snap() -> Snapshot:
    return Snapshot(
        "m",
        "v1",
        "h:1",
        1.5,
        60.0,
        samples_from(
            [
                ("mlmon_calls_total", 10, {}),
                ("mlmon_errors_total", 2, {"error_type": "ValueError"}),
                ("mlmon_errors_total", 3, {"error_type": "KeyError"}),
                ("mlmon_output_mean", math.nan, {}),
            ]
        ),
    )


def test_get_select_total() -> None:
    s = snap()
    assert s.get("mlmon_calls_total") == 10.0
    assert s.get("mlmon_errors_total", error_type="KeyError") == 3.0
    assert s.get("mlmon_errors_total") is None  # no unlabelled sample
    assert len(s.select("mlmon_errors_total", error_type="*")) == 2
    assert s.total("mlmon_errors_total") == 5.0


def test_non_finite_values_are_left_out_not_emitted() -> None:
    assert snap().get("mlmon_output_mean") is None


def test_json_round_trip() -> None:
    s = snap()
    line = s.to_json()
    assert "\n" not in line
    back = Snapshot.from_dict(json.loads(line))
    assert back.samples == s.samples
    assert (back.model, back.version, back.instance, back.timestamp) == ("m", "v1", "h:1", 1.5)


def test_sample_kind_comes_from_the_catalog() -> None:
    assert Sample.make("mlmon_calls_total", 1).kind == "counter"
    assert Sample.make("mlmon_error_ratio", 1).kind == "gauge"


def test_catalog_follows_prometheus_conventions() -> None:
    for name, info in CATALOG.items():
        assert re.fullmatch(r"mlmon_[a-z0-9_]+", name), name
        if info.kind == "counter":
            assert name.endswith(("_total", "_bucket", "_sum", "_count")), name
        else:
            assert not name.endswith("_total"), name
