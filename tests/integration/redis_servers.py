"""Real ``redis-server`` processes for the store tests: one node, or a 3-master Redis Cluster.

Each server runs in its own temp directory on a free loopback port with persistence off
(``save ""``, ``appendonly no``). Fixtures (registered by ``conftest.py``):

* ``redis_server`` -- a fresh single node for this test (:class:`RedisServer`);
* ``redis_cluster`` -- a fresh 3-master cluster (:class:`RedisCluster`), created with
  ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes``;
* ``blackhole`` -- a TCP listener that accepts connections and never answers.

A missing ``redis-server``/``redis-cli``/redis-py skips the test, or fails it under
``MLMON_REQUIRE_SERVERS=1`` (through conftest's ``skip_or_fail_fixture``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import servers

__all__ = [
    "Blackhole",
    "RedisCluster",
    "RedisServer",
    "blackhole",
    "missing_redis",
    "redis_cluster",
    "redis_factory",
    "redis_server",
    "require_redis",
]


def missing_redis() -> str | None:
    """Why Redis tests cannot run here, or None."""
    problems = []
    if shutil.which("redis-server") is None:
        problems.append("redis-server (Debian package redis-server)")
    if shutil.which("redis-cli") is None:
        problems.append("redis-cli (Debian package redis-tools)")
    try:
        import redis  # noqa: F401
    except ImportError:
        problems.append("the redis Python package (pip install 'redis>=5')")
    if not problems:
        return None
    return f"redis needs {', '.join(problems)}; run scripts/install-test-servers.sh as root"


class RedisServer(servers._Daemon):
    """One ``redis-server`` on a free loopback port, no persistence.

    ``extra`` are additional ``--name value`` options (e.g. ``{"maxmemory": "2mb"}``);
    ``password`` sets ``requirepass`` (and is used by :meth:`cli` and :meth:`client`).
    """

    name = "redis"

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        cluster: bool = False,
        extra: dict[str, str] | None = None,
        password: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.password = password
        self.port = 0
        self.bus_port = 0
        self.cluster = cluster
        self.extra = dict(extra or {})

    def _prepare(self) -> None:
        self.port = self._port(self.port, "tcp")
        if self.cluster:
            self.bus_port = self._port(self.bus_port, "tcp")

    def _argv(self) -> list[str]:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--bind", servers.LOOPBACK,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "no",
            "--daemonize", "no",
        ]
        if self.cluster:
            argv += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "5000",
                "--cluster-port", str(self.bus_port),
            ]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        for k, v in self.extra.items():
            argv += [f"--{k}", v]
        return argv

    def _ports(self) -> list[tuple[str, int]]:
        return [("tcp", self.port)] + ([("tcp", self.bus_port)] if self.cluster else [])

    def _extra_ready(self) -> bool:
        try:
            return self.cli("PING", timeout=2).strip() == "PONG"
        except (subprocess.SubprocessError, OSError):
            return False

    @property
    def url(self) -> str:
        return f"redis://{servers.LOOPBACK}:{self.port}/0"

    def cli(self, *args: str, timeout: float = 10.0) -> str:
        """Run ``redis-cli -p PORT args...`` and return its stdout."""
        auth = [] if self.password is None else ["--no-auth-warning", "-a", self.password]
        out = subprocess.run(
            ["redis-cli", "-h", servers.LOOPBACK, "-p", str(self.port), *auth, *args],
            capture_output=True,
            timeout=timeout,
            check=True,
            text=True,
        )
        return out.stdout

    def client(self) -> Any:
        import redis

        return redis.Redis(
            host=servers.LOOPBACK, port=self.port, password=self.password, socket_timeout=10
        )

    def used_memory(self) -> int:
        return int(self.client().info("memory")["used_memory"])


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` masters joined by ``redis-cli --cluster``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes = [RedisServer(root / f"node{i}", cluster=True) for i in range(3)]

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        hosts = [f"{servers.LOOPBACK}:{n.port}" for n in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *hosts, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=60,
            check=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                return self
            time.sleep(0.1)
        raise servers.ServerError("redis cluster did not reach cluster_state:ok within 30 s")

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def client(self) -> Any:
        from redis.cluster import RedisCluster as Client

        return Client(host=servers.LOOPBACK, port=self.nodes[0].port, socket_timeout=10)

    def node_of_slot(self, slot: int) -> RedisServer:
        """The node that serves ``slot`` now (asked from the first node)."""
        for line in self.nodes[0].cli("CLUSTER", "NODES").splitlines():
            parts = line.split()
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            for spec in parts[8:]:
                if spec.startswith("["):
                    continue
                lo, _, hi = spec.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    return next(n for n in self.nodes if n.port == port)
        raise servers.ServerError(f"no node serves slot {slot}")

    def node_id(self, node: RedisServer) -> str:
        return node.cli("CLUSTER", "MYID").strip()

    def begin_move(self, slot: int, target: RedisServer) -> RedisServer:
        """Mark ``slot`` MIGRATING on its owner and IMPORTING on ``target``; returns the owner."""
        source = self.node_of_slot(slot)
        if source is target:
            raise servers.ServerError(f"slot {slot} is already on {target}")
        target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", self.node_id(source))
        source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", self.node_id(target))
        return source

    def migrate_keys(
        self, slot: int, source: RedisServer, target: RedisServer, limit: int | None = None
    ) -> int:
        """MIGRATE up to ``limit`` (default all) keys of ``slot``; raises on any error reply
        (BUSYKEY: the target already had a key of that name)."""
        moved = 0
        while limit is None or moved < limit:
            count = 100 if limit is None else min(100, limit - moved)
            keys = source.cli("CLUSTER", "GETKEYSINSLOT", str(slot), str(count)).split()
            if not keys:
                break
            reply = source.cli(
                "MIGRATE", servers.LOOPBACK, str(target.port), "", "0", "5000", "KEYS", *keys
            ).strip()
            if reply not in ("OK", "NOKEY"):
                raise servers.ServerError(f"MIGRATE of slot {slot} failed: {reply}")
            moved += len(keys)
        return moved

    def finish_move(self, slot: int, target: RedisServer) -> None:
        """Give ``slot`` to ``target`` on every node (after all its keys were migrated)."""
        dst_id = self.node_id(target)
        for node in self.nodes:
            node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)

    def move_slot(self, slot: int, target: RedisServer) -> int:
        """Move ``slot`` with its keys to ``target`` (SETSLOT/MIGRATE); returns keys moved."""
        if self.node_of_slot(slot) is target:
            return 0
        source = self.begin_move(slot, target)
        moved = self.migrate_keys(slot, source, target)
        self.finish_move(slot, target)
        return moved

    def stop(self) -> None:
        servers.stop_all(self.nodes)


class Blackhole:
    """A TCP listener on a free loopback port that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((servers.LOOPBACK, 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://{servers.LOOPBACK}:{self.port}/0"

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # read nothing, answer nothing

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for conn in self.accepted:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def require_redis(skip_or_fail_fixture: Callable[[str], None]) -> None:
    """Skip (or fail under ``MLMON_REQUIRE_SERVERS=1``) when Redis cannot run here."""
    reason = missing_redis()
    if reason is not None:
        skip_or_fail_fixture(reason)


@pytest.fixture
def redis_factory(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RedisServer]]:
    """``redis_factory(**kwargs) -> RedisServer`` (started), stopped at teardown."""
    started: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis"), **kwargs)
        started.append(server)
        server.start()
        return server

    yield make
    servers.stop_all(started)


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A fresh single ``redis-server`` for this test (``.url``, ``.client()``, ``.cli()``)."""
    return redis_factory()


@pytest.fixture
def redis_cluster(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisCluster]:
    """A fresh 3-master Redis Cluster for this test (``.url``, ``.nodes``, ``.move_slot``)."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    """A loopback TCP listener that accepts and never answers (a hung server)."""
    hole = Blackhole()
    yield hole
    hole.stop()
