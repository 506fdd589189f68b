"""GraphiteEmitter against real loopback TCP listeners: wire format, buffer, reconnection."""

from __future__ import annotations

import math
import os
import pickle
import re
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from mlmon.emitters.graphite import GraphiteEmitter
from mlmon.snapshot import Sample, Snapshot

TS = 1_700_000_000


def snap(
    *samples: Sample, ts: float = TS + 0.9, instance: str = "web1:7", model: str = "fraud"
) -> Snapshot:
    return Snapshot(model, None, instance, ts, 60.0, tuple(samples))


def s(name: str, value: float, **labels: str) -> Sample:
    return Sample.make(name, value, **labels)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Carbonish:
    """A listener that accepts connections and reads lines, like carbon's line receiver."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = int(self.server.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.data = b""

    def read(self, want_lines: int, timeout: float = 3.0) -> list[str]:
        deadline = time.monotonic() + timeout
        self.server.settimeout(0.05)
        while self.data.count(b"\n") < want_lines and time.monotonic() < deadline:
            try:
                conn, _ = self.server.accept()
                conn.settimeout(0.05)
                self.conns.append(conn)
            except TimeoutError:
                pass
            for conn in self.conns:
                try:
                    self.data += conn.recv(1 << 20)
                except TimeoutError:
                    pass
        return self.data.decode().splitlines()

    def drop_connections(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns = []

    def close(self) -> None:
        self.drop_connections()
        self.server.close()


@pytest.fixture
def carbon() -> Iterator[Carbonish]:
    c = Carbonish()
    yield c
    c.close()


def test_plaintext_lines_with_one_timestamp_per_flush(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port, prefix="ml")
    em.emit(
        snap(
            s("mlmon_calls_total", 10),
            s("mlmon_latency_seconds", 0.0125, quantile="0.99"),
            s("mlmon_latency_seconds_bucket", 3, le="+Inf"),
            s("mlmon_mean_error", -2.5),
            s("mlmon_feature_drift_psi", 1e-07, feature="age"),
        )
    )
    assert [
        f"ml.fraud.web1_7.mlmon_calls_total 10 {TS}",
        f"ml.fraud.web1_7.mlmon_latency_seconds.p99 0.0125 {TS}",
        f"ml.fraud.web1_7.mlmon_latency_seconds_bucket.le_inf 3 {TS}",
        f"ml.fraud.web1_7.mlmon_mean_error -2.5 {TS}",
        f"ml.fraud.web1_7.mlmon_feature_drift_psi.feature_age 0.0000001 {TS}",
    ] == carbon.read(5)
    em.close()


def test_counters_stay_cumulative(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port)
    em.emit(snap(s("mlmon_calls_total", 10), ts=TS))
    em.emit(snap(s("mlmon_calls_total", 25), ts=TS + 10))
    assert [
        f"fraud.web1_7.mlmon_calls_total 10 {TS}",
        f"fraud.web1_7.mlmon_calls_total 25 {TS + 10}",
    ] == carbon.read(2)
    em.close()


def test_graphite_tags(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port, prefix="ml", tags=True)
    em.emit(snap(s("mlmon_errors_total", 1, error_type="Value Error")))
    assert [
        f"ml.mlmon_errors_total;error_type=Value_Error;instance=web1_7;model=fraud 1 {TS}"
    ] == carbon.read(1)
    em.close()


def test_instance_can_be_left_out_of_the_path(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port, instance_in_path=False)
    em.emit(snap(s("mlmon_up", 1)))
    assert [f"fraud.mlmon_up 1 {TS}"] == carbon.read(1)
    em.close()


def test_non_finite_values_are_not_sent(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port)
    em.emit(snap(s("mlmon_output_mean", float("nan")), s("mlmon_up", 1)))
    assert [f"fraud.web1_7.mlmon_up 1 {TS}"] == carbon.read(1)
    em.close()


def test_injection_through_names_gives_only_safe_lines(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port, prefix="ml")
    em.emit(
        snap(
            s("mlmon_feature_mean", 1, feature="a b;c=d"),
            s("mlmon_outcome_total", 1, outcome="x 1 0\nevil.metric"),
            model="fraud model\nevil.metric 1 0",
            instance="h 1\n",
        )
    )
    got = carbon.read(2)
    assert len(got) == 2
    for line in got:
        assert re.fullmatch(
            rf"ml\.fraud_model_evil_metric_1_0\.h_1_\.[A-Za-z0-9_.-]+ 1 {TS}", line
        ), line


def test_pickle_protocol_sends_length_prefixed_frames(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port, protocol="pickle")
    em.emit(snap(s("mlmon_calls_total", 10), s("mlmon_error_ratio", 0.5)))
    carbon.server.settimeout(2)
    conn, _ = carbon.server.accept()
    conn.settimeout(2)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("!L", data[:4])[0]:
        data += conn.recv(65536)
    (size,) = struct.unpack("!L", data[:4])
    assert pickle.loads(data[4 : 4 + size]) == [
        ("fraud.web1_7.mlmon_calls_total", (TS, 10.0)),
        ("fraud.web1_7.mlmon_error_ratio", (TS, 0.5)),
    ]
    conn.close()
    em.close()


def test_pickle_port_defaults_to_2004() -> None:
    assert GraphiteEmitter(protocol="pickle").port == 2004
    assert GraphiteEmitter().port == 2003


# -- outages --------------------------------------------------------------------------------------


def test_outage_buffers_and_delivers_everything_when_carbon_returns() -> None:
    port = free_port()
    em = GraphiteEmitter("127.0.0.1", port, reconnect_min=0.01, reconnect_max=0.01)
    for i in range(3):
        with pytest.raises(ConnectionRefusedError):
            em.emit(snap(s("mlmon_calls_total", i), ts=TS + i))
        time.sleep(0.02)
    assert em.buffered == 3
    carbon = Carbonish(port)
    try:
        em.emit(snap(s("mlmon_calls_total", 3), ts=TS + 3))
        assert [f"fraud.web1_7.mlmon_calls_total {i} {TS + i}" for i in range(4)] == carbon.read(4)
        assert em.buffered == 0
        assert em.self_metrics()[0][1] == 0.0
    finally:
        em.close()
        carbon.close()


def test_buffer_overflow_drops_oldest_and_counts() -> None:
    port = free_port()
    em = GraphiteEmitter("127.0.0.1", port, buffer_lines=10, reconnect_min=0.01, reconnect_max=0.01)
    for i in range(3):
        with pytest.raises(OSError):
            em.emit(
                snap(*(s("mlmon_feature_mean", i, feature=f"f{j}") for j in range(6)), ts=TS + i)
            )
    assert em.buffered == 10
    assert em.self_metrics()[0] == ("mlmon_dropped_total", 8.0, {"buffer": "graphite"})
    carbon = Carbonish(port)
    try:
        time.sleep(0.02)
        em.emit(snap(ts=TS + 3))
        got = carbon.read(10)
        # The newest lines survived: the last 4 of flush 1 and all of flush 2.
        assert [
            f"fraud.web1_7.mlmon_feature_mean.feature_f{j} 1 {TS + 1}" for j in range(2, 6)
        ] == got[:4]
        assert [
            f"fraud.web1_7.mlmon_feature_mean.feature_f{j} 2 {TS + 2}" for j in range(6)
        ] == got[4:]
    finally:
        em.close()
        carbon.close()


def test_reconnects_after_carbon_restarts_without_losing_lines(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port, reconnect_min=0.01, reconnect_max=0.01)
    em.emit(snap(s("mlmon_calls_total", 1), ts=TS))
    assert len(carbon.read(1)) == 1
    port = carbon.port
    carbon.close()  # carbon goes away: the connection is closed by the peer
    time.sleep(0.05)
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(s("mlmon_calls_total", 2), ts=TS + 1))
    back = Carbonish(port)
    try:
        time.sleep(0.02)
        em.emit(snap(s("mlmon_calls_total", 3), ts=TS + 2))
        assert [
            f"fraud.web1_7.mlmon_calls_total 2 {TS + 1}",
            f"fraud.web1_7.mlmon_calls_total 3 {TS + 2}",
        ] == back.read(2)
        assert em.stats["connects"] == 2
    finally:
        em.close()
        back.close()


def test_connection_closed_by_peer_is_noticed_before_sending(carbon: Carbonish) -> None:
    em = GraphiteEmitter("127.0.0.1", carbon.port)
    em.emit(snap(s("mlmon_up", 1), ts=TS))
    carbon.read(1)
    carbon.drop_connections()  # e.g. carbon's idle timeout, or a relay restart
    time.sleep(0.05)
    em.emit(snap(s("mlmon_up", 2), ts=TS + 1))
    assert [f"fraud.web1_7.mlmon_up 1 {TS}", f"fraud.web1_7.mlmon_up 2 {TS + 1}"] == carbon.read(2)
    assert em.stats["connects"] == 2
    em.close()


def test_black_holed_peer_costs_at_most_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts (backlog), never reads
        em = GraphiteEmitter(
            "127.0.0.1", int(server.getsockname()[1]), timeout=0.3, buffer_lines=1_000_000
        )
        big = snap(*(s("mlmon_feature_mean", i, feature="x" * 100 + str(i)) for i in range(20_000)))
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            for _ in range(50):
                em.emit(big)
        elapsed = time.monotonic() - t0
        assert elapsed < 50 * 0.3 + 1.0
        assert em.buffered > 0  # what the peer did not take is still buffered
        t1 = time.monotonic()
        with pytest.raises(OSError, match="backing off"):
            em.emit(snap(s("mlmon_up", 1)))
        assert time.monotonic() - t1 < 0.1
        em._buffer.clear()
        em.close()


def test_backoff_grows_between_attempts() -> None:
    em = GraphiteEmitter("127.0.0.1", free_port(), reconnect_min=0.05, reconnect_max=0.2)
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(s("mlmon_up", 1)))
    with pytest.raises(ConnectionError, match="backing off"):
        em.emit(snap(s("mlmon_up", 1)))
    waits = []
    for _ in range(4):
        time.sleep(em._link.retry_in() + 0.005)
        with pytest.raises(ConnectionRefusedError):
            em.emit(snap(s("mlmon_up", 1)))
        waits.append(em._link.retry_in())
    assert waits[0] < waits[1] <= 0.2 + 1e-9
    assert waits[-1] <= 0.2


def test_close_flushes_the_buffer_ignoring_the_backoff() -> None:
    port = free_port()
    em = GraphiteEmitter("127.0.0.1", port, reconnect_min=60, reconnect_max=60)
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(s("mlmon_up", 1)))
    carbon = Carbonish(port)
    try:
        em.close()
        assert [f"fraud.web1_7.mlmon_up 1 {TS}"] == carbon.read(1)
    finally:
        carbon.close()


def test_close_with_carbon_down_counts_the_loss_and_does_not_raise() -> None:
    em = GraphiteEmitter("127.0.0.1", free_port())
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(s("mlmon_up", 1), s("mlmon_calls_total", 1)))
    em.close()
    em.close()
    assert em.self_metrics()[0][1] == 2.0
    with pytest.raises(RuntimeError):
        em.emit(snap(s("mlmon_up", 1)))


def test_forked_child_does_not_resend_the_parents_buffer(carbon: Carbonish) -> None:
    port = free_port()
    em = GraphiteEmitter("127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(s("mlmon_up", 1), instance="h:parent"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            em.after_fork()
            em._link.reset_backoff()
            code = 0 if em.buffered == 0 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert em.buffered == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"port": 0}, "port"),
        ({"protocol": "udp"}, "protocol"),
        ({"buffer_lines": 0}, "buffer_lines"),
        ({"timeout": -1}, "timeout"),
        ({"prefix": "x\ny"}, "prefix"),
    ],
)
def test_bad_configuration_raises_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GraphiteEmitter(**kwargs)  # type: ignore[arg-type]


HOSTILE = ["\ud800", "a\x00b", "x" * 5000, "bad\udfff tail"]


@pytest.mark.parametrize("protocol", ["plaintext", "pickle"])
def test_hostile_series_are_skipped_and_counted_alone(protocol: str) -> None:
    carbon = Carbonish()
    em = GraphiteEmitter("127.0.0.1", carbon.port, protocol=protocol)  # type: ignore[arg-type]
    try:
        samples = [s("mlmon_feature_mean", 1, feature=v) for v in HOSTILE]
        samples += [
            s("mlmon_feature_mean", 2, feature="new\nline"),
            s("mlmon_feature_mean", math.nan, feature="nan"),
            s("mlmon_feature_mean", math.inf, feature="inf"),
            s("mlmon_calls_total", 3),
        ]
        em.emit(snap(*samples))
        em.emit(snap(s("mlmon_calls_total", 1), model="\ud800"))  # a whole snapshot is bad
        em.emit(snap(s("mlmon_calls_total", 4)))
        assert em.stats["bad_series"] == len(HOSTILE) + 1 + 1  # + inf, + the bad model's series
        assert ("mlmon_dropped_total", 6.0, {"buffer": "graphite_series"}) in em.self_metrics()
        deadline = time.monotonic() + 3
        want = [
            f"fraud.web1_7.mlmon_feature_mean.feature_new_line 2 {TS}",
            f"fraud.web1_7.mlmon_calls_total 3 {TS}",
            f"fraud.web1_7.mlmon_calls_total 4 {TS}",
        ]
        got: list[str] = []
        while len(got) < 3 and time.monotonic() < deadline:
            if protocol == "plaintext":
                got = carbon.read(3, timeout=0.2)
            else:
                got = _unpickle_lines(_read_raw(carbon.server, 0.2))
        assert got == want
    finally:
        em.close()
        carbon.close()


_RAW: dict[int, bytes] = {}


def _read_raw(server: socket.socket, timeout: float) -> bytes:
    """Everything received so far on the server's connections (pickle frames are binary)."""
    key = id(server)
    data = _RAW.get(key, b"")
    server.settimeout(timeout)
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return data
    conn.settimeout(timeout)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            chunk = conn.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    conn.close()
    _RAW[key] = data
    return data


