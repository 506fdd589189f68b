"""The fleet's keys in Redis: every process's published state, the leader's lease, and the
fleet's alert state (see :mod:`mlmon.fleet.view` for who calls what, and when).

Every key shares the hash tag ``{<model>|<version>|fleet}``, so that on a Redis Cluster they
live in one slot and each operation is one atomic script:

- ``<prefix>:{..|fleet}:states`` — a hash, instance → state (bytes);
- ``<prefix>:{..|fleet}:seen`` — a sorted set, instance → the *Redis server's* time (ms) of its
  last publish. Liveness uses the server's clock only, so hosts whose clocks disagree by
  minutes still agree on who is alive. A state not refreshed within its TTL is dropped by the
  next publish or read (at most 1,000 at a time) into the retired hash, whose counters the
  leader folds into the archive; the keys expire a day after the whole fleet is gone;
- ``<prefix>:{..|fleet}:leader`` — the lease: a random token, set if absent with a TTL, renewed
  only by its holder;
- ``<prefix>:{..|fleet}:alerts`` — the fleet's alert state, written only by the lease holder
  (the script compares the token: a leader that lost its lease cannot overwrite it).

Each call runs under the store's total deadline (a watchdog shuts the sockets), counts its
failures in ``mlmon_store_errors_total{operation="fleet"}`` and never raises.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

from mlmon.stores._redis_cluster import _Connections

__all__ = ["FleetRead", "_FleetOps"]

# The first lines of the publish and read scripts (``ttl`` set before them): the server's time,
# and states not refreshed within ttl moved to the retired hash (at most 1,000 per call).
_PRUNE = """local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, 1000)
for _, name in ipairs(old) do
  local st = redis.call('HGET', KEYS[1], name)
  if st and redis.call('HLEN', KEYS[3]) < 10000 then
    redis.call('HSET', KEYS[3], name, st)
  end
end
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
  redis.call('PEXPIRE', KEYS[3], 2 * ttl + 86400000)
