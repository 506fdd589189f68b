"""``python -m mlmon report`` on hostile JSON-lines logs: every bad line is skipped and counted,
the good lines around it still make the report, and nothing reaches the page raw."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmon import report
from mlmon.snapshot import LineError, NewerFormat, parse_line

START = 1_700_000_000.0
GOOD_VALUES = (3.0, 7.5, 1.25)
# Control characters (tab, newline, carriage return aside) and lone surrogates: none may be in a page.
RAW_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def line(**fields: Any) -> str:
    obj: dict[str, Any] = {"mlmon": 1, "model": "m", "version": None, "instance": "h:1",
                           "timestamp": START + 5, "window": 60.0, "samples": [], "alerts": []}  # fmt: skip
    obj.update(fields)
    return json.dumps(obj, allow_nan=True)


def sample(value: Any, name: str = "mlmon_calls_per_second", **labels: Any) -> list[Any]:
    return [name, labels, value]


def good_lines() -> list[str]:
    """Three lines with ``mlmon_rows_per_second``, a metric no hostile line has."""
    return [line(timestamp=START + 10 * i, samples=[sample(v, "mlmon_rows_per_second")]) for i, v in enumerate(GOOD_VALUES)]


def drawn_values(page: str) -> list[float]:
    """The values of the rows/s chart's polylines (only good lines have that metric), mapped
    back from pixels through the chart's plot box and data domain."""
    m = re.search(r'<svg [^>]*data-chart="rows"[^>]*>.*?</svg>', page, flags=re.S)
    assert m, "no rows chart: the good lines are not drawn"
    svg = m.group(0)
    head = svg[: svg.index(">")]

    def attr(name: str) -> list[float]:
        found = re.search(rf'{name}="([^"]*)"', head)
        assert found, name
        return [float(x) for x in found.group(1).split()]

    _, top, _, height = attr("data-plot")
    y0, y1 = attr("data-y-domain")
    values = []
    for pts in re.findall(r'<polyline points="([^"]*)"', svg):
        for p in pts.split():
            py = float(p.split(",")[1])
            values.append(y0 + (top + height - py) / height * (y1 - y0))
    return values


def shows_good_values(page: str) -> bool:
    drawn = drawn_values(page)
    return all(any(abs(d - v) <= 0.05 for d in drawn) for v in GOOD_VALUES)


