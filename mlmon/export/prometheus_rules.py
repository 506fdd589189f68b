"""Prometheus alerting rules from mlmon rules, so the same alerts can run in Prometheus.

The YAML is written by hand (no YAML library): every string is a single-quoted scalar, or a
double-quoted one with escapes when it holds characters a single-quoted scalar cannot.

What translates (see ``docs/alerts.md``, "Prometheus export"):

===================  ==========================================================================
rule                 PromQL
===================  ==========================================================================
Threshold            ``m > above`` / ``m < below`` (both: ``or``)
PercentDrop          ``m < (1 - p/100) * B``
PercentChange        ``m > (1 + p/100) * B or m < (1 - p/100) * B``
VarianceChange       ``m > f * B or m < B / f``
Absent               ``(increase(c[D]) == 0 and c offset D) or absent_over_time(c[D])``
===================  ==========================================================================

B is a constant for a fixed baseline (or a ``"reference"`` baseline when ``reference_value``
gives a number), and ``(avg_over_time(m[T] offset E) > 0)`` for ``Baseline.trailing(T)``, E being
the excluded recent period (the monitor's window by default). ``min_samples`` becomes
``and on(job, instance, exported_instance, model, version) (<sample count> >= n)``; ``for_``
becomes ``for:`` and ``resolve_after`` ``keep_firing_for:`` (Prometheus 2.42+). Pinned baselines,
reference baselines without a number and F-tests have no PromQL equivalent: those rules are left
out, listed in YAML comments and in :attr:`PrometheusRulesExport.skipped`. Hysteresis and
cooldown act only inside the process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import attrs

from mlmon.alerts.engine import ReferenceValue
from mlmon.alerts.rules import (
    Absent,
    Baseline,
    PercentChange,
    PercentDrop,
    Rule,
    Threshold,
    VarianceChange,
)
from mlmon.naming import PrometheusRenderer

__all__ = ["PrometheusRulesExport", "export_prometheus_rules", "prometheus_rules"]

log = logging.getLogger("mlmon.export")

# The series that identify one monitored process once Prometheus has scraped it: the target's
# job and instance, mlmon's own instance (renamed exported_instance unless honor_labels), and
# the model identity.
IDENTITY = "on(job, instance, exported_instance, model, version)"

SEGMENT = "segment"
# The overall series carry no segment label (a segment's series carry segment="<name>"): a
# rule on the overall series selects segment="" so that no segment's series ever matches it.
OVERALL = f'{SEGMENT}=""'

_RESERVED_LABELS = ("model", "version", "instance", "job")


@attrs.frozen
class PrometheusRulesExport:
    """The result of :func:`export_prometheus_rules`.

    Attributes:
        text: the rule file (YAML).
        exported: names of the rules written as Prometheus alerts.
        skipped: ``(rule name, reason)`` of the rules PromQL cannot express.

    >>> from mlmon.alerts import Absent, VarianceChange
    >>> out = export_prometheus_rules([Absent(), VarianceChange("mlmon_output_variance",
    ...                                                         factor=2, test="f")])
    >>> out.exported, [name for name, _ in out.skipped]
    (('calls_total_absent_5m',), ['output_variance_change_x2'])
    """

    text: str
    exported: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]


class _Skip(Exception):
    """A rule PromQL cannot express; the message says why."""


# --------------------------------------------------------------------------- text helpers


def _printable(ch: str) -> bool:
    o = ord(ch)
    if o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029, 0xFEFF):
        return False
    return not 0xD800 <= o <= 0xDFFF


def yaml_str(text: str) -> str:
    """A YAML scalar that reads back as exactly ``text``.

    >>> print(yaml_str('up{job="a"} == 0'), yaml_str("it's"), yaml_str("two\\nlines"))
    'up{job="a"} == 0' 'it''s' "two\\nlines"
    """
    if all(_printable(ch) for ch in text):
        return "'" + text.replace("'", "''") + "'"
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"'


def _promql_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _template_safe(text: str) -> str:
    # Annotations are Go templates: text of ours that holds "{{" or "}}" is printed literally.
    text = text.replace("{{", "\x00").replace("}}", "\x01")
    return text.replace("\x00", '{{ "{{" }}').replace("\x01", '{{ "}}" }}')


def _comment(text: str) -> str:
    return " ".join(text.split())


def duration(seconds: float) -> str:
    """A Prometheus duration: ``60`` → ``1m``, ``90`` → ``90s``, ``0.25`` → ``250ms``.

    >>> duration(3600), duration(5400), duration(90), duration(0.25), duration(0)
    ('1h', '90m', '90s', '250ms', '0s')
    """
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _num(x: float) -> str:
    text = format(x, ".12g")
    return text if "e" not in text else format(x, ".12e")


def _label_name(key: str) -> str:
    # As the Prometheus emitter renders it.
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in key) or "_"
    if safe[0].isdigit():
        safe = "_" + safe
    return "exported_" + safe if safe in _RESERVED_LABELS else safe


# --------------------------------------------------------------------------- translation


class _Translator:
    def __init__(
        self,
        model: str | None,
        job: str | None,
        window: float,
        reference_value: ReferenceValue | None,
        approximate: bool,
    ) -> None:
        self.renderer = PrometheusRenderer()
        self.ident: list[str] = []
        if job is not None:
            self.ident.append(f"job={_promql_str(job)}")
        if model is not None:
            self.ident.append(f"model={_promql_str(model)}")
        self.window = window
        self.reference_value = reference_value
        self.approximate = approximate

    def name(self, metric: str, labels: tuple[tuple[str, str], ...] = ()) -> str:
        return self.renderer.family(metric, labels)[2]

    def selector(self, rule: Rule) -> str:
        parts = list(self.ident)
        for k, v in rule.labels:
            op = '=~".+"' if v == "*" else f"={_promql_str(v)}"
            parts.append(f"{_label_name(k)}{op}")
        if self.segment_matcher(rule) is None:
            parts.append(OVERALL)
        return "{" + ",".join(parts) + "}"

    @staticmethod
    def segment_matcher(rule: Rule) -> str | None:
        """The rule's own ``segment`` matcher (a rule on segments' series), or None."""
        for k, v in rule.labels:
            if _label_name(k) == SEGMENT:
                return '=~".+"' if v == "*" else f"={_promql_str(v)}"
        return None

    def series(self, rule: Rule) -> str:
        return self.name(rule.metric, rule.labels) + self.selector(rule)

    def ident_selector(self, rule: Rule) -> str:
        """The identity, and the rule's segment (``segment=""`` for the overall series)."""
        seg = self.segment_matcher(rule)
        return "{" + ",".join([*self.ident, OVERALL if seg is None else f"{SEGMENT}{seg}"]) + "}"

    def count_clause(self, rule: Rule) -> str | None:
        n = rule.min_samples
        source = rule.count_source
        if n <= 0 or source is None:
            return None
        sel = self.ident_selector(rule)
        if source == "labels":
            return f"{self.name('mlmon_labels_window')}{sel} >= {n}"
        if source == "outputs":
            return f"{self.name('mlmon_output_count')}{sel} >= {n}"
        metric = "mlmon_rows_per_second" if source == "rows" else "mlmon_calls_per_second"
        return f"{self.name(metric)}{sel} * {_num(self.window)} >= {n}"

    def baseline(self, rule: Rule, spec: Baseline) -> tuple[str, float | None]:
        """``(PromQL of the baseline, its value when it is a constant)``."""
        if spec.kind == "fixed":
            assert spec.value is not None
            return _num(spec.value), spec.value
        if spec.kind == "reference":
            if any(v == "*" for _, v in rule.labels):
                raise _Skip("baseline 'reference' differs per series of a wildcard selector")
            value = None
            if self.reference_value is not None:
                value = self.reference_value(rule.metric, dict(rule.labels))
            if value is None or not math.isfinite(value) or value <= 0:
                raise _Skip(
                    "baseline 'reference' has no number here (pass reference_value, or "
                    "--reference on the command line)"
                )
            return _num(float(value)), float(value)
        if spec.kind == "pinned":
            raise _Skip(
                "baseline 'pinned' is kept inside the process; PromQL has no equivalent "
                "(use a number or Baseline.trailing)"
            )
        assert spec.seconds is not None
        exclude = self.window if spec.exclude is None else spec.exclude
        m = self.series(rule)
        offset = f" offset {duration(exclude)}" if exclude > 0 else ""
        return f"(avg_over_time({m}[{duration(spec.seconds)}]{offset}) > 0)", None

    def coverage(self, rule: Rule, spec: Baseline) -> str | None:
        # The baseline is used once its period is covered for min_coverage of its length: the
        # series must already have existed that long before the period's end.
        if spec.kind != "trailing":
            return None
        assert spec.seconds is not None
        exclude = self.window if spec.exclude is None else spec.exclude
        return f"{self.series(rule)} offset {duration(exclude + spec.min_coverage * spec.seconds)}"

    def condition(self, rule: Rule) -> tuple[str, list[str]]:
        """``(PromQL condition without the sample-count clause, notes)``."""
        notes: list[str] = []
        m = self.series(rule)
        if isinstance(rule, Threshold):
            parts = []
            if rule.above is not None:
                parts.append(f"{m} > {_num(rule.above)}")
            if rule.below is not None:
                parts.append(f"{m} < {_num(rule.below)}")
            return " or ".join(parts), notes
        if isinstance(rule, Absent):
            d = duration(rule.for_)
            expr = f"(increase({m}[{d}]) == 0 and {m} offset {d})"
            if rule.min_samples > 0:
                return f"{expr} and {m} >= {rule.min_samples}", notes
            return f"{expr} or absent_over_time({m}[{d}])", notes
        if isinstance(rule, (PercentDrop, PercentChange, VarianceChange)):
            spec = rule.baseline
            if isinstance(rule, VarianceChange) and rule.test == "f":
                if not self.approximate:
                    raise _Skip(
                        "the F-test (test='f') needs sample counts PromQL cannot combine "
                        "(approximate=True exports the ratio condition alone)"
                    )
                notes.append("the F-test is left out: this alert may fire on small samples")
            b, value = self.baseline(rule, spec)
            if isinstance(rule, PercentDrop):
                k = 1.0 - rule.percent / 100.0
                expr = f"{m} < {_num(k * value)}" if value is not None else f"{m} < {_num(k)} * {b}"
            elif isinstance(rule, PercentChange):
                hi, lo = 1.0 + rule.percent / 100.0, 1.0 - rule.percent / 100.0
                if value is not None:
                    expr = f"{m} > {_num(hi * value)} or {m} < {_num(lo * value)}"
                else:
                    expr = f"{m} > {_num(hi)} * {b} or {m} < {_num(lo)} * {b}"
            else:
                f = rule.factor
                if value is not None:
                    expr = f"{m} > {_num(f * value)} or {m} < {_num(value / f)}"
                else:
                    expr = f"{m} > {_num(f)} * {b} or {m} < {b} / {_num(f)}"
            cover = self.coverage(rule, spec)
            if cover is not None:
                expr = f"({expr}) and {cover}"
            return expr, notes
        raise _Skip(f"no translation for {type(rule).__name__}")  # pragma: no cover

    def expr(self, rule: Rule) -> tuple[str, list[str]]:
        cond, notes = self.condition(rule)
        count = self.count_clause(rule)
        if count is not None and not isinstance(rule, Absent):
            # A segment's sample count is its own: the segment joins the identity.
            on = IDENTITY if self.segment_matcher(rule) is None else IDENTITY[:-1] + f", {SEGMENT})"
            cond = f"({cond}) and {on} ({count})"
        if rule.cooldown > 0:
            notes.append(f"cooldown ({duration(rule.cooldown)}) acts only inside the process")
        return cond, notes


