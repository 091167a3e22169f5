"""Per-user context kept in Redis: history, profile, and whatever later features file under the user's keys."""

from core.store.base import ContextStore
from core.store.embedded import EmbeddedRedis
from core.store.redis_store import RedisContextStore, connect_redis, user_prefix

__all__ = ["ContextStore", "EmbeddedRedis", "RedisContextStore", "connect_redis", "user_prefix"]
