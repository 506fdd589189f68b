"""One Prometheus endpoint per host for pre-fork servers (gunicorn, ``uvicorn --workers``).

Every worker's monitor has a :class:`HostEndpoint` among its emitters; at each flush it writes
the worker's state (:meth:`Monitor.fleet_state`, a few KB) into one host directory, whole or
not at all (``w.<model>.<digest>.<pid>.<start>.<instance digest>.state``). One process serves
``/metrics``: whichever worker binds the port first (the others try again at each flush and
every ``lease_interval``, so when it ends another takes over within a second), or the gunicorn
master (:func:`mlmon.integrations.gunicorn.serve_host_endpoint`). POSIX only (``flock``,
``/proc`` where there is one). A scrape reads the live workers'
states and one *archive* per model, merges them (:func:`mlmon.fleet.merge_states`: counters
and buckets added, window gauges computed on the merged window) and renders the text format
with ``instance="<hostname>"``.

The archive holds the cumulative counters of every worker that ended: a worker's state is
folded into it (windows emptied by :func:`mlmon.fleet.retire_state`, then
:func:`mlmon.fleet.combine_states`) and its file deleted once its process is gone (its pid no
longer runs, or runs a newer process: the file name carries the process's start time). So the
directory holds one file per live worker plus one archive, whatever the number of restarts, and
a scrape after 1,000 restarts reads what it read after ten. Folds and scrapes exclude each other
with ``flock`` on ``host.lock`` (a scrape never sees a state both in the archive and in its own
file), and the archive lists the files of its last fold, so a folder killed between writing the
archive and deleting those files never counts them twice.

A file that cannot be read or merged (corrupt, truncated, too large, of another mlmon version or
another configuration) is left out of the scrape and, once its process is gone, removed and
counted in ``mlmon_host_rejected_total{reason}``; a scrape never fails because of one.

>>> import mlmon, tempfile, urllib.request
>>> d = tempfile.mkdtemp()
>>> host = HostEndpoint(d, port=0, instance="web-1")
>>> mon = mlmon.Monitor("doc-host", emitters=[host])
>>> predict = mon.track(lambda x: x)
>>> _ = [predict(i) for i in range(3)]
>>> _ = mon.flush()                      # writes this worker's state, takes the port
>>> with urllib.request.urlopen(host.url) as resp:
...     text = resp.read().decode()
>>> [line for line in text.splitlines() if line.startswith("mlmon_calls_total")]
['mlmon_calls_total{model="doc-host",instance="web-1"} 3']
>>> mon.close()
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import socket
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from mlmon import _lifecycle
from mlmon._component import Triple
from mlmon._files import atomic_write
from mlmon.emitters._prometheus_text import CONTENT_TYPE, render_exposition
from mlmon.emitters.prometheus import _Server
from mlmon.fleet._codec import StateError
from mlmon.fleet.state import (
    Parts,
    combine_states,
    merge_states,
    read_state,
    reason_of,
    retire_state,
)
from mlmon.naming import PrometheusRenderer
from mlmon.snapshot import Snapshot, samples_from

__all__ = ["CONTENT_TYPE", "HostEndpoint", "HostScrape"]

log = logging.getLogger("mlmon.fleet.host")

_STATE_RE = re.compile(r"^w\.([A-Za-z0-9_-]+)\.([0-9a-f]{12})\.([0-9]+)\.([0-9]+)\.[0-9a-f]{8}\.state$")
_ARCHIVE_RE = re.compile(r"^a\.([A-Za-z0-9_-]+)\.([0-9a-f]{12})\.state$")
_TMP_RE = re.compile(r"^\.[aw]\..*\.tmp$")  # left by a writer killed inside atomic_write
_LOCK_NAME = "host.lock"
_ARCHIVE_MAGIC = b"MLMA"
_MAX_HEADER = 1 << 20
_LOG_INTERVAL = 60.0
REASONS = ("corrupt", "size", "version", "config", "model")
"""Why a state file is rejected (``mlmon_host_rejected_total{reason}``)."""


def _key(model: str, version: str | None) -> str:
    digest = hashlib.blake2b(f"{model}\0{version}".encode(), digest_size=6).hexdigest()
    return f"{model}.{digest}"


def _proc_start(pid: int) -> tuple[str, str] | None:
    """(start time in clock ticks since boot, state letter) of a running process, from
    ``/proc``; None when it does not exist. Raises OSError when there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        if not os.path.isdir("/proc/self"):
            raise
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[19].decode(), fields[0].decode()


