"""A process's window as one compact, versioned value, and the exact merge of many of them.

Each process's parts (service, outputs, quality, outcomes, features) keep rolling windows of
mergeable accumulators and cumulative counters. :func:`export_state` writes the *merged* window
of every part (one accumulator per part, not its slices), the seconds it covers, the cumulative
counters and the calls in flight: a small JSON header and the raw arrays it refers to,
zlib-compressed (:func:`pack_state`). :func:`merge_states` reads any number
of such states into *fresh* parts built from the reading monitor's own configuration, merges
them with the same ``merge()`` the windows use, and asks those parts for their samples: the
fleet's precision, PSI, variance and the rest are computed on the merged counts, never averaged.
Counts, confusion matrices and bins merge exactly; latency and output quantiles within the
sketch's 1% relative error; means and variances exactly up to float rounding (Chan's update).

What a state is not: it holds no prediction ids and no raw values, and nothing in it is executed
(no pickle). Reading is strict (:mod:`mlmon.fleet._codec`): a state of another format version,
another configuration (task, window, features, reference), or a corrupt or truncated one is
rejected with a reason, and counted by the caller.

Rates (``mlmon_calls_per_second`` and the like) divide the fleet's counts by the longest window
coverage among the states: exact for processes that have run a whole window, an underestimate
by at most a new process's share while it warms up.

>>> import mlmon
>>> from mlmon.testing import FakeClock
>>> clock = FakeClock()
>>> a = mlmon.Monitor("m", emitters=[], clock=clock, instance="a")
>>> b = mlmon.Monitor("m", emitters=[], clock=clock, instance="b")
>>> for mon, n in ((a, 3), (b, 5)):
...     predict = mon.track(lambda x: x * 0.1)
...     for i in range(n):
...         _ = predict(i)
>>> fleet = merge_states(a, [a.fleet_state(), b.fleet_state()])
>>> fleet.snapshot.instance, fleet.snapshot.get("mlmon_calls_total"), fleet.merged
('fleet', 8.0, 2)
>>> a.close(); b.close()
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from mlmon._component import Triple
from mlmon.fleet._codec import StateError, arrays, decode_into, decode_value, encode, encode_value
from mlmon.snapshot import Snapshot, samples_from

if TYPE_CHECKING:
    pass

__all__ = [
    "MAX_STATE_BYTES",
    "STATE_VERSION",
    "FleetMerge",
    "Parts",
    "StateError",
    "combine_states",
    "export_state",
    "merge_states",
    "read_state",
    "retire_state",
]

STATE_VERSION = 3
"""The format of a state. A reader rejects any other (reason ``"version"``)."""
MAX_STATE_BYTES = 16 << 20
"""Largest state accepted, decompressed (reason ``"size"`` beyond it)."""
_MAGIC = b"MLM2"
_OLD_MAGIC = (b"MLMS",)  # format 1: zlib-compressed JSON with base64 arrays
_U32 = struct.Struct("<I")
MAX_ERROR_TYPES = 64


class Parts(Protocol):
    """What a state is read from and written to: a monitor, or a fresh set of its parts."""

    name: str
    version: str | None

    def _state_parts(self) -> tuple[Any, ...]:
        """service, outputs, quality, outcomes, features and (optional) segment parts."""
        ...  # pragma: no cover

    def _fresh_parts(self) -> tuple[Any, ...]: ...  # pragma: no cover

    def _state_config(self) -> str: ...  # pragma: no cover

    @property
    def window(self) -> float: ...  # pragma: no cover


# -- windows frozen at their merged value ---------------------------------------------------


class _Frozen:
    """Stands in for a RollingWindow in a fleet's parts: the merged value, and its coverage."""

    __slots__ = ("_factory", "acc", "cover")

    def __init__(self, factory: Callable[[], Any], acc: Any, cover: float) -> None:
        self._factory = factory
        self.acc = acc
        self.cover = cover

    def merged(self, now: float) -> Any:
        return self.acc

    def covered(self, now: float) -> float:
        return max(self.cover, 1e-9)

    def current(self, now: float) -> Any:  # a fleet's parts take no new data
        return self._factory()

    def reset(self) -> None:
        self.acc.reset()


