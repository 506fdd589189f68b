"""StatsD emitter: counters as exact deltas, window values as gauges, over UDP or TCP.

The resolver and the UDP and TCP links it sends through live in :mod:`mlmon.emitters._net`,
shared with the Graphite emitter.
"""

from __future__ import annotations

import math
import random
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
    _ForkAware,
    _loss_metrics,
    _Resolver,
    _rewrap,
    _TcpLink,
    _UdpLink,
)
from mlmon.naming import PathRenderer, Style, format_number
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
        timeout: longest time one emit may spend resolving, connecting and sending, seconds.
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
        name: str = "statsd",
    ) -> None:
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
        self._renderer = PathRenderer(
            prefix, style=style, instance_in_path=instance_in_path, version_in_path=version_in_path
        )
        socktype = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        self._resolver = _Resolver(
            host, port, socktype, ttl=float(resolve_ttl), getaddrinfo=_lookup
        )
        self._udp = _UdpLink(self._resolver, float(probe_timeout))
        self._tcp = _TcpLink(self._resolver, float(reconnect_min), float(reconnect_max))
        super().__init__()  # self._lock and self._pid: see _ForkAware
        self._last: OrderedDict[tuple[str, str | None, str], dict[Any, float]] = OrderedDict()
        self._dropped = 0
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
        self._last = OrderedDict()
        self._dropped = 0
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
        for s in snapshot.samples:
            value = s.value
            if not math.isfinite(value):
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
        if self.protocol == "udp":
            packets = self._packets(units)
            done, err = self._udp.send([p for p, _, _ in packets], deadline)
            self._sent_packets += done
            self._sent_bytes += sum(len(p) for p, _, _ in packets[:done])
            return (packets[done - 1][2] if done else 0), err
        encoded = [(u.text + "\n").encode("utf-8") for u in units]
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
            raise _rewrap(
                err,
                f"statsd {self.protocol}://{self.host}:{self.port}: {len(units) - done} of "
                f"{len(units)} lines not sent ({lost} lost, counter deltas kept for the next "
                f"flush): {err}",
            )

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Lines lost (``mlmon_dropped_total``) and name collisions, as ``(name, value, labels)``."""
        return _loss_metrics(self.name, self._dropped, self._renderer.collisions)

    @property
    def stats(self) -> dict[str, int]:
        """Counts since construction: lines, datagrams (or TCP writes) and bytes sent, lines lost."""
        return {
            "lines": self._sent_lines,
            "packets": self._sent_packets,
            "bytes": self._sent_bytes,
            "dropped": self._dropped,
        }

    def close(self) -> None:
        """Release the socket. Idempotent; nothing is buffered, so nothing is flushed."""
        self._check_fork()
        with self._lock:
            self._closed = True
            self._udp.drop()
            self._tcp.drop()

    def __repr__(self) -> str:
        return (
            f"StatsdEmitter(host={self.host!r}, port={self.port}, prefix={self.prefix!r}, "
            f"protocol={self.protocol!r}, tags={self.tags!r})"
        )
