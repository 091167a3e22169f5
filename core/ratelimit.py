"""A per-user message rate limit, kept in Redis so every worker shares it.

A flood from one user (a stuck key, a script, someone pasting line by line) must not starve everyone else of
the model. Each user gets `max_messages` per `window_seconds` (a fixed window: one counter per window). The
first message over the limit is told so, once per window; later ones in the same window are dropped quietly,
so the notice itself does not become a flood. Other users are unaffected.

The counter lives under the user's own prefix (`haven:{platform:id}:ratelimit:<window>`), so /forget deletes it
and /export shows it; it holds a number, never text. With Redis down the limit fails open: a person who needs
Haven is answered rather than refused because of our outage.

Crisis messages are never limited: the dialog manager screens a message before it asks the limiter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.errors import StoreError
from core.store.redis_store import AlongRead, as_store_error, user_prefix
from core.types import UserRef

log = logging.getLogger(__name__)

# KEYS[1] this window's counter; ARGV[1] its lifetime in seconds. Returns the count including this message.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
return n
"""


class Admission(StrEnum):
    ALLOWED = "allowed"
    LIMITED_NOTIFY = "limited_notify"  # the first message over the limit in this window: tell the user once
    LIMITED_QUIET = "limited_quiet"  # already told in this window: drop without another notice

    @property
    def allowed(self) -> bool:
        return self is Admission.ALLOWED


@dataclass(frozen=True, slots=True)
class RateLimit:
    max_messages: int = 20
    window_seconds: int = 60


class UserRateLimiter:
    def __init__(self, redis: aioredis.Redis, limit: RateLimit | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis: Any = redis
        self.limit = limit or RateLimit()
        self._clock = clock
        self._count = redis.register_script(_COUNT)

    def key(self, user: UserRef, at: float | None = None) -> str:
        window = int((self._clock() if at is None else at) // self.limit.window_seconds)
        return f"{user_prefix(user)}ratelimit:{window}"

    async def admit(self, user: UserRef) -> Admission:
        """Count one message from `user` and say whether it may go on to the model."""
        try:
            count = await self._count(keys=[self.key(user)], args=[self.limit.window_seconds + 1])
        except (RedisError, OSError) as exc:
            return self._admission(user, as_store_error(exc))
        return self._admission(user, count)

    def admit_along(self, user: UserRef) -> AlongRead[Admission]:
        """`admit`, sent in the same round trip as the message's context read (see `AlongRead`), on the context
        store's connection: the dialog manager's, which shares this limiter's Redis."""
        key, ttl = self.key(user), self.limit.window_seconds + 1
        return AlongRead(lambda pipe: pipe.eval(_COUNT, 1, key, ttl), lambda replies: self._admission(user, replies[0]))

    def _admission(self, user: UserRef, count: Any) -> Admission:
        """The admission for this message's count, or for the error met counting it (the limit fails open)."""
        if isinstance(count, StoreError):
            log.warning("rate limit unavailable; admitting user=%s error=%s", user.log_id,
                        type(count.__cause__ or count).__name__)
            return Admission.ALLOWED
        count = int(count)
        if count <= self.limit.max_messages:
            return Admission.ALLOWED
        if count == self.limit.max_messages + 1:
            log.info("rate limited user=%s", user.log_id)
            return Admission.LIMITED_NOTIFY
        return Admission.LIMITED_QUIET
