"""ASGI helpers: request ids that become prediction ids, and ``/metrics`` served by the app.

Plain ASGI, so they work with FastAPI, Starlette, Quart or any ASGI server, and import no
framework.

- :class:`RequestIdMiddleware` gives every HTTP request an id — the caller's ``X-Request-ID``
  header when it is a sane token, else a fresh one — makes it available to the handler as
  :func:`current_request_id` and sends it back in the response's ``X-Request-ID`` header.
  Pass it to ``track(ids=...)`` and the caller holds the id to send labels with later.
- :class:`MetricsEndpoint` is an emitter and an ASGI app in one: the monitor emits into it
  every ``flush_interval``, and the app serves the latest snapshot in Prometheus' text format
  on the application's own port (for a single-process server; see ``docs/integrations.md``).
- :func:`lifespan` (for ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)``) and
  :class:`ShutdownMiddleware` (any ASGI app) close the monitors when the server shuts down.
  uvicorn ends a worker on ``SIGTERM`` by raising the signal again after its graceful shutdown,
  which kills the process before ``atexit`` runs: without one of these, a worker's last data
  (and, with ``file_sd_dir``, the removal of its target file) is lost.

>>> import asyncio
>>> async def app(scope, receive, send):
...     body = (current_request_id() or "").encode()
...     await send({"type": "http.response.start", "status": 200, "headers": []})
...     await send({"type": "http.response.body", "body": body})
>>> sent = []
>>> async def send(message):
...     sent.append(message)
>>> async def receive():
...     return {"type": "http.request", "body": b""}
>>> scope = {"type": "http", "headers": [(b"x-request-id", b"order-17")]}
>>> asyncio.run(RequestIdMiddleware(app)(scope, receive, send))
>>> sent[0]["headers"], sent[1]["body"]
([(b'x-request-id', b'order-17')], b'order-17')
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from mlmon.emitters.prometheus import CONTENT_TYPE, render_exposition
from mlmon.integrations.signals import close_monitors
from mlmon.snapshot import Snapshot

if TYPE_CHECKING:
    from mlmon.monitor import Monitor

__all__ = ["MetricsEndpoint", "RequestIdMiddleware", "ShutdownMiddleware", "current_request_id", "lifespan"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID: ContextVar[str | None] = ContextVar("mlmon_request_id", default=None)

# What a caller may choose as its request id: it is echoed in a response header and kept as a
# key in the feedback store, so no spaces, no control characters, bounded length.
_TOKEN = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_HEADER = re.compile(r"[a-z0-9-]+")


def current_request_id() -> str | None:
    """The id of the HTTP request being handled, set by :class:`RequestIdMiddleware` (else None).

    It is a context variable, so it follows the request into ``async`` handlers and into the
    thread pool that runs FastAPI's plain ``def`` handlers.
    """
    return _REQUEST_ID.get()


def _new_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each HTTP request an id, expose it as :func:`current_request_id`, echo it back.

    Args:
        app: the ASGI application to wrap.
        header: the request and response header (case-insensitive), ``x-request-id``.
        generate: makes an id when the request has none or an unusable one (default: 32 hex
            digits of a random UUID).

    An incoming id is used when it is 1–128 characters of ``[A-Za-z0-9._:/+=@-]``; anything
    else (spaces, control characters, a very long value) is replaced by a generated id, so a
    client cannot inject a header or flood the feedback store with huge keys.

    With FastAPI or Starlette: ``app.add_middleware(RequestIdMiddleware)``.
    """

    def __init__(
        self, app: ASGIApp, header: str = "x-request-id", generate: Callable[[], str] | None = None
    ) -> None:
        name = header.lower() if isinstance(header, str) else ""
        if not _HEADER.fullmatch(name):
            raise ValueError(f"header must be an HTTP header name ([A-Za-z0-9-]+), got {header!r}")
        self.app = app
        self.header = name
        self._key = name.encode("ascii")
        self._generate = generate if generate is not None else _new_id

    def _incoming(self, scope: Scope) -> str | None:
        for key, value in scope.get("headers") or ():
            if key.lower() == self._key:
                try:
                    text = value.decode("ascii")
                except UnicodeDecodeError:
                    return None
                return text if _TOKEN.fullmatch(text) else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        rid = self._incoming(scope) or str(self._generate())
        key, value = self._key, rid.encode("latin-1", "replace")

        async def send_with_id(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = [h for h in message.get("headers") or () if h[0].lower() != key]
                headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        token = _REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(token)


_MAX_IDENTITIES = 64


class MetricsEndpoint:
    """An emitter that keeps the latest exposition, and an ASGI app that serves it.

    Give it to the monitor's ``emitters`` and route ``GET /metrics`` to it
    (``app.add_route("/metrics", endpoint)`` in FastAPI/Starlette). It serves what
    :class:`~mlmon.emitters.PrometheusEmitter` would (the text format 0.0.4, rendered once per
    emit, so a scrape never touches the monitor), but on the application's own port: for a
    single-process server. A pre-fork server's workers share one port, so a scrape would reach
    one worker at random: there, use ``PrometheusEmitter(port=0, file_sd_dir=...)`` or StatsD.

    Args:
        name: the ``emitter`` label in mlmon's own metrics.

    >>> import mlmon
    >>> endpoint = MetricsEndpoint()
    >>> mon = mlmon.Monitor("doc_endpoint", emitters=[endpoint])
    >>> _ = mon.flush()
    >>> [line for line in endpoint.render().splitlines() if line.startswith("mlmon_calls_total")]
    ['mlmon_calls_total{model="doc_endpoint",instance="..."} 0']
    >>> mon.close()
    """

    def __init__(self, name: str = "metrics_endpoint") -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[tuple[str, str | None, str], Snapshot] = OrderedDict()
        self._body = b""

    def emit(self, snapshot: Snapshot) -> None:
        """Render the snapshot (with the latest of every other monitor emitting here)."""
        with self._lock:
            ident = (snapshot.model, snapshot.version, snapshot.instance)
            self._snapshots[ident] = snapshot
            self._snapshots.move_to_end(ident)
            while len(self._snapshots) > _MAX_IDENTITIES:
                self._snapshots.popitem(last=False)
            self._body = render_exposition(self._snapshots.values()).encode("utf-8")

    def render(self) -> str:
        """The text served now (empty until the first emit)."""
        return self._body.decode("utf-8")

    def after_fork(self) -> None:
        """Forget the parent's snapshots (the monitor calls this in a forked child)."""
        self._lock = threading.Lock()
        self._snapshots = OrderedDict()
        self._body = b""

    def close(self) -> None:
        """Nothing to release: the last rendering stays served."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            raise RuntimeError(f"MetricsEndpoint serves HTTP only, got a {scope.get('type')!r} scope")
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            body, status = b"Method not allowed\n", 405
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"GET, HEAD")]
        else:
            body, status = self._body, 200
            headers = [(b"content-type", CONTENT_TYPE.encode("ascii"))]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


# --------------------------------------------------------------------------- shutdown

def _monitor_list(monitors: Monitor | Iterable[Monitor] | None) -> list[Any] | None:
    """None (every live monitor), or the monitors as a list; TypeError for anything else."""
    if monitors is None:
        return None
    if callable(getattr(monitors, "close", None)):
        return [monitors]
    try:
        items: list[Any] = list(monitors)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"monitors must be a Monitor, an iterable of Monitors or None, got {monitors!r}") from None
    for m in items:
        if not callable(getattr(m, "close", None)):
            raise TypeError(f"monitors must be a Monitor, an iterable of Monitors or None, got {m!r}")
    return items


async def _close(monitors: list[Any] | None) -> None:
    # On a thread, so the event loop keeps serving the other shutdown work; bounded by the
    # monitors' close_timeout (close_monitors stops waiting then).
    try:
        await asyncio.get_running_loop().run_in_executor(None, close_monitors, monitors)
    except Exception:  # no executor any more: close here, still bounded
        close_monitors(monitors)


LifespanFactory = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


def lifespan(
    monitors: Monitor | Iterable[Monitor] | None = None, *, inner: LifespanFactory | None = None
) -> LifespanFactory:
    """A lifespan for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)`` that closes monitors.

    At the server's shutdown (uvicorn, hypercorn: on ``SIGTERM`` and ``SIGINT``, in every
    worker) it closes the monitors: a last snapshot goes to every emitter and
    ``PrometheusEmitter`` removes its ``file_sd`` target file. It takes at most their largest
    ``close_timeout`` (5 s by default) plus half a second, whatever the backends do.

    Args:
        monitors: a monitor, several, or None for every monitor alive in the process at
            shutdown (the simplest with workers that create their own).
        inner: your own lifespan (a function of the app returning an async context manager);
            it runs inside, so your shutdown code may still use the monitors, and what it
            yields (the lifespan state) is passed on.

    Raises:
        TypeError: ``monitors`` holds something that is not a monitor.

    >>> import asyncio, mlmon
    >>> mon = mlmon.Monitor("doc_lifespan")
    >>> async def serve():                     # what the server does around its life
    ...     async with lifespan(mon)(app=None):
    ...         return mon.track(lambda x: x)(1)
    >>> asyncio.run(serve())
    1
    >>> mon.flush().get("mlmon_calls_total")   # closed at shutdown: it emits nothing more
    1.0
    """
    targets = _monitor_list(monitors)
    if inner is not None and not callable(inner):
        raise TypeError(f"inner must be a lifespan function (app -> async context manager), got {inner!r}")

    @contextlib.asynccontextmanager
    async def mlmon_lifespan(app: Any) -> AsyncIterator[Any]:
        try:
            if inner is None:
                yield None
            else:
                async with inner(app) as state:
                    yield state
        finally:
            await _close(targets)

    return mlmon_lifespan


class ShutdownMiddleware:
    """Close monitors when an ASGI server shuts the app down (the ``lifespan`` protocol).

    For any ASGI app whose lifespan you cannot change (with FastAPI or Starlette,
    :func:`lifespan` is simpler). When the app answers ``lifespan.shutdown`` the monitors are
    closed before the answer reaches the server; when the app does not speak the lifespan
    protocol at all, the middleware speaks it itself. HTTP and websocket requests pass
    through untouched.

    Args:
        app: the ASGI application.
        monitors: a monitor, several, or None for every monitor alive at shutdown.

    Raises:
        TypeError: ``monitors`` holds something that is not a monitor.

    >>> import asyncio, mlmon
    >>> mon = mlmon.Monitor("doc_shutdown_mw")
    >>> async def app(scope, receive, send):   # an app without lifespan support
    ...     raise RuntimeError("lifespan is not supported")
    >>> messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    >>> sent = []
    >>> async def receive():
    ...     return next(messages)
    >>> async def send(message):
    ...     sent.append(message["type"])
    >>> asyncio.run(ShutdownMiddleware(app, mon)({"type": "lifespan"}, receive, send))
    >>> sent
    ['lifespan.startup.complete', 'lifespan.shutdown.complete']
    >>> mon.flush().get("mlmon_calls_total")   # closed: it emits nothing more
    0.0
    """

    def __init__(self, app: ASGIApp, monitors: Monitor | Iterable[Monitor] | None = None) -> None:
        self.app = app
        self._monitors = _monitor_list(monitors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "lifespan":
            await self.app(scope, receive, send)
            return
        received: list[str] = []
        sent: list[str] = []

        async def receive_recorded() -> Message:
            message = await receive()
            received.append(str(message.get("type")))
            return message

        async def send_after_close(message: Message) -> None:
            kind = str(message.get("type"))
            if kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await _close(self._monitors)
            sent.append(kind)
            await send(message)

        try:
            await self.app(scope, receive_recorded, send_after_close)
        except Exception:
            if sent:  # the app speaks lifespan and failed: the server must hear of it
                if "lifespan.shutdown.complete" not in sent and "lifespan.shutdown.failed" not in sent:
                    await _close(self._monitors)
                raise
        if sent:
            return
        # The app does not speak lifespan (it raised or returned at once): speak it for it.
        if "lifespan.startup" not in received:
            await receive()
        await send({"type": "lifespan.startup.complete"})
        if "lifespan.shutdown" not in received:
            await receive()
        await _close(self._monitors)
        await send({"type": "lifespan.shutdown.complete"})
