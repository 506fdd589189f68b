"""StatsD emitter: counters as exact deltas, window values as gauges, over UDP or TCP.

The resolver and the UDP and TCP links it sends through live in :mod:`mlmon.emitters._net`,
shared with the Graphite emitter. An application that already configured the ``statsd``
package (pystatsd) can hand its client over instead (``client=``): see :class:`_ClientLink`.
"""

from __future__ import annotations

import math
import random
import select
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from mlmon.emitters._net import (
    _check_host,
    _check_name,
    _check_port,
    _check_seconds,
    _close,
    _ForkAware,
    _loss_metrics,
    _Resolver,
    _rewrap,
    _TcpLink,
    _UdpLink,
    connect_by,
)
from mlmon.naming import (
    PathRenderer,
    Style,
    _validate_prefix,
    format_number,
    identity_problem,
    series_problem,
)
from mlmon.snapshot import CATALOG, Snapshot

__all__ = ["StatsdEmitter"]

Protocol = Literal["udp", "tcp"]
TagStyle = Literal["none", "dogstatsd", "graphite"]

# Looked up through the module so tests can simulate DNS without touching a real resolver.
_getaddrinfo = socket.getaddrinfo

_MAX_IDENTITIES = 64


def _lookup(*args: Any) -> Any:
    # Read at call time, so patching ``_getaddrinfo`` reaches emitters built before.
    return _getaddrinfo(*args)


class _Unit:
    """One StatsD line (or the two lines of a negative gauge) with what to commit once sent."""

    __slots__ = ("commit", "lines", "text")

    def __init__(self, text: str, lines: int, commit: tuple[dict[Any, float], Any, float] | None):
        self.text = text
        self.lines = lines
        self.commit = commit


