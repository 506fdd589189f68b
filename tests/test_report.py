"""``python -m mlmon report``: the HTML report of a JsonlEmitter log."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlmon
from mlmon import report
from mlmon.alerts import AlertEngine, Threshold
from mlmon.emitters import JsonlEmitter
from mlmon.report._format import esc
from mlmon.snapshot import Snapshot
from mlmon.testing import FakeClock

START = 1_700_000_000.0
SCRIPT = "<script>alert(1)</script>"
FEATURES = ["age", "income", SCRIPT]
INSTANCES = ("web-1:101", "web-2:102")
STEPS = 30
CALLS_PER_STEP = 6


class AlertingJsonl:
    """Evaluates rules on each snapshot, then writes it: what a monitor with ``rules=`` emits."""

    name = "jsonl"

    def __init__(self, engine: AlertEngine, inner: JsonlEmitter) -> None:
        self.engine, self.inner = engine, inner

    def emit(self, snapshot: Snapshot) -> None:
        self.inner.emit(self.engine.evaluate(snapshot))

    def close(self) -> None:
        self.inner.close()


def simulate(path: Path, instances: Sequence[str] = INSTANCES, steps: int = STEPS, model: str = "fraud") -> None:
    """A served model over simulated time: an error burst, a slowdown, drift, labels, outcomes.

    Each instance is its own monitor (its own process, in real life) appending to ``path``, one
    after the other, so the file holds the instances' lines out of time order.
    """
    for k, instance in enumerate(instances):
        serve(path, instance, FakeClock(start=START + 0.5 * k), np.random.default_rng(k), steps, model)


def serve(path: Path, instance: str, clock: FakeClock, rng: np.random.Generator, steps: int, model: str) -> None:
    weights = np.array([0.8, -0.5, 1.2])
    train = rng.normal(0, 1, (3000, 3))
    reference = mlmon.Reference.from_data(train, feature_names=FEATURES, outputs=1 / (1 + np.exp(-train @ weights)))
    engine = AlertEngine(
        [
            Threshold("mlmon_error_ratio", above=0.05, min_samples=0, resolve_after=0,
                      name="errors_high", severity="critical"),
            Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.25, min_samples=0,
                      for_=15, resolve_after=0, name="feature_drift"),
        ],
        sinks=[],
    )  # fmt: skip
    mon = mlmon.Monitor(
        model, version="2", task=mlmon.BinaryClassification(threshold=0.5), reference=reference,
        window=60.0, flush_interval=60.0, latency_budget=0.05, clock=clock, instance=instance,
        emitters=[AlertingJsonl(engine, JsonlEmitter(path))],
    )  # fmt: skip
    state = {"slow": 0.0, "fail": False}

    @mon.track(features="X", ids="ids")
    def predict(X: np.ndarray, ids: list[int]) -> np.ndarray:
        clock.advance(0.01 + state["slow"])
        if state["fail"]:
            raise ValueError("bad request")
        return np.asarray(1 / (1 + np.exp(-np.nan_to_num(X) @ weights)))

    pending: list[tuple[list[int], np.ndarray]] = []
    next_id = 0
    for step in range(steps):
        state["slow"] = 0.08 if 8 <= step < 12 else 0.0
        for call in range(CALLS_PER_STEP):
            X = rng.normal(0, 1, (20, 3))
            if step >= 15:
                X[:, 2] += 2.0  # the feature with the awkward name drifts
            X[rng.random(20) < 0.1, 0] = np.nan
            ids = list(range(next_id, next_id + 20))
            next_id += 20
            state["fail"] = 18 <= step < 22 and call % 2 == 0
            try:
                scores = predict(X, ids)
            except ValueError:
                continue
            pending.append((ids, (rng.random(20) < scores).astype(int)))
        for ids, labels in pending:
            mon.log_feedback(ids, labels)
        mon.log_outcome("click", ids=pending[0][0][:5] if pending else None)
        pending.clear()
        clock.advance(10.0 - 0.01 * CALLS_PER_STEP)
        mon.flush()
    mon.close()


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "metrics.jsonl"
    simulate(path)
    return path


@pytest.fixture(scope="module")
def page(log_path: Path) -> str:
    return report.render(log_path)


def line(t: float, samples: Sequence[Any] = (), *, model: str = "m", instance: str = "h:1", **extra: Any) -> str:
    """One JSONL line as JsonlEmitter writes it."""
    obj = {"mlmon": 1, "model": model, "version": None, "instance": instance, "timestamp": t,
           "window": 60.0, "samples": [list(s) for s in samples], "alerts": []}  # fmt: skip
    obj.update(extra)
    return json.dumps(obj)


def calls_line(t: float, value: float, **kw: Any) -> str:
    return line(t, [("mlmon_calls_per_second", {}, value)], **kw)


def svg_of(page: str, chart: str) -> str:
    m = re.search(rf'<svg [^>]*data-chart="{re.escape(chart)}"[^>]*>.*?</svg>', page, flags=re.S)
    assert m, f"no chart {chart!r}"
    return m.group(0)


class Svg:
    """A line chart parsed back from the page: its plot box, data domains and series."""

    def __init__(self, page: str, chart: str) -> None:
        self.text = svg_of(page, chart)
        head = self.text[: self.text.index(">")]

        def attr(name: str) -> list[float]:
            found = re.search(rf'{name}="([^"]*)"', head)
            assert found, name
            return [float(x) for x in found.group(1).split()]

        self.left, self.top, self.width, self.height = attr("data-plot")
        self.x0, self.x1 = attr("data-x-domain")
        self.y0, self.y1 = attr("data-y-domain")

    def series(self) -> dict[str, list[list[tuple[float, float]]]]:
        """Legend name -> polylines, each a list of (time, value) mapped back from pixels."""
        out: dict[str, list[list[tuple[float, float]]]] = {}
        for m in re.finditer(r'<g class="series" data-series="([^"]*)"[^>]*>(.*?)</g>', self.text, flags=re.S):
            lines = []
            for pts in re.findall(r'<polyline points="([^"]*)"', m.group(2)):
                lines.append([self.data(*map(float, p.split(","))) for p in pts.split()])
            out[m.group(1)] = lines
        return out

    def data(self, px: float, py: float) -> tuple[float, float]:
        t = self.x0 + (px - self.left) / self.width * (self.x1 - self.x0)
        v = self.y0 + (self.top + self.height - py) / self.height * (self.y1 - self.y0)
        return t, v


class Tags(HTMLParser):
    """Every start tag and attribute of a page, as a browser's tokenizer sees them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


