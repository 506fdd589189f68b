"""An alert engine's state as JSON, so that another process can carry on from it.

The fleet's leader evaluates the fleet rules; when it dies, the next leader must continue from
the same states (an alert already firing stays firing without a second ``firing`` event, a
pending one keeps its start), the same pinned and trailing baselines. Every time in the state
is the snapshots' wall-clock time (the engine evaluates on ``snapshot.timestamp``), so it means
the same in any process. Rules are matched by name; instances of a rule the reader does not
have are ignored, and a malformed state is rejected as a whole (``ValueError``).

>>> from mlmon.alerts import AlertEngine, Threshold
>>> from mlmon.snapshot import Sample, Snapshot
>>> rule = Threshold("mlmon_error_ratio", above=0.1, name="errors", min_samples=0)
>>> a = AlertEngine([rule], sinks=[])
>>> _ = a.evaluate(Snapshot("m", None, "fleet", 100.0, 60.0, (Sample.make("mlmon_error_ratio", 0.5),)))
>>> b = AlertEngine([rule], sinks=[])
>>> load_engine_state(b, export_engine_state(a))
>>> b.state("errors")
'firing'
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

from mlmon.alerts._state import Instance, Trail
from mlmon.alerts.engine import AlertEngine

__all__ = ["export_engine_state", "load_engine_state"]

_FORMAT = 1
_STATES = ("inactive", "pending", "firing")
_OPT_FLOATS = ("since", "false_since", "fired_at", "resolved_at", "value", "baseline", "measure",
               "limit", "counter", "changed_at")  # fmt: skip
MAX_BYTES = 8 << 20


def _num(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {type(x).__name__}")
    f = float(x)
    if math.isnan(f):
        raise ValueError("NaN in an alert state")
    return f


def _labels(x: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(x, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in x
    ):
        raise ValueError("malformed labels")
    return tuple((str(k), str(v)) for k, v in x)


def _triples(x: Any) -> list[tuple[float, float, float]]:
    if not isinstance(x, list) or len(x) > 1_000_000:
        raise ValueError("malformed history")
    out = []
    for t in x:
        if not (isinstance(t, list) and len(t) == 3):
            raise ValueError("malformed history")
        a, b, c = (_num(v) for v in t)
        if a is None or b is None or c is None:
            raise ValueError("malformed history")
        out.append((a, b, c))
    return out


def _export_instance(inst: Instance) -> dict[str, Any]:
    d: dict[str, Any] = {f: getattr(inst, f) for f in _OPT_FLOATS}
    d["state"] = inst.state
    d["last_seen"] = inst.last_seen if math.isfinite(inst.last_seen) else None
    d["key"] = [list(p) for p in inst.key_labels]
    d["series"] = [list(p) for p in inst.series_labels]
    d["pin"] = [list(t) for t in inst.pin]
    d["pinned"] = None if inst.pinned is None else list(inst.pinned)
    tr = inst.trail
    d["trail"] = None if tr is None else {
        "queued": [list(t) for t in tr.queued],
        "within": [list(t) for t in tr.within],
        "v_sum": tr.v_sum,
        "n_sum": tr.n_sum,
        "last_t": tr.last_t if math.isfinite(tr.last_t) else None,
    }  # fmt: skip
    return d


def _load_instance(d: Any) -> Instance:
    if not isinstance(d, dict):
        raise ValueError("malformed instance")
    inst = Instance(_labels(d["key"]), _labels(d["series"]))
    if d["state"] not in _STATES:
        raise ValueError(f"unknown state {d['state']!r}")
    inst.state = d["state"]
    for f in _OPT_FLOATS:
        setattr(inst, f, _num(d[f]))
    seen = _num(d["last_seen"])
    inst.last_seen = -math.inf if seen is None else seen
    inst.pin = _triples(d["pin"])
    pinned = d["pinned"]
    if pinned is not None:
        if not (isinstance(pinned, list) and len(pinned) == 2):
            raise ValueError("malformed pinned baseline")
        a, b = _num(pinned[0]), _num(pinned[1])
        if a is None or b is None:
            raise ValueError("malformed pinned baseline")
        inst.pinned = (a, b)
    tr = d["trail"]
    if tr is not None:
        if not isinstance(tr, dict):
            raise ValueError("malformed trail")
        trail = Trail()
        trail.queued = deque(_triples(tr["queued"]))
        trail.within = deque(_triples(tr["within"]))
        trail.v_sum = _num(tr["v_sum"]) or 0.0
        trail.n_sum = _num(tr["n_sum"]) or 0.0
        last = _num(tr["last_t"])
        trail.last_t = -math.inf if last is None else last
        inst.trail = trail
    return inst


def export_engine_state(engine: AlertEngine) -> bytes:
    """Every rule's instances, as JSON bytes."""
    with engine._lock:
        rules = {
            c.rule.name: [_export_instance(i) for i in c.instances.values()] for c in engine._compiled
        }
    return json.dumps({"v": _FORMAT, "rules": rules}, separators=(",", ":")).encode()


def load_engine_state(engine: AlertEngine, data: bytes) -> None:
    """Replace ``engine``'s instances with those in ``data`` (rules matched by name).

    Raises:
        ValueError: a state that is not valid JSON of this format; ``engine`` is unchanged.
    """
    if len(data) > MAX_BYTES:
        raise ValueError("alert state too large")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"alert state is not JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict) or doc.get("v") != _FORMAT or not isinstance(doc.get("rules"), dict):
        raise ValueError("not an alert state of this format")
    loaded: dict[str, dict[Any, Instance]] = {}
    try:
        for name, items in doc["rules"].items():
            if not isinstance(items, list):
                raise ValueError("malformed rule")
            loaded[name] = {}
            for d in items:
                inst = _load_instance(d)
                loaded[name][inst.key_labels] = inst
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed alert state: {exc!r}") from None
    with engine._lock:
        for c in engine._compiled:
            c.instances = loaded.get(c.rule.name, {})