class _JoinView:
    """The label join's counters summed over processes, where a fleet's quality part reads them."""

    def __init__(self) -> None:
        self.joined = self.unmatched = self.expired = self.duplicate = 0
        self.evicted = self.invalid = 0
        self.pending_n = 0
        self.labelled_n = 0

    def pending(self, now: float) -> int:
        return self.pending_n

    def labelled_since(self, t: float) -> int:
        return self.labelled_n

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


_JOIN_FIELDS = ("joined", "unmatched", "expired", "duplicate", "evicted", "invalid")


def _window_state(window: Any, now: float) -> dict[str, Any] | None:
    if window is None:
        return None
    return {"acc": encode(window.merged(now)), "covered": float(window.covered(now))}


def _add_dict(into: dict[str, Any], more: Mapping[str, Any], cap: int, other: str | None) -> int:
    """Add ``more`` into ``into`` key by key; keys beyond ``cap`` go to ``other`` (or are
    dropped when None). Returns how much was dropped."""
    dropped = 0
    for k, v in more.items():
        if k not in into and len(into) >= cap:
            if other is None:
                dropped += int(v)
                continue
            k = other
        into[k] = into.get(k, 0) + v
    return dropped


# -- export ------------------------------------------------------------------------------------


def _export_parts(parts: tuple[Any, ...], now: float) -> dict[str, Any]:
    svc, outs, qual, outc, feat = parts[:5]
    n_inflight, oldest = svc._inflight() if svc._inflight is not None else (0, 0.0)
    service = {
        "window": _window_state(svc._window, now),
        "streams": _window_state(svc._streams, now),
        "totals": {
            "calls_total": svc.calls_total,
            "rows_total": svc.rows_total,
            "slow_total": svc.slow_total,
            "errors_total": encode_value(svc.errors_total),
            "le_counts": encode_value(svc._le_counts),
            "lat_sum": float(svc._lat_sum),
            "stream_items_total": svc.stream_items_total,
        },
        "inflight": [int(n_inflight), float(oldest)],
    }
    out = {
        "service": service,
        "outputs": _export_outputs(outs, now),
        "quality": _export_quality(qual, now),
        "outcomes": _export_outcomes(outc, now),
        "features": _export_features(feat, now),
    }
    if len(parts) > 5 and parts[5] is not None and parts[5].tracked():
        out["segments"] = _export_segments(parts[5], now)
    return out


def _export_segments(segs: Any, now: float) -> dict[str, Any]:
    listed = []
    for seg in segs._segs.values():
        listed.append({
            "name": seg.name,
            "counts": _window_state(seg.counts, now),
            "totals": {"calls": seg.calls_total, "rows": seg.rows_total, "errors": encode_value(seg.errors_total)},
            "own_reference": seg.own_reference,
            "outputs": _export_outputs(seg.outputs, now),
            "quality": _export_quality(seg.quality, now),
            "outcomes": _export_outcomes(seg.outcomes, now),
            "features": _export_features(seg.features, now),
        })  # fmt: skip
    return {
        "list": listed,
        "totals": [int(segs.overflow_rows), int(segs.invalid_rows), int(segs.evictions)],
    }


def _export_outputs(outs: Any, now: float) -> dict[str, Any]:
    return {
        "window": _window_state(outs._window, now),
        "totals": {"invalid_total": outs.invalid_total, "bin_totals": encode_value(outs.bin_totals)},
    }


def _export_quality(qual: Any, now: float) -> dict[str, Any]:
    store = qual.store
    _, covered = qual._rows(now) if qual._rows is not None else (0, 0.0)
    return {
        "window": _window_state(qual._labels, now),
        "totals": {
            "totals": encode(qual._totals),
            "shared_counts": encode_value(qual.shared_counts),
            "unjoinable": qual.unjoinable,
            "join": [int(getattr(store, f)) for f in _JOIN_FIELDS],
            "pending": int(store.pending(now)),
            "labelled": int(store.labelled_since(now - covered)),
        },
    }


def _export_outcomes(outc: Any, now: float) -> dict[str, Any]:
    return {
        "window": _window_state(outc._window, now),
        "totals": {"totals": encode_value(outc.totals), "dropped": outc.dropped},
    }


def _export_features(feat: Any, now: float) -> dict[str, Any]:
    schema = feat.schema
    with feat._lock:
        return {
            "schema": None if schema is None else [list(schema.names), list(schema.categorical_names)],
            "window": _window_state(feat._window, now),
            "totals": {
                "invalid_rows": feat.invalid_rows,
                "unknown_keys": feat.unknown_keys,
                "errors": feat.errors,
                "seen": bool(feat._seen),
                "cells": None if schema is None else [encode_value(t) for t in feat._cells_total],
            },
        }


