"""The dashboard model: template variables, rows and panels laid out on the 24-column grid."""

from __future__ import annotations

from collections.abc import Sequence

from mlmon.export.grafana._common import _GRID_WIDTH, Json, Query
from mlmon.export.grafana._queries import _Queries

# ---------------------------------------------------------------------------------------------
# Variables, panels, layout
# ---------------------------------------------------------------------------------------------

_DS: Json = {"uid": "${DS}"}


def _datasource_variable(kind: str) -> Json:
    return {
        "name": "DS",
        "label": "Data source",
        "type": "datasource",
        "query": kind,
        "regex": "",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "options": [],
        "skipUrlSync": False,
    }


def _query_variable(
    name: str,
    label: str,
    query: str,
    current: str | None,
    *,
    multi: bool,
    all_value: str | None = None,
) -> Json:
    var: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _DS,
        "query": query,
        "definition": query,
        "refresh": 2,  # on time range change: processes come and go
        "sort": 1,
        "regex": "",
        "multi": multi,
        "includeAll": all_value is not None,
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }
    if all_value is not None:
        var["allValue"] = all_value
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    elif current is not None:
        var["current"] = {"selected": True, "text": current, "value": current}
    else:
        var["current"] = {}
    return var


def _custom_variable(name: str, label: str, values: Sequence[str]) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(v.replace(",", "\\,") for v in values),
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [{"selected": True, "text": "All", "value": "$__all"}]
        + [{"selected": False, "text": v, "value": v} for v in values],
        "hide": 0,
        "skipUrlSync": False,
    }


class _Builder:
    """Collects rows and panels, numbers them and lays them out on the 24-column grid."""

    def __init__(self, queries: _Queries) -> None:
        self.q = queries
        self.ds: Json = {"type": queries.datasource_type, "uid": "${DS}"}
        self.panels: list[Json] = []
        self._next_id = 1
        self._x = 0
        self._y = 0
        self._line_h = 0

    def _id(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": _GRID_WIDTH, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        self._y += self._line_h
        self._x = 0
        self._line_h = 0

    def _place(self, w: int, h: int) -> Json:
        if self._x + w > _GRID_WIDTH:
            self._newline()
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._line_h = max(self._line_h, h)
        return pos

    def _targets(self, queries: Sequence[Query]) -> list[Json]:
        return [
            self.q.target(expr, legend, _ref(i), self.ds) for i, (expr, legend) in enumerate(queries)
        ]

    def timeseries(
        self,
        title: str,
        queries: Sequence[Query],
        *,
        unit: str,
        description: str,
        w: int = 8,
        h: int = 8,
        ratio: bool = False,
        repeat: str | None = None,
        max_per_row: int = 6,
    ) -> None:
        if not queries:
            return
        defaults: Json = {
            "unit": unit,
            "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": True},
        }
        if ratio:
            defaults["min"] = 0
            defaults["max"] = 1
        if repeat is not None:
            # Grafana lays the copies out side by side, widths shared, at most max_per_row
            # to a line; nothing else may share the line, so the panel takes the full width.
            self._newline()
            w = _GRID_WIDTH
        panel: Json = {
            "type": "timeseries",
            "id": self._id(),
            "title": title,
            "description": description,
            "datasource": self.ds,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
            "targets": self._targets(queries),
        }
        if repeat is not None:
            panel.update(repeat=repeat, repeatDirection="h", maxPerRow=max_per_row)
        self.panels.append(panel)

    def stat(
        self,
        title: str,
        queries: Sequence[Query],
        *,
        unit: str,
        description: str,
        steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
        w: int = 6,
        h: int = 4,
    ) -> None:
        if not queries:
            return
        self.panels.append(
            {
                "type": "stat",
                "id": self._id(),
                "title": title,
                "description": description,
                "datasource": self.ds,
                "gridPos": self._place(w, h),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "thresholds": {
                            "mode": "absolute",
                            "steps": [{"color": c, "value": v} for v, c in steps],
                        },
                    },
                    "overrides": [],
                },
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value",
                    "graphMode": "area",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "textMode": "auto",
                },
                "targets": self._targets(queries),
            }
        )


def _ref(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[i] if i < len(letters) else f"Q{i}"


_QUALITY_BY_TASK: dict[str, tuple[tuple[str, ...], str | None]] = {
    "binary": (("mlmon_precision", "mlmon_recall", "mlmon_f1"), None),
    "multiclass": (("mlmon_precision", "mlmon_recall", "mlmon_f1"), "macro"),
    "regression": (("mlmon_mae", "mlmon_rmse"), None),
}
