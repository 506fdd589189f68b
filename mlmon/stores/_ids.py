"""Stable keys for prediction ids, the same in every process and on every host.

Python's ``hash()`` of a string is randomised per process, so a shared store cannot use it.
Each id becomes a *field*: the exact bytes that name it in Redis, and a *bucket*, a stable hash
of the field modulo the number of buckets.

- An integer in the int64 range (also numpy integers and bools) is kept as a Python int (or an
  int64 array for a whole batch); in Redis its field is ``b"\\x00"`` + its 8-byte little-endian
  two's complement. A float with an integral value is that integer, so ``7.0`` joins ``7`` as in
  the in-process store. Its bucket is splitmix64 of the value.
- A ``str`` is ``b"s"`` + its UTF-8 bytes, ``bytes`` are ``b"b"`` + the bytes, a non-integral
  float is ``b"f"`` + its shortest ``repr``, a larger integer ``b"i"`` + its decimal digits, a
  :class:`uuid.UUID` is its canonical string (so it joins ``str(uuid)``). Their bucket is the
  CRC-32 of the field.
- A field longer than :data:`DIGEST_OVER` bytes is replaced by ``b"h"`` + a 16-byte BLAKE2b
  digest of it, so every field stays short enough for Redis's compact hash encoding (the chance
  that two distinct long ids share a digest is negligible, about 2**-128 per pair).
- An id whose encoding is longer than :data:`MAX_ID_BYTES`, ``None``, NaN, infinities and any
  other type is unusable (None): counted ``invalid`` by the store, for that item alone.

>>> fields, buckets = encode_ids([7, 7.0, "7", b"7", None, 2.5], 64)
>>> fields
[7, 7, b's7', b'b7', None, b'f2.5']
>>> int(buckets[0]) == int(buckets[1]), int(buckets[4])
(True, -1)
"""

from __future__ import annotations

import hashlib
import math
import uuid
import zlib
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from mlmon.feedback import as_batch

__all__ = ["DIGEST_OVER", "MAX_ID_BYTES", "Field", "encode_ids", "int_buckets"]

IntArray: TypeAlias = npt.NDArray[np.int64]
Field: TypeAlias = "int | bytes"

MAX_ID_BYTES = 256
DIGEST_OVER = 40
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def int_buckets(keys: IntArray, n: int) -> IntArray:
    """Bucket of each int64 key: splitmix64's finaliser modulo ``n`` (stable everywhere).

    >>> int_buckets(np.array([0, 1, 2], dtype=np.int64), 1000).tolist()
    [0, 789, 730]
    """
    with np.errstate(over="ignore"):
        z = keys.astype(np.int64).view(np.uint64)
        z = (z ^ (z >> _S30)) * _C1
        z = (z ^ (z >> _S27)) * _C2
        z = z ^ (z >> _S31)
    out: IntArray = (z % np.uint64(n)).astype(np.int64)
    return out


def _bytes_field(prefix: bytes, raw: bytes) -> bytes | None:
    if len(raw) > MAX_ID_BYTES:
        return None
    field = prefix + raw
    if len(field) > DIGEST_OVER:
        return b"h" + hashlib.blake2b(field, digest_size=16).digest()
    return field


def _field(x: Any) -> int | bytes | None:
    """The field of one id, or None when unusable."""
    t = type(x)
    if t is int:
        return x if _I64_MIN <= x <= _I64_MAX else _bytes_field(b"i", str(x).encode())
    if t is str:
        try:
            raw = x.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            raw = x.encode("utf-8", "surrogatepass")
        return _bytes_field(b"s", raw)
    if t is bytes:
        return _bytes_field(b"b", x)
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_, int, np.integer)):
        return _field(int(x))
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if not math.isfinite(f):
            return None
        if f.is_integer() and -(2.0**63) <= f < 2.0**63:
            return int(f)
        return _bytes_field(b"f", repr(f).encode())
    if isinstance(x, uuid.UUID):
        return _field(str(x))
    if isinstance(x, str):
        return _field(str(x))
    if isinstance(x, (bytes, bytearray, memoryview)):
        return _field(bytes(x))
    return None


def _fast_ints(batch: Any) -> IntArray | None:
    """The batch as int64 keys when every id is an int64-range integer (no per-id work)."""
    if isinstance(batch, range):
        if len(batch) == 0 or (
            min(batch[0], batch[-1]) >= _I64_MIN and max(batch[0], batch[-1]) <= _I64_MAX
        ):
            return np.arange(batch.start, batch.stop, batch.step, dtype=np.int64)
        return None
    if isinstance(batch, np.ndarray):
        kind = batch.dtype.kind
        if kind in "ib" or (kind == "u" and (batch.size == 0 or int(batch.max()) <= _I64_MAX)):
            return batch.astype(np.int64)
        if kind == "f":
            f = batch.astype(np.float64)
            with np.errstate(invalid="ignore"):
                exact = np.isfinite(f) & (f == np.floor(f)) & (np.abs(f) < 2.0**63)
            if exact.all():
                return f.astype(np.int64)
        return None
    if batch and all(type(x) is int for x in batch):
        try:
            return np.array(batch, dtype=np.int64)
        except OverflowError:
            return None
    return None


def encode_ids(ids: object, n: int) -> tuple[IntArray | list[int | bytes | None], IntArray]:
    """Fields and buckets (``-1`` for an unusable id) of a batch of ids.

    Returns an int64 array of fields when every id is an integer (the fast path), else a list
    with one field (or None) per id.
    """
    batch = as_batch(ids)
    keys = _fast_ints(batch)
    if keys is not None:
        return keys, int_buckets(keys, n)
    items = batch.tolist() if isinstance(batch, np.ndarray) else list(batch)
    fields = [_field(x) for x in items]
    buckets = np.full(len(fields), -1, dtype=np.int64)
    int_pos = [i for i, f in enumerate(fields) if type(f) is int]
    if int_pos:
        ints = np.array([fields[i] for i in int_pos], dtype=np.int64)
        buckets[int_pos] = int_buckets(ints, n)
    for i, f in enumerate(fields):
        if type(f) is bytes:
            buckets[i] = zlib.crc32(f) % n
    return fields, buckets
