"""The redis store's buffers: rows waiting for the next sync, bounded in bytes.

Used by :class:`~mlmon.stores.redis.RedisStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]

_ROW_BYTES = 32  # int field, bucket, value, time
_OBJ_BYTES = 56  # a bytes field object beyond its length, and its list slot


class _Chunk:
    """Buffered rows: fields (int64 array or list), buckets, values, times, and optional tags.

    ``tags`` is one unsigned integer per row or None: the segment code (uint32) of each
    prediction, or the claim token (uint64) of each label.
    """

    __slots__ = ("buckets", "fields", "nbytes", "tags", "times", "values")

    def __init__(
        self,
        fields: IntArray | list[Any],
        buckets: IntArray,
        values: FloatArray,
        times: FloatArray,
        nbytes: int | None = None,
        tags: npt.NDArray[Any] | None = None,
    ) -> None:
        self.fields = fields
        self.buckets = buckets
        self.values = values
        self.times = times
        self.tags = tags
        if nbytes is None:
            nbytes = len(buckets) * (_ROW_BYTES + (0 if tags is None else tags.itemsize))
            if isinstance(fields, list):
                nbytes += sum(len(f) + _OBJ_BYTES for f in fields if type(f) is bytes)
        self.nbytes = nbytes

    def __len__(self) -> int:
        return len(self.buckets)

    def take(self, idx: IntArray) -> _Chunk:
        """The rows ``idx``; their size in bytes is estimated pro rata."""
        n = len(self.buckets)
        if isinstance(self.fields, np.ndarray):
            fields: IntArray | list[Any] = self.fields[idx]
            nbytes = len(idx) * _ROW_BYTES
        else:
            fields = [self.fields[i] for i in idx.tolist()]
            nbytes = -(-self.nbytes * len(idx) // n) if n else 0
        if isinstance(self.fields, np.ndarray) and self.tags is not None:
            nbytes += len(idx) * self.tags.itemsize
        tags = None if self.tags is None else self.tags[idx]
        return _Chunk(fields, self.buckets[idx], self.values[idx], self.times[idx], nbytes, tags)

    def field_list(self) -> list[Any]:
        f = self.fields
        return f.tolist() if isinstance(f, np.ndarray) else f


def _concat(chunks: Sequence[_Chunk]) -> _Chunk:
    if len(chunks) == 1:
        return chunks[0]
    if all(isinstance(c.fields, np.ndarray) for c in chunks):
        fields: IntArray | list[Any] = np.concatenate([c.fields for c in chunks])
    else:
        fields = []
        for c in chunks:
            fields.extend(c.field_list())
    tagged = [c.tags for c in chunks if c.tags is not None]
    tags: npt.NDArray[Any] | None = None
    if tagged:  # rows without tags get 0 (no segment)
        dtype = np.result_type(*tagged)
        tags = np.concatenate(
            [np.zeros(len(c), dtype) if c.tags is None else c.tags.astype(dtype, copy=False) for c in chunks]
        )
    return _Chunk(
        fields,
        np.concatenate([c.buckets for c in chunks]),
        np.concatenate([c.values for c in chunks]),
        np.concatenate([c.times for c in chunks]),
        sum(c.nbytes for c in chunks),
        tags,
    )


class _Buffer:
    """A byte-bounded queue of chunks (callers hold the store's lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[_Chunk] = []
        self.nbytes = 0
        self.items = 0

    def add(self, chunk: _Chunk) -> int:
        """Append what fits (a prefix of ``chunk``); returns how many rows were dropped."""
        n = len(chunk)
        if n == 0:
            return 0
        room = self.limit - self.nbytes
        if chunk.nbytes > room:
            per = chunk.nbytes / n
            keep = max(0, min(n, int(room // per)))
            if keep == 0:
                return n
            chunk = chunk.take(np.arange(keep, dtype=np.int64))
        self.chunks.append(chunk)
        self.nbytes += chunk.nbytes
        self.items += len(chunk)
        return n - len(chunk)

    def requeue(self, chunk: _Chunk) -> int:
        """Put ``chunk`` back in front; drops its oldest rows when over the limit."""
        n = len(chunk)
        if n == 0:
            return 0
        room = self.limit - self.nbytes
        dropped = 0
        if chunk.nbytes > room:
            per = chunk.nbytes / n
            keep = max(0, min(n, int(room // per)))
            dropped = n - keep
            if keep == 0:
                return n
            chunk = chunk.take(np.arange(n - keep, n, dtype=np.int64))
        self.chunks.insert(0, chunk)
        self.nbytes += chunk.nbytes
        self.items += len(chunk)
        return dropped

    def take_all(self) -> list[_Chunk]:
        chunks, self.chunks = self.chunks, []
        self.nbytes = self.items = 0
        return chunks
