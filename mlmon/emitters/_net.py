"""What the StatsD, Graphite and Prometheus emitters share.

A resolver that never blocks longer than its timeout and re-resolves after failures, a TCP link
with deadlines, reconnection backoff and detection of a peer that has closed, a connected UDP
link, the checks of the settings the emitters have in common, their self metrics, and what
they do in a forked child.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

Address = tuple[int, Any]  # (address family, sockaddr)
SelfMetrics = list[tuple[str, float, dict[str, str]]]

# Looked up through the module so tests can simulate DNS without touching a real resolver.
_getaddrinfo = socket.getaddrinfo

_TCP_CHUNK = 64 * 1024


def _module_getaddrinfo(*args: Any) -> Any:
    # Read at call time, so patching ``_getaddrinfo`` reaches resolvers built before.
    return _getaddrinfo(*args)


# --------------------------------------------------------------------------- settings


def _check_host(host: object) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")


def _check_port(port: object) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")


def _check_seconds(**values: object) -> None:
    """Raise ValueError naming the first of ``values`` that is not a positive number."""
    for field, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{field} must be a positive number of seconds, got {value!r}")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")


# --------------------------------------------------------------------------- lifecycle


def _loss_metrics(name: str, dropped: int, collisions: int) -> SelfMetrics:
    """Lines lost (``mlmon_dropped_total{buffer=name}``) and name collisions, as self metrics."""
    return [
        ("mlmon_dropped_total", float(dropped), {"buffer": name}),
        ("mlmon_internal_errors_total", float(collisions), {"stage": f"{name}_naming"}),
    ]



def connect_by(family: int, addr: Any, deadline: float) -> socket.socket:
    """A stream socket connected to ``addr`` before ``deadline`` (``time.monotonic()``), its
    timeout left at the time that remained; raises ``TimeoutError``/``OSError`` otherwise."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no time left to connect")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(remaining)
        sock.connect(addr)
    except BaseException:
        sock.close()
        raise
    return sock