def pack_state(doc: Mapping[str, Any], table: Sequence[bytes | memoryview] | None = None) -> bytes:
    """A state's bytes: ``MLM2``, then zlib of a 4-byte header length, the JSON header (with the
    lengths of the raw arrays in ``"$lens"``) and the raw arrays (little-endian) it refers to."""
    if table is None:
        table = doc.get("$table", [])
    head = {k: v for k, v in doc.items() if k != "$table"}
    head["$lens"] = [len(b) for b in table]
    header = json.dumps(head, separators=(",", ":")).encode()
    return _MAGIC + zlib.compress(b"".join([_U32.pack(len(header)), header, *table]), 1)


def export_state(monitor: Parts, *, now: float, wall: float, instance: str) -> bytes:
    """The state of ``monitor``'s parts at ``now`` (its monotonic clock) as bytes.

    The caller has drained the buffers and holds the drain lock (``Monitor.fleet_state()``
    does both).
    """
    return _write(monitor, monitor._state_parts(), now, wall, instance)


def _write(monitor: Parts, parts: tuple[Any, ...], now: float, wall: float, instance: str) -> bytes:
    doc: dict[str, Any] = {
        "v": STATE_VERSION,
        "model": monitor.name,
        "version": monitor.version,
        "instance": instance,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "wall": float(wall),
        "window": float(monitor.window),
        "config": monitor._state_config(),
    }
    with arrays([]) as table:
        doc["parts"] = _export_parts(parts, now)
    return pack_state(doc, table)


# -- read -----------------------------------------------------------------------------------


def read_state(blob: bytes, *, max_bytes: int = MAX_STATE_BYTES) -> dict[str, Any]:
    """The header and parts of a state, checked for format and size (not yet for shape).

    Raises:
        StateError: with ``.reason`` one of ``"corrupt"``, ``"size"``, ``"version"``.
    """
    if isinstance(blob, (bytes, bytearray, memoryview)) and bytes(blob[:4]) in _OLD_MAGIC:
        raise _err("version", f"state format 1, this mlmon reads {STATE_VERSION}")
    if not isinstance(blob, (bytes, bytearray, memoryview)) or bytes(blob[:4]) != _MAGIC:
        raise _err("corrupt", "not an mlmon state")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(bytes(blob[4:]), max_bytes + 1)
    except zlib.error as exc:
        raise _err("corrupt", f"bad compression: {exc}") from None
    if len(raw) > max_bytes or d.unconsumed_tail:
        raise _err("size", f"state larger than {max_bytes} bytes")
    if not d.eof:
        raise _err("corrupt", "truncated state")
    if len(raw) < 4:
        raise _err("corrupt", "truncated state")
    (hlen,) = _U32.unpack_from(raw, 0)
    if 4 + hlen > len(raw):
        raise _err("corrupt", "truncated state header")
    try:
        doc = json.loads(raw[4 : 4 + hlen])
    except (ValueError, RecursionError) as exc:
        raise _err("corrupt", f"bad JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise _err("corrupt", "not a mapping")
    lens = doc.pop("$lens", None)
    if not (isinstance(lens, list) and all(type(n) is int and n >= 0 for n in lens)):
        raise _err("corrupt", "bad array table")
    if sum(lens) != len(raw) - 4 - hlen:
        raise _err("corrupt", "array table does not match the data")
    view = memoryview(raw)
    table: list[memoryview] = []
    off = 4 + hlen
    for n in lens:
        table.append(view[off : off + n])
        off += n
    doc["$table"] = table
    if doc.get("v") != STATE_VERSION:
        raise _err("version", f"state format {doc.get('v')!r}, this mlmon reads {STATE_VERSION}")
    for key, kinds in (("model", str), ("instance", str), ("config", str), ("parts", dict)):
        if not isinstance(doc.get(key), kinds):
            raise _err("corrupt", f"missing {key}")
    wall = doc.get("wall")
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall):
        raise _err("corrupt", "bad wall time")
    return doc


def _err(reason: str, text: str) -> StateError:
    e = StateError(text)
    e.reason = reason  # type: ignore[attr-defined]
    return e


