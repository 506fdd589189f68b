"""Pure accumulators (numpy only): each adds values (``update``/``update_many`` or
``add``/``add_many``), merges another of its kind (``merge``), forgets (``reset``) and reads out."""

from mlmon.stats.loghist import LogHistogram
from mlmon.stats.moments import Moments

__all__ = ["LogHistogram", "Moments"]
