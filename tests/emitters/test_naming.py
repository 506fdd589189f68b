"""Series names: sanitising, injection safety, collisions, caching, Prometheus families."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlmon.naming import (
    PathRenderer,
    PrometheusRenderer,
    check_collisions,
    check_name,
    escape_label_value,
    format_number,
    format_prometheus_value,
    le_segment,
    name_problem,
    quantile_segment,
    sanitize_segment,
    sanitize_tag_value,
    series_problem,
)
from mlmon.snapshot import CATALOG

EVIL_MODEL = "fraud model\nevil.metric 1 0"
EVIL_FEATURE = "a b;c=d"
NASTY = [
    EVIL_MODEL,
    EVIL_FEATURE,
    "x.y",
    'q"uote',
    "c:o:l|p#i@pe",
    "tab\there\r\n",
    "naïve café",
    "日本語",
    "emoji 🎉",
    "",
    "~tilde",
    "=",
    "a/b\\c",
]

SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")
PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
GRAPHITE_TAGGED = re.compile(
    r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(;[A-Za-z0-9_]+=[A-Za-z0-9_.-]+)+$"
)


@pytest.mark.parametrize("value", NASTY)
def test_segment_keeps_only_safe_characters(value: str) -> None:
    assert SEGMENT.match(sanitize_segment(value))


@pytest.mark.parametrize("value", NASTY)
def test_tag_value_keeps_only_safe_characters(value: str) -> None:
    assert TAG_VALUE.match(sanitize_tag_value(value))


def test_accents_are_folded_not_dropped() -> None:
    assert sanitize_segment("naïve café") == "naive_cafe"


def test_long_values_are_bounded_and_stay_distinct() -> None:
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    assert len(sanitize_segment(a)) < 220
    assert sanitize_segment(a) != sanitize_segment(b)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("0.5", "p50"),
        ("0.9", "p90"),
        ("0.95", "p95"),
        ("0.99", "p99"),
        ("0.999", "p99_9"),
        ("1", "p100"),
        ("0", "p0"),
    ],
)
def test_quantile_segments(q: str, expected: str) -> None:
    assert expected == quantile_segment(q)


@pytest.mark.parametrize(
    ("le", "expected"),
    [
        ("0.005", "le_0_005"),
        ("+Inf", "le_inf"),
        ("10", "le_10"),
        ("2.5e-05", "le_0_000025"),
        ("1.0", "le_1"),
    ],
)
def test_le_segments(le: str, expected: str) -> None:
    assert expected == le_segment(le)


def test_non_numeric_quantile_falls_back_to_key_value() -> None:
    r = PathRenderer()
    assert r.render("m", None, "i", "mlmon_output", (("quantile", "median"),)) == (
        "m.mlmon_output.quantile_median",
        "",
    )


def test_path_rule_prefix_model_version_instance_metric_labels() -> None:
    r = PathRenderer("ml.prod", instance_in_path=True, version_in_path=True)
    key, tail = r.render(
        "fraud", "2024-06-01", "web1.example.com:42", "mlmon_precision", (("class", "spam"),)
    )
    assert key == "ml.prod.fraud.2024-06-01.web1_example_com_42.mlmon_precision.class_spam"
    assert tail == ""


def test_path_labels_follow_sorted_label_keys() -> None:
    r = PathRenderer()
    key, _ = r.render("m", None, "i", "mlmon_x", (("b", "2"), ("a", "1")))
    assert key == "m.mlmon_x.a_1.b_2"


def test_version_and_instance_left_out_of_path_by_default() -> None:
    r = PathRenderer("ml")
    assert r.render("fraud", "v1", "h:1", "mlmon_calls_total", ()) == (
        "ml.fraud.mlmon_calls_total",
        "",
    )


def test_graphite_tags_carry_identity_and_labels_sorted() -> None:
    r = PathRenderer("ml", style="graphite_tags", instance_in_path=True)
    key, _ = r.render("fraud", "v1.2", "web1:42", "mlmon_latency_seconds_bucket", (("le", "+Inf"),))
    assert key == "ml.mlmon_latency_seconds_bucket;instance=web1_42;le=inf;model=fraud;version=v1.2"


def test_dogstatsd_tags_go_in_the_suffix() -> None:
    r = PathRenderer("ml", style="dogstatsd")
    key, tail = r.render(
        "fraud", None, "web1:42", "mlmon_feature_mean", (("feature", EVIL_FEATURE),)
    )
    assert key == "ml.mlmon_feature_mean"
    assert tail == "|#feature:a_b_c_d,model:fraud"


@pytest.mark.parametrize("style", ["path", "graphite_tags", "dogstatsd"])
def test_injection_attempts_render_safe_names(style: str) -> None:
    r = PathRenderer("ml", style=style, instance_in_path=True, version_in_path=True)  # type: ignore[arg-type]
    for value in NASTY:
        key, tail = r.render(value, value, value, "mlmon_feature_mean", (("feature", value),))
        if style == "path":
            assert PATH.match(key), key
        elif style == "graphite_tags":
            assert GRAPHITE_TAGGED.match(key), key
        else:
            assert PATH.match(key), key
            assert re.match(
                r"^\|#([A-Za-z0-9_]+:[A-Za-z0-9_.-]+)(,[A-Za-z0-9_]+:[A-Za-z0-9_.-]+)*$", tail
            )


def test_tag_named_name_is_renamed_because_graphite_reserves_it() -> None:
    r = PathRenderer(style="graphite_tags")
    key, _ = r.render("m", None, "i", "mlmon_x", (("name", "v"),))
    assert ";name_=v" in key


def test_collision_gets_a_hash_suffix_and_is_counted() -> None:
    r = PathRenderer()
    first, _ = r.render("m", None, "i", "mlmon_feature_mean", (("feature", "a b"),))
    second, _ = r.render("m", None, "i", "mlmon_feature_mean", (("feature", "a.b"),))
    assert first == "m.mlmon_feature_mean.feature_a_b"
    assert re.fullmatch(r"m\.mlmon_feature_mean\.feature_a_b_h[0-9a-f]{8}", second)
    assert r.collisions == 1


def test_collision_names_are_stable_across_renders() -> None:
    r = PathRenderer(max_cache=1)  # no cache hits: the owner table decides each time
    names = [
        r.render("m", None, "i", "mlmon_feature_mean", (("feature", v),))[0]
        for v in ["a b", "a.b", "a b", "a.b"]
    ]
    assert names[0] == names[2]
    assert names[1] == names[3]
    assert names[0] != names[1]


def test_same_value_under_two_metrics_is_no_collision() -> None:
    r = PathRenderer()
    r.render("m", None, "i", "mlmon_feature_mean", (("feature", "a b"),))
    r.render("m", None, "i", "mlmon_feature_variance", (("feature", "a b"),))
    assert r.collisions == 0


def test_caches_are_bounded() -> None:
    r = PathRenderer(max_cache=10, max_names=10)
    for i in range(100):
        r.render("m", None, "i", "mlmon_feature_mean", (("feature", f"f{i}"),))
    assert len(r._cache) <= 10
    assert len(r._owners._map) <= 10


def test_check_collisions_accepts_distinct_names() -> None:
    check_collisions(["age", "income", "Age"])


def test_check_collisions_rejects_names_that_merge() -> None:
    with pytest.raises(ValueError, match=r"'a b;c=d' and 'a_b_c_d'"):
        check_collisions([EVIL_FEATURE, "a_b_c_d"], what="feature name")


def test_check_collisions_ignores_repeats_of_one_name() -> None:
    check_collisions(["x.y", "x.y"])


@pytest.mark.parametrize("prefix", ["ml prod", "ml..x", ".ml", "ml.", "ml;x=y", "ml\n"])
def test_bad_prefix_is_rejected_at_construction(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        PathRenderer(prefix)


def test_unknown_style_is_rejected() -> None:
    with pytest.raises(ValueError, match="style"):
        PathRenderer(style="influx")  # type: ignore[arg-type]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_number_round_trips_without_exponent(x: float) -> None:
    text = format_number(x)
    assert "e" not in text and "E" not in text
    assert float(text) == x or (x == 0 and float(text) == 0)


@pytest.mark.parametrize(
    ("x", "expected"),
    [(1.0, "1"), (-5.0, "-5"), (0.1, "0.1"), (1e-07, "0.0000001"), (1e20, "100000000000000000000")],
)
def test_format_number_examples(x: float, expected: str) -> None:
    assert expected == format_number(x)


@pytest.mark.parametrize(
    ("x", "expected"),
    [(math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (3.0, "3"), (1e-07, "1e-07")],
)
def test_format_prometheus_value(x: float, expected: str) -> None:
    assert expected == format_prometheus_value(x)


def test_escape_label_value_escapes_backslash_quote_newline() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def _catalog_labels(name: str) -> tuple[tuple[str, str], ...]:
    info = CATALOG[name]
    return tuple((k, "0.5" if k in ("quantile", "le") else "x") for k in info.labels[:1])


def test_every_catalog_name_maps_to_one_family_of_one_type() -> None:
    r = PrometheusRenderer()
    types: dict[str, str] = {}
    for name in CATALOG:
        fam, type_, sample = r.family(name, _catalog_labels(name))
        assert types.setdefault(fam, type_) == type_, (name, fam)
        assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", sample)
        assert sample.startswith(fam)
    # A gauge must not end like a histogram or summary series (promtool rejects it).
    for fam, type_ in types.items():
        if type_ in ("gauge", "counter"):
            assert not fam.endswith(("_count", "_sum", "_bucket")), fam


def test_prometheus_family_renames_are_documented_ones() -> None:
    r = PrometheusRenderer()
    assert r.family("mlmon_latency_seconds", (("quantile", "0.5"),)) == (
        "mlmon_latency_window_seconds",
        "summary",
        "mlmon_latency_window_seconds",
    )
    assert r.family("mlmon_output_count", ()) == (
        "mlmon_output_values",
        "gauge",
        "mlmon_output_values",
    )
    assert r.family("mlmon_output", (("quantile", "0.5"),)) == (
        "mlmon_output",
        "summary",
        "mlmon_output",
    )
    assert r.family("mlmon_calls_total", ()) == (
        "mlmon_calls_total",
        "counter",
        "mlmon_calls_total",
    )


def test_prometheus_labels_identity_first_and_version_omitted_when_none() -> None:
    r = PrometheusRenderer()
    assert (
        r.labels("m", None, "h:1", (("feature", "x"),)) == '{model="m",instance="h:1",feature="x"}'
    )
    assert r.labels("m", "v", "h:1", ()) == '{model="m",version="v",instance="h:1"}'


def test_prometheus_label_clashing_with_identity_is_renamed() -> None:
    r = PrometheusRenderer()
    assert (
        r.labels("m", None, "i", (("model", "x"),)) == '{model="m",instance="i",exported_model="x"}'
    )


# -- names no backend can carry ---------------------------------------------------------------

UNENCODABLE = ["\ud800", "ok\udfffok", "a\x00b", "x" * 1025]


@pytest.mark.parametrize("name", UNENCODABLE)
def test_check_collisions_rejects_names_that_cannot_be_encoded(name: str) -> None:
    with pytest.raises(ValueError, match=r"^feature name '"):
        check_collisions(["age", name], what="feature name")


@pytest.mark.parametrize("name", ["new\nline", "tab\there", "âge", "名前", "x" * 1024, 'q"uote'])
def test_check_name_accepts_what_renderers_escape(name: str) -> None:
    check_name(name, what="feature name")
    assert name_problem(name) is None
    assert not series_problem("mlmon_feature_mean", (("feature", name),), 1.0)


def test_check_name_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"unpaired surrogate at index 2"):
        check_name("ab\ud800", what="class label")
    with pytest.raises(ValueError, match="contains NUL"):
        check_name("a\x00", what="class label")
    with pytest.raises(ValueError, match="longer than 1024"):
        check_name("y" * 2000, what="class label")
    with pytest.raises(ValueError, match="not a string"):
        check_name(3, what="class label")


def test_series_problem_flags_names_labels_and_values() -> None:
    assert series_problem("mlmon_x\x00", (), 1.0)
    assert series_problem("mlmon_x", (("k\ud800", "v"),), 1.0)
    assert series_problem("mlmon_x", (("k", "v"),), "1")
    assert not series_problem("mlmon_x", (("k", "v"),), math.nan)
    assert not series_problem("mlmon_x", (("k", "v"),), math.inf)


@given(st.text(max_size=40))
def test_every_label_value_is_either_flagged_or_renders_as_utf8(value: str) -> None:
    from mlmon.emitters.prometheus import render_exposition
    from mlmon.snapshot import Sample, Snapshot

    snap = Snapshot(
        "m",
        None,
        "i",
        0.0,
        1.0,
        (Sample.make("mlmon_feature_mean", 1.0, feature=value), Sample.make("mlmon_up", 1)),
    )
    text = render_exposition([snap])
    text.encode("utf-8")  # never raises: a bad series is left out
    assert "mlmon_up{" in text
    assert ("mlmon_feature_mean{" in text) != series_problem(
        "mlmon_feature_mean", (("feature", value),), 1.0
    )
