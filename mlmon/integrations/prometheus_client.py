"""mlmon's series in an application's own ``prometheus_client`` registry.

:class:`MlmonCollector` is both an mlmon emitter and a ``prometheus_client`` custom collector:
give it to the monitor's ``emitters`` and it registers itself in the registry the application
already serves (``prometheus_client.REGISTRY`` by default, or a ``CollectorRegistry``), so
``make_asgi_app()``, ``make_wsgi_app()``, ``start_http_server()`` and ``generate_latest()`` serve
mlmon's series next to the application's own, on the application's port.

A scrape never touches the monitor: it reads the latest snapshot the reporter emitted.

In ``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a pre-fork server),
each worker's collector also writes its latest snapshot to a file in that directory, and the
collector registered in the scrape's registry reads every worker's file: whichever worker
answers the scrape serves the series of all of them (docs/integrations.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mlmon._files import atomic_write
from mlmon.emitters._prometheus_text import _clean
from mlmon.naming import PrometheusRenderer, _prom_name, format_prometheus_value
from mlmon.snapshot import CATALOG, LineError, Snapshot

__all__ = ["MlmonCollector", "mark_process_dead"]

log = logging.getLogger("mlmon.integrations.prometheus_client")

_MAX_IDENTITIES = 64
_FILE_PREFIX = "mlmon_snapshot_"
_MAX_FILE_BYTES = 64 << 20  # a worker's file larger than this is not read (counted)

Identity = tuple[str, str | None, str]


def _file_for(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{_FILE_PREFIX}{pid}.json")


def mark_process_dead(pid: int, path: str | os.PathLike[str] | None = None) -> bool:
    """Remove the snapshot file of a worker that died without closing its monitor.

    The counterpart of ``prometheus_client.multiprocess.mark_process_dead``: call both from
    gunicorn's ``child_exit`` hook. ``path`` defaults to ``$PROMETHEUS_MULTIPROC_DIR``. Returns
    True when a file was removed.

    >>> import tempfile
    >>> mark_process_dead(12345, tempfile.mkdtemp())
    False
    """
    directory = os.fspath(path) if path is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        raise ValueError("mark_process_dead needs a path, or PROMETHEUS_MULTIPROC_DIR to be set")
    try:
        os.unlink(_file_for(directory, pid))
    except FileNotFoundError:
        return False
    return True


def _help(name: str, family: str, type_: str) -> str:
    info = CATALOG.get(family + "_bucket") if type_ == "histogram" else CATALOG.get(name)
    return info.help if info is not None else f"mlmon metric {name}."


def build_families(
    snapshots: Iterable[Snapshot],
    instance_label: str | None,
    renderer: PrometheusRenderer | None = None,
) -> tuple[list[Any], int]:
    """``prometheus_client`` metric families for snapshots, and how many series were left out.

    Names and types are those of :class:`~mlmon.emitters.PrometheusEmitter` (a counter
    ``mlmon_calls_total``, the histogram ``mlmon_latency_seconds``, the window quantiles as the
    summary ``mlmon_latency_window_seconds``). Labels: ``model``, ``version`` (when set), mlmon's
    process identity under ``instance_label`` (omitted when None), then the sample's own.
    """
    from prometheus_client.metrics_core import Metric

    r = renderer if renderer is not None else PrometheusRenderer()
    reserved = {"model", "version", "instance", "job"}
    if instance_label is not None:
        reserved.add(instance_label)
    fams: dict[str, Any] = {}
    # histogram family -> label set without le -> [buckets, sum, count]
    hists: dict[str, dict[tuple[tuple[str, str], ...], list[Any]]] = {}
    bad = 0
    for snap in snapshots:
        snap, dropped = _clean(snap)
        bad += dropped
        ident: dict[str, str] = {"model": snap.model}
        if snap.version is not None:
            ident["version"] = snap.version
        if instance_label is not None:
            ident[instance_label] = snap.instance
        for s in snap.samples:
            fam_name, type_, sample_name = r.family(s.name, s.labels)
            labels = dict(ident)
            for k, v in s.labels:
                lk = _prom_name(k)
                if lk in reserved:
                    lk = "exported_" + lk
                labels[lk] = v
            key = fam_name[:-6] if type_ == "counter" and fam_name.endswith("_total") else fam_name
            fam = fams.get(key)
            if fam is None:
                fam = fams[key] = Metric(key, _help(s.name, fam_name, type_), type_)
            elif fam.type != type_:
                bad += 1  # a name that would break the family it collides with
                continue
            if type_ == "histogram":
                le = labels.pop("le", None)
                group = hists.setdefault(fam_name, {}).setdefault(
                    tuple(sorted(labels.items())), [[], None, None]
                )
                if s.name.endswith("_bucket"):
                    try:
                        bound = float(le) if le is not None else math.nan
                    except ValueError:
                        bound = math.nan
                    if math.isnan(bound):
                        bad += 1
                    else:
                        group[0].append((bound, s.value))
                elif s.name.endswith("_sum"):
                    group[1] = s.value
                else:
                    group[2] = s.value
                continue
            if type_ == "summary" and "quantile" not in labels:
                continue
            fam.add_sample(sample_name, labels, s.value)
    for fam_name, groups in hists.items():
        fam = fams[fam_name]
        for rest, (buckets, total, count) in groups.items():
            labels = dict(rest)
            buckets.sort(key=lambda b: b[0])
            finite = [(b, v) for b, v in buckets if not math.isinf(b)]
            if count is None:
                inf = [v for b, v in buckets if math.isinf(b) and b > 0]
                count = inf[-1] if inf else (finite[-1][1] if finite else None)
            if count is None:
                continue
            for bound, value in finite:
                fam.add_sample(f"{fam_name}_bucket", {**labels, "le": format_prometheus_value(bound)}, value)
            fam.add_sample(f"{fam_name}_bucket", {**labels, "le": "+Inf"}, count)
            if total is not None:
                fam.add_sample(f"{fam_name}_sum", labels, total)
            fam.add_sample(f"{fam_name}_count", labels, count)
    return [f for f in fams.values() if f.samples], bad


class MlmonCollector:
    """An emitter that serves mlmon's snapshots through an existing ``prometheus_client`` registry.

    Args:
        registry: where to register (``prometheus_client.REGISTRY`` when None).
        instance_label: the label that carries mlmon's process identity (``host:pid``). None
            (the default) leaves it out in a single process: Prometheus's own ``instance``
            (the scrape target) names the process, as for the application's other series, and
            nothing is renamed to ``exported_instance``. In multiprocess mode the default is
            ``"mlmon_instance"``: each worker's series need a label of their own.
        multiprocess_dir: share snapshots between the processes of a pre-fork server through
            this directory; default ``$PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
            multiprocess mode), else off. Each process writes ``mlmon_snapshot_<pid>.json`` at
            every emit (removed at close, or by :func:`mark_process_dead`), and a scrape reads
            them all.
        name: the ``emitter``/``buffer`` label in mlmon's own metrics.

    Series that cannot be encoded are left out and counted in
    ``mlmon_dropped_total{buffer="<name>_series"}``; unreadable worker files in
    ``mlmon_internal_errors_total{stage="<name>_read"}``. A scrape never raises because of mlmon.

    >>> import mlmon
    >>> from prometheus_client import CollectorRegistry, Counter, generate_latest
    >>> registry = CollectorRegistry()
    >>> requests = Counter("app_requests", "Requests served.", registry=registry)
    >>> mon = mlmon.Monitor("fraud", emitters=[MlmonCollector(registry)])
    >>> predict = mon.track(lambda x: x)
    >>> _ = [predict(i) for i in range(3)]; requests.inc()
    >>> _ = mon.flush()
    >>> text = generate_latest(registry).decode()
    >>> [l for l in text.splitlines() if l.startswith(("app_requests_total", "mlmon_calls_total"))]
    ['app_requests_total 1.0', 'mlmon_calls_total{model="fraud"} 3.0']
    >>> mon.close()
    >>> "mlmon_calls_total" in generate_latest(registry).decode()  # closed: unregistered
    False
    """

    def __init__(
        self,
        registry: Any = None,
        *,
        instance_label: str | None = None,
        multiprocess_dir: str | os.PathLike[str] | None = None,
        name: str = "prometheus_client",
    ) -> None:
        import prometheus_client

        if registry is None:
            registry = prometheus_client.REGISTRY
        if not callable(getattr(registry, "register", None)):
            raise TypeError(f"registry must be a prometheus_client CollectorRegistry, got {registry!r}")
        if multiprocess_dir is None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        if multiprocess_dir is not None and not os.path.isdir(multiprocess_dir):
            raise ValueError(f"multiprocess_dir must be an existing directory, got {multiprocess_dir!r}")
        if instance_label is None and multiprocess_dir is not None:
            instance_label = "mlmon_instance"
        if instance_label is not None and (
            not isinstance(instance_label, str)
            or _prom_name(instance_label) != instance_label
            or instance_label.startswith("__")
            or instance_label in ("model", "version", "instance", "job", "le", "quantile")
        ):
            raise ValueError(
                "instance_label must be a label name ([a-zA-Z_][a-zA-Z0-9_]*, not model, version, "
                f"instance, job, le or quantile), got {instance_label!r}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.registry = registry
        self.instance_label = instance_label
        self.multiprocess_dir = os.fspath(multiprocess_dir) if multiprocess_dir is not None else None
        self.name = name
        self._renderer = PrometheusRenderer()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._snapshots: OrderedDict[Identity, Snapshot] = OrderedDict()
        self._opened: list[Identity] = []
        self._file: str | None = None
        self._bad_series = 0
        self._read_errors = 0
        self._closed = False
        registry.register(self)

    # -- prometheus_client collector ---------------------------------------------------------

    def describe(self) -> list[Any]:
        """Nothing up front: the series come and go with the snapshots."""
        return []

    def _read_dir(self) -> list[Snapshot]:
        assert self.multiprocess_dir is not None
        out: list[Snapshot] = []
        for path in sorted(Path(self.multiprocess_dir).glob(f"{_FILE_PREFIX}*.json")):
            try:
                if path.stat().st_size > _MAX_FILE_BYTES:
                    raise ValueError(f"{path.name} is larger than {_MAX_FILE_BYTES} bytes")
                for line in path.read_text(encoding="utf-8").splitlines():
                    out.append(Snapshot.from_dict(json.loads(line)))
            except FileNotFoundError:
                continue  # the worker closed between the listing and the read
            except (OSError, ValueError, LineError, TypeError) as exc:
                self._read_errors += 1
                log.debug("mlmon: %s: cannot read %s: %r", self.name, path, exc)
        return out

    def collect(self) -> Iterator[Any]:
        """The metric families of the latest snapshots (of every worker in multiprocess mode)."""
        try:
            if self.multiprocess_dir is not None:
                snaps = self._read_dir()
            else:
                with self._lock:
                    snaps = list(self._snapshots.values())
            families, _ = build_families(snaps, self.instance_label, self._renderer)
        except Exception as exc:  # a scrape of the application's metrics must not fail for us
            self._read_errors += 1
            log.warning("mlmon: %s: collect failed: %r", self.name, exc)
            return iter(())
        return iter(families)

    # -- emitter protocol --------------------------------------------------------------------

    def _check_fork(self) -> None:
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._snapshots = OrderedDict()
        self._file = None  # the parent's file is the parent's
        self._bad_series = self._read_errors = 0

    def after_fork(self) -> None:
        """A forked child serves (and writes) only its own snapshots."""
        self._check_fork()

    def _key(self, model: str, version: str | None, instance: str) -> Identity:
        # Without an instance label, two monitors of one model and version in one process
        # would be the same series.
        return (model, version, instance if self.instance_label is not None else "")

    def open(self, model: str, version: str | None, instance: str) -> None:
        """A monitor starts using this collector; the same series twice is refused."""
        self._check_fork()
        key = self._key(model, version, instance)
        with self._lock:
            if self._closed:
                raise RuntimeError("MlmonCollector is closed")
            if key in self._opened:
                raise ValueError(
                    f"model {model!r} version {version!r} already uses this MlmonCollector: two "
                    "monitors would serve the same series (give them different versions, or set "
                    "instance_label)"
                )
            self._opened.append(key)

    def release(self, model: str, version: str | None, instance: str) -> None:
        """The monitor with this identity is done: its series go; the last one closes."""
        self._check_fork()
        key = self._key(model, version, instance)
        with self._lock:
            if key in self._opened:
                self._opened.remove(key)
            for k in [k for k in self._snapshots if self._key(*k) == key]:
                del self._snapshots[k]
            last = not self._opened
            if not last:
                self._write_file()
        if last:
            self.close()

    def emit(self, snapshot: Snapshot) -> None:
        """Keep the snapshot for the next scrapes (and write this process's file)."""
        self._check_fork()
        with self._lock:
            if self._closed:
                raise RuntimeError("MlmonCollector is closed")
            snapshot, bad = _clean(snapshot)  # counted once per snapshot, not per scrape
            self._bad_series += bad
            ident = (snapshot.model, snapshot.version, snapshot.instance)
            self._snapshots[ident] = snapshot
            self._snapshots.move_to_end(ident)
            while len(self._snapshots) > _MAX_IDENTITIES:
                self._snapshots.popitem(last=False)
            self._write_file()

    def _write_file(self) -> None:
        # Called with self._lock held.
        if self.multiprocess_dir is None:
            return
        path = _file_for(self.multiprocess_dir, os.getpid())
        text = "".join(s.to_json() + "\n" for s in self._snapshots.values())
        atomic_write(path, text)
        self._file = path

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """Series left out (``mlmon_dropped_total{buffer="<name>_series"}``) and worker files
        that could not be read (``mlmon_internal_errors_total{stage="<name>_read"}``)."""
        return [
            ("mlmon_dropped_total", float(self._bad_series), {"buffer": f"{self.name}_series"}),
            ("mlmon_internal_errors_total", float(self._read_errors), {"stage": f"{self.name}_read"}),
        ]

    def close(self) -> None:
        """Unregister from the registry and remove this process's file. Idempotent."""
        self._check_fork()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._snapshots.clear()
            path, self._file = self._file, None
        try:
            self.registry.unregister(self)
        except KeyError:
            pass  # the application unregistered it already
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"MlmonCollector(instance_label={self.instance_label!r}, multiprocess_dir={self.multiprocess_dir!r})"
