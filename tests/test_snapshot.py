"""Snapshot read-outs, JSON round trip, and the catalog's naming conventions."""

from __future__ import annotations

import json
import math
import re

import pytest

from mlmon.snapshot import (
    _HINTED,
    CATALOG,
    FORMAT_VERSION,
    LineError,
    NewerFormat,
    Sample,
    Snapshot,
    parse_line,
    samples_from,
)


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
    _HINTED.discard("mlmon_errors_total")  # the hint is given once per process
    with pytest.warns(UserWarning, match="error_type="):  # no unlabelled sample: a hint, once
        assert s.get("mlmon_errors_total") is None
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


def test_the_written_line_is_what_the_reader_reads() -> None:
    s = Snapshot("m", None, "h:1", 2.0, 60.0, (Sample.make("mlmon_output_mean", math.inf),
                                               Sample.make("mlmon_errors_total", 1, error_type="E")))  # fmt: skip
    line = s.to_json()
    assert FORMAT_VERSION == json.loads(line)["mlmon"]
    rec = parse_line(line)
    assert (rec.model, rec.version, rec.instance, rec.timestamp, rec.window) == ("m", None, "h:1", 2.0, 60.0)
    assert (("mlmon_output_mean", (), None), ("mlmon_errors_total", (("error_type", "E"),), 1.0)) == rec.samples
    back = Snapshot.from_dict(json.loads(line))
    assert math.isnan(back.samples[0].value) and back.samples[1] == s.samples[1]


def test_from_dict_reads_a_dict_without_the_format_field() -> None:
    snap = Snapshot.from_dict({"model": "m", "timestamp": 1, "samples": [["x", {"k": "v"}, 2]]})
    assert ("m", "", 1.0, (Sample("x", (("k", "v"),), 2.0),)) == (snap.model, snap.instance, snap.timestamp, snap.samples)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"mlmon": 1, "model": "m", "timestamp": 1e300, "samples": []}, "bad 'timestamp' (not a time between 1970 and 9999)"),
        ({"mlmon": 1, "model": "", "timestamp": 1, "samples": []}, "bad or missing 'model'"),
        ({"mlmon": 1, "model": "m", "timestamp": 1}, "bad or missing 'samples'"),
        ({"mlmon": 1, "model": "m", "timestamp": 1, "samples": [["x", {}, "1"]]}, "bad sample value"),
        ({"mlmon": 1, "model": "m", "timestamp": 1, "samples": [["x", {"k": ["v"]}, 1]]}, "bad sample label"),
        ({"mlmon": 1, "model": "m" * 2000, "timestamp": 1, "samples": []}, "'model' longer than 1024 characters"),
        ({"mlmon": "1", "model": "m", "timestamp": 1, "samples": []}, "no mlmon format version"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_from_dict_names_what_is_wrong(data: object, reason: str) -> None:
    with pytest.raises(LineError) as exc:
        Snapshot.from_dict(data)  # type: ignore[arg-type]
    assert reason == exc.value.reason == str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_a_newer_format_is_refused_with_its_version() -> None:
    with pytest.raises(NewerFormat) as exc:
        Snapshot.from_dict({"mlmon": 2, "model": "m"})
    assert 2 == exc.value.version


@pytest.mark.parametrize("text", ["[" * 100_000, "{oops", '{"mlmon": 1, "model": "m", "timestamp": ' + "9" * 5000 + "}"])
def test_parse_line_turns_any_failure_into_a_line_error(text: str) -> None:
    with pytest.raises(LineError):
        parse_line(text)


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
