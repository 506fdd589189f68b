"""Alert episodes: per alert instance (rule, labels, process), the runs of pending and firing."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import attrs

from mlmon.report._log import Labels


@attrs.define(slots=True)
class Episode:
    state: str
    start: float
    end: float
    open: bool
    message: str


class AlertRow:
    """One alert instance (rule, series labels, process) and its states at each snapshot."""

    def __init__(self, rule: str, instance: str, labels: Labels) -> None:
        self.rule = rule
        self.instance = instance
        self.labels = labels
        self.severity = ""
        self.states: dict[float, str] = {}
        self.messages: dict[float, str] = {}
        self.episodes: list[Episode] = []
        self.firing_at_end = False

    def finish(self, stamps: Sequence[float]) -> None:
        """Turn per-snapshot states into episodes: runs of one state, ended by the next snapshot.

        ``stamps`` (sorted) are the instance's snapshot times; a snapshot without a state here
        is "ok". Cost: O(states x log(stamps)), however long the log.
        """
        current: Episode | None = None
        for t in sorted(self.states):
            state = self.states[t]
            if current is not None:
                i = bisect.bisect_right(stamps, current.end)
                if i < len(stamps) and stamps[i] < t:  # an "ok" snapshot came in between
                    current.end, current.open = stamps[i], False
                    current = None
                elif state != current.state:
                    current.end, current.open = t, False
                    current = None
            if current is None:
                current = Episode(state, t, t, True, "")
                self.episodes.append(current)
            current.end = t
            current.message = self.messages.get(t, current.message)
        if current is not None:
            i = bisect.bisect_right(stamps, current.end)
            if i < len(stamps):
                current.end, current.open = stamps[i], False
        self.firing_at_end = bool(self.episodes) and self.episodes[-1].open and self.episodes[-1].state == "firing"
