"""MlmonCollector: mlmon's series in an application's own prometheus_client registry.

Read back with prometheus_client's own parser, served by ``start_http_server`` and
``make_asgi_app`` (under uvicorn) and by a gunicorn app in prometheus_client's multiprocess mode,
and scraped by the real Prometheus: mlmon's series sit next to the application's, and Prometheus's
``instance`` is the scrape target (no ``exported_instance``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import servers
from _web import free_listener, serving

import mlmon
from mlmon.integrations.prometheus_client import MlmonCollector, build_families, mark_process_dead
from mlmon.snapshot import Sample, Snapshot
from mlmon.testing import FakeClock

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, Counter, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def parse(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def values(family: Any, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if name is None or s.name == name
    }


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def tracked_monitor(registry: Any, clock: FakeClock | None = None, **kwargs: Any) -> tuple[mlmon.Monitor, MlmonCollector]:
    collector = MlmonCollector(registry, **kwargs)
    mon = mlmon.Monitor(
        "fraud", version="v2", instance="web1:7", emitters=[collector], clock=clock,
        flush_interval=60.0, window=60.0,
    )  # fmt: skip
    return mon, collector


def run_calls(mon: mlmon.Monitor, clock: FakeClock) -> list[float]:
    def predict(seconds: float) -> float:
        clock.advance(seconds)
        return seconds

    tracked = mon.track(predict)
    latencies = [0.004] * 6 + [0.03] * 3 + [0.8]
    for s in latencies:
        tracked(s)
    return latencies


def test_the_registry_serves_mlmon_next_to_the_application() -> None:
    registry = CollectorRegistry()
    app_requests = Counter("app_requests", "Requests served.", ["route"], registry=registry)
    clock = FakeClock()
    mon, _ = tracked_monitor(registry, clock)
    latencies = run_calls(mon, clock)
    app_requests.labels(route="/predict").inc(10)
    assert "mlmon_calls_total" not in generate_latest(registry).decode()  # nothing emitted yet
    snap = mon.flush()
    fams = parse(generate_latest(registry).decode())

    assert values(fams["app_requests"], "app_requests_total") == {(("route", "/predict"),): 10.0}
    calls = fams["mlmon_calls"]
    assert calls.type == "counter"
    assert values(calls) == {(("model", "fraud"), ("version", "v2")): 10.0}
    hist = fams["mlmon_latency_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets["+Inf"] == 10.0
    for le, count in buckets.items():
        assert count == sum(1 for x in latencies if x <= float(le)), le
    (total,) = [s.value for s in hist.samples if s.name == "mlmon_latency_seconds_sum"]
    assert math.isclose(total, math.fsum(latencies), rel_tol=1e-9)
    window = fams["mlmon_latency_window_seconds"]
    assert window.type == "summary"
    assert {s.labels["quantile"] for s in window.samples} >= {"0.5", "0.99"}
    # Every series has model and version, none has mlmon's instance (Prometheus sets its own).
    for fam in fams.values():
        if fam.name.startswith("mlmon_"):
            for s in fam.samples:
                assert s.labels["model"] == "fraud" and "instance" not in s.labels, s
    assert len([s for f in fams.values() if f.name.startswith("mlmon_") for s in f.samples]) >= len(
        [s for s in snap.samples if s.name != "mlmon_latency_seconds_bucket"]
    )
    mon.close()
    assert "mlmon_" not in generate_latest(registry).decode()
    assert "app_requests_total" in generate_latest(registry).decode()


def test_the_default_registry_and_an_instance_label() -> None:
    mon = mlmon.Monitor("churn", instance="pod-3:12", emitters=[MlmonCollector(instance_label="mlmon_instance")])
    mon.track(lambda x: x)(1)
    mon.flush()
    fams = parse(generate_latest(prometheus_client.REGISTRY).decode())
    assert values(fams["mlmon_calls"]) == {(("mlmon_instance", "pod-3:12"), ("model", "churn")): 1.0}
    mon.close()
    assert "mlmon_calls_total" not in generate_latest(prometheus_client.REGISTRY).decode()


def test_start_http_server_and_the_real_prometheus(
    prometheus_factory: Callable[..., servers.Prometheus],
) -> None:
    registry = CollectorRegistry()
    app_requests = Counter("app_requests", "Requests served.", registry=registry)
    port = servers.free_port()
    server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        clock = FakeClock()
        mon, _ = tracked_monitor(registry, clock)
        run_calls(mon, clock)
        app_requests.inc(4)
        mon.flush()
        prom = prometheus_factory([f"127.0.0.1:{port}"])
        (series,) = prom.wait_for_query('mlmon_calls_total{model="fraud"}')
        labels = series["metric"]
        assert labels["instance"] == f"127.0.0.1:{port}"  # the scrape target, as for app_requests
        assert "exported_instance" not in labels and labels["version"] == "v2"
        assert float(series["value"][1]) == 10.0
        assert prom.wait_for_value("app_requests_total", 4.0) == 4.0
        assert prom.wait_for_value("sum(mlmon_latency_seconds_count)", 10.0) == 10.0
        p90 = prom.value("histogram_quantile(0.9, sum by (le) (mlmon_latency_seconds_bucket))")
        assert p90 is not None and 0.0 < p90 <= 1.0
        mon.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_make_asgi_app_under_uvicorn(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    (tmp_path / "asgi_app.py").write_text(textwrap.dedent("""
        import mlmon
        from prometheus_client import Counter, make_asgi_app
        from mlmon.integrations.prometheus_client import MlmonCollector

        REQUESTS = Counter("app_requests", "Requests served.")
        mon = mlmon.Monitor("fraud", emitters=[MlmonCollector()], flush_interval=0.2, window=10.0)
        predict = mon.track(lambda x: 2 * x)
        metrics = make_asgi_app()

        async def app(scope, receive, send):
            if scope["type"] == "http" and scope["path"].startswith("/metrics"):
                return await metrics(scope, receive, send)
            if scope["type"] != "http":
                return
            REQUESTS.inc()
            predict(1)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
    """))
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    cmd = [sys.executable, "-m", "uvicorn", "--fd", str(listener.fileno()), "asgi_app:app"]
    with serving(tmp_path, cmd, listener, {}) as proc:
        wait_until(lambda: answers(url + "/"), proc)
        for _ in range(6):
            scrape(url + "/predict")
        fams = wait_until(lambda: calls_at(url + "/metrics", 7.0), proc)  # 6 + the probe
        assert values(fams["app_requests"], "app_requests_total") == {(): 7.0}
        proc.terminate()
        proc.wait(10)


def answers(url: str) -> bool:
    try:
        scrape(url)
    except OSError:
        return False
    return True


def calls_at(url: str, expected: float) -> dict[str, Any] | None:
    try:
        fams = parse(scrape(url))
    except OSError:
        return None
    calls = fams.get("mlmon_calls")
    if calls is None or sum(s.value for s in calls.samples) != expected:
        return None
    return fams


def wait_until(check: Callable[[], Any], proc: subprocess.Popen[bytes], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert proc.poll() is None, f"the server exited ({proc.returncode})"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


GUNICORN_APP = """
import json, os
import mlmon
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest, multiprocess
from mlmon.integrations.prometheus_client import MlmonCollector