end
"""

# KEYS: states, seen, retired. ARGV: instance, state, ttl ms, max instances. A state not
# refreshed within ttl moves to the retired hash (the leader folds its counters into the archive).
_PUBLISH = """#!lua
local ttl = tonumber(ARGV[3])
""" + _PRUNE + """if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * ttl + 86400000)
redis.call('PEXPIRE', KEYS[2], 2 * ttl + 86400000)
return 1
"""

# KEYS: states, seen, retired, archive. ARGV: ttl ms, max instances, max retired.
# Returns the archive (or false), then the retired (name, state) count and pairs, then live
# instance, state, age ms triples.
_READ = """#!lua
local ttl = tonumber(ARGV[1])
""" + _PRUNE + """local live = redis.call('ZRANGEBYSCORE', KEYS[2], now - ttl, '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {redis.call('GET', KEYS[4])}
local want = tonumber(ARGV[3])
local got = {}
local cursor = '0'
repeat
  local r = redis.call('HSCAN', KEYS[3], cursor, 'COUNT', want)
  cursor = r[1]
  for i = 1, #r[2], 2 do
    if #got < 2 * want then
      got[#got + 1] = r[2][i]
      got[#got + 1] = r[2][i + 1]
    end
  end
until cursor == '0' or #got >= 2 * want
out[#out + 1] = tostring(#got / 2)
for _, v in ipairs(got) do
  out[#out + 1] = v
end
for i = 1, #live, 2 do
  local state = redis.call('HGET', KEYS[1], live[i])
  if state then
    out[#out + 1] = live[i]
    out[#out + 1] = state
    out[#out + 1] = tostring(now - tonumber(live[i + 1]))
  end
end
return out
"""

# KEYS: leader. ARGV: token, lease ms. 1 when this token holds the lease now.
_LEASE = """#!lua
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
elseif v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""

# KEYS: leader, alerts, archive, retired. ARGV: token, alert state, ttl ms, archive (or ""),
# then the retired instances folded into it. Writes only while holding the lease.
_COMMIT = """#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', tonumber(ARGV[3]))
end
if #ARGV > 4 then
  redis.call('HDEL', KEYS[4], unpack(ARGV, 5))
end
return 1
"""

# KEYS: states, seen, retired. ARGV: instance. A process that closes: its state retires now.
_RETIRE = """#!lua
local st = redis.call('HGET', KEYS[1], ARGV[1])
if st then
  redis.call('HSET', KEYS[3], ARGV[1], st)
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: leader. ARGV: token.
_RELEASE = """#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class _FleetOps(_Connections):
    """Fleet operations of a :class:`~mlmon.stores.redis.RedisStore`."""

    key_prefix: str
    _ns: str
    _sync_lock: threading.Lock

    def _fleet_key(self, part: str) -> str:
        return f"{self.key_prefix}:{{{self._ns}|fleet}}:{part}"

    def _fleet_call(self, key: str, cmd: list[Any], budget: float | None = None) -> Any:
        """One command under the store's deadline; the reply, or None after a failure (counted
        as ``operation="fleet"``)."""
        budget = self.deadline if budget is None else max(0.01, budget)
        if not self._sync_lock.acquire(timeout=budget):
            self._fail("fleet", TimeoutError("the store is busy past its deadline"))
            return None
        fired = threading.Event()

        def abort() -> None:
            fired.set()
            self._abort()

        timer = threading.Timer(budget, abort)
        timer.daemon = True
        try:
            self._fired = fired
            timer.start()
            if self._client is None:
                self._client = self._connect(budget)
            out = self._run([(key, cmd)])[0]
            if isinstance(out, Exception):
                raise out
            return out
        except Exception as exc:
            self._fail("fleet", exc)
            self._drop_client()
            return None
        finally:
            timer.cancel()
            self._sync_lock.release()

    def fleet_publish(self, instance: str, state: bytes, ttl: float, max_instances: int) -> bool | None:
        """Store this process's state for ``ttl`` seconds. True: stored; False: the fleet is
        full (``max_instances`` live states); None: Redis failed (counted)."""
        out = self._fleet_call(
            self._fleet_key("states"),
            ["EVAL", _PUBLISH, 3, self._fleet_key("states"), self._fleet_key("seen"), self._fleet_key("retired"),
             instance, state, int(ttl * 1000), int(max_instances)],
        )  # fmt: skip
        return None if out is None else bool(out)

    def fleet_read(self, ttl: float, max_instances: int, max_retired: int = 256) -> FleetRead | None:
        """The live states, the retired ones waiting to be folded, and the archive; None on
        failure."""
        keys = [self._fleet_key(k) for k in ("states", "seen", "retired", "archive")]
        out = self._fleet_call(
            keys[0], ["EVAL", _READ, 4, *keys, int(ttl * 1000), int(max_instances), int(max_retired)]
        )
        if out is None:
            return None
        archive = bytes(out[0]) if out[0] else None
        n_retired = int(out[1])
        retired = [(_text(out[2 + 2 * i]), bytes(out[3 + 2 * i])) for i in range(n_retired)]
        live: list[tuple[str, bytes, float]] = []
        rest = out[2 + 2 * n_retired :]
        for i in range(0, len(rest) - 2, 3):
            live.append((_text(rest[i]), bytes(rest[i + 1]), float(rest[i + 2]) / 1000.0))
        return FleetRead(live, retired, archive)

    def fleet_lease(self, token: str, lease: float) -> bool | None:
        """Take or renew the leader's lease for ``lease`` seconds; None on failure."""
        out = self._fleet_call(
            self._fleet_key("leader"), ["EVAL", _LEASE, 1, self._fleet_key("leader"), token, max(1, int(lease * 1000))]
        )
        return None if out is None else bool(out)

    def fleet_alerts(self) -> bytes | None:
        """The fleet's alert state as the last leader left it (None when absent or on failure)."""
        out = self._fleet_call(self._fleet_key("alerts"), ["GET", self._fleet_key("alerts")])
        return None if out is None else bytes(out)

    def fleet_commit(
        self, token: str, alerts: bytes, ttl: float, archive: bytes | None = None, folded: Sequence[str] = ()
    ) -> bool | None:
        """Store the fleet's alert state (and a new archive, removing the retired states folded
        into it), only while ``token`` holds the lease."""
        keys = [self._fleet_key(k) for k in ("leader", "alerts", "archive", "retired")]
        out = self._fleet_call(
            keys[0], ["EVAL", _COMMIT, 4, *keys, token, alerts, int(ttl * 1000), archive or b"", *folded]
        )
        return None if out is None else bool(out)

    def fleet_release(self, token: str, budget: float | None = None) -> None:
        """Give the lease up (at close), if this token holds it."""
        self._fleet_call(
            self._fleet_key("leader"), ["EVAL", _RELEASE, 1, self._fleet_key("leader"), token], budget
        )

    def fleet_retire(self, instance: str, budget: float | None = None) -> None:
        """This process is leaving (at close): its last state retires, so that the leader
        keeps its counters in the fleet's totals."""
        keys = [self._fleet_key(k) for k in ("states", "seen", "retired")]
        self._fleet_call(keys[0], ["EVAL", _RETIRE, 3, *keys, instance], budget)


class FleetRead(NamedTuple):
    """What :meth:`_FleetOps.fleet_read` found."""

    live: list[tuple[str, bytes, float]]
    """(instance, state, seconds since its publish by the Redis server's clock)"""
    retired: list[tuple[str, bytes]]
    """(instance, last state) of processes that left, not yet folded into the archive"""
    archive: bytes | None
    """the counters of every process folded so far (one state)"""


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
