"""A compact, human-readable table per flush, for terminals and logs."""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from typing import TextIO

from mlmon.emitters._net import _check_seconds
from mlmon.emitters._stream import StreamWriter
from mlmon.naming import name_problem
from mlmon.snapshot import Snapshot

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _shown(text: object) -> str:
    """A name as one line of the table: control characters and unpaired surrogates escaped."""
    s = _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))
    if not s.isascii():
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


__all__ = ["ConsoleEmitter"]


def _num(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit == "s":
        if v < 1e-3:
            return f"{v * 1e6:.0f}µs"
        if v < 1:
            return f"{v * 1e3:.1f}ms"
        return f"{v:.2f}s"
    if unit == "%":
        return f"{v * 100:.1f}%"
    if unit == "B":
        return f"{v / 2**20:.1f}MiB"
    if float(v).is_integer() and abs(v) < 1e12:
        return f"{int(v):,}"
    return f"{v:.4g}"


class ConsoleEmitter:
    """Prints each snapshot as a short table: service, latency, resources, model, alerts.

    Args:
        stream: where to write (default ``sys.stdout``, looked up at each emit).
        name: the ``emitter`` label.
        timeout: with a stream that is a pipe or a socket, the longest one emit may wait for
            the reader, seconds; a table that could not be written in time is dropped and
            counted (``mlmon_dropped_total{buffer=name}``).

    Names are shown with control characters escaped; a feature or rule name that cannot be
    encoded (unpaired surrogate, NUL, over 1024 characters) is left out and counted in
    ``mlmon_dropped_total{buffer="<name>_series"}``.

    >>> import io, mlmon
    >>> out = io.StringIO()
    >>> mon = mlmon.Monitor("doc_console", emitters=[ConsoleEmitter(out)])
    >>> _ = mon.flush()
    >>> "doc_console" in out.getvalue() and "calls" in out.getvalue()
    True
    >>> mon.close()
    """

    def __init__(
        self, stream: TextIO | None = None, name: str = "console", *, timeout: float = 1.0
    ) -> None:
        _check_seconds(timeout=timeout)
        self._stream = stream
        self.name = name
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._writer = StreamWriter()
        self._bad_series = 0

    def render(self, snap: Snapshot) -> str:
        """The text one emit writes."""
        g = snap.get
        stamp = time.strftime("%H:%M:%S", time.localtime(snap.timestamp))
        head = f"── mlmon {_shown(snap.model)}" + (
            f" v{_shown(snap.version)}" if snap.version else ""
        )
        head += f" · {_shown(snap.instance)} · {stamp} · window {snap.window:.0f}s "
        lines = [head.ljust(78, "─")]
        lines.append(
            f" calls {_num(g('mlmon_calls_total'))} ({_num(g('mlmon_calls_per_second'))}/s)"
            f"  rows {_num(g('mlmon_rows_total'))} ({_num(g('mlmon_rows_per_second'))}/s)"
            f"  errors {_num(snap.total('mlmon_errors_total'))} ({_num(g('mlmon_error_ratio'), '%')})"
            f"  slow {_num(g('mlmon_slow_calls_total'))}"
        )
        lines.append(
            f" availability {_num(g('mlmon_availability_ratio'), '%')}"
            f"  in-flight {_num(g('mlmon_inflight_calls'))}"
            f" (oldest {_num(g('mlmon_oldest_inflight_seconds'), 's')})"
        )
        lat = "  ".join(
            f"{label} {_num(g('mlmon_latency_seconds', quantile=q), 's')}"
            for label, q in (("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99"), ("max", "1"))
        )
        lines.append(f" latency {lat}  mean {_num(g('mlmon_latency_seconds_mean'), 's')}")
        lines.append(
            f" process cpu {_num(g('mlmon_process_cpu_percent'))}%"
            f"  rss {_num(g('mlmon_process_resident_memory_bytes'), 'B')}"
            f"  threads {_num(g('mlmon_process_threads'))}  fds {_num(g('mlmon_process_open_fds'))}"
            f"  system cpu {_num(g('mlmon_system_cpu_percent'))}%"
            f"  mem {_num(g('mlmon_system_memory_used_ratio'), '%')}"
        )
        if g("mlmon_output_mean") is not None:
            lines.append(
                f" outputs mean {_num(g('mlmon_output_mean'))}  var {_num(g('mlmon_output_variance'))}"
                f"  p50 {_num(g('mlmon_output', quantile='0.5'))}  p99 {_num(g('mlmon_output', quantile='0.99'))}"
                f"  invalid {_num(g('mlmon_output_invalid_total'))}"
            )
        quality = [
            f"{label} {_num(g(name))}"
            for label, name in (
                ("precision", "mlmon_precision"),
                ("recall", "mlmon_recall"),
                ("f1", "mlmon_f1"),
                ("accuracy", "mlmon_accuracy"),
                ("mae", "mlmon_mae"),
                ("rmse", "mlmon_rmse"),
            )
            if g(name) is not None
        ]
        if quality or g("mlmon_labels_window") is not None:
            quality.append(f"labels {_num(g('mlmon_labels_window'))}")
            cov = g("mlmon_label_coverage_ratio")
            if cov is not None:
                quality.append(f"coverage {_num(cov, '%')}")
            # Labels that judged nothing, next to coverage: a low coverage with many unmatched
            # labels is an id problem, with many expired ones a ttl problem.
            quality.append(
                f"unmatched {_num(g('mlmon_labels_unmatched_total'))}"
                f"  expired {_num(g('mlmon_labels_expired_total'))}"
            )
            lines.append(" quality " + "  ".join(quality))
        drift = sorted(
            (
                (s.value, s.label("feature") or "?")
                for s in snap.select("mlmon_feature_drift_psi")
                if self._displayable(s.label("feature"))
            ),
            reverse=True,
        )
        if drift:
            lines.append(" drift psi " + "  ".join(f"{_shown(f)} {v:.3f}" for v, f in drift[:5]))
        firing = [
            s.label("rule")
            for s in snap.select("mlmon_alert_firing")
            if s.value > 0 and self._displayable(s.label("rule"))
        ]
        if firing:
            lines.append(" ALERTS firing: " + ", ".join(_shown(r) for r in firing))
        return "\n".join(lines) + "\n"

    def _displayable(self, name: str | None) -> bool:
        if name is None or name_problem(name) is None:
            return True
        self._bad_series += 1
        return False

    def emit(self, snapshot: Snapshot) -> None:
        """Write the table; raises (after counting) when the stream's reader is too slow."""
        text = self.render(snapshot)
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            self._writer.write(stream, text, self.timeout)

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Tables the stream's reader did not take in time (``mlmon_dropped_total{buffer=name}``)
        and names left out (``buffer="<name>_series"``)."""
        return [
            ("mlmon_dropped_total", float(self._writer.dropped), {"buffer": self.name}),
            ("mlmon_dropped_total", float(self._bad_series), {"buffer": f"{self.name}_series"}),
        ]

    def after_fork(self) -> None:
        """A forked child starts with a fresh lock and nothing pending."""
        self._lock = threading.Lock()
        self._writer = StreamWriter()
        self._bad_series = 0

    def close(self) -> None:
        """Nothing of the caller's is closed (the stream belongs to the caller)."""
        with self._lock:
            self._writer.close()