# ------------------------------------------------------------------------ a demo-like log


def test_a_demo_like_log_gets_every_section(log_path: Path) -> None:
    page, info = report.build(log_path)
    assert ("alerts", "service", "resources", "outputs", "quality", "features", "drift", "outcomes") == info.sections
    assert () == info.omitted
    for section in info.sections:
        assert f'data-section="{section}"' in page
    assert 'data-empty="1"' not in page


def test_each_section_draws_its_charts(page: str) -> None:
    charts = set(re.findall(r'<svg [^>]*data-chart="([^"]+)"', page))
    expected = {
        "calls", "rows", "error-ratio", "availability", "latency", "errors-by-type", "slow", "inflight",
        "cpu", "rss", "threads-fds", "output-quantiles", "output-variance", "class-ratio", "output-psi",
        "quality", "estimated", "label-coverage", "label-delay", "labels-rate", "missing", "out-of-range",
        "drift-heatmap", "alert-timeline", "outcome-rate",
    }  # fmt: skip
    assert expected <= charts


def test_summary_cards_count_every_call_and_error_across_instances(page: str, log_path: Path) -> None:
    failed_per_instance = 4 * CALLS_PER_STEP // 2  # steps 18-21, every other call
    calls = len(INSTANCES) * STEPS * CALLS_PER_STEP
    cards = dict(re.findall(r'<div class="label">([^<]*)</div><div class="value">([^<]*)</div>', page))
    assert str(calls) == cards["Calls"]
    assert str(len(INSTANCES) * failed_per_instance) == cards["Errors"]
    assert str(len(INSTANCES) * (STEPS + 1)) == cards["Snapshots"]  # a flush per step, one at close


def test_each_instance_gets_its_own_series(page: str) -> None:
    names = set(Svg(page, "latency").series())
    assert {f"{q} · {i}" for q in ("p50", "p90", "p99", "max") for i in INSTANCES} == names


def test_quality_chart_pairs_estimated_with_realized(page: str) -> None:
    svg = Svg(page, "estimated")
    assert {"precision · web-1:101", "estimated precision · web-1:101"} <= set(svg.series())
    assert 'stroke-dasharray="6 4"' in svg.text  # estimates are dashed


