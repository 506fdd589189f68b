"""gunicorn: remove the ``file_sd`` target of a worker that died without closing its monitor.

Every process with a ``PrometheusEmitter(file_sd_dir=...)`` writes ``mlmon-<pid>.json`` and
removes it when it closes (at exit). A worker that is killed — by gunicorn's ``--timeout``, the
OOM killer, ``SIGKILL`` — cannot, and Prometheus would go on scraping a dead endpoint
(``up == 0``) until the file is gone. gunicorn's master calls the ``child_exit`` server hook for
every worker that exits, however it exits; this module makes that hook. In the gunicorn config
file (``gunicorn.conf.py``, or ``-c python:module``)::

    from mlmon.integrations.gunicorn import child_exit_hook
    child_exit = child_exit_hook("/run/mlmon/targets")

gunicorn is not imported: the hook only reads ``worker.pid``.

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
from typing import Any

__all__ = ["child_exit_hook", "remove_target_file"]

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