REQUESTS = Counter("app_requests", "Requests served.")
mon = mlmon.Monitor("fraud", emitters=[MlmonCollector()], flush_interval=0.2, window=10.0)
predict = mon.track(lambda x: 2 * x)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # the application's series, every worker
        MlmonCollector(registry)                     # mlmon's series, every worker
        data = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [data]
    REQUESTS.inc()
    predict(1)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"pid": os.getpid()}).encode()]
"""

GUNICORN_CONF = """
from prometheus_client import multiprocess
from mlmon.integrations.gunicorn import on_exit, worker_exit  # noqa: F401
from mlmon.integrations.prometheus_client import mark_process_dead


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
    mark_process_dead(worker.pid)
"""


@pytest.fixture
def gunicorn_multiprocess(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    pytest.importorskip("gunicorn")
    (tmp_path / "mp_app.py").write_text(GUNICORN_APP)
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    listener = free_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    cmd = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"fd://{listener.fileno()}",
           "--config", "gunicorn.conf.py", "mp_app:app"]  # fmt: skip
    with serving(tmp_path, cmd, listener, {"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}) as proc:
        yield proc, url, mp_dir
        proc.terminate()
        proc.wait(20)


def test_multiprocess_mode_serves_every_workers_series(
    gunicorn_multiprocess: tuple[subprocess.Popen[bytes], str, Path],
    prometheus_factory: Callable[..., servers.Prometheus],
) -> None:
    proc, url, mp_dir = gunicorn_multiprocess
    wait_until(lambda: answers(url + "/predict"), proc)  # one call (and one app request)
    pids = set()
    for _ in range(39):
        with urllib.request.urlopen(url + "/predict", timeout=10) as resp:
            pids.add(json.loads(resp.read())["pid"])
    fams = wait_until(lambda: calls_at(url + "/metrics", 40.0), proc)
    calls = fams["mlmon_calls"]
    instances = {s.labels["mlmon_instance"] for s in calls.samples}
    assert len(instances) == len(calls.samples)  # one series per worker, never summed blindly
    assert {int(i.rsplit(":", 1)[1]) for i in instances} >= pids
    assert values(fams["app_requests"], "app_requests_total") == {(): 40.0}  # prometheus_client's sum
    # every worker served has its file (a worker may also have written its first file after the
    # scrape: files can only be more, never fewer)
    assert {p.name for p in mp_dir.glob("mlmon_snapshot_*.json")} >= {
        f"mlmon_snapshot_{int(i.rsplit(':', 1)[1])}.json" for i in instances
    }
    target = url.removeprefix("http://")
    prom = prometheus_factory([target])
    assert prom.wait_for_value("sum(mlmon_calls_total)", 40.0) == 40.0
    (series, *_) = prom.wait_for_query("mlmon_calls_total")
    assert series["metric"]["instance"] == target and "exported_instance" not in series["metric"]


def test_mark_process_dead_removes_a_killed_workers_file(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    collector = MlmonCollector(registry, multiprocess_dir=tmp_path)
    mon = mlmon.Monitor("m", instance="h:1", emitters=[collector])
    mon.track(lambda x: x)(1)
    mon.flush()
    own = tmp_path / f"mlmon_snapshot_{os.getpid()}.json"
    assert own.exists()
    # A worker that was killed left its file: served until marked dead.
    dead = Snapshot("m", None, "h:99999", time.time(), 60.0, (Sample.make("mlmon_calls_total", 5),))
    (tmp_path / "mlmon_snapshot_99999.json").write_text(dead.to_json() + "\n")
    fams = parse(generate_latest(registry).decode())
    assert sum(values(fams["mlmon_calls"]).values()) == 6.0
    assert mark_process_dead(99999, tmp_path) is True
    assert mark_process_dead(99999, tmp_path) is False
    fams = parse(generate_latest(registry).decode())
    assert sum(values(fams["mlmon_calls"]).values()) == 1.0
    # A file that is not a snapshot is skipped and counted; the scrape still answers.
    (tmp_path / "mlmon_snapshot_77777.json").write_text("{not json\n")
    fams = parse(generate_latest(registry).decode())
    assert sum(values(fams["mlmon_calls"]).values()) == 1.0
    assert ("mlmon_internal_errors_total", 1.0, {"stage": "prometheus_client_read"}) in collector.self_metrics()
    mon.close()
    assert not own.exists()


def test_hostile_series_are_left_out_and_the_scrape_answers() -> None:
    registry = CollectorRegistry()
    collector = MlmonCollector(registry)
    collector.emit(Snapshot("m", None, "h:1", 1.0, 60.0, (
        Sample.make("mlmon_calls_total", 2),
        Sample("mlmon_feature_mean", (("feature", "bad\ud800"),), 1.0),
        Sample("mlmon_feature_mean", (("feature", 'quote"and\\slash\nnewline'),), 3.0),
        Sample("mlmon_feature_mean", (("instance", "x"),), 4.0),
    )))  # fmt: skip
    fams = parse(generate_latest(registry).decode())
    assert values(fams["mlmon_feature_mean"]) == {
        (("feature", 'quote"and\\slash\nnewline'), ("model", "m")): 3.0,
        (("exported_instance", "x"), ("model", "m")): 4.0,
    }
    generate_latest(registry)  # a second scrape does not count the same series again
    assert ("mlmon_dropped_total", 1.0, {"buffer": "prometheus_client_series"}) in collector.self_metrics()
    collector.close()


def test_configuration_errors(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    with pytest.raises(TypeError, match="registry"):
        MlmonCollector(object())
    with pytest.raises(ValueError, match="multiprocess_dir"):
        MlmonCollector(registry, multiprocess_dir=tmp_path / "missing")
    for bad in ("instance", "le", "1abc", "__x", "a-b"):
        with pytest.raises(ValueError, match="instance_label"):
            MlmonCollector(registry, instance_label=bad)
    collector = MlmonCollector(registry)
    # Held: a monitor nobody references may be collected (and close the collector) at any time.
    first = mlmon.Monitor("m", version="1", emitters=[collector])
    with pytest.raises(ValueError, match="already uses this MlmonCollector"):
        mlmon.Monitor("m", version="1", instance="other:2", emitters=[collector])
    first.close()
    collector.close()


def test_families_name_the_histogram_and_counters_like_the_prometheus_emitter() -> None:
    from mlmon.emitters.prometheus import render_exposition

    snap = Snapshot("m", "1", "h:1", 1.0, 60.0, (
        Sample.make("mlmon_calls_total", 3),
        Sample.make("mlmon_latency_seconds_bucket", 2, le="0.1"),
        Sample.make("mlmon_latency_seconds_sum", 0.25),
        Sample.make("mlmon_latency_seconds_count", 3),
        Sample.make("mlmon_latency_seconds", 0.2, quantile="0.99"),
        Sample.make("mlmon_output_count", 7),
    ))  # fmt: skip
    families, bad = build_families([snap], "instance_id")
    ours = {(f.name, f.type) for f in families}
    theirs = {(f.name, f.type) for f in text_string_to_metric_families(render_exposition([snap]))}
    assert ours == theirs and bad == 0