def test_the_alert_timeline_shows_when_each_rule_fired(page: str) -> None:
    svg = svg_of(page, "alert-timeline")
    rows = re.findall(r'data-row="([^"]*)"', svg)
    assert "errors_high · web-1:101" in rows
    assert any(r.startswith("feature_drift{feature=&lt;script&gt;") for r in rows)
    spans = re.findall(r'data-state="(\w+)" data-start="([\d.]+)" data-end="([\d.]+)"', svg)
    states = {s for s, _, _ in spans}
    assert {"firing", "pending"} <= states
    # errors_high fires from the first flush of the error burst (step 18) to the first after it
    first = min(float(a) for s, a, _ in spans if s == "firing")
    assert START + 10 * 16 <= first <= START + 10 * 20
    assert "still at the end" in page  # the drift never resolves


def test_the_drift_heat_map_colours_the_drifting_feature(page: str) -> None:
    svg = svg_of(page, "drift-heatmap")
    rows = dict(re.findall(r'<g class="heat-row" data-row="([^"]*)">(.*?)</g>', svg, flags=re.S))
    drifting = rows[f"{esc(SCRIPT)} · web-1:101"]
    steady = rows["age · web-1:101"]
    values = [float(v) for v in re.findall(r'data-value="([^"]+)"', drifting)]
    assert max(values) > 0.25
    assert max(float(v) for v in re.findall(r'data-value="([^"]+)"', steady)) < 0.1
    assert "≥ 0.5" in svg and "PSI" in svg  # the legend


# ------------------------------------------------------------------------ instances and models


def test_instance_filter_shows_one_instance_and_says_so(log_path: Path) -> None:
    page, info = report.build(log_path, instance="web-2:102")
    assert ("web-2:102",) == info.instances
    assert {"p50", "p90", "p99", "max"} == set(Svg(page, "latency").series())
    assert "hidden by --instance: web-1:101" in page


def test_an_unknown_instance_is_an_error_listing_the_instances(log_path: Path) -> None:
    with pytest.raises(report.ReportError, match="instances there: web-1:101, web-2:102"):
        report.render(log_path, instance="nope:1")


def test_the_first_model_is_the_default_and_the_others_are_listed() -> None:
    lines = [calls_line(START, 1, model="a"), calls_line(START, 2, model="b"), calls_line(START + 10, 3, model="b")]
    page, info = report.build(lines)
    assert "a" == info.model and ("a", "b") == info.models
    assert "other models: b (2 snapshots). Pick one with --model NAME." in page
    _, info_b = report.build(lines, model="b")
    assert 2 == info_b.snapshots


def test_an_unknown_model_is_an_error_listing_the_models() -> None:
    with pytest.raises(report.ReportError, match="models there: a"):
        report.render([calls_line(START, 1, model="a")], model="zzz")


# ------------------------------------------------------------------------ robustness


def test_malformed_lines_are_skipped_counted_and_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = [calls_line(START + 10 * i, i) for i in range(4)]
    bad = [
        '{"mlmon": 1, "model": "m", "timestamp": 17',  # truncated
        "not json at all",
        "[1, 2, 3]",
        line(START, [("mlmon_calls_per_second", {}, "fast")]),
        json.dumps({"model": "m", "timestamp": START, "samples": []}),  # no version
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join([good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3], bad[4], good[3]]) + "\n")
    assert 0 == report.main([str(path), "-o", str(tmp_path / "r.html")])
    page = (tmp_path / "r.html").read_text()
    assert "Skipped 5 malformed lines" in page
    assert "not valid JSON (truncated?): 2 (lines 2, 4)" in page
    err = capsys.readouterr()
    assert "skipped 5 malformed lines" in err.out
    assert "Skipped 5 malformed lines" in err.err
    assert 4 == len(Svg(page, "calls").series()["calls/s"][0])


def test_a_line_cut_off_by_a_crash_is_skipped(log_path: Path, tmp_path: Path) -> None:
    text = log_path.read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(text[: len(text) - 500])  # mid-line, maybe mid-UTF-8 sequence
    _, info = report.build(cut)
    assert 1 == info.malformed
    assert len(INSTANCES) * (STEPS + 1) - 1 == info.snapshots


def test_an_empty_file_exits_1_with_a_message_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    assert 1 == report.main([str(path)])
    assert "empty.jsonl is empty: no snapshots to report on" in capsys.readouterr().err
    assert not (tmp_path / "empty.html").exists()
    assert [] == [p.name for p in tmp_path.iterdir() if p.name != "empty.jsonl"]


def test_a_file_of_only_garbage_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("hello\nworld\n")
    assert 1 == report.main([str(path)])
    assert "no valid mlmon snapshot: 2 malformed lines (line 1: not valid JSON" in capsys.readouterr().err


