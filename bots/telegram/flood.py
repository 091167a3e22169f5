"""Telegram's flood limits for a whole fleet of workers: about 30 messages a second per bot, about one a second per
private chat (short bursts allowed), 20 a minute per group. Each worker asks Redis before sending, so N workers
together stay inside the limits that one bot token has; a 429 (RetryAfter) pauses every worker for as long as
Telegram says, then the request is sent again.

The windows are sliding logs (a sorted set of send times per limit), so "20 a minute" means at most 20 in any
60 seconds, not 20 per calendar minute plus a burst. Times come from Redis' own clock, one clock for every
worker. The keys hold chat ids and times, never text. With Redis down, each worker keeps the same windows in
memory: the fleet may then send N times the limit, which Telegram answers with 429s that are still waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from core import metrics

log = logging.getLogger(__name__)

# Typing indicators are not messages: holding them back would only make Haven look absent.
_UNLIMITED_ENDPOINTS = frozenset({"sendChatAction"})
# A private chat may burst this many seconds' worth of its sustained rate (a welcome, a placeholder, an edit).
CHAT_BURST_SECONDS = 3.0

# KEYS[1]: the fleet's pause (set after a 429), KEYS[2..]: one sorted set of send times per limit.
# ARGV[1]: a unique member for this send; then (limit, window ms) for each of KEYS[2..].
# Returns 0 when the send may go now (recorded in every window), else the milliseconds to wait.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local paused = redis.call('PTTL', KEYS[1])
if paused > 0 then return paused end
local wait = 0
for i = 2, #KEYS do
  local limit, window = tonumber(ARGV[2 * i - 2]), tonumber(ARGV[2 * i - 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return wait end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * i - 1])
end
return 0
"""


def bot_id_from_token(token: str) -> int:
    """The bot's numeric id: the part of the token before the colon (public; the part after it is the secret)."""
    return int(token.split(":", 1)[0])


class _LocalWindows:
    """The same sliding windows in this process only: the fallback while Redis does not answer."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    def wait_ms(self, windows: list[tuple[str, int, int]]) -> int:
        now = time.monotonic() * 1000
        wait = 0.0
        for key, limit, window_ms in windows:
            sent = self._sent.setdefault(key, deque())
            while sent and sent[0] <= now - window_ms:
                sent.popleft()
            if len(sent) >= limit:
                wait = max(wait, sent[0] + window_ms - now)
        if wait > 0:
            return max(1, math.ceil(wait))
        for key, _, _ in windows:
            self._sent[key].append(now)
        if len(self._sent) > 4096:  # forget chats whose windows have emptied
            self._sent = {key: sent for key, sent in self._sent.items() if sent}
        return 0


class FleetRateLimiter(BaseRateLimiter[int]):
    """python-telegram-bot's rate limiter hook, backed by Redis windows every worker of one bot shares.
    `rate_limit_args`, when given, is the number of 429 retries for that request (as with AIORateLimiter)."""

    def __init__(self, redis: aioredis.Redis, bot_id: int, *, messages_per_second: float = 30.0,
                 chat_messages_per_second: float = 1.0, group_messages_per_minute: int = 20,
                 max_retries: int = 5) -> None:
        self.redis = redis
        self.max_retries = max_retries
        self._prefix = f"haven:telegram:flood:{bot_id}:"
        self._overall = (max(1, round(messages_per_second)), 1000)
        self._chat = (max(1, round(chat_messages_per_second * CHAT_BURST_SECONDS)), int(CHAT_BURST_SECONDS * 1000))
        self._group = (group_messages_per_minute, 60_000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._local = _LocalWindows()
        self._paused_until = 0.0  # monotonic; this worker's own copy of the fleet pause

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def _windows(self, chat_id: Any) -> list[tuple[str, int, int]]:
        windows = [(self._prefix + "all", *self._overall)]
        # The chat is named by a hash: a user's id appears in no key here (after /forget nothing names them).
        chat = hashlib.blake2b(str(chat_id).encode(), digest_size=8).hexdigest()
        private = False
        with contextlib.suppress(TypeError, ValueError):
            private = int(chat_id) > 0  # groups, supergroups and channels have negative ids (or an @name)
        if private:
            windows.append((self._prefix + f"chat:{chat}", *self._chat))
        else:
            windows.append((self._prefix + f"group:{chat}", *self._group))
        return windows

    async def _wait_ms(self, windows: list[tuple[str, int, int]]) -> int:
        paused = self._paused_until - time.monotonic()
        if paused > 0:
            return math.ceil(paused * 1000)
        keys = [self._prefix + "pause"] + [key for key, _, _ in windows]
        args: list[Any] = [uuid.uuid4().hex]
        for _, limit, window_ms in windows:
            args += [limit, window_ms]
        try:
            return int(await self._acquire(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            log.warning("shared flood limit unavailable; limiting this worker alone error=%s", type(exc).__name__)
            return self._local.wait_ms(windows)

    async def wait_turn(self, chat_id: Any) -> float:
        """Wait until a message to `chat_id` may go without breaking a limit; returns the seconds waited."""
        windows, waited = self._windows(chat_id), 0.0
        while (wait_ms := await self._wait_ms(windows)) > 0:
            if waited == 0.0:
                metrics.inc("haven_telegram_flood_waits_total", "Messages held back to keep to Telegram's limits.")
            await asyncio.sleep(wait_ms / 1000)
            waited += wait_ms / 1000
        return waited

    async def pause(self, seconds: float) -> None:
        """Telegram answered 429: every worker of this bot holds its messages for `seconds`."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        try:
            await self.redis.set(self._prefix + "pause", "1", px=max(1, math.ceil(seconds * 1000)))
        except (RedisError, OSError) as exc:
            log.warning("flood pause not shared error=%s", type(exc).__name__)

    async def process_request(
            self,
            callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
            args: Any,
            kwargs: dict[str, Any],
            endpoint: str,
            data: dict[str, Any],
            rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        retries = self.max_retries if rate_limit_args is None else rate_limit_args
        chat_id = data.get("chat_id")
        limited = chat_id is not None and endpoint not in _UNLIMITED_ENDPOINTS
        for attempt in range(retries + 1):
            if limited:
                await self.wait_turn(chat_id)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                metrics.inc("haven_telegram_retry_after_total", "429 answers from Telegram (flood control).")
                if attempt == retries:
                    raise
                wait = exc.retry_after
                seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
                log.info("telegram flood control; waiting seconds=%.1f endpoint=%s", seconds, endpoint)
                await self.pause(seconds + 0.1)
                await asyncio.sleep(seconds + 0.1)
        raise AssertionError("unreachable")
