"""The HTML report in a real browser: headless Chromium draws it and its DOM holds every chart.

Chromium is the Debian package ``chromium`` (``scripts/install-test-servers.sh`` installs it).
Without it the tests skip, or fail under ``MLMON_REQUIRE_SERVERS=1``. Set
``MLMON_REPORT_SCREENSHOT=/some/file.png`` to keep the screenshot for a look.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_or_fail

import mlmon
from mlmon import report
from mlmon.alerts import AlertEngine, Threshold
from mlmon.emitters import JsonlEmitter
from mlmon.snapshot import Snapshot
from mlmon.testing import FakeClock

SCRIPT = "<script>alert(1)</script>"
FEATURES = ["age", "income", SCRIPT]
WINDOW = (1400, 3000)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


# ------------------------------------------------------------------------------ the log


class RulesThenJsonl:
    """Evaluates alert rules on each snapshot before writing it, as a monitor with rules does."""

    name = "jsonl"

    def __init__(self, engine: AlertEngine, inner: JsonlEmitter) -> None:
        self.engine, self.inner = engine, inner

    def emit(self, snapshot: Snapshot) -> None:
        self.inner.emit(self.engine.evaluate(snapshot))

    def close(self) -> None:
        self.inner.close()


def write_log(path: Path, steps: int = 24) -> None:
    """Four minutes of a served model in fake time: slow calls, an error burst, drift, labels."""
    clock = FakeClock(start=1_750_000_000.0)
    rng = np.random.default_rng(7)
    w = np.array([1.0, -0.7, 0.9])
    train = rng.normal(0, 1, (3000, 3))
    reference = mlmon.Reference.from_data(train, feature_names=FEATURES, outputs=1 / (1 + np.exp(-train @ w)))
    rules = [
        Threshold("mlmon_error_ratio", above=0.05, min_samples=0, resolve_after=0, name="errors_high"),
        Threshold("mlmon_feature_drift_psi", labels={"feature": "*"}, above=0.25, min_samples=0,
                  resolve_after=0, name="feature_drift"),
    ]  # fmt: skip
    mon = mlmon.Monitor(
        "chromium_demo", version="7", task=mlmon.BinaryClassification(threshold=0.5), reference=reference,
        window=60.0, flush_interval=60.0, latency_budget=0.05, clock=clock, instance="pod-a:1",
        emitters=[RulesThenJsonl(AlertEngine(rules, sinks=[]), JsonlEmitter(path))],
    )  # fmt: skip
    faults = {"slow": 0.0, "fail": False}

    @mon.track(features="X", ids="ids")
    def predict(X: np.ndarray, ids: range) -> np.ndarray:
        clock.advance(0.01 + faults["slow"])
        if faults["fail"]:
            raise KeyError("feature")
        return np.asarray(1 / (1 + np.exp(-np.nan_to_num(X) @ w)))

    next_id = 0
    for step in range(steps):
        faults["slow"] = 0.09 if 5 <= step < 9 else 0.0
        joined = []
        for call in range(8):
            X = rng.normal(0, 1, (25, 3))
            X[:, 2] += 1.8 if step >= 12 else 0.0
            X[rng.random(25) < 0.05 * (1 + step % 3), 1] = np.nan
            ids = range(next_id, next_id + 25)
            next_id += 25
            faults["fail"] = 15 <= step < 19 and call % 3 == 0
            try:
                joined.append((ids, (rng.random(25) < predict(X, ids)).astype(int)))
            except KeyError:
                pass
        for ids, labels in joined:
            mon.log_feedback(list(ids), labels)
        clock.advance(10.0)
        mon.flush()
    mon.close()


# ------------------------------------------------------------------------------ chromium


def chromium_binary() -> str | None:
    for name in (os.environ.get("MLMON_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Crash reports and caches go under HOME / XDG dirs whatever --user-data-dir says: keep them
    # in the test's directory too.
    home = profile / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=90, check=False, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """(report.html, screenshot.png, dumped DOM) of one report, drawn once for the module."""
    binary = chromium_binary()
    if binary is None:
        skip_or_fail("chromium is not installed (apt-get install chromium; see scripts/install-test-servers.sh)")
        raise AssertionError("unreachable")
    tmp = tmp_path_factory.mktemp("chromium")
    log = tmp / "metrics.jsonl"
    write_log(log)
    html = tmp / "report.html"
    info = report.write(log, html)
    assert "alerts" in info.sections and "drift" in info.sections
    png = tmp / "report.png"
    url = html.resolve().as_uri()
    shot = run_chromium(binary, tmp / "profile-1", f"--screenshot={png}", f"--window-size={WINDOW[0]},{WINDOW[1]}", url)
    assert png.exists(), f"no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}"
    dom = run_chromium(binary, tmp / "profile-2", "--dump-dom", f"--window-size={WINDOW[0]},{WINDOW[1]}", url)
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    keep = os.environ.get("MLMON_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(png, keep)
    yield html, png, dom.stdout


# ------------------------------------------------------------------------------ PNG


def read_png(data: bytes) -> tuple[int, int, np.ndarray]:
    """Width, height and an (h, w, channels) uint8 array of an 8-bit RGB/RGBA/grey PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + size : pos + 12 + size])[0], kind
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + size
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0, (depth, interlace)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    stride = width * channels
    raw = zlib.decompress(b"".join(chunks))
    assert len(raw) == height * (stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) & 255
        elif kind == 2:  # Up
            cur = (line + prev) & 255
        else:  # Average and Paeth depend on the byte just decoded: byte by byte
            cur_b = bytearray(stride)
            lb, pb = line.tolist(), prev.tolist()
            for i in range(stride):
                a = cur_b[i - channels] if i >= channels else 0
                b = pb[i]
                if kind == 3:
                    cur_b[i] = (lb[i] + ((a + b) >> 1)) & 255
                else:
                    c = pb[i - channels] if i >= channels else 0
                    p = a + b - c
                    pa, pbb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pbb and pa <= pc else (b if pbb <= pc else c)
                    cur_b[i] = (lb[i] + pred) & 255
            cur = np.frombuffer(bytes(cur_b), dtype=np.uint8).astype(np.int32)
        out[y] = cur
        prev = cur
    return width, height, out.reshape(height, width, channels)


