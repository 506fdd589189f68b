"""StatsdEmitter against real loopback sockets: exact wire format, deltas, packing, failures."""

from __future__ import annotations

import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Iterator

import attrs
import pytest

import mlmon.emitters.statsd as statsd_mod
from mlmon.emitters.statsd import StatsdEmitter
from mlmon.snapshot import Sample, Snapshot

LINE = re.compile(r"^[A-Za-z0-9_.-]+:-?[0-9]+(\.[0-9]+)?\|(c|g|ms)(\|@[0-9.]+)?$")


def snap(
    *samples: Sample, model: str = "fraud", instance: str = "web1:7", version: str | None = None
) -> Snapshot:
    return Snapshot(model, version, instance, 1_700_000_000.0, 60.0, tuple(samples))


def c(name: str, value: float, **labels: str) -> Sample:
    return Sample.make(name, value, **labels)


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def datagrams(sock: socket.socket, quiet: float = 0.2) -> list[str]:
    out = []
    sock.settimeout(quiet)
    while True:
        try:
            out.append(sock.recv(65535).decode())
        except TimeoutError:
            return out


def lines(sock: socket.socket) -> list[str]:
    return [line for d in datagrams(sock) for line in d.split("\n")]


def closed_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = port_of(s)
    s.close()
    return port


# -- wire format ---------------------------------------------------------------------------------


def test_first_emit_sends_counters_whole_and_gauges(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp), prefix="ml")
    em.emit(
        snap(
            c("mlmon_calls_total", 10),
            c("mlmon_errors_total", 2, error_type="ValueError"),
            c("mlmon_latency_seconds", 0.012, quantile="0.99"),
            c("mlmon_latency_seconds_bucket", 7, le="0.005"),
            c("mlmon_error_ratio", 0.2),
        )
    )
    assert lines(udp) == [
        "ml.fraud.mlmon_calls_total:10|c",
        "ml.fraud.mlmon_errors_total.error_type_ValueError:2|c",
        "ml.fraud.mlmon_latency_seconds.p99:0.012|g",
        "ml.fraud.mlmon_latency_seconds_bucket.le_0_005:7|c",
        "ml.fraud.mlmon_error_ratio:0.2|g",
    ]
    em.close()


