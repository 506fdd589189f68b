"""PrometheusEmitter under hostile conditions: slow gateways, shared use, early disconnects,
forked children that exec, and names no exposition can carry."""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlmon.emitters.prometheus import PrometheusEmitter
from mlmon.snapshot import Sample, Snapshot


def snap(*samples: Sample, model: str = "fraud", version: str | None = None) -> Snapshot:
    return Snapshot(model, version, "h:1", 0.0, 60.0, samples)


def scrape(em: PrometheusEmitter) -> str:
    with urllib.request.urlopen(em.url, timeout=5) as resp:
        return str(resp.read().decode("utf-8"))


# ----------------------------------------------------------------------------- slow Pushgateway


class SlowServer:
    """A TCP server on 127.0.0.1 that reads the request, then answers one byte per second
    (``trickle``) or never reads at all (``mode="deaf"``)."""

    def __init__(self, mode: str = "trickle") -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            if self.mode == "trickle":
                threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if self.stop.wait(1.0):
                    return
                conn.send(bytes([byte]))
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer()
    yield server
    server.close()


def test_push_to_a_trickling_gateway_stops_at_the_total_deadline(slow_server: SlowServer) -> None:
    em = PrometheusEmitter(
        port=0, push_url=f"http://127.0.0.1:{slow_server.port}", push_timeout=1.5
    )
    try:
        start = time.monotonic()
        with pytest.raises(OSError, match="push to"):
            em.emit(snap(Sample.make("mlmon_calls_total", 3)))
        elapsed = time.monotonic() - start
        assert 1.4 <= elapsed < 2.5, elapsed
        assert em.stats["push_failures"] == 1
        assert ("mlmon_dropped_total", 1.0, {"buffer": "prometheus_push"}) in em.self_metrics()
        assert "mlmon_calls_total" in scrape(em)  # the pull endpoint is unaffected
    finally:
        start = time.monotonic()
        em.close()
        assert time.monotonic() - start < 5.0  # bounded (it used to block for good)


def test_push_to_a_gateway_that_never_reads_stops_at_the_deadline() -> None:
    deaf = SlowServer(mode="deaf")
    em = PrometheusEmitter(port=0, push_url=f"http://127.0.0.1:{deaf.port}", push_timeout=1.0)
    # A body far larger than the socket buffers: the send itself must give up at the deadline.
    big = tuple(Sample.make("mlmon_feature_mean", i, feature=f"f{i}") for i in range(60_000))
    try:
        start = time.monotonic()
        with pytest.raises(OSError, match="push to"):
            em.emit(snap(*big))
        assert time.monotonic() - start < 5.0  # bounded (it used to block for good)
        assert em.stats["push_failures"] == 1
    finally:
        em.close()
        deaf.close()


# ----------------------------------------------------------------------------- sharing


def test_shared_emitter_stops_only_when_the_last_opener_releases() -> None:
    em = PrometheusEmitter(port=0)
    em.open("fraud", None, "h:1")
    em.open("churn", None, "h:1")
    url = em.url
    em.emit(snap(Sample.make("mlmon_calls_total", 3), model="fraud"))
    em.emit(snap(Sample.make("mlmon_calls_total", 5), model="churn"))
    em.release("fraud", None, "h:1")
    body = scrape(em)
    assert 'model="churn"' in body and 'model="fraud"' not in body  # fraud's series went with it
    em.emit(snap(Sample.make("mlmon_calls_total", 6), model="churn"))  # still open for churn
    em.release("churn", None, "h:1")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    with pytest.raises(RuntimeError, match="closed"):
        em.emit(snap(Sample.make("mlmon_calls_total", 7), model="churn"))


def test_plain_close_ends_one_opener_at_a_time() -> None:
    em = PrometheusEmitter(port=0)
    em.open("fraud", "v1", "h:1")
    em.open("fraud", "v2", "h:1")  # another version is another identity
    em.emit(snap(Sample.make("mlmon_calls_total", 3)))
    em.close()
    assert "mlmon_calls_total" in scrape(em)  # one opener left
    url = em.url
    em.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    em.close()  # idempotent


def test_same_identity_twice_is_refused_naming_the_model() -> None:
    em = PrometheusEmitter(port=0)
    try:
        em.open("fraud", "v1", "h:1")
        with pytest.raises(ValueError, match="'fraud version v1'"):
            em.open("fraud", "v1", "h:1")
        em.open("fraud", "v1", "h:2")  # another process identity is fine
    finally:
        em.release("fraud", "v1", "h:1")
        em.release("fraud", "v1", "h:2")
    with pytest.raises(RuntimeError):
        em.open("fraud", "v1", "h:1")


