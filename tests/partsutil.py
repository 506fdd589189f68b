"""Test helper: the output, quality and outcome parts of a monitor, fed as a monitor feeds them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlmon._component import CallBatch, Triple
from mlmon.outcomes import OutcomeComponent
from mlmon.outputs import OutputComponent
from mlmon.quality import QualityComponent
from mlmon.tasks import Task

__all__ = ["Parts"]


class Parts:
    """The output, quality and outcome parts fed as a monitor feeds them."""

    def __init__(self, task: Task | None, window: float, slices: int = 10, now: float = 0.0, **kw: Any) -> None:
        self.outputs = OutputComponent(task, window, slices, now)
        self.quality = QualityComponent(task, window, slices, now, rows=self.outputs.rows, **kw)
        self.outcomes = OutcomeComponent(window, slices, now)
        self.parts = (self.outputs, self.quality, self.outcomes)

    @property
    def unjoinable(self) -> int:
        return self.quality.unjoinable

    @property
    def store(self) -> Any:
        return self.quality.store

    def ingest(self, b: CallBatch) -> None:
        for p in self.parts:
            p.ingest(b)

    def log_feedback(self, ids: Any, labels: Any, now: float) -> None:
        self.quality.log_feedback(ids, labels, now)

    def log_outcome(self, name: str, ids: Any = None, value: Any = 1.0, now: float = 0.0) -> None:
        self.outcomes.log(name, ids, value, now)

    def samples(self, now: float) -> Iterator[Triple]:
        for p in self.parts:
            yield from p.samples(now)

    def reset(self) -> None:
        for p in self.parts:
            p.reset()
