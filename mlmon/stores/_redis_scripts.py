"""The redis store's Lua scripts, their wire format, and the writes and joins that call them.

:class:`_Scripts` is a base of :class:`~mlmon.stores.redis.RedisStore`, which sets the
attributes declared here; the key layout is described in :mod:`mlmon.stores.redis`.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from mlmon.stores._redis_buffer import FloatArray, IntArray, _Chunk
from mlmon.stores._redis_cluster import _Connections

SHARDS = 256
_CHUNK_ROWS = 20_000  # rows per pipeline round trip
_MAX_SCRIPT_KEYS = 4096
TOKEN_BYTES = 8
VALUE_BYTES = 20  # a value as a join returns it: prediction, made_at, segment code
REPLY_BYTES = 1 + VALUE_BYTES
#: A value with a segment: prediction and ``made_at`` (little-endian float64), segment (uint32).
VALUE_DTYPE = np.dtype([("pred", "<f8"), ("made_at", "<f8"), ("segment", "<u4")])
#: A value without a segment: byte for byte the format of mlmon before segments.
VALUE16_DTYPE = np.dtype([("pred", "<f8"), ("made_at", "<f8")])

# Values in a hash (the field is the id):
#   16 bytes  prediction, made_at: no segment (also every value written before segments);
#   20 bytes  prediction, made_at, segment code (uint32 little-endian);
#   "D"       claimed by a process from before the claim tokens: a later label is a duplicate;
#   "D" + 8-byte claim token + the 16 or 20 value bytes (25 or 29 bytes): claimed by the label
#             whose token it is. A retry by that label (its reply was lost) gets the value again;
#             any other label is a duplicate.
# The lengths never overlap, so every reader tells them apart. A reader from before segments
# claims only 16-byte values: it sees a 20-byte value or a 25/29-byte tombstone as "not found",
# never as a wrong value (its label ends "unmatched" after retry_for).
#
# Wire format of a row sent to a script: one byte L, the L bytes of the field (an int id is
# b"\x00" + its int64 little-endian), then for a write the value (a join sends the labels' claim
# tokens in one block after the rows). KEYS[1] is the shard's key prefix "<prefix>:{<ns>|<shard>}" (never
# created itself; every key the scripts touch shares its hash tag, so its Redis Cluster slot).

# KEYS: the hashes written (declared, so that Redis Cluster routes a call whose slot is being
# migrated correctly); ARGV: one string per key: "<PEXPIREAT ms>,<value bytes> " then its rows.
# A 20-byte value whose segment is 0 is stored in 16 bytes.
_WRITE = """#!lua
local zero = string.rep('\\0', 4)
local args = {}
for a = 1, #KEYS do
  local key = KEYS[a]
  local blob = ARGV[a]
  local s1 = string.find(blob, ' ', 1, true)
  local c = string.find(blob, ',', 1, true)
  local at = string.sub(blob, 1, c - 1)
  local vlen = tonumber(string.sub(blob, c + 1, s1 - 1))
  local pos, len, n = s1 + 1, #blob, 0
  while pos <= len do
    local l = string.byte(blob, pos)
    args[n + 1] = string.sub(blob, pos + 1, pos + l)
    local v = string.sub(blob, pos + l + 1, pos + l + vlen)
    if vlen == 20 and string.sub(v, 17) == zero then
      v = string.sub(v, 1, 16) -- segment 0: the format every version reads
    end
    args[n + 2] = v
    n = n + 2
    pos = pos + l + 1 + vlen
    if n >= 2000 then
      redis.call('HSET', key, unpack(args, 1, n))
      n = 0
    end
  end
  if n > 0 then
    redis.call('HSET', key, unpack(args, 1, n))
  end
  redis.call('PEXPIREAT', key, at)