def test_never_opened_emitter_closes_at_first_close() -> None:
    em = PrometheusEmitter(port=0)
    url = em.url
    em.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_open_emitter_helper_calls_the_hook_when_present() -> None:
    from mlmon.emitters.base import close_emitter, open_emitter
    from mlmon.emitters.memory import InMemoryEmitter

    mem = InMemoryEmitter()
    open_emitter(mem, "fraud", None, "h:1")  # no hook: nothing happens
    close_emitter(mem, "fraud", None, "h:1")
    assert mem.closed
    em = PrometheusEmitter(port=0)
    open_emitter(em, "fraud", None, "h:1")
    open_emitter(em, "churn", None, "h:1")
    with pytest.raises(ValueError, match="fraud"):
        open_emitter(em, "fraud", None, "h:1")
    close_emitter(em, "fraud", None, "h:1")
    em.emit(snap(Sample.make("mlmon_calls_total", 1), model="churn"))
    close_emitter(em, "churn", None, "h:1")
    with pytest.raises(RuntimeError):
        em.emit(snap(Sample.make("mlmon_calls_total", 1), model="churn"))


# ----------------------------------------------------------------------------- endpoint noise


def _abort_mid_answer(em: PrometheusEmitter) -> None:
    # Ask, then reset the connection without reading the (large) answer.
    with socket.create_connection(("127.0.0.1", em.port), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.recv(1)


def test_clients_that_go_away_early_are_counted_not_printed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    em = PrometheusEmitter(port=0)
    try:
        em.emit(
            snap(*(Sample.make("mlmon_feature_mean", i, feature=f"f{i}") for i in range(40_000)))
        )
        for _ in range(5):
            _abort_mid_answer(em)
        deadline = time.monotonic() + 10
        while em.stats["disconnects"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert em.stats["disconnects"] == 5
        assert em.stats["scrape_errors"] == 0
        assert (
            "mlmon_internal_errors_total",
            5.0,
            {"stage": "prometheus_disconnect"},
        ) in em.self_metrics()
        assert "mlmon_feature_mean" in scrape(em)  # later scrapes are served
    finally:
        em.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err


def test_real_scrape_failures_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    em = PrometheusEmitter(port=0)
    try:
        server = em._server
        assert server is not None

        def broken() -> bytes:
            raise RuntimeError("renderer bug")

        server.body = broken
        caplog.set_level(logging.WARNING, logger="mlmon.emitters.prometheus")
        for _ in range(3):
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                urllib.request.urlopen(em.url, timeout=5).read()
        assert em.stats["scrape_errors"] == 3
        logged = [r for r in caplog.records if "endpoint failed" in r.getMessage()]
        assert len(logged) == 1
        assert ("mlmon_internal_errors_total", 3.0, {"stage": "prometheus_scrape"}) in (
            em.self_metrics()
        )
    finally:
        em.close()


# ----------------------------------------------------------------------------- fork + exec

_FORK_HOOKED: weakref.WeakSet[PrometheusEmitter] = weakref.WeakSet()
_HOOK_INSTALLED = False


def _after_fork_hooks() -> None:  # pragma: no cover - runs in children
    for em in list(_FORK_HOOKED):
        em.after_fork()


def hook_after_fork(em: PrometheusEmitter) -> None:
    """What a monitor does: call ``after_fork()`` in every forked child."""
    global _HOOK_INSTALLED
    if not _HOOK_INSTALLED:
        os.register_at_fork(after_in_child=_after_fork_hooks)
        _HOOK_INSTALLED = True
    _FORK_HOOKED.add(em)


def test_children_that_exec_leave_no_file_sd_target(tmp_path: Path) -> None:
    em = PrometheusEmitter(port=0, file_sd_dir=tmp_path)
    hook_after_fork(em)
    try:
        em.emit(snap(Sample.make("mlmon_calls_total", 1)))
        assert [p.name for p in tmp_path.iterdir()] == [f"mlmon-{os.getpid()}.json"]
        for _ in range(50):
            subprocess.run(
                [sys.executable, "-c", "pass"], preexec_fn=lambda: None, check=True, timeout=30
            )
        assert [p.name for p in tmp_path.iterdir()] == [f"mlmon-{os.getpid()}.json"]
    finally:
        em.close()
        _FORK_HOOKED.discard(em)
    assert list(tmp_path.iterdir()) == []


def test_forked_child_serves_its_own_endpoint_on_first_emit(tmp_path: Path) -> None:
    em = PrometheusEmitter(port=0, file_sd_dir=tmp_path)
    hook_after_fork(em)
    parent_port = em.port
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            files_before = len(list(tmp_path.iterdir()))
            em.emit(snap(Sample.make("mlmon_calls_total", 7)))
            body = scrape(em)
            files_after = len(list(tmp_path.iterdir()))
            ok = (
                files_before == 1
                and files_after == 2
                and em.port != parent_port
                and 'mlmon_calls_total{model="fraud",instance="h:1"} 7' in body
            )
            em.close()
            ok = ok and len(list(tmp_path.iterdir())) == 1
            os.write(w, b"ok" if ok else b"no")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.read(r, 2) == b"ok"
        assert [p.name for p in tmp_path.iterdir()] == [f"mlmon-{os.getpid()}.json"]
    finally:
        os.close(r)
        em.close()
        _FORK_HOOKED.discard(em)


# ----------------------------------------------------------------------------- hostile names


HOSTILE = ["\ud800", "a\x00b", "x" * 5000, "bad\udfff tail"]


def test_hostile_label_values_are_skipped_and_counted_alone() -> None:
    em = PrometheusEmitter(port=0)
    try:
        samples = [Sample.make("mlmon_feature_mean", 1.0, feature=v) for v in HOSTILE]
        samples += [
            Sample.make("mlmon_feature_mean", 2.0, feature="new\nline"),
            Sample.make("mlmon_feature_mean", math.nan, feature="nan"),
            Sample.make("mlmon_feature_mean", math.inf, feature="inf"),
            Sample.make("mlmon_calls_total", 3),
        ]
        em.emit(snap(*samples))
        body = scrape(em)
        assert 'feature="new\\nline"} 2' in body
        assert 'feature="nan"} NaN' in body and 'feature="inf"} +Inf' in body
        assert 'mlmon_calls_total{model="fraud",instance="h:1"} 3' in body
        assert em.stats["bad_series"] == len(HOSTILE)
        assert ("mlmon_dropped_total", 4.0, {"buffer": "prometheus_series"}) in em.self_metrics()
        # Later emits (this monitor's and others') keep working: the endpoint never freezes.
        em.emit(snap(Sample.make("mlmon_calls_total", 9), model="churn"))
        em.emit(snap(Sample.make("mlmon_calls_total", 4)))
        body = scrape(em)
        assert (
            'model="churn"' in body and 'mlmon_calls_total{model="fraud",instance="h:1"} 4' in body
        )
    finally:
        em.close()


def test_hostile_model_name_skips_that_snapshot_only() -> None:
    em = PrometheusEmitter(port=0)
    try:
        em.emit(snap(Sample.make("mlmon_calls_total", 3), model="churn"))
        em.emit(
            snap(Sample.make("mlmon_calls_total", 1), Sample.make("mlmon_up", 1), model="\ud800")
        )
        em.emit(snap(Sample.make("mlmon_calls_total", 5), model="churn"))
        body = scrape(em)
        assert 'mlmon_calls_total{model="churn",instance="h:1"} 5' in body
        assert em.stats["bad_series"] == 2
        body.encode("utf-8")
    finally:
        em.close()


def test_hostile_metric_name_and_non_numeric_value_are_skipped() -> None:
    em = PrometheusEmitter(port=0)
    try:
        bad_name = Sample("mlmon_custom\ud800", (), 1.0)
        bad_value = Sample("mlmon_up", (), "1; drop table")  # type: ignore[arg-type]
        em.emit(snap(bad_name, bad_value, Sample.make("mlmon_calls_total", 2)))
        assert 'mlmon_calls_total{model="fraud",instance="h:1"} 2' in scrape(em)
        assert em.stats["bad_series"] == 2
    finally:
        em.close()


def test_https_push_to_a_peer_that_never_answers_the_handshake_stops_at_the_deadline() -> None:
    deaf = SlowServer(mode="deaf")  # accepts, never sends a ServerHello
    em = PrometheusEmitter(port=0, push_url=f"https://127.0.0.1:{deaf.port}", push_timeout=0.8)
    try:
        start = time.monotonic()
        with pytest.raises(OSError, match="push to"):
            em.emit(snap(Sample.make("mlmon_calls_total", 3)))
        assert 0.7 <= time.monotonic() - start < 4.0
        assert em.stats["push_failures"] == 1
    finally:
        em.close()
        deaf.close()


def test_push_to_a_closed_port_fails_fast_and_is_counted() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    em = PrometheusEmitter(port=0, push_url=f"http://127.0.0.1:{port}", push_timeout=5)
    try:
        start = time.monotonic()
        with pytest.raises(OSError, match="push to"):
            em.emit(snap(Sample.make("mlmon_calls_total", 3)))
        assert time.monotonic() - start < 3.0
        assert em.stats["push_failures"] == 1
    finally:
        em.close()


def test_release_of_an_identity_never_opened_ends_one_opener_only() -> None:
    em = PrometheusEmitter(port=0)
    em.open("fraud", None, "h:1")
    em.open("churn", None, "h:1")
    em.release("fraud", None, "h:999")  # e.g. a forked child's monitor: its instance changed
    em.emit(snap(Sample.make("mlmon_calls_total", 1), model="churn"))
    assert "mlmon_calls_total" in scrape(em)
    em.release("other", None, "h:1")
    with pytest.raises(RuntimeError):
        em.emit(snap(Sample.make("mlmon_calls_total", 1), model="churn"))
