"""Prometheus emitter: a pull endpoint in the text exposition format 0.0.4, no client library.

Also pushes to a Pushgateway when asked (``push_url``), and can write a ``file_sd`` target file
per process so Prometheus finds every worker of a pre-fork server (docs/scale-out.md).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from mlmon._files import atomic_write
from mlmon.emitters._net import (
    _check_name,
    _check_seconds,
    _close,
    _ForkAware,
    _http_request,
    _Resolver,
)
from mlmon.emitters._prometheus_text import CONTENT_TYPE, _clean, render_exposition
from mlmon.naming import PrometheusRenderer
from mlmon.snapshot import Snapshot

__all__ = ["CONTENT_TYPE", "PrometheusEmitter", "render_exposition"]

log = logging.getLogger("mlmon.emitters.prometheus")

_MAX_IDENTITIES = 64
_LOG_INTERVAL = 60.0  # seconds between two log lines about failing scrapes

Identity = tuple[str, str | None, str]


def _b64(value: str) -> str:
    # Pushgateway's "@base64" grouping values: URL-safe alphabet; "=" stands for the empty string.
    return base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii") or "="


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10.0  # an idle or slow client cannot hold a thread for long
    protocol_version = "HTTP/1.1"

    def _reply(self, with_body: bool) -> None:
        if urlsplit(self.path).path != self.server.metrics_path:
            body = b"Not found. Metrics are at " + self.server.metrics_path.encode() + b"\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        else:
            body = self.server.body()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(True)

    def do_HEAD(self) -> None:
        self._reply(False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds must not fill the application's stderr


# A client that goes away mid-answer (a scraper timing out, a health check closing early) is
# not an error of ours: counted, never logged.
_DISCONNECTS = (ConnectionError, TimeoutError)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        addr: tuple[Any, ...],
        family: int,
        metrics_path: str,
        body: Callable[[], bytes],
        name: str,
    ) -> None:
        self.address_family = family
        self.metrics_path = metrics_path
        self.body = body
        self.emitter_name = name
        self.disconnects = 0
        self.errors = 0
        self._logged_at = -math.inf
        self._unlogged = 0
        self._count_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Replaces socketserver's default, which prints a traceback to stderr per failure.
        exc = sys.exc_info()[1]
        with self._count_lock:
            if isinstance(exc, _DISCONNECTS):
                self.disconnects += 1
                return
            self.errors += 1
            now = time.monotonic()
            if now - self._logged_at < _LOG_INTERVAL:
                self._unlogged += 1
                return
            self._logged_at, skipped, self._unlogged = now, self._unlogged, 0
        log.warning(
            "mlmon: %s endpoint failed to answer %s (%d more failures not logged in the last "
            "%.0fs)",
            self.emitter_name,
            client_address,
            skipped,
            _LOG_INTERVAL,
            exc_info=exc,
        )


class PrometheusEmitter(_ForkAware):
    """Serve the latest snapshot to Prometheus: ``GET http://host:port/metrics``.

    The endpoint runs on its own daemon thread (``http.server.ThreadingHTTPServer``) and serves
    text rendered at emit time, so a scrape never touches the monitor. Counters are cumulative
    (``rate()`` and ``sum by`` over replicas are exact), latency comes as a histogram family
    ``mlmon_latency_seconds`` (use ``histogram_quantile`` across replicas) and the window
    quantiles as summary families (``mlmon_latency_window_seconds{quantile}``). Several monitors
    may share one emitter: the endpoint serves the latest snapshot of each (model, version,
    instance).

    Args:
        host, port: where to listen; ``port=0`` picks a free port (read it from :attr:`port`).
        path: the metrics path.
        push_url: a Pushgateway base URL (``http://gateway:9091``): every emit also PUTs the
            snapshot to ``/metrics/job/<job>/model/<model>/instance/<instance>`` (values
            base64-encoded), replacing that group.
        job: the ``job`` grouping label for pushes.
        push_delete_on_close: also delete the pushed groups from the Pushgateway when the
            monitor that pushed them closes (``DELETE`` on the grouping key's URL, the
            Pushgateway's documented API), so a finished job or a stopped process leaves no
            stale series behind. All deletes of one close share one ``push_timeout`` deadline;
            a failed delete is logged and counted (``stats["push_delete_failures"]``).
        push_timeout: the total deadline of one push, seconds: resolving, connecting, TLS,
            sending and reading the answer together (a Pushgateway that answers a byte per
            second costs at most this, and the push counts as failed).
        file_sd_dir: a directory watched by a Prometheus ``file_sd_configs`` entry; each
            process writes ``mlmon-<pid>.json`` naming its endpoint, and removes it at close.
        name: the ``emitter``/``buffer`` label in mlmon's own metrics.

    In a forked child (a pre-fork server's worker) the inherited endpoint belongs to the parent:
    the child starts its own on a free port at its first emit, or when it is asked for its
    :attr:`port` or :attr:`url` (and only then writes its ``file_sd`` file), so every process is
    scraped on its own, and a child that only execs another program
    (``subprocess.run(..., preexec_fn=...)``) leaves nothing behind.

    Sharing: each monitor that uses the emitter calls :meth:`open` with its identity (two
    monitors with the same model, version and instance would overwrite each other's series, so
    the second is refused), and the endpoint stops only when the last of them closes
    (:meth:`release`, or :meth:`close` once per opener). An emitter never opened closes at its
    first :meth:`close`.

    Series whose name or label values cannot be encoded (an unpaired surrogate, NUL, more than
    1024 characters) or whose value is not a number are left out and counted in
    ``mlmon_dropped_total{buffer="<name>_series"}``; the rest of the snapshot is served.

    >>> import urllib.request
    >>> from mlmon.snapshot import Sample, Snapshot
    >>> em = PrometheusEmitter(port=0)
    >>> em.emit(Snapshot("fraud", "v1", "web1:7", 0.0, 60.0, (Sample.make("mlmon_calls_total", 3),)))
    >>> with urllib.request.urlopen(em.url) as resp:
    ...     print(resp.read().decode().splitlines()[-1])
    mlmon_calls_total{model="fraud",version="v1",instance="web1:7"} 3
    >>> em.close()
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9464,
        path: str = "/metrics",
        *,
        push_url: str | None = None,
        job: str = "mlmon",
        push_timeout: float = 5.0,
        push_delete_on_close: bool = False,
        file_sd_dir: str | os.PathLike[str] | None = None,
        name: str = "prometheus",
    ) -> None:
        if not isinstance(host, str):
            raise ValueError(f"host must be a string, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an int in 0..65535 (0 = any free port), got {port!r}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        if push_url is not None:
            parts = urlsplit(push_url) if isinstance(push_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"push_url must be an http(s) URL, got {push_url!r}")
        if not isinstance(job, str) or not job:
            raise ValueError(f"job must be a non-empty string, got {job!r}")
        _check_seconds(push_timeout=push_timeout)
        if not isinstance(push_delete_on_close, bool):
            raise ValueError(f"push_delete_on_close must be a bool, got {push_delete_on_close!r}")
        if push_delete_on_close and push_url is None:
            raise ValueError("push_delete_on_close=True needs a push_url")
        if file_sd_dir is not None and not os.path.isdir(file_sd_dir):
            raise ValueError(f"file_sd_dir must be an existing directory, got {file_sd_dir!r}")
        _check_name(name)
        self.host = host
        self.path = path
        self.push_url = push_url.rstrip("/") if push_url is not None else None
        self.job = job
        self.push_timeout = float(push_timeout)
        self.push_delete_on_close = push_delete_on_close
        self.file_sd_dir = os.fspath(file_sd_dir) if file_sd_dir is not None else None
        self.name = name
        self._renderer = PrometheusRenderer()
        self._snapshots: OrderedDict[Identity, Snapshot] = OrderedDict()
        self._body = b""
        super().__init__()  # self._lock and self._pid: see _ForkAware
        self._push_failures = 0
        self._pushes = 0
        self._bad_series = 0
        self._pushed: dict[Identity, str] = {}  # identity -> its group's URL, to delete at close
        self._deletes = 0
        self._delete_failures = 0
        self._push_resolver: _Resolver | None = None
        if self.push_url is not None:
            pu = urlsplit(self.push_url)
            assert pu.hostname is not None
            pport = pu.port or (443 if pu.scheme == "https" else 80)
            self._push_resolver = _Resolver(pu.hostname, pport, socket.SOCK_STREAM)
        self._closed = False
        self._opened: list[Identity] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sd_file: str | None = None
        self._lazy = False  # a forked child starts its endpoint when first needed
        self._old_disconnects = 0
        self._old_errors = 0
        self._port = port
        self._start(port)

    # -- endpoint ----------------------------------------------------------------------------

    def _start(self, port: int) -> None:
        infos = socket.getaddrinfo(
            self.host or None, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        family, _, _, _, addr = infos[0]
        server = _Server(addr, family, self.path, self._current_body, self.name)
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how soon close() returns
            name=f"mlmon-{self.name}-http",
            daemon=True,
        )
        self._thread.start()
        self._write_sd_file()

    def _ensure_started(self) -> None:
        # Called with self._lock held: a forked child's endpoint, on first need.
        if self._lazy and not self._closed:
            self._start(0)  # if this fails, the next emit tries again
            self._lazy = False

    def _current_body(self) -> bytes:
        return self._body

    @property
    def port(self) -> int:
        """The port the endpoint listens on (the chosen one when constructed with ``port=0``)."""
        self._check_fork()
        with self._lock:
            self._ensure_started()
            return self._port

    @property
    def url(self) -> str:
        """The scrape URL, e.g. ``http://127.0.0.1:9464/metrics``."""
        return f"http://{self._advertised_host()}:{self.port}{self.path}"

    def _advertised_host(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        return f"[{host}]" if ":" in host else host

    def _write_sd_file(self) -> None:
        if self.file_sd_dir is None:
            return
        target = f"{self._advertised_host()}:{self._port}"
        content = json.dumps([{"targets": [target], "labels": {"mlmon_pid": str(os.getpid())}}])
        final = os.path.join(self.file_sd_dir, f"mlmon-{os.getpid()}.json")
        atomic_write(final, content)  # Prometheus never reads half a file
        self._sd_file = final

    def after_fork(self) -> None:
        """Let go of the parent's endpoint (the monitor calls this in a forked child).

        Nothing is started here: the child's endpoint and ``file_sd`` file come at its first
        emit (or :attr:`port`/:attr:`url`), so a child that execs right away leaves nothing.
        """
        self._check_fork()

    def _forget_parent(self) -> None:
        # A forked child: the serving thread did not survive the fork and the listening socket
        # is the parent's. Close our copy (never shutdown(): it would wait for a thread that
        # does not exist here); this process gets an endpoint of its own when it needs one.
        if self._server is not None:
            _close(self._server.socket)
        self._server = None
        self._thread = None
        self._sd_file = None  # the parent's file stays the parent's
        self._snapshots = OrderedDict()
        self._body = b""
        self._push_failures = self._pushes = self._bad_series = 0
        self._pushed = {}  # the parent's groups are the parent's to delete
        self._deletes = self._delete_failures = 0
        self._old_disconnects = self._old_errors = 0
        if self._push_resolver is not None:
            self._push_resolver.reset_after_fork()
        self._lazy = not self._closed

    # -- sharing -----------------------------------------------------------------------------

    def open(self, model: str, version: str | None, instance: str) -> None:
        """A monitor starts using this emitter (the monitor calls it once, at construction).

        Raises ValueError when a monitor with the same model, version and instance already has
        it open (their series would overwrite each other), RuntimeError when it is closed.
        """
        self._check_fork()
        ident = (model, version, instance)
        with self._lock:
            if self._closed:
                raise RuntimeError("PrometheusEmitter is closed")
            if ident in self._opened:
                shown = model if version is None else f"{model} version {version}"
                raise ValueError(
                    f"model {shown!r} (instance {instance!r}) already uses this "
                    f"PrometheusEmitter: two monitors of one model, version and instance would "
                    f"overwrite each other's series; give them different versions or emitters"
                )
            self._opened.append(ident)

    def release(self, model: str, version: str | None, instance: str) -> None:
        """The monitor that opened with this identity is done: drop its series, and stop the
        endpoint when no other monitor has it open. Without a matching :meth:`open`, this is
        :meth:`close`."""
        self._check_fork()
        ident = (model, version, instance)
        with self._lock:
            if self._closed:
                return
            known = ident in self._opened
            last = False
            groups: list[str] = []
            if known:
                self._opened.remove(ident)
                self._forget_series(ident)
                last = not self._opened
                if not last:
                    groups = self._take_groups(ident)
        if not known:
            self.close()  # e.g. a forked child's monitor, whose instance changed
        elif last:
            self._shutdown()
        else:
            self._delete_groups(groups)

    def _take_groups(self, ident: Identity | None) -> list[str]:
        """The Pushgateway groups to delete for ``ident`` (every group when None), forgotten.
        Called with self._lock held; empty unless ``push_delete_on_close``."""
        if not self.push_delete_on_close:
            return []
        keys = [k for k in self._pushed if ident is None or k == ident]
        return [self._pushed.pop(k) for k in keys]

    def _delete_groups(self, urls: list[str]) -> None:
        """DELETE each group before one ``push_timeout`` deadline; failures logged and counted."""
        if not urls:
            return
        deadline = time.monotonic() + self.push_timeout
        failed: list[str] = []
        for url in urls:
            try:
                status, _ = _http_request(url, "DELETE", b"", {}, deadline, self._push_resolver)
                if status >= 300:
                    raise ConnectionError(f"HTTP {status}")
            except (OSError, ValueError) as exc:
                failed.append(f"{url}: {exc}")
                continue
            self._deletes += 1
        if failed:
            self._delete_failures += len(failed)
            log.warning(
                "mlmon: %s could not delete %d Pushgateway group(s) at close (deadline %gs): %s",
                self.name, len(failed), self.push_timeout, "; ".join(failed),
            )  # fmt: skip

    def _forget_series(self, ident: Identity) -> None:
        # Called with self._lock held (after ``ident`` left ``_opened``). The identity's own
        # series go, and those of the same model and version that no open identity owns (a
        # monitor whose instance changed, in a forked child); another identity still open
        # keeps its series (a fleet leader's own, when the fleet's identity is released).
        opened = set(self._opened)
        drop = [
            k for k in self._snapshots
            if k == ident or (k[0] == ident[0] and k[1] == ident[1] and k not in opened)
        ]  # fmt: skip
        for k in drop:
            del self._snapshots[k]
        if drop:
            self._body = self._render_all()

    # -- emitter protocol --------------------------------------------------------------------

    def _render_all(self) -> bytes:
        return render_exposition(self._snapshots.values(), self._renderer).encode("utf-8")

    def emit(self, snapshot: Snapshot) -> None:
        """Render the snapshot for the next scrapes (and push it, when ``push_url`` is set)."""
        self._check_fork()
        with self._lock:
            if self._closed:
                raise RuntimeError("PrometheusEmitter is closed")
            self._ensure_started()
            snapshot, bad = _clean(snapshot)
            self._bad_series += bad
            ident = (snapshot.model, snapshot.version, snapshot.instance)
            previous = self._snapshots.get(ident)
            self._snapshots[ident] = snapshot
            self._snapshots.move_to_end(ident)
            while len(self._snapshots) > _MAX_IDENTITIES:
                self._snapshots.popitem(last=False)
            try:
                self._body = self._render_all()
            except Exception:
                # Never let one snapshot freeze the endpoint for every monitor sharing it.
                if previous is None:
                    del self._snapshots[ident]
                else:
                    self._snapshots[ident] = previous
                self._bad_series += len(snapshot.samples)
                raise
            if self.push_url is not None:
                self._push(snapshot)

    def _push(self, snapshot: Snapshot) -> None:
        assert self.push_url is not None
        deadline = time.monotonic() + self.push_timeout
        body = render_exposition([snapshot], self._renderer).encode("utf-8")
        url = (
            f"{self.push_url}/metrics/job@base64/{_b64(self.job)}"
            f"/model@base64/{_b64(snapshot.model)}/instance@base64/{_b64(snapshot.instance)}"
        )
        if self.push_delete_on_close:
            ident = (snapshot.model, snapshot.version, snapshot.instance)
            if ident not in self._pushed and len(self._pushed) >= _MAX_IDENTITIES:
                self._pushed.pop(next(iter(self._pushed)))
            self._pushed[ident] = url
        try:
            status, _ = _http_request(
                url, "PUT", body, {"Content-Type": CONTENT_TYPE}, deadline, self._push_resolver
            )
            if status >= 300:
                raise ConnectionError(f"HTTP {status}")
        except (OSError, ValueError) as exc:
            self._push_failures += 1
            raise OSError(
                f"push to {self.push_url} failed (deadline {self.push_timeout:g}s): {exc}"
            ) from exc
        self._pushes += 1

    def render(self) -> str:
        """The text the endpoint serves now."""
        return self._body.decode("utf-8")

    @property
    def stats(self) -> dict[str, int]:
        """Counts since construction (or fork): pushes made and failed, series left out,
        scrapes whose client went away early, scrapes that failed on our side."""
        server = self._server
        return {
            "pushes": self._pushes,
            "push_failures": self._push_failures,
            "bad_series": self._bad_series,
            "push_deletes": self._deletes,
            "push_delete_failures": self._delete_failures,
            "disconnects": self._old_disconnects + (server.disconnects if server else 0),
            "scrape_errors": self._old_errors + (server.errors if server else 0),
        }

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Failed pushes (``mlmon_dropped_total{buffer="<name>_push"}``, when pushing), series
        left out (``buffer="<name>_series"``), scrapes that failed on our side
        (``mlmon_internal_errors_total{stage="<name>_scrape"}``) and clients that went away
        before their answer was written (``stage="<name>_disconnect"``)."""
        st = self.stats
        out: list[tuple[str, float, dict[str, str]]] = [
            ("mlmon_dropped_total", float(st["bad_series"]), {"buffer": f"{self.name}_series"}),
            (
                "mlmon_internal_errors_total",
                float(st["scrape_errors"]),
                {"stage": f"{self.name}_scrape"},
            ),
            (
                "mlmon_internal_errors_total",
                float(st["disconnects"]),
                {"stage": f"{self.name}_disconnect"},
            ),
        ]
        if self.push_url is not None:
            out.append(
                ("mlmon_dropped_total", float(self._push_failures), {"buffer": f"{self.name}_push"})
            )
        if self.push_delete_on_close:
            out.append(
                (
                    "mlmon_internal_errors_total",
                    float(self._delete_failures),
                    {"stage": f"{self.name}_push_delete"},
                )
            )
        return out

    def close(self) -> None:
        """Stop the endpoint and remove the ``file_sd`` file. Idempotent.

        When monitors opened the emitter (:meth:`open`), each ``close()`` ends one of them
        (the most recently opened; :meth:`release` names which) and only the last one stops
        the endpoint.
        """
        self._check_fork()
        groups: list[str] = []
        others = False
        with self._lock:
            if self._closed:
                return
            if self._opened:
                ident = self._opened.pop()
                others = bool(self._opened)
                if others:
                    groups = self._take_groups(ident)
        if others:
            self._delete_groups(groups)
            return
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lazy = False
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
            sd_file, self._sd_file = self._sd_file, None
            groups = self._take_groups(None)
        self._delete_groups(groups)
        if server is not None:
            self._old_disconnects += server.disconnects
            self._old_errors += server.errors
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        if sd_file is not None:
            try:
                os.unlink(sd_file)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"PrometheusEmitter(host={self.host!r}, port={self._port}, path={self.path!r})"
