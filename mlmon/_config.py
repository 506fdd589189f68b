"""The monitor's configuration checks, in one place: each error names its field and value."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from mlmon.emitters.base import Emitter, emitter_name
from mlmon.naming import check_collisions, check_name
from mlmon.reference import Reference, check_feature_names
from mlmon.stores.base import PredictionStore
from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression

__all__ = ["check_monitor"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _seconds(field: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        extra = " or None" if optional else ""
        raise ValueError(f"{field} must be a positive number of seconds{extra}, got {value!r}")


def _count(field: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field} must be an int >= {minimum}, got {value!r}")


def check_monitor(
    *,
    name: object,
    version: object,
    instance: object,
    window: float,
    flush_interval: float,
    latency_budget: float | None,
    emit_timeout: float,
    close_timeout: float,
    max_buffered_rows: int,
    max_buffered_calls: int,
    max_timings: int,
    max_buffer_bytes: int,
    task: object,
    reference: object,
    feature_names: Sequence[str] | None,
    emitters: Sequence[Any] | None,
    store: object,
) -> list[Emitter]:
    """Check a :class:`~mlmon.Monitor`'s arguments; return its emitters as a list.

    Raises:
        ValueError: a value out of range, a name that cannot be emitted, duplicate emitter names.
        TypeError: an object of the wrong kind (task, reference, emitter, store).
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"name must match [A-Za-z0-9_-]+, got {name!r}")
    if version is not None and (not isinstance(version, str) or not version or "\n" in version):
        raise ValueError(f"version must be a non-empty one-line string or None, got {version!r}")
    if version is not None:
        check_name(version, what="version")
    if instance is not None:
        if not isinstance(instance, str) or not instance or "\n" in instance:
            raise ValueError(f"instance must be a non-empty one-line string or None, got {instance!r}")
        check_name(instance, what="instance")
    _seconds("window", window)
    _seconds("flush_interval", flush_interval)
    if flush_interval > window:
        raise ValueError(f"flush_interval ({flush_interval!r}) must not exceed window ({window!r})")
    _seconds("latency_budget", latency_budget, optional=True)
    _seconds("emit_timeout", emit_timeout)
    _seconds("close_timeout", close_timeout)
    _count("max_buffered_rows", max_buffered_rows, 1)
    _count("max_buffered_calls", max_buffered_calls, 16)
    _count("max_timings", max_timings, 1)
    _count("max_buffer_bytes", max_buffer_bytes, 1 << 16)
    if task is not None and not isinstance(task, (BinaryClassification, MulticlassClassification, Regression)):
        raise TypeError(
            f"task must be mlmon.BinaryClassification, MulticlassClassification, Regression or None, got {task!r}"
        )
    if isinstance(task, (BinaryClassification, MulticlassClassification)):
        check_collisions(task.class_names, what="class label")
    if reference is not None and not isinstance(reference, Reference):
        raise TypeError(f"reference must be an mlmon.Reference or None, got {reference!r}")
    if feature_names is not None:
        check_feature_names(feature_names)
    names = feature_names if feature_names is not None else (reference.feature_names if reference else None)
    if names is not None:
        check_collisions([str(n) for n in names], what="feature name")
    emitter_list: list[Emitter] = list(emitters or ())
    for e in emitter_list:
        if not isinstance(e, Emitter):
            raise TypeError(f"emitters must have emit(snapshot) and close(), got {e!r}")
    emitter_names = [emitter_name(e) for e in emitter_list]
    if len(set(emitter_names)) != len(emitter_names):
        raise ValueError(f"emitter names must be unique (set name=...), got {emitter_names!r}")
    if store is not None and not isinstance(store, PredictionStore):
        raise TypeError(f"store must be an mlmon.stores store (e.g. RedisStore) or None, got {store!r}")
    return emitter_list
