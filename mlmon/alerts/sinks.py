"""Where alert events go: the log, your own function, or a webhook.

A sink has one method that matters, ``send(event)``, and ``close()``. The engine calls ``send``
on the reporter thread for every state transition (never on the predict path), catches and
counts whatever a sink raises, and closes the sinks when the monitor closes. Each shipped sink
keeps only the states it was asked for: ``("firing", "resolved")`` by default, all of them with
``states=None``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from http.client import HTTPException
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from mlmon.alerts.events import STATES, AlertEvent

__all__ = ["AlertSink", "CallbackSink", "LoggingSink", "WebhookSink", "sink_name"]

log = logging.getLogger("mlmon.alerts")

DEFAULT_STATES: tuple[str, ...] = ("firing", "resolved")


@runtime_checkable
class AlertSink(Protocol):
    """What the engine needs of a sink.

    >>> class Printer:
    ...     def send(self, event): print(event.rule, event.state)
    ...     def close(self): pass
    >>> isinstance(Printer(), AlertSink)
    True
    """

    def send(self, event: AlertEvent) -> None:
        """Deliver one event. May raise: the engine counts it and carries on."""

    def close(self) -> None:
        """Deliver what is queued (within a bounded time) and release threads. Idempotent."""


def sink_name(sink: object) -> str:
    """The sink's ``name`` attribute, else its class name in lower case."""
    name = getattr(sink, "name", None)
    if isinstance(name, str) and name:
        return name
    return type(sink).__name__.lower()


def _states(states: Iterable[str] | None) -> frozenset[str]:
    if states is None:
        return frozenset(STATES)
    if isinstance(states, str):
        raise ValueError(f"states must be a collection of states, got {states!r}")
    out = frozenset(states)
    bad = sorted(out - set(STATES))
    if bad:
        raise ValueError(f"states must be among {', '.join(STATES)}, got {bad!r}")
    return out


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class LoggingSink:
    """Logs events with :mod:`logging`, at a level that follows the severity.

    A firing alert logs at INFO, WARNING or ERROR for severity info, warning or critical; a
    resolution at INFO; pending and inactive (when asked for) at DEBUG.

    Args:
        logger: the logger (default ``logging.getLogger("mlmon.alerts")``).
        states: event states to log; None for all.

    >>> import logging, sys
    >>> logger = logging.getLogger("doc_alerts")
    >>> logger.addHandler(logging.StreamHandler(sys.stdout)); logger.propagate = False
    >>> sink = LoggingSink(logger)
    >>> sink.send(AlertEvent(rule="errors", state="firing", metric="mlmon_error_ratio",
    ...                      value=0.2, threshold=0.05, severity="critical", model="fraud",
    ...                      condition="mlmon_error_ratio > 0.05"))
    [critical] fraud: errors firing: mlmon_error_ratio > 0.05 (value 0.2)
    """

    name = "logging"

    def __init__(
        self, logger: logging.Logger | None = None, states: Iterable[str] | None = DEFAULT_STATES
    ) -> None:
        self.logger = logger if logger is not None else log
        self.states = _states(states)

    def send(self, event: AlertEvent) -> None:
        if event.state not in self.states:
            return
        if event.state == "firing":
            level = _LEVELS.get(event.severity, logging.WARNING)
        elif event.state == "resolved":
            level = logging.INFO
        else:
            level = logging.DEBUG
        self.logger.log(level, "%s", event.message)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"LoggingSink(logger={self.logger.name!r})"


