"""Accumulators to JSON-able values and back, strictly.

A window accumulator (a class with ``__slots__``, ``merge()`` and ``reset()``) holds ints,
floats, bools, numpy arrays of fixed shape, small dicts of name → number, short lists of floats
(pending delays) and nested accumulators. :func:`encode` walks its slots; :func:`decode_into`
fills a *fresh* accumulator made by the reader's own factory, and accepts a value only where the
fresh one has the same kind of value: same array dtype and shape, an int where an int is, a dict
of numbers where a dict is. So a state written by another configuration, another version of
mlmon or a corrupt writer is rejected (:class:`StateError`) instead of being merged into
garbage; nothing in a state is ever executed or imported (no pickle).
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["MAX_ARRAY", "StateError", "decode_into", "decode_value", "encode", "encode_value"]

MAX_ARRAY = 1 << 22
"""Most elements of one array in a state (an optional array, such as a sketch's negative half,
has no shape to compare with)."""
MAX_KEYS = 4096
MAX_LIST = 1 << 16
MAX_KEY_LEN = 256
MAX_INT = 1 << 63
_DTYPES = {"i8": np.dtype(np.int64), "f8": np.dtype(np.float64), "b1": np.dtype(np.bool_)}
_LE = {code: dt.newbyteorder("<") for code, dt in _DTYPES.items()}
_SKIP = frozenset({"schema", "_scratch"})
"""Slots that hold configuration or scratch space, never state."""
_EQUAL = frozenset({"rel_error", "min_value", "max_value", "_lg", "_offset", "n_classes", "timed"})
"""Slots that are parameters: a state must have the reader's values exactly."""


class StateError(ValueError):
    """A state that cannot be merged: wrong shape, type, size or version (the reason says which)."""


_TABLE = threading.local()
"""The raw arrays of the state being written or read: arrays go into the state as indices into
this table (``{"$b": ...}``), so that a state is a small JSON header plus raw bytes, with no
base64 and no parsing of numbers. Outside :func:`arrays`, arrays are written as base64."""


@contextmanager
def arrays(table: list[Any]) -> Iterator[list[Any]]:
    """Write arrays into ``table`` (encoding), or read them from it (decoding), in this block."""
    old = getattr(_TABLE, "table", None)
    _TABLE.table = table
    try:
        yield table
    finally:
        _TABLE.table = old


def _put(raw: bytes) -> int | str:
    table = getattr(_TABLE, "table", None)
    if table is None:
        return base64.b64encode(raw).decode("ascii")
    table.append(raw)
    return len(table) - 1


def _get(ref: Any, where: str) -> bytes | memoryview:
    if isinstance(ref, str):
        return _unb64(ref, where)
    table = getattr(_TABLE, "table", None)
    if table is None or isinstance(ref, bool) or not isinstance(ref, int) or not 0 <= ref < len(table):
        raise StateError(f"{where}: bad array reference")
    out: bytes | memoryview = table[ref]
    return out


_SLOTS: dict[type, list[str]] = {}


def _slots(obj: object) -> list[str]:
    cls = type(obj)
    names = _SLOTS.get(cls)
    if names is None:
        names = []
        for c in cls.__mro__:
            for s in getattr(c, "__slots__", ()):
                if s not in names and s not in _SKIP and s != "__weakref__":
                    names.append(s)
        _SLOTS[cls] = names
    return names


def _dtype_code(a: np.ndarray[Any, Any]) -> str:
    for code, dt in _DTYPES.items():
        if a.dtype == dt:
            return code
    raise StateError(f"cannot encode an array of dtype {a.dtype}")


def encode_value(v: Any) -> Any:
    """One value of a state as JSON-able data (see the module docstring for what is allowed)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        code = _dtype_code(a)
        if code in ("i8", "f8") and a.size >= 64:
            nz = np.flatnonzero(a)
            if nz.size * 3 < a.size:  # mostly zeros (a sketch's buckets): indices and values
                vals = a.ravel()[nz].astype("<" + code)
                return {"$s": [code, list(a.shape), _put(nz.astype("<i4").tobytes()), _put(vals.tobytes())]}
        return {"$a": [code, list(a.shape), _put(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())]}
    if isinstance(v, dict):
        return {"$d": [[str(k), encode_value(x)] for k, x in v.items()]}
    if isinstance(v, (list, tuple)):
        return {"$l": [float(x) for x in v]}
    if hasattr(type(v), "__slots__"):
        return encode(v)
    raise StateError(f"cannot encode a {type(v).__name__}")


def encode(acc: object) -> dict[str, Any]:
    """An accumulator's slots as JSON-able data."""
    return {"$o": {name: encode_value(getattr(acc, name, None)) for name in _slots(acc)}}


def _b64(a: np.ndarray[Any, Any]) -> str:
    return base64.b64encode(a.tobytes()).decode("ascii")


def _unb64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise StateError(f"{where}: malformed array")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except Exception as exc:
        raise StateError(f"{where}: bad array data") from exc


def _number(v: Any, where: str, *, integer: bool) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise StateError(f"{where}: expected a number, got {type(v).__name__}")
    if integer:
        if not isinstance(v, int) or abs(v) >= MAX_INT:
            raise StateError(f"{where}: expected an int64, got {v!r}")
        return v
    f = float(v)
    if math.isnan(f):
        raise StateError(f"{where}: NaN")
    return f