def reason_of(exc: BaseException) -> str:
    """The counted reason of a rejected state."""
    return str(getattr(exc, "reason", "corrupt"))


# -- load into fresh parts --------------------------------------------------------------------


class _Loader:
    """Fresh parts of a monitor, turned into the merge of many states."""

    def __init__(self, monitor: Parts) -> None:
        self.monitor = monitor
        self.parts = monitor._fresh_parts()
        self.segments: Any = self.parts[5] if len(self.parts) > 5 else None
        feat = self.parts[4]
        self.config = monitor._state_config()
        self.windows: dict[str, tuple[Callable[[], Any], Any | None, float]] = {}
        self.inflight: list[float] = [0, 0.0]
        self.join = _JoinView()
        self.feature_schema: list[Any] | None = (
            None if feat.schema is None else [list(feat.schema.names), list(feat.schema.categorical_names)]
        )
        self.merged = 0

    # Each ``_load_*`` decodes into new objects and only then adds: a state that fails halfway
    # leaves the merge untouched.
    def add(self, doc: Mapping[str, Any]) -> None:
        if doc.get("model") != self.monitor.name or doc.get("version") != self.monitor.version:
            raise _err("model", "a state of another model or version")
        if doc["config"] != self.config:
            raise _err("config", "a state of a differently configured monitor")
        parts = doc["parts"]
        try:
            with arrays(doc.get("$table", [])):
                staged = self._stage_all(parts)
        except StateError as exc:
            raise _err("corrupt", str(exc)) from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise _err("corrupt", f"malformed state: {type(exc).__name__}: {str(exc)[:80]}") from None
        for apply in staged:
            apply()
        self.merged += 1

    def _stage_all(self, parts: Mapping[str, Any]) -> list[Callable[[], None]]:
        staged = [
            self._stage_service(parts["service"]),
            self._stage_outputs(parts["outputs"]),
            self._stage_quality(parts["quality"]),
            self._stage_outcomes(parts["outcomes"]),
            self._stage_features(parts["features"]),
        ]
        if "segments" in parts and self.segments is not None:
            staged.extend(self._stage_segments(parts["segments"]))
        return staged

    def _stage_segments(self, data: Mapping[str, Any]) -> list[Callable[[], None]]:
        """Each segment of a state into the fleet's segment of that name (past the fleet's
        cap: into the overflow segment, whose windows merge the same way)."""
        from mlmon.segments import OVERFLOW, segment_name

        segs = self.segments
        listed = data["list"]
        totals = data["totals"]
        if not (isinstance(listed, list) and isinstance(totals, list) and len(totals) == 3):
            raise StateError("segments: malformed")
        if len(listed) > 4 * segs.max_segments + 1:
            raise StateError("segments: more segments than any monitor keeps")
        over, invalid, evictions = (decode_value(v, 0, "segments.totals") for v in totals)
        staged: list[Callable[[], None]] = []
        seen: set[str] = set()
        for item in listed:
            name = item["name"]
            if not isinstance(name, str) or name in seen or (name != OVERFLOW and segment_name(name) != name):
                raise StateError("segments: bad segment name")
            seen.add(name)
            if name not in segs._segs and name != OVERFLOW and len(segs._segs) - (OVERFLOW in segs._segs) >= segs.max_segments:
                staged.append(self._fold(segs, decode_value(item["totals"]["rows"], 0, "segments.rows")))
                name = OVERFLOW
            seg = segs._segs.get(name) or segs._new(name, 0.0)
            staged.extend(self._stage_segment(seg, item))

        def apply() -> None:
            segs.overflow_rows += over
            segs.invalid_rows += invalid
            segs.evictions += evictions

        staged.append(apply)
        return staged

    @staticmethod
    def _fold(segs: Any, rows: int) -> Callable[[], None]:
        """A segment past the fleet's cap: its rows count as overflow rows."""

        def apply() -> None:
            segs.overflow_rows += rows

        return apply

    def _stage_segment(self, seg: Any, item: Mapping[str, Any]) -> list[Callable[[], None]]:
        key = f"segment:{seg.name}:"
        counts = self._stage_window(key + "counts", seg.counts._factory, item["counts"])
        t = item["totals"]
        calls = decode_value(t["calls"], 0, "segment.calls")
        rows = decode_value(t["rows"], 0, "segment.rows")
        errors = decode_value(t["errors"], {}, "segment.errors")
        own = item.get("own_reference")
        if own is not None and not isinstance(own, bool):
            raise StateError("segment.own_reference: malformed")

        def apply() -> None:
            counts()
            seg.calls_total += calls
            seg.rows_total += rows
            _add_dict(seg.errors_total, errors, MAX_ERROR_TYPES, "other")

        return [
            apply,
            self._stage_outputs(item["outputs"], seg.outputs, key + "outputs"),
            self._stage_quality(item["quality"], seg.quality, key + "quality", count_join=False),
            self._stage_outcomes(item["outcomes"], seg.outcomes, key + "outcomes"),
            self._stage_features(item["features"], seg.features, key + "features"),
        ]

    def _stage_window(self, key: str, factory: Callable[[], Any], data: Any) -> Callable[[], None]:
        if data is None:
            return lambda: None
        if not isinstance(data, dict):
            raise StateError(f"{key}: expected a window")
        acc = factory()
        decode_into(acc, data["acc"], key)
        cover = decode_value(data["covered"], 0.0, f"{key}.covered")
        if not 0.0 <= cover < math.inf:
            raise StateError(f"{key}: bad coverage {cover!r}")

        def apply() -> None:
            old = self.windows.get(key)
            if old is None or old[1] is None:
                self.windows[key] = (factory, acc, cover)
            else:
                old[1].merge(acc)
                self.windows[key] = (factory, old[1], max(old[2], cover))

        return apply

    def _stage_service(self, data: Mapping[str, Any]) -> Callable[[], None]:
        from mlmon.service import _StreamSlice

        svc = self.parts[0]
        w = self._stage_window("service", svc._window._factory, data["window"])
        s = self._stage_window("streams", _StreamSlice, data["streams"])
        t = data["totals"]
        calls = decode_value(t["calls_total"], 0, "calls_total")
        rows = decode_value(t["rows_total"], 0, "rows_total")
        slow = decode_value(t["slow_total"], 0, "slow_total")
        errors = decode_value(t["errors_total"], {}, "errors_total")
        le = decode_value(t["le_counts"], svc._le_counts, "le_counts")
        lat = decode_value(t["lat_sum"], 0.0, "lat_sum")
        items = decode_value(t["stream_items_total"], 0, "stream_items_total")
        n_if = decode_value(data["inflight"][0], 0, "inflight")
        old_if = decode_value(data["inflight"][1], 0.0, "inflight")

        def apply() -> None:
            w()
            s()
            svc.calls_total += calls
            svc.rows_total += rows
            svc.slow_total += slow
            _add_dict(svc.errors_total, errors, MAX_ERROR_TYPES, "other")
            svc._le_counts += le
            svc._lat_sum += lat
            svc.stream_items_total += items
            self.inflight[0] += n_if
            self.inflight[1] = max(self.inflight[1], old_if)

        return apply

    def _stage_outputs(self, data: Mapping[str, Any], outs: Any = None, key: str = "outputs") -> Callable[[], None]:
        outs = self.parts[1] if outs is None else outs
        w = self._stage_window(key, outs._window._factory, data["window"])
        t = data["totals"]
        invalid = decode_value(t["invalid_total"], 0, "invalid_total")
        bins = decode_value(t["bin_totals"], outs.bin_totals, "bin_totals")

        def apply() -> None:
            w()
            outs.invalid_total += invalid
            outs.bin_totals += bins

        return apply

    def _stage_quality(
        self, data: Mapping[str, Any], qual: Any = None, key: str = "quality", count_join: bool = True
    ) -> Callable[[], None]:
        qual = self.parts[2] if qual is None else qual
        w = self._stage_window(key, qual._labels._factory, data["window"])
        t = data["totals"]
        totals = type(qual._totals)(qual.task, timed=False)
        decode_into(totals, t["totals"], "quality.totals")
        shared = decode_value(t["shared_counts"], {}, "shared_counts")
        unjoinable = decode_value(t["unjoinable"], 0, "unjoinable")
        join = t["join"]
        if not (isinstance(join, list) and len(join) == len(_JOIN_FIELDS)):
            raise StateError("quality.join: malformed")
        counts = [decode_value(v, 0, "quality.join") for v in join]
        pending = decode_value(t["pending"], 0, "pending")
        labelled = decode_value(t["labelled"], 0, "labelled")

        def apply() -> None:
            w()
            qual._totals.merge(totals)
            _add_dict(qual.shared_counts, shared, 64, None)
            qual.unjoinable += unjoinable
            if not count_join:
                return
            for f, c in zip(_JOIN_FIELDS, counts, strict=True):
                setattr(self.join, f, getattr(self.join, f) + c)
            self.join.pending_n += pending
            self.join.labelled_n += labelled

        return apply

    def _stage_outcomes(self, data: Mapping[str, Any], outc: Any = None, key: str = "outcomes") -> Callable[[], None]:
        outc = self.parts[3] if outc is None else outc
        w = self._stage_window(key, outc._window._factory, data["window"])
        t = data["totals"]
        totals = decode_value(t["totals"], {}, "outcomes.totals")
        dropped = decode_value(t["dropped"], 0, "outcomes.dropped")

        def apply() -> None:
            w()
            over = _add_dict(outc.totals, totals, outc.max_names, None)
            outc.dropped += dropped + over

        return apply

    def _stage_features(self, data: Mapping[str, Any], feat: Any = None, key: str = "features") -> Callable[[], None]:
        overall = feat is None
        feat = self.parts[4] if feat is None else feat
        schema = data["schema"]
        if schema is not None:
            if not (
                isinstance(schema, list)
                and len(schema) == 2
                and all(isinstance(x, list) and all(isinstance(n, str) for n in x) for x in schema)
            ):
                raise StateError("features.schema: malformed")
            have = self.feature_schema if overall else (
                None if feat.schema is None else [list(feat.schema.names), list(feat.schema.categorical_names)]
            )
            if have is None:
                from mlmon.features.schema import FeatureSchema

                feat._configure(FeatureSchema(schema[0], categorical=schema[1]))
                if overall:
                    self.feature_schema = schema
            elif schema != have:
                raise _err("config", "a state with other features")
        t = data["totals"]
        invalid = decode_value(t["invalid_rows"], 0, "invalid_rows")
        unknown = decode_value(t["unknown_keys"], 0, "unknown_keys")
        errors = decode_value(t["errors"], 0, "feature errors")
        seen = decode_value(t["seen"], False, "seen")
        cells: list[Any] | None = None
        w: Callable[[], None] = lambda: None  # noqa: E731
        if schema is not None:
            assert feat._window is not None
            w = self._stage_window(key, feat._window._factory, data["window"])
            raw = t["cells"]
            if not (isinstance(raw, list) and len(raw) == 3):
                raise StateError("features.cells: malformed")
            cells = [decode_value(c, like, "features.cells") for c, like in zip(raw, feat._cells_total, strict=True)]

        def apply() -> None:
            w()
            feat.invalid_rows += invalid
            feat.unknown_keys += unknown
            feat.errors += errors
            feat._seen = bool(feat._seen or seen)
            if cells is not None:
                for total, c in zip(feat._cells_total, cells, strict=True):
                    total += c

        return apply

    def finish(self) -> tuple[Any, ...]:
        """The parts, their windows frozen at the merged values."""
        svc, outs, qual, outc, feat = self.parts[:5]
        windows: dict[str, tuple[Any, str]] = {
            "service": (svc, "_window"),
            "streams": (svc, "_streams"),
            "outputs": (outs, "_window"),
            "quality": (qual, "_labels"),
            "outcomes": (outc, "_window"),
            "features": (feat, "_window"),
        }
        if self.segments is not None:
            for seg in self.segments._segs.values():
                key = f"segment:{seg.name}:"
                windows[key + "counts"] = (seg, "counts")
                windows[key + "outputs"] = (seg.outputs, "_window")
                windows[key + "quality"] = (seg.quality, "_labels")
                windows[key + "outcomes"] = (seg.outcomes, "_window")
                windows[key + "features"] = (seg.features, "_window")
                seg.quality.store = _JoinView()
        for key, (obj, attr) in windows.items():
            got = self.windows.get(key)
            current = getattr(obj, attr)
            if got is not None:
                setattr(obj, attr, _Frozen(got[0], got[1], got[2]))
            elif current is not None:
                setattr(obj, attr, _Frozen(current._factory, current._factory(), 0.0))
        n, oldest = int(self.inflight[0]), float(self.inflight[1])
        svc._inflight = lambda: (n, oldest)
        qual.store = self.join
        return self.parts


