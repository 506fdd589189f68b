"""One view of a fleet: the windows of many processes merged exactly (see docs/scale-out.md).

:func:`merge_states` merges the states that processes export (``Monitor.fleet_state()``) into
one snapshot, computed on the merged counts; :func:`combine_states` merges states into one
state; :func:`retire_state` keeps only the counters of a process that ended.
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

__all__ = [
    "MAX_STATE_BYTES",
    "STATE_VERSION",
    "Fleet",
    "FleetMerge",
    "StateError",
    "combine_states",
    "merge_states",
    "read_state",
    "retire_state",
]