class CallbackSink:
    """Calls ``fn(event)`` for each event, on the reporter thread.

    Keep ``fn`` quick: it delays the emitters of the cycle. An exception it raises is counted by
    the engine and does not stop other sinks.

    Args:
        fn: called with each :class:`AlertEvent`.
        states: event states to pass on; None for all.
        name: the sink's name in error counts.

    >>> seen = []
    >>> sink = CallbackSink(seen.append, states=None)
    >>> sink.send(AlertEvent(rule="r", state="pending", metric="mlmon_up", value=0.0))
    >>> [e.state for e in seen]
    ['pending']
    """

    def __init__(
        self,
        fn: Callable[[AlertEvent], Any],
        states: Iterable[str] | None = DEFAULT_STATES,
        name: str = "callback",
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        self.fn = fn
        self.states = _states(states)
        self.name = name

    def send(self, event: AlertEvent) -> None:
        if event.state in self.states:
            self.fn(event)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"CallbackSink({self.fn!r})"


class _Stop:
    pass


_STOP = _Stop()
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookSink:
    """POSTs each event as JSON to a URL, from a thread of its own.

    ``send`` only puts the event on a bounded queue; a daemon thread (started at the first
    event, and again in a forked child) delivers it with ``urllib``. A failed delivery
    (connection error, timeout, HTTP 408/425/429/5xx) is retried ``retries`` times, waiting
    ``backoff``, ``2 * backoff``, ``4 * backoff``... seconds (at most ``max_backoff``); other
    HTTP errors are not retried. Counters: ``sent`` (delivered), ``failed`` (given up on),
    ``dropped`` (queue full, or still queued when ``close`` ran out of time).

    Args:
        url: ``http://`` or ``https://`` URL.
        timeout: seconds per HTTP request.
        max_queue: events waiting at most; more are dropped and counted.
        retries: extra attempts after the first.
        backoff: seconds before the first retry, doubling after each.
        max_backoff: longest wait between attempts.
        headers: extra HTTP headers (an ``Authorization`` token, say).
        payload: ``payload(event)`` gives the JSON body (default ``event.to_dict()``); e.g.
            ``lambda e: {"text": e.message}`` for a chat webhook.
        states: event states to send; None for all.
        name: the sink's name in error counts.

    >>> sink = WebhookSink("http://127.0.0.1:9/alerts", retries=0)
    >>> sink.sent, sink.failed, sink.dropped
    (0, 0, 0)
    >>> sink.close()
    >>> WebhookSink("ftp://example.org/")
    Traceback (most recent call last):
    ...
    ValueError: url must be an http:// or https:// URL, got 'ftp://example.org/'
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        max_queue: int = 1000,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        headers: dict[str, str] | None = None,
        payload: Callable[[AlertEvent], Any] | None = None,
        states: Iterable[str] | None = DEFAULT_STATES,
        name: str = "webhook",
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
        for field, value in (("timeout", timeout), ("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{field} must be a number of seconds >= 0, got {value!r}")
        if timeout == 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be an int >= 1, got {max_queue!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        self.url = url
        self.timeout = float(timeout)
        self.max_queue = max_queue
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.headers = {"Content-Type": "application/json", "User-Agent": "mlmon-alerts"}
        self.headers.update(headers or {})
        self.payload = payload
        self.states = _states(states)
        self.name = name
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._closed = False
        self._last_log = -1e18
        self._setup()

    def _setup(self) -> None:
        self._pid = os.getpid()
        self._queue: queue.Queue[AlertEvent | _Stop] = queue.Queue(self.max_queue)
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, event: AlertEvent) -> None:
        if event.state not in self.states:
            return
        if self._pid != os.getpid():
            self._setup()  # a forked child: the parent's thread and queue are not ours
        if self._closed:
            with self._lock:
                self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name=f"mlmon-{self.name}", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            if isinstance(item, _Stop):
                return
            if self._abort.is_set():
                with self._lock:
                    self.dropped += 1
                continue
            try:
                self._deliver(item)
            except Exception as exc:  # a bad payload function, say: counted, never fatal
                self.failed += 1
                self._log(f"could not deliver an alert: {exc!r}")

    def _deliver(self, event: AlertEvent) -> None:
        body = self.payload(event) if self.payload is not None else event.to_dict()
        data = json.dumps(body, allow_nan=False, default=str).encode("utf-8")
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                if self._abort.wait(delay):
                    break
            request = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                self.sent += 1
                return
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                exc.close()
                if exc.code not in _RETRY_STATUS:
                    break
            except (OSError, HTTPException) as exc:  # URLError, timeouts, resets
                error = repr(exc)
        self.failed += 1
        self._log(f"gave up on an alert for {self.url} after {attempt + 1} attempt(s): {error}")

    def _log(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= 60.0:
            self._last_log = now
            log.warning("mlmon %s: %s", self.name, message)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, waiting at most ``timeout`` seconds; count the rest as dropped."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        while thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=max(0.0, min(0.05, deadline - time.monotonic())))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        thread.join(max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            return
        self._abort.set()  # stop waiting between retries; what is left is dropped
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Stop):
                with self._lock:
                    self.dropped += 1
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:  # pragma: no cover - the queue was just emptied
            pass
        thread.join(self.timeout + 1.0)

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r}, sent={self.sent}, failed={self.failed}, dropped={self.dropped})"