# ------------------------------------------------------------------------------ DOM


class Charts(HTMLParser):
    """Charts of a DOM: data-chart -> the data-series / data-row values inside it; all tags."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.charts: dict[str, list[str]] = {}
        self.tags: set[str] = set()
        self._current: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "svg" and a.get("data-chart"):
            self._current = str(a["data-chart"])
            self.charts[self._current] = []
        elif self._current is not None:
            for key in ("data-series", "data-row"):
                if a.get(key) is not None:
                    self.charts[self._current].append(str(a[key]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._current = None


# ------------------------------------------------------------------------------ tests


def test_chromium_draws_a_full_colourful_page(rendered: tuple[Path, Path, str]) -> None:
    _, png, _ = rendered
    width, height, pixels = read_png(png.read_bytes())
    assert WINDOW == (width, height)
    rgb = pixels[:, :, :3].astype(np.int64)
    codes = rgb[:, :, 0] << 16 | rgb[:, :, 1] << 8 | rgb[:, :, 2]
    assert np.unique(codes).size > 500  # charts, heat map, anti-aliased text
    background = (codes == codes[0, 0]).mean()
    assert background < 0.85, background
    # the top of the page, the middle and the bottom all have content: nothing collapsed
    for band in np.array_split(codes, 6, axis=0):
        assert np.unique(band).size > 20
    reds = np.sum((rgb[:, :, 0] > 180) & (rgb[:, :, 1] < 80) & (rgb[:, :, 2] < 80))
    assert reds > 200  # firing alerts, errors, drift cells


def test_the_browser_dom_holds_every_chart_and_its_series(rendered: tuple[Path, Path, str]) -> None:
    _, _, dom = rendered
    found = Charts(dom)
    assert {"p50", "p90", "p99", "max"} == set(found.charts["latency"])
    assert ["calls/s"] == found.charts["calls"]
    assert {"precision", "estimated precision", "recall", "estimated recall", "F1", "estimated F1"} == set(found.charts["estimated"])
    assert set(FEATURES) == set(found.charts["missing"])
    assert set(FEATURES) | {"(model outputs)"} == set(found.charts["drift-heatmap"])
    assert {"errors_high", f"feature_drift{{feature={SCRIPT}}}"} <= set(found.charts["alert-timeline"])
    assert ["KeyError"] == found.charts["errors-by-type"]
    for chart in ("cpu", "rss", "threads-fds", "output-quantiles", "class-ratio", "quality", "label-delay"):
        assert found.charts[chart], chart


def test_names_from_the_log_stay_text_in_the_browser(rendered: tuple[Path, Path, str]) -> None:
    _, _, dom = rendered
    found = Charts(dom)
    assert "script" not in found.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_polylines_survive_the_browser(rendered: tuple[Path, Path, str]) -> None:
    html, _, dom = rendered
    ours = re.findall(r'data-chart="calls".*?<polyline points="([^"]+)"', html.read_text(), flags=re.S)
    theirs = re.findall(r'data-chart="calls".*?<polyline points="([^"]+)"', dom, flags=re.S)
    assert ours and ours[0].split() == theirs[0].split()


# ------------------------------------------------------------------------------ segments

SEGMENTS = ("eu", "us", SCRIPT, 'a "quoted" <b>name</b>', "_other")


def write_segmented_log(path: Path) -> None:
    """Snapshots with the overall series and each segment's (the monitor's series plus a
    ``segment`` label), written by JsonlEmitter."""
    from mlmon.snapshot import Sample

    emitter = JsonlEmitter(path)
    for t in range(12):
        samples = [
            Sample.make("mlmon_calls_total", 50.0 * (t + 1)),
            Sample.make("mlmon_rows_total", 500.0 * (t + 1)),
            Sample.make("mlmon_rows_per_second", 50.0),
            Sample.make("mlmon_segments", len(SEGMENTS)),
            Sample.make("mlmon_segments_max", 4),
            Sample.make("mlmon_segment_overflow_rows_total", 7.0 * t),
        ]
        for k, seg in enumerate(SEGMENTS):
            samples += [
                Sample.make("mlmon_rows_total", 100.0 * (k + 1) * (t + 1), segment=seg),
                Sample.make("mlmon_rows_per_second", 10.0 * (k + 1) + t % 3, segment=seg),
                Sample.make("mlmon_error_ratio", 0.02 * k * (t > 6), segment=seg),
                Sample.make("mlmon_f1", 0.9 - 0.05 * k, segment=seg),
                Sample.make("mlmon_feature_drift_psi", 0.05 * k * t, feature="age", segment=seg),
            ]
        emitter.emit(Snapshot("segmented", None, "pod-a:1", 1_750_000_000.0 + 10 * t, 60.0, tuple(samples)))
    emitter.close()


def test_the_segments_section_in_the_browser(tmp_path: Path) -> None:
    binary = chromium_binary()
    if binary is None:
        skip_or_fail("chromium is not installed (apt-get install chromium; see scripts/install-test-servers.sh)")
        raise AssertionError("unreachable")
    log = tmp_path / "segments.jsonl"
    write_segmented_log(log)
    html = tmp_path / "segments.html"
    assert "segments" in report.write(log, html).sections
    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", f"--window-size={WINDOW[0]},{WINDOW[1]}", html.resolve().as_uri())
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    found = Charts(dom.stdout)
    assert "script" not in found.tags and "b" not in found.tags
    # each card's four small charts, drawn with the segment's lines
    for k in range(len(SEGMENTS)):
        for what in ("rows", "errors", "f1", "psi"):
            assert found.charts[f"seg{k}-{what}"], (k, what)
    cards = re.findall(r'<figure class="card seg-card[^"]*" data-segment="([^"]*)"', dom.stdout)
    assert 5 == len(cards) and "_other" == cards[-1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout
