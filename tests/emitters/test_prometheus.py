"""PrometheusEmitter: the text exposition served over real HTTP, pushes, forks."""

from __future__ import annotations

import base64
import http.server
import os
import select
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from mlmon.emitters.prometheus import CONTENT_TYPE, PrometheusEmitter, render_exposition
from mlmon.snapshot import CATALOG, Sample, Snapshot


def snap(
    *samples: Sample, model: str = "fraud", version: str | None = "v1", instance: str = "web1:7"
) -> Snapshot:
    return Snapshot(model, version, instance, 1_700_000_000.0, 60.0, tuple(samples))


def s(name: str, value: float, **labels: str) -> Sample:
    return Sample.make(name, value, **labels)


def get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
        exc.close()
        return exc.code, dict(exc.headers), body


@pytest.fixture
def em() -> Iterator[PrometheusEmitter]:
    e = PrometheusEmitter(port=0)
    yield e
    e.close()


def test_serves_the_latest_snapshot_in_text_format(em: PrometheusEmitter) -> None:
    em.emit(snap(s("mlmon_calls_total", 3), s("mlmon_error_ratio", 0.25)))
    em.emit(snap(s("mlmon_calls_total", 5), s("mlmon_error_ratio", 0.5)))
    status, headers, body = get(em.url)
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE
    assert body == (
        "# HELP mlmon_calls_total Calls of the tracked predict function.\n"
        "# TYPE mlmon_calls_total counter\n"
        'mlmon_calls_total{model="fraud",version="v1",instance="web1:7"} 5\n'
        "# HELP mlmon_error_ratio Share of the window's calls that raised.\n"
        "# TYPE mlmon_error_ratio gauge\n"
        'mlmon_error_ratio{model="fraud",version="v1",instance="web1:7"} 0.5\n'
    )


def test_empty_before_the_first_emit(em: PrometheusEmitter) -> None:
    assert get(em.url)[::2] == (200, "")


def test_port_zero_picks_a_free_port(em: PrometheusEmitter) -> None:
    assert em.port > 0
    assert f"http://127.0.0.1:{em.port}/metrics" == em.url


def test_other_paths_are_not_found(em: PrometheusEmitter) -> None:
    assert get(f"http://127.0.0.1:{em.port}/other")[0] == 404


