"""mlmon: embeddable monitoring for ML models in production.

>>> import mlmon
>>> mon = mlmon.Monitor("doc_init")
>>> @mon.track
... def predict(x):
...     return x * 0.5
>>> predict(4.0)
2.0
>>> mon.snapshot().get("mlmon_calls_total")
1.0
>>> mon.close()
"""

from mlmon import fleet as fleet
from mlmon._clock import FakeClock
from mlmon._default import configure, flush, get_monitor, log_feedback, log_outcome, snapshot, track
from mlmon._env import emitter_from_url, emitters_from_env
from mlmon._handover import set_background_switch_interval
from mlmon.drift import DriftConfig
from mlmon.fleet import Fleet
from mlmon.monitor import Call, Monitor, Track
from mlmon.offline import evaluate as evaluate
from mlmon.reference import Reference
from mlmon.segments import by_feature
from mlmon.snapshot import CATALOG, MetricInfo, Sample, Snapshot
from mlmon.tasks import BinaryClassification, MulticlassClassification, Regression

__version__ = "0.1.0.dev0"

__all__ = [
    "CATALOG",
    "BinaryClassification",
    "Call",
    "DriftConfig",
    "FakeClock",
    "Fleet",
    "MetricInfo",
    "Monitor",
    "MulticlassClassification",
    "Reference",
    "Regression",
    "Sample",
    "Snapshot",
    "Track",
    "__version__",
    "by_feature",
    "configure",
    "emitter_from_url",
    "emitters_from_env",
    "evaluate",
    "flush",
    "get_monitor",
    "log_feedback",
    "log_outcome",
    "set_background_switch_interval",
    "snapshot",
    "track",
]
