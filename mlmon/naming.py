"""Series names for each backend: sanitised once, checked for collisions, cached.

Every model name, version, instance, feature name, class label, outcome name and rule name
reaches a backend only through these renderers, so nothing a user or a data set chooses can
inject a line, a path segment, a tag or a label.

Rules (see ``docs/emitters.md``):

* StatsD / Graphite dotted paths: ``[prefix.]model[.version][.instance].metric[.label...]``.
  Every segment keeps only ``[A-Za-z0-9_-]``; accented letters lose their accent, every other
  character becomes ``_``. Labels follow in sorted label-key order, one segment each:
  ``quantile="0.99"`` → ``p99``, ``le="0.005"`` → ``le_0_005``, ``le="+Inf"`` → ``le_inf``,
  any other label ``key="value"`` → ``key_value``.
* Tag styles (Graphite ``;k=v``, DogStatsD ``|#k:v``): the name is ``[prefix.]metric``; model,
  version, instance and the labels become tags whose values keep ``[A-Za-z0-9_.-]``.
* Prometheus: canonical names, label values escaped (``\\\\``, ``\\"``, ``\\n``), never altered.

Two different values that sanitise to the same text would silently share one series; the first
one seen keeps the plain name and any later one gets a short hash suffix (``_h1a2b3c4d``), and
the renderer counts it. :func:`check_collisions` lets a monitor reject such names when it is
configured.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import unicodedata
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal

from mlmon.snapshot import CATALOG, Labels

__all__ = [
    "MAX_NAME_CHARS",
    "PathRenderer",
    "PrometheusRenderer",
    "Style",
    "check_collisions",
    "check_name",
    "escape_help",
    "escape_label_value",
    "format_number",
    "format_prometheus_value",
    "le_segment",
    "name_problem",
    "quantile_segment",
    "sanitize_segment",
    "sanitize_tag_value",
    "series_problem",
]

log = logging.getLogger("mlmon.emitters")

Style = Literal["path", "graphite_tags", "dogstatsd"]

_MAX_SEGMENT = 200  # whisper file names must stay under 255 bytes with ".wsp"
_SEGMENT_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_TAG_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_PROM_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def _ascii_fold(value: str) -> str:
    # "é" keeps its "e"; characters with no ASCII base are left for the caller to replace.
    if value.isascii():
        return value
    out = []
    for ch in value:
        if ch.isascii():
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if c.isascii())
        out.append(base if base else "\x00")
    return "".join(out)


def _hash8(value: str) -> str:
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def _bounded(text: str, original: str) -> str:
    if len(text) <= _MAX_SEGMENT:
        return text
    return f"{text[:_MAX_SEGMENT]}_h{_hash8(original)}"


def sanitize_segment(value: str) -> str:
    """One dotted-path segment: only ``[A-Za-z0-9_-]``, never empty, at most ~210 characters.

    >>> sanitize_segment("fraud model\\nevil.metric 1 0")
    'fraud_model_evil_metric_1_0'
    >>> sanitize_segment("âge"), sanitize_segment("")
    ('age', '_')
    """
    text = _SEGMENT_UNSAFE.sub("_", _ascii_fold(value))
    return _bounded(text, value) if text else "_"


def sanitize_tag_value(value: str) -> str:
    """A Graphite / DogStatsD tag value: only ``[A-Za-z0-9_.-]``, never empty.

    >>> sanitize_tag_value("a b;c=d"), sanitize_tag_value("0.99")
    ('a_b_c_d', '0.99')
    """
    text = _TAG_UNSAFE.sub("_", _ascii_fold(value))
    return _bounded(text, value) if text else "_"


def _sanitize_tag_key(key: str) -> str:
    text = _TAG_KEY_UNSAFE.sub("_", _ascii_fold(key)) or "_"
    # Graphite reserves the tag "name" for the metric path itself.
    return "name_" if text == "name" else text


def _positional(value: float) -> str:
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_number(value: float) -> str:
    """A finite float as StatsD and Graphite read it: integral values without ``.0``, no exponent.

    >>> format_number(3.0), format_number(0.25), format_number(1e-05), format_number(-0.0)
    ('3', '0.25', '0.00001', '0')
    """
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return _positional(v)


def format_prometheus_value(value: float) -> str:
    """A float in the text exposition format (``NaN``, ``+Inf``, ``-Inf`` included).

    >>> format_prometheus_value(2.0), format_prometheus_value(float("inf")), format_prometheus_value(0.1)
    ('2', '+Inf', '0.1')
    """
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def quantile_segment(value: str) -> str | None:
    """``"0.99"`` → ``"p99"``, ``"0.999"`` → ``"p99_9"``, ``"1"`` → ``"p100"``; None if not a number.

    >>> quantile_segment("0.5"), quantile_segment("0.999"), quantile_segment("1")
    ('p50', 'p99_9', 'p100')
    """
    try:
        q = float(value)
    except ValueError:
        return None
    if not math.isfinite(q):
        return None
    # round() drops the binary noise of 0.999 * 100 without losing real digits.
    return "p" + _positional(round(q * 100.0, 9)).replace(".", "_").replace("-", "m")


def le_segment(value: str) -> str | None:
    """``"0.005"`` → ``"le_0_005"``, ``"+Inf"`` → ``"le_inf"``; None if not a number.

    >>> le_segment("0.005"), le_segment("+Inf"), le_segment("10")
    ('le_0_005', 'le_inf', 'le_10')
    """
    try:
        b = float(value)
    except ValueError:
        return None
    if math.isnan(b):
        return None
    if math.isinf(b):
        return "le_inf" if b > 0 else "le_minf"
    return "le_" + _positional(b).replace(".", "_").replace("-", "m")


def _le_tag(value: str) -> str | None:
    try:
        b = float(value)
    except ValueError:
        return None
    if math.isnan(b):
        return None
    if math.isinf(b):
        return "inf" if b > 0 else "-inf"
    return _positional(b)


MAX_NAME_CHARS = 1024
"""The longest model name, version, instance, label value or feature name any backend gets."""


def name_problem(value: object) -> str | None:
    r"""Why ``value`` cannot be a name or label value in every backend, or None when it can.

    A name must be a ``str`` of at most :data:`MAX_NAME_CHARS` characters that UTF-8 can encode
    (no unpaired surrogate, which ``json.loads`` of a request body can produce) and without NUL.
    Newlines, quotes and other punctuation are fine: every renderer escapes or replaces them.

    >>> name_problem("âge"), name_problem("a\nb")
    (None, None)
    >>> name_problem("\ud800")
    'is not valid Unicode (unpaired surrogate at index 0)'
    >>> name_problem("a\x00b")
    'contains NUL'
    """
    if not isinstance(value, str):
        return f"is not a string ({type(value).__name__})"
    if len(value) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters ({len(value)})"
    if "\x00" in value:
        return "contains NUL"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"is not valid Unicode (unpaired surrogate at index {exc.start})"
    return None


def check_name(value: object, *, what: str = "name") -> None:
    r"""Raise ValueError naming ``what`` and the value when :func:`name_problem` finds one.

    >>> check_name("age", what="feature name")
    >>> check_name("bad\udc80", what="feature name")
    Traceback (most recent call last):
    ...
    ValueError: feature name 'bad\udc80' is not valid Unicode (unpaired surrogate at index 3)
    """
    problem = name_problem(value)
    if problem is not None:
        shown = (
            repr(value)
            if not isinstance(value, str) or len(value) <= 80
            else repr(value[:80]) + "..."
        )
        raise ValueError(f"{what} {shown} {problem}")


def _text_ok(value: str) -> bool:
    # The hot path of series_problem: ASCII without NUL is the common case.
    if len(value) > MAX_NAME_CHARS or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def series_problem(name: object, labels: Iterable[tuple[object, object]], value: object) -> bool:
    r"""True when a sample cannot be rendered in every backend (see :func:`name_problem`).

    Emitters skip such a series (and count it) instead of failing the whole snapshot. The value
    must be a float (NaN and infinities are allowed here; each backend decides what it does with
    them).

    >>> series_problem("mlmon_feature_mean", (("feature", "age"),), 1.0)
    False
    >>> series_problem("mlmon_feature_mean", (("feature", "\ud800"),), 1.0)
    True
    """
    if not isinstance(name, str) or not _text_ok(name):
        return True
    if not isinstance(value, (float, int)) or isinstance(value, bool):
        return True
    for k, v in labels:
        if not isinstance(k, str) or not isinstance(v, str) or not _text_ok(k) or not _text_ok(v):
            return True
    return False


def identity_problem(model: object, version: object, instance: object) -> bool:
    """True when a snapshot's model, version or instance cannot be rendered (every series is bad)."""
    if not isinstance(model, str) or not _text_ok(model):
        return True
    if version is not None and (not isinstance(version, str) or not _text_ok(version)):
        return True
    return not isinstance(instance, str) or not _text_ok(instance)