# -- public -----------------------------------------------------------------------------------


@attrs.frozen
class FleetMerge:
    """What :func:`merge_states` made.

    Attributes:
        snapshot: the fleet's snapshot (identity ``instance``; no resource metrics).
        merged: states merged.
        rejected: states rejected, by reason (``"corrupt"``, ``"size"``, ``"version"``,
            ``"config"``, ``"model"``).
        instances: the instances merged, in order.
    """

    snapshot: Snapshot
    merged: int
    rejected: dict[str, int]
    instances: tuple[str, ...]


def _load(monitor: Parts, blobs: Iterable[bytes]) -> tuple[_Loader, dict[str, int], list[str], float]:
    loader = _Loader(monitor)
    rejected: dict[str, int] = {}
    instances: list[str] = []
    wall = 0.0
    for blob in blobs:
        try:
            doc = read_state(blob)
            loader.add(doc)
        except StateError as exc:
            r = reason_of(exc)
            rejected[r] = rejected.get(r, 0) + 1
            continue
        instances.append(str(doc["instance"]))
        wall = max(wall, float(doc["wall"]))
    return loader, rejected, instances, wall


def fleet_samples(parts: Sequence[Any], now: float) -> list[Triple]:
    """The samples of merged parts (what a monitor's snapshot has, minus resources and
    mlmon's own health metrics, which are per process)."""
    triples: list[Triple] = list(parts[0].samples(now))
    for part in parts[1:]:
        if part is not None:
            triples.extend(part.samples(now))
    return triples


