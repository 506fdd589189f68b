"""Builds a monitor's optional components from its configuration, and routes feedback to them.

Kept apart from ``monitor.py`` so the hot path module does not import the model-quality and
feature modules (and their scipy imports) unless a monitor is configured to use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlmon._component import Component

if TYPE_CHECKING:
    from mlmon.monitor import Monitor


def components(mon: Monitor, now: float) -> list[Component]:
    """The components a monitor with this configuration needs, in the order they ingest."""
    return []


def log_feedback(mon: Monitor, ids: Any, labels: Any) -> None:
    raise NotImplementedError("log_feedback needs the model-quality component")


def log_outcome(mon: Monitor, name: str, ids: Any, value: float) -> None:
    raise NotImplementedError("log_outcome needs the outcomes component")
