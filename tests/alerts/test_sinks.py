"""Sinks: logging levels, callbacks, and the webhook against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlmon.alerts import AlertEvent, AlertSink, CallbackSink, LoggingSink, WebhookSink


def event(state: str = "firing", severity: str = "warning", rule: str = "err") -> AlertEvent:
    return AlertEvent(
        rule=rule, state=state, metric="mlmon_error_ratio", value=0.2, threshold=0.05,  # type: ignore[arg-type]
        severity=severity, model="fraud", at=1.0, condition="mlmon_error_ratio > 0.05",
    )  # fmt: skip


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class Receiver:
    """An HTTP server that records each POST; fails the first ``fail_first`` with ``status``,
    and holds each request while ``gate`` is clear."""

    def __init__(self, fail_first: int = 0, status: int = 500) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0
        self.fail_first = fail_first
        self.status = status
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests += 1
                n = receiver.requests
                receiver.gate.wait(10)
                if n <= receiver.fail_first:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        r = Receiver(**kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def down_url() -> str:
    """A URL on a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- webhook -----------------------------------------------------------------------------------
def test_webhook_posts_each_event_as_json(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory()
    sink = WebhookSink(rx.url, headers={"Authorization": "Bearer t0k"})
    events = [event(rule=f"r{i}") for i in range(3)] + [event("resolved")]
    for e in events:
        sink.send(e)
    sink.close()
    assert [e.to_dict() for e in events] == rx.bodies
    assert (4, 0, 0) == (sink.sent, sink.failed, sink.dropped)
    assert "Bearer t0k" == rx.headers[0]["Authorization"]
    assert "application/json" == rx.headers[0]["Content-Type"]


def test_webhook_retries_server_errors_with_backoff(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory(fail_first=2)
    sink = WebhookSink(rx.url, retries=3, backoff=0.02)
    t0 = time.monotonic()
    sink.send(event())
    sink.close()
    assert (1, 0, 0) == (sink.sent, sink.failed, sink.dropped)
    assert 3 == rx.requests
    assert time.monotonic() - t0 >= 0.02 + 0.04  # waited backoff, then twice that


def test_webhook_gives_up_after_its_retries_and_counts_the_failure(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory(fail_first=100)
    sink = WebhookSink(rx.url, retries=2, backoff=0.0)
    sink.send(event())
    sink.close()
    assert (0, 1, 3) == (sink.sent, sink.failed, rx.requests)


def test_webhook_does_not_retry_a_client_error(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory(fail_first=100, status=400)
    sink = WebhookSink(rx.url, retries=3, backoff=0.0)
    sink.send(event())
    sink.close()
    assert (0, 1, 1) == (sink.sent, sink.failed, rx.requests)


def test_webhook_counts_failures_when_the_server_is_down(down_url: str) -> None:
    sink = WebhookSink(down_url, retries=1, backoff=0.0, timeout=0.5)
    for _ in range(3):
        sink.send(event())
    sink.close()
    assert (0, 3, 0) == (sink.sent, sink.failed, sink.dropped)


def test_a_full_queue_drops_and_counts_instead_of_blocking(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory()
    rx.gate.clear()  # the server holds every request
    sink = WebhookSink(rx.url, max_queue=2, timeout=5.0)
    sink.send(event(rule="first"))
    wait_until(lambda: rx.requests == 1)  # the first is in flight; the queue is empty again
    t0 = time.perf_counter()
    for i in range(5):
        sink.send(event(rule=f"r{i}"))
    assert time.perf_counter() - t0 < 0.05
    assert 3 == sink.dropped
    rx.gate.set()
    sink.close()
    assert (3, 0, 3) == (sink.sent, sink.failed, sink.dropped)
    assert ["first", "r0", "r1"] == [b["rule"] for b in rx.bodies]


def test_close_gives_up_after_its_timeout_and_counts_what_is_left(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory()
    rx.gate.clear()
    sink = WebhookSink(rx.url, timeout=0.3, retries=5, backoff=0.2)
    for i in range(4):
        sink.send(event(rule=f"r{i}"))
    t0 = time.monotonic()
    sink.close(timeout=0.2)
    assert time.monotonic() - t0 < 5.0
    assert 0 == sink.sent
    assert 4 == sink.failed + sink.dropped
    assert sink.dropped >= 3
    sink.send(event())  # after close: counted, never raised
    assert sink.dropped >= 4


def test_webhook_sends_only_the_states_it_was_asked_for(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory()
    sink = WebhookSink(rx.url, payload=lambda e: {"text": e.message})
    for state in ("pending", "firing", "inactive", "resolved"):
        sink.send(event(state))
    sink.close()
    assert [
        {"text": "[warning] fraud: err firing: mlmon_error_ratio > 0.05 (value 0.2)"},
        {"text": "[warning] fraud: err resolved: mlmon_error_ratio > 0.05 (value 0.2)"},
    ] == rx.bodies


def test_webhook_restarts_its_thread_in_a_forked_child(receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory()
    sink = WebhookSink(rx.url)
    sink.send(event(rule="parent"))
    wait_until(lambda: sink.sent == 1)
    sink._pid = -1  # what a child sees: the parent's pid
    sink.send(event(rule="child"))
    sink.close()
    assert ["parent", "child"] == [b["rule"] for b in rx.bodies]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "localhost:8080"}, "url must be an http:// or https:// URL"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"max_queue": 0}, "max_queue must be an int >= 1"),
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"backoff": -0.5}, "backoff must be a number of seconds >= 0"),
        ({"states": ["fired"]}, "states must be among"),
    ],
)
def test_webhook_configuration_is_validated(kwargs: dict[str, Any], message: str) -> None:
    args = {"url": "http://127.0.0.1:1/"} | kwargs
    with pytest.raises(ValueError, match=message):
        WebhookSink(**args)


# -- logging and callbacks -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "severity", "level"),
    [
        ("firing", "info", "INFO"),
        ("firing", "warning", "WARNING"),
        ("firing", "critical", "ERROR"),
        ("resolved", "critical", "INFO"),
        ("pending", "critical", "DEBUG"),
    ],
)
def test_logging_sink_level_follows_state_and_severity(
    caplog: pytest.LogCaptureFixture, state: str, severity: str, level: str
) -> None:
    sink = LoggingSink(states=None)
    with caplog.at_level(logging.DEBUG, logger="mlmon.alerts"):
        sink.send(event(state, severity))
    assert [level] == [r.levelname for r in caplog.records]


def test_logging_sink_skips_pending_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="mlmon.alerts"):
        LoggingSink().send(event("pending"))
    assert [] == caplog.records


def test_callback_sink_calls_the_function() -> None:
    got: list[AlertEvent] = []
    sink = CallbackSink(got.append)
    sink.send(event("pending"))
    sink.send(event("firing"))
    assert ["firing"] == [e.state for e in got]
    with pytest.raises(TypeError, match="fn must be callable"):
        CallbackSink("print")  # type: ignore[arg-type]


def test_shipped_sinks_satisfy_the_protocol() -> None:
    for sink in (LoggingSink(), CallbackSink(print), WebhookSink("http://127.0.0.1:1/")):
        assert isinstance(sink, AlertSink)
        sink.close()