def merge_states(
    monitor: Parts,
    states: Iterable[bytes],
    *,
    instance: str = "fleet",
    extra: Iterable[Triple] = (),
    now: float | None = None,
) -> FleetMerge:
    """Merge states exported by processes of the same model, version and configuration.

    Args:
        monitor: the monitor whose configuration reads the states (one of the fleet's).
        states: the states (``Monitor.fleet_state()`` of each process).
        instance: the merged snapshot's identity (``"fleet"``, or a host name).
        extra: more samples for the snapshot (the fleet's own health metrics).
        now: the monotonic time the samples are read at (only label expiry depends on it).

    Returns:
        A :class:`FleetMerge`; states that cannot be merged are counted by reason, never raised.
    """
    loader, rejected, instances, wall = _load(monitor, states)
    parts = loader.finish()
    t = time.monotonic() if now is None else now
    triples = fleet_samples(parts, t)
    triples.extend(extra)
    covered = parts[0].covered(t)
    snap = Snapshot(
        model=monitor.name,
        version=monitor.version,
        instance=instance,
        timestamp=time.time() if not wall else max(wall, 0.0),
        window=covered,
        samples=samples_from(triples),
    )
    return FleetMerge(snap, loader.merged, rejected, tuple(instances))


def combine_states(monitor: Parts, states: Iterable[bytes], *, instance: str = "merged") -> tuple[bytes, dict[str, int]]:
    """Many states as one (the merge is associative: combining then merging equals merging
    all). Returns the combined state and the rejected counts by reason."""
    loader, rejected, _, wall = _load(monitor, states)
    parts = loader.finish()
    return _write(monitor, parts, 0.0, wall, instance), rejected