def _array(data: Any, where: str, like: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
    if not (isinstance(data, dict) and len(data) == 1):
        raise StateError(f"{where}: expected an array")
    sparse = "$s" in data
    spec = data.get("$s") if sparse else data.get("$a")
    if not (
        isinstance(spec, list)
        and len(spec) == (4 if sparse else 3)
        and spec[0] in _DTYPES
        and isinstance(spec[1], list)
        and len(spec[1]) <= 4
    ):
        raise StateError(f"{where}: malformed array")
    dt = _DTYPES[spec[0]]
    shape = spec[1]
    if like is not None:  # the common case: the reader's own array says what to expect
        if like.dtype != dt or list(like.shape) != shape:
            raise StateError(f"{where}: expected {like.dtype}{list(like.shape)}, got {dt}{shape}")
        size = int(like.size)
    else:
        if not all(type(n) is int and 0 <= n <= MAX_ARRAY for n in shape):
            raise StateError(f"{where}: bad shape {shape!r}")
        size = math.prod(shape)
    if size > MAX_ARRAY:
        raise StateError(f"{where}: array of {size} elements is too large")
    out: np.ndarray[Any, Any]
    if sparse:
        if dt.kind not in "if":
            raise StateError(f"{where}: malformed array")
        idx_raw, val_raw = _get(spec[2], where), _get(spec[3], where)
        if len(idx_raw) % 4 or len(val_raw) != 2 * len(idx_raw):
            raise StateError(f"{where}: sparse array data of mismatched lengths")
        idx = np.frombuffer(idx_raw, dtype="<i4")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= size):
            raise StateError(f"{where}: sparse index out of range")
        out = np.zeros(size, dtype=dt)
        vals = np.frombuffer(val_raw, dtype=dt.newbyteorder("<"))
        if dt.kind == "f" and np.isnan(vals).any():
            raise StateError(f"{where}: NaN in an array")
        out[idx] = vals
        return out.reshape(shape)
    raw = _get(spec[2], where)
    if len(raw) != size * dt.itemsize:
        raise StateError(f"{where}: array data of {len(raw)} bytes for {size} elements")
    out = np.frombuffer(raw, dtype=_LE[spec[0]]).reshape(shape).astype(dt)
    if dt.kind == "f" and np.isnan(out).any():
        raise StateError(f"{where}: NaN in an array")
    return out


def decode_value(data: Any, like: Any, where: str) -> Any:
    """A value of the same kind as ``like`` (the fresh accumulator's) from ``data``."""
    t = type(like)  # the common kinds first, by exact type
    if t is np.ndarray:
        return _array(data, where, like)
    if t is int:
        if type(data) is not int or not -MAX_INT < data < MAX_INT:
            raise StateError(f"{where}: expected an int64, got {data!r}"[:200])
        return data
    if t is float:
        if type(data) is float:
            if data != data:
                raise StateError(f"{where}: NaN")
            return data
        return _number(data, where, integer=False)
    if isinstance(like, bool):
        if not isinstance(data, bool):
            raise StateError(f"{where}: expected a bool")
        return data
    if isinstance(like, (int, np.integer)):
        return _number(data, where, integer=True)
    if isinstance(like, (float, np.floating)):
        return _number(data, where, integer=False)
    if isinstance(like, np.ndarray):
        return _array(data, where, like)
    if isinstance(like, dict):
        if not (isinstance(data, dict) and set(data) == {"$d"} and isinstance(data["$d"], list)):
            raise StateError(f"{where}: expected a mapping")
        items = data["$d"]
        if len(items) > MAX_KEYS:
            raise StateError(f"{where}: {len(items)} keys is too many")
        out: dict[str, Any] = {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise StateError(f"{where}: malformed mapping")
            key = item[0]
            if len(key) > MAX_KEY_LEN:
                raise StateError(f"{where}: key too long")
            value = item[1]
            integer = isinstance(value, int) and not isinstance(value, bool)
            out[key] = _number(value, f"{where}[{key!r}]", integer=integer)
        return out
    if isinstance(like, list):
        if not (isinstance(data, dict) and set(data) == {"$l"} and isinstance(data["$l"], list)):
            raise StateError(f"{where}: expected a list")
        if len(data["$l"]) > MAX_LIST:
            raise StateError(f"{where}: list too long")
        return [_number(x, where, integer=False) for x in data["$l"]]
    if like is None:
        if data is None:
            return None
        return _array(data, where, None)  # an optional array (a sketch's negative half)
    if hasattr(type(like), "__slots__"):
        decode_into(like, data, where)
        return like
    if isinstance(like, str):
        if not isinstance(data, str) or len(data) > MAX_KEY_LEN:
            raise StateError(f"{where}: expected a short string")
        return data
    raise StateError(f"{where}: cannot decode into a {type(like).__name__}")


def decode_into(acc: object, data: Any, where: str = "state") -> None:
    """Fill the fresh accumulator ``acc`` from :func:`encode`'s output (strictly: every slot
    must be present and of the same kind as ``acc``'s)."""
    if not (isinstance(data, dict) and set(data) == {"$o"} and isinstance(data["$o"], dict)):
        raise StateError(f"{where}: expected an accumulator")
    fields = data["$o"]
    names = _slots(acc)
    if set(fields) != set(names):
        missing = sorted(set(names) - set(fields))
        extra = sorted(set(fields) - set(names))
        raise StateError(f"{where}: fields differ (missing {missing}, unexpected {extra})")
    for name in names:
        like = getattr(acc, name)
        value = decode_value(fields[name], like, f"{where}.{name}")
        if name in _EQUAL and value != like:
            raise StateError(f"{where}.{name}: {value!r} where this process has {like!r}")
        setattr(acc, name, value)
