"""Rendering: the HTML page of one report, section by section, from a finished log."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mlmon.report import _svg
from mlmon.report._alerts import AlertRow
from mlmon.report._format import clean, duration, esc, utc
from mlmon.report._log import FloatArray, Labels, Log, listed
from mlmon.report._sections import (
    ALERT_COLORS,
    ALERT_NOTE,
    DRIFT_NOTE,
    EMPTY_CLASS,
    FLEET_CHARTS,
    FLEET_HEALTH,
    FLEET_TITLE,
    PSI_STOPS,
    PSI_TICKS,
    SECTION_TITLES,
    SECTIONS,
    STATUS,
    Chart,
    Fill,
    qname,
    qsort,
)
from mlmon.report._segments import segments_body
from mlmon.report._series import counter_total, heat_cells, rate, thin
from mlmon.report._style import CSS
from mlmon.snapshot import FORMAT_VERSION

MAX_CHART_SERIES = 24  # lines per chart; more would make the legend unreadable
MAX_HEAT_ROWS = 40
MAX_HEAT_BINS = 120
MAX_SPANS = 400  # spans per alert row
MAX_TIMELINE_ROWS = 60  # rows of the alert timeline
MAX_ALERT_ROWS = 5_000  # alert instances (rule, labels, instance) followed
MAX_EPISODES = 200  # rows of the alert table


class Page:
    """Builds the HTML of one report from a finished :class:`Log`."""

    def __init__(self, log: Log, source: str, max_points: int, *, span: tuple[float, float] | None = None) -> None:
        self.log = log
        self.source = source
        self.max_points = max_points
        self.start, self.end = span if span is not None else (log.start, log.end)
        # The fleet's series go to a page of their own (drawn in the fleet section, first),
        # so that the processes' charts and cards are the processes' alone: a fleet counter
        # added to theirs would count every call twice.
        self.fleet: Page | None = None
        fleet_log = log.split_fleet() if span is None else None
        if fleet_log is not None:
            self.start, self.end = min(self.start, log.start), max(self.end, log.end)
            self.fleet = Page(fleet_log, source, max_points, span=(self.start, self.end))
        self.multi = len(log.instances) > 1 or self.fleet is not None
        self.t0, self.t1 = self.start, self.end
        if self.t1 <= self.t0:
            # One snapshot: give the time axis some width around it.
            self.t0, self.t1 = self.t0 - 1.0, self.t1 + 1.0
        # Times in tables: the clock alone when the whole log is one UTC day.
        one_day = utc(self.start, "%Y%m%d") == utc(self.end, "%Y%m%d")
        self.when = "%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S"
        self.sections: list[str] = []
        self.omitted: list[str] = []
        self.notes: list[str] = []
        self.alert_rows: list[AlertRow] | None = None
        self.alert_rules: list[str] = []
        self.dropped_events = 0

    # -- series ------------------------------------------------------------------------------
    def chart_series(self, chart: Chart) -> tuple[list[_svg.Series], int]:
        found: list[tuple[str, str, bool, str, FloatArray, FloatArray, str]] = []
        for line in chart.lines:
            picked = self.log.select(line.metric, dict(line.match))
            if any(k == "quantile" for k, _ in line.match):
                picked.sort(key=lambda p: qsort(p[0]))
            for labels, inst, xs, ys in picked:
                if line.rate:
                    # A labelled counter appears with its first event: before that it was 0.
                    stamps = np.asarray(self.log.stamps_of(inst), dtype=np.float64)
                    before = stamps[stamps < xs[0]] if xs.size else stamps[:0]
                    if before.size:
                        xs = np.concatenate((before, xs))
                        ys = np.concatenate((np.zeros(before.size), ys))
                    xs, ys = rate(xs, ys)
                fill = Fill(labels)
                if "quantile" in labels:
                    fill["q"] = qname(labels["quantile"])
                name = line.legend.format_map(fill)
                ckey = (line.color or name) + "\x00" + inst
                found.append((name, inst, line.dashed, ckey, xs, ys, line.metric))
        if chart.hide_if_zero and all(not np.any(f[5]) for f in found):
            return [], 0
        dropped = max(0, len(found) - MAX_CHART_SERIES)
        colors: dict[str, str] = {}
        out = []
        for name, inst, dashed, ckey, xs, ys, metric in found[:MAX_CHART_SERIES]:
            color = colors.setdefault(ckey, _svg.PALETTE[len(colors) % len(_svg.PALETTE)])
            xs, ys = thin(xs, ys, self.max_points)
            legend = f"{name} · {inst}" if self.multi else name
            out.append(_svg.Series(legend, xs.tolist(), ys.tolist(), color=color, dashed=dashed,
                                   data={"metric": metric, "instance": inst}, gap=math.inf))  # fmt: skip
        return out, dropped

    def chart(self, chart: Chart) -> str | None:
        series, dropped = self.chart_series(chart)
        if not series:
            return None
        svg = _svg.line_chart(series, chart_id=chart.id, x_range=(self.t0, self.t1), y_format=chart.fmt,
                              y_cap=chart.y_cap, y_scale=chart.y_scale)  # fmt: skip
        metrics = sorted({line.metric for line in chart.lines if self.log.has(line.metric)})
        note = f'<p class="note">{dropped} more series not drawn (at most {MAX_CHART_SERIES} per chart).</p>' if dropped else ""
        return (
            f'<figure class="card chart-card" id="chart-{esc(chart.id)}"><figcaption><h3>{esc(chart.title)}</h3>'
            f'<p class="metric">{esc(", ".join(metrics))}</p></figcaption>{svg}{note}</figure>'
        )

    # -- sections ----------------------------------------------------------------------------
    def section(self, sid: str, title: str, empty: str, body: str | None, full: bool = False) -> str:
        if body is None:
            self.omitted.append(sid)
            return (
                f'<section class="empty" id="{sid}" data-section="{sid}" data-empty="1"><h2>{esc(title)}</h2>'
                f'<p class="note">{esc(empty)}</p></section>'
            )
        self.sections.append(sid)
        cls = "charts full" if full else "charts"
        return f'<section id="{sid}" data-section="{sid}"><h2>{esc(title)}</h2><div class="{cls}">{body}</div></section>'

    def chart_section(self, sid: str, title: str, empty: str, charts: Sequence[Chart]) -> str:
        parts = [p for p in (self.chart(c) for c in charts) if p is not None]
        if sid == "quality":
            card = self.calibration_card()
            if card is not None:
                parts.append(card)
        return self.section(sid, title, empty, "".join(parts) if parts else None)

    def calibration_card(self) -> str | None:
        """The calibration chart of the last snapshot with calibration bins, per instance."""
        series: list[_svg.Series] = []
        latest = 0.0
        for inst in sorted(self.log.instances):
            points: dict[str, list[float]] = {}
            for metric in ("mlmon_calibration_predicted", "mlmon_calibration_observed"):
                for labels, where, xs, ys in self.log.select(metric, {"bin": "*"}):
                    if where == inst and xs.size:
                        points.setdefault(labels["bin"], [math.nan, math.nan, -math.inf])
                        slot = 0 if metric.endswith("predicted") else 1
                        points[labels["bin"]][slot] = float(ys[-1])
                        points[labels["bin"]][2] = max(points[labels["bin"]][2], float(xs[-1]))
            if not points:
                continue
            # Only the bins of the instance's last snapshot with any (older bins are stale).
            last = max(p[2] for p in points.values())
            latest = max(latest, last)
            bins = sorted(b for b, p in points.items() if p[2] == last)
            name = f"{inst}" if self.multi else "labelled scores"
            color = _svg.PALETTE[len(series) % len(_svg.PALETTE)]
            series.append(_svg.Series(name, [points[b][0] for b in bins], [points[b][1] for b in bins],
                                      color=color, data={"instance": inst}))  # fmt: skip
        if not series:
            return None
        svg = _svg.reliability_chart(series, chart_id="calibration")
        return (
            '<figure class="card chart-card" id="chart-calibration"><figcaption><h3>Calibration '
            f"(labels of the window at {esc(utc(latest, self.when))} UTC)</h3>"
            '<p class="metric">mlmon_calibration_predicted, mlmon_calibration_observed</p></figcaption>'
            f"{svg}</figure>"
        )

    # -- summary cards -----------------------------------------------------------------------
    def total(self, name: str) -> float | None:
        keys = self.log.by_name.get(name)
        if not keys:
            return None
        return math.fsum(counter_total(self.log.series[k][1]) for k in keys)

    def latest(self, name: str, match: Mapping[str, str] | None = None, agg: Callable[[list[float]], float] = max) -> float | None:
        vals = [float(ys[-1]) for _, _, _, ys in self.log.select(name, match) if ys.size]
        return agg(vals) if vals else None

    def cards(self) -> str:
        log = self.log
        n_inst = len(log.instances)
        cards: list[tuple[str, str, str, str]] = []  # (label, value, sub, class)
        worst = f" (worst of {n_inst} instances)" if n_inst > 1 else ""
        every = f" (sum of {n_inst} instances)" if n_inst > 1 else ""
        cards.append((
            "Time range", duration(self.end - self.start),
            f"{utc(self.start)} – {utc(self.end, self.when)} UTC", "",
        ))  # fmt: skip
        fleet_snaps = sum(self.fleet.log.instances.values()) if self.fleet is not None else 0
        cards.append((
            "Snapshots", f"{sum(log.instances.values()) + fleet_snaps:,}",
            f"from {n_inst} instance{'s' if n_inst > 1 else ''}" + (f" and {fleet_snaps:,} of the fleet" if fleet_snaps else ""), "",
        ))  # fmt: skip
        fleet_card = self.fleet_card()
        if fleet_card is not None:
            cards.append(fleet_card)
        calls = self.total("mlmon_calls_total")
        if calls is not None:
            rows = self.total("mlmon_rows_total")
            cards.append(("Calls", _svg.fmt_number(calls), f"{_svg.fmt_number(rows)} predictions (rows)" if rows is not None else "", ""))
            errors = self.total("mlmon_errors_total") or 0.0
            by_type: dict[str, float] = {}
            for labels, _, _, ys in log.select("mlmon_errors_total", {"error_type": "*"}):
                by_type[labels["error_type"]] = by_type.get(labels["error_type"], 0.0) + counter_total(ys)
            top = ", ".join(f"{k} {_svg.fmt_number(v)}" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])[:3])
            share = _svg.fmt_ratio(errors / calls) if calls else "–"
            cards.append(("Errors", _svg.fmt_number(errors), f"{share} of calls" + (f" · {top}" if top else ""), "bad" if errors else ""))
            slow = self.total("mlmon_slow_calls_total")
            if slow is not None:
                cards.append(("Slow calls", _svg.fmt_number(slow), "over the latency budget", "warn" if slow else ""))
        p99 = self.latest("mlmon_latency_seconds", {"quantile": "0.99"})
        if p99 is not None:
            p50 = self.latest("mlmon_latency_seconds", {"quantile": "0.5"})
            mx = self.latest("mlmon_latency_seconds", {"quantile": "1"})
            sub = " · ".join(f"{k} {_svg.fmt_seconds(v)}" for k, v in (("p50", p50), ("max", mx)) if v is not None)
            cards.append(("Latency p99, latest" + worst, _svg.fmt_seconds(p99), sub, ""))
        cps = self.latest("mlmon_calls_per_second", agg=sum)
        if cps is not None:
            rps = self.latest("mlmon_rows_per_second", agg=sum)
            cards.append(("Throughput, latest" + every, f"{_svg.fmt_number(cps)} calls/s", f"{_svg.fmt_number(rps)} rows/s" if rps is not None else "", ""))
        avail = self.latest("mlmon_availability_ratio", agg=min)
        if avail is not None:
            cards.append(("Availability, latest" + worst, _svg.fmt_ratio(avail), "succeeded within budget", "warn" if avail < 0.99 else ""))
        rss = self.latest("mlmon_process_resident_memory_bytes", agg=sum)
        if rss is not None:
            cpu = self.latest("mlmon_process_cpu_percent", agg=sum)
            cards.append(("Memory (RSS), latest" + every, _svg.fmt_bytes(rss), f"CPU {_svg.fmt_percent(cpu)}" if cpu is not None else "", ""))
        prec = self.latest("mlmon_precision", agg=min)
        if prec is None:
            prec = self.latest("mlmon_precision", {"average": "macro"}, agg=min)
        if prec is not None:
            f1 = self.latest("mlmon_f1", agg=min) or self.latest("mlmon_f1", {"average": "macro"}, agg=min)
            est = self.latest("mlmon_estimated_precision", agg=min)
            sub = " · ".join(t for t in (
                f"F1 {_svg.fmt_ratio(f1)}" if f1 is not None else "",
                f"estimated precision {_svg.fmt_ratio(est)}" if est is not None else "",
            ) if t)  # fmt: skip
            cards.append(("Precision, latest" + worst, _svg.fmt_ratio(prec), sub, ""))
        mae = self.latest("mlmon_mae")
        if mae is not None:
            rmse = self.latest("mlmon_rmse")
            cards.append(("MAE, latest" + worst, _svg.fmt_number(mae), f"RMSE {_svg.fmt_number(rmse)}" if rmse is not None else "", ""))
        labels_total = self.total("mlmon_labels_total")
        if labels_total is not None:
            cov = self.latest("mlmon_label_coverage_ratio", agg=min)
            # Labels that judged nothing, next to coverage (counters summed over instances).
            unmatched = self.total("mlmon_labels_unmatched_total") or 0.0
            expired = self.total("mlmon_labels_expired_total") or 0.0
            sub = " · ".join(t for t in (
                f"coverage {_svg.fmt_ratio(cov)} (latest)" if cov is not None else "",
                f"unmatched {_svg.fmt_number(unmatched)}",
                f"expired {_svg.fmt_number(expired)}",
            ) if t)  # fmt: skip
            cards.append(("Labels joined", _svg.fmt_number(labels_total), sub, "warn" if unmatched or expired else ""))
        if self.alert_rows is not None:
            firing_now = sorted({r.rule for r in self.alert_rows if r.firing_at_end})[:5]
            episodes = sum(1 for r in self.alert_rows for e in r.episodes if e.state == "firing")
            sub = ("firing at the end: " + ", ".join(firing_now)) if firing_now else f"{len(self.alert_rules)} rule{'s' if len(self.alert_rules) != 1 else ''} evaluated"
            cards.append(("Alerts fired", str(episodes), sub, "bad" if firing_now else ("warn" if episodes else "")))
        psi = self.log.select("mlmon_feature_drift_psi", {"feature": "*"})
        if psi:
            status = self.log.select("mlmon_feature_drift_status", {"feature": "*"})
            drifting = sorted({labels["feature"] for labels, _, _, ys in status if ys.size and ys[-1] >= 2})
            features = {labels["feature"] for labels, _, _, _ in psi}
            peak_labels, _, _, peak_ys = max(psi, key=lambda p: float(p[3].max()) if p[3].size else -1.0)
            sub = f"peak PSI {_svg.fmt_number(float(peak_ys.max()))} ({peak_labels['feature']})"
            if drifting:
                sub = "drifting: " + ", ".join(drifting[:4]) + (" …" if len(drifting) > 4 else "") + " · " + sub
            cards.append(("Features drifting at the end", f"{len(drifting)} of {len(features)}", sub, "bad" if drifting else ""))
        skipped = log.malformed + sum(log.newer.values())
        if skipped:
            cards.append(("Lines skipped", f"{skipped:,}", "see the notes above", "warn"))
        return "".join(
            f'<div class="card stat {cls}"><div class="label">{esc(label)}</div><div class="value">{esc(value)}</div>'
            f'<div class="sub">{esc(sub)}</div></div>'
            for label, value, sub, cls in cards
        )

    def instances(self) -> list[str]:
        """Every instance shown: the fleet's first, then the processes."""
        fleet = list(self.fleet.log.instances) if self.fleet is not None else []
        return fleet + list(self.log.instances)

    # -- fleet -------------------------------------------------------------------------------
    def fleet_source(self) -> Page | None:
        """The page whose log holds the fleet's series: the fleet's own, or this one when the
        log holds fleet snapshots only; None without any."""
        if self.fleet is not None:
            return self.fleet
        return self if self.log.fleet else None

    def fleet_card(self) -> tuple[str, str, str, str] | None:
        src = self.fleet_source()
        if src is None:
            return None
        n = src.latest("mlmon_fleet_processes", agg=sum)
        parts = []
        for label, name, match, fmt in (
            ("precision", "mlmon_precision", None, _svg.fmt_ratio),
            ("F1 (macro)", "mlmon_f1", {"average": "macro"}, _svg.fmt_ratio),
            ("MAE", "mlmon_mae", None, _svg.fmt_number),
            ("p99", "mlmon_latency_seconds", {"quantile": "0.99"}, _svg.fmt_seconds),
            ("error ratio", "mlmon_error_ratio", None, _svg.fmt_ratio),
        ):
            v = src.latest(name, match)
            if v is not None:
                parts.append(f"{label} {fmt(v)}")
        value = "–" if n is None else f"{_svg.fmt_number(n)} process{'es' if n != 1 else ''}"
        who = listed(src.log.fleet, 3)
        return (f"Fleet ({who}), latest", value, " · ".join(parts), "fleet")

    def fleet_section(self) -> str | None:
        src = self.fleet_source()
        if src is None:
            return None
        charts = [src.chart(c) for c in FLEET_CHARTS] + [self.chart(c) for c in FLEET_HEALTH]
        parts = [p for p in charts if p is not None]
        fleet = src.log.fleet
        n = sum(fleet.values())
        intro = (
            f'<p class="note wide">The fleet snapshot{"s" if n != 1 else ""} of {esc(listed(fleet, 5))} '
            f"({n:,}): every process's window merged by the fleet's leader, each value computed on "
            "the merged counts (never an average of the processes' values)."
            + (" The processes follow, each on its own." if self.fleet is not None else "")
            + "</p>"
        )
        return self.section("fleet", FLEET_TITLE, "", intro + "".join(parts))

    # -- alerts ------------------------------------------------------------------------------
    def collect_alerts(self) -> None:
        """Fill ``alert_rows`` (None: no rule in the log) and ``alert_rules`` (every rule seen)."""
        log = self.log
        keys = log.by_name.get("mlmon_alert_firing", [])
        rules = list(dict.fromkeys(dict(k[1]).get("rule", "?") for k in keys))
        rules += [r for r in dict.fromkeys(e.rule for e in log.events) if r not in rules]
        self.alert_rules = rules
        if not keys and not log.events:
            self.alert_rows = None
            return
        rows: dict[tuple[str, str, Labels], AlertRow] = {}
        for key in keys:
            rule = dict(key[1]).get("rule", "?")
            series_labels = tuple(kv for kv in key[1] if kv[0] != "rule")
            row = rows.setdefault((key[2], rule, series_labels), AlertRow(rule, key[2], series_labels))
            xs, ys = log.series[key]
            for t, v in zip(xs.tolist(), ys.tolist(), strict=True):
                if v >= 0.5:
                    row.states[t] = "firing"
        by_rule: dict[tuple[str, str], list[AlertRow]] = {}
        for row in rows.values():
            by_rule.setdefault((row.instance, row.rule), []).append(row)
        joined: dict[tuple[str, str, Labels], AlertRow] = {}
        for e in log.events:
            best = joined.get((e.instance, e.rule, e.labels))
            if best is None:
                # The firing sample carries the labels that tell instances of a rule apart; the
                # event carries all the series' labels. Join on the sample's being a subset.
                ev_pairs = set(e.labels)
                for row in by_rule.get((e.instance, e.rule), ()):
                    if set(row.labels) <= ev_pairs and (best is None or len(row.labels) > len(best.labels)):
                        best = row
                if best is None:
                    if len(rows) >= MAX_ALERT_ROWS:  # a log with alerts on ever new labels
                        self.dropped_events += 1
                        continue
                    best = rows[(e.instance, e.rule, e.labels)] = AlertRow(e.rule, e.instance, e.labels)
                    by_rule.setdefault((e.instance, e.rule), []).append(best)
                joined[(e.instance, e.rule, e.labels)] = best
            if e.state == "firing" or best.states.get(e.t) != "firing":
                best.states[e.t] = e.state
            best.severity = e.severity or best.severity
            if e.message:
                best.messages[e.t] = e.message
        for row in rows.values():
            row.finish(log.stamps_of(row.instance))
        self.alert_rows = sorted(
            (r for r in rows.values()),
            key=lambda r: (r.episodes[0].start if r.episodes else math.inf, r.rule, r.labels, r.instance),
        )

    def alerts_section(self) -> str:
        if self.alert_rows is None:
            return self.section("alerts", "Alert timeline", ALERT_NOTE, None)
        active = [r for r in self.alert_rows if r.episodes]
        quiet = [r for r in self.alert_rules if r not in {a.rule for a in active}]
        parts = []
        if active:
            tl_rows = []
            for r in active[:MAX_TIMELINE_ROWS]:
                spans = [
                    _svg.Span(e.start, e.end, e.state, f"{self.row_label(r)}: {e.state} {utc(e.start, self.when)}–{utc(e.end, self.when)} UTC"
                              + (" (still at the end of the log)" if e.open else "") + (f" · {e.message}" if e.message else ""))
                    for e in r.episodes[:MAX_SPANS]
                ]  # fmt: skip
                tl_rows.append(_svg.TimelineRow(self.row_label(r), spans))
            svg = _svg.timeline(tl_rows, chart_id="alert-timeline", x_range=(self.t0, self.t1), colors=ALERT_COLORS)
            parts.append(
                '<figure class="card wide"><figcaption><h3>When each rule was pending or firing</h3>'
                '<p class="metric">mlmon_alert_firing{rule}, alert events</p></figcaption>' + svg + "</figure>"
            )
            if len(active) > MAX_TIMELINE_ROWS:
                parts.append(f'<p class="note wide">{len(active) - MAX_TIMELINE_ROWS} more alert rows not drawn (at most {MAX_TIMELINE_ROWS}).</p>')
            parts.append(self.alert_table(active))
        else:
            parts.append('<div class="card wide"><p>No rule was pending or firing in this log.</p></div>')
        if quiet:
            parts.append(
                f'<p class="note wide">Rules evaluated that never went pending or firing: {esc(listed(quiet, 20))}.</p>'
            )
        return self.section("alerts", "Alert timeline", ALERT_NOTE, "".join(parts), full=True)

    def row_label(self, r: AlertRow) -> str:
        sel = ",".join(f"{k}={v}" for k, v in r.labels)
        text = r.rule + (f"{{{sel}}}" if sel else "")
        return f"{text} · {r.instance}" if self.multi else text

    def alert_table(self, rows: Sequence[AlertRow]) -> str:
        episodes = sorted(((e, r) for r in rows for e in r.episodes), key=lambda er: er[0].start)
        body = []
        for e, r in episodes[:MAX_EPISODES]:
            end = "still at the end" if e.open else utc(e.end, self.when)
            body.append(
                f'<tr class="{esc(e.state)}"><td>{esc(self.row_label(r))}</td><td>{esc(r.severity)}</td>'
                f"<td>{esc(e.state)}</td><td>{esc(utc(e.start, self.when))}</td><td>{esc(end)}</td>"
                f"<td>{esc(duration(e.end - e.start))}</td><td>{esc(e.message)}</td></tr>"
            )
        more = (
            f'<p class="note">{len(episodes) - MAX_EPISODES} more episodes not listed.</p>'
            if len(episodes) > MAX_EPISODES else ""
        )  # fmt: skip
        return (
            '<div class="card wide table-card"><table class="alerts"><thead><tr><th>rule</th><th>severity</th>'
            "<th>state</th><th>from (UTC)</th><th>to</th><th>for</th><th>last message</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table>" + more + "</div>"
        )

    # -- drift -------------------------------------------------------------------------------
    def drift_section(self) -> str:
        log = self.log
        rows_src: list[tuple[str, str, FloatArray, FloatArray]] = []
        for labels, inst, xs, ys in log.select("mlmon_feature_drift_psi", {"feature": "*"}):
            rows_src.append((labels["feature"], inst, xs, ys))
        for _, inst, xs, ys in log.select("mlmon_output_drift_psi"):
            rows_src.append(("(model outputs)", inst, xs, ys))
        if not rows_src:
            return self.section("drift", "Drift", DRIFT_NOTE, None)
        note = ""
        if len(rows_src) > MAX_HEAT_ROWS:
            keep = sorted(range(len(rows_src)), key=lambda i: -float(rows_src[i][3].max()))[:MAX_HEAT_ROWS]
            note = f'<p class="note">{len(rows_src) - MAX_HEAT_ROWS} rows with the lowest peak PSI not drawn.</p>'
            rows_src = [rows_src[i] for i in sorted(keep)]
        edges = self.heat_edges()
        heat_rows = []
        for feature, inst, xs, ys in rows_src:
            label = f"{feature} · {inst}" if self.multi else feature
            heat_rows.append(_svg.HeatRow(label, heat_cells(edges, xs, ys)))
        svg = _svg.heat_map(heat_rows, chart_id="drift-heatmap", edges=edges.tolist(), stops=PSI_STOPS,
                            legend_ticks=PSI_TICKS, value_name="PSI", value_format=_svg.fmt_number)  # fmt: skip
        fig = (
            '<figure class="card wide"><figcaption><h3>Population stability index per feature over time</h3>'
            '<p class="metric">mlmon_feature_drift_psi{feature}, mlmon_output_drift_psi · each cell: the highest '
            "value in its time bin</p></figcaption>" + svg + note + "</figure>"
        )
        return self.section("drift", "Drift", DRIFT_NOTE, fig + self.drift_table(rows_src), full=True)

    def heat_edges(self) -> FloatArray:
        """Time-bin edges: one column per snapshot of a single instance, else even bins."""
        log = self.log
        if len(log.stamps) == 1:
            stamps = np.unique(np.asarray(next(iter(log.stamps.values()))))
            if stamps.size <= MAX_HEAT_BINS:
                mids = (stamps[1:] + stamps[:-1]) / 2
                return np.concatenate(([self.t0], mids, [self.t1]))
        per_instance = max(len(s) for s in log.stamps.values())
        n_bins = max(1, min(MAX_HEAT_BINS, per_instance))
        return np.linspace(self.t0, self.t1, n_bins + 1)

    def drift_table(self, rows_src: Sequence[tuple[str, str, FloatArray, FloatArray]]) -> str:
        status: dict[tuple[str, str], float] = {}
        for labels, inst, _, ys in self.log.select("mlmon_feature_drift_status", {"feature": "*"}):
            if ys.size:
                status[(labels["feature"], inst)] = float(ys[-1])
        body = []
        for feature, inst, xs, ys in rows_src:
            i = int(np.argmax(ys))
            st = status.get((feature, inst))
            word = "–" if st is None else STATUS.get(int(st), f"{st:g}")
            who = f"{feature} · {inst}" if self.multi else feature
            body.append(
                f'<tr class="status-{esc(word)}"><td>{esc(who)}</td><td>{esc(_svg.fmt_number(float(ys[-1])))}</td>'
                f"<td>{esc(_svg.fmt_number(float(ys[i])))} at {esc(utc(float(xs[i]), self.when))}</td><td>{esc(word)}</td></tr>"
            )
        return (
            '<div class="card wide table-card"><table class="drift"><thead><tr><th>feature</th><th>PSI, latest</th>'
            "<th>PSI, peak (UTC)</th><th>status at the end</th></tr></thead><tbody>" + "".join(body) + "</tbody></table></div>"
        )

    # -- whole page --------------------------------------------------------------------------
    def build_notes(self) -> None:
        log = self.log
        if log.malformed:
            whys = "; ".join(
                f"{why}: {seen[0]} (line{'s' if seen[0] > 1 else ''} "
                + ", ".join(str(n) for n in seen[1:]) + (", …" if seen[0] > len(seen) - 1 else "") + ")"
                for why, seen in log.malformed_why.items()
            )  # fmt: skip
            self.notes.append(f"Skipped {log.malformed} malformed line{'s' if log.malformed > 1 else ''} — {whys}.")
        if log.newer:
            n = sum(log.newer.values())
            versions = listed((str(v) for v in sorted(log.newer)), 5)
            self.notes.append(
                f"Skipped {n} line{'s' if n > 1 else ''} written by a newer mlmon (format version {versions}); "
                f"this mlmon reads format version {FORMAT_VERSION}. Upgrade mlmon to report on them."
            )
        if log.duplicates:
            self.notes.append(f"Ignored {log.duplicates} duplicate line{'s' if log.duplicates > 1 else ''} (a snapshot seen before).")
        others = {m: n for m, n in log.models.items() if m != log.model}
        if others:
            models = listed(f"{m} ({n} snapshot{'s' if n > 1 else ''})" for m, n in others.items())
            self.notes.append(f"This log also holds other models: {models}. Pick one with --model NAME.")
        if log.hidden:
            self.notes.append(
                f"Showing instance {listed(self.instances())} only; hidden by --instance: {listed(log.hidden)}."
            )
        if log.fleet and self.fleet is None:
            self.notes.append(
                f"Every snapshot in this log is a fleet snapshot ({listed(log.fleet)}, merged by the "
                "fleet's leader): the sections below show the fleet."
            )
        if len(log.versions) > 1:
            versions = listed(f"{v} ({n})" for v, n in log.versions.items())
            self.notes.append(f"Several model versions in this log (snapshots): {versions}.")
        if self.dropped_events:
            self.notes.append(
                f"Ignored {self.dropped_events:,} alert events of alert instances beyond the first "
                f"{MAX_ALERT_ROWS:,} (rule, labels and instance)."
            )
        if log.dropped_segment_samples:
            self.notes.append(
                f"Dropped {log.dropped_segment_samples:,} segment-labelled samples of segment names beyond the "
                f"first {log.max_segment_names:,} (or of per-segment series beyond the report's cap)."
            )
        if log.dropped_series:
            self.notes.append(
                f"Dropped {log.dropped_series:,} samples of series beyond the first {log.max_series:,} "
                "(distinct metric, labels and instance): the log has more series than a page can show."
            )

    def html(self) -> str:
        log = self.log
        assert log.model is not None
        self.collect_alerts()
        self.build_notes()
        fleet = self.fleet_section()
        body = ([fleet] if fleet is not None else []) + [self.alerts_section()]
        for sid, title, empty, charts in SECTIONS:
            if sid == "outcomes":
                body.append(self.drift_section())
            body.append(self.chart_section(sid, title, empty, charts))
        # Shown only when the log holds segment-labelled samples (no empty placeholder).
        segments = segments_body(self)
        if segments is not None:
            body.append(self.section("segments", SECTION_TITLES["segments"], "", segments, full=True))
        cards = self.cards()
        versions = [v for v in log.versions if v != "–"]
        version = f'<span class="version">version {esc(listed(versions, 5))}</span>' if versions else ""
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.notes)
        nav = "".join(
            f'<a href="#{sid}"{EMPTY_CLASS if sid in self.omitted else ""}>{esc(SECTION_TITLES[sid])}</a>'
            for sid in ("fleet", "alerts", "service", "resources", "outputs", "quality", "features", "drift", "outcomes", "segments")
            if (sid != "fleet" or fleet is not None) and (sid != "segments" or segments is not None)
        )
        internal = [
            (label, self.total(name))
            for label, name in (("internal errors", "mlmon_internal_errors_total"), ("dropped records", "mlmon_dropped_total"), ("emit errors", "mlmon_emit_errors_total"))
        ]  # fmt: skip
        internal_text = ", ".join(f"{label} {_svg.fmt_number(v)}" for label, v in internal if v is not None)
        from mlmon import __version__

        page = "".join((
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            # No network, no script: even a label that slipped past escaping could not run.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="mlmon {esc(__version__)}">',
            f"<title>mlmon report: {esc(log.model)}</title><style>{CSS}</style></head><body>",
            f'<header><h1>mlmon report: <span class="model">{esc(log.model)}</span> {version}</h1>',
            f'<p class="range">{esc(utc(self.start))} – {esc(utc(self.end))} UTC · {esc(self.source)}</p>',
            f"<nav>{nav}</nav></header>",
            f'<ul class="notes">{notes}</ul>' if notes else "",
            f'<section id="summary" data-section="summary" class="cards">{cards}</section>',
            *body,
            f'<footer>Generated by mlmon {esc(__version__)} at {esc(utc(time.time()))} UTC from {esc(self.source)} · '
            f"{len(self.instances())} instance{'s' if len(self.instances()) > 1 else ''}: {esc(listed(self.instances(), 20))}"
            + (f" · mlmon itself: {esc(internal_text)}" if internal_text else "")
            + f" · charts show at most {self.max_points} points per series (min and max kept)</footer>",
            "</body></html>\n",
        ))  # fmt: skip
        # Every text was escaped and cleaned on its way in; this pass makes sure of it.
        return clean(page)