def retire_state(blob: bytes) -> bytes:
    """A state with its windows emptied and its calls in flight zeroed: what a process that
    ended leaves behind (its cumulative counters still count; its window does not).

    Raises:
        StateError: for a state that cannot be read.
    """
    doc = read_state(blob)
    parts = doc["parts"]
    try:
        segments = parts.get("segments")
        every = [p for k, p in parts.items() if k != "segments"]
        if segments is not None:
            for seg in segments["list"]:
                seg["counts"] = None
                every.extend(seg[k] for k in ("outputs", "quality", "outcomes", "features"))
                seg["quality"]["totals"]["pending"] = 0
                seg["quality"]["totals"]["labelled"] = 0
        for part in every:
            for key in ("window", "streams"):
                if key in part:
                    part[key] = None
        parts["service"]["inflight"] = [0, 0.0]
        parts["quality"]["totals"]["pending"] = 0
        parts["quality"]["totals"]["labelled"] = 0
    except (KeyError, TypeError, AttributeError) as exc:
        raise _err("corrupt", f"malformed state: {exc}") from None
    doc["instance"] = f"retired:{doc['instance']}"
    return pack_state(doc)


def config_digest(config: Mapping[str, Any]) -> str:
    """A short digest of what must be equal for two states to merge."""
    text = json.dumps(config, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

