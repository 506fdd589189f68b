"""The report's segments: a section of small multiples when the log has segment-labelled
samples, and every other section reading the overall series only.

The logs are written by mlmon's own JsonlEmitter from snapshots: a real monitor's (over
FakeClock), with per-segment copies of its samples added, or snapshots built with
``Sample.make`` (the monitor cannot produce segment series itself yet).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

import mlmon
from mlmon import report
from mlmon.emitters import JsonlEmitter
from mlmon.report._format import clean
from mlmon.report._segments import MAX_CARDS, MAX_TABLE_ROWS
from mlmon.segments import MAX_NAME, OVERFLOW
from mlmon.snapshot import Sample, Snapshot
from mlmon.testing import FakeClock

START = 1_700_000_000.0
RAW_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
HOSTILE = (
    "<script>alert(1)</script>",
    "it's \"quoted\" & <b>bold</b>",
    "two\nlines\r\x1b[31m",
    ("ünï©ødé ✓ 文字 " * 8)[:MAX_NAME],
)


# ---------------------------------------------------------------------------------------------
# A real monitor's log, and the same log with segment copies of every sample
# ---------------------------------------------------------------------------------------------


def segment_copy(sample: Sample, segment: str, k: int) -> Sample:
    """``sample`` of segment ``segment``, its value far from the overall one (counters stay
    monotonic)."""
    value = sample.value * (3 + k) + (0.0 if sample.kind == "counter" else 7.0 + k)
    return Sample(sample.name, tuple(sorted((*sample.labels, ("segment", segment)))), value)


class Both:
    """Writes each snapshot twice: as is, and with per-segment copies of every sample."""

    name = "jsonl"

    def __init__(self, plain: Path, segmented: Path, segments: Sequence[str]) -> None:
        self.plain, self.segmented = JsonlEmitter(plain), JsonlEmitter(segmented)
        self.segments = segments

    def emit(self, snapshot: Snapshot) -> None:
        self.plain.emit(snapshot)
        extra = [segment_copy(s, seg, k) for k, seg in enumerate(self.segments) for s in snapshot.samples]
        extra += [
            Sample.make("mlmon_segments", len(self.segments)),
            Sample.make("mlmon_segments_max", 32),
            Sample.make("mlmon_segment_overflow_rows_total", 11),
            Sample.make("mlmon_segment_invalid_total", 2),
        ]
        self.segmented.emit(attrs.evolve(snapshot, samples=snapshot.samples + tuple(extra)))

    def close(self) -> None:
        self.plain.close()
        self.segmented.close()


def serve(emitter: Both, instance: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    clock = FakeClock(start=START + seed)
    weights = np.array([0.8, -0.5])
    train = rng.normal(0, 1, (2000, 2))
    reference = mlmon.Reference.from_data(train, feature_names=["age", "income"], outputs=1 / (1 + np.exp(-train @ weights)))
    mon = mlmon.Monitor(
        "fraud", task=mlmon.BinaryClassification(), reference=reference, window=60.0, flush_interval=60.0,
        latency_budget=0.05, clock=clock, instance=instance, emitters=[emitter],
    )  # fmt: skip

    @mon.track(features="X", ids="ids")
    def predict(X: np.ndarray, ids: list[int], fail: bool = False) -> np.ndarray:
        clock.advance(0.01)
        if fail:
            raise ValueError("bad")
        return np.asarray(1 / (1 + np.exp(-X @ weights)))

    next_id = 0
    for step in range(12):
        for call in range(4):
            X = rng.normal(0.5 * (step > 6), 1, (40, 2))
            ids = list(range(next_id, next_id + 40))
            next_id += 40
            try:
                scores = predict(X, ids, fail=step % 5 == 1 and call == 0)
            except ValueError:
                continue
            mon.log_feedback(ids, (rng.random(40) < scores).astype(int))
            mon.log_outcome("click", ids=ids[:2])
        clock.advance(10.0)
        mon.flush()
    mon.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("segments")
    plain, segmented = d / "plain.jsonl", d / "segmented.jsonl"
    for k, instance in enumerate(("web-1:1", "web-2:2")):
        serve(Both(plain, segmented, ["eu", "us", OVERFLOW, *HOSTILE]), instance, k)
    return plain, segmented


def sections(page: str) -> dict[str, str]:
    """Each section's HTML by id (the summary cards included)."""
    return {m.group(2): m.group(1) for m in re.finditer(r'(<section id="(\w+)".*?</section>)', page, flags=re.S)}


# ---------------------------------------------------------------------------------------------
# Overall sections never read a segment's series
# ---------------------------------------------------------------------------------------------


