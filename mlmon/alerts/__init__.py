"""Alerting: rules on model quality, outputs, drift, outcomes and service health.

>>> from mlmon import alerts
>>> rules = [alerts.PercentDrop("mlmon_precision", percent=10),
...          alerts.VarianceChange("mlmon_output_variance", factor=2.0),
...          alerts.Threshold("mlmon_latency_seconds", quantile=0.99, above=0.2, for_=60)]
>>> [r.name for r in rules]
['precision_drop_10pct', 'output_variance_change_x2', 'latency_seconds_p99_above_0_2']

See ``docs/alerts.md``: each rule, baselines, picking thresholds, flapping control, sinks, the
Prometheus export (:func:`mlmon.export.prometheus_rules`) and the false-alarm budget shared by
:class:`Shift` rules (:class:`AlertBudget`).
"""

from mlmon.alerts.budget import AlertBudget
from mlmon.alerts.engine import AlertEngine, ReferenceValue, reference_lookup
from mlmon.alerts.events import STATES, AlertEvent
from mlmon.alerts.rules import (
    SEVERITIES,
    Absent,
    Baseline,
    PercentChange,
    PercentDrop,
    Rule,
    Threshold,
    VarianceChange,
    default_min_samples,
)
from mlmon.alerts.shift import SHIFT_METRICS, Shift
from mlmon.alerts.sinks import (
    OUTCOMES,
    AlertSink,
    CallbackError,
    CallbackSink,
    LoggingSink,
    WebhookSink,
)

__all__ = [
    "OUTCOMES",
    "SEVERITIES",
    "SHIFT_METRICS",
    "STATES",
    "Absent",
    "AlertBudget",
    "AlertEngine",
    "AlertEvent",
    "AlertSink",
    "Baseline",
    "CallbackError",
    "CallbackSink",
    "LoggingSink",
    "PercentChange",
    "PercentDrop",
    "ReferenceValue",
    "Rule",
    "Shift",
    "Threshold",
    "VarianceChange",
    "WebhookSink",
    "default_min_samples",
    "reference_lookup",
]