def test_a_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 == report.main([str(tmp_path / "nope.jsonl")])
    assert "nope.jsonl" in capsys.readouterr().err


def test_lines_of_a_newer_format_are_skipped_and_the_version_named() -> None:
    newer = json.dumps({"mlmon": 2, "model": "m", "something": "else"})
    page, info = report.build([calls_line(START, 1), newer, newer, calls_line(START + 10, 2)])
    assert (2, (2,), 2) == (info.newer, info.newer_versions, info.snapshots)
    assert "Skipped 2 lines written by a newer mlmon (format version 2); this mlmon reads format version 1." in page


def test_a_log_of_only_a_newer_format_is_refused_naming_the_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "future.jsonl"
    path.write_text(json.dumps({"mlmon": 3, "model": "m"}) + "\n")
    assert 1 == report.main([str(path)])
    assert "written by a newer mlmon (format version 3); this mlmon reads format version 1" in capsys.readouterr().err


def test_a_line_seen_twice_counts_once() -> None:
    lines = [calls_line(START, 1), calls_line(START + 10, 2)]
    _, info = report.build(lines + lines)
    assert (2, 2) == (info.snapshots, info.duplicates)


def test_two_snapshots_with_one_timestamp_are_both_kept() -> None:
    _, info = report.build([calls_line(START, 1), calls_line(START, 2)])
    assert (2, 0) == (info.snapshots, info.duplicates)


def test_a_single_snapshot_still_makes_a_report() -> None:
    page = report.render([calls_line(START, 5.0)])
    assert '<circle cx="' in Svg(page, "calls").text


def test_sections_without_data_are_left_out_with_a_note() -> None:
    page, info = report.build([calls_line(START, 1), calls_line(START + 10, 2)])
    assert ("service",) == info.sections
    assert {"alerts", "resources", "outputs", "quality", "features", "drift", "outcomes"} == set(info.omitted)
    assert "No quality metrics in this log: give the Monitor a task" in page
    assert 'data-chart="latency"' not in page


# ------------------------------------------------------------------------ escaping


def test_every_text_from_the_log_is_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    samples = [
        ("mlmon_calls_per_second", {}, 1.0),
        ("mlmon_errors_total", {"error_type": SCRIPT}, 3.0),
        ("mlmon_feature_missing_ratio", {"feature": SCRIPT}, 0.1),
        ("mlmon_feature_drift_psi", {"feature": evil}, 0.3),
        ("mlmon_output_class_ratio", {"class": "</svg><script>x()</script>"}, 0.5),
        ("mlmon_alert_firing", {"rule": evil}, 1.0),
    ]
    alert = {"rule": evil, "state": "firing", "labels": {"feature": SCRIPT}, "message": SCRIPT, "severity": evil}
    lines = [line(START + 10 * i, samples, model=SCRIPT, instance=evil, version=evil, alerts=[alert]) for i in range(3)]
    lines.append('{"mlmon": 1, "model": "<b>bad line</b>"')  # malformed lines are never echoed
    page = report.render(lines)
    parsed = Tags(page)
    assert {"script", "img", "b"}.isdisjoint(parsed.tags)
    assert not [name for name, _ in parsed.attrs if name.startswith("on")]
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'none'" in page  # and the page may not run or load anything anyway


# ------------------------------------------------------------------------ charts


def test_a_polyline_maps_back_to_the_data_it_was_drawn_from() -> None:
    values = [3.0, 7.5, 1.0, 12.0, 12.0, 4.25, 0.5, 9.0]
    times = [START + 10 * i for i in range(len(values))]
    page = report.render([calls_line(t, v) for t, v in zip(times, values, strict=True)])
    svg = Svg(page, "calls")
    (drawn,) = svg.series()["calls/s"]
    assert len(values) == len(drawn)
    px_t = (svg.x1 - svg.x0) / svg.width  # data units per pixel: coordinates have 0.1 px
    px_v = (svg.y1 - svg.y0) / svg.height
    for (t, v), (dt, dv) in zip(zip(times, values, strict=True), drawn, strict=True):
        assert t == pytest.approx(dt, abs=0.06 * px_t)
        assert v == pytest.approx(dv, abs=0.06 * px_v)
    assert svg.y0 == 0 and svg.y1 >= max(values)


def test_a_gap_in_reporting_breaks_the_line() -> None:
    times = [START + 10 * i for i in range(5)] + [START + 1000 + 10 * i for i in range(5)]
    page = report.render([calls_line(t, 1.0) for t in times])
    assert 2 == len(Svg(page, "calls").series()["calls/s"])


