"""Pure, mergeable accumulators (numpy only): each has ``update``/``merge``/``reset`` and read-outs."""

from mlmon.stats.loghist import LogHistogram
from mlmon.stats.moments import Moments

__all__ = ["LogHistogram", "Moments"]