class _ForkAware:
    """Fork handling for an emitter that holds a lock and sockets.

    A forked child inherits the parent's lock (maybe held by a thread that does not exist in
    the child) and the parent's sockets. Each public method calls :meth:`_check_fork` first: in
    a new process it replaces the lock, then :meth:`_forget_parent` lets go of the rest.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _check_fork(self) -> None:
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._forget_parent()

    def _forget_parent(self) -> None:
        """Drop what belongs to the parent process (the lock is already this process's)."""
        raise NotImplementedError  # pragma: no cover - every emitter overrides it


# --------------------------------------------------------------------------- links


def _close(sock: socket.socket) -> None:
    """Close our copy of the descriptor (never shutdown: a forked child shares the connection)."""
    try:
        sock.close()
    except OSError:
        pass


def _rewrap(err: OSError, message: str) -> OSError:
    """``err``'s class (ConnectionRefusedError, TimeoutError...) with a message saying more."""
    args: tuple[object, ...] = (message,) if err.errno is None else (err.errno, message)
    try:
        new = type(err)(*args)
    except Exception:
        new = OSError(*args)
    new.__cause__ = err
    return new


class _Resolver:
    """``getaddrinfo`` on a helper thread, so a hung DNS server costs at most ``timeout``.

    The answer (every address, in the resolver's order) is cached for ``ttl`` seconds. After a
    send failure :meth:`failed` moves on to the next address (``localhost`` may answer ``::1``
    first while the daemon only listens on ``127.0.0.1``) and asks for a fresh resolution. While
    a previous answer exists, a failed or slow re-resolution keeps using it: a DNS blip must not
    stop metrics that still have a working address. At most one lookup thread runs at a time.
    Lookups go through ``getaddrinfo`` (default: this module's ``_getaddrinfo``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        socktype: int,
        ttl: float = 60.0,
        getaddrinfo: Callable[..., Any] = _module_getaddrinfo,
    ) -> None:
        self.host = host
        self.port = port
        self.socktype = socktype
        self.ttl = ttl
        self._getaddrinfo = getaddrinfo
        self._addrs: list[Address] = []
        self._index = 0
        self._expires = 0.0
        self._lock = threading.Lock()
        self._pending: threading.Thread | None = None
        self._done = threading.Event()
        self._result: list[Address] | BaseException | None = None
        self._numeric = self._try_numeric()

    def _try_numeric(self) -> list[Address] | None:
        try:
            infos = self._getaddrinfo(
                self.host, self.port, 0, self.socktype, 0, socket.AI_NUMERICHOST
            )
        except (OSError, UnicodeError):
            return None
        return [(info[0], info[4]) for info in infos] or None

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending = None
        self._done = threading.Event()
        self._result = None

    def failed(self) -> None:
        """The current address did not work: use the next one, and resolve again first."""
        self._index += 1
        self._expires = 0.0

    def _lookup(self, done: threading.Event) -> None:
        result: list[Address] | BaseException
        try:
            infos = self._getaddrinfo(self.host, self.port, 0, self.socktype)
            result = [(info[0], info[4]) for info in infos]
            if not result:
                raise socket.gaierror(socket.EAI_NONAME, f"no address for {self.host!r}")
        except BaseException as exc:  # handed over to the waiting thread
            result = exc
        with self._lock:
            self._result = result
        done.set()

    def _current(self) -> Address:
        return self._addrs[self._index % len(self._addrs)]

    def get(self, timeout: float) -> Address:
        """An address, resolving if the cache expired; raises OSError when there is none."""
        if self._numeric is not None:
            return self._numeric[self._index % len(self._numeric)]
        if self._addrs and time.monotonic() < self._expires:
            return self._current()
        with self._lock:
            if self._pending is None:
                self._done = threading.Event()
                self._result = None
                self._pending = threading.Thread(
                    target=self._lookup, args=(self._done,), name="mlmon-resolve", daemon=True
                )
                self._pending.start()
            done = self._done
        done.wait(max(0.0, timeout))
        with self._lock:
            result = self._result if done.is_set() else None
            if done.is_set():
                self._pending = None
        if isinstance(result, list):
            if result != self._addrs:
                self._addrs, self._index = result, 0
            self._expires = time.monotonic() + self.ttl
            return self._current()
        if self._addrs:
            return self._current()
        if isinstance(result, BaseException):
            raise OSError(f"cannot resolve {self.host!r}: {result}") from result
        raise TimeoutError(f"resolving {self.host!r} took longer than {timeout:.3g}s")


class _TcpLink:
    """One TCP connection with deadlines and exponential reconnection backoff."""

    def __init__(self, resolver: _Resolver, reconnect_min: float, reconnect_max: float) -> None:
        self.resolver = resolver
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.sock: socket.socket | None = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self.connects = 0

    def retry_in(self) -> float:
        """Seconds until the next connection attempt is allowed (0 when it is)."""
        return max(0.0, self._retry_at - time.monotonic())

    def drop(self) -> None:
        """Forget the connection (without shutdown: a forked child must not end the parent's)."""
        if self.sock is not None:
            _close(self.sock)
            self.sock = None

    def reset_backoff(self) -> None:
        """Allow a connection attempt now, whatever the backoff says."""
        self._retry_at = 0.0

    def failed(self) -> None:
        self.drop()
        self.resolver.failed()
        self._backoff = min(self.reconnect_max, max(self.reconnect_min, self._backoff * 2.0))
        # Jitter, so replicas that lost the same backend do not reconnect in lockstep.
        self._retry_at = time.monotonic() + self._backoff * random.uniform(0.8, 1.0)

    def _peer_closed(self, sock: socket.socket) -> bool:
        # Carbon and StatsD never write to us: readable means EOF or an error, so the next
        # send would vanish into a dead connection.
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(4096, socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def connect(self, deadline: float) -> socket.socket:
        """The open connection, connecting first if needed; raises OSError on failure."""
        sock = self.sock
        if sock is not None and not self._peer_closed(sock):
            return sock
        self.drop()
        wait = self.retry_in()
        if wait > 0:
            raise ConnectionError(f"backing off, next connection attempt in {wait:.1f}s")
        try:
            family, addr = self.resolver.get(deadline - time.monotonic())
            sock = connect_by(family, addr, deadline)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except BaseException:
                sock.close()
                raise
        except OSError:
            self.failed()
            raise
        self.sock = sock
        self.connects += 1
        self._backoff = 0.0
        return sock

    def send(self, data: bytes, deadline: float) -> tuple[int, OSError | None]:
        """Write ``data`` before ``deadline``: ``(bytes written, error or None)``.

        On an error (timeout included) the connection is dropped: the peer discards the
        partial line it holds, so whatever was not fully written can be sent again.
        """
        sent = 0
        try:
            sock = self.connect(deadline)
            view = memoryview(data)
            while sent < len(view):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("send deadline passed (peer not reading?)")
                sock.settimeout(remaining)
                sent += sock.send(view[sent : sent + _TCP_CHUNK])
        except OSError as exc:
            if self.sock is not None:
                self.failed()
            return sent, exc
        return sent, None


class _UdpLink:
    """A connected UDP socket: the kernel then reports ICMP "port unreachable" as ECONNREFUSED."""

    def __init__(self, resolver: _Resolver, probe_timeout: float) -> None:
        self.resolver = resolver
        self.probe_timeout = probe_timeout
        self.sock: socket.socket | None = None
        self._addr: Address | None = None
        self.down = False

    def drop(self) -> None:
        if self.sock is not None:
            _close(self.sock)
            self.sock = None
            self._addr = None

    def _socket(self, deadline: float) -> socket.socket:
        addr = self.resolver.get(deadline - time.monotonic())
        if self.sock is not None and addr == self._addr:
            return self.sock
        self.drop()
        sock = socket.socket(addr[0], socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(addr[1])
        except BaseException:
            sock.close()
            raise
        self.sock, self._addr = sock, addr
        return sock

    @staticmethod
    def _pending_error(sock: socket.socket, wait: float) -> int:
        if wait > 0:
            try:
                select.select([sock], [], [], wait)
            except OSError:
                pass
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def send(self, payloads: Sequence[bytes], deadline: float) -> tuple[int, OSError | None]:
        """Send datagrams in order: ``(datagrams sent, error or None)``.

        After each datagram the socket's pending error is read: on loopback the kernel knows
        at once that the port is closed, so the refused datagram is reported as unsent (its
        counter deltas are kept). Elsewhere the ICMP reply takes a round trip: after an outage
        the first datagram waits up to ``probe_timeout`` for it before the rest follow.
        """
        done = 0
        try:
            sock = self._socket(deadline)
            if self._pending_error(sock, 0.0):
                self.down = True  # a late reply about the previous flush
            for i, payload in enumerate(payloads):
                sock.send(payload)
                err = self._pending_error(sock, self.probe_timeout if self.down and i == 0 else 0.0)
                if err:
                    raise OSError(err, os.strerror(err))
                done += 1
        except OSError as exc:
            self.down = not (isinstance(exc, BlockingIOError) or exc.errno == errno.EMSGSIZE)
            if self.down:
                self.resolver.failed()
            return done, exc
        self.down = False
        return done, None


# --------------------------------------------------------------------------- HTTP with a deadline


def _wait_io(sock: socket.socket, write: bool, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    r, w, _ = select.select([] if write else [sock], [sock] if write else [], [], remaining)
    if not (r or w):
        raise TimeoutError("deadline passed")


def _http_request(
    url: str,
    method: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    resolver: _Resolver | None = None,
    max_response: int = 64 * 1024,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request that finishes before ``deadline`` (monotonic), whatever the peer does.

    Resolution (on a helper thread), connection, TLS handshake, sending and reading all share
    the one deadline: a server that trickles its answer a byte at a time, or never reads, costs
    at most the time left, then ``TimeoutError``. Returns ``(status, head of the response)``.
    The socket is non-blocking throughout and every wait is a ``select`` bounded by the deadline.
    """
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    if resolver is None or resolver.host != parts.hostname or resolver.port != port:
        resolver = _Resolver(parts.hostname, port, socket.SOCK_STREAM)
    family, addr = resolver.get(deadline - time.monotonic())
    raw = socket.socket(family, socket.SOCK_STREAM)
    sock: socket.socket = raw
    try:
        raw.setblocking(False)
        err = raw.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            raise OSError(err, os.strerror(err))
        if err:
            _wait_io(raw, True, deadline)
            err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
        if tls:
            ctx = ssl.create_default_context()
            sock = ctx.wrap_socket(
                raw, server_hostname=parts.hostname, do_handshake_on_connect=False
            )
            while True:
                try:
                    sock.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    _wait_io(sock, False, deadline)
                except ssl.SSLWantWriteError:
                    _wait_io(sock, True, deadline)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host_header = parts.netloc.rsplit("@", 1)[-1]
        head = [f"{method} {target} HTTP/1.1", f"Host: {host_header}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        data = memoryview(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        sent = 0
        while sent < len(data):
            try:
                sent += sock.send(data[sent : sent + _TCP_CHUNK])
            except (BlockingIOError, ssl.SSLWantWriteError):
                _wait_io(sock, True, deadline)
            except ssl.SSLWantReadError:
                _wait_io(sock, False, deadline)
        reply = b""
        while b"\r\n" not in reply and len(reply) < max_response:
            try:
                chunk = sock.recv(4096)
            except (BlockingIOError, ssl.SSLWantReadError):
                _wait_io(sock, False, deadline)
                continue
            except ssl.SSLWantWriteError:
                _wait_io(sock, True, deadline)
                continue
            if not chunk:
                break
            reply += chunk
            if time.monotonic() >= deadline:
                raise TimeoutError("deadline passed")
    except BaseException:
        _close(sock)
        raise
    _close(sock)
    status_line = reply.split(b"\r\n", 1)[0]
    fields = status_line.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {status_line[:80]!r}")
    return int(fields[1]), reply
