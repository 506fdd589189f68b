"""Label coverage is never shown alone: the console table and the HTML report put the labels
that judged nothing (unmatched, expired) next to it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

import mlmon
from mlmon import report
from mlmon.emitters import ConsoleEmitter
from mlmon.testing import FakeClock


def test_console_shows_unmatched_and_expired_labels_next_to_coverage() -> None:
    out = io.StringIO()
    clock = FakeClock()
    mon = mlmon.Monitor(
        "console_labels",
        task=mlmon.BinaryClassification(),
        clock=clock,
        emitters=[ConsoleEmitter(out)],
        ttl=100.0,
    )

    @mon.track(ids="ids")
    def predict(x: Any, ids: Any) -> Any:
        return x

    predict(np.array([0.9, 0.2, 0.7, 0.4]), ids=["a", "b", "c", "d"])
    clock.advance(1.0)
    mon.log_feedback(["a", "b", "nope", "nada", "zilch"], [1, 0, 1, 0, 1])  # 3 unmatched
    clock.advance(150.0)  # past the ttl (not twice it): "c" and "d" count as expired
    predict(np.array([0.8]), ids=["e"])
    mon.log_feedback(["c", "d"], [1, 1])
    mon.flush()
    mon.close()
    snap = mon.snapshot()
    unmatched = snap.get("mlmon_labels_unmatched_total")
    expired = snap.get("mlmon_labels_expired_total")
    assert unmatched is not None and expired is not None and expired > 0
    quality = [ln for ln in out.getvalue().splitlines() if ln.startswith(" quality")]
    assert quality
    last = quality[-1]
    assert re.search(r"coverage [0-9.]+%  unmatched \d+  expired \d+", last), last
    assert f"unmatched {int(unmatched)}" in last and f"expired {int(expired)}" in last


def test_console_shows_zero_unmatched_when_every_label_joined() -> None:
    out = io.StringIO()
    clock = FakeClock()
    mon = mlmon.Monitor(
        "console_ok", task=mlmon.Regression(), clock=clock, emitters=[ConsoleEmitter(out)]
    )

    @mon.track(ids="ids")
    def predict(x: Any, ids: Any) -> Any:
        return x

    predict(np.array([1.0, 2.0]), ids=[1, 2])
    clock.advance(1.0)
    mon.log_feedback([1, 2], [1.5, 2.0])
    mon.flush()
    mon.close()
    assert "unmatched 0  expired 0" in out.getvalue()


def line(t: float, instance: str, samples: list[tuple[str, dict[str, str], float]]) -> str:
    return json.dumps(
        {"mlmon": 1, "model": "m", "version": None, "instance": instance, "timestamp": t,
         "window": 60.0, "samples": [list(s) for s in samples], "alerts": []}
    )  # fmt: skip


def test_report_card_sums_unmatched_and_expired_over_instances(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    lines = []
    for k, inst in enumerate(("h:1", "h:2")):
        for step in range(3):
            lines.append(
                line(
                    1_700_000_000 + 60 * step,
                    inst,
                    [
                        ("mlmon_calls_total", {}, 10.0 * (step + 1)),
                        ("mlmon_labels_total", {}, 5.0 * (step + 1)),
                        ("mlmon_labels_unmatched_total", {}, float((k + 1) * step)),
                        ("mlmon_labels_expired_total", {}, float(step * k)),
                        ("mlmon_label_coverage_ratio", {}, 0.5),
                    ],
                )
            )
    path.write_text("\n".join(lines) + "\n")
    page = report.render(path)
    # unmatched: 2 (h:1) + 4 (h:2); expired: 0 + 2; joined: 15 + 15
    card = re.search(r"Labels joined.{0,400}", page, flags=re.S)
    assert card is not None
    text = re.sub(r"<[^>]+>", " ", card.group())
    assert "30" in text and "unmatched 6" in text and "expired 2" in text
    assert "coverage 50" in text
    # and as rates in the labels chart, beside the joined labels
    chart = re.search(r'id="chart-labels-rate".*?</svg>', page, flags=re.S)
    assert chart is not None, "labels-rate chart missing"
    for series in ("labels/s", "unmatched/s", "expired/s"):
        assert f"{series} · h:1" in chart.group() and f"{series} · h:2" in chart.group()


def test_report_card_shows_zero_unmatched(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        "\n".join(
            line(
                1_700_000_000 + 60 * s,
                "h:1",
                [("mlmon_labels_total", {}, 3.0 * s), ("mlmon_labels_unmatched_total", {}, 0.0)],
            )
            for s in range(3)
        )
        + "\n"
    )
    text = re.sub(r"<[^>]+>", " ", report.render(path))
    assert re.search(r"Labels joined.{0,300}unmatched 0 · expired 0", text, flags=re.S)
