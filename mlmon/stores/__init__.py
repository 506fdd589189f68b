"""Shared prediction stores: the feedback join across processes and replicas.

:class:`RedisStore` keeps pending predictions in Redis (a single node or a Redis Cluster) so
that a label logged in any process joins a prediction made in any other; see docs/stores.md.

>>> from mlmon.stores import PredictionStore, RedisStore
>>> isinstance(RedisStore(), PredictionStore)
True
"""

from mlmon.stores.base import REASONS, PredictionStore, StoreJoined
from mlmon.stores.redis import RedisStore

__all__ = ["REASONS", "PredictionStore", "RedisStore", "StoreJoined"]