def check_collisions(names: Iterable[str], *, what: str = "name") -> None:
    """Raise ValueError if a name cannot be rendered (:func:`check_name`: unpaired surrogate,
    NUL, longer than :data:`MAX_NAME_CHARS`), or if two different names would become the same
    StatsD/Graphite segment.

    Call it when a monitor is configured, with its model/version, feature names, classes or
    outcome names: the strictest sanitiser (dotted path segments) is used, so names that pass
    are distinct in every backend.

    >>> check_collisions(["age", "income"])
    >>> check_collisions(["a b", "a.b"], what="feature name")
    Traceback (most recent call last):
    ...
    ValueError: feature names 'a b' and 'a.b' both become 'a_b' in StatsD/Graphite names; rename one
    """
    seen: dict[str, str] = {}
    for name in names:
        original = str(name)
        check_name(original, what=what)
        seg = sanitize_segment(original)
        other = seen.setdefault(seg, original)
        if other != original:
            raise ValueError(
                f"{what}s {other!r} and {original!r} both become {seg!r} in StatsD/Graphite "
                "names; rename one"
            )


class _Owners:
    """Who owns each sanitised text, so a second, different original never merges into it."""

    __slots__ = ("_map", "collisions", "max_size")

    def __init__(self, max_size: int) -> None:
        self._map: dict[tuple[str, str], str] = {}
        self.max_size = max_size
        self.collisions = 0

    def claim(self, scope: str, text: str, original: str) -> str:
        key = (scope, text)
        owner = self._map.get(key)
        if owner is None:
            if len(self._map) >= self.max_size:
                # Bounded: forget the oldest claim (dicts keep insertion order).
                del self._map[next(iter(self._map))]
            self._map[key] = original
            return text
        if owner == original:
            return text
        self.collisions += 1
        if self.collisions == 1 or self.collisions % 1000 == 0:
            log.warning(
                "mlmon: %s values %r and %r sanitise to the same name %r; the second is sent "
                "with a hash suffix (%d collisions so far)",
                scope,
                owner,
                original,
                text,
                self.collisions,
            )
        return f"{text}_h{_hash8(original)}"