def _unpickle_lines(data: bytes) -> list[str]:
    out = []
    while len(data) >= 4:
        (n,) = struct.unpack("!L", data[:4])
        if len(data) < 4 + n:
            break
        for path, (ts, value) in pickle.loads(data[4 : 4 + n]):
            out.append(f"{path} {value:g} {ts}")
        data = data[4 + n :]
    return out


def test_each_emit_to_a_peer_that_never_reads_stops_at_the_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts (backlog), never reads
        em = GraphiteEmitter(
            "127.0.0.1", int(server.getsockname()[1]), timeout=0.5, buffer_lines=1_000_000
        )
        big = snap(*(s("mlmon_feature_mean", i, feature="x" * 200 + str(i)) for i in range(20_000)))
        em._items(big)  # render once: names are cached, so emits below cost their sends
        timeouts = 0
        for _ in range(40):  # ~4.6 MB each: the socket buffers fill within a few emits
            t0 = time.monotonic()
            try:
                em.emit(big)
            except TimeoutError:
                timeouts += 1
                assert time.monotonic() - t0 < 0.5 + 0.3
                break
            assert time.monotonic() - t0 < 0.5 + 0.3
        assert timeouts == 1
        assert em.buffered > 0
        t1 = time.monotonic()
        em.close()  # close tries once more, bounded by the same deadline
        assert time.monotonic() - t1 < 0.5 + 0.3
        assert em.buffered == 0  # sent to a fresh connection's buffers, or counted as dropped
