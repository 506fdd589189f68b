"""The integration fixtures drive the real daemons: proved with raw protocols, no mlmon code."""

from __future__ import annotations

import pickle
import socket
import struct
import time

import pytest
import servers


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    ports = [servers.free_port("tcp") for _ in range(50)]

    assert len(set(ports)) == len(ports)
    assert 0 not in ports


def test_free_port_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        servers.free_port("sctp")


def test_missing_server_skips_without_the_ci_switch(
    monkeypatch: pytest.MonkeyPatch, require_server
) -> None:
    monkeypatch.setattr(servers, "find_prometheus", lambda: None)
    monkeypatch.delenv("MLMON_REQUIRE_SERVERS", raising=False)

    with pytest.raises(pytest.skip.Exception, match="prometheus"):
        require_server("prometheus")


def test_missing_server_fails_with_the_ci_switch(
    monkeypatch: pytest.MonkeyPatch, require_server
) -> None:
    monkeypatch.setattr(servers, "find_prometheus", lambda: None)
    monkeypatch.setenv("MLMON_REQUIRE_SERVERS", "1")

    with pytest.raises(pytest.fail.Exception, match="prometheus"):
        require_server("prometheus")


# --- carbon-cache -----------------------------------------------------------------------------


def test_carbon_stores_plaintext_lines_in_whisper(carbon: servers.Carbon) -> None:
    now = int(time.time())
    expected = [(now - 2, 1.5), (now - 1, 2.0), (now, -3.25)]

    carbon.send_lines(f"it.plain.value {value} {ts}" for ts, value in expected)

    assert expected == carbon.wait_for("it.plain.value", lambda points: len(points) == 3)
    assert carbon.list_metrics() == ["it.plain.value"]
    assert carbon.sum_values("it.plain.value") == 0.25


def test_carbon_accepts_the_pickle_protocol(
    shared_carbon: servers.Carbon, metric_prefix: str
) -> None:
    now = int(time.time())
    path = f"{metric_prefix}.pickled"
    payload = pickle.dumps([(path, (now - 1, 4.0)), (path, (now, 5.0))], protocol=2)

    with socket.create_connection(("127.0.0.1", shared_carbon.pickle_port), timeout=5) as conn:
        conn.sendall(struct.pack("!L", len(payload)) + payload)

    assert [(now - 1, 4.0), (now, 5.0)] == shared_carbon.wait_for(
        path, lambda points: len(points) == 2
    )


def test_carbon_rolls_up_counts_by_sum_and_the_rest_by_average(
    shared_carbon: servers.Carbon, metric_prefix: str
) -> None:
    import whisper

    now = int(time.time())
    shared_carbon.send_lines(
        [
            f"{metric_prefix}.requests_total 1 {now}",
            f"{metric_prefix}.latency.count 1 {now}",
            f"{metric_prefix}.latency.mean 1 {now}",
        ]
    )
    shared_carbon.wait_for_metrics(
        lambda names: sum(name.startswith(metric_prefix) for name in names) == 3
    )

    def method(path: str) -> str:
        return str(whisper.info(str(shared_carbon.metric_file(path)))["aggregationMethod"])

    assert method(f"{metric_prefix}.requests_total") == "sum"
    assert method(f"{metric_prefix}.latency.count") == "sum"
    assert method(f"{metric_prefix}.latency.mean") == "average"


def test_carbon_pair_members_are_independent(
    carbon_pair: tuple[servers.Carbon, servers.Carbon],
) -> None:
    first, second = carbon_pair
    now = int(time.time())

    first.send_lines([f"it.only.first 1 {now}"])
    first.wait_for("it.only.first")

    assert first.line_port != second.line_port
    assert second.list_metrics() == []


def test_carbon_restart_keeps_its_ports_and_its_data(carbon: servers.Carbon) -> None:
    now = int(time.time())
    ports = (carbon.line_port, carbon.pickle_port, carbon.cache_query_port)
    carbon.send_lines([f"it.restart.before 1 {now - 1}"])
    carbon.wait_for("it.restart.before")

    carbon.restart()
    carbon.send_lines([f"it.restart.after 2 {now}"])

    assert carbon.wait_for("it.restart.after") == [(now, 2.0)]
    assert carbon.read("it.restart.before") == [(now - 1, 1.0)]
    assert (carbon.line_port, carbon.pickle_port, carbon.cache_query_port) == ports


# --- StatsD -----------------------------------------------------------------------------------


def test_statsd_counter_sent_three_times_reaches_carbon_summed_exactly(
    statsd_daemon: servers.StatsdDaemon,
) -> None:
    path = statsd_daemon.counter_path("x.y")

    for _ in range(3):
        statsd_daemon.send("x.y:3|c")
    statsd_daemon.carbon.wait_for_sum(path, 9)
    # One more flush must not add anything: nothing was counted twice.
    time.sleep(1.5)

    assert path == "stats_counts.x.y"
    assert statsd_daemon.carbon.sum_values(path) == 9