def check_page(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    found = RAW_CONTROL.search(page)
    assert found is None, f"raw control character {found.group(0)!r} in the page"
    page.encode("utf-8")  # no lone surrogate: the page can be written


DEEP = 100_000
HUGE_INT = "1" + "0" * 400
LONG = "x" * 100_000
CONTROL = "\x00\x1b[31m\x07\x7f\x9b"

# (id, line, outcome): "malformed" (skipped, counted), "newer" (skipped, counted as newer),
# "other" (a valid line of another model: counted, not drawn), "kept" (a valid line of the model).
HOSTILE: list[tuple[str, str, str]] = [
    ("deep-list", "[" * DEEP + "]" * DEEP, "malformed"),
    ("deep-object", '{"a":' * DEEP + "1" + "}" * DEEP, "malformed"),
    ("deep-unclosed", "[" * DEEP, "malformed"),
    ("deep-label-value", line(samples=[["mlmon_calls_per_second", {"k": json.loads("[" * 500 + "]" * 500)}, 1.0]]), "malformed"),
    ("deep-samples", line(samples=json.loads("[" * 900 + "]" * 900)), "malformed"),
    ("timestamp-1e300", line(timestamp=1e300), "malformed"),
    ("timestamp-minus-1e300", line(timestamp=-1e300), "malformed"),
    ("timestamp-negative", line(timestamp=-86400.0 * 365 * 5000), "malformed"),
    ("timestamp-nan", line(timestamp=float("nan")), "malformed"),
    ("timestamp-inf", line(timestamp=float("inf")), "malformed"),
    ("timestamp-huge-int", line(samples=[]).replace(f'"timestamp": {START + 5}', f'"timestamp": {HUGE_INT}'), "malformed"),
    ("timestamp-string", line(timestamp="1700000000"), "malformed"),
    ("timestamp-bool", line(timestamp=True), "malformed"),
    ("timestamp-after-9999", line(timestamp=253402300800.0), "malformed"),
    ("timestamp-1970", line(timestamp=0.0, samples=[sample(2.0)]), "kept"),
    ("timestamp-9999", line(timestamp=253402300799.0, samples=[sample(2.0)]), "kept"),
    ("value-nan", line(samples=[sample(float("nan"))]), "kept"),
    ("value-inf", line(samples=[sample(float("-inf")), sample(float("inf"), "mlmon_error_ratio")]), "kept"),
    ("value-1e308", line(samples=[sample(1e308, "mlmon_process_resident_memory_bytes"), sample(-1e308, "mlmon_output_mean")]), "kept"),
    ("value-extremes-one-chart", line(samples=[sample(1e308, "mlmon_output", quantile="0.5"), sample(-1e308, "mlmon_output_mean"),
                                               sample(1e-300, "mlmon_latency_seconds", quantile="0.5"), sample(1e300, "mlmon_latency_seconds", quantile="1")]), "kept"),
    ("value-subnormal", line(samples=[sample(5e-324, "mlmon_latency_seconds", quantile="0.99")]), "kept"),
    ("value-huge-int", line(samples=[]).replace('"samples": []', f'"samples": [["mlmon_calls_per_second", {{}}, {HUGE_INT}]]'), "malformed"),
    ("value-string", line(samples=[sample("fast")]), "malformed"),
    ("value-bool", line(samples=[sample(True)]), "malformed"),
    ("value-object", line(samples=[sample({"v": 1})]), "malformed"),
    ("samples-object", line(samples={"a": 1}), "malformed"),
    ("sample-two-items", line(samples=[["mlmon_calls_per_second", {}]]), "malformed"),
    ("sample-labels-list", line(samples=[["mlmon_calls_per_second", [], 1.0]]), "malformed"),
    ("sample-name-number", line(samples=[[7, {}, 1.0]]), "malformed"),
    ("model-long", line(model=LONG), "malformed"),
    ("label-long", line(samples=[sample(0.1, "mlmon_feature_missing_ratio", feature=LONG)]), "malformed"),
    ("model-number", line(model=5), "malformed"),
    ("model-empty", line(model=""), "malformed"),
    ("instance-list", line(instance=["h"]), "malformed"),
    ("version-number", line(version=5), "malformed"),
    ("window-negative", line(window=-5), "malformed"),
    ("window-string", line(window="60"), "malformed"),
    ("alerts-string", line(alerts="firing"), "malformed"),
    ("format-float", line(mlmon=1.0), "malformed"),
    ("format-bool", line(mlmon=True), "malformed"),
    ("format-zero", line(mlmon=0), "malformed"),
    ("format-huge", line(mlmon=10**30), "newer"),
    ("not-an-object", '"hello"', "malformed"),
    ("empty-object", "{}", "malformed"),
    ("truncated", line(samples=[sample(1.0)])[:-7], "malformed"),
    ("garbage", "\x00\x01\x02 not json \x1b[2J", "malformed"),
    ("model-control", line(model="m" + CONTROL), "other"),
    ("model-surrogate", line(model="m\ud800"), "other"),
    ("instance-control", line(instance="h" + CONTROL, samples=[sample(4.0)]), "kept"),
    ("version-control", line(version="v" + CONTROL), "kept"),
    ("labels-control", line(samples=[
        sample(0.3, "mlmon_feature_drift_psi", feature="f" + CONTROL),
        sample(0.2, "mlmon_feature_missing_ratio", feature="f\ud800"),
        sample(1.0, "mlmon_errors_total", error_type="E" + CONTROL),
        sample(0.5, "mlmon_output_class_ratio", **{"class": "<c" + CONTROL + ">"}),
        sample(1.0, "mlmon_alert_firing", rule="r" + CONTROL),
    ]), "kept"),
    ("alerts-hostile", line(alerts=[
        {"rule": "r" + CONTROL, "state": "firing", "message": "boom" + CONTROL + "y" * 20_000,
         "labels": {"feature": "f" + CONTROL, "deep": json.loads("[" * 300 + "]" * 300)}, "severity": ["x"]},
        {"rule": json.loads("[" * 300 + "]" * 300), "state": "firing"},
        {"rule": "s", "state": {"x": 1}},
        "not an alert", None, 5,
    ]), "kept"),
    ("label-values-scalar", line(samples=[sample(0.1, "mlmon_feature_missing_ratio", feature=1.5),
                                          sample(0.1, "mlmon_feature_missing_ratio", feature=True)]), "kept"),
    ("unknown-metric", line(samples=[sample(1.0, "z" * 1000)]), "kept"),
]


@pytest.mark.parametrize(("hostile", "outcome"), [pytest.param(h, o, id=i) for i, h, o in HOSTILE])
def test_a_hostile_line_is_skipped_and_counted_and_the_good_lines_still_show(hostile: str, outcome: str) -> None:
    good = good_lines()
    page, info = report.build([good[0], hostile, good[1], good[2]])
    check_page(page)
    assert (outcome == "malformed") == (info.malformed == 1)
    assert (outcome == "newer") == (info.newer == 1)
    assert 3 + (outcome == "kept") == info.snapshots
    if outcome == "other":
        assert 2 == len(info.models) and "This log also holds other models" in page
    if outcome == "malformed":
        assert "Skipped 1 malformed line" in page and "(line 2)" in page
    assert shows_good_values(page), drawn_values(page)


def test_every_hostile_line_at_once_through_the_command_line(tmp_path: Path) -> None:
    log = tmp_path / "hostile.jsonl"
    good = good_lines()
    with open(log, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(good[0] + "\n")
        for _, hostile, _ in HOSTILE:
            f.write(hostile + "\n")
        f.write(good[1] + "\n" + good[2] + "\n")
    with open(log, "ab") as fb:
        fb.write(b'{"mlmon": 1, "model": "m", "bad utf-8": "\xff\xfe\xc3", "timestamp": 1}\n')
        fb.write(b"\x00" * 1000 + b"\n")
    proc = subprocess.run([sys.executable, "-m", "mlmon", "report", str(log), "-o", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    assert "Traceback" not in proc.stderr
    malformed = sum(1 for _, _, o in HOSTILE if o == "malformed") + 2
    assert f"skipped {malformed} malformed lines" in proc.stdout
    assert RAW_CONTROL.search(proc.stdout + proc.stderr) is None  # no terminal escapes either
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    check_page(page)
    assert shows_good_values(page), drawn_values(page)


def test_an_overlong_line_is_one_malformed_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlmon.report import _log

    monkeypatch.setattr(_log, "MAX_LINE_BYTES", 1000)
    good = good_lines()
    log = tmp_path / "long.jsonl"
    log.write_text(good[0] + "\n" + line(model="m" * 5000) + "\n" + good[1] + "\n" + good[2] + "\n")
    _, info = report.build(log)
    assert (1, 3) == (info.malformed, info.snapshots)


def test_many_distinct_label_values_keep_the_page_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlmon.report import _log

    monkeypatch.setattr(_log, "MAX_SERIES", 500)
    lines = good_lines()
    for i in range(200):
        lines.append(line(timestamp=START + 30 + i, samples=[
            sample(0.01 * (j % 50), "mlmon_feature_drift_psi", feature=f"f{i}-{j}") for j in range(10)
        ] + [sample(1.0, "mlmon_alert_firing", rule=f"rule{i}")]))  # fmt: skip
    page, info = report.build(lines)
    check_page(page)
    assert 203 == info.snapshots
    assert "Dropped 1," in page and "series beyond the first 500" in page
    assert page.count('class="heat-row"') <= 40
    assert len(page) < 1_500_000


# ------------------------------------------------------------------------------ properties

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
CHARTED = (
    "mlmon_calls_per_second", "mlmon_calls_total", "mlmon_errors_total", "mlmon_latency_seconds",
    "mlmon_feature_drift_psi", "mlmon_feature_drift_status", "mlmon_output_drift_psi", "mlmon_alert_firing",
    "mlmon_precision", "mlmon_output", "mlmon_output_class_ratio", "mlmon_process_cpu_percent", "x",
)  # fmt: skip
FIELDS = ("mlmon", "model", "version", "instance", "timestamp", "window", "samples", "alerts")


@st.composite
def hostile_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["json", "text", "field", "sample"]))
    if kind == "json":  # any JSON value at all
        return json.dumps(draw(JSON_VALUES), allow_nan=True)
    if kind == "text":  # any text, newlines aside (the caller splits lines)
        return draw(st.text(max_size=200)).replace("\n", " ").replace("\r", " ")
    if kind == "field":  # a valid line with one field replaced (or removed)
        obj = json.loads(line(samples=[sample(2.0)]))
        field = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            obj[field] = draw(JSON_VALUES)
        else:
            obj.pop(field)
        return json.dumps(obj, allow_nan=True)
    names = st.sampled_from(CHARTED)
    labels = st.dictionaries(st.sampled_from(["feature", "quantile", "rule", "class", "error_type"]) | st.text(max_size=10),
                             st.text() | JSON_VALUES, max_size=3)  # fmt: skip
    values = st.floats() | st.integers() | JSON_VALUES
    samples = st.lists(st.tuples(names, labels, values).map(list), max_size=5)
    alerts = st.lists(st.dictionaries(st.sampled_from(["rule", "state", "labels", "message", "severity"]),
                                      st.sampled_from(["firing", "pending"]) | JSON_VALUES), max_size=3) | JSON_VALUES  # fmt: skip
    t = draw(st.sampled_from([START + 1, START + 15, START + 25]) | st.floats() | st.integers())
    return line(timestamp=t, samples=draw(samples), alerts=draw(alerts))


def expected_outcome(text: str) -> str:
    if not text.strip():
        return "blank"
    try:
        rec = parse_line(text.strip())
    except NewerFormat:
        return "newer"
    except LineError:
        return "malformed"
    return "kept" if rec.model == "m" else "other"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_lines(), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_any_hostile_lines_never_raise_and_are_counted(hostile: list[str], rnd: Any) -> None:
    good = good_lines()
    rest = good[1:] + hostile
    rnd.shuffle(rest)
    lines = [good[0], *rest]  # the first line is a good one: the report is about model "m"
    page, info = report.build(lines)
    check_page(page)
    outcomes = [expected_outcome(h) for h in hostile]
    assert outcomes.count("malformed") == info.malformed
    assert outcomes.count("newer") == info.newer
    # Every good line is kept, and every valid hostile line of model "m" too (less duplicates).
    assert 3 + outcomes.count("kept") == info.snapshots + info.duplicates
    assert shows_good_values(page), drawn_values(page)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_any_text_line_never_raises(text: str) -> None:
    good = good_lines()
    page, info = report.build([good[0], *text.splitlines(), good[1], good[2]])
    check_page(page)
    assert info.snapshots >= 3


def test_alerts_on_ever_new_labels_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlmon.report import _page

    monkeypatch.setattr(_page, "MAX_ALERT_ROWS", 100)
    lines = good_lines()
    for i in range(300):
        event = {"rule": "drift", "state": "firing", "labels": {"feature": f"f{i}"}, "message": f"m{i}"}
        lines.append(line(timestamp=START + 30 + i, alerts=[event]))
    page, info = report.build(lines)
    check_page(page)
    assert 303 == info.snapshots
    assert "Ignored 200 alert events of alert instances beyond the first 100" in page
    assert 60 == page.count('class="timeline-row"')
    assert "more alert rows not drawn (at most 60)" in page


def test_lines_that_are_bytes_or_not_text(tmp_path: Path) -> None:
    good = good_lines()
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(good) + "\n")
    with open(path, "rb") as f:  # a file opened in binary mode works like a path
        assert 3 == report.build(f)[1].snapshots
    page, info = report.build([good[0], None, 42, b"\xff\xfe", good[1], good[2]])  # type: ignore[list-item]
    check_page(page)
    assert (3, 3) == (info.snapshots, info.malformed)
    assert "not a line of text: 2" in page
