"""One view of a fleet: the windows of many processes merged exactly (see docs/scale-out.md).

:func:`merge_states` merges the states that processes export (``Monitor.fleet_state()``) into
one snapshot, computed on the merged counts; :func:`combine_states` merges states into one
state; :func:`retire_state` keeps only the counters of a process that ended.
:class:`Fleet` merges a fleet's states through Redis (with a leader elected by lease);
:class:`~mlmon.fleet.host.HostEndpoint` serves the merged states of a host's workers on one
Prometheus endpoint.
"""

from mlmon.fleet._codec import StateError
from mlmon.fleet.state import (
    MAX_STATE_BYTES,
    STATE_VERSION,
    FleetMerge,
    combine_states,
    merge_states,
    read_state,
    retire_state,
)
from mlmon.fleet.view import Fleet


def __getattr__(name: str) -> object:
    # HostEndpoint brings an HTTP server: imported when asked for, not with every `import mlmon`.
    if name == "HostEndpoint":
        from mlmon.fleet.host import HostEndpoint

        return HostEndpoint
    raise AttributeError(f"module 'mlmon.fleet' has no attribute {name!r}")


__all__ = [
    "MAX_STATE_BYTES",
    "STATE_VERSION",
    "Fleet",
    "FleetMerge",
    "HostEndpoint",
    "StateError",
    "combine_states",
    "merge_states",
    "read_state",
    "retire_state",
]