class _ClientLink:
    """Sending through an application's pystatsd client (``statsd.StatsClient``,
    ``TCPStatsClient`` or ``UnixSocketStatsClient``).

    UDP (``StatsClient``): each datagram goes through the client's own ``_send`` (what its
    ``pipeline()`` calls), which swallows socket errors: a datagram it could not send is
    invisible, so what it was handed is counted as sent (and in ``stats["unconfirmed"]``).
    Datagrams are packed up to the client's ``maxudpsize``.

    Streams (TCP, Unix socket): mlmon writes on the client's socket itself, so that connecting
    and sending share one total deadline (pystatsd's own ``timeout`` is per operation, and None
    by default) and so that it knows how many bytes went out: lines not written whole keep
    their counter deltas for the next flush, exactly as with ``protocol="tcp"``. After a
    failure the client is closed, so its next send (mlmon's or the application's) reconnects.
    """

    def __init__(self, client: Any) -> None:
        import statsd

        if isinstance(client, statsd.StatsClient):
            self.stream = False
        elif isinstance(client, (statsd.TCPStatsClient, statsd.UnixSocketStatsClient)):
            self.stream = True
        else:
            raise TypeError(
                "client must be a statsd.StatsClient, statsd.TCPStatsClient or "
                f"statsd.UnixSocketStatsClient (the pystatsd package), got {client!r}"
            )
        needed: tuple[str, ...] = ("_prefix", "_send", "_sock")
        needed += ("_timeout",) if self.stream else ("_maxudpsize",)
        missing = [a for a in needed if not hasattr(client, a)]
        if missing:
            raise TypeError(
                f"client {type(client).__name__} lacks {', '.join(missing)}: this pystatsd "
                "version is not supported (statsd>=4.0 is)"
            )
        self.unix = isinstance(client, statsd.UnixSocketStatsClient)
        self.client = client
        self.max_packet = int(getattr(client, "_maxudpsize", 65507) or 65507)
        self.resolver: _Resolver | None = None
        if self.stream and not self.unix:
            self.resolver = _Resolver(
                str(client._host), int(client._port), socket.SOCK_STREAM, getaddrinfo=_lookup
            )
        self.connects = 0
        self.unconfirmed = 0

    def describe(self) -> str:
        c = self.client
        if self.unix:
            return f"pystatsd unix://{c._socket_path}"
        if self.stream:
            return f"pystatsd tcp://{c._host}:{c._port}"
        return f"pystatsd udp://{c._addr[0]}:{c._addr[1]}"

    def forget_parent(self) -> None:
        # A forked child must not write into the parent's stream; datagrams may share a socket.
        if self.stream and self.client._sock is not None:
            _close(self.client._sock)
            self.client._sock = None
        if self.resolver is not None:
            self.resolver.reset_after_fork()

    # -- UDP -------------------------------------------------------------------------------

    def send_packets(
        self, payloads: Sequence[bytes], deadline: float
    ) -> tuple[int, OSError | None]:
        """Hand datagrams to the client's ``_send`` in order: ``(datagrams handed, error)``."""
        done = 0
        for payload in payloads:
            if time.monotonic() >= deadline:
                return done, TimeoutError("send deadline passed")
            if self.client._sock is None:
                return done, ConnectionError("the pystatsd client is closed")
            try:
                self.client._send(payload.decode("ascii"))
            except (UnicodeError, AttributeError, TypeError) as exc:
                return done, OSError(f"the pystatsd client could not send: {exc!r}")
            done += 1
        return done, None

    # -- streams ---------------------------------------------------------------------------

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(4096, socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    def _connect(self, deadline: float) -> socket.socket:
        c = self.client
        sock = c._sock
        if sock is not None and not self._peer_closed(sock):
            return sock  # type: ignore[no-any-return]
        if sock is not None:
            c.close()
        family: int
        addr: Any
        if self.unix:
            family, addr = socket.AF_UNIX, c._socket_path
        else:
            assert self.resolver is not None
            family, addr = self.resolver.get(deadline - time.monotonic())
        try:
            sock = connect_by(family, addr, deadline)
        except BaseException:
            if self.resolver is not None:
                self.resolver.failed()
            raise
        sock.settimeout(c._timeout)  # the application's sends behave as pystatsd's own
        c._sock = sock
        self.connects += 1
        return sock

    def send_stream(self, data: bytes, deadline: float) -> tuple[int, OSError | None]:
        """Write ``data`` on the client's connection before ``deadline``: ``(bytes, error)``."""
        sent = 0
        sock: socket.socket | None = None
        try:
            sock = self._connect(deadline)
            view = memoryview(data)
            while sent < len(view):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("send deadline passed (peer not reading?)")
                sock.settimeout(remaining)
                sent += sock.send(view[sent : sent + 65536])
            sock.settimeout(self.client._timeout)
        except OSError as exc:
            # A partial line dies with the connection: reconnect at the next send.
            self.client.close()
            return sent, exc
        return sent, None


class StatsdEmitter(_ForkAware):
    """Send snapshots to a StatsD daemon: counters as deltas (``|c``), gauges (``|g``).

    Counters in a snapshot are cumulative for one process (``snapshot.instance``); the emitter
    keeps the last value it sent per series and process and sends the difference, so the daemon
    and ``sumSeries`` over replicas count every call exactly once. A new process identity (a
    forked child) starts from zero; a value lower than the last one (a reset) is sent whole.
    Deltas that could not be sent are carried into the next flush.

    Args:
        host, port: the daemon. Names are resolved on the reporter thread with a timeout,
            cached for ``resolve_ttl`` seconds and resolved again after a send failure.
        prefix: dotted prefix (``"ml"`` or ``"ml.prod"``), validated.
        protocol: ``"udp"`` (connected socket, so a closed port is noticed) or ``"tcp"``.
        max_packet: the largest datagram, bytes (1432 fits an Ethernet MTU; loopback can take
            8932 or more).
        tags: ``"none"`` (everything in the dotted path), ``"dogstatsd"`` (``|#k:v``) or
            ``"graphite"`` (``name;k=v``, StatsD >= 0.9 and Graphite >= 1.1).
        timings: False, or a sample rate in (0, 1] (True means 1.0) for raw latencies sent as
            ``|ms`` timers when the snapshot carries them (a ``timings`` attribute: seconds).
        instance_in_path: put the process identity in the path (or tags). Off by default:
            StatsD sums counters from all processes itself; gauges of several processes on one
            path overwrite each other (see docs/scale-out.md).
        version_in_path: put the model version after the model name (path style only; the tag
            styles always carry it).
        timeout: the total deadline of one emit, seconds: resolving, connecting and sending
            together (a TCP peer that accepts but never reads costs at most this).
        client: an application's pystatsd client (``statsd.StatsClient``, ``TCPStatsClient``
            or ``UnixSocketStatsClient``) to send through instead of a socket of mlmon's own;
            then ``host``, ``port`` and ``protocol`` must be left out, the client's prefix comes
            before ``prefix``, and :meth:`close` leaves the client open (it is the
            application's). Lines are rendered as without it. Through a UDP client, lost
            datagrams cannot be seen (pystatsd swallows socket errors), so the counter deltas
            they carried are lost, not carried over; see docs/emitters.md.
        name: the ``emitter``/``buffer`` label in mlmon's own metrics.

    Failures (unresolvable host, ECONNREFUSED, a TCP peer that does not read) never block the
    predict path: ``emit`` runs on the reporter thread, counts the lines it could not send in
    ``mlmon_dropped_total{buffer=name}`` (see :meth:`self_metrics`) and then raises the
    ``OSError``, which the reporter counts in ``mlmon_emit_errors_total{emitter=name}``.

    >>> import socket
    >>> from mlmon.snapshot import Sample, Snapshot
    >>> daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    >>> daemon.bind(("127.0.0.1", 0))
    >>> em = StatsdEmitter(port=daemon.getsockname()[1], prefix="ml")
    >>> em.emit(Snapshot("fraud", None, "web1:7", 0.0, 60.0, (
    ...     Sample.make("mlmon_calls_total", 10), Sample.make("mlmon_error_ratio", 0.25))))
    >>> print(daemon.recv(2048).decode())
    ml.fraud.mlmon_calls_total:10|c
    ml.fraud.mlmon_error_ratio:0.25|g
    >>> em.close(); daemon.close()
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8125,
        prefix: str = "",
        *,
        protocol: Protocol = "udp",
        max_packet: int = 1432,
        tags: TagStyle = "none",
        timings: bool | float = False,
        instance_in_path: bool = False,
        version_in_path: bool = False,
        timeout: float = 1.0,
        resolve_ttl: float = 60.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        probe_timeout: float = 0.02,
        client: Any = None,
        name: str = "statsd",
    ) -> None:
        link: _ClientLink | None = None
        if client is not None:
            if (host, port, protocol) != ("127.0.0.1", 8125, "udp"):
                raise ValueError(
                    "client= sends through the given pystatsd client: leave host, port and "
                    f"protocol out (got host={host!r}, port={port!r}, protocol={protocol!r})"
                )
            link = _ClientLink(client)
            client_prefix = link.client._prefix
            if client_prefix is not None and not isinstance(client_prefix, str):
                raise TypeError(f"client prefix must be a string, got {client_prefix!r}")
            try:
                _validate_prefix(client_prefix or "")
            except ValueError:
                raise ValueError(
                    "client prefix must be dot-separated segments of [A-Za-z0-9_-], got "
                    f"{client_prefix!r}"
                ) from None
            if isinstance(prefix, str) and client_prefix:
                prefix = f"{client_prefix}.{prefix}" if prefix else client_prefix
            protocol = "tcp" if link.stream else "udp"
        _check_host(host)
        _check_port(port)
        if protocol not in ("udp", "tcp"):
            raise ValueError(f"protocol must be 'udp' or 'tcp', got {protocol!r}")
        if (
            isinstance(max_packet, bool)
            or not isinstance(max_packet, int)
            or not 64 <= max_packet <= 65507
        ):
            raise ValueError(f"max_packet must be an int in 64..65507, got {max_packet!r}")
        if tags not in ("none", "dogstatsd", "graphite"):
            raise ValueError(f"tags must be 'none', 'dogstatsd' or 'graphite', got {tags!r}")
        if timings is True:
            rate = 1.0
        elif timings is False:
            rate = 0.0
        elif isinstance(timings, (int, float)) and 0.0 < float(timings) <= 1.0:
            rate = float(timings)
        else:
            raise ValueError(
                f"timings must be False, True or a sample rate in (0, 1], got {timings!r}"
            )
        _check_seconds(
            timeout=timeout,
            resolve_ttl=resolve_ttl,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
        )
        _check_name(name)
        styles: dict[str, Style] = {
            "none": "path",
            "dogstatsd": "dogstatsd",
            "graphite": "graphite_tags",
        }
        style = styles[tags]
        self.host = host
        self.port = port
        self.prefix = prefix
        self.protocol: Protocol = protocol
        self.max_packet = max_packet
        self.tags: TagStyle = tags
        self.timing_rate = rate
        self.timeout = float(timeout)
        self.name = name
        self.instance_in_path = bool(instance_in_path)
        self._renderer = PathRenderer(
            prefix, style=style, instance_in_path=instance_in_path, version_in_path=version_in_path
        )
        socktype = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        self._resolver = _Resolver(
            host, port, socktype, ttl=float(resolve_ttl), getaddrinfo=_lookup
        )
        self._udp = _UdpLink(self._resolver, float(probe_timeout))
        self._tcp = _TcpLink(self._resolver, float(reconnect_min), float(reconnect_max))
        self._client = link
        self.client = client
        if link is not None:
            self.max_packet = min(max_packet, max(64, link.max_packet))
        super().__init__()  # self._lock and self._pid: see _ForkAware
        self._last: OrderedDict[tuple[str, str | None, str], dict[Any, float]] = OrderedDict()
        self._dropped = 0
        self._bad_series = 0
        self._sent_lines = 0
        self._sent_packets = 0
        self._sent_bytes = 0
        self._closed = False

    # -- state -------------------------------------------------------------------------------

    def after_fork(self) -> None:
        """Forget the parent's sockets and counter state (the monitor calls this in a forked child)."""
        self._check_fork()

    def _forget_parent(self) -> None:
        # A forked child: the sockets and the counter state are the parent's.
        self._udp.drop()  # closes only this process's copy of the descriptors
        self._tcp.drop()
        self._resolver.reset_after_fork()
        if self._client is not None:
            self._client.forget_parent()
            self._client.unconfirmed = 0
        self._last = OrderedDict()
        self._dropped = 0
        self._bad_series = 0
        self._sent_lines = self._sent_packets = self._sent_bytes = 0

    def _state(self, snapshot: Snapshot) -> dict[Any, float]:
        ident = (snapshot.model, snapshot.version, snapshot.instance)
        state = self._last.get(ident)
        if state is None:
            state = {}
            self._last[ident] = state
            while len(self._last) > _MAX_IDENTITIES:
                self._last.popitem(last=False)
        else:
            self._last.move_to_end(ident)
        return state

    # -- formatting --------------------------------------------------------------------------

    def _units(self, snapshot: Snapshot) -> list[_Unit]:
        render = self._renderer.render
        model, version, instance = snapshot.model, snapshot.version, snapshot.instance
        state = self._state(snapshot)
        units: list[_Unit] = []
        if identity_problem(model, version, instance):
            self._bad_series += len(snapshot.samples)
            return units
        for s in snapshot.samples:
            value = s.value
            if series_problem(s.name, s.labels, value):
                self._bad_series += 1  # this series alone: the rest of the snapshot goes out
                continue
            if not math.isfinite(value):
                if not math.isnan(value):
                    self._bad_series += 1  # StatsD has no infinity; NaN means "no data"
                continue
            key, tail = render(model, version, instance, s.name, s.labels)
            info = CATALOG.get(s.name)
            if info is not None and info.kind == "counter":
                skey = (s.name, s.labels)
                last = state.get(skey)
                delta = value if last is None or value < last else value - last
                units.append(
                    _Unit(f"{key}:{format_number(delta)}|c{tail}", 1, (state, skey, value))
                )
            elif value < 0:
                # "-5|g" would be a decrement: set zero first, in the same datagram.
                num = format_number(value)
                units.append(_Unit(f"{key}:0|g{tail}\n{key}:{num}|g{tail}", 2, None))
            else:
                units.append(_Unit(f"{key}:{format_number(value)}|g{tail}", 1, None))
        if self.timing_rate > 0.0:
            units.extend(self._timing_units(snapshot))
        return units

    def _timing_units(self, snapshot: Snapshot) -> Iterable[_Unit]:
        timings = getattr(snapshot, "timings", None)
        if timings is None:
            return []
        key, tail = self._renderer.render(
            snapshot.model, snapshot.version, snapshot.instance, "mlmon_latency_ms", ()
        )
        rate = self.timing_rate
        # The monitor's own sample (``timings_rate``) and ours multiply: the daemon scales counts
        # by the line's rate, so its call counts stay right whatever was sampled where.
        line_rate = rate * float(getattr(snapshot, "timings_rate", 1.0) or 1.0)
        suffix = f"|ms|@{format_number(line_rate)}{tail}" if line_rate < 1.0 else f"|ms{tail}"
        # Sampling is decided before formatting: unsampled values cost one random draw.
        rnd = random.random
        return [
            _Unit(f"{key}:{format_number(round(float(t) * 1000.0, 6))}{suffix}", 1, None)
            for t in timings
            if (rate >= 1.0 or rnd() < rate) and math.isfinite(float(t)) and float(t) >= 0
        ]

    def _packets(self, units: Sequence[_Unit]) -> list[tuple[bytes, int, int]]:
        """Pack units into datagrams: ``(payload, first unit, end unit)``."""
        out: list[tuple[bytes, int, int]] = []
        cur: list[bytes] = []
        size = 0
        start = 0
        for i, unit in enumerate(units):
            data = unit.text.encode("utf-8")
            extra = len(data) + (1 if cur else 0)
            if cur and size + extra > self.max_packet:
                out.append((b"\n".join(cur), start, i))
                cur, size, start = [], 0, i
                extra = len(data)
            cur.append(data)
            size += extra
        if cur:
            out.append((b"\n".join(cur), start, len(units)))
        return out

    # -- sending -----------------------------------------------------------------------------

    def _send(self, units: Sequence[_Unit], deadline: float) -> tuple[int, OSError | None]:
        """Send units in order; ``(units sent, error or None)``."""
        link = self._client
        if self.protocol == "udp":
            packets = self._packets(units)
            payloads = [p for p, _, _ in packets]
            if link is not None:
                done, err = link.send_packets(payloads, deadline)
                link.unconfirmed += sum(
                    u.lines for u in units[: packets[done - 1][2] if done else 0]
                )
            else:
                done, err = self._udp.send(payloads, deadline)
            self._sent_packets += done
            self._sent_bytes += sum(len(p) for p, _, _ in packets[:done])
            return (packets[done - 1][2] if done else 0), err
        encoded = [(u.text + "\n").encode("utf-8") for u in units]
        if link is not None:
            sent, err = link.send_stream(b"".join(encoded), deadline)
        else:
            sent, err = self._tcp.send(b"".join(encoded), deadline)
        self._sent_bytes += sent
        self._sent_packets += 1 if sent else 0
        pos = 0
        for i, chunk in enumerate(encoded):
            pos += len(chunk)
            if pos > sent:
                return i, err
        return len(encoded), err

    def emit(self, snapshot: Snapshot) -> None:
        """Send one snapshot; raises OSError (after counting) when lines could not be sent."""
        self._check_fork()
        with self._lock:
            if self._closed:
                raise RuntimeError("StatsdEmitter is closed")
            self._emit(snapshot, time.monotonic() + self.timeout)

    def _emit(self, snapshot: Snapshot, deadline: float) -> None:
        units = self._units(snapshot)
        if not units:
            return
        try:
            done, err = self._send(units, deadline)
        except OSError as exc:  # resolution failed before anything was sent
            done, err = 0, exc
        for unit in units[:done]:
            self._sent_lines += unit.lines
            if unit.commit is not None:
                state, skey, value = unit.commit
                state[skey] = value
        # Unsent counter deltas are carried into the next flush; gauges and timings are lost.
        lost = sum(u.lines for u in units[done:] if u.commit is None)
        self._dropped += lost
        if err is not None:
            where = (
                self._client.describe()
                if self._client is not None
                else f"{self.protocol}://{self.host}:{self.port}"
            )
            raise _rewrap(
                err,
                f"statsd {where}: {len(units) - done} of "
                f"{len(units)} lines not sent ({lost} lost, counter deltas kept for the next "
                f"flush): {err}",
            )

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Lines lost (``mlmon_dropped_total{buffer=name}``), series that could not be rendered
        (``buffer="<name>_series"``) and name collisions, as ``(name, value, labels)``."""
        series = ("mlmon_dropped_total", float(self._bad_series), {"buffer": f"{self.name}_series"})
        return [series, *_loss_metrics(self.name, self._dropped, self._renderer.collisions)]

    @property
    def stats(self) -> dict[str, int]:
        """Counts since construction: lines, datagrams (or TCP writes) and bytes sent, lines
        lost, series that could not be rendered, and lines handed to a pystatsd UDP client
        (``unconfirmed``: it swallows send errors, so their delivery is unknown)."""
        return {
            "lines": self._sent_lines,
            "packets": self._sent_packets,
            "bytes": self._sent_bytes,
            "dropped": self._dropped,
            "bad_series": self._bad_series,
            "unconfirmed": self._client.unconfirmed if self._client is not None else 0,
        }

    def close(self) -> None:
        """Release the socket (never a ``client=``'s: it is the application's). Idempotent;
        nothing is buffered, so nothing is flushed."""
        self._check_fork()
        with self._lock:
            self._closed = True
            self._udp.drop()
            self._tcp.drop()

    def __repr__(self) -> str:
        if self._client is not None:
            return (
                f"StatsdEmitter(client={self.client!r}, prefix={self.prefix!r}, tags={self.tags!r})"
            )
        return (
            f"StatsdEmitter(host={self.host!r}, port={self.port}, prefix={self.prefix!r}, "
            f"protocol={self.protocol!r}, tags={self.tags!r})"
        )
