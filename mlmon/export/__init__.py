"""Exports: configuration for other systems, generated from mlmon's own.

>>> from mlmon import alerts
>>> from mlmon.export import export_prometheus_rules
>>> out = export_prometheus_rules([alerts.Threshold("mlmon_error_ratio", above=0.05),
...                                alerts.PercentDrop("mlmon_precision", percent=10,
...                                                   baseline="pinned")])
>>> out.exported, out.skipped[0][0]
(('error_ratio_above_0_05',), 'precision_drop_10pct')

``python -m mlmon export prometheus-rules --rules MODULE:ATTR`` does the same from the command
line (:func:`mlmon.export.cli.main`).
"""

from mlmon.export.prometheus_rules import (
    PrometheusRulesExport,
    export_prometheus_rules,
    prometheus_rules,
)

__all__ = ["PrometheusRulesExport", "export_prometheus_rules", "prometheus_rules"]
