"""OpenTelemetry emitter: each snapshot goes out as one OTLP export (``pip install 'mlmon[otel]'``).

The snapshot is turned into the OpenTelemetry SDK's own metric data (``MetricsData``) at each
flush, and handed to an SDK exporter (by default ``OTLPMetricExporter``, OTLP/HTTP protobuf),
which encodes and sends it. Nothing is recorded per predict call: the SDK's ``record()`` costs
microseconds per call, and an observable instrument cannot carry a histogram, so the data points
are built from the snapshot the reporter already has (cumulative counters, mlmon's cumulative
latency buckets, window values).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mlmon.emitters._net import _check_name, _check_seconds
from mlmon.naming import PrometheusRenderer, identity_problem, series_problem
from mlmon.snapshot import CATALOG, Snapshot

__all__ = ["OtlpEmitter", "snapshot_metrics"]

log = logging.getLogger("mlmon.emitters.otlp")

_UNITS = {"seconds": "s", "bytes": "By", "ratio": "1", "1": "1", "1/s": "1/s", "percent": "%"}
_MAX_IDENTITIES = 64

Identity = tuple[str, str | None, str]


def _otel() -> Any:
    try:
        from opentelemetry.sdk.metrics import export
    except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
        raise ImportError(
            "OtlpEmitter needs the OpenTelemetry SDK: pip install 'mlmon[otel]' "
            "(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
        ) from exc
    return export


def _mlmon_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("mlmon")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return None


def _unit(name: str, histogram: bool = False) -> str:
    # A histogram's unit is that of the values it counts: its _sum's.
    info = CATALOG.get(name.rsplit("_", 1)[0] + "_sum") if histogram else CATALOG.get(name)
    if info is None:
        return ""
    return _UNITS.get(info.unit, info.unit)


def _help(name: str, fam: str, type_: str) -> str:
    info = CATALOG.get(fam + "_bucket") if type_ == "histogram" else CATALOG.get(name)
    return info.help if info is not None else ""


def snapshot_metrics(
    snapshot: Snapshot,
    start_ns: int,
    renderer: PrometheusRenderer | None = None,
) -> tuple[list[Any], int]:
    """The OpenTelemetry SDK ``Metric`` objects of one snapshot, and the series left out.

    Counters become cumulative monotonic sums, the ``*_bucket``/``_sum``/``_count`` series an
    explicit-bucket histogram (mlmon's cumulative ``le`` buckets turned into per-bucket counts),
    every other value a gauge; window quantiles are gauges with a ``quantile`` attribute. Names
    are the Prometheus family names (``mlmon_latency_seconds`` is the histogram, the window
    quantiles ``mlmon_latency_window_seconds``). Data point attributes: ``model``, ``version``
    (when set) and the sample's labels. A series whose name or labels cannot be encoded, or
    whose value is not finite, is left out and counted.

    >>> from mlmon.snapshot import Sample
    >>> snap = Snapshot("fraud", None, "web1:7", 1.0, 60.0, (
    ...     Sample.make("mlmon_calls_total", 3),
    ...     Sample.make("mlmon_latency_seconds_bucket", 2, le="0.1"),
    ...     Sample.make("mlmon_latency_seconds_sum", 0.25),
    ...     Sample.make("mlmon_latency_seconds_count", 3)))
    >>> metrics, bad = snapshot_metrics(snap, 0)
    >>> [(m.name, type(m.data).__name__) for m in metrics], bad
    ([('mlmon_calls_total', 'Sum'), ('mlmon_latency_seconds', 'Histogram')], 0)
    >>> point = metrics[1].data.data_points[0]
    >>> list(point.bucket_counts), list(point.explicit_bounds), point.count, point.sum
    ([2, 1], [0.1], 3, 0.25)
    """
    ex = _otel()
    r = renderer if renderer is not None else PrometheusRenderer()
    now_ns = int(snapshot.timestamp * 1e9)
    base: dict[str, str] = {"model": snapshot.model}
    if snapshot.version is not None:
        base["version"] = snapshot.version
    # family -> (type, points); histogram points are gathered per label set first.
    numbers: dict[str, tuple[str, str, list[Any]]] = {}
    hists: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], list[Any]]]] = {}
    bad = 0
    for s in snapshot.samples:
        if series_problem(s.name, s.labels, s.value) or math.isnan(s.value):
            bad += 1
            continue
        fam, type_, _ = r.family(s.name, s.labels)
        if type_ == "histogram":
            entry = hists.get(fam)
            if entry is None:
                entry = hists[fam] = (s.name, {})
            rest = tuple(kv for kv in s.labels if kv[0] != "le")
            group = entry[1].setdefault(rest, [[], None, None])
            if s.name.endswith("_bucket"):
                try:
                    bound = float(dict(s.labels).get("le", "nan"))
                except ValueError:
                    bad += 1
                    continue
                if not math.isnan(bound):
                    group[0].append((bound, s.value))
            elif s.name.endswith("_sum"):
                group[1] = s.value
            else:
                group[2] = s.value
            continue
        if math.isinf(s.value):
            bad += 1
            continue
        kind = "sum" if type_ == "counter" else "gauge"
        nentry = numbers.get(fam)
        if nentry is None:
            nentry = numbers[fam] = (kind, s.name, [])
        elif nentry[0] != kind:
            bad += 1  # a name that collides with a family of another type
            continue
        attrs = {**base, **dict(s.labels)}
        nentry[2].append(ex.NumberDataPoint(attrs, start_ns, now_ns, s.value))
    metrics: list[Any] = []
    for fam, (kind, name, points) in numbers.items():
        if kind == "sum":
            data: Any = ex.Sum(points, ex.AggregationTemporality.CUMULATIVE, True)
        else:
            data = ex.Gauge(points)
        metrics.append(ex.Metric(fam, _help(name, fam, kind), _unit(name), data))
    for fam, (name, groups) in hists.items():
        hpoints = []
        for rest, (buckets, total, count) in groups.items():
            buckets.sort(key=lambda b: b[0])
            finite = [(b, v) for b, v in buckets if not math.isinf(b)]
            if count is None:
                inf = [v for b, v in buckets if math.isinf(b) and b > 0]
                count = inf[-1] if inf else (finite[-1][1] if finite else None)
            if count is None:
                continue
            counts: list[int] = []
            below = 0.0
            for _, cum in finite:
                counts.append(max(0, round(cum - below)))
                below = max(below, cum)
            counts.append(max(0, round(count - below)))
            hpoints.append(
                ex.HistogramDataPoint(
                    attributes={**base, **dict(rest)},
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns,
                    count=round(count),
                    sum=total if total is not None else 0.0,
                    bucket_counts=counts,
                    explicit_bounds=[b for b, _ in finite],
                    min=None,  # not known from cumulative buckets: left unset on the wire
                    max=None,
                )
            )
        if hpoints:
            data = ex.Histogram(hpoints, ex.AggregationTemporality.CUMULATIVE)
            metrics.append(ex.Metric(fam, _help(name, fam, "histogram"), _unit(name, True), data))
    return metrics, bad


def _timeout_from_env() -> float:
    for var in ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = os.environ.get(var)
        if raw:
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{var} must be a positive number of seconds, got {raw!r}")
            return value
    return 5.0


class _Worker:
    """A daemon thread that runs one job at a time; the caller waits for it with a deadline."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._job: Callable[[], Any] | None = None
        self._result: tuple[bool, Any] | None = None
        self.busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None:
                    if self._stopped:
                        return
                    self._cond.wait()
                job = self._job
            result: tuple[bool, Any]
            try:
                result = (True, job())
            except BaseException as exc:  # handed to the waiting thread
                result = (False, exc)
            with self._cond:
                self._job = None
                self._result = result
                self.busy = False
                self._cond.notify_all()

    def stop(self) -> None:
        """End the thread once its current job (if any) is done."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def run(self, job: Callable[[], Any], timeout: float) -> tuple[bool | None, Any]:
        """``(True, value)``, ``(False, exception)``, or ``(None, None)`` at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self.busy:  # one job at a time: the caller skips
                return None, None
            self._job, self._result, self.busy = job, None, True
            self._cond.notify_all()
            while self._result is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, None
                self._cond.wait(left)
            result, self._result = self._result, None
            return result


class OtlpEmitter:
    """Export every snapshot with OpenTelemetry's OTLP exporter (OTLP/HTTP protobuf by default).

    Args:
        endpoint: the full metrics URL, e.g. ``http://collector:4318/v1/metrics``. None leaves it
            to the SDK: ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, else
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/metrics``, else ``http://localhost:4318``.
            Headers, compression, certificates and the rest come from the ``OTEL_EXPORTER_OTLP_*``
            variables as the SDK reads them.
        headers: extra HTTP headers (None: ``OTEL_EXPORTER_OTLP_[METRICS_]HEADERS``).
        timeout: the total deadline of one export, seconds: whatever the collector does (down,
            slow, trickling its answer), :meth:`emit` returns by then; an export still running
            is left to its thread and the next emits are skipped (counted) until it ends. None:
            ``OTEL_EXPORTER_OTLP_METRICS_TIMEOUT``, else ``OTEL_EXPORTER_OTLP_TIMEOUT`` (seconds,
            as the Python SDK reads them), else 5.
        service_name: ``service.name`` of the resource. Default: ``OTEL_SERVICE_NAME`` or the
            ``service.name`` of ``OTEL_RESOURCE_ATTRIBUTES``, else the model name.
        resource_attributes: more resource attributes; they win over the environment.
        exporter: any OpenTelemetry SDK ``MetricExporter`` to use instead (OTLP/gRPC, say).
        name: the ``emitter``/``buffer`` label in mlmon's own metrics.

    The resource also carries ``service.instance.id`` (the monitor's instance) and
    ``service.version`` (the model version, when set) unless ``OTEL_RESOURCE_ATTRIBUTES`` or
    ``resource_attributes`` set them, and the SDK's ``telemetry.sdk.*`` attributes.

    Exports that fail, time out or are skipped are counted in
    ``mlmon_dropped_total{buffer="<name>"}`` and make :meth:`emit` raise (counted in
    ``mlmon_emit_errors_total``); series left out in ``buffer="<name>_series"``.

    >>> from mlmon.snapshot import Sample
    >>> class Keep:  # a stand-in exporter that keeps what it is given
    ...     def export(self, data, timeout_millis=None, **kw):
    ...         self.data = data
    ...         from opentelemetry.sdk.metrics.export import MetricExportResult
    ...         return MetricExportResult.SUCCESS
    ...     def shutdown(self, timeout_millis=None, **kw): pass
    >>> keep = Keep()
    >>> em = OtlpEmitter(exporter=keep)
    >>> em.emit(Snapshot("fraud", "v1", "web1:7", 0.0, 60.0, (Sample.make("mlmon_calls_total", 3),)))
    >>> rm = keep.data.resource_metrics[0]
    >>> rm.resource.attributes["service.name"], rm.resource.attributes["service.instance.id"]
    ('fraud', 'web1:7')
    >>> rm.scope_metrics[0].metrics[0].data.data_points[0].value
    3.0
    >>> em.close()
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        service_name: str | None = None,
        resource_attributes: Mapping[str, str] | None = None,
        exporter: Any = None,
        name: str = "otlp",
    ) -> None:
        _otel()
        if endpoint is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        if timeout is None:
            timeout = _timeout_from_env()
        _check_seconds(timeout=timeout)
        if service_name is not None and (not isinstance(service_name, str) or not service_name):
            raise ValueError(f"service_name must be a non-empty string, got {service_name!r}")
        if resource_attributes is not None and not all(
            isinstance(k, str) and isinstance(v, (str, bool, int, float))
            for k, v in dict(resource_attributes).items()
        ):
            raise ValueError(
                f"resource_attributes must map str to str/bool/int/float, got {resource_attributes!r}"
            )
        if exporter is not None and not callable(getattr(exporter, "export", None)):
            raise TypeError(f"exporter must be an OpenTelemetry MetricExporter, got {exporter!r}")
        _check_name(name)
        self.endpoint = endpoint
        self.headers = dict(headers) if headers is not None else None
        self.timeout = float(timeout)
        self.service_name = service_name
        self.resource_attributes = dict(resource_attributes or {})
        self.name = name
        self._own_exporter = exporter is None
        self._exporter = exporter if exporter is not None else self._make_exporter()
        self._renderer = PrometheusRenderer()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._worker: _Worker | None = None  # the export thread, started at the first emit
        self._scope: Any = None
        self._starts: dict[Identity, tuple[int, float]] = {}  # identity -> (start ns, calls)
        self._resources: dict[Identity, Any] = {}
        self._closed = False
        self._opened: list[Identity] = []
        self.exports = 0
        self.failures = 0
        self.timeouts = 0
        self.skipped = 0
        self.bad_series = 0

    def _make_exporter(self) -> Any:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=self.endpoint, headers=self.headers, timeout=self.timeout)

    # -- resource ----------------------------------------------------------------------------

    def _resource(self, snapshot: Snapshot) -> Any:
        ident = (snapshot.model, snapshot.version, snapshot.instance)
        res = self._resources.get(ident)
        if res is not None:
            return res
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource

        defaults: dict[str, Any] = {
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "service.name": snapshot.model,
            "service.instance.id": snapshot.instance,
        }
        try:
            from opentelemetry.sdk.version import __version__ as sdk_version

            defaults["telemetry.sdk.version"] = sdk_version
        except ImportError:  # pragma: no cover - every SDK release has it
            pass
        if snapshot.version is not None:
            defaults["service.version"] = snapshot.version
        explicit: dict[str, Any] = dict(self.resource_attributes)
        if self.service_name is not None:
            explicit["service.name"] = self.service_name
        # Later merges win: mlmon's defaults < OTEL_RESOURCE_ATTRIBUTES/OTEL_SERVICE_NAME < code.
        res = Resource(defaults).merge(OTELResourceDetector().detect()).merge(Resource(explicit))
        if len(self._resources) >= _MAX_IDENTITIES:
            self._resources.clear()
        self._resources[ident] = res
        return res

    def _start_ns(self, snapshot: Snapshot) -> int:
        # Cumulative series need the time they started from: the first snapshot seen, renewed
        # when the call counter goes down (a restarted monitor with the same identity).
        ident = (snapshot.model, snapshot.version, snapshot.instance)
        calls = snapshot.get("mlmon_calls_total") or 0.0
        known = self._starts.get(ident)
        if known is None or calls < known[1]:
            start = int(snapshot.timestamp * 1e9)
        else:
            start = known[0]
        if len(self._starts) >= _MAX_IDENTITIES and ident not in self._starts:
            self._starts.clear()
        self._starts[ident] = (start, calls)
        return start

    def metrics_data(self, snapshot: Snapshot) -> Any:
        """The SDK ``MetricsData`` one emit exports (one resource, one ``mlmon`` scope)."""
        ex = _otel()
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        if identity_problem(snapshot.model, snapshot.version, snapshot.instance):
            self.bad_series += len(snapshot.samples)
            return ex.MetricsData([])
        metrics, bad = snapshot_metrics(snapshot, self._start_ns(snapshot), self._renderer)
        self.bad_series += bad
        scope = self._scope
        if scope is None:
            scope = self._scope = InstrumentationScope("mlmon", _mlmon_version())
        return ex.MetricsData(
            [
                ex.ResourceMetrics(
                    self._resource(snapshot), [ex.ScopeMetrics(scope, metrics, "")], ""
                )
            ]
        )

    # -- emitter protocol --------------------------------------------------------------------

    def _check_fork(self) -> None:
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._worker = None  # the parent's thread does not exist here
        self._starts = {}
        self.exports = self.failures = self.timeouts = self.skipped = self.bad_series = 0
        if self._own_exporter:  # the parent's pooled connections are the parent's
            self._exporter = self._make_exporter()

    def after_fork(self) -> None:
        """A forked child gets its own exporter (and connections) and fresh counters."""
        self._check_fork()

    def open(self, model: str, version: str | None, instance: str) -> None:
        """A monitor starts using this emitter (several may share one: one exporter for the
        models of a process). The same identity twice is refused: its points would collide."""
        self._check_fork()
        ident = (model, version, instance)
        if self._closed:
            raise RuntimeError("OtlpEmitter is closed")
        if ident in self._opened:
            raise ValueError(
                f"model {model!r} version {version!r} instance {instance!r} already uses this "
                "OtlpEmitter: two monitors would export the same series"
            )
        self._opened.append(ident)

    def release(self, model: str, version: str | None, instance: str) -> None:
        """The monitor with this identity is done; the exporter shuts down after the last one
        (without a matching :meth:`open`, this is :meth:`close`)."""
        self._check_fork()
        ident = (model, version, instance)
        if ident not in self._opened:
            self.close()
            return
        self._opened.remove(ident)
        self._starts.pop(ident, None)
        self._resources.pop(ident, None)
        if not self._opened:
            self.close()

    def _run(self, job: Callable[[], Any], what: str, worker: _Worker | None = None) -> Any:
        """Run ``job`` on the export thread (or ``worker``), waiting at most ``timeout``; raises
        TimeoutError (the job goes on, and :attr:`busy` stays True until it ends)."""
        if worker is None:
            worker = self._worker
            if worker is None or not worker.alive():
                worker = self._worker = _Worker(f"mlmon-{self.name}-export")
        ok, value = worker.run(job, self.timeout)
        if ok is None:
            raise TimeoutError(f"{what} to the OTLP endpoint took longer than {self.timeout:g}s")
        if not ok:
            raise value
        return value

    @property
    def busy(self) -> bool:
        """An export (or the shutdown) is still running past its deadline."""
        worker = self._worker
        return worker is not None and worker.busy

    def emit(self, snapshot: Snapshot) -> None:
        """Export the snapshot; raises (after counting) when the export fails or times out.

        Monitors sharing the emitter take turns (each waits at most ``timeout`` for the other's
        export); never two exports at a time.
        """
        self._check_fork()
        if self._closed:
            raise RuntimeError("OtlpEmitter is closed")
        if not self._lock.acquire(timeout=self.timeout):
            self.skipped += 1
            raise TimeoutError("another monitor's OTLP export still runs: this snapshot is skipped")
        try:
            self._emit_locked(snapshot)
        finally:
            self._lock.release()

    def _emit_locked(self, snapshot: Snapshot) -> None:
        if self.busy:
            self.skipped += 1
            raise TimeoutError("the previous OTLP export is still running: this snapshot is skipped")
        data = self.metrics_data(snapshot)
        if not data.resource_metrics:
            return
        ex = _otel()
        timeout_ms = self.timeout * 1000.0
        deadline = time.monotonic() + self.timeout
        try:
            result = self._run(lambda: self._exporter.export(data, timeout_millis=timeout_ms), "export")
        except TimeoutError:
            self.timeouts += 1
            raise
        except Exception:
            self.failures += 1
            raise
        if result != ex.MetricExportResult.SUCCESS:
            self.failures += 1
            left = max(0.0, deadline - time.monotonic())
            raise OSError(
                f"OTLP export to {self.endpoint or 'the OTEL_EXPORTER_OTLP_* endpoint'} failed "
                f"({result}; {self.timeout - left:.2f}s of {self.timeout:g}s used)"
            )
        self.exports += 1

    @property
    def stats(self) -> dict[str, int]:
        """Counts since construction (or fork): exports made, failed, timed out, skipped
        because the previous one still ran, and series left out."""
        return {
            "exports": self.exports,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "skipped": self.skipped,
            "bad_series": self.bad_series,
        }

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Snapshots not exported (failed, timed out or skipped:
        ``mlmon_dropped_total{buffer="<name>"}``) and series left out (``buffer="<name>_series"``)."""
        lost = self.failures + self.timeouts + self.skipped
        return [
            ("mlmon_dropped_total", float(lost), {"buffer": self.name}),
            ("mlmon_dropped_total", float(self.bad_series), {"buffer": f"{self.name}_series"}),
        ]

    def close(self) -> None:
        """Shut the exporter down, waiting at most ``timeout`` (an export still running is
        told to stop retrying and left to its daemon thread). Idempotent. With monitors that
        opened it, each ``close()`` ends one of them and the last one shuts it down."""
        self._check_fork()
        if self._closed:
            return
        if self._opened:
            self._opened.pop()
            if self._opened:
                return
        self._closed = True
        exporter = self._exporter
        if self._worker is not None:
            self._worker.stop()
        # A thread of its own: the export thread may still be busy with a hung export.
        closer = _Worker(f"mlmon-{self.name}-shutdown")
        try:
            self._run(
                lambda: exporter.shutdown(timeout_millis=self.timeout * 1000.0), "shutdown", closer
            )
        except TimeoutError:
            log.warning("mlmon: %s: the OTLP exporter did not shut down within %gs", self.name, self.timeout)
        finally:
            closer.stop()  # its thread ends after this one job

    def __repr__(self) -> str:
        return f"OtlpEmitter(endpoint={self.endpoint!r}, timeout={self.timeout:g})"