def _annotations(rule: Rule) -> list[tuple[str, str]]:
    what = _template_safe(rule.summary or rule.describe())
    desc = _template_safe(
        f"mlmon rule {rule.name} ({type(rule).__name__}, min_samples {rule.min_samples}): "
        f"{rule.describe()}."
    )
    return [
        ("summary", "{{ $labels.model }}: " + what + " (value {{ $value | printf \"%.4g\" }})"),
        ("description", desc),
    ]


def export_prometheus_rules(
    rules: Iterable[Rule],
    model: str | None = None,
    job: str | None = None,
    group: str = "mlmon",
    *,
    window: float = 300.0,
    reference_value: ReferenceValue | None = None,
    approximate: bool = False,
    keep_firing_for: bool = True,
    interval: float | None = None,
) -> PrometheusRulesExport:
    """Translate mlmon rules into one Prometheus rule group.

    Args:
        rules: mlmon rules (names must be unique).
        model: restrict every alert to ``model="..."``.
        job: restrict every alert to ``job="..."`` (the scrape job).
        group: the rule group's name.
        window: the monitor's window in seconds: the period a trailing baseline leaves out, and
            the factor from ``mlmon_rows_per_second`` / ``mlmon_calls_per_second`` to counts.
        reference_value: ``reference_value(metric, labels)`` for ``"reference"`` baselines
            (see :func:`mlmon.alerts.reference_lookup`).
        approximate: export F-test rules without their test, with a note.
        keep_firing_for: write ``resolve_after`` as ``keep_firing_for`` (Prometheus 2.42+).
        interval: the group's evaluation interval in seconds (None: the global one).

    Returns:
        A :class:`PrometheusRulesExport` with the YAML text and what was skipped and why.

    Raises:
        ValueError: duplicate rule names, a bad group name or window.
    """
    rule_list = list(rules)
    names = [r.name for r in rule_list]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"rule names must be unique, got {dupes!r} more than once")
    if not isinstance(group, str) or not group.strip():
        raise ValueError(f"group must be a non-empty string, got {group!r}")
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not (window > 0 and math.isfinite(window)):
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")
    tr = _Translator(model, job, float(window), reference_value, approximate)
    body: list[str] = []
    exported: list[str] = []
    skipped: list[tuple[str, str]] = []
    for rule in rule_list:
        try:
            expr, notes = tr.expr(rule)
        except _Skip as exc:
            skipped.append((rule.name, str(exc)))
            continue
        exported.append(rule.name)
        for note in notes:
            body.append(f"      # note: {_comment(note)}")
        body.append(f"      - alert: {yaml_str(rule.name)}")
        body.append(f"        expr: {yaml_str(expr)}")
        hold = 0.0 if isinstance(rule, Absent) else rule.for_
        body.append(f"        for: {duration(hold)}")
        if keep_firing_for and rule.resolve_after > 0:
            body.append(f"        keep_firing_for: {duration(rule.resolve_after)}")
        body.append("        labels:")
        body.append(f"          severity: {yaml_str(rule.severity)}")
        body.append("        annotations:")
        for key, text in _annotations(rule):
            body.append(f"          {key}: {yaml_str(text)}")
    head = [
        f"# Prometheus alerting rules generated by mlmon from {len(rule_list)} rule(s): "
        f"{len(exported)} exported, {len(skipped)} not expressible in PromQL.",
        "# Hysteresis (clear_ratio, hysteresis) and cooldown act only inside the process; here",
        "# keep_firing_for (resolve_after) holds an alert for a while after its condition clears.",
    ]
    for name, why in skipped:
        head.append(f"# not exported: {name}: {_comment(why)}")
    lines = [*head, "groups:", f"  - name: {yaml_str(group)}"]
    if interval is not None:
        lines.append(f"    interval: {duration(interval)}")
    lines.append("    rules:" if exported else "    rules: []")
    lines.extend(body)
    return PrometheusRulesExport("\n".join(lines) + "\n", tuple(exported), tuple(skipped))


