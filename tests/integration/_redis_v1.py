"""The shared store's Redis scripts as released before segments (16-byte values, the one-byte
tombstone "D"), verbatim: the "old process" of the rolling-upgrade tests. Do not edit them; they
stand for processes already deployed.

``v1_write`` and ``v1_join`` call them the way that release did (one bucket, one generation).
"""

from __future__ import annotations

import struct
from typing import Any

WRITE_V1 = """#!lua
local args = {}
for a = 1, #KEYS do
  local key = KEYS[a]
  local blob = ARGV[a]
  local s1 = string.find(blob, ' ', 1, true)
  local at = string.sub(blob, 1, s1 - 1)
  local pos, len, n = s1 + 1, #blob, 0
  while pos <= len do
    local l = string.byte(blob, pos)
    args[n + 1] = string.sub(blob, pos + 1, pos + l)
    args[n + 2] = string.sub(blob, pos + l + 1, pos + l + 16)
    n = n + 2
    pos = pos + l + 17
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
JOIN_V1 = """#!lua flags=allow-oom
local base = KEYS[1]
local gens = {}
for g in string.gmatch(ARGV[1], '[^,]+') do
  gens[#gens + 1] = g
end
local none = string.rep('\\0', 17)
local dup = 'D' .. string.rep('\\0', 16)
local out = {}
local fields = {}
for a = 2, #ARGV do
  local blob = ARGV[a]
  local c = string.find(blob, ':', 1, true)
  local prefix = base .. ':' .. string.sub(blob, 1, c) -- "<base>:<bucket>:"
  local pos, len, n = c + 1, #blob, 0
  while pos <= len do
    local l = string.byte(blob, pos)
    n = n + 1
    fields[n] = string.sub(blob, pos + 1, pos + l)
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
          if v and (v == 'D' or seen[f]) then
            res[j] = dup
          elseif v and #v == 16 then
            res[j] = 'J' .. v
            seen[f] = true
            claims[#claims + 1] = f
            claims[#claims + 1] = 'D'
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


def _row(field: int | bytes) -> bytes:
    fb = b"\x00" + field.to_bytes(8, "little", signed=True) if isinstance(field, int) else field
    return bytes((len(fb),)) + fb


def v1_write(client: Any, key: str, rows: list[tuple[int | bytes, float, float]], expire_ms: int) -> None:
    """Write ``(field, pred, made_at)`` rows into hash ``key`` as the old release did."""
    blob = b"".join(_row(f) + struct.pack("<dd", p, t) for f, p, t in rows)
    client.eval(WRITE_V1, 1, key, b"%d " % expire_ms + blob)


def v1_join(client: Any, shard_key: str, gens: list[int], bucket: int, fields: list[int | bytes]) -> list[tuple[str, bytes]]:
    """Join ``fields`` of one bucket as the old release did: per field ``("J", 16 value bytes)``,
    ``("D", ...)`` (duplicate) or ``("", ...)`` (not found)."""
    reply = client.eval(
        JOIN_V1, 1, shard_key, ",".join(map(str, gens)), b"%d:" % bucket + b"".join(_row(f) for f in fields)
    )
    assert len(reply) == 17 * len(fields)
    out = []
    for k in range(len(fields)):
        r = reply[17 * k : 17 * k + 17]
        out.append(({ord("J"): "J", ord("D"): "D"}.get(r[0], ""), r[1:]))
    return out