end
return 1
"""

# A join only reads and claims fields of hashes that exist on the node that runs it, so it
# declares one key per shard (the shard prefix, never created); it builds the hash names.
# ARGV[1]: the generations to probe, newest first, comma-separated; then one string per bucket:
# "<rows>/<bucket>:", its rows (fields only), then the rows' 8-byte claim tokens in the same
# order (one block, so that Python places no bytes per row). Returns 21 bytes per row, in order: "J" +
# the value as 20 bytes (a 16-byte value gets segment 0), claimed now (replaced by the tombstone
# "D" + token + value) or claimed before by this same token (a retry whose reply was lost);
# "D" + 20 zero bytes (claimed before by another label, also by an earlier row of this call);
# or 21 zero bytes (not found).
_JOIN = """#!lua flags=allow-oom
local base = KEYS[1]
local gens = {}
for g in string.gmatch(ARGV[1], '[^,]+') do
  gens[#gens + 1] = g
end
local none = string.rep('\\0', 21)
local dup = 'D' .. string.rep('\\0', 20)
local pad = string.rep('\\0', 4)
local out = {}
local fields = {}
for a = 2, #ARGV do
  local blob = ARGV[a]
  local s = string.find(blob, '/', 1, true)
  local n = tonumber(string.sub(blob, 1, s - 1))
  local c = string.find(blob, ':', s + 1, true)
  local prefix = base .. ':' .. string.sub(blob, s + 1, c) -- "<base>:<bucket>:"
  local tok = #blob - 8 * n -- the tokens: 8 bytes each after position tok
  local pos = c + 1
  for j = 1, n do
    local l = string.byte(blob, pos)
    fields[j] = string.sub(blob, pos + 1, pos + l)
    pos = pos + l + 1
  end
  local first = #out
  local res = {}
  local left = {}
  for j = 1, n do
    left[j] = j
  end
  local seen = {}
  for g = 1, #gens do
    if #left == 0 then
      break
    end
    local key = prefix .. gens[g]
    if redis.call('EXISTS', key) == 1 then
      local still = {}
      local lo = 1
      while lo <= #left do
        local hi = math.min(#left, lo + 999)
        local ask = {}
        for k = lo, hi do
          ask[k - lo + 1] = fields[left[k]]
        end
        local vals = redis.call('HMGET', key, unpack(ask))
        local claims = {}
        for k = lo, hi do
          local j = left[k]
          local v = vals[k - lo + 1]
          local f = fields[j]
          local lv = v and #v or 0
          if lv == 16 or lv == 20 then
            if seen[f] then
              res[j] = dup
            else
              seen[f] = true
              res[j] = 'J' .. v .. (lv == 16 and pad or '')
              claims[#claims + 1] = f
              claims[#claims + 1] = 'D' .. string.sub(blob, tok + 8 * j - 7, tok + 8 * j) .. v
            end
          elseif lv == 1 and v == 'D' then
            res[j] = dup
          elseif (lv == 25 or lv == 29) and string.byte(v, 1) == 68 then
            if string.sub(v, 2, 9) == string.sub(blob, tok + 8 * j - 7, tok + 8 * j) then
              res[j] = 'J' .. string.sub(v, 10) .. (lv == 25 and pad or '')
            else
              res[j] = dup
            end
          else
            still[#still + 1] = j
          end
        end
        if #claims > 0 then
          redis.call('HSET', key, unpack(claims))
        end
        lo = hi + 1
      end
      left = still
    end
  end
  for j = 1, n do
    out[first + j] = res[j] or none
  end
end
return table.concat(out)
"""


def _wire(
    part: _Chunk, order: IntArray, values: npt.NDArray[np.uint8] | None
) -> tuple[bytes, IntArray]:
    """The rows of ``part`` in ``order`` in the scripts' wire format (each row's field, then its
    value bytes for a write), and row offsets (n + 1)."""
    n = len(order)
    extra = 0 if values is None else int(values.shape[1])
    if isinstance(part.fields, np.ndarray):
        size = 10 + extra
        rec = np.empty((n, size), dtype=np.uint8)
        rec[:, 0] = 9
        rec[:, 1] = 0
        rec[:, 2:10] = part.fields[order].astype("<i8").view(np.uint8).reshape(n, 8)
        if values is not None:
            rec[:, 10:] = values[order]
        offsets: IntArray = np.arange(n + 1, dtype=np.int64) * size
        return rec.tobytes(), offsets
    rows: list[bytes] = []
    vb = None if values is None else values.tobytes()
    fields = part.fields
    for i in order.tolist():
        f = fields[i]
        fb = b"\x00" + f.to_bytes(8, "little", signed=True) if type(f) is int else f
        row = bytes((len(fb),)) + fb
        if vb is not None:
            row += vb[extra * i : extra * i + extra]
        rows.append(row)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    return b"".join(rows), offsets


class _Scripts(_Connections):
    """Writes and joins of a :class:`~mlmon.stores.redis.RedisStore`, in script calls."""

    ttl: float
    retry_for: float
    generation: float
    key_prefix: str
    _ns: str
    _dropped: dict[str, int]

    def _shard_key(self, shard: int) -> str:
        """The key prefix of a shard: ``<prefix>:{<model>|<version>|<shard>}``."""
        return f"{self.key_prefix}:{{{self._ns}|{shard}}}"

    def _gens(self, times: FloatArray) -> IntArray:
        out: IntArray = np.floor(times / self.generation).astype(np.int64)
        return out

    def _write(
        self,
        preds: _Chunk,
        now: float,
        end: float,
        fired: threading.Event,
        counts: dict[str, int],
    ) -> tuple[_Chunk | None, bool]:
        """Write ``preds``; returns (what is left to write, success)."""
        fresh = preds.times >= now - self.ttl
        if not fresh.all():  # older than ttl already: would be expired on arrival
            stale = int((~fresh).sum())
            with self._lock:
                self._dropped["store_predictions"] += stale
            counts["dropped"] += stale
            preds = preds.take(np.flatnonzero(fresh))
        n = len(preds)
        pos = 0
        while pos < n:
            if fired.is_set() or time.monotonic() >= end:
                self._fail("write", TimeoutError(f"sync deadline of {self.deadline} s passed"))
                return preds.take(np.arange(pos, n, dtype=np.int64)), False
            stop = min(n, pos + _CHUNK_ROWS)
            part = preds.take(np.arange(pos, stop, dtype=np.int64))
            try:
                self._write_part(part)
            except Exception as exc:
                self._fail("write", exc)
                return preds.take(np.arange(pos, n, dtype=np.int64)), False
            pos = stop
        return None, True

    def _write_part(self, part: _Chunk) -> None:
        gens = self._gens(part.times)
        buckets = part.buckets
        shards = buckets % SHARDS
        order = np.lexsort((gens, buckets, shards))
        segmented = part.tags is not None and bool(part.tags.any())
        # Without a segment a value keeps the 16-byte format, which every version reads (the
        # script also stores the rows of segment 0 of a segmented part in 16 bytes).
        vals = np.empty(len(part), dtype=VALUE_DTYPE if segmented else VALUE16_DTYPE)
        vals["pred"] = part.values
        vals["made_at"] = part.times
        if segmented:
            vals["segment"] = part.tags
        vlen = vals.dtype.itemsize
        blob, offsets = _wire(part, order, vals.view(np.uint8).reshape(-1, vlen))
        s_o, b_o, g_o = shards[order], buckets[order], gens[order]
        cut = np.flatnonzero((np.diff(s_o) != 0) | (np.diff(b_o) != 0) | (np.diff(g_o) != 0)) + 1
        starts = np.concatenate(([0], cut)).astype(np.int64)
        stops = np.concatenate((cut, [len(order)])).astype(np.int64)
        expire = np.ceil(((g_o[starts] + 1) * self.generation + self.ttl) * 1000.0).astype(np.int64)
        calls: list[tuple[str, list[Any]]] = []
        keys: list[str] = []
        args: list[bytes] = []
        shard = int(s_o[0]) if len(order) else 0
        off = offsets.tolist()
        for st, sp, b, g, at in zip(
            starts.tolist(), stops.tolist(), b_o[starts].tolist(), g_o[starts].tolist(),
            expire.tolist(), strict=True,
        ):
            sh = b % SHARDS
            if sh != shard or len(keys) >= _MAX_SCRIPT_KEYS:
                if keys:
                    calls.append((keys[0], ["EVAL", _WRITE, len(keys), *keys, *args]))
                shard, keys, args = sh, [], []
            keys.append(f"{self._shard_key(sh)}:{b}:{g}")
            args.append(b"%d,%d " % (at, vlen) + blob[off[st] : off[sp]])
        if keys:
            calls.append((keys[0], ["EVAL", _WRITE, len(keys), *keys, *args]))
        results = self._run(calls)
        for r in results:
            if isinstance(r, Exception):
                raise r

    def _join(
        self,
        labels: _Chunk,
        now: float,
        end: float,
        fired: threading.Event,
        counts: dict[str, int],
        out_p: list[FloatArray],
        out_l: list[FloatArray],
        out_d: list[FloatArray],
        out_s: list[npt.NDArray[np.uint32]],
    ) -> tuple[_Chunk | None, bool]:
        """Join ``labels``; returns (labels to keep for a later sync, success)."""
        n = len(labels)
        retry: list[IntArray] = []
        pos = 0
        ok = True
        while pos < n:
            if fired.is_set() or time.monotonic() >= end:
                self._fail("read", TimeoutError(f"sync deadline of {self.deadline} s passed"))
                ok = False
                break
            stop = min(n, pos + _CHUNK_ROWS)
            idx = np.arange(pos, stop, dtype=np.int64)
            try:
                found = self._join_part(labels.take(idx), now)
            except Exception as exc:
                self._fail("read", exc)
                ok = False
                break
            values, done = found
            part_l = labels.values[idx]
            part_t = labels.times[idx]
            hit = np.flatnonzero(done == 1)
            if len(hit):
                rec = np.ascontiguousarray(values[hit]).view(VALUE_DTYPE).reshape(-1)
                made = rec["made_at"].astype(np.float64)
                delay = part_t[hit] - made
                fresh = delay <= self.ttl
                counts["expired"] += int((~fresh).sum())
                counts["joined"] += int(fresh.sum())
                out_p.append(rec["pred"][fresh].astype(np.float64))
                out_l.append(part_l[hit][fresh])
                out_d.append(np.maximum(delay[fresh], 0.0))
                out_s.append(rec["segment"][fresh].astype(np.uint32))
            counts["duplicate"] += int((done == 2).sum())
            failed = np.flatnonzero(done < 0)
            if len(failed):
                ok = False
                retry.append(idx[failed])
            missing = np.flatnonzero(done == 0)
            if len(missing):
                young = now - part_t[missing] < self.retry_for
                counts["unmatched"] += int((~young).sum())
                retry.append(idx[missing[young]])
            pos = stop
        if pos < n:
            retry.append(np.arange(pos, n, dtype=np.int64))
        if not retry:
            return None, ok
        keep = np.concatenate(retry)
        return (labels.take(keep) if len(keep) else None), ok

    def _probe_gens(self, now: float) -> list[int]:
        """Generations that may hold a joinable prediction, newest first (one of slack on
        each side for clocks that differ between hosts)."""
        hi = math.floor(now / self.generation) + 1
        lo = math.floor((now - self.ttl) / self.generation) - 1
        return list(range(hi, lo - 1, -1))

    def _join_part(
        self, part: _Chunk, now: float
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int8]]:
        """Per row: (20 value bytes, state) with state 0 not found, 1 claimed now or claimed
        before by this row's own token (value), 2 claimed before by another label (duplicate),
        -1 failed (retry)."""
        gens = ",".join(map(str, self._probe_gens(now)))
        buckets = part.buckets
        shards = buckets % SHARDS
        order = np.lexsort((buckets, shards))
        if part.tags is None:  # labels always carry tokens; a bug must not corrupt the wire
            raise RuntimeError("labels without claim tokens")
        tokens = part.tags[order].astype("<u8").tobytes()  # in the rows' order, 8 bytes each
        blob, offsets = _wire(part, order, None)
        s_o, b_o = shards[order], buckets[order]
        cut = np.flatnonzero((np.diff(s_o) != 0) | (np.diff(b_o) != 0)) + 1
        starts = np.concatenate(([0], cut)).astype(np.int64)
        stops = np.concatenate((cut, [len(order)])).astype(np.int64)
        calls: list[tuple[str, list[Any]]] = []
        ranges: list[tuple[int, int]] = []  # sorted-row range of each call
        args: list[Any] = []
        shard = int(s_o[0]) if len(order) else 0
        first = 0
        off = offsets.tolist()
        for st, sp, b in zip(starts.tolist(), stops.tolist(), b_o[starts].tolist(), strict=True):
            sh = b % SHARDS
            if sh != shard or len(args) >= _MAX_SCRIPT_KEYS:
                if args:
                    key = self._shard_key(shard)
                    calls.append((key, ["EVAL", _JOIN, 1, key, gens, *args]))
                    ranges.append((first, st))
                shard, args, first = sh, [], st
            args.append(
                b"%d/%d:" % (sp - st, b) + blob[off[st] : off[sp]] + tokens[TOKEN_BYTES * st : TOKEN_BYTES * sp]
            )
        if args:
            key = self._shard_key(shard)
            calls.append((key, ["EVAL", _JOIN, 1, key, gens, *args]))
            ranges.append((first, len(order)))
        results = self._run(calls)
        n = len(part)
        raw = np.zeros((n, REPLY_BYTES), dtype=np.uint8)
        failed = np.zeros(n, dtype=np.bool_)
        failure: Exception | None = None
        for (lo, hi), res in zip(ranges, results, strict=False):
            if (
                isinstance(res, Exception)
                or not isinstance(res, bytes)
                or len(res) != REPLY_BYTES * (hi - lo)
            ):
                failure = res if isinstance(res, Exception) else RuntimeError("bad script reply")
                failed[order[lo:hi]] = True
                continue
            raw[order[lo:hi]] = np.frombuffer(res, dtype=np.uint8).reshape(-1, REPLY_BYTES)
        state = np.zeros(n, dtype=np.int8)
        state[raw[:, 0] == ord("J")] = 1
        state[raw[:, 0] == ord("D")] = 2
        state[failed] = -1
        if failure is not None:
            # Successful calls are final (their claims happened); failed ones are retried.
            self._fail("read", failure)
        return raw[:, 1:], state
