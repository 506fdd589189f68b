"""Where alert events go: the log, your own function, or a webhook.

A sink has one method that matters, ``send(event)``, and ``close()``. The engine calls ``send``
on the reporter thread for every state transition (never on the predict path), catches and
counts whatever a sink raises (any ``BaseException``: a ``SystemExit`` in a callback does not
stop the reporter), and closes the sinks when the monitor closes. Each shipped sink keeps only
the states it was asked for: ``("firing", "resolved")`` by default, all of them with
``states=None``.

A sink may also have ``counts()``: its notifications by outcome (``sent``, ``failed``,
``redirected``, ``timeout``, ``dropped``), which the engine emits as
``mlmon_alert_notifications_total{sink, outcome}``. For a sink without it the engine counts
``send`` calls that returned (``sent``) and raised (``failed``).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import SplitResult, urljoin, urlsplit

from mlmon.alerts.events import STATES, AlertEvent

__all__ = ["OUTCOMES", "AlertSink", "CallbackError", "CallbackSink", "LoggingSink", "WebhookSink", "sink_name"]

log = logging.getLogger("mlmon.alerts")

DEFAULT_STATES: tuple[str, ...] = ("firing", "resolved")
OUTCOMES: tuple[str, ...] = ("sent", "failed", "redirected", "timeout", "dropped")
"""Notification outcomes, each counted once per event: delivered; given up on after an error;
given up on because the server answered with a redirect; given up on because the last attempt
ran out of its deadline; dropped (queue full, or still queued when ``close`` ran out of time)."""


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
        self.sent = 0
        self.failed = 0

    def send(self, event: AlertEvent) -> None:
        if event.state not in self.states:
            return
        if event.state == "firing":
            level = _LEVELS.get(event.severity, logging.WARNING)
        elif event.state == "resolved":
            level = logging.INFO
        else:
            level = logging.DEBUG
        try:
            self.logger.log(level, "%s", event.message)
        except BaseException:
            self.failed += 1  # a handler of yours raised: the engine counts and logs it
            raise
        self.sent += 1

    def counts(self) -> dict[str, int]:
        """Events logged (``sent``) and those a log handler raised on (``failed``)."""
        return {"sent": self.sent, "failed": self.failed}

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"LoggingSink(logger={self.logger.name!r})"


class CallbackError(RuntimeError):
    """A callback raised a ``BaseException`` that is not an ``Exception`` (its ``__cause__``)."""


class CallbackSink:
    """Calls ``fn(event)`` for each event, on the reporter thread.

    Keep ``fn`` quick: it delays the emitters of the cycle. Whatever it raises is counted
    (``failed``) and does not stop other sinks: an ``Exception`` reaches the engine as it is;
    any other ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``) is
    turned into a :class:`CallbackError`, so it never stops the reporter thread.

    Args:
        fn: called with each :class:`AlertEvent`.
        states: event states to pass on; None for all.
        name: the sink's name in error counts.

    >>> seen = []
    >>> sink = CallbackSink(seen.append, states=None)
    >>> sink.send(AlertEvent(rule="r", state="pending", metric="mlmon_up", value=0.0))
    >>> [e.state for e in seen]
    ['pending']
    >>> def leave(event): raise SystemExit(1)
    >>> CallbackSink(leave).send(AlertEvent(rule="r", state="firing", metric="mlmon_up", value=0.0))
    Traceback (most recent call last):
    ...
    mlmon.alerts.sinks.CallbackError: callback raised SystemExit(1)
    >>> sink.counts()
    {'sent': 1, 'failed': 0}
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
        self.sent = 0
        self.failed = 0

    def send(self, event: AlertEvent) -> None:
        if event.state not in self.states:
            return
        try:
            self.fn(event)
        except Exception:
            self.failed += 1
            raise
        except BaseException as exc:  # SystemExit and the like: never out of the reporter
            self.failed += 1
            raise CallbackError(f"{self.name} raised {exc!r}") from exc
        self.sent += 1

    def counts(self) -> dict[str, int]:
        """Calls that returned (``sent``) and that raised (``failed``)."""
        return {"sent": self.sent, "failed": self.failed}

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"CallbackSink({self.fn!r})"


class _Stop:
    pass


_STOP = _Stop()
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_FOLLOW_STATUS = frozenset({307, 308})  # the redirects that repeat the POST with its body
_MAX_HOPS = 3
_MAX_RESPONSE = 64 * 1024  # bytes of a response body read (and thrown away) at most
_OWN_HEADERS = frozenset({"content-type", "user-agent"})