def test_counters_are_sent_as_deltas(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    for total in (10, 25, 25, 26):
        em.emit(snap(c("mlmon_calls_total", total)))
    assert ["fraud.mlmon_calls_total:" + d + "|c" for d in ("10", "15", "0", "1")] == lines(udp)
    em.close()


def test_float_counter_deltas(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    em.emit(snap(c("mlmon_latency_seconds_sum", 0.5)))
    em.emit(snap(c("mlmon_latency_seconds_sum", 0.75)))
    assert lines(udp) == [
        "fraud.mlmon_latency_seconds_sum:0.5|c",
        "fraud.mlmon_latency_seconds_sum:0.25|c",
    ]
    em.close()


def test_counter_reset_sends_the_new_value(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    em.emit(snap(c("mlmon_calls_total", 100)))
    em.emit(snap(c("mlmon_calls_total", 3)))
    assert lines(udp) == ["fraud.mlmon_calls_total:100|c", "fraud.mlmon_calls_total:3|c"]
    em.close()


def test_new_instance_starts_fresh_and_never_sends_negative_deltas(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    em.emit(snap(c("mlmon_calls_total", 500), instance="web1:7"))
    em.emit(snap(c("mlmon_calls_total", 4), instance="web1:8"))  # a forked child
    em.emit(snap(c("mlmon_calls_total", 510), instance="web1:7"))
    em.emit(snap(c("mlmon_calls_total", 9), instance="web1:8"))
    got = lines(udp)
    assert [line.split(":")[1].split("|")[0] for line in got] == ["500", "4", "10", "5"]
    em.close()


def test_negative_gauge_is_zeroed_first_in_the_same_datagram(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    em.emit(snap(c("mlmon_mean_error", -5.0)))
    assert datagrams(udp) == ["fraud.mlmon_mean_error:0|g\nfraud.mlmon_mean_error:-5|g"]
    em.close()


def test_negative_gauge_pair_is_never_split_across_datagrams(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp), max_packet=64)
    samples = [c("mlmon_feature_mean", -1.5, feature=f"f{i}") for i in range(20)]
    em.emit(snap(*samples))
    for d in datagrams(udp):
        got = d.split("\n")
        assert len(got) % 2 == 0
        for zero, value in zip(got[::2], got[1::2], strict=True):
            assert zero.endswith(":0|g") and value.endswith(":-1.5|g")
            assert zero.split(":")[0] == value.split(":")[0]
    em.close()


def test_lines_are_packed_up_to_max_packet(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp), max_packet=200)
    samples = [c("mlmon_feature_mean", i, feature=f"feature{i}") for i in range(100)]
    em.emit(snap(*samples))
    got = datagrams(udp)
    assert all(len(d.encode()) <= 200 for d in got)
    assert 1 < len(got) < 100
    sent = [line for d in got for line in d.split("\n")]
    assert [f"fraud.mlmon_feature_mean.feature_feature{i}:{i}|g" for i in range(100)] == sent
    # Packed tightly: adding the next line to any datagram would overflow it.
    for d, nxt in itertools.pairwise(got):
        assert len(d) + 1 + len(nxt.split("\n")[0]) > 200
    assert {
        "lines": 100,
        "packets": len(got),
        "bytes": sum(len(d) for d in got),
        "dropped": 0,
        "bad_series": 0,
        "unconfirmed": 0,
    } == em.stats
    em.close()


def test_non_finite_values_are_skipped(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    em.emit(
        snap(
            c("mlmon_output_mean", float("nan")),
            c("mlmon_output_variance", float("inf")),
            c("mlmon_up", 1),
        )
    )
    assert lines(udp) == ["fraud.mlmon_up:1|g"]
    em.close()


def test_dogstatsd_tags(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp), prefix="ml", tags="dogstatsd")
    em.emit(
        snap(
            c("mlmon_errors_total", 2, error_type="KeyError"),
            c("mlmon_mean_error", -1),
            version="v1",
        )
    )
    assert lines(udp) == [
        "ml.mlmon_errors_total:2|c|#error_type:KeyError,model:fraud,version:v1",
        "ml.mlmon_mean_error:0|g|#model:fraud,version:v1",
        "ml.mlmon_mean_error:-1|g|#model:fraud,version:v1",
    ]
    em.close()


def test_graphite_tags(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp), prefix="ml", tags="graphite", instance_in_path=True)
    em.emit(snap(c("mlmon_latency_seconds", 0.5, quantile="0.99")))
    assert lines(udp) == [
        "ml.mlmon_latency_seconds;instance=web1_7;model=fraud;quantile=0.99:0.5|g"
    ]
    em.close()


def test_instance_in_path(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp), instance_in_path=True)
    em.emit(snap(c("mlmon_up", 1), instance="web1.example.com:99"))
    assert lines(udp) == ["fraud.web1_example_com_99.mlmon_up:1|g"]
    em.close()


def test_injection_through_every_name_gives_only_safe_lines(udp: socket.socket) -> None:
    evil = "fraud model\nevil.metric 1 0"
    em = StatsdEmitter(port=port_of(udp), prefix="ml", instance_in_path=True, version_in_path=True)
    em.emit(
        Snapshot(
            evil,
            "v1\nx:1|c",
            "h|1:2\n",
            0.0,
            1.0,
            (
                c("mlmon_feature_mean", 1, feature="a b;c=d"),
                c("mlmon_outcome_total", 2, outcome="x:1|c\n#@"),
                c("mlmon_alert_firing", 1, rule="évil rule.1"),
                c("mlmon_precision", 0.5, **{"class": "spam\r\n"}),
            ),
        )
    )
    got = lines(udp)
    assert len(got) == 4
    for line in got:
        assert LINE.match(line), line
        assert line.startswith("ml.fraud_model_evil_metric_1_0.v1_x_1_c.h_1_2_.")
    em.close()


def test_timings_are_sent_when_the_snapshot_carries_them(udp: socket.socket) -> None:
    @attrs.frozen
    class TimedSnapshot(Snapshot):
        timings: tuple[float, ...] = ()

    em = StatsdEmitter(port=port_of(udp), timings=True)
    em.emit(TimedSnapshot("fraud", None, "h:1", 0.0, 1.0, (), timings=(0.0125, 0.002)))
    assert lines(udp) == ["fraud.mlmon_latency_ms:12.5|ms", "fraud.mlmon_latency_ms:2|ms"]
    em.close()


def test_sampled_timings_carry_the_rate(udp: socket.socket) -> None:
    @attrs.frozen
    class TimedSnapshot(Snapshot):
        timings: tuple[float, ...] = ()

    em = StatsdEmitter(port=port_of(udp), timings=0.5, max_packet=8000)
    em.emit(TimedSnapshot("fraud", None, "h:1", 0.0, 1.0, (), timings=(0.001,) * 1000))
    got = lines(udp)
    assert all(line == "fraud.mlmon_latency_ms:1|ms|@0.5" for line in got)
    assert 350 < len(got) < 650


def test_timings_off_ignores_them(udp: socket.socket) -> None:
    @attrs.frozen
    class TimedSnapshot(Snapshot):
        timings: tuple[float, ...] = ()

    em = StatsdEmitter(port=port_of(udp))
    em.emit(TimedSnapshot("fraud", None, "h:1", 0.0, 1.0, (c("mlmon_up", 1),), timings=(0.1,)))
    assert lines(udp) == ["fraud.mlmon_up:1|g"]


# -- TCP ------------------------------------------------------------------------------------------


def test_tcp_sends_newline_terminated_lines() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        em = StatsdEmitter(port=port_of(server), protocol="tcp")
        em.emit(snap(c("mlmon_calls_total", 3), c("mlmon_up", 1)))
        conn, _ = server.accept()
        conn.settimeout(2)
        data = b""
        while data.count(b"\n") < 2:
            data += conn.recv(4096)
        assert data == b"fraud.mlmon_calls_total:3|c\nfraud.mlmon_up:1|g\n"
        em.emit(snap(c("mlmon_calls_total", 5)))
        assert conn.recv(4096) == b"fraud.mlmon_calls_total:2|c\n"
        em.close()
        conn.close()


def test_tcp_peer_that_never_reads_costs_at_most_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        em = StatsdEmitter(port=port_of(server), protocol="tcp", timeout=0.5)
        big = [c("mlmon_feature_mean", i, feature="f" * 200 + str(i)) for i in range(2000)]
        peer = None
        t0 = time.monotonic()
        with pytest.raises(OSError):
            for _ in range(100):  # fill the peer's receive buffer and ours
                em.emit(snap(*big))
                if peer is None:
                    peer, _ = server.accept()
        assert time.monotonic() - t0 < 100 * 0.05 + 0.5 + 1.0
        # After the timeout the emitter backs off instead of waiting again.
        t1 = time.monotonic()
        with pytest.raises(OSError, match="backing off"):
            em.emit(snap(*big))
        assert time.monotonic() - t1 < 0.2
        em.close()
        if peer is not None:
            peer.close()


def test_tcp_refused_carries_counter_deltas_until_the_daemon_is_back() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = port_of(server)
    server.close()
    em = StatsdEmitter(port=port, protocol="tcp", reconnect_min=0.01, reconnect_max=0.01)
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(c("mlmon_calls_total", 10), c("mlmon_up", 1)))
    assert dict_of(em.self_metrics())["mlmon_dropped_total"] == 1.0
    time.sleep(0.02)
    with socket.create_server(("127.0.0.1", port)) as server:
        em.emit(snap(c("mlmon_calls_total", 12), c("mlmon_up", 1)))
        conn, _ = server.accept()
        conn.settimeout(2)
        assert conn.recv(4096) == b"fraud.mlmon_calls_total:12|c\nfraud.mlmon_up:1|g\n"
        conn.close()
    em.close()


