"""Helpers for testing your own monitoring: an in-memory emitter and a hand-driven clock.

>>> import mlmon
>>> from mlmon.testing import FakeClock, InMemoryEmitter
>>> clock, mem = FakeClock(), InMemoryEmitter()
>>> mon = mlmon.Monitor("doc_testing", clock=clock, emitters=[mem], latency_budget=0.1)
>>> @mon.track
... def predict(x):
...     clock.advance(0.25)  # this call takes 250 ms of fake time
...     return x
>>> predict(1.0)
1.0
>>> snap = mon.flush()
>>> snap.get("mlmon_slow_calls_total"), round(snap.get("mlmon_latency_seconds", quantile="1"), 3)
(1.0, 0.25)
>>> mem.last is snap
True
>>> mon.close()
"""

from mlmon._clock import FakeClock
from mlmon.emitters.memory import InMemoryEmitter

__all__ = ["FakeClock", "InMemoryEmitter"]
