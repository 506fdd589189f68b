"""Process and system resource usage, sampled with psutil on the reporter thread."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil

from mlmon._handover import handover

__all__ = ["ResourceSampler"]


class ResourceSampler:
    """Samples CPU, memory, threads and open fds of this process, and system CPU and memory.

    CPU percentages cover the time since the previous sample (the first sample reads 0), where
    100 means one full core. Each reading is optional: one that psutil cannot make on this
    platform is left out, not reported as 0.

    >>> s = ResourceSampler()
    >>> names = {name for name, _ in s.sample()}
    >>> "mlmon_process_resident_memory_bytes" in names
    True
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._proc = psutil.Process(self._pid)
        self._proc.cpu_percent(None)
        psutil.cpu_percent(None)

    def sample(self) -> Iterator[tuple[str, float]]:
        """Yield ``(metric name, value)`` pairs."""
        if os.getpid() != self._pid:  # forked: measure the child, not the parent
            self.__init__()  # type: ignore[misc]
        proc = self._proc
        with proc.oneshot():
            yield "mlmon_process_cpu_percent", proc.cpu_percent(None)
            yield "mlmon_process_resident_memory_bytes", float(proc.memory_info().rss)
            yield "mlmon_process_threads", float(proc.num_threads())
            if hasattr(proc, "num_fds"):
                try:
                    yield "mlmon_process_open_fds", float(proc.num_fds())
                except psutil.Error:
                    pass
        handover()  # reading /proc is a few hundred µs: on the reporter thread, a pause point
        yield "mlmon_system_cpu_percent", psutil.cpu_percent(None)
        handover()
        yield "mlmon_system_memory_used_ratio", psutil.virtual_memory().percent / 100.0