def _own_start() -> str:
    try:
        got = _proc_start(os.getpid())
    except OSError:
        return "0"
    return got[0] if got is not None else "0"


def process_ended(pid: int, start: str) -> bool:
    """True when the process ``pid`` that started at ``start`` (clock ticks since boot, ``"0"``
    when unknown) has ended: no such pid, a zombie, or a newer process with that pid.

    >>> process_ended(os.getpid(), _own_start()), process_ended(2**22 + 1, "0")
    (False, True)
    """
    try:
        got = _proc_start(pid)
    except OSError:  # no /proc (macOS): the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    if got is None:
        return True
    started, state = got
    return state in ("Z", "X") or (start != "0" and started != start)


@attrs.define
class _Archive:
    state: bytes | None = None
    folded: list[str] = attrs.Factory(list)
    retired: int = 0
    rejected: dict[str, int] = attrs.Factory(dict)

    def pack(self) -> bytes:
        header = json.dumps(
            {"folded": self.folded, "retired": self.retired, "rejected": self.rejected}, separators=(",", ":")
        ).encode()
        return _ARCHIVE_MAGIC + struct.pack(">I", len(header)) + header + (self.state or b"")

    @classmethod
    def unpack(cls, raw: bytes) -> _Archive:
        if raw[:4] != _ARCHIVE_MAGIC or len(raw) < 8:
            raise StateError("not an mlmon host archive")
        (n,) = struct.unpack(">I", raw[4:8])
        if n > _MAX_HEADER or 8 + n > len(raw):
            raise StateError("truncated host archive")
        try:
            head = json.loads(raw[8 : 8 + n])
            folded = [str(x) for x in head["folded"]]
            retired = int(head["retired"])
            rejected = {str(k): int(v) for k, v in head["rejected"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"bad host archive header: {exc}") from None
        return cls(raw[8 + n :] or None, folded, retired, rejected)


@attrs.frozen
class HostScrape:
    """What one scrape of the host directory read.

    Attributes:
        snapshots: one merged snapshot per model (identity ``instance`` = the endpoint's).
        live: worker states merged with their windows.
        stale: states of running workers not refreshed within ``stale_after`` (counters only).
        ended: states of ended workers not yet folded (counters only).
        skipped: states left out, by reason (``max_states``, ``unread`` and the merge's
            rejection reasons).
        seconds: the time the scrape took.

    >>> import mlmon, tempfile
    >>> host = HostEndpoint(tempfile.mkdtemp(), port=0, lease=False)
    >>> mon = mlmon.Monitor("doc-host-scrape", emitters=[host])
    >>> host.publish(mon)
    >>> scrape = host.scrape()
    >>> scrape.live, scrape.ended, scrape.skipped
    (1, 0, {})
    >>> mon.close()
    """

    snapshots: tuple[Snapshot, ...]
    live: int
    stale: int
    ended: int
    skipped: dict[str, int]
    seconds: float


class HostEndpoint:
    """One Prometheus endpoint serving the sum of a host's workers (see the module docstring).

    Pass it to every worker's monitor as an emitter: at each flush it writes the worker's
    state into ``directory``, folds the states of ended workers into the archive, and (with
    ``lease=True``) tries to bind ``host:port`` if nobody serves yet. The endpoint is shared by
    all the monitors of a process (one snapshot per model on the page).

    Args:
        directory: an existing directory private to the host (a Kubernetes ``emptyDir``): one
            PID namespace, one application.
        port, host, path: where the endpoint listens (``port=0``: a free port, tests only).
        instance: the ``instance`` label of the served series; the host name by default.
        lease: True: the first worker to bind the port serves, the others retry each flush.
            False: this process never binds unless :meth:`serve` is called (the gunicorn
            master serves).
        stale_after: seconds after which a running worker's state that was not rewritten
            counts without its window (a worker stuck in a long call, a closed monitor).
        max_states: most worker states one scrape reads (past it: counted, left out).
        max_state_bytes: largest state file read, bytes (a worker's larger state is not
            written, counted in ``mlmon_dropped_total{buffer="host_state"}``).
        max_scrape_bytes: most bytes of state files one scrape reads (past it: counted in
            ``mlmon_host_skipped_states{reason="max_bytes"}``, left out). With the two above,
            what a scrape holds in memory is bounded.
        fold_batch: most ended workers folded into the archive by one fold.
        lock_timeout: seconds a scrape or a worker's last fold waits for ``host.lock``.
        lease_interval: seconds between two attempts to take the port, besides each flush
            (``lease=True``): the longest a host goes unserved after its server ends.
        name: the ``emitter`` label.

    Raises:
        ValueError: a directory that does not exist, or a value out of range (named).

    >>> import mlmon, tempfile
    >>> host = HostEndpoint(tempfile.mkdtemp(), port=0, lease=False)
    >>> mon = mlmon.Monitor("doc-host-class", emitters=[host])
    >>> host.publish(mon)                    # what each flush does
    >>> host.scrape().snapshots[0].get("mlmon_host_workers", state="live"), host.serving
    (1.0, False)
    >>> mon.close()
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        port: int = 9464,
        host: str = "127.0.0.1",
        path: str = "/metrics",
        instance: str | None = None,
        lease: bool = True,
        stale_after: float = 60.0,
        max_states: int = 1024,
        max_state_bytes: int = 4 << 20,
        max_scrape_bytes: int = 64 << 20,
        fold_batch: int = 256,
        lock_timeout: float = 2.0,
        lease_interval: float = 1.0,
        name: str = "host",
    ) -> None:
        d = os.fspath(directory)
        if not os.path.isdir(d):
            raise ValueError(f"directory must be an existing directory, got {directory!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an int in 0..65535, got {port!r}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        for field, value in (("stale_after", stale_after), ("lock_timeout", lock_timeout), ("lease_interval", lease_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{field} must be a positive number of seconds, got {value!r}")
        for field, n in (("max_states", max_states), ("max_state_bytes", max_state_bytes), ("max_scrape_bytes", max_scrape_bytes), ("fold_batch", fold_batch)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{field} must be a positive int, got {n!r}")
        if instance is not None and (not isinstance(instance, str) or not instance):
            raise ValueError(f"instance must be a non-empty string, got {instance!r}")
        self.directory = d
        self.host = host
        self.path = path
        self.instance = instance if instance is not None else socket.gethostname()
        self.lease = bool(lease)
        self.stale_after = float(stale_after)
        self.max_states = max_states
        self.max_state_bytes = max_state_bytes
        self.max_scrape_bytes = max_scrape_bytes
        self.fold_batch = fold_batch
        self.lock_timeout = float(lock_timeout)
        self.lease_interval = float(lease_interval)
        self.name = name
        self._want_port = port
        self._renderer = PrometheusRenderer()
        self._lock = threading.Lock()
        self._serve_lock = threading.Lock()  # one scrape at a time: bounded work per host
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._start = _own_start()
        self._monitors: dict[str, weakref.ref[Any]] = {}
        self._own: dict[tuple[str, str], str] = {}  # (key, instance) -> this process's state file
        self._retired: set[tuple[str, str]] = set()  # released: never written again
        self._opened: list[tuple[str, str | None, str]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = self._want_port
        self._closed = False
        self._lease_thread: threading.Thread | None = None
        self._lease_stop: threading.Event | None = None
        self._errors: dict[str, int] = {"publish": 0, "fold": 0, "bind": 0, "scrape": 0}
        self._dropped = 0
        self._last_seconds = 0.0
        self._last_log: dict[str, float] = {}

    # -- fork --------------------------------------------------------------------------------

    def after_fork(self) -> None:
        """In a forked child: let go of the parent's endpoint (its socket copy is closed); with
        ``lease=True`` the child tries to take the port after ``lease_interval``."""
        self._check_fork()
        self._ensure_lease()

    def _check_fork(self) -> None:
        if self._pid == os.getpid():
            return
        server = self._server
        if server is not None:
            try:
                server.socket.close()
            except OSError:
                pass
        self._lock = threading.Lock()
        self._serve_lock = threading.Lock()
        self._reset()

    # -- errors ------------------------------------------------------------------------------

    def _failed(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            self._errors[stage] = self._errors.get(stage, 0) + 1
            now = time.monotonic()
            if now - self._last_log.get(stage, -math.inf) < _LOG_INTERVAL:
                return
            self._last_log[stage] = now
        log.warning("mlmon: host endpoint %s failed in %s: %r", self.directory, stage, exc)

    # -- the worker side ------------------------------------------------------------------------

    def open(self, model: str, version: str | None, instance: str) -> None:
        """A monitor starts using this endpoint (called by the monitor at construction)."""
        self._check_fork()
        with self._lock:
            if self._closed:
                raise RuntimeError("HostEndpoint is closed")
            self._opened.append((model, version, instance))
        self._ensure_lease()

    def _ensure_lease(self) -> None:
        """With ``lease=True``: a daemon thread that tries to take the port every
        ``lease_interval`` seconds while nobody of this process serves, so that a worker that
        takes no request still takes over from a server that ended."""
        if not self.lease:
            return
        with self._lock:
            if self._lease_thread is not None or self._closed:
                return
            stop = self._lease_stop = threading.Event()
            t = self._lease_thread = threading.Thread(
                target=self._lease_loop, args=(stop, os.getpid()), name="mlmon-host-lease", daemon=True
            )
        t.start()

    def _lease_loop(self, stop: threading.Event, pid: int) -> None:
        while not stop.wait(self.lease_interval):
            if pid != os.getpid():  # pragma: no cover - threads do not survive a fork
                return
            if self._server is not None:
                continue
            self._known_monitors()
            with self._lock:
                known = bool(self._monitors)
            if known:
                self._try_serve()

    def _known_monitors(self) -> None:
        """Bind the live monitors of this process that use this endpoint."""
        for obj in _lifecycle.live():
            if any(e is self for e in getattr(obj, "emitters", ())) and callable(getattr(obj, "fleet_state", None)):
                self.bind_monitor(obj)  # type: ignore[arg-type]

    def _try_serve(self) -> None:
        try:
            self.serve()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:  # in use: another worker serves, the lease works
                self._failed("bind", exc)

    def bind_monitor(self, monitor: Parts) -> None:
        """Know ``monitor`` (its configuration reads the states of its model). Called by
        :meth:`publish`; the gunicorn master's monitors are given to :meth:`serve`."""
        with self._lock:
            self._monitors[_key(monitor.name, monitor.version)] = weakref.ref(monitor)

    def emit(self, snapshot: Snapshot) -> None:
        """Publish the state of the monitor that built ``snapshot`` (the emitter protocol)."""
        self._check_fork()
        monitor = self._find(snapshot.model, snapshot.version, snapshot.instance)
        if monitor is None:
            raise LookupError(f"no live monitor {snapshot.model!r} (instance {snapshot.instance!r}) in this process")
        self.publish(monitor)

    def _find(self, model: str, version: str | None, instance: str) -> Any:
        with self._lock:
            ref = self._monitors.get(_key(model, version))
        mon = ref() if ref is not None else None
        if mon is not None and getattr(mon, "instance", None) == instance:
            return mon
        for obj in _lifecycle.live():
            if (
                getattr(obj, "name", None) == model
                and getattr(obj, "version", None) == version
                and getattr(obj, "instance", None) == instance
                and callable(getattr(obj, "fleet_state", None))
            ):
                return obj
        return None

    def publish(self, monitor: Any) -> None:
        """Write ``monitor``'s state (``monitor.fleet_state()``) into the directory, fold the
        states of ended workers, and take the port if free (``lease=True``).

        Raises:
            OSError: the state could not be written (the reporter counts it); folding and
                binding failures are counted in :meth:`self_metrics`, never raised.
        """
        self._check_fork()
        if self._closed:
            raise RuntimeError("HostEndpoint is closed")
        self.bind_monitor(monitor)
        state = monitor.fleet_state()
        key = _key(monitor.name, monitor.version)
        if len(state) > self.max_state_bytes:
            with self._lock:
                self._dropped += 1
            raise ValueError(f"state of {len(state)} bytes is over max_state_bytes={self.max_state_bytes}")
        ident = (key, str(monitor.instance))
        inst = hashlib.blake2b(ident[1].encode(), digest_size=4).hexdigest()
        target = os.path.join(self.directory, f"w.{key}.{self._pid}.{self._start}.{inst}.state")
        try:
            # Shared lock: a release that folds this file (exclusive) waits for this write, and a
            # write that comes after the release (a last emit still running) writes nothing.
            fd = self._lock_file(False, True)
            if fd is None:
                raise TimeoutError(f"host.lock held longer than lock_timeout={self.lock_timeout}s")
            try:
                with self._lock:
                    if ident in self._retired:
                        return
                atomic_write(target, state)
                with self._lock:
                    self._own[ident] = target
            finally:
                os.close(fd)
        except OSError:
            with self._lock:
                self._errors["publish"] += 1
            raise
        try:
            self.fold()
        except Exception as exc:
            self._failed("fold", exc)
        if self.lease and self._server is None:
            self._try_serve()
        self._ensure_lease()

    def release(self, model: str, version: str | None, instance: str) -> None:
        """The monitor with that identity is done: its last state goes to the archive now,
        and the endpoint stops when no monitor of this process uses it any more."""
        self._check_fork()
        key = _key(model, version)
        with self._lock:
            if (model, version, instance) in self._opened:
                self._opened.remove((model, version, instance))
            self._retired.add((key, instance))
            own = self._own.pop((key, instance), None)
            last = not self._opened and not self._own
        if own is not None:
            try:
                self.fold(only=[own], wait=True)
            except Exception as exc:
                self._failed("fold", exc)
        if last:
            self._stop(lease=True)
            with self._lock:
                self._closed = True  # the last monitor of this process is done with it

    def close(self) -> None:
        """Fold this process's states into the archive and stop the endpoint. Idempotent.

        Takes at most ``lock_timeout`` (waiting for ``host.lock``) plus the endpoint's stop
        (a poll of 0.1 s; a scrape being answered is waited for at most 5 s). A monitor that
        closes calls :meth:`release` within its own ``close_timeout``.
        """
        self._check_fork()
        with self._lock:
            own = list(self._own.values())
            self._retired.update(self._own)
            self._own.clear()
            self._opened.clear()
        if own:
            try:
                self.fold(only=own, wait=True)
            except Exception as exc:
                self._failed("fold", exc)
        with self._lock:
            self._closed = True
        self._stop(lease=True)

    def _stop(self, lease: bool = False) -> None:
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
            stop = self._lease_stop if lease else None
        if stop is not None:
            stop.set()
        if server is not None:
            with self._lock:
                self._errors["scrape"] += server.errors
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def self_metrics(self) -> list[tuple[str, float, dict[str, str]]]:
        """This process's failures: ``mlmon_internal_errors_total{stage="host_<stage>"}``
        (publish, fold, bind, scrape) and states too large to write
        (``mlmon_dropped_total{buffer="host_state"}``)."""
        with self._lock:
            errors = dict(self._errors)
            dropped = self._dropped
        server = self._server
        if server is not None:
            errors["scrape"] += server.errors
        out = [("mlmon_dropped_total", float(dropped), {"buffer": "host_state"})]
        out.extend(("mlmon_internal_errors_total", float(n), {"stage": f"host_{s}"}) for s, n in sorted(errors.items()))
        return out

    # -- the directory -----------------------------------------------------------------------

    def _lock_file(self, exclusive: bool, wait: bool) -> int | None:
        """``host.lock`` taken (shared or exclusive); None when not had within the deadline
        (at once when ``wait`` is False)."""
        fd = os.open(os.path.join(self.directory, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + (self.lock_timeout if wait else 0.0)
        while True:
            try:
                fcntl.flock(fd, mode)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.002)
            except BaseException:
                os.close(fd)
                raise

    def _read(self, path: str) -> bytes | None:
        """The file's bytes; None when it vanished. Raises StateError (reason size)."""
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_size > self.max_state_bytes:
                    raise _reject("size", "state file over max_state_bytes")
                return fh.read(self.max_state_bytes + 1)
        except FileNotFoundError:
            return None

    def _archive(self, key: str) -> tuple[_Archive, str | None]:
        """The archive of ``key`` and, when it could not be read, why."""
        path = os.path.join(self.directory, f"a.{key}.state")
        try:
            with open(path, "rb") as fh:
                raw = fh.read(self.max_state_bytes + _MAX_HEADER + 8)
        except FileNotFoundError:
            return _Archive(), None
        try:
            return _Archive.unpack(raw), None
        except StateError:
            return _Archive(), "corrupt"

    def _scan(self) -> tuple[dict[str, list[tuple[str, int, str, float]]], list[str]]:
        """Worker files by model key: (name, pid, start, mtime), oldest first; and tmp files."""
        by_key: dict[str, list[tuple[str, int, str, float]]] = {}
        tmp: list[str] = []
        with os.scandir(self.directory) as it:
            for entry in it:
                m = _STATE_RE.match(entry.name)
                if m is None:
                    if _TMP_RE.match(entry.name):
                        tmp.append(entry.name)
                    continue
                try:
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                key = f"{m.group(1)}.{m.group(2)}"
                by_key.setdefault(key, []).append((entry.name, int(m.group(3)), m.group(4), mtime))
        for files in by_key.values():
            files.sort(key=lambda f: f[3])
        return by_key, tmp

    def _ended(self, pid: int, start: str) -> bool:
        if pid == self._pid and start == self._start:
            return False
        return process_ended(pid, start)

    def _check_state(self, monitor: Parts, blob: bytes) -> bytes:
        """The state with its windows emptied, if it is one ``monitor`` can merge."""
        retired = retire_state(blob)
        doc = read_state(retired)
        if doc["model"] != monitor.name or doc.get("version") != monitor.version:
            raise _reject("model", "a state of another model")
        if doc["config"] != monitor._state_config():
            raise _reject("config", "a state of a differently configured monitor")
        return retired

    def fold(self, *, only: Sequence[str] | None = None, wait: bool = False) -> int:
        """Fold the states of ended workers into their model's archive and delete their files
        (``only``: these files, whatever their process). Returns how many were folded; 0 when
        another process holds the lock (it folds them) and ``wait`` is False.
        """
        fd = self._lock_file(True, wait)
        if fd is None:
            return 0
        try:
            return self._fold_locked(only)
        finally:
            os.close(fd)

    def _fold_locked(self, only: Sequence[str] | None) -> int:
        by_key, tmp = self._scan()
        now = time.time()
        for name in tmp:  # a writer killed inside atomic_write: its previous file is whole
            p = os.path.join(self.directory, name)
            try:
                if now - os.stat(p).st_mtime > self.stale_after:
                    os.unlink(p)
            except FileNotFoundError:
                pass
        wanted = None if only is None else {os.path.basename(p) for p in only}
        folded = 0
        for key, files in by_key.items():
            with self._lock:
                ref = self._monitors.get(key)
            monitor = ref() if ref is not None else None
            if monitor is None:
                continue  # a model this process does not run: one that does folds it
            if wanted is None:
                gone = [f for f in files if self._ended(f[1], f[2])]
            else:
                gone = [f for f in files if f[0] in wanted]
            if gone:
                folded += self._fold_key(monitor, key, [f[0] for f in gone[: self.fold_batch]])
        return folded

    def _fold_key(self, monitor: Parts, key: str, names: list[str]) -> int:
        archive, bad = self._archive(key)
        rejected = dict(archive.rejected)
        if bad is not None:
            rejected[bad] = rejected.get(bad, 0) + 1
        already = set(archive.folded)
        states: list[bytes] = []
        if archive.state is not None:
            try:
                states.append(self._check_state(monitor, archive.state))
            except StateError as exc:  # e.g. a new configuration: its archive starts afresh
                r = reason_of(exc)
                rejected[r] = rejected.get(r, 0) + 1
        folded: list[str] = []
        good = 0
        for name in names:
            if name in already:  # counted by a fold that was killed before deleting it
                folded.append(name)
                continue
            try:
                blob = self._read(os.path.join(self.directory, name))
                if blob is None:
                    continue
                states.append(self._check_state(monitor, blob))
                good += 1
            except StateError as exc:
                r = reason_of(exc)
                rejected[r] = rejected.get(r, 0) + 1
            folded.append(name)
        combined, lost = combine_states(monitor, states, instance="archive")
        for r, n in lost.items():
            rejected[r] = rejected.get(r, 0) + n
        # The files this fold deletes, and those an earlier killed fold left that still exist:
        # whoever finds them next deletes them without counting them again.
        leftover = [n for n in already if n not in folded and os.path.exists(os.path.join(self.directory, n))]
        new = _Archive(combined, folded + leftover, archive.retired + max(0, good - sum(lost.values())), rejected)
        atomic_write(os.path.join(self.directory, f"a.{key}.state"), new.pack())
        for name in folded:
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass
        return len(folded)

    # -- the serving side --------------------------------------------------------------------

    def serve(self, monitors: Iterable[Parts] = ()) -> None:
        """Serve the endpoint from this process now (the gunicorn master calls this in
        ``when_ready``; workers with ``lease=True`` call it at each flush until one binds).

        Args:
            monitors: monitors whose models this process serves, besides those that
                published through it (a master's monitors never publish).

        Raises:
            OSError: the port is taken (``EADDRINUSE``) or cannot be bound.
        """
        self._check_fork()
        for mon in monitors:
            self.bind_monitor(mon)
        with self._lock:
            if self._server is not None or self._closed:
                return
            infos = socket.getaddrinfo(self.host or None, self._want_port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
            family, _, _, _, addr = infos[0]
            server = _Server(addr, family, self.path, self._body, self.name)
            self._server = server
            self._port = int(server.server_address[1])
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="mlmon-host-http", daemon=True
            )
            self._thread.start()

    @property
    def serving(self) -> bool:
        """True when this process serves the endpoint."""
        return self._server is not None and self._pid == os.getpid()

    @property
    def port(self) -> int:
        """The port served (the chosen one with ``port=0``, once serving)."""
        return self._port

    @property
    def url(self) -> str:
        """The scrape URL."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self._port}{self.path}"

    def _body(self) -> bytes:
        # A failure fails this scrape (Prometheus records it); the server counts and logs it.
        return self.render().encode("utf-8")

    def render(self) -> str:
        """The text a scrape gets now (what the endpoint serves)."""
        return render_exposition(self.scrape().snapshots, self._renderer)

    def scrape(self) -> HostScrape:
        """Read and merge the host's states now (one per model this process knows)."""
        t0 = time.perf_counter()
        with self._serve_lock:
            self._known_monitors()  # a master's monitors, or ours before their first flush
            try:
                self.fold()  # ended workers since the last flush; skipped if someone is folding
            except Exception as exc:
                self._failed("fold", exc)
            with self._lock:
                refs = list(self._monitors.items())
            monitors = {k: m for k, r in refs if (m := r()) is not None}
            fd = self._lock_file(False, True)
            if fd is None:
                raise TimeoutError(f"host.lock held longer than lock_timeout={self.lock_timeout}s")
            try:
                by_key, _ = self._scan()
                budget = [self.max_scrape_bytes]
                reads = {k: self._read_key(k, by_key.get(k, []), budget) for k in monitors}
            finally:
                os.close(fd)
            snaps: list[Snapshot] = []
            totals = {"live": 0, "stale": 0, "ended": 0}
            skipped_all: dict[str, int] = {}
            for key, (archive, blobs, counts, skipped) in reads.items():
                monitor = monitors[key]
                for k, v in counts.items():
                    totals[k] += v
                health: list[Triple] = [
                    ("mlmon_host_workers", float(n), {"state": s}) for s, n in counts.items()
                ]
                health.append(("mlmon_host_retired_total", float(archive.retired), {}))
                health.extend(
                    ("mlmon_host_rejected_total", float(archive.rejected.get(r, 0)), {"reason": r}) for r in REASONS
                )
                health.append(("mlmon_host_scrape_seconds", self._last_seconds, {}))
                retired: list[bytes] = []
                for blob, live in blobs:
                    if live:
                        retired.append(blob)
                        continue
                    try:
                        retired.append(retire_state(blob))
                    except StateError as exc:
                        r = reason_of(exc)
                        skipped[r] = skipped.get(r, 0) + 1
                states = [archive.state] if archive.state is not None else []
                m = merge_states(monitor, [*states, *retired], instance=self.instance)
                for r, n in m.rejected.items():
                    skipped[r] = skipped.get(r, 0) + n
                health.extend(("mlmon_host_skipped_states", float(n), {"reason": r}) for r, n in sorted(skipped.items()))
                for r, n in skipped.items():
                    skipped_all[r] = skipped_all.get(r, 0) + n
                snap = m.snapshot
                snaps.append(attrs.evolve(snap, samples=snap.samples + samples_from(health)))
            seconds = time.perf_counter() - t0
            self._last_seconds = seconds
        return HostScrape(tuple(snaps), totals["live"], totals["stale"], totals["ended"], skipped_all, seconds)

    def _read_key(
        self, key: str, files: list[tuple[str, int, str, float]], budget: list[int]
    ) -> tuple[_Archive, list[tuple[bytes, bool]], dict[str, int], dict[str, int]]:
        archive, bad = self._archive(key)
        skipped: dict[str, int] = {}
        if bad is not None:
            skipped["archive"] = 1
        folded = set(archive.folded)
        newest_first = [f for f in reversed(files) if f[0] not in folded]
        if len(newest_first) > self.max_states:
            skipped["max_states"] = len(newest_first) - self.max_states
            newest_first = newest_first[: self.max_states]
        now = time.time()
        blobs: list[tuple[bytes, bool]] = []
        counts = {"live": 0, "stale": 0, "ended": 0}
        for name, pid, start, mtime in newest_first:
            try:
                blob = self._read(os.path.join(self.directory, name))
            except (StateError, OSError) as exc:
                r = reason_of(exc) if isinstance(exc, StateError) else "unread"
                skipped[r] = skipped.get(r, 0) + 1
                continue
            if blob is None:
                continue
            if len(blob) > budget[0]:
                skipped["max_bytes"] = skipped.get("max_bytes", 0) + 1
                continue
            budget[0] -= len(blob)
            if self._ended(pid, start):
                kind = "ended"
            elif now - mtime > self.stale_after:
                kind = "stale"
            else:
                kind = "live"
            counts[kind] += 1
            blobs.append((blob, kind == "live"))
        return archive, blobs, counts, skipped

    def __repr__(self) -> str:
        return f"HostEndpoint({self.directory!r}, port={self._port}, instance={self.instance!r})"


def _reject(reason: str, text: str) -> StateError:
    e = StateError(text)
    e.reason = reason  # type: ignore[attr-defined]
    return e