# -- failures -------------------------------------------------------------------------------------


def dict_of(metrics: list[tuple[str, float, dict[str, str]]]) -> dict[str, float]:
    return {name: value for name, value, _ in metrics}


def test_closed_udp_port_is_noticed_counted_and_raised() -> None:
    em = StatsdEmitter(port=closed_udp_port())
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(c("mlmon_calls_total", 10), c("mlmon_up", 1), c("mlmon_error_ratio", 0)))
    assert em.self_metrics() == [
        ("mlmon_dropped_total", 0.0, {"buffer": "statsd_series"}),
        ("mlmon_dropped_total", 2.0, {"buffer": "statsd"}),
        ("mlmon_internal_errors_total", 0.0, {"stage": "statsd_naming"}),
    ]
    em.close()


def test_deltas_refused_on_udp_arrive_once_the_daemon_listens(udp: socket.socket) -> None:
    port = port_of(udp)
    udp.close()
    em = StatsdEmitter(port=port)
    for total in (10, 20):
        with pytest.raises(ConnectionRefusedError):
            em.emit(snap(c("mlmon_calls_total", total)))
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", port))
    try:
        em.emit(snap(c("mlmon_calls_total", 25)))
        em.emit(snap(c("mlmon_calls_total", 26)))
        assert lines(daemon) == ["fraud.mlmon_calls_total:25|c", "fraud.mlmon_calls_total:1|c"]
    finally:
        daemon.close()
        em.close()