def test_statsd_gauge_and_timer_land_on_the_documented_paths(
    statsd_daemon: servers.StatsdDaemon,
) -> None:
    carbon = statsd_daemon.carbon

    statsd_daemon.send("it.gauge:7|g", "it.timer:10|ms", "it.timer:20|ms", "it.set:a|s")

    assert carbon.wait_for(statsd_daemon.gauge_path("it.gauge"))[-1][1] == 7
    assert carbon.wait_for(statsd_daemon.timer_path("it.timer", "mean"))[-1][1] == 15
    assert carbon.wait_for(statsd_daemon.timer_path("it.timer", "count"))[-1][1] == 2
    assert carbon.wait_for(statsd_daemon.set_path("it.set"))[-1][1] == 1
    assert statsd_daemon.gauge_path("it.gauge") == "stats.gauges.it.gauge"
    assert statsd_daemon.timer_path("it.timer") == "stats.timers.it.timer.mean"


def test_statsd_tcp_server_counts_lines(statsd_factory) -> None:
    daemon = statsd_factory(tcp=True)

    daemon.send_tcp("it.tcp:2|c", "it.tcp:5|c")

    daemon.carbon.wait_for_sum(daemon.counter_path("it.tcp"), 7)
    assert "health: up" in daemon.admin("health")


# --- Prometheus -------------------------------------------------------------------------------

EXPOSITION = """\
# HELP it_requests_total Requests seen by the test endpoint.
# TYPE it_requests_total counter
it_requests_total{model="m1"} 42
"""


def test_prometheus_scrapes_a_static_endpoint(prometheus_factory, metrics_endpoint_factory) -> None:
    endpoint = metrics_endpoint_factory(EXPOSITION)
    prometheus = prometheus_factory([endpoint.target])

    result = prometheus.wait_for_query('it_requests_total{model="m1"}')

    assert len(result) == 1
    assert {"job": "mlmon", "instance": endpoint.target} == {
        key: result[0]["metric"][key] for key in ("job", "instance")
    }
    assert float(result[0]["value"][1]) == 42.0
    assert endpoint.requests >= 1


def test_promtool_accepts_valid_exposition_text(promtool: servers.Promtool) -> None:
    ok, output = promtool.check_metrics(EXPOSITION)

    assert ok, output


@pytest.mark.parametrize(
    "text",
    [
        'it_requests_total{model="m1" 42\n',  # unparsable
        "# TYPE it_requests counter\nit_requests 1\n",  # counter without _total, no HELP
    ],
)
def test_promtool_rejects_invalid_exposition_text(promtool: servers.Promtool, text: str) -> None:
    ok, output = promtool.check_metrics(text)

    assert not ok
    assert output


def test_promtool_checks_rule_files(promtool: servers.Promtool, tmp_path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(
        '{"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "1m"}]}]}'
    )
    bad = tmp_path / "bad.yml"
    bad.write_text('{"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up =="}]}]}')

    assert promtool.check_rules(good)[0]
    assert not promtool.check_rules(bad)[0]


# --- carbon-c-relay ---------------------------------------------------------------------------


def test_relay_routes_each_series_to_exactly_one_of_two_carbons(
    carbon_pair: tuple[servers.Carbon, servers.Carbon], carbon_relay_factory
) -> None:
    first, second = carbon_pair
    relay = carbon_relay_factory([first, second])
    now = int(time.time())
    sent = {f"it.relay.s{i:02d}": float(i) for i in range(40)}

    relay.send_lines(f"{path} {value} {now}" for path, value in sent.items())
    first.wait_for_metrics(lambda names: len(names) + len(second.list_metrics()) >= len(sent))
    in_first, in_second = set(first.list_metrics()), set(second.list_metrics())

    assert set() == in_first & in_second
    assert set(sent) == in_first | in_second
    assert in_first and in_second
    for path, value in sent.items():
        store = first if path in in_first else second
        assert [(now, value)] == store.wait_for(path)


# --- graphite-web -----------------------------------------------------------------------------


def test_graphite_web_renders_and_finds_series_across_two_carbons(
    carbon_pair: tuple[servers.Carbon, servers.Carbon], graphite_web_factory
) -> None:
    first, second = carbon_pair
    web = graphite_web_factory([first, second])
    now = int(time.time())

    first.send_lines([f"it.web.a 1 {now - 1}", f"it.web.a 2 {now}"])
    second.send_lines([f"it.web.b 5 {now}"])
    points = web.wait_for_points(
        "sumSeries(it.web.*)", lambda points: sum(v for _, v in points) == 8
    )

    assert points == [(now - 1, 1.0), (now, 7.0)]
    assert web.find("it.web.*") == ["it.web.a", "it.web.b"]
