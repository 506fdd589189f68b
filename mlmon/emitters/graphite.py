"""Graphite emitter: carbon's plaintext (or pickle) protocol over TCP, with a bounded buffer."""

from __future__ import annotations

import itertools
import logging
import math
import pickle
import socket
import struct
import time
from collections import deque
from typing import Literal

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
)
from mlmon.naming import PathRenderer, format_number, identity_problem, series_problem
from mlmon.snapshot import Snapshot

__all__ = ["GraphiteEmitter"]

log = logging.getLogger("mlmon.emitters.graphite")

GraphiteProtocol = Literal["plaintext", "pickle"]
_Item = bytes | tuple[str, tuple[int, float]]

_CHUNK_LINES = 500
_CHUNK_BYTES = 64 * 1024


def _complete_items(chunk: list[_Item], sent: int) -> int:
    """How many leading items of ``chunk`` lie wholly within the first ``sent`` bytes."""
    pos = 0
    for i, item in enumerate(chunk):
        pos += len(item)
        if pos > sent:
            return i
    return len(chunk)


class GraphiteEmitter(_ForkAware):
    """Send snapshots to carbon (Graphite): one line per series, one timestamp per flush.

    Every sample becomes ``path value timestamp`` with the snapshot's timestamp in whole
    seconds. Counters stay cumulative, so each process must own its paths: the process identity
    is in the path by default (``prefix.model.instance.metric...``), and
    ``sumSeries(prefix.model.*.mlmon_calls_total)`` adds replicas exactly (docs/scale-out.md).

    Lines go into a bounded buffer first and are sent on the reporter thread, never on the
    predict path. When carbon is down, lines wait in the buffer (reconnection with exponential
    backoff) and are delivered with their original timestamps once it is back; beyond
    ``buffer_lines`` the oldest lines are dropped and counted in
    ``mlmon_dropped_total{buffer=name}`` (see :meth:`self_metrics`).

    Args:
        host, port: carbon's line receiver (2003), or its pickle receiver (2004) when
            ``protocol="pickle"``; ``port=None`` picks the one that matches the protocol.
        prefix: dotted prefix (``"ml"`` or ``"ml.prod"``), validated.
        tags: send Graphite tags (``prefix.metric;model=...;k=v``) instead of dotted paths.
        protocol: ``"plaintext"`` or ``"pickle"``.
        instance_in_path: put the process identity in the path (or a tag). Keep it on unless a
            single process writes these paths: cumulative counters of two processes on one
            path overwrite each other.
        version_in_path: put the model version after the model name (tags always carry it).
        timeout: the total deadline of one emit (or close), seconds: resolving, connecting and
            sending together; a peer that accepts but never reads costs at most this.
        buffer_lines: how many unsent lines to keep.
        reconnect_min, reconnect_max: reconnection backoff bounds, seconds.
        name: the ``emitter``/``buffer`` label in mlmon's own metrics.

    ``emit`` raises ``OSError`` when lines remain unsent (they stay buffered), so the reporter
    counts the failed flush in ``mlmon_emit_errors_total{emitter=name}``.

    >>> import socket
    >>> from mlmon.snapshot import Sample, Snapshot
    >>> carbon = socket.create_server(("127.0.0.1", 0))
    >>> em = GraphiteEmitter("127.0.0.1", carbon.getsockname()[1], prefix="ml")
    >>> em.emit(Snapshot("fraud", None, "web1:7", 1700000000.5, 60.0, (
    ...     Sample.make("mlmon_calls_total", 10),)))
    >>> conn, _ = carbon.accept()
    >>> print(conn.recv(4096).decode(), end="")
    ml.fraud.web1_7.mlmon_calls_total 10 1700000000
    >>> em.close(); conn.close(); carbon.close()
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        prefix: str = "",
        *,
        tags: bool = False,
        protocol: GraphiteProtocol = "plaintext",
        instance_in_path: bool = True,
        version_in_path: bool = False,
        timeout: float = 2.0,
        buffer_lines: int = 100_000,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        resolve_ttl: float = 60.0,
        name: str = "graphite",
    ) -> None:
        _check_host(host)
        if protocol not in ("plaintext", "pickle"):
            raise ValueError(f"protocol must be 'plaintext' or 'pickle', got {protocol!r}")
        if port is None:
            port = 2003 if protocol == "plaintext" else 2004
        _check_port(port)
        if isinstance(buffer_lines, bool) or not isinstance(buffer_lines, int) or buffer_lines < 1:
            raise ValueError(f"buffer_lines must be a positive int, got {buffer_lines!r}")
        _check_seconds(
            timeout=timeout,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            resolve_ttl=resolve_ttl,
        )
        _check_name(name)
        self.host = host
        self.port = port
        self.prefix = prefix
        self.tags = bool(tags)
        self.protocol: GraphiteProtocol = protocol
        self.timeout = float(timeout)
        self.buffer_lines = buffer_lines
        self.name = name
        self.instance_in_path = bool(instance_in_path)
        self._renderer = PathRenderer(
            prefix,
            style="graphite_tags" if tags else "path",
            instance_in_path=instance_in_path,
            version_in_path=version_in_path,
        )
        self._resolver = _Resolver(host, port, socket.SOCK_STREAM, ttl=float(resolve_ttl))
        self._link = _TcpLink(self._resolver, float(reconnect_min), float(reconnect_max))
        self._buffer: deque[_Item] = deque()
        super().__init__()  # self._lock and self._pid: see _ForkAware
        self._dropped = 0
        self._bad_series = 0
        self._sent_lines = 0
        self._sent_bytes = 0
        self._closed = False

    def after_fork(self) -> None:
        """Forget the parent's connection and buffered lines (the monitor calls this in a forked child)."""
        self._check_fork()

    def _forget_parent(self) -> None:
        # A forked child: the buffered lines and the connection belong to the parent.
        self._link.drop()  # closes only this process's copy of the descriptor
        self._resolver.reset_after_fork()
        self._buffer = deque()
        self._dropped = 0
        self._bad_series = 0
        self._sent_lines = self._sent_bytes = 0

    @property
    def buffered(self) -> int:
        """Lines waiting to be sent."""
        return len(self._buffer)

    @property
    def stats(self) -> dict[str, int]:
        """Counts since construction: lines and bytes sent, connections made, lines dropped."""
        return {
            "lines": self._sent_lines,
            "bytes": self._sent_bytes,
            "connects": self._link.connects,
            "dropped": self._dropped,
            "buffered": len(self._buffer),
            "bad_series": self._bad_series,
        }

    def _items(self, snapshot: Snapshot) -> list[_Item]:
        render = self._renderer.render
        model, version, instance = snapshot.model, snapshot.version, snapshot.instance
        ts = int(snapshot.timestamp)
        items: list[_Item] = []
        pickled = self.protocol == "pickle"
        if identity_problem(model, version, instance):
            self._bad_series += len(snapshot.samples)
            return items
        for s in snapshot.samples:
            value = s.value
            if series_problem(s.name, s.labels, value):
                self._bad_series += 1  # this series alone: the rest of the snapshot goes out
                continue
            if not math.isfinite(value):
                if not math.isnan(value):
                    self._bad_series += 1  # inf is not a number carbon can store
                continue  # NaN means "no data"
            key, _ = render(model, version, instance, s.name, s.labels)
            if pickled:
                items.append((key, (ts, value)))
            else:
                items.append(f"{key} {format_number(value)} {ts}\n".encode())
        return items

    def _enqueue(self, items: list[_Item]) -> None:
        buf = self._buffer
        overflow = len(buf) + len(items) - self.buffer_lines
        if overflow > 0:
            # Keep the newest data: the oldest lines are dropped first, and counted.
            self._dropped += overflow
            from_buffer = min(overflow, len(buf))
            for _ in range(from_buffer):
                buf.popleft()
            items = items[overflow - from_buffer :]
        buf.extend(items)

    def _encode(self, chunk: list[_Item]) -> bytes:
        if self.protocol == "plaintext":
            return b"".join(chunk)  # type: ignore[arg-type]
        payload = pickle.dumps(chunk, protocol=2)
        return struct.pack("!L", len(payload)) + payload

    def _flush(self, deadline: float) -> None:
        buf = self._buffer
        while buf:
            if self.protocol == "plaintext":
                chunk: list[_Item] = []
                size = 0
                for item in itertools.islice(buf, _CHUNK_LINES):
                    chunk.append(item)
                    size += len(item)
                    if size >= _CHUNK_BYTES:
                        break
            else:
                chunk = list(itertools.islice(buf, _CHUNK_LINES))
            data = self._encode(chunk)
            sent, err = self._link.send(data, deadline)
            self._sent_bytes += sent
            if self.protocol == "plaintext":
                done = _complete_items(chunk, sent)
            else:
                # Carbon discards a pickle frame it did not receive whole.
                done = len(chunk) if sent == len(data) else 0
            for _ in range(done):
                buf.popleft()
            self._sent_lines += done
            if err is not None:
                raise _rewrap(
                    err,
                    f"graphite {self.host}:{self.port}: {len(buf)} lines buffered "
                    f"({self._dropped} dropped so far): {err}",
                )

    def emit(self, snapshot: Snapshot) -> None:
        """Buffer the snapshot's lines and send the buffer; raises OSError if lines remain."""
        self._check_fork()
        with self._lock:
            if self._closed:
                raise RuntimeError("GraphiteEmitter is closed")
            self._enqueue(self._items(snapshot))
            self._flush(time.monotonic() + self.timeout)

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Lines dropped from the full buffer (``mlmon_dropped_total{buffer=name}``), name
        collisions, and series that could not be rendered (``buffer="<name>_series"``)."""
        out = _loss_metrics(self.name, self._dropped, self._renderer.collisions)
        out.append(
            ("mlmon_dropped_total", float(self._bad_series), {"buffer": f"{self.name}_series"})
        )
        return out

    def close(self) -> None:
        """Send what is buffered (within ``timeout``, ignoring the backoff), then disconnect.

        Lines still unsent are counted as dropped and logged. Idempotent; never raises.
        """
        self._check_fork()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._buffer:
                self._link.reset_backoff()  # one last attempt
                try:
                    self._flush(time.monotonic() + self.timeout)
                except OSError as exc:
                    lost = len(self._buffer)
                    self._dropped += lost
                    self._buffer.clear()
                    log.warning(
                        "mlmon: graphite emitter closed with %d lines unsent: %s", lost, exc
                    )
            self._link.drop()

    def __repr__(self) -> str:
        return (
            f"GraphiteEmitter(host={self.host!r}, port={self.port}, prefix={self.prefix!r}, "
            f"protocol={self.protocol!r}, tags={self.tags!r})"
        )
