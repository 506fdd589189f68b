"""The report draws the estimate against the realized metrics and the calibration chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_report import Svg

import mlmon
from mlmon import report
from mlmon.emitters import JsonlEmitter
from mlmon.testing import FakeClock

START = 1_700_000_000.0


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("estimate_report") / "metrics.jsonl"
    rng = np.random.default_rng(0)
    s_ref = rng.uniform(size=20_000)
    ref = mlmon.Reference.from_data(s_ref.reshape(-1, 1), outputs=s_ref, labels=(rng.uniform(size=s_ref.size) < s_ref**2).astype(int))
    clock = FakeClock(start=START)
    mon = mlmon.Monitor("calib", task=mlmon.BinaryClassification(), reference=ref, window=60.0, flush_interval=60.0,
                        clock=clock, emitters=[JsonlEmitter(path)])  # fmt: skip
    predict = mon.track(ids="ids")(lambda X, ids: X)
    for step in range(12):
        ids = list(range(step * 500, (step + 1) * 500))
        s = rng.uniform(size=500)
        predict(s, ids=ids)
        mon.log_feedback(ids, (rng.uniform(size=500) < s**2).astype(int).tolist())
        clock.advance(10.0)
        mon.flush()
    mon.close()
    return path


@pytest.fixture(scope="module")
def page(log_path: Path) -> str:
    return report.render(log_path)


def last_snapshot(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    obj = json.loads(path.read_text().splitlines()[-1])
    return {(n, tuple(sorted(labels.items()))): v for n, labels, v in obj["samples"]}


def test_the_calibration_chart_draws_the_last_snapshot_bins(page: str, log_path: Path) -> None:
    snap = last_snapshot(log_path)
    want = sorted(
        (snap[("mlmon_calibration_predicted", (("bin", f"{b:02d}"),))], snap[("mlmon_calibration_observed", (("bin", f"{b:02d}"),))])
        for b in range(10)
    )
    svg = Svg(page, "calibration")
    assert (svg.x0, svg.x1, svg.y0, svg.y1) == (0.0, 1.0, 0.0, 1.0)
    (drawn,) = svg.series()["labelled scores"]
    assert len(drawn) == 10
    for (x, y), (dx, dy) in zip(want, sorted(drawn), strict=True):
        assert x == pytest.approx(dx, abs=0.06 / svg.width)
        assert y == pytest.approx(dy, abs=0.06 / svg.height)
    # The scores over-state P(y=1) = s**2: every point lies under the diagonal.
    assert all(dy < dx for dx, dy in drawn)
    assert 'id="chart-calibration"' in page


def test_estimated_and_realized_auc_and_accuracy_are_drawn_together(page: str) -> None:
    series = Svg(page, "estimated-more").series()
    assert {"accuracy", "estimated accuracy", "ROC AUC", "estimated ROC AUC"} <= set(series)
    m = re.search(r'<g class="series" data-series="estimated ROC AUC"[^>]*>.*?</g>', page, flags=re.S)
    assert m and "stroke-dasharray" in m.group(0)
    assert {"expected calibration error", "Brier score", "log loss"} <= set(Svg(page, "score-quality").series())


def test_no_calibration_bins_no_calibration_chart() -> None:
    line = json.dumps({"mlmon": 1, "model": "m", "version": None, "instance": "h:1", "timestamp": START,
                       "window": 60.0, "samples": [["mlmon_calls_per_second", {}, 1.0]], "alerts": []})  # fmt: skip
    assert "chart-calibration" not in report.render([line])