def test_every_overall_section_and_card_is_the_same_with_segment_series_in_the_log(logs: tuple[Path, Path]) -> None:
    plain_page, plain = report.build(logs[0])
    seg_page, seg = report.build(logs[1])
    assert "segments" not in plain.sections and "segments" in seg.sections
    assert {"service", "resources", "outputs", "quality", "features", "drift", "outcomes"} <= set(plain.sections)
    a, b = sections(plain_page), sections(seg_page)
    assert set(a) | {"segments"} == set(b)
    assert len(a) == 8  # the summary cards and the seven sections above
    for sid, html in a.items():
        assert html == b[sid], f"section {sid} differs once segment series are in the log"
    # The values drawn are real ones (the comparison is not of two empty pages).
    assert 'data-series="calls/s · web-1:1"' in a["service"]
    assert "data-segment=" not in "".join(a.values())


def test_the_summary_counts_the_overall_counters_only(logs: tuple[Path, Path]) -> None:
    plain_page = report.render(logs[0])
    seg_page = report.render(logs[1])
    assert sections(plain_page)["summary"] == sections(seg_page)["summary"]
    calls = re.search(r'<div class="label">Calls</div><div class="value">([^<]*)</div>', seg_page)
    assert calls is not None
    # the calls of both monitors, as their own counters say (the segments' copies are 3x-8x)
    totals = []
    for text in logs[0].read_text().splitlines():
        rec = json.loads(text)
        totals.append((rec["instance"], next(v for n, lab, v in rec["samples"] if n == "mlmon_calls_total" and not lab)))
    last = {inst: v for inst, v in totals}
    assert f"{sum(last.values()):g}" == calls.group(1)


# ---------------------------------------------------------------------------------------------
# The segments section
# ---------------------------------------------------------------------------------------------


