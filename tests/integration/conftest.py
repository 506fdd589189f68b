"""Fixtures that start the real metric daemons for integration tests (DESIGN.md §6).

Every test collected under ``tests/integration`` is marked ``integration``.

A daemon that is not installed skips the test with the reason, except when the environment sets
``MLMON_REQUIRE_SERVERS=1`` (CI does): then the test fails, so a missing server can never hide
behind a skip.  A daemon that is installed but fails to start is always an error.

Data in flight is lost when a daemon stops (carbon's write cache, StatsD's unflushed metrics):
poll with ``Carbon.wait_for`` / ``Prometheus.wait_for_query`` before the test returns.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import servers

HERE = Path(__file__).resolve().parent
_REQUIRE_ENV = "MLMON_REQUIRE_SERVERS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: runs against real daemons (carbon, statsd, prometheus)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: the marker must be on the items before `-m "not integration"` deselects.
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def servers_required() -> bool:
    """True when ``MLMON_REQUIRE_SERVERS`` asks for missing daemons to fail tests."""
    return os.environ.get(_REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip the current test for ``reason``, or fail it when ``MLMON_REQUIRE_SERVERS=1``."""
    if servers_required():
        pytest.fail(f"{reason} ({_REQUIRE_ENV}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def require(server: str) -> None:
    """Skip or fail (see :func:`skip_or_fail`) unless everything ``server`` needs is installed."""
    reason = servers.missing(server)
    if reason is not None:
        skip_or_fail(reason)


@pytest.fixture
def require_server() -> Callable[[str], None]:
    """``require_server(name)`` skips/fails the test when daemon ``name`` is not installed.

    Names: ``carbon``, ``statsd``, ``prometheus``, ``promtool``, ``carbon-relay``,
    ``graphite-web``.
    """
    return require


@pytest.fixture
def metric_prefix() -> str:
    """A graphite path component unique to this test, for sharing ``shared_carbon``."""
    return f"t{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# carbon-cache
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def carbon_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., servers.Carbon]]:
    """``carbon_factory(**kwargs) -> Carbon``: start fresh carbon-caches, stopped at teardown.

    kwargs go to :class:`servers.Carbon` (``retentions``, ``startup_timeout``).
    """
    require("carbon")
    started: list[servers.Carbon] = []

    def make(**kwargs: Any) -> servers.Carbon:
        carbon = servers.Carbon(tmp_path_factory.mktemp("carbon"), **kwargs)
        started.append(carbon)
        return carbon.start()

    yield make
    servers.stop_all(reversed(started))


@pytest.fixture
def carbon(carbon_factory: Callable[..., servers.Carbon]) -> servers.Carbon:
    """A fresh carbon-cache for this test (1 s whisper step, 1 h retention)."""
    return carbon_factory()


@pytest.fixture
def carbon_pair(
    carbon_factory: Callable[..., servers.Carbon],
) -> tuple[servers.Carbon, servers.Carbon]:
    """Two independent fresh carbon-caches, e.g. behind a relay."""
    return carbon_factory(), carbon_factory()


@pytest.fixture(scope="session")
def shared_carbon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Carbon]:
    """One carbon-cache for the whole session; use ``metric_prefix`` to keep tests apart."""
    require("carbon")
    carbon = servers.Carbon(tmp_path_factory.mktemp("shared-carbon")).start()
    yield carbon
    carbon.stop()


# ---------------------------------------------------------------------------------------------
# StatsD
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def statsd_factory(
    tmp_path_factory: pytest.TempPathFactory,
    carbon_factory: Callable[..., servers.Carbon],
) -> Iterator[Callable[..., servers.StatsdDaemon]]:
    """``statsd_factory(carbon=None, **kwargs) -> StatsdDaemon``, stopped at teardown.

    Without ``carbon`` each daemon gets a fresh carbon-cache of its own.  kwargs go to
    :class:`servers.StatsdDaemon` (``tcp``, ``legacy_namespace``, ``delete_idle_stats``,
    ``percent_threshold``, ``flush_interval_ms``, ``extra_config``).
    """
    require("statsd")
    started: list[servers.StatsdDaemon] = []

    def make(carbon: servers.Carbon | None = None, **kwargs: Any) -> servers.StatsdDaemon:
        target = carbon if carbon is not None else carbon_factory()
        daemon = servers.StatsdDaemon(target, tmp_path_factory.mktemp("statsd"), **kwargs)
        started.append(daemon)
        return daemon.start()

    yield make
    servers.stop_all(reversed(started))


