"""gunicorn: close each worker's monitors as it exits, and clean up after workers that cannot.

Two kinds of server hooks for the gunicorn config file (``gunicorn.conf.py``, or
``-c python:module``):

- :func:`worker_exit` and :func:`on_exit` close every monitor of the process when a worker
  (``worker_exit``, run in the worker) or the master (``on_exit``) ends: ``SIGTERM``,
  ``SIGINT`` or ``SIGQUIT`` to the master, ``--max-requests``, ``--timeout`` (unless the
  worker is stuck and gets ``SIGKILL``). The
  last snapshot of each goes to every emitter, exactly once (closing is idempotent, so the
  ``atexit`` that may follow does nothing more), within the monitors' ``close_timeout``::

      from mlmon.integrations.gunicorn import on_exit, worker_exit  # noqa: F401 (hooks)

- :func:`child_exit_hook` makes a ``child_exit`` hook (run in the master) that removes the
  ``file_sd`` target of a worker that died without closing its monitor.

**Killed workers.** Every process with a ``PrometheusEmitter(file_sd_dir=...)`` writes
``mlmon-<pid>.json`` and removes it when it closes (at exit). A worker that is killed — by gunicorn's ``--timeout``, the
OOM killer, ``SIGKILL`` — cannot, and Prometheus would go on scraping a dead endpoint
(``up == 0``) until the file is gone. gunicorn's master calls the ``child_exit`` server hook for
every worker that exits, however it exits; :func:`child_exit_hook` makes that hook::

    from mlmon.integrations.gunicorn import child_exit_hook
    child_exit = child_exit_hook("/run/mlmon/targets")

- :func:`serve_host_endpoint` makes a ``when_ready`` hook with which the master serves a
  :class:`~mlmon.fleet.host.HostEndpoint` (one endpoint for all the workers; with
  ``--preload``, so that the master has the monitors that read the workers' states)::

      from mlmon.integrations.gunicorn import serve_host_endpoint, worker_exit  # noqa: F401
      import app  # builds HostEndpoint(..., lease=False) and the monitors
      when_ready = serve_host_endpoint(app.host)

gunicorn is not imported: the hooks only read ``worker.pid``.

>>> import os, tempfile, types
>>> d = tempfile.mkdtemp()
>>> open(os.path.join(d, "mlmon-4242.json"), "w").close()
>>> hook = child_exit_hook(d)
>>> hook(None, types.SimpleNamespace(pid=4242))
>>> os.listdir(d)
[]
>>> os.rmdir(d)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlmon.integrations.signals import close_monitors

if TYPE_CHECKING:
    from mlmon.fleet.host import HostEndpoint

__all__ = ["child_exit_hook", "on_exit", "remove_target_file", "serve_host_endpoint", "worker_exit"]

log = logging.getLogger("mlmon.integrations.gunicorn")


def remove_target_file(file_sd_dir: str | os.PathLike[str], pid: int) -> bool:
    """Remove the ``file_sd`` target file of process ``pid``; True if there was one.

    Raises:
        ValueError: ``pid`` is not a positive int.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid must be a positive int, got {pid!r}")
    try:
        os.unlink(os.path.join(os.fspath(file_sd_dir), f"mlmon-{pid}.json"))
    except FileNotFoundError:
        return False  # the worker closed its monitor and removed it itself
    return True


def child_exit_hook(file_sd_dir: str | os.PathLike[str]) -> Callable[[Any, Any], None]:
    """A gunicorn ``child_exit(server, worker)`` hook removing the worker's target file.

    Args:
        file_sd_dir: the directory given to ``PrometheusEmitter(file_sd_dir=...)``.

    Raises:
        ValueError: ``file_sd_dir`` is not an existing directory.
    """
    directory = os.fspath(file_sd_dir)
    if not os.path.isdir(directory):
        raise ValueError(f"file_sd_dir must be an existing directory, got {file_sd_dir!r}")

    def child_exit(server: Any, worker: Any) -> None:
        # Runs in the master: it must never raise into gunicorn's arbiter loop.
        try:
            if remove_target_file(directory, int(worker.pid)):
                log.info("mlmon: removed the file_sd target of worker %s, which did not exit cleanly", worker.pid)
        except Exception as exc:
            log.warning("mlmon: could not remove the file_sd target of worker %r: %r", getattr(worker, "pid", None), exc)

    return child_exit


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit(server, worker)`` hook: close every monitor of the exiting worker.

    Put ``from mlmon.integrations.gunicorn import worker_exit`` in the gunicorn config file.
    gunicorn runs it in the worker just before the worker process ends; it closes every live
    monitor there (a last snapshot to each emitter, the ``file_sd`` target removed), waiting at
    most their largest ``close_timeout`` plus half a second. gunicorn also calls it in the master for a worker
    that had already vanished: there it does nothing, so the master's own monitors stay open.
    It never raises into gunicorn.

    >>> import os, types, mlmon
    >>> mon = mlmon.Monitor("doc_worker_exit")
    >>> worker_exit(None, types.SimpleNamespace(pid=os.getpid() + 1))   # in the master
    >>> mon.flush().get("mlmon_calls_total")   # still open: it emits
    0.0
    >>> mon.close()
    """
    try:
        if getattr(worker, "pid", None) != os.getpid():
            return
        close_monitors()
    except Exception as exc:  # pragma: no cover - close_monitors never raises
        log.warning("mlmon: closing the monitors of worker %s failed: %r", os.getpid(), exc)


def on_exit(server: Any) -> None:
    """gunicorn's ``on_exit(server)`` hook: close every monitor of the master as it ends.

    Only a master that created monitors (``--preload``, or anything imported before the fork)
    has any. Bounded by their largest ``close_timeout`` plus half a second; never raises.
    """
    try:
        close_monitors()
    except Exception as exc:  # pragma: no cover - close_monitors never raises
        log.warning("mlmon: closing the monitors of the master failed: %r", exc)


def serve_host_endpoint(endpoint: HostEndpoint) -> Callable[[Any], None]:
    """A gunicorn ``when_ready(server)`` hook: the master serves ``endpoint`` for the host.

    The master reads the states the workers write each flush and serves their sum
    (docs/scale-out.md, "One endpoint per host"). It merges with the configuration of the
    master's own monitors that use ``endpoint`` (created before the fork: ``--preload``, or
    imported by the config file); build the endpoint with ``lease=False`` so that no worker
    binds the port. A failure to bind is logged, never raised into gunicorn (the workers'
    states are still written; a worker-served endpoint needs ``lease=True``).

    Raises:
        TypeError: ``endpoint`` is not a HostEndpoint.

    >>> import tempfile
    >>> from mlmon.fleet.host import HostEndpoint
    >>> hook = serve_host_endpoint(HostEndpoint(tempfile.mkdtemp(), port=0, lease=False))
    >>> callable(hook)
    True
    """
    from mlmon.fleet.host import HostEndpoint

    if not isinstance(endpoint, HostEndpoint):
        raise TypeError(f"serve_host_endpoint needs a HostEndpoint, got {endpoint!r}")

    def when_ready(server: Any) -> None:
        try:
            from mlmon.monitor import monitors

            endpoint.serve([m for m in monitors() if any(e is endpoint for e in m.emitters)])
            log.info("mlmon: the gunicorn master serves the host endpoint at %s", endpoint.url)
        except Exception as exc:
            log.warning("mlmon: the gunicorn master could not serve the host endpoint: %r", exc)

    return when_ready