class Cells(HTMLParser):
    """The segments table's rows (cell texts) and every data-segment attribute, unescaped."""

    def __init__(self) -> None:
        super().__init__()
        self.in_table = False
        self.rows: list[list[str]] = []
        self.head: list[str] = []
        self.cards: list[str] = []
        self.attrs: list[str] = []
        self._cell: list[str] | None = None
        self._th = False
        self._body = False

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        a = dict(attributes)
        if "data-segment" in a:
            self.attrs.append(a["data-segment"] or "")
            if tag == "figure":
                self.cards.append(a["data-segment"] or "")
        if tag == "table" and a.get("class") == "segments":
            self.in_table = True
        elif self.in_table and tag == "tr" and self._body:
            self.rows.append([])
        elif self.in_table and tag == "tbody":
            self._body = True
        elif self.in_table and tag in ("td", "th"):
            self._cell = []
            self._th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_table = self._body = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            (self.head if self._th else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parsed(page: str) -> Cells:
    p = Cells()
    p.feed(page)
    return p


def snapshot_log(snaps: Sequence[Snapshot]) -> list[str]:
    out = io.StringIO()
    emitter = JsonlEmitter(out)
    for s in snaps:
        emitter.emit(s)
    return out.getvalue().splitlines()


def seg_samples(segment: str, t: int, rows: float, *, errors: float = 0.0, f1: float | None = 0.8,
                psi: Sequence[float] = (0.05, 0.3), extra: Sequence[Sample] = ()) -> list[Sample]:  # fmt: skip
    out = [
        Sample.make("mlmon_rows_per_second", rows, segment=segment),
        Sample.make("mlmon_rows_total", rows * 10 * (t + 1), segment=segment),
        Sample.make("mlmon_error_ratio", errors, segment=segment),
        *(Sample.make("mlmon_feature_drift_psi", v, feature=f"f{i}", segment=segment) for i, v in enumerate(psi)),
        *extra,
    ]
    if f1 is not None:
        out.append(Sample.make("mlmon_f1", f1, segment=segment))
    return out


def make_log(segments: dict[str, float], steps: int = 4, instance: str = "h:1", **kw: Any) -> list[str]:
    """``steps`` snapshots of overall series and of each segment at ``rows`` rows/s."""
    snaps = []
    for t in range(steps):
        samples = [
            Sample.make("mlmon_rows_per_second", 1000.0),
            Sample.make("mlmon_rows_total", 10_000.0 * (t + 1)),
            Sample.make("mlmon_calls_total", 100.0 * (t + 1)),
            Sample.make("mlmon_segments", min(len(segments), 33)),
            Sample.make("mlmon_segments_max", 32),
            Sample.make("mlmon_segment_overflow_rows_total", 40.0 * t),
            Sample.make("mlmon_segment_invalid_total", 3.0 * t),
        ]
        for name, rows in segments.items():
            samples += seg_samples(name, t, rows, **kw)
        snaps.append(Snapshot("m", None, instance, START + 10 * t, 60.0, tuple(samples)))
    return snapshot_log(snaps)


def test_no_segments_section_without_segment_samples() -> None:
    page, info = report.build(make_log({}))
    assert "segments" not in info.sections and "segments" not in info.omitted
    assert 'id="segments"' not in page and 'href="#segments"' not in page


def test_one_card_per_segment_largest_first_other_last_each_with_four_small_charts() -> None:
    page, info = report.build(make_log({"small": 5.0, OVERFLOW: 500.0, "big": 300.0, "mid": 50.0}))
    assert "segments" in info.sections and 'href="#segments"' in page
    p = parsed(page)
    assert ["big", "mid", "small", OVERFLOW] == p.cards  # "_other" last even though it is largest
    for card in re.findall(r'<figure class="card seg-card[^"]*".*?</figure>', page, flags=re.S):
        assert ["rows", "errors", "f1", "psi"] == re.findall(r'<div class="seg-chart" data-what="(\w+)"', card)
        assert 4 == card.count("<svg ")
        # every small chart draws the 4 snapshots of its segment
        assert all(n == "4" for n in re.findall(r'data-points="(\d+)"', card))
    assert "more segment" not in page


def test_the_table_holds_each_segments_latest_values_and_the_bookkeeping() -> None:
    log = make_log({"eu": 120.0, "us": 30.0}, errors=0.25, f1=0.625, psi=(0.1, 0.75, 0.5),
                   extra=[Sample.make("mlmon_segment_reference", 1, segment="eu")])  # fmt: skip
    page = report.render(log)
    p = parsed(page)
    assert ["segment", "rows", "rows/s, latest", "error ratio, latest", "F1, latest",
            "largest feature PSI, latest", "drift reference", "last seen (UTC)"] == p.head  # fmt: skip
    eu, us = p.rows
    assert ["eu", "4.8k", "120", "25%", "62.5%", "0.75", "own"] == eu[:7]
    assert ["us", "1.2k", "30", "25%", "62.5%", "0.75", "–"] == us[:7]
    book = re.search(r'<div class="cards seg-book.*?</div></div></div>', page, flags=re.S)
    assert book is not None
    stats = dict(re.findall(r'<div class="label">([^<]*)</div><div class="value">([^<]*)</div>', book.group(0)))
    assert "2" == stats["Segments tracked, latest"]
    assert "32" == stats["Cap (max_segments)"]
    assert "120" == stats["Rows folded into &quot;_other&quot;"]  # 40 x 3, a counter's increase
    assert "9" == stats["Invalid segment values"]


@pytest.mark.parametrize(
    ("extra", "f1", "quality"),
    [
        ([], 0.5, "F1"),
        ([Sample.make("mlmon_accuracy", 0.9, segment="eu")], None, "accuracy"),
        ([Sample.make("mlmon_mae", 1.5, segment="eu")], None, "MAE"),
        ([Sample.make("mlmon_f1", 0.4, average="macro", segment="eu")], None, "F1 (macro)"),
    ],
)
def test_the_quality_chart_is_the_main_metric_present(extra: list[Sample], f1: float | None, quality: str) -> None:
    page = report.render(make_log({"eu": 10.0}, f1=f1, extra=extra))
    assert f"{quality}, latest" in parsed(page).head
    assert '<p class="metric" title="' in page and f">{quality}</p>" in page


def test_without_quality_metrics_the_cards_have_three_charts() -> None:
    page = report.render(make_log({"eu": 10.0}, f1=None))
    card = re.search(r'<figure class="card seg-card.*?</figure>', page, flags=re.S)
    assert card is not None
    assert ["rows", "errors", "psi"] == re.findall(r'data-what="(\w+)"', card.group(0))


def test_at_most_24_cards_then_how_many_more() -> None:
    segments = {f"s{i:02d}": float(100 - i) for i in range(40)} | {OVERFLOW: 1.0}
    page = report.render(make_log(segments, steps=2))
    p = parsed(page)
    assert MAX_CARDS == len(p.cards)
    assert [f"s{i:02d}" for i in range(MAX_CARDS - 1)] + [OVERFLOW] == p.cards
    more = re.search(r'data-more="(\d+)">and (\d+) more segments', page)
    assert more is not None and ("17", "17") == more.groups()
    assert 41 == len(p.rows)  # the table lists them all (fewer than its cap)


def test_hostile_segment_names_are_escaped_everywhere() -> None:
    names = {name: 10.0 * (k + 1) for k, name in enumerate(HOSTILE)}
    page = report.render(make_log(names))
    assert "<script>" not in page and "<b>" not in page
    assert RAW_CONTROL.search(page) is None
    page.encode("utf-8")
    p = parsed(page)
    # every name reads back exactly (control characters replaced), in cards, table and attributes
    expected = sorted(clean(n) for n in HOSTILE)
    assert expected == sorted(p.cards)
    assert expected == sorted(r[0] for r in p.rows)
    assert set(p.attrs) == set(expected)
    assert all(len(n) <= MAX_NAME for n in p.cards)


def test_thousands_of_segment_names_keep_the_page_bounded() -> None:
    def lines(n: int) -> list[str]:
        # a new batch of names in every snapshot: what a log of many restarts, or of a
        # high-cardinality column without a cap, holds
        return [
            line
            for t in range(4)
            for line in snapshot_log([Snapshot("m", None, "h:1", START + 10 * t, 60.0, tuple(
                s for k in range(n // 4) for s in seg_samples(f"seg-{t}-{k}", t, 1.0 + k % 7)
            ))])
        ]

    small_page, small = report.build(lines(400))
    big_page, big = report.build(lines(8000))
    assert len(big_page) < 1.2 * len(small_page) + 20_000
    assert len(big_page) < 1_000_000
    p = parsed(big_page)
    assert MAX_CARDS == len(p.cards) and MAX_TABLE_ROWS == len(p.rows)
    assert "more segments not listed" in big_page
    assert any("segment-labelled samples of segment names beyond the first 5,000" in n for n in big.notes)
    assert not any("segment" in n for n in small.notes)
    # the page says how many names the log holds, the dropped ones included
    assert ">8,000</div>" in big_page


def test_several_instances_sum_rows_and_take_the_worst_of_the_rest() -> None:
    a = make_log({"eu": 100.0}, instance="a:1", errors=0.1, f1=0.9)
    b = make_log({"eu": 50.0}, instance="b:2", errors=0.3, f1=0.6)
    p = parsed(report.render(a + b))
    (eu,) = p.rows
    assert ["eu", "6k", "150", "30%", "60%"] == eu[:5]


def test_the_fleets_segment_series_are_not_added_to_the_processes() -> None:
    """A fleet snapshot (the leader's merge) holds the processes' rows again: its segment
    series stay out of the processes' segments section."""
    procs = make_log({"eu": 100.0}, instance="a:1")
    fleet = []
    for text in make_log({"eu": 100.0}, instance="fleet"):
        rec = json.loads(text)
        rec["samples"].append(["mlmon_fleet_processes", {}, 1.0])
        fleet.append(json.dumps(rec))
    (eu,) = parsed(report.render(procs + fleet)).rows
    assert "100" == eu[2]  # not 200


def test_nan_segment_values_leave_gaps_and_missing_metrics_say_no_data() -> None:
    snaps = [
        Snapshot("m", None, "h:1", START + 10 * t, 60.0, (
            Sample.make("mlmon_rows_per_second", math.nan if t == 1 else 5.0, segment="eu"),
        ))
        for t in range(3)
    ]
    page = report.render(snapshot_log(snaps))
    card = re.search(r'<figure class="card seg-card.*?</figure>', page, flags=re.S)
    assert card is not None
    assert 'data-points="2"' in card.group(0)
    assert 2 == card.group(0).count("no data")  # error ratio, drift


def test_the_command_line_writes_the_segments_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(make_log({"eu": 20.0, "<i>x</i>": 10.0})) + "\n")
    out = tmp_path / "out.html"
    assert 0 == report.main([str(log), "-o", str(out)])
    page = out.read_text()
    assert 'id="segments"' in page and "<i>" not in page
    assert ["eu", "<i>x</i>"] == parsed(page).cards
    assert "wrote" in capsys.readouterr().out


def test_small_charts_name_the_instances_only_when_there_are_several() -> None:
    def first_card(lines: list[str]) -> str:
        found = re.search(r'<figure class="card seg-card.*?</figure>', report.render(lines), flags=re.S)
        assert found is not None
        return found.group(0)

    one = first_card(make_log({"eu": 10.0}))
    assert 0 == one.count('class="legend-item"')  # the chart's title says what the line is
    two = first_card(make_log({"eu": 10.0}, instance="a:1") + make_log({"eu": 5.0}, instance="b:2"))
    assert 8 == two.count('class="legend-item"')  # four charts, two instances each
    assert ["a:1", "b:2"] * 4 == re.findall(r'<g class="series" data-series="([^"]*)"', two)
