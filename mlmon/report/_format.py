r"""Text for the report: HTML escaping (control characters removed), number formats, axis ticks.

>>> esc('<b>\x1b[31m</b>')
'&lt;b&gt;�[31m&lt;/b&gt;'
>>> fmt_seconds(0.0123), fmt_ratio(0.5), fmt_bytes(2048)
('12.3 ms', '50%', '2 KiB')
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Callable

__all__ = [
    "PALETTE",
    "Formatter",
    "clean",
    "duration",
    "esc",
    "fmt_bytes",
    "fmt_number",
    "fmt_percent",
    "fmt_ratio",
    "fmt_seconds",
    "nice_ticks",
    "time_ticks",
    "utc",
]

PALETTE: tuple[str, ...] = (
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
    "#ca8a04", "#db2777", "#4b5563", "#65a30d", "#4f46e5", "#0d9488",
)  # fmt: skip
"""Series colours, in order of assignment; they repeat beyond twelve series."""

Formatter = Callable[[float], str]

_FONT_W = 6.4  # average glyph width (px) of the 11 px sans-serif used for legends and ticks

# C0 and C1 control characters (tab, newline and carriage return aside), DEL, and lone
# surrogates (JSON can spell them, UTF-8 cannot encode them): none may reach the page raw.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def clean(text: str) -> str:
    r"""``text`` with every control character and lone surrogate replaced by U+FFFD.

    >>> clean("a\x00b\x1bc\ud800")
    'a�b�c�'
    """
    if text.isascii() and text.isprintable():  # the common case, several times faster
        return text
    return _CONTROL.sub("\ufffd", text)


def esc(text: object) -> str:
    """``text`` as safe HTML/SVG text or attribute content (quotes escaped, control characters
    replaced by U+FFFD).

    >>> esc('<script>alert("x")</script>')
    '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
    """
    return html.escape(clean(str(text)), quote=True)


def _c(v: float) -> str:
    """A pixel coordinate, one decimal, no trailing ``.0``."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


# ------------------------------------------------------------------------------ formatting


def _g3(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        s = f"{v:.1f}"
    elif a >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3g}"
    if "." in s and "e" not in s:
        s = s.rstrip("0").rstrip(".")
    return s


def fmt_number(v: float) -> str:
    """A count or plain number, three significant digits, with k/M/G suffixes.

    >>> fmt_number(0.5), fmt_number(1234.0), fmt_number(2_500_000.0), fmt_number(12.0)
    ('0.5', '1.23k', '2.5M', '12')
    """
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= limit:
            return _g3(v / limit) + suffix
    return _g3(v)


def fmt_ratio(v: float) -> str:
    """A ratio in [0, 1] as a percentage.

    >>> fmt_ratio(0.25), fmt_ratio(0.99675), fmt_ratio(0.0)
    ('25%', '99.7%', '0%')
    """
    if not math.isfinite(v):
        return str(v)
    return _g3(v * 100.0) + "%"


def fmt_percent(v: float) -> str:
    """A value already in percent (CPU: 100 = one core).

    >>> fmt_percent(12.5)
    '12.5%'
    """
    if not math.isfinite(v):
        return str(v)
    return _g3(v) + "%"


def fmt_seconds(v: float) -> str:
    """A duration with a readable unit.

    >>> fmt_seconds(0.0042), fmt_seconds(0.25), fmt_seconds(2.0), fmt_seconds(0.0), fmt_seconds(3e-5)
    ('4.2 ms', '250 ms', '2 s', '0', '30 µs')
    """
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a < 1e-3:
        return _g3(v * 1e6) + " µs"
    if a < 1:
        return _g3(v * 1e3) + " ms"
    if a < 120:
        return _g3(v) + " s"
    if a < 7200:
        return _g3(v / 60) + " min"
    return _g3(v / 3600) + " h"


def fmt_bytes(v: float) -> str:
    """A size in binary units.

    >>> fmt_bytes(512.0), fmt_bytes(3 * 2**20), fmt_bytes(1.5 * 2**30)
    ('512 B', '3 MiB', '1.5 GiB')
    """
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    for power, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if a >= 2**power:
            return f"{_g3(v / 2**power)} {unit}"
    return f"{_g3(v)} B"


# ------------------------------------------------------------------------------ ticks


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (the first <= lo, the last >= hi).

    >>> nice_ticks(0.0, 0.93)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(3.0, 3.0)
    [2.6, 2.8, 3.0, 3.2, 3.4]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 if lo else 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, n)
    if not (1e-300 < raw < 1e300):  # a span too small or too large for round steps
        return [lo, hi] if hi > lo else [lo - 1.0, lo + 1.0]
    mag = 10.0 ** math.floor(math.log10(raw))
    step = mag
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = m * mag
        if step >= raw:
            break
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    # Rounding keeps 0.30000000000000004 out of labels and domains.
    digits = max(0, -math.floor(math.log10(step)) + 2)
    return [round(i * step, digits) + 0.0 for i in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks of a log axis: powers of ten, with 2 and 5 in between when few decades are shown.

    >>> _log_ticks(0.004, 2.0)
    [0.001, 0.01, 0.1, 1.0, 10.0]
    >>> _log_ticks(3.0, 40.0)
    [2.0, 5.0, 10.0, 20.0, 50.0]
    """
    # Decades from 1e-300 to 1e300 (10.0**k under- or overflows beyond), at most ten ticks.
    a = max(-300, math.floor(math.log10(lo)))
    b = min(300, max(a + 1, math.ceil(math.log10(hi))))
    if b - a > 2:
        every = max(1, math.ceil((b - a) / 9))
        return [10.0**k for k in range(a, b + every, every)]
    ticks = [m * 10.0**k for k in range(a, b + 1) for m in (1.0, 2.0, 5.0)]
    below = [t for t in ticks if t <= lo]
    above = [t for t in ticks if t >= hi]
    start = below[-1] if below else ticks[0]
    stop = above[0] if above else ticks[-1]
    return [float(f"{t:.6g}") for t in ticks if start <= t <= stop]


_TIME_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400,
)  # fmt: skip


def time_ticks(t0: float, t1: float, n: int = 6) -> tuple[list[float], str]:
    """Round UTC tick times inside ``[t0, t1]`` and the ``strftime`` format to label them.

    >>> time_ticks(0.0, 20.0)
    ([0.0, 5.0, 10.0, 15.0, 20.0], '%H:%M:%S')
    >>> time_ticks(0.0, 2 * 86400.0)[1]
    '%m-%d %H:%M'
    """
    span = max(t1 - t0, 1e-9)
    step: float = _TIME_STEPS[-1]
    for s in _TIME_STEPS:
        if span / s <= n:
            step = s
            break
    if span / step > n:  # more than a few years: whole multiples of a year
        step = _TIME_STEPS[-1] * math.ceil(span / step / n)
    first = math.ceil(t0 / step - 1e-9)
    ticks = []
    i = first
    while i * step <= t1 + 1e-9:
        ticks.append(float(i * step))
        i += 1
    if step < 60:
        fmt = "%H:%M:%S"
    elif step < 86400:
        fmt = "%H:%M" if span < 86400 else "%m-%d %H:%M"
    else:
        fmt = "%Y-%m-%d"
    return ticks, fmt


def _time_label(t: float, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(t))




def duration(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        h, m = divmod(round(s / 60), 60)
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{s / 86400:.1f} days"


def utc(t: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return time.strftime(fmt, time.gmtime(t))

