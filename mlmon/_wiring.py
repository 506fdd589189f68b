"""Builds a monitor's components from its configuration, and routes feedback to them.

Kept apart from ``monitor.py`` so the hot-path module stays small and imports the model-quality
and feature modules (and scipy) only when a monitor is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlmon._component import Component

if TYPE_CHECKING:
    from mlmon.monitor import Monitor
    from mlmon.quality import QualityComponent

__all__ = ["components", "log_feedback", "log_outcome"]


def components(mon: Monitor, now: float) -> list[Component]:
    """The components a monitor with this configuration needs, in the order they ingest."""
    from mlmon.quality import QualityComponent

    out: list[Component] = [
        QualityComponent(
            mon.task, mon.window, mon._slices, now, max_pending=mon._max_pending, ttl=mon._ttl
        )
    ]
    from mlmon.features import FeatureComponent

    # Without a reference or names, the component learns the schema from the first features it
    # reads (dict keys, DataFrame columns, else f0, f1, ...); it emits nothing until then.
    features: Any = mon.reference if mon.reference is not None else mon._feature_names
    out.append(
        FeatureComponent(
            features,
            categorical=mon._categorical,
            window=mon.window,
            slices=mon._slices,
            now=now,
            drift=mon._drift,
        )
    )
    return out


def quality(mon: Monitor) -> QualityComponent:
    from mlmon.quality import QualityComponent

    for comp in mon._components:
        if isinstance(comp, QualityComponent):
            return comp
    raise RuntimeError("monitor has no quality component")  # pragma: no cover - always built


def check_configuration(mon: Monitor, feature_names: Sequence[str] | None) -> None:
    """Configuration-time checks of the optional parts (raise ValueError/TypeError)."""
    if mon.task is not None:
        from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression

        if not isinstance(mon.task, (BinaryClassification, MulticlassClassification, Regression)):
            raise TypeError(
                "task must be mlmon.BinaryClassification, MulticlassClassification, Regression or None, "
                f"got {mon.task!r}"
            )
        if not isinstance(mon.task, Regression):
            from mlmon.naming import check_collisions

            check_collisions(mon.task.class_names, what="class label")
    if mon.reference is not None:
        from mlmon.reference import Reference

        if not isinstance(mon.reference, Reference):
            raise TypeError(f"reference must be an mlmon.Reference or None, got {mon.reference!r}")
    if feature_names is not None:
        from mlmon.reference import check_feature_names

        check_feature_names(feature_names)
    names = feature_names if feature_names is not None else getattr(mon.reference, "feature_names", None)
    if names is not None:
        from mlmon.naming import check_collisions

        check_collisions([str(n) for n in names], what="feature name")


def alert_engine(mon: Monitor, sinks: Sequence[Any] | None, values: dict[str, float] | None) -> Any:
    """The monitor's alert engine, or None without rules (rules are checked here, loudly)."""
    if not mon.rules:
        return None
    from mlmon.alerts import AlertEngine, reference_lookup

    lookup = None
    if mon.reference is not None or values:
        lookup = reference_lookup(mon.reference, values)
    return AlertEngine(mon.rules, sinks=sinks, reference_value=lookup, clock=mon._clock)


def log_feedback(mon: Monitor, ids: Any, labels: Any) -> None:
    comp = quality(mon)
    # Drain first: a label for a call that has just returned must find its prediction.
    with mon._drain_lock:
        mon._drain_locked()
        try:
            comp.log_feedback(ids, labels, mon._clock.monotonic())
        except ValueError:
            raise  # the one documented error: ids and labels of different lengths
        except Exception as exc:
            mon._internal_error("feedback", exc)


def log_outcome(mon: Monitor, name: str, ids: Any, value: float) -> None:
    comp = quality(mon)
    with mon._drain_lock:
        mon._drain_locked()
        try:
            comp.log_outcome(name, ids, value, mon._clock.monotonic())
        except (ValueError, TypeError):
            raise  # a bad outcome name or value: the caller's to fix
        except Exception as exc:
            mon._internal_error("outcome", exc)
