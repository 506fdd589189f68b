"""An OTLP/HTTP metrics receiver for the tests: decodes every request with the official
``opentelemetry-proto`` messages (``ExportMetricsServiceRequest``).

No OpenTelemetry Collector installs from the package registries these machines reach, so this
stands in for one: it speaks the protocol of the specification (``POST /v1/metrics``, body a
binary protobuf ``ExportMetricsServiceRequest``, gzip or deflate when ``Content-Encoding`` says
so; the answer an ``ExportMetricsServiceResponse`` with ``Content-Type: application/x-protobuf``)
on a free 127.0.0.1 port. Modes make it misbehave: answer an HTTP error status, or hold every
request without answering until :meth:`OtlpReceiver.release` (or ``stop``).

It imports only the standard library and ``opentelemetry-proto``, so a benchmark can use it too.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import zlib
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpReceiver", "attributes", "metric", "metrics_of"]

_MAX_HOLD = 30.0  # a held request is answered after this many seconds at most


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind is not None else None


def attributes(kvs: Any) -> dict[str, Any]:
    """A repeated ``KeyValue`` field as a dict."""
    out: dict[str, Any] = {}
    for kv in kvs:
        assert isinstance(kv, KeyValue)
        out[kv.key] = _value(kv.value)
    return out


def metrics_of(request: ExportMetricsServiceRequest) -> dict[str, Any]:
    """Every ``Metric`` of a request, by name (names must not repeat)."""
    out: dict[str, Any] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                assert m.name not in out, f"metric {m.name} sent twice in one request"
                out[m.name] = m
    return out


def metric(request: ExportMetricsServiceRequest, name: str) -> Any:
    """The ``Metric`` called ``name`` (KeyError when absent)."""
    return metrics_of(request)[name]


class OtlpReceiver:
    """``POST /v1/metrics`` on ``127.0.0.1:<free port>``; decoded requests in :attr:`requests`.

    Attributes:
        mode: ``"ok"`` (decode, answer 200), ``"discard"`` (answer 200 without decoding),
            ``"hold"`` (answer nothing until released), or an int HTTP status to answer with.
        requests: the decoded ``ExportMetricsServiceRequest`` of every request received.
        headers: the HTTP headers of each request, lower-case names.
    """

    def __init__(self, mode: Any = "ok") -> None:
        self.mode = mode
        self.requests: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[int] = []  # wire size of each request body
        self.received = 0  # requests seen, whatever was done with them
        self._release = threading.Event()
        self._lock = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received += 1
                    receiver._lock.notify_all()
                mode = receiver.mode
                if mode == "hold":
                    receiver._release.wait(_MAX_HOLD)
                    self._answer(503, b"")
                    return
                if isinstance(mode, int):
                    self._answer(mode, b"")
                    return
                if mode == "discard":  # a benchmark's sink: answer without decoding
                    with receiver._lock:
                        receiver.bodies.append(len(body))
                    self._answer(200, b"")
                    return
                encoding = self.headers.get("Content-Encoding", "").lower()
                raw = body
                if encoding == "gzip":
                    raw = gzip.decompress(body)
                elif encoding == "deflate":
                    raw = zlib.decompress(body)
                request = ExportMetricsServiceRequest()
                request.ParseFromString(raw)
                with receiver._lock:
                    receiver.requests.append(request)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.bodies.append(len(body))
                    receiver._lock.notify_all()
                self._answer(200, ExportMetricsServiceResponse().SerializeToString())

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up first

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (what ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The metrics URL, ``http://127.0.0.1:<port>/v1/metrics``."""
        return f"{self.base_url}/v1/metrics"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ExportMetricsServiceRequest]:
        """Wait until ``count`` requests were decoded; returns them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} OTLP requests, expected {count}")
                self._lock.wait(left)
            return list(self.requests)

    def wait_received(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests arrived (answered or held)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.received < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.received} OTLP requests arrived, expected {count}")
                self._lock.wait(left)

    def release(self) -> None:
        """Answer the held requests (with 503) and hold no more."""
        self._release.set()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