def test_unresolvable_host_is_counted_and_recovers(
    monkeypatch: pytest.MonkeyPatch, udp: socket.socket
) -> None:
    real = socket.getaddrinfo
    dns_up = threading.Event()

    def fake_getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> object:
        if host == "statsd.test":
            if not dns_up.is_set():
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(statsd_mod, "_getaddrinfo", fake_getaddrinfo)
    em = StatsdEmitter("statsd.test", port_of(udp))
    with pytest.raises(OSError, match=r"cannot resolve 'statsd\.test'"):
        em.emit(snap(c("mlmon_calls_total", 5), c("mlmon_up", 1)))
    assert dict_of(em.self_metrics())["mlmon_dropped_total"] == 1.0
    dns_up.set()
    em.emit(snap(c("mlmon_calls_total", 7), c("mlmon_up", 1)))
    assert lines(udp) == ["fraud.mlmon_calls_total:7|c", "fraud.mlmon_up:1|g"]
    em.close()


def test_slow_dns_costs_at_most_the_timeout_and_uses_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    calls = []

    def hanging_getaddrinfo(host: str, *args: object, **kwargs: object) -> object:
        if kwargs or (len(args) >= 5 and args[4]):  # the numeric-host probe answers at once
            raise socket.gaierror(socket.EAI_NONAME, "not numeric")
        calls.append(host)
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(statsd_mod, "_getaddrinfo", hanging_getaddrinfo)
    em = StatsdEmitter("slow.test", 8125, timeout=0.2)
    try:
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                em.emit(snap(c("mlmon_up", 1)))
            assert time.monotonic() - t0 < 0.5
        assert calls == ["slow.test"]
    finally:
        release.set()
        em.close()


def test_dns_failure_after_success_keeps_the_last_address(
    monkeypatch: pytest.MonkeyPatch, udp: socket.socket
) -> None:
    real = socket.getaddrinfo
    dns_up = [True]

    def flaky(host: str, port: int, *args: object, **kwargs: object) -> object:
        if host == "statsd.test":
            if not dns_up[0]:
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(statsd_mod, "_getaddrinfo", flaky)
    em = StatsdEmitter("statsd.test", port_of(udp), resolve_ttl=0.001)
    em.emit(snap(c("mlmon_up", 1)))
    dns_up[0] = False
    time.sleep(0.01)
    em.emit(snap(c("mlmon_up", 2)))
    assert lines(udp) == ["fraud.mlmon_up:1|g", "fraud.mlmon_up:2|g"]
    em.close()


def test_next_address_is_tried_after_a_refusal(
    monkeypatch: pytest.MonkeyPatch, udp: socket.socket
) -> None:
    # Like "localhost" answering ::1 first while the daemon listens on 127.0.0.1 only.
    dead = closed_udp_port()

    def two_addresses(host: str, port: int, *args: object, **kwargs: object) -> object:
        if host != "statsd.test":
            return socket.getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
        if len(args) >= 4 and int(args[3]) & socket.AI_NUMERICHOST:  # type: ignore[call-overload]
            raise socket.gaierror(socket.EAI_NONAME, "not numeric")
        live = port_of(udp)
        return [
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", dead)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", live)),
        ]

    monkeypatch.setattr(statsd_mod, "_getaddrinfo", two_addresses)
    em = StatsdEmitter("statsd.test", 8125)
    with pytest.raises(ConnectionRefusedError):
        em.emit(snap(c("mlmon_calls_total", 3)))
    em.emit(snap(c("mlmon_calls_total", 5)))
    assert lines(udp) == ["fraud.mlmon_calls_total:5|c"]
    em.close()


# -- lifecycle ------------------------------------------------------------------------------------


def test_forked_child_starts_with_no_counter_state(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    em.emit(snap(c("mlmon_calls_total", 100), instance="h:parent"))
    assert lines(udp) == ["fraud.mlmon_calls_total:100|c"]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            em.after_fork()
            em.emit(snap(c("mlmon_calls_total", 100), instance="h:parent"))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    # The child forgot the parent's state: had it kept it, it would have sent a delta of 0.
    assert lines(udp) == ["fraud.mlmon_calls_total:100|c"]
    em.emit(snap(c("mlmon_calls_total", 101), instance="h:parent"))
    assert lines(udp) == ["fraud.mlmon_calls_total:1|c"]
    em.close()


def test_close_is_idempotent_and_emit_after_close_raises(udp: socket.socket) -> None:
    em = StatsdEmitter(port=port_of(udp))
    em.close()
    em.close()
    with pytest.raises(RuntimeError):
        em.emit(snap(c("mlmon_up", 1)))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"port": True}, "port"),
        ({"protocol": "http"}, "protocol"),
        ({"max_packet": 10}, "max_packet"),
        ({"tags": "influx"}, "tags"),
        ({"timings": 1.5}, "timings"),
        ({"timeout": 0}, "timeout"),
        ({"prefix": "a b"}, "prefix"),
        ({"host": ""}, "host"),
    ],
)
def test_bad_configuration_raises_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        StatsdEmitter(**kwargs)  # type: ignore[arg-type]