def test_counters_are_drawn_as_rates_from_zero_before_they_appear() -> None:
    lines = [line(START, [("mlmon_calls_per_second", {}, 1.0)])]
    lines += [line(START + 10 * i, [("mlmon_errors_total", {"error_type": "KeyError"}, c)]) for i, c in ((1, 20), (2, 50), (3, 50))]
    svg = Svg(report.render(lines), "errors-by-type")
    (drawn,) = svg.series()["KeyError"]
    assert [2.0, 3.0, 0.0] == pytest.approx([v for _, v in drawn], abs=0.05)


def test_a_counter_that_restarts_is_totalled_across_the_restart() -> None:
    counts = [10, 40, 5, 25]  # the process restarted after the second snapshot
    page = report.render([line(START + 10 * i, [("mlmon_calls_total", {}, c)]) for i, c in enumerate(counts)])
    assert '<div class="value">65</div>' in page


def test_huge_logs_are_downsampled_keeping_spikes(tmp_path: Path) -> None:
    n = 20_000
    values = np.sin(np.arange(n) / 300.0) + 2.0
    values[12_345] = 50.0  # one spike
    path = tmp_path / "big.jsonl"
    path.write_text("".join(calls_line(START + i, float(v)) + "\n" for i, v in enumerate(values)))
    page, info = report.build(path, max_points=400)
    (drawn,) = Svg(page, "calls").series()["calls/s"]
    assert n == info.snapshots
    assert 200 <= len(drawn) <= 400
    assert 50.0 == pytest.approx(max(v for _, v in drawn), rel=0.01)
    assert info.size < 150_000


def test_a_gap_survives_downsampling() -> None:
    times = [START + i for i in range(3000)] + [START + 10_000 + i for i in range(3000)]
    page = report.render([calls_line(t, 1.0 + (i % 7)) for i, t in enumerate(times)], max_points=200)
    lines = Svg(page, "calls").series()["calls/s"]
    assert 2 == len(lines)
    assert sum(len(points) for points in lines) <= 200


def test_write_returns_what_it_did_and_leaves_no_temporary_file(tmp_path: Path, log_path: Path) -> None:
    out = tmp_path / "r.html"
    info = report.write(log_path, out)
    assert str(out) == info.output and out.stat().st_size == info.size
    assert ["r.html"] == [p.name for p in tmp_path.iterdir()]
    assert len(INSTANCES) * (STEPS + 1) == info.snapshots
    assert START <= info.start < info.end


def test_the_command_names_the_report_after_the_log_and_reads_rotated_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "m.jsonl.1", tmp_path / "m.jsonl"
    old.write_text(calls_line(START, 1) + "\n")
    new.write_text(calls_line(START + 10, 2) + "\n")
    assert 0 == report.main([str(new), str(old)])
    assert (tmp_path / "m.html").exists()
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'm.html'}") and "2 snapshots from 1 instance" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-points", "3"], "--max-points must be at least 10, got 3"),
        (["-o", "{log}"], "would overwrite a log it reads"),
        (["--max-points", "many"], "invalid int value: 'many'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "x.jsonl"
    log.write_text(calls_line(START, 1) + "\n")
    assert 2 == report.main([str(log), *(a.format(log=log) for a in extra)])
    err = capsys.readouterr().err
    assert "usage: python -m mlmon report" in err and message in err
    assert calls_line(START, 1) + "\n" == log.read_text()
    assert ["x.jsonl"] == [p.name for p in tmp_path.iterdir()]


def test_the_report_stands_alone(page: str) -> None:
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    assert page.count("<svg") >= 20


@pytest.mark.parametrize("t0,t1", [(START, START + 20), (START, START + 3600 * 5), (START, START + 86400 * 9)])
def test_time_axes_have_round_ticks(t0: float, t1: float) -> None:
    from mlmon.report import _format as _svg

    ticks, fmt = _svg.time_ticks(t0, t1)
    assert 2 <= len(ticks) <= 7 and all(t0 <= t <= t1 for t in ticks)
    assert all(math.isclose(b - a, ticks[1] - ticks[0]) for a, b in itertools.pairwise(ticks))
    assert "%" in fmt


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text().splitlines()


def test_lines_may_come_from_any_iterable(log_path: Path) -> None:
    assert len(INSTANCES) * (STEPS + 1) == report.build(iter_lines(log_path))[1].snapshots
