"""Answer each Telegram update once, however often it arrives (a webhook retried after a slow answer, several
workers behind one webhook, a restart before the polling offset was committed): the first worker to claim an
update_id in Redis with SET NX handles it; the claim expires after Telegram's own redelivery window."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Telegram keeps an undelivered update for 24 hours.
UPDATE_CLAIM_TTL_SECONDS = 24 * 3600


class UpdateDeduplicator:
    """Claims update ids in Redis. Keys hold no user data: only the bot's id and the update's id."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = UPDATE_CLAIM_TTL_SECONDS) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def key(bot_id: int, update_id: int) -> str:
        return f"haven:telegram:update:{bot_id}:{update_id}"

    async def claim(self, bot_id: int, update_id: int) -> bool:
        """True if this worker should handle the update. With Redis down it says yes: answering a message
        twice is better than not answering it."""
        try:
            return bool(await self.redis.set(self.key(bot_id, update_id), "1", nx=True, ex=self.ttl_seconds))
        except (RedisError, OSError) as exc:
            log.warning("update dedupe unavailable; handling anyway error=%s", type(exc).__name__)
            return True


class ClaimedAtTheWebhook(UpdateDeduplicator):
    """For webhook workers: the fleet claims each update_id as it arrives (bots/telegram/fleet.py), before it
    is queued, so by the time the handlers see an update it is known to be the only copy."""

    async def claim(self, bot_id: int, update_id: int) -> bool:
        return True
