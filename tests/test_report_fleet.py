"""The report's fleet row: a log with fleet snapshots shows the fleet first, the processes after.

Synthetic logs here (every value known); tests/integration/test_fleet_report.py renders a log
written by real fleet monitors through a real Redis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
from test_report import Svg, Tags, line, svg_of

from mlmon import report
from mlmon.report._format import esc

START = 1_700_000_000.0
STEPS = 12
PROCESSES = ("web-1:11", "web-2:12", "web-3:13")


def process_line(k: int, i: int, inst: str, *, leader: bool) -> str:
    t = START + 10 * i + 0.01 * k
    return line(t, [
        ("mlmon_calls_total", {}, 5.0 * i),
        ("mlmon_calls_per_second", {}, 0.5),
        ("mlmon_precision", {}, 0.5 + 0.1 * k),
        ("mlmon_latency_seconds", {"quantile": "0.99"}, 0.010 * (k + 1)),
        ("mlmon_fleet_up", {}, 1.0),
        ("mlmon_fleet_leader", {}, 1.0 if leader else 0.0),
    ], instance=inst)  # fmt: skip


def fleet_line(i: int, instance: str = "fleet", processes: int = 3, **extra: Any) -> str:
    t = START + 10 * i + 0.5
    return line(t, [
        ("mlmon_calls_total", {}, 15.0 * i),
        ("mlmon_calls_per_second", {}, 1.5),
        ("mlmon_precision", {}, 0.625),
        ("mlmon_recall", {}, 0.25 + 0.01 * i),
        ("mlmon_latency_seconds", {"quantile": "0.99"}, 0.025),
        ("mlmon_output_variance", {}, 0.08),
        ("mlmon_feature_drift_psi", {"feature": "age"}, 0.01 * i),
        ("mlmon_fleet_processes", {}, float(processes)),
        ("mlmon_fleet_states_rejected_total", {"reason": "corrupt"}, 2.0 * i),
        ("mlmon_fleet_merge_seconds", {}, 0.002),
    ], instance=instance, **extra)  # fmt: skip


def fleet_log(fleet_instance: str = "fleet", processes: Sequence[str] = PROCESSES) -> list[str]:
    out = []
    for i in range(STEPS):
        out += [process_line(k, i, p, leader=k == 0) for k, p in enumerate(processes)]
        out.append(fleet_line(i, fleet_instance))
    return out


def cards(page: str) -> dict[str, tuple[str, str]]:
    found = re.findall(r'<div class="label">([^<]*)</div><div class="value">([^<]*)</div><div class="sub">([^<]*)</div>', page)
    return {label: (value, sub) for label, value, sub in found}


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section [^>]*data-section="([^"]+)"', page)


def section_html(page: str, sid: str) -> str:
    m = re.search(rf'<section [^>]*data-section="{sid}".*?</section>', page, flags=re.S)
    assert m, sid
    return m.group(0)


@pytest.fixture(scope="module")
def built() -> tuple[str, report.ReportInfo]:
    return report.build(fleet_log())


def test_the_fleet_comes_first_in_its_own_section(built: tuple[str, report.ReportInfo]) -> None:
    page, info = built
    ids = section_ids(page)
    assert ids[:3] == ["summary", "fleet", "alerts"]
    assert info.fleet == ("fleet",)
    assert info.sections[0] == "fleet"
    assert info.instances == ("fleet", *PROCESSES)
    assert info.snapshots == STEPS * (len(PROCESSES) + 1)
    nav = re.search(r"<nav>(.*?)</nav>", page, flags=re.S)
    assert nav and nav.group(1).startswith('<a href="#fleet">Fleet</a>')
    fleet = section_html(page, "fleet")
    assert "Fleet (merged by the leader)" in fleet and "The processes follow" in fleet


def test_fleet_charts_draw_the_fleet_values_and_only_those(built: tuple[str, report.ReportInfo]) -> None:
    page, _ = built
    fleet = section_html(page, "fleet")
    charts = set(re.findall(r'data-chart="([^"]+)"', fleet))
    assert {"fleet-calls", "fleet-quality", "fleet-latency", "fleet-output", "fleet-psi", "fleet-processes",
            "fleet-rejected", "fleet-merge", "fleet-leader", "fleet-up"} <= charts  # fmt: skip
    quality = Svg(page, "fleet-quality")
    (precision,) = quality.series()["precision"]
    assert len(precision) == STEPS
    assert all(v == pytest.approx(0.625, abs=0.01) for _, v in precision)
    (recall,) = quality.series()["recall"]
    assert [v for _, v in recall] == pytest.approx([0.25 + 0.01 * i for i in range(STEPS)], abs=0.01)
    # the series carry the fleet's identity, never a process's
    assert set(re.findall(r'data-instance="([^"]+)"', svg_of(page, "fleet-quality"))) == {"fleet"}
    # rejected states: a rate per reason, from the cumulative counter (2 per 10 s)
    (rejected,) = Svg(page, "fleet-rejected").series()["corrupt"]
    assert [v for _, v in rejected] == pytest.approx([0.2] * (STEPS - 1), abs=0.01)
    (processes,) = Svg(page, "fleet-processes").series()["processes"]
    assert {round(v) for _, v in processes} == {3}


def test_fleet_health_draws_the_leader_per_process(built: tuple[str, report.ReportInfo]) -> None:
    page, _ = built
    leader = Svg(page, "fleet-leader").series()
    assert set(leader) == {f"leader · {p}" for p in PROCESSES}
    (lead,) = leader[f"leader · {PROCESSES[0]}"]
    assert {round(v) for _, v in lead} == {1}
    (follow,) = leader[f"leader · {PROCESSES[1]}"]
    assert {round(v) for _, v in follow} == {0}


def test_process_sections_show_the_processes_alone(built: tuple[str, report.ReportInfo]) -> None:
    page, _ = built
    quality = Svg(page, "quality").series()
    assert set(quality) == {f"precision · {p}" for p in PROCESSES}
    latency = set(re.findall(r'data-instance="([^"]+)"', svg_of(page, "latency")))
    assert latency == set(PROCESSES)


def test_summary_counts_each_call_once_and_shows_the_fleet(built: tuple[str, report.ReportInfo]) -> None:
    page, _ = built
    c = cards(page)
    # 3 processes x 5 calls per step; the fleet's counter (the same calls merged) is not added
    assert c["Calls"][0] == str(len(PROCESSES) * 5 * (STEPS - 1))
    value, sub = c["Fleet (fleet), latest"]
    assert value == "3 processes"
    assert "precision 62.5%" in sub and "p99 25" in sub
    assert c["Precision, latest (worst of 3 instances)"][0] == "50%"  # the processes' worst
    assert "from 3 instances and 12 of the fleet" in c["Snapshots"][1]
    assert '<div class="card stat fleet">' in page


def test_a_fleet_is_told_by_its_samples_not_by_its_name() -> None:
    # a fleet renamed with Fleet(instance=...) is a fleet; a process named "fleet" is a process
    page, info = report.build(fleet_log("all-replicas", processes=("fleet", "web-2:12")))
    assert info.fleet == ("all-replicas",)
    assert set(Svg(page, "quality").series()) == {"precision · fleet", "precision · web-2:12"}
    assert set(re.findall(r'data-instance="([^"]+)"', svg_of(page, "fleet-quality"))) == {"all-replicas"}


def test_a_log_of_fleet_snapshots_alone_reports_the_fleet() -> None:
    page, info = report.build([fleet_line(i) for i in range(STEPS)])
    assert info.fleet == ("fleet",) and info.instances == ("fleet",)
    assert any("Every snapshot in this log is a fleet snapshot" in n for n in info.notes)
    assert section_ids(page)[1] == "fleet"
    assert "fleet-processes" in re.findall(r'data-chart="([^"]+)"', page)
    (precision,) = Svg(page, "quality").series()["precision"]  # the sections show the fleet
    assert all(v == pytest.approx(0.625, abs=0.01) for _, v in precision)


def test_an_instance_filter_without_the_fleet_has_no_fleet_row() -> None:
    page, info = report.build(fleet_log(), instance=list(PROCESSES))
    assert info.fleet == () and "fleet" not in info.sections
    assert 'data-section="fleet"' not in page and 'href="#fleet"' not in page
    page, info = report.build(fleet_log(), instance=["fleet", PROCESSES[0]])
    assert info.fleet == ("fleet",) and info.instances == ("fleet", PROCESSES[0])


def test_fleet_alerts_are_in_the_timeline_marked_as_the_fleets() -> None:
    lines = fleet_log()
    alert = {"rule": "fleet_errors", "state": "firing", "labels": {}, "severity": "page", "message": "fleet errors 30%"}
    for i in (5, 6):
        lines.append(line(START + 10 * i + 0.5, [
            ("mlmon_fleet_processes", {}, 3.0), ("mlmon_alert_firing", {"rule": "fleet_errors"}, 1.0),
        ], instance="fleet", alerts=[alert]))  # fmt: skip
    page = report.render(lines)
    rows = re.findall(r'data-row="([^"]*)"', svg_of(page, "alert-timeline"))
    assert rows == ["fleet_errors · fleet"]
    assert "fleet errors 30%" in page


def test_hostile_fleet_lines_are_escaped_or_skipped() -> None:
    evil = "<script>alert(1)</script>"
    lines = fleet_log(evil)
    lines.insert(3, fleet_line(2, evil)[:40])  # cut off mid-line
    lines.insert(5, json.dumps({"mlmon": 1, "model": "m", "instance": "x", "timestamp": START,
                                "samples": [["mlmon_fleet_processes", {}, "three"]]}))  # fmt: skip
    bad_reason = fleet_line(3, evil).replace('"reason": "corrupt"', '"reason": "<img src=x onerror=alert(1)>"')
    lines.insert(7, bad_reason)
    page, info = report.build(lines)
    assert info.malformed == 2
    assert info.fleet == (evil,)
    assert "<script>" not in page and "<img" not in page
    assert esc(evil) in page
    tags = Tags(page)
    assert "script" not in tags.tags and "img" not in tags.tags
    assert not any(k.startswith("on") for k, _ in tags.attrs)