def _validate_prefix(prefix: str) -> str:
    if prefix and not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"prefix must be dot-separated segments of [A-Za-z0-9_-] (like 'ml.prod'), got {prefix!r}"
        )
    return prefix


class PathRenderer:
    """Names for StatsD and Graphite: dotted paths or tags, rendered once per series and cached.

    ``render`` returns ``(key, suffix)``: the series key (a dotted path, or Graphite's
    ``name;k=v...``) and, for DogStatsD tags, the ``|#k:v,...`` text that follows the type.

    Args:
        prefix: dotted prefix, validated (``ValueError`` if it is not ``[A-Za-z0-9_-]``
            segments joined by single dots).
        style: ``"path"``, ``"graphite_tags"`` or ``"dogstatsd"``.
        instance_in_path: put the process identity in the path (or a tag).
        version_in_path: put the model version after the model (path style; tag styles always
            carry it when set).
        max_cache: rendered series kept; the oldest is forgotten first.
        max_names: sanitised names remembered for collision checks (bounded the same way).

    >>> r = PathRenderer("ml", instance_in_path=True)
    >>> r.render("fraud", None, "web1:42", "mlmon_latency_seconds", (("quantile", "0.99"),))
    ('ml.fraud.web1_42.mlmon_latency_seconds.p99', '')
    >>> t = PathRenderer("ml", style="graphite_tags", instance_in_path=False)
    >>> t.render("fraud", "v1", "web1:42", "mlmon_feature_mean", (("feature", "a b;c=d"),))
    ('ml.mlmon_feature_mean;feature=a_b_c_d;model=fraud;version=v1', '')
    """

    def __init__(
        self,
        prefix: str = "",
        *,
        style: Style = "path",
        instance_in_path: bool = False,
        version_in_path: bool = False,
        max_cache: int = 100_000,
        max_names: int = 100_000,
    ) -> None:
        if style not in ("path", "graphite_tags", "dogstatsd"):
            raise ValueError(f"style must be 'path', 'graphite_tags' or 'dogstatsd', got {style!r}")
        if max_cache < 1:
            raise ValueError(f"max_cache must be >= 1, got {max_cache!r}")
        if max_names < 1:
            raise ValueError(f"max_names must be >= 1, got {max_names!r}")
        self.prefix = _validate_prefix(prefix)
        self.style: Style = style
        self.instance_in_path = instance_in_path
        self.version_in_path = version_in_path
        self.max_cache = max_cache
        self._owners = _Owners(max_names)
        self._cache: dict[tuple[str, str | None, str, str, Labels], tuple[str, str]] = {}

    @property
    def collisions(self) -> int:
        """How many times two different values sanitised to one name (and got a hash suffix)."""
        return self._owners.collisions

    def render(
        self, model: str, version: str | None, instance: str, name: str, labels: Labels
    ) -> tuple[str, str]:
        """The ``(key, suffix)`` of one series (see the class docstring)."""
        ck = (model, version, instance, name, labels)
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        out = self._render(model, version, instance, name, labels)
        if len(self._cache) >= self.max_cache:
            del self._cache[next(iter(self._cache))]
        self._cache[ck] = out
        return out

    def _metric(self, name: str) -> str:
        if name in CATALOG:
            return name
        return self._owners.claim("metric", sanitize_segment(name), name)

    def _segment(self, key: str, value: str) -> str:
        if key == "quantile":
            seg = quantile_segment(value)
            if seg is not None:
                return self._owners.claim("quantile", seg, value)
        elif key == "le":
            seg = le_segment(value)
            if seg is not None:
                return self._owners.claim("le", seg, value)
        text = f"{sanitize_segment(key)}_{sanitize_segment(value)}"
        return self._owners.claim(key, _bounded(text, f"{key}={value}"), value)

    def _tag(self, key: str, value: str) -> tuple[str, str]:
        tag_value = _le_tag(value) if key == "le" else None
        if tag_value is None:
            tag_value = sanitize_tag_value(value)
        return _sanitize_tag_key(key), self._owners.claim(key, tag_value, value)

    def _render(
        self, model: str, version: str | None, instance: str, name: str, labels: Labels
    ) -> tuple[str, str]:
        if self.style == "path":
            parts = [self.prefix] if self.prefix else []
            parts.append(self._owners.claim("model", sanitize_segment(model), model))
            if self.version_in_path and version is not None:
                parts.append(self._owners.claim("version", sanitize_segment(version), version))
            if self.instance_in_path:
                parts.append(self._owners.claim("instance", sanitize_segment(instance), instance))
            parts.append(self._metric(name))
            for key, value in sorted(labels):
                parts.append(self._segment(key, value))
            return ".".join(parts), ""
        base = f"{self.prefix}.{self._metric(name)}" if self.prefix else self._metric(name)
        tags = [self._tag(k, v) for k, v in labels if k not in ("model", "version", "instance")]
        tags.append(("model", self._owners.claim("model", sanitize_tag_value(model), model)))
        if version is not None:
            tags.append(
                ("version", self._owners.claim("version", sanitize_tag_value(version), version))
            )
        if self.instance_in_path:
            tags.append(
                ("instance", self._owners.claim("instance", sanitize_tag_value(instance), instance))
            )
        tags.sort()
        if self.style == "graphite_tags":
            return base + "".join(f";{k}={v}" for k, v in tags), ""
        return base, "|#" + ",".join(f"{k}:{v}" for k, v in tags)


