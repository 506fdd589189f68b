"""The shipped docs/carbon/storage-aggregation.conf rolls every mlmon series up the right way."""

from __future__ import annotations

import configparser
import functools
import re
from pathlib import Path

import pytest

from mlmon.naming import PathRenderer
from mlmon.snapshot import CATALOG

CONF = Path(__file__).resolve().parents[2] / "docs" / "carbon" / "storage-aggregation.conf"


@functools.cache
def sections() -> list[tuple[re.Pattern[str], str]]:
    parser = configparser.ConfigParser()
    parser.read(CONF)
    return [
        (re.compile(parser[s]["pattern"]), parser[s]["aggregationMethod"])
        for s in parser.sections()
    ]


def method_for(name: str) -> str:
    for pattern, method in sections():  # carbon: the first matching section wins
        if pattern.search(name):
            return method
    raise AssertionError(f"no section matches {name!r}")


def labels_of(name: str) -> tuple[tuple[str, str], ...]:
    info = CATALOG[name]
    if not info.labels:
        return ()
    key = info.labels[0]
    return ((key, {"quantile": "0.99", "le": "0.005"}.get(key, "p99")),)


def expected(name: str) -> str:
    info = CATALOG[name]
    if info.kind == "counter":
        return "last"
    if "quantile" in info.labels:
        return "max"
    return "average"


@pytest.mark.parametrize("style", ["path", "graphite_tags"])
@pytest.mark.parametrize("name", sorted(CATALOG))
def test_direct_graphite_series(style: str, name: str) -> None:
    renderer = PathRenderer("ml", style=style, instance_in_path=True)  # type: ignore[arg-type]
    key, _ = renderer.render("fraud", None, "web1:42", name, labels_of(name))
    want = expected(name)
    if name == "mlmon_output_count":  # a window gauge whose name ends like a counter
        want = "last"
    assert method_for(key) == want, key


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_statsd_series(name: str) -> None:
    key, _ = PathRenderer("ml").render("fraud", None, "web1:42", name, labels_of(name))
    if CATALOG[name].kind == "counter":
        assert method_for(f"stats_counts.{key}") == "sum"
        assert method_for(f"stats.{key}") == "average"  # per-second rate
    else:
        want = "max" if "quantile" in CATALOG[name].labels else "average"
        assert method_for(f"stats.gauges.{key}") == want


def test_statsd_timers() -> None:
    assert method_for("stats.timers.ml.fraud.mlmon_latency_ms.count") == "sum"
    assert method_for("stats.timers.ml.fraud.mlmon_latency_ms.upper_99") == "max"
    assert method_for("stats.timers.ml.fraud.mlmon_latency_ms.lower") == "min"
    assert method_for("stats.timers.ml.fraud.mlmon_latency_ms.mean_99") == "average"