def test_head_returns_headers_only(em: PrometheusEmitter) -> None:
    em.emit(snap(s("mlmon_up", 1)))
    req = urllib.request.Request(em.url, method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(em.render().encode())
        assert resp.read() == b""


def test_custom_path() -> None:
    e = PrometheusEmitter(port=0, path="/mlmon")
    try:
        e.emit(snap(s("mlmon_up", 1)))
        assert get(f"http://127.0.0.1:{e.port}/mlmon")[0] == 200
        assert get(f"http://127.0.0.1:{e.port}/metrics")[0] == 404
    finally:
        e.close()


def test_version_label_is_omitted_when_none() -> None:
    text = render_exposition([snap(s("mlmon_up", 1), version=None)])
    assert text.splitlines()[-1] == 'mlmon_up{model="fraud",instance="web1:7"} 1'


def test_histogram_is_one_family_with_cumulative_buckets_and_inf_equal_to_count() -> None:
    text = render_exposition(
        [
            snap(
                s("mlmon_latency_seconds_bucket", 5, le="0.5"),
                s("mlmon_latency_seconds_bucket", 2, le="0.1"),
                s("mlmon_latency_seconds_sum", 1.25),
                s("mlmon_latency_seconds_count", 6),
                s("mlmon_latency_seconds", 0.4, quantile="0.5"),
                s("mlmon_latency_seconds", 0.9, quantile="0.99"),
                version=None,
            )
        ]
    )
    assert text == (
        "# HELP mlmon_latency_seconds Cumulative latency histogram: calls with latency <= le.\n"
        "# TYPE mlmon_latency_seconds histogram\n"
        'mlmon_latency_seconds_bucket{model="fraud",instance="web1:7",le="0.1"} 2\n'
        'mlmon_latency_seconds_bucket{model="fraud",instance="web1:7",le="0.5"} 5\n'
        'mlmon_latency_seconds_bucket{model="fraud",instance="web1:7",le="+Inf"} 6\n'
        'mlmon_latency_seconds_sum{model="fraud",instance="web1:7"} 1.25\n'
        'mlmon_latency_seconds_count{model="fraud",instance="web1:7"} 6\n'
        '# HELP mlmon_latency_window_seconds Latency quantiles over the window (quantile="1" is the maximum).\n'
        "# TYPE mlmon_latency_window_seconds summary\n"
        'mlmon_latency_window_seconds{model="fraud",instance="web1:7",quantile="0.5"} 0.4\n'
        'mlmon_latency_window_seconds{model="fraud",instance="web1:7",quantile="0.99"} 0.9\n'
    )


def test_inf_bucket_in_the_snapshot_is_not_duplicated() -> None:
    text = render_exposition(
        [
            snap(
                s("mlmon_latency_seconds_bucket", 2, le="0.1"),
                s("mlmon_latency_seconds_bucket", 3, le="+Inf"),
                s("mlmon_latency_seconds_count", 3),
            )
        ]
    )
    assert text.count('le="+Inf"') == 1
    assert 'le="+Inf"} 3' in text


def test_count_is_derived_from_the_inf_bucket_when_missing() -> None:
    text = render_exposition([snap(s("mlmon_latency_seconds_bucket", 4, le="+Inf"))])
    assert 'mlmon_latency_seconds_count{model="fraud",version="v1",instance="web1:7"} 4' in text


def test_label_values_are_escaped() -> None:
    text = render_exposition(
        [snap(s("mlmon_feature_mean", 1, feature='a\\b"c\nd'), model='m"x', instance="h\n1")]
    )
    assert (
        'mlmon_feature_mean{model="m\\"x",version="v1",instance="h\\n1",feature="a\\\\b\\"c\\nd"} 1'
        in text
    )
    assert len(text.splitlines()) == 3  # HELP, TYPE, one sample: no injected line


def test_injection_attempt_stays_inside_one_label_value() -> None:
    text = render_exposition(
        [snap(s("mlmon_feature_mean", 1, feature="a b;c=d"), model="fraud model\nevil.metric 1 0")]
    )
    assert text.splitlines()[2] == (
        'mlmon_feature_mean{model="fraud model\\nevil.metric 1 0",version="v1",'
        'instance="web1:7",feature="a b;c=d"} 1'
    )
    assert len(text.splitlines()) == 3


def test_special_values() -> None:
    text = render_exposition(
        [snap(s("mlmon_output_mean", float("nan")), s("mlmon_output_variance", float("inf")))]
    )
    assert "} NaN\n" in text and "} +Inf\n" in text


def test_several_monitors_share_one_endpoint(em: PrometheusEmitter) -> None:
    em.emit(snap(s("mlmon_calls_total", 1), model="a"))
    em.emit(snap(s("mlmon_calls_total", 2), model="b"))
    em.emit(snap(s("mlmon_calls_total", 3), model="a"))
    body = get(em.url)[2]
    assert body.count("# TYPE mlmon_calls_total counter") == 1
    assert 'mlmon_calls_total{model="a",version="v1",instance="web1:7"} 3' in body
    assert 'mlmon_calls_total{model="b",version="v1",instance="web1:7"} 2' in body


def test_every_catalog_metric_renders_once_with_help_and_type() -> None:
    samples = []
    for name, info in CATALOG.items():
        labels = {k: ("0.5" if k in ("quantile", "le") else "x") for k in info.labels[:1]}
        samples.append(Sample.make(name, 1.0, **labels))
    text = render_exposition([snap(*samples)])
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert helps == types
    assert len(types) == len(set(types))


def test_scrapes_run_concurrently_with_emits(em: PrometheusEmitter) -> None:
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            for _ in range(20):
                status, _, body = get(em.url)
                assert status == 200
                assert body == "" or body.endswith("\n")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(100):
        em.emit(snap(*(s("mlmon_feature_mean", i, feature=f"f{j}") for j in range(50))))
    for t in threads:
        t.join()
    assert errors == []


def test_close_releases_the_port_and_is_idempotent() -> None:
    e = PrometheusEmitter(port=0)
    port = e.port
    e.close()
    e.close()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        e.emit(snap(s("mlmon_up", 1)))


def test_file_sd_file_names_the_endpoint_and_is_removed_at_close(tmp_path: Any) -> None:
    e = PrometheusEmitter(port=0, file_sd_dir=tmp_path)
    files = list(tmp_path.glob("mlmon-*.json"))
    assert [tmp_path / f"mlmon-{os.getpid()}.json"] == files
    import json

    assert [f"127.0.0.1:{e.port}"] == json.loads(files[0].read_text())[0]["targets"]
    e.close()
    assert list(tmp_path.glob("*")) == []


def test_forked_child_serves_on_its_own_port(em: PrometheusEmitter) -> None:
    em.emit(snap(s("mlmon_calls_total", 1), instance="h:parent"))
    port_r, port_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(port_r)
            os.close(done_w)
            em.after_fork()
            em.emit(snap(s("mlmon_calls_total", 7), instance="h:child"))
            os.write(port_w, str(em.port).encode() + b"\n")
            select.select([done_r], [], [], 10.0)  # serve until the parent has scraped
            code = 0
        finally:
            os._exit(code)
    os.close(port_w)
    os.close(done_r)
    try:
        with os.fdopen(port_r) as f:
            child_port = int(f.readline())
        assert child_port != em.port
        child_body = get(f"http://127.0.0.1:{child_port}/metrics")[2]
        assert 'instance="h:child"} 7' in child_body
        assert "h:parent" not in child_body
        parent_body = get(em.url)[2]
        assert 'instance="h:parent"} 1' in parent_body
    finally:
        os.close(done_w)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- push -----------------------------------------------------------------------------------------


class Recorder:
    """A tiny Pushgateway stand-in: records method, path and body of every request."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, str, bytes]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                recorder.requests.append(
                    ("PUT", self.path, self.headers["Content-Type"], self.rfile.read(n))
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_push_puts_the_snapshot_to_its_group() -> None:
    gw = Recorder()
    e = PrometheusEmitter(port=0, push_url=gw.url + "/", job="ml jobs")
    try:
        snapshot = snap(s("mlmon_calls_total", 3), instance="web1:7/x")
        e.emit(snapshot)
        assert [
            (
                "PUT",
                f"/metrics/job@base64/{b64('ml jobs')}/model@base64/{b64('fraud')}/instance@base64/{b64('web1:7/x')}",
                CONTENT_TYPE,
                render_exposition([snapshot]).encode(),
            )
        ] == gw.requests
        assert ("mlmon_dropped_total", 0.0, {"buffer": "prometheus_push"}) in e.self_metrics()
    finally:
        e.close()
        gw.close()


def test_failed_push_is_counted_and_raised() -> None:
    gw = Recorder(status=400)
    e = PrometheusEmitter(port=0, push_url=gw.url)
    try:
        with pytest.raises(OSError, match="push to"):
            e.emit(snap(s("mlmon_up", 1)))
        assert ("mlmon_dropped_total", 1.0, {"buffer": "prometheus_push"}) in e.self_metrics()
        assert "mlmon_up" in e.render()  # the pull endpoint still has it
    finally:
        e.close()
        gw.close()


def test_push_to_a_dead_gateway_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    e = PrometheusEmitter(port=0, push_url=f"http://127.0.0.1:{port}", push_timeout=1)
    try:
        with pytest.raises(OSError):
            e.emit(snap(s("mlmon_up", 1)))
    finally:
        e.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"port": -1}, "port"),
        ({"path": "metrics"}, "path"),
        ({"push_url": "ftp://x"}, "push_url"),
        ({"job": ""}, "job"),
        ({"file_sd_dir": "/nonexistent/dir"}, "file_sd_dir"),
    ],
)
def test_bad_configuration_raises_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PrometheusEmitter(**kwargs)  # type: ignore[arg-type]