def escape_label_value(value: str) -> str:
    r"""Escape a label value for the text exposition format: ``\`` ``"`` and newline.

    >>> print(escape_label_value('a "b"\\c\nd'))
    a \"b\"\\c\nd
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    r"""Escape a HELP text: ``\`` and newline."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _prom_name(name: str) -> str:
    text = _PROM_NAME_UNSAFE.sub("_", _ascii_fold(name)) or "_"
    return "_" + text if text[0].isdigit() else text


# Exposition families that cannot keep the canonical name (docs/emitters.md, "Prometheus"):
# window quantiles are a summary, and the histogram already owns mlmon_latency_seconds; a gauge
# may not end in _count (it would read as part of the summary mlmon_output).
PROMETHEUS_RENAMES: dict[str, str] = {
    "mlmon_latency_seconds": "mlmon_latency_window_seconds",
    "mlmon_output_count": "mlmon_output_values",
}

_RESERVED_SUFFIXES = ("_count", "_sum", "_bucket")
_HISTOGRAM_FAMILIES = frozenset(m.family for m in CATALOG.values() if m.family is not None)


class PrometheusRenderer:
    """Family names, types and label sets for the Prometheus text format, cached per series.

    >>> r = PrometheusRenderer()
    >>> r.family("mlmon_latency_seconds", (("quantile", "0.99"),))
    ('mlmon_latency_window_seconds', 'summary', 'mlmon_latency_window_seconds')
    >>> r.family("mlmon_latency_seconds_bucket", (("le", "0.1"),))
    ('mlmon_latency_seconds', 'histogram', 'mlmon_latency_seconds_bucket')
    >>> r.labels("fraud", None, "web1:42", (("feature", 'a"b'),))
    '{model="fraud",instance="web1:42",feature="a\\\\"b"}'
    """

    def __init__(self, max_cache: int = 100_000) -> None:
        if max_cache < 1:
            raise ValueError(f"max_cache must be >= 1, got {max_cache!r}")
        self.max_cache = max_cache
        self._families: dict[str, tuple[str, str, str]] = {}
        self._labels: dict[tuple[str, str | None, str, Labels], str] = {}

    def family(self, name: str, labels: Labels) -> tuple[str, str, str]:
        """``(family name, type, sample name)`` for a canonical sample name."""
        hit = self._families.get(name)
        if hit is not None:
            return hit
        info = CATALOG.get(name)
        if info is not None and info.family is not None:
            base = _prom_name(info.family)
            out = (base, "histogram", base + name[len(info.family) :])
        elif info is not None and info.kind == "counter":
            sample = _prom_name(name)
            out = (sample, "counter", sample)
        elif (info is not None and "quantile" in info.labels) or any(
            k == "quantile" for k, _ in labels
        ):
            fam = PROMETHEUS_RENAMES.get(name) or _prom_name(name)
            if fam in _HISTOGRAM_FAMILIES:
                fam += "_window"
            out = (fam, "summary", fam)
        else:
            fam = PROMETHEUS_RENAMES.get(name) or _prom_name(name)
            if fam.endswith(_RESERVED_SUFFIXES):
                fam += "_value"
            out = (fam, "gauge", fam)
        if len(self._families) >= self.max_cache:
            self._families.clear()
        self._families[name] = out
        return out

    def labels(self, model: str, version: str | None, instance: str, labels: Labels) -> str:
        """The ``{...}`` label set: model, version (omitted when None), instance, then the rest."""
        key = (model, version, instance, labels)
        hit = self._labels.get(key)
        if hit is not None:
            return hit
        parts = [f'model="{escape_label_value(model)}"']
        if version is not None:
            parts.append(f'version="{escape_label_value(version)}"')
        parts.append(f'instance="{escape_label_value(instance)}"')
        for k, v in labels:
            lk = _prom_name(k)
            if lk in ("model", "version", "instance", "job"):
                lk = "exported_" + lk
            parts.append(f'{lk}="{escape_label_value(v)}"')
        out = "{" + ",".join(parts) + "}"
        if len(self._labels) >= self.max_cache:
            del self._labels[next(iter(self._labels))]
        self._labels[key] = out
        return out