class _Failure(Exception):
    """One attempt failed: ``outcome`` is failed, redirected or timeout; ``retry`` if worth it."""

    def __init__(self, outcome: str, detail: str, retry: bool) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.retry = retry


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class WebhookSink:
    """POSTs each event as JSON to a URL, from a thread of its own.

    ``send`` only puts the event on a bounded queue; a daemon thread (started at the first
    event, and again in a forked child) delivers it with :mod:`http.client`.

    Each attempt has a TOTAL deadline of ``timeout`` seconds, connection, request and response
    together: a watchdog closes the connection when it runs out, so a server that answers one
    byte a second cannot hold the thread longer. A failed attempt (connection error, deadline,
    HTTP 408/425/429/5xx) is retried ``retries`` times, waiting ``backoff``, ``2 * backoff``,
    ``4 * backoff``... seconds (each wait at most ``max_backoff``); other HTTP errors are not
    retried. One event therefore takes at most ``(retries + 1) * timeout`` plus the waits.

    Redirects are not followed: a 3xx answer is a failure, counted as ``redirected``. With
    ``follow_redirects=True`` a 307 or 308 (the redirects that repeat a POST with its body) is
    followed up to 3 times, from ``https`` only to ``https``; on a different origin (scheme,
    host or port) only ``Content-Type`` and ``User-Agent`` go along: your ``headers``
    (``Authorization``, tokens, cookies) are sent to the configured origin alone.

    Counters (:meth:`counts`, emitted by the engine as
    ``mlmon_alert_notifications_total{sink, outcome}``): ``sent``, ``failed`` (given up on after
    an error), ``redirected`` (given up on at a redirect), ``timeout`` (given up on when the last
    attempt ran out of its deadline) and ``dropped`` (queue full, sent after ``close``, or
    still queued or in flight when ``close`` ran out of time). Each event counts exactly once.

    Args:
        url: ``http://`` or ``https://`` URL (no ``user:password@``: give ``headers``).
        timeout: total seconds of one attempt (connect, send, read the answer).
        max_queue: events waiting at most; more are dropped and counted.
        retries: extra attempts after the first.
        backoff: seconds before the first retry, doubling after each.
        max_backoff: longest wait between attempts.
        headers: extra HTTP headers (an ``Authorization`` token, say).
        payload: ``payload(event)`` gives the JSON body (default ``event.to_dict()``); e.g.
            ``lambda e: {"text": e.message}`` for a chat webhook.
        states: event states to send; None for all.
        name: the sink's name in counts.
        follow_redirects: follow 307/308 redirects (see above); default False.

    >>> sink = WebhookSink("http://127.0.0.1:9/alerts", retries=0)
    >>> sink.counts()
    {'sent': 0, 'failed': 0, 'redirected': 0, 'timeout': 0, 'dropped': 0}
    >>> sink.close()
    >>> WebhookSink("ftp://example.org/")
    Traceback (most recent call last):
    ...
    ValueError: url must be an http:// or https:// URL, got 'ftp://example.org/'
    """

    CLOSE_TIMEOUT = 5.0
    """Default bound, in seconds, of :meth:`close`."""

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
        follow_redirects: bool = False,
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "url must not hold credentials (give headers={'Authorization': ...}), got "
                f"{parts._replace(netloc='***@' + parts.netloc.rpartition('@')[2]).geturl()!r}"
            )
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"url must have a valid port, got {url!r}") from None
        for field, value in (("timeout", timeout), ("backoff", backoff), ("max_backoff", max_backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{field} must be a number of seconds >= 0, got {value!r}")
            if value == float("inf"):
                raise ValueError(f"{field} must be a finite number of seconds, got {value!r}")
        if timeout == 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be an int >= 1, got {max_queue!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not isinstance(follow_redirects, bool):
            raise ValueError(f"follow_redirects must be True or False, got {follow_redirects!r}")
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
        self.follow_redirects = follow_redirects
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._closed = False
        self._last_log = -1e18
        self._setup()

    def _setup(self) -> None:
        self._pid = os.getpid()
        self._queue: queue.Queue[AlertEvent | _Stop] = queue.Queue(self.max_queue)
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None  # the attempt in flight

    # -- counters --------------------------------------------------------------------------
    def _count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1

    def counts(self) -> dict[str, int]:
        """Events by outcome (see :data:`OUTCOMES`); each event counts once."""
        with self._lock:
            return dict(self._counts)

    @property
    def sent(self) -> int:
        """Events delivered (a 2xx answer)."""
        return self._counts["sent"]

    @property
    def failed(self) -> int:
        """Events given up on: ``failed`` + ``redirected`` + ``timeout`` outcomes."""
        c = self._counts
        return c["failed"] + c["redirected"] + c["timeout"]

    @property
    def redirected(self) -> int:
        """Events given up on because the server answered with a redirect."""
        return self._counts["redirected"]

    @property
    def timed_out(self) -> int:
        """Events given up on because the last attempt ran out of its deadline."""
        return self._counts["timeout"]

    @property
    def dropped(self) -> int:
        """Events dropped: queue full, sent after close, or left when close ran out of time."""
        return self._counts["dropped"]

    # -- sending ---------------------------------------------------------------------------
    def send(self, event: AlertEvent) -> None:
        if event.state not in self.states:
            return
        if self._pid != os.getpid():
            self._setup()  # a forked child: the parent's thread and queue are not ours
        if self._closed:
            self._count("dropped")
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._count("dropped")
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
                self._count("dropped")
                continue
            try:
                outcome, detail = self._deliver(item)
            except BaseException as exc:  # your payload function raised: counted, never fatal
                outcome, detail = "failed", f"payload raised {exc!r}"
            if outcome != "sent" and self._abort.is_set():
                outcome = "dropped"  # close ran out of time while this one was in flight
            self._count(outcome)
            if outcome != "sent":
                self._log(f"gave up on an alert for {self.url} ({outcome}): {detail}")

    def _deliver(self, event: AlertEvent) -> tuple[str, str]:
        """Attempt, retry and wait; returns (outcome, detail)."""
        body = self.payload(event) if self.payload is not None else event.to_dict()
        data = json.dumps(body, allow_nan=False, default=str).encode("utf-8")
        last = _Failure("failed", "no attempt", False)
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                if self._abort.wait(delay):
                    break
            try:
                self._post(data)
                return "sent", ""
            except _Failure as failure:
                last = failure
            if not last.retry or self._abort.is_set():
                break
        return last.outcome, f"{last} after {attempt + 1} attempt(s)"

    def _post(self, data: bytes) -> None:
        """POST ``data``, following allowed redirects; raises _Failure."""
        parts = urlsplit(self.url)
        origin = _origin(parts)
        for _hop in range(_MAX_HOPS + 1):
            same = _origin(parts) == origin
            headers = {k: v for k, v in self.headers.items() if same or k.lower() in _OWN_HEADERS}
            status, location = self._attempt(parts, data, headers)
            if 200 <= status < 300:
                return
            if 300 <= status < 400:
                if not (self.follow_redirects and status in _FOLLOW_STATUS and location):
                    raise _Failure("redirected", f"HTTP {status} (redirects are not followed)", False)
                target = urlsplit(urljoin(parts.geturl(), location))
                if target.scheme not in ("http", "https") or not target.hostname:
                    raise _Failure("redirected", f"HTTP {status} to an unusable {location!r}", False)
                if parts.scheme == "https" and target.scheme != "https":
                    raise _Failure("redirected", f"HTTP {status} from https to {target.scheme}", False)
                parts = target
                continue
            raise _Failure("failed", f"HTTP {status}", status in _RETRY_STATUS)
        raise _Failure("redirected", f"more than {_MAX_HOPS} redirects", False)

    def _attempt(
        self, parts: SplitResult, data: bytes, headers: Mapping[str, str]
    ) -> tuple[int, str | None]:
        """One request under a total deadline of ``timeout`` s: (status, Location)."""
        deadline = time.monotonic() + self.timeout
        host = parts.hostname or ""
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, parts.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=self.timeout)
        expired = threading.Event()

        def watchdog() -> None:
            expired.set()
            _shut(conn)

        timer = threading.Timer(self.timeout, watchdog)
        timer.daemon = True
        with self._lock:
            self._conn = conn
        try:
            if self._abort.is_set():
                raise OSError("the sink is closing")
            timer.start()
            conn.connect()  # bounded by the socket timeout, which is the whole deadline
            if expired.is_set() or self._abort.is_set():
                raise OSError("deadline passed while connecting")
            assert conn.sock is not None
            conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", path, body=data, headers=dict(headers))
            response = conn.getresponse()
            response.read(_MAX_RESPONSE)
            return response.status, response.getheader("Location")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if expired.is_set() or time.monotonic() >= deadline:
                raise _Failure("timeout", f"no answer within {self.timeout:g} s", True) from None
            raise _Failure("failed", repr(exc), True) from None
        finally:
            timer.cancel()
            with self._lock:
                self._conn = None
            conn.close()

    def _log(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= 60.0:
            self._last_log = now
            log.warning("mlmon %s: %s", self.name, message)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Deliver what is queued, returning within ``timeout`` seconds (default 5).

        What is still queued or in flight when the time is up is counted as ``dropped`` (the
        connection in flight is closed). Idempotent; events sent afterwards are dropped.
        """
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        deadline = time.monotonic() + max(0.0, float(timeout))
        grace = min(0.25, max(0.0, float(timeout)) / 4)  # kept to stop the thread at the end
        while thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=max(0.0, min(0.05, deadline - grace - time.monotonic())))
                break
            except queue.Full:
                if time.monotonic() >= deadline - grace:
                    break
        thread.join(max(0.0, deadline - grace - time.monotonic()))
        if not thread.is_alive():
            return
        self._abort.set()  # stop waiting between retries; what is left is dropped
        with self._lock:
            conn = self._conn
        if conn is not None:
            _shut(conn)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Stop):
                self._count("dropped")
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:  # pragma: no cover - the queue was just emptied
            pass
        thread.join(max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r}, {self.counts()})"


def _shut(conn: http.client.HTTPConnection) -> None:
    """Wake whatever blocks on the connection's socket (from another thread)."""
    sock = conn.sock
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
