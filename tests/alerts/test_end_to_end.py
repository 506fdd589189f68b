"""Alert rules on real quality metrics: predictions, delayed labels and clicks through mlmon's own
quality component (the feedback join and the rolling windows), snapshots every 10 s, default rules.

These drive :class:`mlmon.quality.QualityComponent` and the engine the way a monitor's reporter
does (drain, samples, snapshot, evaluate), with a hand-moved clock.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from partsutil import Parts

from mlmon._component import CallBatch
from mlmon.alerts import (
    AlertEngine,
    AlertEvent,
    CallbackSink,
    PercentChange,
    PercentDrop,
    Rule,
    VarianceChange,
)
from mlmon.snapshot import Snapshot, samples_from
from mlmon.tasks import BinaryClassification

T0 = 1_700_000_000.0
STEP = 10.0
WINDOW = 300.0
LABEL_DELAY = 60.0


class Service:
    """A fraud model's traffic: a batch of predictions each step (a reporter cycle), labels 60 s
    later, clicks.

    30% of predictions are positive (score >= 0.5); a positive is a fraud with probability
    ``precision`` (0.8 until told otherwise), a negative with probability 0.05; 5% of rows are
    clicked.
    """

    def __init__(self, rules: list[Rule], seed: int, rows: int, step: float = STEP) -> None:
        self.rng = np.random.default_rng(seed)
        self.rows = rows
        self.step_seconds = step
        self.precision = 0.8
        self.quality = Parts(BinaryClassification(threshold=0.5), WINDOW, 10, 0.0)
        self.events: list[AlertEvent] = []
        self.engine = AlertEngine(rules, sinks=[CallbackSink(self.events.append)])
        self.next_id = 0
        self.predictions = 0
        self.pending: deque[tuple[float, np.ndarray, np.ndarray]] = deque()

    def step(self, t: float) -> Snapshot:
        rng, n = self.rng, self.rows
        positive = rng.random(n) < 0.3
        scores = np.where(positive, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
        fraud = np.where(positive, rng.random(n) < self.precision, rng.random(n) < 0.05)
        ids = np.arange(self.next_id, self.next_id + n)
        self.next_id += n
        self.predictions += n
        self.quality.ingest(CallBatch(now=t, wall=T0 + t, outputs=[scores], ids=[ids], rows=[n]))
        self.quality.log_outcome("click", ids=ids[rng.random(n) < 0.05], now=t)
        self.pending.append((t + LABEL_DELAY, ids, fraud.astype(np.int64)))
        while self.pending and self.pending[0][0] <= t:
            _, due_ids, labels = self.pending.popleft()
            self.quality.log_feedback(due_ids, labels, now=t)
        snap = Snapshot("fraud", None, "web1:7", T0 + t, min(t, WINDOW), samples_from(self.quality.samples(t)))
        return self.engine.evaluate(snap)

    def run(self, seconds: float, start: float = 0.0) -> Snapshot:
        t = start
        snap = None
        while t < start + seconds:
            t += self.step_seconds
            snap = self.step(t)
        assert snap is not None
        return snap

    def firings(self) -> list[tuple[str, float]]:
        return [(e.rule, e.at - T0) for e in self.events if e.state == "firing"]


def default_rules() -> list[Rule]:
    return [
        PercentDrop("mlmon_precision", percent=10),
        PercentDrop("mlmon_recall", percent=10),
        VarianceChange("mlmon_output_variance", factor=1.5, test="f"),
        PercentChange("mlmon_outcome_rate", labels={"outcome": "click"}, percent=30),
    ]


def test_a_precision_drop_from_delayed_labels_fires_within_a_window_of_the_labels() -> None:
    svc = Service(default_rules(), seed=7, rows=60)  # 6 predictions/s, 1800 labels a window
    svc.run(7200.0)
    assert [] == svc.firings()
    svc.precision = 0.6
    snap = svc.run(1800.0, start=7200.0)
    fired = [t for rule, t in svc.firings() if rule == "precision_drop_10pct"]
    # The first bad predictions are labelled 60 s after the change; the window then needs to
    # fill with enough of them, and the condition must hold for the default 60 s.
    assert fired and 7200 + LABEL_DELAY < fired[0] <= 7200 + LABEL_DELAY + WINDOW + 60
    assert "precision_drop_10pct" in {a.rule for a in snap.alerts}
    assert 1.0 == snap.get("mlmon_alert_firing", rule="precision_drop_10pct")
    assert {"precision_drop_10pct"} == {rule for rule, _ in svc.firings()}  # nothing else moved


def test_a_million_stationary_predictions_fire_no_default_rule() -> None:
    # 12 h flushed every 30 s (1440 snapshots), 700 predictions a flush: 1,008,000 in all.
    svc = Service(default_rules(), seed=1, rows=700, step=30.0)
    snap = svc.run(12 * 3600.0)
    assert svc.predictions >= 1_000_000
    assert [] == svc.firings()
    assert 0.0 == snap.get("mlmon_alerts_firing")
    # The window covers 270 to 300 s (its oldest slice is dropped whole): 9 or 10 flushes.
    assert 700 * 9 <= (snap.get("mlmon_labels_window") or 0) <= 700 * 10


# -- the same through a real Monitor -------------------------------------------------------------


class MonitoredService:
    """A real monitor on a FakeClock: a predict tracked with ids, labels 60 s later."""

    def __init__(self, rules: list[Rule], seed: int, rows: int, step: float = STEP) -> None:
        import mlmon
        from mlmon.testing import FakeClock, InMemoryEmitter

        self.rng = np.random.default_rng(seed)
        self.rows, self.step_seconds, self.precision = rows, step, 0.8
        self.clock = FakeClock(start=T0)
        self.events: list[AlertEvent] = []
        self.emitter = InMemoryEmitter()
        # The reporter thread's real-time interval is longer than any test: flush() drives it.
        self.mon = mlmon.Monitor(
            "fraud", task=mlmon.BinaryClassification(threshold=0.5), window=WINDOW,
            flush_interval=WINDOW, rules=rules, clock=self.clock, emitters=[self.emitter],
        )  # fmt: skip
        self.predict = self.mon.track(ids="ids")(self._model)
        self.next_id = 0
        self.predictions = 0
        self.pending: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        self.t = 0.0

    def _model(self, X: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return X

    def step(self) -> Snapshot:
        rng, n = self.rng, self.rows
        self.clock.advance(self.step_seconds)
        self.t += self.step_seconds
        positive = rng.random(n) < 0.3
        scores = np.where(positive, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
        fraud = np.where(positive, rng.random(n) < self.precision, rng.random(n) < 0.05)
        ids = np.arange(self.next_id, self.next_id + n)
        self.next_id += n
        self.predictions += n
        self.predict(scores, ids=ids)
        self.mon.log_outcome("click", ids=ids[rng.random(n) < 0.05])
        self.pending.append((self.t + LABEL_DELAY, ids, fraud.astype(np.int64)))
        while self.pending and self.pending[0][0] <= self.t:
            _, due, labels = self.pending.popleft()
            self.mon.log_feedback(due, labels)
        return self.mon.flush()

    def run(self, seconds: float) -> Snapshot:
        end = self.t + seconds
        snap = self.step()
        while self.t < end:
            snap = self.step()
        return snap

    def firings(self) -> list[tuple[str, float]]:
        """``(rule, seconds)`` of each firing episode, when a snapshot first showed it."""
        first: dict[tuple[str, float | None], float] = {}
        for snap in self.emitter.snapshots:
            for a in snap.alerts:
                if a.state == "firing":
                    first.setdefault((a.rule, a.started_at), snap.timestamp - T0)
        return [(rule, at) for (rule, _), at in first.items()]


def test_monitor_precision_drop_from_log_feedback_fires() -> None:
    svc = MonitoredService([PercentDrop("mlmon_precision", percent=10)], seed=7, rows=120, step=20.0)
    svc.run(7200.0)
    assert [] == svc.firings()
    svc.precision = 0.6
    snap = svc.run(1800.0)
    fired = [at for rule, at in svc.firings() if rule == "precision_drop_10pct"]
    assert fired and 7200 + LABEL_DELAY < fired[0] <= 7200 + LABEL_DELAY + WINDOW + 60
    assert 1.0 == snap.get("mlmon_alert_firing", rule="precision_drop_10pct")
    assert 1.0 == svc.mon.snapshot().get("mlmon_alert_firing", rule="precision_drop_10pct")
    svc.mon.close()


def test_monitor_with_a_million_stationary_predictions_fires_nothing() -> None:
    svc = MonitoredService(default_rules(), seed=1, rows=700, step=30.0)
    snap = svc.run(12 * 3600.0)
    assert svc.predictions >= 1_000_000
    assert [] == svc.firings()
    assert 0.0 == snap.get("mlmon_alerts_firing")
    svc.mon.close()