def prometheus_rules(
    rules: Iterable[Rule],
    model: str | None = None,
    job: str | None = None,
    group: str = "mlmon",
    **options: Any,
) -> str:
    """The Prometheus alerting-rules YAML equivalent to ``rules``, where PromQL can say it.

    Rules PromQL cannot express are left out, listed in comments at the top of the file and
    logged at WARNING; :func:`export_prometheus_rules` returns them as a list. ``options`` are
    those of :func:`export_prometheus_rules`.

    >>> from mlmon import alerts
    >>> print(prometheus_rules([alerts.Threshold("mlmon_latency_seconds", quantile=0.99,
    ...                                          above=0.2, for_=60, name="slow")],
    ...                        model="fraud"), end="")
    # Prometheus alerting rules generated by mlmon from 1 rule(s): 1 exported, 0 not expressible in PromQL.
    # Hysteresis (clear_ratio, hysteresis) and cooldown act only inside the process; here
    # keep_firing_for (resolve_after) holds an alert for a while after its condition clears.
    groups:
      - name: 'mlmon'
        rules:
          - alert: 'slow'
            expr: '(mlmon_latency_window_seconds{model="fraud",quantile="0.99",segment=""} > 0.2) and on(job, instance, exported_instance, model, version) (mlmon_calls_per_second{model="fraud",segment=""} * 300 >= 100)'
            for: 1m
            keep_firing_for: 1m
            labels:
              severity: 'warning'
            annotations:
              summary: '{{ $labels.model }}: mlmon_latency_seconds{quantile="0.99"} > 0.2 (value {{ $value | printf "%.4g" }})'
              description: 'mlmon rule slow (Threshold, min_samples 100): mlmon_latency_seconds{quantile="0.99"} > 0.2.'
    """
    result = export_prometheus_rules(rules, model, job, group, **options)
    for name, why in result.skipped:
        log.warning("mlmon export: rule %r not exported to Prometheus: %s", name, why)
    return result.text
