"""The redis store's connections: connect (a single node or a Redis Cluster), abort on the
deadline, and run commands in pipelines routed to each primary (``MOVED``/``ASK`` followed once).

:class:`_Connections` is a base of :class:`~mlmon.stores.redis.RedisStore`, which sets the
attributes declared here; it also holds the store's error counting and rate-limited logging.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

log = logging.getLogger("mlmon.stores.redis")

_LOG_EVERY = 60.0


class _Connections:
    """Connections, error counting and logging of a :class:`~mlmon.stores.redis.RedisStore`."""

    deadline: float
    _url: str
    _secrets: list[str]
    _cluster_opt: bool | None
    _lock: threading.Lock
    _errors: dict[str, int]
    _last_log: dict[str, float]
    _client: Any
    _is_cluster: bool
    _reload_slots: bool
    _fired: threading.Event

    # -- logging and errors ------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _log(self, operation: str, exc: BaseException) -> None:
        now = time.monotonic()
        last = self._last_log.get(operation)
        if last is not None and now - last < _LOG_EVERY:
            return
        self._last_log[operation] = now
        log.warning(
            "mlmon redis store: %s failed (%s: %s); items stay buffered, retried next sync",
            operation,
            type(exc).__name__,
            self._clean(str(exc))[:200],
        )

    def _fail(self, operation: str, exc: BaseException) -> None:
        with self._lock:
            self._errors[operation] = self._errors.get(operation, 0) + 1
        self._log(operation, exc)

    # -- connections ---------------------------------------------------------------------------
    def _client_kwargs(self, timeout: float) -> dict[str, Any]:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }

    def _connect(self, timeout: float) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        kwargs = self._client_kwargs(timeout)
        cluster = self._cluster_opt
        if cluster is None:
            probe = redis.Redis.from_url(self._url, **kwargs)
            self._client = probe  # so that the watchdog can abort it
            try:
                info = probe.info("cluster")
                cluster = bool(int(info.get("cluster_enabled", 0)))
            finally:
                if cluster:
                    probe.close()
        if cluster:
            # one retry, so that a MOVED reply (a slot migrated) is followed at once
            kwargs["retry"] = Retry(NoBackoff(), 1)
            client: Any = RedisCluster.from_url(self._url, **kwargs)
        elif self._client is not None:
            client = self._client
        else:
            client = redis.Redis.from_url(self._url, **kwargs)
        self._is_cluster = bool(cluster)
        return client

    def _connections(self) -> list[Any]:
        client = self._client
        if client is None:
            return []
        pools: list[Any] = []
        if hasattr(client, "get_nodes"):
            for node in client.get_nodes():
                rc = getattr(node, "redis_connection", None)
                if rc is not None:
                    pools.append(rc.connection_pool)
        else:
            pools.append(client.connection_pool)
        conns: list[Any] = []
        for pool in pools:
            conns += list(getattr(pool, "_available_connections", []))
            conns += list(getattr(pool, "_in_use_connections", []))
        return conns

    def _abort(self) -> None:
        """Watchdog: shut every socket of this store so that blocked reads return now."""
        for conn in self._connections():
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def _run(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Run commands in pipelines; one result (or exception) per command, in order.

        A single node: one pipeline. A cluster: one pipeline per primary (by the slot of each
        command's routing key); ``MOVED`` and ``ASK`` redirections are followed once, and a
        ``MOVED`` reply makes the next sync reload the whole slot map. redis-py's own cluster
        pipeline is not used: after a connection error it re-sends commands one by one on
        new connections, beyond any deadline.
        """
        from redis.exceptions import AskError, MovedError

        fired = self._fired
        client = self._client
        if fired.is_set():
            raise TimeoutError(f"sync deadline of {self.deadline} s passed")
        if not self._is_cluster:
            pipe = client.pipeline(transaction=False)
            for _, cmd in calls:
                pipe.execute_command(*cmd)
            return list(pipe.execute(raise_on_error=False))
        from redis.crc import key_slot

        results: list[Any] = [None] * len(calls)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, (key, _) in enumerate(calls):
            node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        asks: dict[str, tuple[Any, list[tuple[int, bool]]]] = {}
        for node, idxs in by_node.values():
            if fired.is_set():
                err: Exception = TimeoutError(f"sync deadline of {self.deadline} s passed")
                for i in idxs:
                    results[i] = err
                continue
            try:
                conn = node.redis_connection or client.get_redis_connection(node)
                pipe = conn.pipeline(transaction=False)
                for i in idxs:
                    pipe.execute_command(*calls[i][1])
                out = pipe.execute(raise_on_error=False)
            except Exception as exc:  # this node is down or hung: the others still run
                out = [exc] * len(idxs)
            for i, r in zip(idxs, out, strict=True):
                results[i] = r
                if isinstance(r, AskError):  # MovedError is one too
                    moved = isinstance(r, MovedError)
                    if moved:
                        self._reload_slots = True  # the whole map, at the next sync
                    target = client.get_node(host=r.host, port=int(r.port))
                    if target is not None:
                        asks.setdefault(target.name, (target, []))[1].append((i, not moved))
        # A redirection is followed once: MOVED (the slot has a new owner) and ASK (the slot is
        # being migrated and this key is on the target already, which needs ASKING first).
        for node, pending in asks.values():
            if fired.is_set():
                break
            try:
                conn = node.redis_connection or client.get_redis_connection(node)
                pipe = conn.pipeline(transaction=False)
                for i, asking in pending:
                    if asking:
                        pipe.execute_command("ASKING")
                    pipe.execute_command(*calls[i][1])
                out = pipe.execute(raise_on_error=False)
                replies = iter(out)
                got = []
                for _, asking in pending:
                    if asking:
                        next(replies)
                    got.append(next(replies))
            except Exception as exc:
                got = [exc] * len(pending)
            for (i, _), r in zip(pending, got, strict=True):
                results[i] = r
        return results
