"""Start and stop the real metric daemons that the integration tests talk to.

Every daemon runs from its own temp directory, listens on free loopback ports only, and writes
its stdout/stderr to ``<workdir>/<name>.log``.  Every wait is bounded; a daemon that does not come
up raises :class:`ServerError` quoting the end of its log.

Daemons (see DESIGN.md §6):

* :class:`Carbon` -- carbon-cache from Debian's ``graphite-carbon``; data is read back from its
  whisper files with the ``whisper`` package.
* :class:`StatsdDaemon` -- the StatsD daemon from npm, run with node, flushing every second to a
  :class:`Carbon`.
* :class:`Prometheus` -- Debian's ``prometheus`` scraping static targets every second;
  :class:`Promtool` wraps ``promtool check``.
* :class:`CarbonRelay` -- ``carbon-c-relay`` spreading lines over several :class:`Carbon`.
* :class:`GraphiteWeb` -- graphite-web's render and find API over one or more :class:`Carbon`.
* :class:`MetricsEndpoint` -- a tiny in-process HTTP server that serves a fixed exposition text.

Data in flight is lost on stop: carbon-cache drops what is still in its write cache on SIGTERM
and StatsD drops what it has not flushed yet.  Tests must therefore poll for the data they expect
(``Carbon.wait_for``, ``Prometheus.wait_for_query``) before anything is stopped.

This module imports nothing outside the standard library at import time (``whisper`` is imported
when first needed), so it can be collected even where the daemons are not installed; use
:func:`missing` to ask why a daemon cannot run.
"""

from __future__ import annotations

import atexit
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LOOPBACK",
    "Carbon",
    "CarbonRelay",
    "GraphiteWeb",
    "MetricsEndpoint",
    "Prometheus",
    "Promtool",
    "ServerError",
    "StatsdDaemon",
    "find_carbon_cache",
    "find_carbon_relay",
    "find_graphite_manage",
    "find_node",
    "find_prometheus",
    "find_promtool",
    "find_statsd_js",
    "free_port",
    "missing",
    "promtool_check_metrics",
    "promtool_check_rules",
    "send_tcp_lines",
    "stop_all",
]

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
Point = tuple[int, float]


class ServerError(RuntimeError):
    """A daemon could not be found, started or queried."""


