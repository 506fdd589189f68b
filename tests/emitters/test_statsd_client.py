"""StatsdEmitter(client=...): sending through an application's pystatsd client, on real
loopback UDP, TCP and Unix sockets."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import statsd

from mlmon.emitters.statsd import StatsdEmitter
from mlmon.snapshot import Sample, Snapshot


def snap(*samples: Sample, model: str = "fraud", instance: str = "web1:7") -> Snapshot:
    return Snapshot(model, None, instance, 1_700_000_000.0, 60.0, tuple(samples))


def c(name: str, value: float, **labels: str) -> Sample:
    return Sample.make(name, value, **labels)


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def datagrams(sock: socket.socket, quiet: float = 0.2) -> list[str]:
    out = []
    sock.settimeout(quiet)
    while True:
        try:
            out.append(sock.recv(65535).decode())
        except TimeoutError:
            return out


def read_lines(conn: socket.socket, n: int, timeout: float = 5.0) -> list[str]:
    """The first ``n`` newline-terminated lines from a stream (bounded by ``timeout``)."""
    data = b""
    conn.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while data.count(b"\n") < n and time.monotonic() < deadline:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode().split("\n")[:n]


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [object(), "127.0.0.1:8125", 8125, socket.socket])
def test_a_client_that_is_not_pystatsd_is_a_type_error_naming_client(bad: object) -> None:
    with pytest.raises(TypeError, match=r"client must be a statsd\.StatsClient"):
        StatsdEmitter(client=bad)


def test_client_with_host_or_protocol_is_refused_naming_them(udp: socket.socket) -> None:
    client = statsd.StatsClient("127.0.0.1", udp.getsockname()[1])
    with pytest.raises(ValueError, match="leave host, port and protocol out"):
        StatsdEmitter("10.0.0.1", client=client)
    with pytest.raises(ValueError, match="protocol='tcp'"):
        StatsdEmitter(protocol="tcp", client=client)
    client.close()


def test_client_prefix_that_is_not_a_dotted_path_is_refused(udp: socket.socket) -> None:
    client = statsd.StatsClient("127.0.0.1", udp.getsockname()[1], prefix="my app")
    with pytest.raises(ValueError, match="client prefix"):
        StatsdEmitter(client=client)
    client.close()


# -- UDP -----------------------------------------------------------------------------------------


def test_udp_client_carries_exact_deltas_with_its_prefix(udp: socket.socket) -> None:
    client = statsd.StatsClient("127.0.0.1", udp.getsockname()[1], prefix="app")
    em = StatsdEmitter(client=client, prefix="ml")
    em.emit(snap(c("mlmon_calls_total", 10), c("mlmon_error_ratio", 0.25), c("mlmon_x", -2)))
    em.emit(snap(c("mlmon_calls_total", 25)))
    assert datagrams(udp) == [
        "app.ml.fraud.mlmon_calls_total:10|c\napp.ml.fraud.mlmon_error_ratio:0.25|g\n"
        "app.ml.fraud.mlmon_x:0|g\napp.ml.fraud.mlmon_x:-2|g",
        "app.ml.fraud.mlmon_calls_total:15|c",
    ]
    assert em.stats["lines"] == 5 and em.stats["unconfirmed"] == 5
    em.close()
    client.incr("still.open")  # the client is the application's: close() left it alone
    assert datagrams(udp) == ["app.still.open:1|c"]
    client.close()


def test_udp_client_packs_to_its_maxudpsize(udp: socket.socket) -> None:
    client = statsd.StatsClient("127.0.0.1", udp.getsockname()[1], maxudpsize=256)
    em = StatsdEmitter(client=client)
    em.emit(snap(*(c("mlmon_feature_mean", i, feature=f"feature{i}") for i in range(60))))
    got = datagrams(udp)
    assert all(len(d) <= 256 for d in got) and 1 < len(got) < 60
    sent = [line for d in got for line in d.split("\n")]
    assert sent == [f"fraud.mlmon_feature_mean.feature_feature{i}:{i}|g" for i in range(60)]
    assert em.stats["packets"] == len(got)
    em.close()
    client.close()


def test_closed_udp_client_keeps_deltas_and_counts_the_rest(udp: socket.socket) -> None:
    client = statsd.StatsClient("127.0.0.1", udp.getsockname()[1])
    em = StatsdEmitter(client=client)
    client.close()
    with pytest.raises(ConnectionError, match="closed"):
        em.emit(snap(c("mlmon_calls_total", 10), c("mlmon_up", 1)))
    assert em.stats["dropped"] == 1  # the gauge; the counter delta is kept
    em.close()


# -- TCP and Unix streams ------------------------------------------------------------------------


def test_tcp_client_sends_lines_and_reconnects_after_the_daemon_drops_it() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        client = statsd.TCPStatsClient("127.0.0.1", server.getsockname()[1], prefix="app")
        em = StatsdEmitter(client=client)
        em.emit(snap(c("mlmon_calls_total", 3), c("mlmon_up", 1)))
        conn, _ = server.accept()
        assert read_lines(conn, 2) == ["app.fraud.mlmon_calls_total:3|c", "app.fraud.mlmon_up:1|g"]
        conn.close()  # the daemon goes away: the next emit notices and reconnects
        time.sleep(0.05)
        em.emit(snap(c("mlmon_calls_total", 5)))
        conn2, _ = server.accept()
        assert read_lines(conn2, 1) == ["app.fraud.mlmon_calls_total:2|c"]
        client.incr("app_side")  # the application's own sends use the same connection
        assert read_lines(conn2, 1) == ["app.app_side:1|c"]
        em.close()
        client.close()
        conn2.close()


def test_tcp_client_refused_keeps_deltas_for_the_next_flush() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()
    client = statsd.TCPStatsClient("127.0.0.1", port)
    em = StatsdEmitter(client=client)
    for total in (4, 9):
        with pytest.raises(ConnectionRefusedError):
            em.emit(snap(c("mlmon_calls_total", total), c("mlmon_up", 1)))
    assert em.stats["dropped"] == 2
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(5)
        em.emit(snap(c("mlmon_calls_total", 12)))
        conn, _ = server.accept()
        assert read_lines(conn, 1) == ["fraud.mlmon_calls_total:12|c"]
        conn.close()
    em.close()


def test_tcp_client_peer_that_never_reads_stops_at_the_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = statsd.TCPStatsClient("127.0.0.1", server.getsockname()[1])  # timeout=None
        em = StatsdEmitter(client=client, timeout=0.5)
        big = snap(*(c("mlmon_feature_mean", i, feature="f" * 200 + str(i)) for i in range(20_000)))
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            em.emit(big)  # ~4.5 MB: far more than the socket buffers hold
        assert time.monotonic() - t0 < 3.0
        assert em.stats["dropped"] > 0
        assert client._sock is None  # closed: the next send reconnects
        em.close()


def test_unix_socket_client_sends_through_its_stream(tmp_path: Path) -> None:
    path = str(tmp_path / "statsd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        server.settimeout(5)
        client = statsd.UnixSocketStatsClient(path, prefix="app")
        em = StatsdEmitter(client=client, prefix="ml")
        em.emit(snap(c("mlmon_calls_total", 7), c("mlmon_error_ratio", 0.5)))
        em.emit(snap(c("mlmon_calls_total", 10)))
        conn, _ = server.accept()
        assert read_lines(conn, 3) == [
            "app.ml.fraud.mlmon_calls_total:7|c",
            "app.ml.fraud.mlmon_error_ratio:0.5|g",
            "app.ml.fraud.mlmon_calls_total:3|c",
        ]
        assert em.stats["lines"] == 3 and em.stats["dropped"] == 0
        em.close()
        client.close()
        conn.close()


def test_unix_socket_client_without_a_reader_keeps_deltas(tmp_path: Path) -> None:
    path = str(tmp_path / "nobody.sock")
    client = statsd.UnixSocketStatsClient(path)
    em = StatsdEmitter(client=client)
    with pytest.raises(FileNotFoundError):
        em.emit(snap(c("mlmon_calls_total", 7)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        server.settimeout(5)
        em.emit(snap(c("mlmon_calls_total", 8)))
        conn, _ = server.accept()
        assert read_lines(conn, 1) == ["fraud.mlmon_calls_total:8|c"]
        conn.close()
    em.close()


def test_forked_child_does_not_write_into_the_parents_stream() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        client = statsd.TCPStatsClient("127.0.0.1", server.getsockname()[1])
        em = StatsdEmitter(client=client)
        em.emit(snap(c("mlmon_calls_total", 1)))
        parent_conn, _ = server.accept()
        assert read_lines(parent_conn, 1) == ["fraud.mlmon_calls_total:1|c"]
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                em.after_fork()
                em.emit(snap(c("mlmon_calls_total", 5), instance="child"))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child_conn, _ = server.accept()  # the child connected on its own
        assert read_lines(child_conn, 1) == ["fraud.mlmon_calls_total:5|c"]
        parent_conn.settimeout(0.2)
        with pytest.raises(TimeoutError):
            parent_conn.recv(100)  # nothing from the child on the parent's connection
        em.close()
        client.close()
        child_conn.close()
        parent_conn.close()


# -- hostile series through the client ----------------------------------------------------------


def test_hostile_series_are_skipped_and_counted_alone(udp: socket.socket) -> None:
    client = statsd.StatsClient("127.0.0.1", udp.getsockname()[1])
    em = StatsdEmitter(client=client)
    em.emit(
        snap(
            c("mlmon_feature_mean", 1, feature="\ud800"),
            c("mlmon_feature_mean", 2, feature="a\x00b"),
            c("mlmon_feature_mean", 3, feature="x" * 5000),
            c("mlmon_feature_mean", float("inf"), feature="inf"),
            c("mlmon_feature_mean", float("nan"), feature="nan"),
            c("mlmon_feature_mean", 4, feature="new\nline"),
            c("mlmon_calls_total", 3),
        )
    )
    assert datagrams(udp) == [
        "fraud.mlmon_feature_mean.feature_new_line:4|g\nfraud.mlmon_calls_total:3|c"
    ]
    assert em.stats["bad_series"] == 4
    assert ("mlmon_dropped_total", 4.0, {"buffer": "statsd_series"}) in em.self_metrics()
    em.close()
    client.close()