@pytest.fixture
def statsd_daemon(
    statsd_factory: Callable[..., servers.StatsdDaemon], carbon: servers.Carbon
) -> servers.StatsdDaemon:
    """A StatsD daemon (UDP on ``.port``) flushing every second to ``.carbon``.

    ``.carbon`` is the same object as this test's ``carbon`` fixture.
    """
    return statsd_factory(carbon)


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., servers.Prometheus]]:
    """``prometheus_factory(targets, **kwargs) -> Prometheus``, stopped at teardown.

    ``targets`` are ``"host:port"`` strings; kwargs go to :class:`servers.Prometheus`
    (``job``, ``metrics_path``, ``scrape_interval``, ``rule_files``, ``honor_labels``,
    ``extra_scrape_configs``).
    """
    require("prometheus")
    started: list[servers.Prometheus] = []

    def make(targets: list[str] | tuple[str, ...] = (), **kwargs: Any) -> servers.Prometheus:
        prometheus = servers.Prometheus(targets, tmp_path_factory.mktemp("prometheus"), **kwargs)
        started.append(prometheus)
        return prometheus.start()

    yield make
    servers.stop_all(reversed(started))


@pytest.fixture(scope="session")
def promtool() -> servers.Promtool:
    """:class:`servers.Promtool`: ``check_metrics(text)``, ``check_rules(*paths)``, ``check_config``."""
    require("promtool")
    return servers.Promtool()


@pytest.fixture
def metrics_endpoint_factory() -> Iterator[Callable[..., servers.MetricsEndpoint]]:
    """``metrics_endpoint_factory(text, content_type=...) -> MetricsEndpoint``, a static target."""
    started: list[servers.MetricsEndpoint] = []

    def make(text: str = "", **kwargs: Any) -> servers.MetricsEndpoint:
        endpoint = servers.MetricsEndpoint(text, **kwargs)
        started.append(endpoint)
        return endpoint

    yield make
    for endpoint in started:
        endpoint.stop()


# ---------------------------------------------------------------------------------------------
# carbon-c-relay
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def carbon_relay_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., servers.CarbonRelay]]:
    """``carbon_relay_factory(destinations, **kwargs) -> CarbonRelay``, stopped at teardown.

    ``destinations`` are :class:`servers.Carbon` objects or ``(host, port)`` line receivers;
    kwargs go to :class:`servers.CarbonRelay` (``hashing``, ``replication``, ``instances``).
    """
    require("carbon-relay")
    started: list[servers.CarbonRelay] = []

    def make(destinations: Any, **kwargs: Any) -> servers.CarbonRelay:
        relay = servers.CarbonRelay(destinations, tmp_path_factory.mktemp("relay"), **kwargs)
        started.append(relay)
        return relay.start()

    yield make
    servers.stop_all(reversed(started))


# ---------------------------------------------------------------------------------------------
# graphite-web
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def graphite_web_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., servers.GraphiteWeb]]:
    """``graphite_web_factory(carbons, **kwargs) -> GraphiteWeb``, stopped at teardown.

    ``carbons`` is one :class:`servers.Carbon` or a list of them, served as one tree;
    kwargs go to :class:`servers.GraphiteWeb` (``carbonlink``).
    """
    require("graphite-web")
    started: list[servers.GraphiteWeb] = []

    def make(carbons: Any, **kwargs: Any) -> servers.GraphiteWeb:
        web = servers.GraphiteWeb(carbons, tmp_path_factory.mktemp("graphite-web"), **kwargs)
        started.append(web)
        return web.start()

    yield make
    servers.stop_all(reversed(started))


# ---------------------------------------------------------------------------------------------
# Redis (fixtures in redis_servers.py)
# ---------------------------------------------------------------------------------------------

from redis_servers import (  # noqa: E402
    blackhole,  # noqa: F401
    redis_cluster,  # noqa: F401
    redis_factory,  # noqa: F401
    redis_server,  # noqa: F401
    require_redis,  # noqa: F401
)


@pytest.fixture
def skip_or_fail_fixture() -> Callable[[str], None]:
    """:func:`skip_or_fail` as a fixture, for fixture modules that cannot import conftest."""
    return skip_or_fail


# ---------------------------------------------------------------------------------------------
# Pushgateway
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def pushgateway_url(tmp_path: Path) -> Iterator[str]:
    """A real Pushgateway (Debian ``prometheus-pushgateway``) on a free loopback port: its URL."""
    import shutil
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        skip_or_fail("prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway)")
    port = servers.free_port()
    log_path = tmp_path / "pushgateway.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            # Debian's build persists to a file shared by every Pushgateway on the machine by
            # default: this one keeps its own, in the test's directory.
            [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                f"--persistence.file={tmp_path / 'pushgateway.data'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise servers.ServerError(log_path.read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