class _PortConflict(ServerError):
    """Another process holds one of the ports we picked; start again with new ones."""


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def _which(name: str, *fallbacks: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_carbon_cache() -> str | None:
    """Path of the ``carbon-cache`` script, or None when graphite-carbon is not installed."""
    return _which("carbon-cache", "/usr/bin/carbon-cache", "/opt/graphite/bin/carbon-cache.py")


def find_carbon_relay() -> str | None:
    """Path of ``carbon-c-relay``, or None when it is not installed."""
    return _which("carbon-c-relay", "/usr/bin/carbon-c-relay")


def find_prometheus() -> str | None:
    """Path of ``prometheus``, or None when it is not installed."""
    return _which("prometheus", "/usr/bin/prometheus")


def find_promtool() -> str | None:
    """Path of ``promtool``, or None when it is not installed."""
    return _which("promtool", "/usr/bin/promtool")


def find_graphite_manage() -> str | None:
    """Path of graphite-web's ``graphite-manage`` (Debian ``graphite-web``), or None."""
    return _which("graphite-manage", "/usr/bin/graphite-manage")


def find_node() -> str | None:
    """Path of ``node`` (or Debian's older ``nodejs`` name), or None."""
    return _which("node") or _which("nodejs")


def find_statsd_js() -> str | None:
    """Path of the npm StatsD daemon's ``stats.js``, or None.

    Looked up in ``$MLMON_STATSD_JS``, ``$MLMON_STATSD_DIR/node_modules/statsd``, the project's
    ``.test-servers/`` (where ``scripts/install-test-servers.sh`` puts it) and the global npm
    directories.
    """
    candidates: list[Path] = []
    if os.environ.get("MLMON_STATSD_JS"):
        candidates.append(Path(os.environ["MLMON_STATSD_JS"]))
    prefixes = [os.environ.get("MLMON_STATSD_DIR"), str(REPO_ROOT / ".test-servers")]
    candidates += [Path(p) / "node_modules" / "statsd" / "stats.js" for p in prefixes if p]
    candidates += [
        Path(p) / "statsd" / "stats.js"
        for p in ("/usr/local/lib/node_modules", "/usr/lib/node_modules")
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


def _whisper_importable() -> bool:
    try:
        import whisper  # noqa: F401
    except ImportError:
        return False
    return True


_INSTALL_HINT = "run scripts/install-test-servers.sh as root"


def missing(server: str) -> str | None:
    """Why ``server`` cannot run here, or None when everything it needs is installed.

    Args:
        server: one of ``"carbon"``, ``"statsd"``, ``"prometheus"``, ``"promtool"``,
            ``"carbon-relay"``, ``"graphite-web"``.

    Returns:
        A human-readable reason naming the missing piece and how to install it, or None.

    Raises:
        ValueError: for an unknown server name.
    """
    problems: list[str] = []
    if server in ("carbon", "statsd", "carbon-relay"):
        if find_carbon_cache() is None:
            problems.append("carbon-cache (Debian package graphite-carbon)")
        if not _whisper_importable():
            problems.append("the whisper Python package (pip install whisper)")
    if server == "statsd":
        if find_node() is None:
            problems.append("node (Debian package nodejs)")
        if find_statsd_js() is None:
            problems.append("the StatsD daemon (npm install statsd into .test-servers/)")
    elif server == "carbon-relay":
        if find_carbon_relay() is None:
            problems.append("carbon-c-relay (Debian package carbon-c-relay)")
    elif server == "prometheus":
        if find_prometheus() is None:
            problems.append("prometheus (Debian package prometheus)")
    elif server == "promtool":
        if find_promtool() is None:
            problems.append("promtool (Debian package prometheus)")
    elif server == "graphite-web":
        if find_carbon_cache() is None:
            problems.append("carbon-cache (Debian package graphite-carbon)")
        if find_graphite_manage() is None:
            problems.append("graphite-manage (Debian package graphite-web)")
    elif server != "carbon":
        raise ValueError(f"server must be a known daemon name, got {server!r}")
    if not problems:
        return None
    return f"{server} needs {', '.join(problems)}; {_INSTALL_HINT}"


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

_issued_ports: set[tuple[str, int]] = set()
_issued_lock = threading.Lock()


def free_port(kind: str = "tcp") -> int:
    """A loopback port that nothing is bound to now and that this process never handed out.

    Carbon binds its receivers with SO_REUSEPORT, so two carbons given the same port would both
    start and silently share the traffic.  Ports are therefore never reused within one test run,
    and every daemon checks after start-up (through ``/proc/net``) that it alone owns its ports.

    Args:
        kind: ``"tcp"`` or ``"udp"``.

    Returns:
        The port number (never 0: port 0 disables a carbon receiver).

    Raises:
        ValueError: for another ``kind``.
        ServerError: when no unused port could be found.
    """
    if kind not in ("tcp", "udp"):
        raise ValueError(f"kind must be 'tcp' or 'udp', got {kind!r}")
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    for _ in range(200):
        with socket.socket(socket.AF_INET, sock_type) as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        with _issued_lock:
            if (kind, port) in _issued_ports:
                continue
            _issued_ports.add((kind, port))
        return port
    raise ServerError(f"no free {kind} port found on {LOOPBACK}")


def _proc_sockets(kind: str, port: int) -> set[int] | None:
    """Inodes of the sockets bound to ``port`` (TCP: listening only), or None without /proc."""
    tables = ("tcp", "tcp6") if kind == "tcp" else ("udp", "udp6")
    inodes: set[int] = set()
    seen_table = False
    for table in tables:
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        seen_table = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port != port or (kind == "tcp" and fields[3] != "0A"):
                continue
            inodes.add(int(fields[9]))
    return inodes if seen_table else None


def _pid_socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _port_owner(pid: int, kind: str, port: int) -> str:
    """``"ours"``, ``"absent"`` or ``"foreign"``: who holds ``port`` compared with ``pid``."""
    bound = _proc_sockets(kind, port)
    if bound is None:
        # No /proc (not Linux): fall back to "something answers", which cannot see sharing.
        if kind == "udp":
            return "ours"
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return "ours"
        except OSError:
            return "absent"
    if not bound:
        return "absent"
    ours = _pid_socket_inodes(pid)
    if bound - ours:
        return "foreign"
    return "ours"


def send_tcp_lines(port: int, lines: Iterable[str], *, timeout: float = 5.0) -> None:
    """Send newline-terminated text lines over one TCP connection to ``127.0.0.1:port``.

    Args:
        port: loopback TCP port (carbon's line receiver, the relay, StatsD's TCP server).
        lines: lines without their trailing newline.
        timeout: connect and send timeout in seconds.
    """
    payload = "".join(line + "\n" for line in lines).encode()
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as conn:
        conn.sendall(payload)
        # A half-close lets the peer read everything before it sees the connection end.
        conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            conn.recv(1)


def _poll(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> tuple[bool, Any]:
    """Call ``check`` until it returns something truthy or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return True, result
        if time.monotonic() >= deadline:
            return False, result
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Process base class
# --------------------------------------------------------------------------------------------


class _Daemon:
    """One external process in its own work directory, started on free loopback ports."""

    name = "daemon"
    start_attempts = 3

    def __init__(self, workdir: str | Path | None, startup_timeout: float) -> None:
        if workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"mlmon-{self.name}-"))
            self._owns_workdir = True
        else:
            self.workdir = Path(workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._owns_workdir = False
        self.startup_timeout = startup_timeout
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._reuse_ports = False

    # Subclasses fill these in.
    def _prepare(self) -> None:
        """Pick ports and write config files."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ports(self) -> list[tuple[str, int]]:
        return []

    def _extra_ready(self) -> bool:
        return True

    def _env(self) -> dict[str, str] | None:
        return None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the daemon's captured output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> _Daemon:
        """Start the daemon and wait until it owns all its ports.

        Returns:
            self, so ``x = Carbon().start()`` works.

        Raises:
            ServerError: the daemon exited, did not come up within ``startup_timeout`` seconds,
                or kept colliding with other processes' ports.
        """
        if self.running:
            return self
        last_error: ServerError | None = None
        for attempt in range(1, self.start_attempts + 1):
            self._prepare()
            try:
                self._spawn(attempt)
                self._wait_ready()
                return self
            except _PortConflict as exc:
                last_error = exc
                self._terminate()
            finally:
                self._reuse_ports = False
        assert last_error is not None
        raise last_error

    def _port(self, current: int, kind: str) -> int:
        """``current`` again during :meth:`restart`, else a new :func:`free_port`."""
        if self._reuse_ports and current:
            return current
        return free_port(kind)

    def restart(self) -> None:
        """Stop the process (SIGTERM) and start it again on the same ports with the same data.

        Clients configured with the old address reconnect to the new process.  If a port was
        taken in between, the daemon comes back on new ports (check the port attributes).
        """
        self._terminate()
        self._reuse_ports = True
        self.start()

    def kill(self) -> None:
        """SIGKILL the process, as a crash would; keeps the workdir so :meth:`start` can follow.

        After ``kill()``, ``start()`` picks new ports; use :meth:`restart` to keep them.
        """
        _live.discard(self)
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait(10)

    def pause(self) -> None:
        """SIGSTOP the process: it keeps its sockets but stops reading, like a hung server."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def _spawn(self, attempt: int) -> None:
        argv = self._argv()
        with open(self.log_path, "ab") as log:
            log.write(f"--- attempt {attempt}: {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
            )
        _live.add(self)

    def _failure(self, what: str) -> ServerError:
        tail = self.log_tail()
        if re.search(r"address already in use|EADDRINUSE", tail, re.IGNORECASE):
            return _PortConflict(f"{self.name}: {what} (port taken)\n--- log tail ---\n{tail}")
        return ServerError(f"{self.name}: {what}; log {self.log_path}\n--- log tail ---\n{tail}")

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise self._failure(f"exited with status {code} during start-up")
            owners = [_port_owner(self.process.pid, kind, port) for kind, port in self._ports()]
            if "foreign" in owners:
                raise _PortConflict(
                    f"{self.name}: another process also listens on one of {self._ports()}"
                )
            if all(owner == "ours" for owner in owners) and self._extra_ready():
                return
            if time.monotonic() >= deadline:
                error = self._failure(
                    f"not ready after {self.startup_timeout:.0f} s (ports {self._ports()})"
                )
                self._terminate()
                raise error
            time.sleep(0.05)

    def _signal_stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # A paused process would never see the SIGTERM.
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)

    def _terminate(self, timeout: float = 10.0) -> None:
        self._signal_stop()
        _live.discard(self)
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after 10 s) and remove a temp workdir.

        Whatever the daemon still holds in memory is lost: poll for expected data first.
        """
        self._terminate()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state} workdir={self.workdir}>"


# Daemons started and not stopped yet; whatever a crashed test run left behind is stopped at exit.
_live: weakref.WeakSet[_Daemon] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    stop_all(list(_live))


def stop_all(daemons: Iterable[_Daemon]) -> None:
    """Stop several daemons at once: SIGTERM to all first, then wait for each.

    Shutting down takes about a second for carbon-cache and two for carbon-c-relay, so
    signalling them together keeps fixture teardown short.
    """
    daemons = list(daemons)
    for daemon in daemons:
        daemon._signal_stop()
    for daemon in daemons:
        daemon.stop()


# --------------------------------------------------------------------------------------------
# carbon-cache
# --------------------------------------------------------------------------------------------

_CARBON_CONF = """\
[cache]
STORAGE_DIR = {storage}
LOCAL_DATA_DIR = {data}
WHITELISTS_DIR = {storage}/lists
LOG_DIR = {storage}/log
PID_DIR = {storage}
USER =
ENABLE_LOGROTATION = False
# Debian's stock 50 creates per minute silently drops new series; tests create many.
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_UPDATES_PER_SECOND_ON_SHUTDOWN = inf
MAX_CREATES_PER_MINUTE = inf
# Port 0 would disable a receiver, so every port is a real one picked by free_port().
LINE_RECEIVER_INTERFACE = {host}
LINE_RECEIVER_PORT = {line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = {host}
PICKLE_RECEIVER_PORT = {pickle_port}
CACHE_QUERY_INTERFACE = {host}
CACHE_QUERY_PORT = {cache_query_port}
USE_FLOW_CONTROL = True
LOG_UPDATES = False
LOG_CACHE_HITS = False
LOG_CACHE_QUEUE_SORTS = False
LOG_LISTENER_CONNECTIONS = False
LOG_LISTENER_CONN_SUCCESS = False
# Tags would make carbon post every new series to a graphite-web that is not running.
ENABLE_TAGS = False
# No carbon.agents.* self-metrics: list_metrics() shows only what the test sent.
CARBON_METRIC_INTERVAL = 0
WHISPER_AUTOFLUSH = False
"""

_STORAGE_AGGREGATION = """\
[counts]
pattern = (\\.count$|_total$|^stats_counts\\.)
xFilesFactor = 0
aggregationMethod = sum

[sums]
pattern = (\\.sum$|_sum$)
xFilesFactor = 0
aggregationMethod = sum

[min]
pattern = \\.(lower|min)$
xFilesFactor = 0
aggregationMethod = min

[max]
pattern = \\.(upper|max)$
xFilesFactor = 0
aggregationMethod = max

[default]
pattern = .*
xFilesFactor = 0
aggregationMethod = average
"""


class Carbon(_Daemon):
    """A carbon-cache writing whisper files under a temp directory.

    Storage: one schema for everything, ``retentions`` (default ``1s:1h``, one point per second
    for an hour); ``.count``/``_total``/``stats_counts.*``/``.sum`` paths roll up by sum.  Whisper
    refuses points older than the retention or in the future, so send timestamps within the
    last hour and not ahead of the clock.

    Attributes:
        host: always ``127.0.0.1``.
        line_port: plaintext receiver (``path value timestamp\\n`` over TCP).
        pickle_port: pickle receiver.
        cache_query_port: carbonlink cache-query port.
        data_dir: the whisper root; ``a.b.c`` is stored in ``data_dir/a/b/c.wsp``.

    Example::

        with Carbon() as carbon:
            carbon.send_lines([f"t.x 1 {int(time.time())}"])
            carbon.wait_for("t.x", lambda points: len(points) == 1)
    """

    name = "carbon"

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        retentions: str = "1s:1h",
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.host = LOOPBACK
        self.retentions = retentions
        self.binary = find_carbon_cache()
        self.line_port = 0
        self.pickle_port = 0
        self.cache_query_port = 0
        self.conf_dir = self.workdir / "conf"
        self.storage_dir = self.workdir / "storage"
        self.data_dir = self.storage_dir / "whisper"

    def _prepare(self) -> None:
        if self.binary is None:
            raise ServerError(missing("carbon") or "carbon-cache not found")
        self.line_port = self._port(self.line_port, "tcp")
        self.pickle_port = self._port(self.pickle_port, "tcp")
        self.cache_query_port = self._port(self.cache_query_port, "tcp")
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "carbon.conf").write_text(
            _CARBON_CONF.format(
                storage=self.storage_dir,
                data=self.data_dir,
                host=self.host,
                line_port=self.line_port,
                pickle_port=self.pickle_port,
                cache_query_port=self.cache_query_port,
            )
        )
        (self.conf_dir / "storage-schemas.conf").write_text(
            f"[everything]\npattern = .*\nretentions = {self.retentions}\n"
        )
        (self.conf_dir / "storage-aggregation.conf").write_text(_STORAGE_AGGREGATION)

    def _argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            f"--config={self.conf_dir / 'carbon.conf'}",
            f"--pidfile={self.workdir / 'carbon-cache.pid'}",
            f"--logdir={self.storage_dir / 'log'}",
            "--debug",  # foreground, log to stdout (our log file)
            "start",
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["GRAPHITE_ROOT"] = str(self.workdir)
        env["GRAPHITE_CONF_DIR"] = str(self.conf_dir)
        env["GRAPHITE_STORAGE_DIR"] = str(self.storage_dir)
        # The Debian script runs under /usr/bin/python3; keep a test venv's variables out of it.
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env

    def _ports(self) -> list[tuple[str, int]]:
        return [
            ("tcp", self.line_port),
            ("tcp", self.pickle_port),
            ("tcp", self.cache_query_port),
        ]

    def start(self) -> Carbon:
        super().start()
        return self

    @property
    def address(self) -> tuple[str, int]:
        """``(host, line_port)``, the plaintext receiver."""
        return (self.host, self.line_port)

    def send_lines(self, lines: Iterable[str]) -> None:
        """Send plaintext protocol lines (``path value timestamp``) to the line receiver."""
        send_tcp_lines(self.line_port, lines)

    def metric_file(self, path: str) -> Path:
        """The whisper file that holds metric ``path``."""
        return self.data_dir.joinpath(*path.split(".")).with_suffix(".wsp")

    def list_metrics(self) -> list[str]:
        """Dotted names of every metric that has a whisper file, sorted."""
        names = [
            ".".join(wsp.relative_to(self.data_dir).with_suffix("").parts)
            for wsp in self.data_dir.rglob("*.wsp")
        ]
        return sorted(names)

    def read(self, path: str) -> list[Point]:
        """Every stored ``(timestamp, value)`` of metric ``path``, oldest first, no gaps (None).

        Returns an empty list when the metric has no file yet.  Only what carbon has written to
        disk is seen; points still in carbon's cache are not.
        """
        import whisper

        wsp = self.metric_file(path)
        if not wsp.exists():
            return []
        try:
            fetched = whisper.fetch(str(wsp), 0, None)
        except (whisper.CorruptWhisperFile, OSError, ValueError):
            # A file that carbon has only started to create reads as corrupt for a moment.
            return []
        if fetched is None:
            return []
        (start, _end, step), values = fetched
        return [
            (start + i * step, float(value)) for i, value in enumerate(values) if value is not None
        ]

    def sum_values(self, path: str) -> float:
        """Sum of every stored value of ``path`` (0.0 when it has none)."""
        return float(sum(value for _, value in self.read(path)))

    def last_value(self, path: str) -> float | None:
        """Most recent stored value of ``path``, or None."""
        points = self.read(path)
        return points[-1][1] if points else None

    def wait_for(
        self,
        path: str,
        predicate: Callable[[list[Point]], bool] = bool,
        timeout: float = 15.0,
        interval: float = 0.1,
    ) -> list[Point]:
        """Poll :meth:`read` until ``predicate(points)`` is true; return those points.

        Args:
            path: dotted metric name.
            predicate: called with the list of points; the default waits for any point.
            timeout: seconds before giving up.
            interval: seconds between polls.

        Raises:
            TimeoutError: with the last points seen and the metrics that do exist.
        """
        ok, points = _poll(lambda: _checked(self.read(path), predicate), timeout, interval)
        if ok:
            return list(points[1])
        last = self.read(path)
        raise TimeoutError(
            f"carbon: {path!r} did not satisfy the predicate within {timeout} s; "
            f"last points {last[-10:]}; metrics present {self.list_metrics()[:50]}"
        )

    def wait_for_sum(self, path: str, expected: float, timeout: float = 15.0) -> list[Point]:
        """Wait until the values of ``path`` add up to exactly ``expected``; return the points."""
        return self.wait_for(path, lambda points: sum(v for _, v in points) == expected, timeout)

    def wait_for_metrics(
        self,
        predicate: Callable[[list[str]], bool],
        timeout: float = 15.0,
    ) -> list[str]:
        """Poll :meth:`list_metrics` until ``predicate(names)`` is true; return the names."""
        ok, result = _poll(lambda: _checked(self.list_metrics(), predicate), timeout)
        if ok:
            return list(result[1])
        raise TimeoutError(
            f"carbon: metric list did not satisfy the predicate within {timeout} s; "
            f"present {self.list_metrics()[:50]}"
        )

    def settle(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Wait until no whisper file has changed for ``quiet`` seconds (bounded by timeout).

        Useful before :meth:`stop` when a test wants carbon's cache written out, and before
        asserting that something did *not* arrive.
        """
        deadline = time.monotonic() + timeout
        last_change = time.monotonic()
        last_state: dict[Path, float] | None = None
        while time.monotonic() < deadline:
            state = {}
            for wsp in self.data_dir.rglob("*.wsp"):
                with contextlib.suppress(OSError):
                    state[wsp] = wsp.stat().st_mtime
            if state != last_state:
                last_state, last_change = state, time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                return
            time.sleep(0.05)

    def stop(self, drain: bool = False) -> None:
        """Stop carbon-cache.  With ``drain``, first wait for the whisper files to settle.

        carbon-cache loses points still in its cache on SIGTERM: tests poll with
        :meth:`wait_for` before stopping.
        """
        if drain and self.running:
            self.settle()
        super().stop()


def _checked(value: Any, predicate: Callable[[Any], bool]) -> tuple[bool, Any] | None:
    return (True, value) if predicate(value) else None


# --------------------------------------------------------------------------------------------
# StatsD (npm)
# --------------------------------------------------------------------------------------------


class StatsdDaemon(_Daemon):
    """The npm StatsD daemon flushing every second to a :class:`Carbon`'s line receiver.

    Configuration: UDP server on ``127.0.0.1:port`` (plus a TCP server on ``tcp_port`` with
    ``tcp=True``), management port ``mgmt_port``, ``flushInterval`` 1000 ms (whisper step 1 s,
    so flushes never share a slot), ``deleteIdleStats`` (idle metrics are not re-sent as zeros
    or stale gauges), the graphite backend, and StatsD's default ``legacyNamespace: true``.

    Whisper paths for a metric named ``a.b`` (see the ``*_path`` methods):

    ===============  ==================================  ==================================
    type             legacy namespace (default)          ``legacy_namespace=False``
    ===============  ==================================  ==================================
    counter count    ``stats_counts.a.b``                ``stats.counters.a.b.count``
    counter rate/s   ``stats.a.b``                       ``stats.counters.a.b.rate``
    gauge            ``stats.gauges.a.b``                ``stats.gauges.a.b``
    timer            ``stats.timers.a.b.<stat>``         ``stats.timers.a.b.<stat>``
    set              ``stats.sets.a.b.count``            ``stats.sets.a.b.count``
    ===============  ==================================  ==================================

    Timer stats: ``count``, ``count_ps``, ``sum``, ``sum_squares``, ``mean``, ``median``,
    ``upper``, ``lower``, ``std``, and ``upper_90``/``mean_90``/``sum_90``/... per percentile.
    StatsD also writes its own ``statsd.numStats``, ``stats.statsd.*`` and
    ``stats_counts.statsd.*`` series.  Names are sanitised by StatsD: spaces become ``_``,
    ``/`` becomes ``-``, and characters outside ``[A-Za-z0-9_.;=-]`` are dropped.

    Counters summed over every point of their ``stats_counts`` series give the exact number
    received; points only appear after the next flush (about one second).
    """

    name = "statsd"

    def __init__(
        self,
        carbon: Carbon,
        workdir: str | Path | None = None,
        *,
        tcp: bool = False,
        flush_interval_ms: int = 1000,
        legacy_namespace: bool = True,
        delete_idle_stats: bool = True,
        percent_threshold: Sequence[float] = (90,),
        extra_config: dict[str, Any] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if flush_interval_ms < 1000:
            # Two flushes in one whisper second would overwrite each other.
            raise ValueError(f"flush_interval_ms must be >= 1000, got {flush_interval_ms!r}")
        super().__init__(workdir, startup_timeout)
        self.carbon = carbon
        self.host = LOOPBACK
        self.tcp = tcp
        self.flush_interval_ms = flush_interval_ms
        self.legacy_namespace = legacy_namespace
        self.delete_idle_stats = delete_idle_stats
        self.percent_threshold = list(percent_threshold)
        self.extra_config = dict(extra_config or {})
        self.node = find_node()
        self.stats_js = find_statsd_js()
        self.port = 0
        self.tcp_port: int | None = None
        self.mgmt_port = 0
        self.config_path = self.workdir / "statsd-config.js"

    def _prepare(self) -> None:
        if self.node is None or self.stats_js is None:
            raise ServerError(missing("statsd") or "statsd not found")
        if not self.carbon.running:
            raise ServerError("statsd: its carbon is not running; start the Carbon first")
        self.port = self._port(self.port, "udp")
        self.mgmt_port = self._port(self.mgmt_port, "tcp")
        servers: list[dict[str, Any]] = [
            {"server": "./servers/udp", "address": self.host, "port": self.port}
        ]
        if self.tcp:
            self.tcp_port = self._port(self.tcp_port or 0, "tcp")
            servers.append({"server": "./servers/tcp", "address": self.host, "port": self.tcp_port})
        config: dict[str, Any] = {
            "servers": servers,
            "mgmt_address": self.host,
            "mgmt_port": self.mgmt_port,
            "flushInterval": self.flush_interval_ms,
            "backends": ["./backends/graphite"],
            "graphiteHost": self.carbon.host,
            "graphitePort": self.carbon.line_port,
            "graphite": {"legacyNamespace": self.legacy_namespace},
            "deleteIdleStats": self.delete_idle_stats,
            "percentThreshold": self.percent_threshold,
            "automaticConfigReload": False,
            "dumpMessages": False,
            "debug": False,
        }
        config.update(self.extra_config)
        # StatsD evals its config file as JavaScript; JSON is a valid JS expression.
        self.config_path.write_text("(" + json.dumps(config, indent=2) + ")\n")

    def _argv(self) -> list[str]:
        assert self.node is not None and self.stats_js is not None
        return [self.node, self.stats_js, str(self.config_path)]

    def _ports(self) -> list[tuple[str, int]]:
        ports = [("udp", self.port), ("tcp", self.mgmt_port)]
        if self.tcp_port is not None:
            ports.append(("tcp", self.tcp_port))
        return ports

    def _extra_ready(self) -> bool:
        return "server is up" in self.log_tail(200)

    def start(self) -> StatsdDaemon:
        super().start()
        return self

    def send(self, *lines: str) -> None:
        """Send StatsD lines (``name:value|type``) in one UDP datagram, newline-separated."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(lines).encode(), (self.host, self.port))

    def send_tcp(self, *lines: str) -> None:
        """Send StatsD lines over one TCP connection (needs ``tcp=True``)."""
        if self.tcp_port is None:
            raise ServerError("statsd: started without tcp=True, so it has no TCP server")
        send_tcp_lines(self.tcp_port, lines)

    def admin(self, command: str, timeout: float = 5.0) -> str:
        """Run a management command (``health``, ``stats``, ``counters``, ...) and return its reply."""
        with socket.create_connection((self.host, self.mgmt_port), timeout=timeout) as conn:
            conn.sendall(command.encode() + b"\n")
            chunks: list[bytes] = []
            conn.settimeout(0.5)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    if chunks:
                        break
                    continue
                if not chunk:
                    break
                chunks.append(chunk)
                if b"END\n" in chunk or command.strip() == "health":
                    break
            return b"".join(chunks).decode(errors="replace")

    # Whisper paths --------------------------------------------------------------------------
    def counter_path(self, name: str) -> str:
        """Whisper path of the per-flush count of counter ``name``."""
        if self.legacy_namespace:
            return f"stats_counts.{name}"
        return f"stats.counters.{name}.count"

    def counter_rate_path(self, name: str) -> str:
        """Whisper path of the per-second rate of counter ``name``."""
        if self.legacy_namespace:
            return f"stats.{name}"
        return f"stats.counters.{name}.rate"

    def gauge_path(self, name: str) -> str:
        """Whisper path of gauge ``name``."""
        return f"stats.gauges.{name}"

    def timer_path(self, name: str, stat: str = "mean") -> str:
        """Whisper path of one statistic (``mean``, ``count``, ``upper_90``...) of timer ``name``."""
        return f"stats.timers.{name}.{stat}"

    def set_path(self, name: str) -> str:
        """Whisper path of the distinct-value count of set ``name``."""
        return f"stats.sets.{name}.count"


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


class Prometheus(_Daemon):
    """A Prometheus server scraping static targets every second.

    Config: one scrape job ``job`` over ``targets`` (``"host:port"`` strings) at
    ``metrics_path``, ``scrape_interval`` = ``scrape_timeout`` = 1 s, optional ``rule_files``
    evaluated every second.  The config is written as JSON (valid YAML).  The first scrape
    happens about 5 s after start (target discovery is throttled), so read data back with
    :meth:`wait_for_query`, which polls.

    Attributes:
        port: HTTP port of the API/UI on 127.0.0.1.
        url: ``http://127.0.0.1:<port>``.
        targets: the scrape targets.
        job: job label of the scrape job.
    """

    name = "prometheus"

    def __init__(
        self,
        targets: Sequence[str] = (),
        workdir: str | Path | None = None,
        *,
        job: str = "mlmon",
        metrics_path: str = "/metrics",
        scrape_interval: str = "1s",
        rule_files: Sequence[str | Path] = (),
        honor_labels: bool = False,
        extra_scrape_configs: Sequence[dict[str, Any]] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.host = LOOPBACK
        self.targets = list(targets)
        self.job = job
        self.metrics_path = metrics_path
        self.scrape_interval = scrape_interval
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self.honor_labels = honor_labels
        self.extra_scrape_configs = list(extra_scrape_configs)
        self.binary = find_prometheus()
        self.port = 0
        self.config_path = self.workdir / "prometheus.yml"
        self.data_dir = self.workdir / "tsdb"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> None:
        if self.binary is None:
            raise ServerError(missing("prometheus") or "prometheus not found")
        self.port = self._port(self.port, "tcp")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        scrape_configs: list[dict[str, Any]] = []
        if self.targets:
            scrape_configs.append(
                {
                    "job_name": self.job,
                    "metrics_path": self.metrics_path,
                    "honor_labels": self.honor_labels,
                    "static_configs": [{"targets": self.targets}],
                }
            )
        scrape_configs += self.extra_scrape_configs
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": self.rule_files,
            "scrape_configs": scrape_configs,
        }
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def _argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--web.listen-address={self.host}:{self.port}",
            f"--storage.tsdb.path={self.data_dir}",
            "--storage.tsdb.retention.time=1h",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--log.level=info",
        ]

    def _ports(self) -> list[tuple[str, int]]:
        return [("tcp", self.port)]

    def _extra_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> Prometheus:
        super().start()
        return self

    def api(self, endpoint: str, params: dict[str, str] | None = None, timeout: float = 5.0) -> Any:
        """GET ``/api/v1/<endpoint>`` and return its ``data``.

        Raises:
            ServerError: on an HTTP error or a non-success status, with Prometheus's message.
        """
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}/api/v1/{endpoint}{query}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            exc.close()
            raise ServerError(f"prometheus: GET {url} failed: {exc.code} {detail}") from None
        if body.get("status") != "success":
            raise ServerError(f"prometheus: GET {url} returned {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self.api("query", {"query": promql})
        result = data["result"]
        if data["resultType"] == "scalar" or data["resultType"] == "string":
            return [{"metric": {}, "value": result}]
        return list(result)

    def value(self, promql: str) -> float | None:
        """The single sample value of ``promql``, or None when the result is empty.

        Raises:
            ServerError: when the query returns more than one series.
        """
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise ServerError(f"prometheus: {promql!r} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def wait_for_query(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> list[dict[str, Any]]:
        """Poll :meth:`query` until ``predicate(result)`` is true; return that result.

        The default predicate waits for a non-empty result.

        Raises:
            TimeoutError: with the last result and the targets' scrape state.
        """
        ok, result = _poll(lambda: _checked(self.query(promql), predicate), timeout, interval)
        if ok:
            return list(result[1])
        raise TimeoutError(
            f"prometheus: {promql!r} did not satisfy the predicate within {timeout} s; "
            f"last result {self.query(promql)}; targets {self.target_health()}"
        )

    def wait_for_value(self, promql: str, expected: float, timeout: float = 30.0) -> float:
        """Wait until :meth:`value` equals ``expected``; return it."""
        self.wait_for_query(
            promql,
            lambda result: len(result) == 1 and float(result[0]["value"][1]) == expected,
            timeout,
        )
        return expected

    def target_health(self) -> list[dict[str, Any]]:
        """``scrapeUrl``, ``health`` and ``lastError`` of each active target."""
        active = self.api("targets")["activeTargets"]
        return [
            {key: target.get(key) for key in ("scrapeUrl", "health", "lastError")}
            for target in active
        ]

    def wait_for_targets_up(self, timeout: float = 30.0) -> None:
        """Wait until every configured target has been scraped successfully."""

        def all_up() -> bool:
            health = self.target_health()
            return bool(health) and all(t["health"] == "up" for t in health)

        ok, _ = _poll(all_up, timeout, 0.25)
        if not ok:
            raise TimeoutError(
                f"prometheus: targets not up within {timeout} s: {self.target_health()}"
            )

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups (``/api/v1/rules``)."""
        return list(self.api("rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        """The pending and firing alerts (``/api/v1/alerts``)."""
        return list(self.api("alerts")["alerts"])

    def reload(self, timeout: float = 10.0) -> None:
        """Re-read the config and rule files (``POST /-/reload``)."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()


class Promtool:
    """``promtool check`` wrappers; each returns ``(ok, combined output)``."""

    def __init__(self, path: str | None = None) -> None:
        found = path or find_promtool()
        if found is None:
            raise ServerError(missing("promtool") or "promtool not found")
        self.path = found

    def _run(self, args: list[str], stdin: str | None = None) -> tuple[bool, str]:
        completed = subprocess.run(
            [self.path, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return completed.returncode == 0, completed.stdout + completed.stderr

    def check_metrics(self, text: str) -> tuple[bool, str]:
        """``promtool check metrics`` on exposition ``text``: parse errors and lint problems."""
        return self._run(["check", "metrics"], stdin=text)

    def check_rules(self, *paths: str | Path) -> tuple[bool, str]:
        """``promtool check rules`` on rule files."""
        return self._run(["check", "rules", *map(str, paths)])

    def check_config(self, path: str | Path) -> tuple[bool, str]:
        """``promtool check config`` on a Prometheus config file."""
        return self._run(["check", "config", str(path)])


def promtool_check_metrics(text: str) -> tuple[bool, str]:
    """``(ok, output)`` of ``promtool check metrics`` on ``text``; see :class:`Promtool`."""
    return Promtool().check_metrics(text)


def promtool_check_rules(*paths: str | Path) -> tuple[bool, str]:
    """``(ok, output)`` of ``promtool check rules`` on ``paths``; see :class:`Promtool`."""
    return Promtool().check_rules(*paths)


# --------------------------------------------------------------------------------------------
# carbon-c-relay
# --------------------------------------------------------------------------------------------


class CarbonRelay(_Daemon):
    """carbon-c-relay listening on a loopback TCP port and hashing lines over carbons.

    Config: one cluster ``stores`` of the destinations with ``hashing`` (``carbon_ch`` by
    default, as the Python carbon-relay does) and ``replication``; ``match * send to stores``.
    carbon_ch hashes the host only, so members on one host need instance names: they default
    to ``a``, ``b``, ... in destination order (``127.0.0.1:<port>=a``).  Submission mode (``-s``)
    keeps the relay's own statistics out of the stores.

    Attributes:
        port: plaintext line port of the relay.
        destinations: ``(host, port)`` of each store.
        instances: instance names used in the hash ring (None entries mean none).
    """

    name = "carbon-relay"

    def __init__(
        self,
        destinations: Sequence[Carbon | tuple[str, int]],
        workdir: str | Path | None = None,
        *,
        hashing: str = "carbon_ch",
        replication: int = 1,
        instances: Sequence[str | None] | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        if not destinations:
            raise ValueError("destinations must name at least one carbon, got none")
        if hashing not in ("carbon_ch", "fnv1a_ch", "jump_fnv1a_ch", "forward", "any_of"):
            raise ValueError(f"hashing must be a carbon-c-relay cluster type, got {hashing!r}")
        super().__init__(workdir, startup_timeout)
        self.host = LOOPBACK
        self.destinations = [
            d.address if isinstance(d, Carbon) else (d[0], int(d[1])) for d in destinations
        ]
        self.hashing = hashing
        self.replication = replication
        if instances is None:
            default = hashing == "carbon_ch"
            instances = [chr(ord("a") + i) if default else None for i in range(len(destinations))]
        if len(instances) != len(self.destinations):
            raise ValueError(
                f"instances must have one entry per destination, got {list(instances)!r}"
            )
        self.instances = list(instances)
        self.binary = find_carbon_relay()
        self.port = 0
        self.config_path = self.workdir / "relay.conf"

    def _prepare(self) -> None:
        if self.binary is None:
            raise ServerError(missing("carbon-relay") or "carbon-c-relay not found")
        self.port = self._port(self.port, "tcp")
        members = []
        for (host, port), instance in zip(self.destinations, self.instances, strict=True):
            suffix = f"={instance}" if instance else ""
            members.append(f"        {host}:{port}{suffix}\n")
        if self.hashing in ("carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"):
            kind = f"{self.hashing} replication {self.replication}"
        else:
            kind = self.hashing
        self.config_path.write_text(
            f"cluster stores\n    {kind}\n{''.join(members)}    ;\n"
            "match *\n    send to stores\n    stop\n    ;\n"
            f"listen\n    type linemode\n        {self.host}:{self.port} proto tcp\n    ;\n"
        )

    def _argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            "-f",
            str(self.config_path),
            "-s",  # submission mode: no relay self-metrics in the stores
            "-w",
            "2",
            "-H",
            "mlmon-test",
        ]

    def _ports(self) -> list[tuple[str, int]]:
        return [("tcp", self.port)]

    def start(self) -> CarbonRelay:
        super().start()
        return self

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def send_lines(self, lines: Iterable[str]) -> None:
        """Send plaintext protocol lines to the relay."""
        send_tcp_lines(self.port, lines)


# --------------------------------------------------------------------------------------------
# graphite-web
# --------------------------------------------------------------------------------------------

_GRAPHITE_SETTINGS = """\
# Written by tests/integration/servers.py for one test graphite-web.
SECRET_KEY = "mlmon-integration-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
STORAGE_DIR = {storage!r}
WHISPER_DIR = {whisper_dirs[0]!r}
STANDARD_DIRS = {whisper_dirs!r}
LOG_DIR = {log_dir!r}
INDEX_FILE = {index_file!r}
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {database!r}}}
}}
CARBONLINK_HOSTS = {carbonlink!r}
CARBONLINK_TIMEOUT = 1.0
CARBONLINK_RETRY_DELAY = 1
"""

_graphite_db_lock = threading.Lock()
_graphite_db_template: Path | None = None


class GraphiteWeb(_Daemon):
    """graphite-web (Debian ``graphite-web``, Django dev server) reading the carbons' whisper.

    Reads every given carbon's whisper directory as one tree, and asks their caches (carbonlink,
    hashed like :class:`CarbonRelay`'s default instances ``a``, ``b``, ...) for points not yet
    written.  The Django database (needed by ``/metrics/find``) is migrated once per test run
    and copied.

    Attributes:
        port: HTTP port on 127.0.0.1; ``url`` is ``http://127.0.0.1:<port>``.
        carbons: the :class:`Carbon` instances served.
    """

    name = "graphite-web"

    def __init__(
        self,
        carbons: Carbon | Sequence[Carbon],
        workdir: str | Path | None = None,
        *,
        carbonlink: bool = True,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.host = LOOPBACK
        self.carbons = [carbons] if isinstance(carbons, Carbon) else list(carbons)
        if not self.carbons:
            raise ValueError("carbons must name at least one Carbon, got none")
        self.carbonlink = carbonlink
        self.binary = find_graphite_manage()
        self.port = 0
        self.settings_dir = self.workdir / "settings"
        self.database = self.workdir / "graphite.db"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # graphite-manage runs under Debian's /usr/bin/python3 with Debian's Django.
        env.pop("PYTHONHOME", None)
        env["PYTHONPATH"] = str(self.settings_dir)
        env["GRAPHITE_SETTINGS_MODULE"] = "mlmon_graphite_settings"
        env["DJANGO_SETTINGS_MODULE"] = "graphite.settings"
        return env

    def _migrate_into(self, database: Path) -> None:
        assert self.binary is not None
        with open(self.log_path, "ab") as log:
            completed = subprocess.run(
                [self.binary, "migrate", "--noinput"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                timeout=120,
                check=False,
            )
        if completed.returncode != 0 or not database.exists():
            raise self._failure(f"migrate exited with status {completed.returncode}")

    def _prepare(self) -> None:
        global _graphite_db_template
        if self.binary is None:
            raise ServerError(missing("graphite-web") or "graphite-manage not found")
        self.port = self._port(self.port, "tcp")
        self.settings_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log").mkdir(exist_ok=True)
        carbonlink = [
            f"{c.host}:{c.cache_query_port}:{chr(ord('a') + i)}" for i, c in enumerate(self.carbons)
        ]
        (self.settings_dir / "mlmon_graphite_settings.py").write_text(
            _GRAPHITE_SETTINGS.format(
                storage=str(self.workdir),
                whisper_dirs=[f"{c.data_dir}/" for c in self.carbons],
                log_dir=str(self.workdir / "log"),
                index_file=str(self.workdir / "index"),
                database=str(self.database),
                carbonlink=carbonlink if self.carbonlink else [],
            )
        )
        with _graphite_db_lock:
            if _graphite_db_template is None or not _graphite_db_template.exists():
                self._migrate_into(self.database)
                template_dir = Path(tempfile.mkdtemp(prefix="mlmon-graphite-db-"))
                atexit.register(shutil.rmtree, template_dir, True)
                _graphite_db_template = template_dir / "graphite.db"
                shutil.copyfile(self.database, _graphite_db_template)
            elif not self.database.exists():
                shutil.copyfile(_graphite_db_template, self.database)

    def _argv(self) -> list[str]:
        assert self.binary is not None
        return [self.binary, "runserver", f"{self.host}:{self.port}", "--noreload"]

    def _ports(self) -> list[tuple[str, int]]:
        return [("tcp", self.port)]

    def start(self) -> GraphiteWeb:
        super().start()
        return self

    def get_json(self, path: str, params: dict[str, Any], timeout: float = 10.0) -> Any:
        """GET ``path`` with query ``params`` (lists repeat the key) and decode the JSON reply.

        Raises:
            ServerError: on an HTTP error, quoting the end of graphite-web's exception log.
        """
        url = f"{self.url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:1000]
            exc.close()
            exceptions = self.workdir / "log" / "exception.log"
            tail = exceptions.read_text(errors="replace")[-3000:] if exceptions.exists() else ""
            raise ServerError(
                f"graphite-web: GET {url} failed: {exc.code} {body}\n{tail}"
            ) from None

    def render(
        self, targets: str | Sequence[str], from_: str = "-1h", until: str = "now"
    ) -> list[dict[str, Any]]:
        """``/render?format=json``: ``[{"target": ..., "datapoints": [[value, ts], ...]}]``.

        ``targets`` are graphite target expressions (``sumSeries(a.*)``...); values may be None.
        """
        target_list = [targets] if isinstance(targets, str) else list(targets)
        params = {"target": target_list, "format": "json", "from": from_, "until": until}
        return list(self.get_json("/render", params))

    def points(self, target: str, from_: str = "-1h") -> list[Point]:
        """Non-null ``(timestamp, value)`` of a target that renders as at most one series."""
        series = self.render(target, from_)
        if len(series) > 1:
            raise ServerError(f"graphite-web: {target!r} rendered {len(series)} series")
        if not series:
            return []
        return [(int(ts), float(v)) for v, ts in series[0]["datapoints"] if v is not None]

    def wait_for_points(
        self,
        target: str,
        predicate: Callable[[list[Point]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[Point]:
        """Poll :meth:`points` until ``predicate(points)`` is true; return the points."""
        ok, result = _poll(lambda: _checked(self.points(target), predicate), timeout, 0.2)
        if ok:
            return list(result[1])
        raise TimeoutError(
            f"graphite-web: {target!r} did not satisfy the predicate within {timeout} s; "
            f"last points {self.points(target)[-10:]}"
        )

    def find(self, query: str) -> list[str]:
        """``/metrics/find``: the dotted ids matching ``query`` (``a.*``, ``stats.timers.*``)."""
        nodes = self.get_json("/metrics/find", {"query": query, "format": "treejson"})
        return sorted(str(node["id"]) for node in nodes)


# --------------------------------------------------------------------------------------------
# A static scrape target
# --------------------------------------------------------------------------------------------


class MetricsEndpoint:
    """An in-process HTTP server on a free loopback port serving one exposition text.

    Any GET returns :attr:`text` with :attr:`content_type`; ``set_text`` swaps it.

    Attributes:
        port: the port; ``target`` is ``"127.0.0.1:<port>"`` for :class:`Prometheus`.
        requests: number of GETs served so far.
    """

    def __init__(
        self,
        text: str = "",
        content_type: str = "text/plain; version=0.0.4; charset=utf-8",
    ) -> None:
        self.text = text
        self.content_type = content_type
        self.requests = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with endpoint._lock:
                    body = endpoint.text.encode()
                    endpoint.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", endpoint.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set_text(self, text: str) -> None:
        """Serve ``text`` from now on."""
        with self._lock:
            self.text = text

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
