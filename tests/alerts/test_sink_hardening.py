"""Sink hardening against real servers on loopback: total deadlines, redirects, bounded close,
callbacks that raise SystemExit, and the counters the engine emits."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import mlmon
from mlmon.alerts import AlertEngine, AlertEvent, CallbackSink, Threshold, WebhookSink
from mlmon.alerts.engine import NOTIFICATIONS
from mlmon.alerts.sinks import CallbackError
from mlmon.snapshot import Sample, Snapshot
from mlmon.testing import FakeClock


def event(rule: str = "err") -> AlertEvent:
    return AlertEvent(rule=rule, state="firing", metric="mlmon_error_ratio", value=0.2, model="fraud")


def read_request(rfile: Any) -> tuple[dict[str, str], bytes]:
    """Headers and body of one HTTP request from a socket file."""
    headers: dict[str, str] = {}
    rfile.readline()  # request line
    while True:
        line = rfile.readline(65537).decode("latin-1").strip()
        if not line:
            break
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return headers, rfile.read(int(headers.get("content-length", "0")))


class Drip:
    """A TCP server that reads the request, then answers a valid HTTP 200 one byte every
    ``interval`` seconds: each read gets a byte well within any per-read timeout."""

    def __init__(self, interval: float = 1.0) -> None:
        self.sent = 0
        self.requests = 0
        self.stop = threading.Event()
        drip = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                read_request(self.rfile)
                drip.requests += 1
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                for i in range(len(answer)):
                    try:
                        self.connection.sendall(answer[i : i + 1])
                    except OSError:
                        return  # the client hung up: what a deadline does
                    drip.sent += 1
                    if drip.stop.wait(interval):
                        return

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


class Web:
    """An HTTP server on ``host`` that answers each POST with ``status`` (and ``location``),
    recording paths, headers and bodies."""

    def __init__(self, host: str = "127.0.0.1", status: int = 204, location: str | None = None) -> None:
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                web.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def down_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- a total deadline per attempt -----------------------------------------------------------------
def test_a_server_answering_one_byte_a_second_is_given_up_at_the_deadline(servers: list[Any]) -> None:
    drip = Drip(interval=1.0)
    servers.append(drip)
    sink = WebhookSink(drip.url, timeout=1.5, retries=0)
    t0 = time.monotonic()
    sink.send(event())
    wait_until(lambda: sink.failed == 1)
    took = time.monotonic() - t0
    # Every read got a byte within 1 s, so a 1.5 s per-read timeout would never fire; the whole
    # answer would take 40 s. The total deadline ends it at 1.5 s.
    assert 1.4 <= took < 6.0, took
    assert drip.sent >= 1
    assert {"sent": 0, "failed": 0, "redirected": 0, "timeout": 1, "dropped": 0} == sink.counts()
    t1 = time.monotonic()
    sink.close()
    assert time.monotonic() - t1 < 0.5


def test_retries_of_a_slow_server_stay_within_attempts_times_deadline(servers: list[Any]) -> None:
    drip = Drip(interval=1.0)
    servers.append(drip)
    sink = WebhookSink(drip.url, timeout=0.5, retries=2, backoff=0.1, max_backoff=0.1)
    t0 = time.monotonic()
    sink.send(event())
    wait_until(lambda: sink.failed == 1)
    took = time.monotonic() - t0
    assert 3 == drip.requests
    assert 3 * 0.5 + 2 * 0.1 - 0.1 <= took < 3 * 0.5 + 2 * 0.1 + 1.5, took
    assert 1 == sink.timed_out
    sink.close()


def test_close_is_bounded_and_counts_the_in_flight_and_queued_events_as_dropped(servers: list[Any]) -> None:
    drip = Drip(interval=1.0)
    servers.append(drip)
    sink = WebhookSink(drip.url, timeout=30.0, retries=3)
    for i in range(3):
        sink.send(event(f"r{i}"))
    wait_until(lambda: drip.sent >= 1)  # the first is in flight, two are queued
    t0 = time.monotonic()
    sink.close(timeout=0.5)
    took = time.monotonic() - t0
    assert took < 0.5 + 0.25, took  # the documented bound, and scheduling slack
    wait_until(lambda: sum(sink.counts().values()) == 3, timeout=2.0)
    assert 3 == sink.dropped
    assert 0 == sink.sent


# -- redirects -------------------------------------------------------------------------------------
def test_a_redirect_is_not_followed_and_counts_as_redirected(servers: list[Any]) -> None:
    other = Web(host="127.0.0.2")
    here = Web(status=307, location=other.origin + "/stolen")
    servers += [other, here]
    sink = WebhookSink(here.origin + "/hook", headers={"Authorization": "Bearer s3cret"}, retries=3, backoff=0)
    sink.send(event())
    sink.close()
    assert 1 == len(here.seen)  # not retried either
    assert [] == other.seen
    assert (0, 1, 1) == (sink.sent, sink.redirected, sink.failed)


def test_followed_redirect_to_another_host_does_not_carry_credentials(servers: list[Any]) -> None:
    other = Web(host="127.0.0.2")
    here = Web(status=308, location=other.origin + "/moved")
    servers += [other, here]
    secret = {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y", "Cookie": "session=1"}
    sink = WebhookSink(here.origin + "/hook", headers=secret, follow_redirects=True)
    sink.send(event("moved"))
    sink.close()
    assert "Bearer s3cret" == here.seen[0][1]["authorization"]  # the configured origin gets it
    [(path, headers, body)] = other.seen
    assert ("/moved", "moved") == (path, body["rule"])  # the POST and its body went along
    assert not {"authorization", "x-api-key", "cookie"} & set(headers)
    assert "application/json" == headers["content-type"]
    assert (1, 0) == (sink.sent, sink.failed)


def test_followed_redirect_on_the_same_origin_keeps_the_headers(servers: list[Any]) -> None:
    target = Web()
    servers.append(target)
    # A second server on the same host and port is impossible; the redirecting one forwards
    # to a path of its own: make it redirect /hook -> /final and accept /final.
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(307 if self.path == "/hook" else 204)
            if self.path == "/hook":
                self.send_header("Location", "/final")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        sink = WebhookSink(url, headers={"Authorization": "Bearer s3cret"}, follow_redirects=True)
        sink.send(event())
        sink.close()
    finally:
        server.shutdown()
        server.server_close()
    assert [("/hook", "Bearer s3cret"), ("/final", "Bearer s3cret")] == seen
    assert 1 == sink.sent


@pytest.mark.parametrize("status", [301, 302, 303])
def test_redirects_that_would_turn_the_post_into_a_get_are_never_followed(servers: list[Any], status: int) -> None:
    other = Web()
    here = Web(status=status, location=other.origin + "/x")
    servers += [other, here]
    sink = WebhookSink(here.origin + "/hook", follow_redirects=True)
    sink.send(event())
    sink.close()
    assert ([], 1) == (other.seen, sink.redirected)


def test_a_redirect_loop_gives_up_after_three_hops(servers: list[Any]) -> None:
    here = Web(status=307, location="/hook")
    servers.append(here)
    sink = WebhookSink(here.origin + "/hook", follow_redirects=True, retries=2)
    sink.send(event())
    sink.close()
    assert (4, 1) == (len(here.seen), sink.redirected)


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match=r"url must not hold credentials") as info:
        WebhookSink("http://user:hunter2@127.0.0.1:9/hook")
    assert "hunter2" not in str(info.value)


# -- a server that is down, and the counters the engine emits --------------------------------------
def snap(t: float, ratio: float) -> Snapshot:
    return Snapshot("fraud", None, "h:1", t, 60.0, (Sample.make("mlmon_error_ratio", ratio),))


def notifications(samples: Any) -> dict[tuple[str, str], float]:
    out = {}
    for s in samples:
        name, value, labels = (s.name, s.value, dict(s.labels)) if isinstance(s, Sample) else s
        if name == NOTIFICATIONS:
            out[(labels["sink"], labels["outcome"])] = value
    return out


def test_the_engine_emits_the_webhook_counters_for_a_server_that_is_down(down_url: str) -> None:
    hook = WebhookSink(down_url, retries=1, backoff=0.0, timeout=0.5, name="pager")
    engine = AlertEngine(
        [Threshold("mlmon_error_ratio", above=0.1, min_samples=0, resolve_after=0)], sinks=[hook]
    )
    out = engine.evaluate(snap(10, 0.5))
    assert 0.0 == notifications(out.samples)[("pager", "failed")]  # queued, not yet given up
    engine.evaluate(snap(20, 0.0))
    engine.close()
    got = notifications(engine.samples())
    assert {"sent": 0.0, "failed": 2.0, "redirected": 0.0, "timeout": 0.0, "dropped": 0.0} == {
        o: v for (s, o), v in got.items() if s == "pager"
    }
    # the next snapshot carries them once, replacing the previous values
    again = engine.evaluate(snap(30, 0.0))
    assert 5 == sum(1 for s in again.samples if s.name == NOTIFICATIONS)


# -- callbacks and other code of yours that raises BaseException -----------------------------------
@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_a_callback_raising_base_exception_is_counted_and_the_engine_keeps_working(exc: BaseException) -> None:
    got: list[str] = []

    def leave(e: AlertEvent) -> None:
        raise exc

    engine = AlertEngine(
        [Threshold("mlmon_error_ratio", above=0.1, min_samples=0, resolve_after=0)],
        sinks=[CallbackSink(leave, name="exit"), CallbackSink(lambda e: got.append(e.state), name="ok")],
    )
    for t, v in ((10, 0.5), (20, 0.0), (30, 0.5)):
        engine.evaluate(snap(t, v))
    assert ["firing", "resolved", "firing"] == got
    assert {"sink:exit": 3} == engine.errors
    counts = notifications(engine.samples())
    assert (0.0, 3.0, 3.0) == (counts[("exit", "sent")], counts[("exit", "failed")], counts[("ok", "sent")])


def test_callback_sink_turns_a_base_exception_into_callback_error() -> None:
    def leave(e: AlertEvent) -> None:
        raise SystemExit(2)

    sink = CallbackSink(leave)
    with pytest.raises(CallbackError) as info:
        sink.send(event())
    assert isinstance(info.value.__cause__, SystemExit)
    assert {"sent": 0, "failed": 1} == sink.counts()


def test_a_sink_of_your_own_raising_system_exit_is_counted_by_the_engine() -> None:
    class Mine:
        name = "mine"

        def send(self, event: AlertEvent) -> None:
            if event.state == "firing":
                raise SystemExit(1)

        def close(self) -> None:
            raise KeyboardInterrupt

    engine = AlertEngine([Threshold("mlmon_error_ratio", above=0.1, min_samples=0, resolve_after=0)], sinks=[Mine()])
    engine.evaluate(snap(10, 0.5))
    engine.evaluate(snap(20, 0.0))
    engine.close()
    assert {"sink:mine": 2} == engine.errors  # the send, and the close
    counts = notifications(engine.samples())
    assert (1.0, 1.0) == (counts[("mine", "sent")], counts[("mine", "failed")])


def test_a_reference_value_raising_system_exit_counts_as_a_rule_error() -> None:
    from mlmon.alerts import PercentDrop

    def reference(metric: str, labels: object) -> float:
        raise SystemExit(1)

    rule = PercentDrop("mlmon_error_ratio", percent=10, baseline="reference", min_samples=0, name="ref")
    engine = AlertEngine([rule], sinks=(), reference_value=reference)
    out = engine.evaluate(snap(10, 0.5))
    assert {"rule:ref": 1} == engine.errors
    assert 0.0 == out.get("mlmon_alert_firing", rule="ref")


def test_a_payload_function_raising_system_exit_does_not_stop_the_webhook_thread(servers: list[Any]) -> None:
    web = Web()
    servers.append(web)

    def payload(e: AlertEvent) -> dict[str, str]:
        if e.rule == "bad":
            raise SystemExit(1)
        return {"rule": e.rule}

    sink = WebhookSink(web.origin + "/hook", payload=payload)
    sink.send(event("bad"))
    sink.send(event("good"))
    sink.close()
    assert [{"rule": "good"}] == [body for _, _, body in web.seen]
    assert (1, 1) == (sink.sent, sink.failed)


def test_a_monitor_whose_callback_raises_system_exit_keeps_flushing_and_emits_the_counts() -> None:
    def leave(e: AlertEvent) -> None:
        raise SystemExit(1)

    mon = mlmon.Monitor(
        "fraud",
        clock=FakeClock(),
        rules=[Threshold("mlmon_calls_total", above=0, min_samples=0, name="any_call")],
        alert_sinks=[CallbackSink(leave, name="exit")],
    )
    try:
        with mon.track():
            pass
        first = mon.flush()  # the rule fires; the callback raises SystemExit on this thread
        assert 1.0 == first.get("mlmon_alert_firing", rule="any_call")
        second = mon.flush()
        assert 1.0 == second.get(NOTIFICATIONS, sink="exit", outcome="failed")
        assert 1.0 == second.get("mlmon_internal_errors_total", stage="alerts:sink:exit")
    finally:
        mon.close()
