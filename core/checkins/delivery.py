"""Delivering check-ins: a worker per platform reads jobs from that platform's outbox stream (a Redis consumer
group), claims the (user, slot) idempotency key with SET NX before sending, and keeps to a rate limit shared by
every worker through Redis.

Guarantees, and the one trade-off:
- A slot is never sent twice: the claim happens before the send, and a job whose key is already claimed is
  dropped (a crashed leader re-enqueuing, a crashed worker's job taken over by another).
- A job is not lost when a worker dies: unacknowledged jobs stay pending in the consumer group and another
  worker takes them over (XAUTOCLAIM) after `reclaim_idle_seconds`.
- If a worker dies after claiming but before hearing back from the platform, nobody can know whether the
  message went out; Haven then prefers silence to a double message and counts it as `uncertain`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time as wallclock
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from redis.exceptions import ResponseError

from core.checkins import keys
from core.checkins.catalog import Catalog
from core.checkins.config import CheckinConfig
from core.checkins.service import checkin_buttons
from core.clock import Clock, SystemClock
from core.store.redis_store import user_prefix
from core.types import Button, UserRef

log = logging.getLogger(__name__)

# Admin template changes reach running workers within this (real) time.
TEMPLATE_CACHE_SECONDS = 30.0

Sleep = Callable[[float], Awaitable[None]]


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    BLOCKED = "blocked"  # the user blocked the bot or deleted the chat: switch their check-ins off
    RETRY_AFTER = "retry_after"  # the platform asked us to slow down (Telegram 429, Discord rate limit)
    FAILED = "failed"  # anything else; not retried


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: DeliveryOutcome
    retry_after_seconds: float = 0.0

    @classmethod
    def delivered(cls) -> DeliveryResult:
        return cls(DeliveryOutcome.DELIVERED)

    @classmethod
    def blocked(cls) -> DeliveryResult:
        return cls(DeliveryOutcome.BLOCKED)

    @classmethod
    def retry_after(cls, seconds: float) -> DeliveryResult:
        return cls(DeliveryOutcome.RETRY_AFTER, seconds)


class Notifier(Protocol):
    """Sends one check-in on one platform. Implemented by each adapter; must not raise for platform answers."""

    async def send_checkin(self, user: UserRef, text: str, buttons: tuple[Button, ...]) -> DeliveryResult: ...


# KEYS[1] bucket hash, KEYS[2] per-chat marker, KEYS[3] hold-until (ms, set after a retry_after).
# ARGV: now_ms, rate/s, burst, chat interval ms. Times come from the caller's clock (not Redis's), so every worker
# and the tests agree on one time line. Returns 0 when a send may go now (and takes the token), else ms to wait.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local hold_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if hold_until > now then return math.ceil(hold_until - now) end
local chat_next = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_next > now then return math.ceil(chat_next - now) end
local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) ts = now end
if tokens < 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
  return math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], 60000)
local interval = tonumber(ARGV[4])
if interval > 0 then redis.call('SET', KEYS[2], tostring(now + interval), 'PX', math.ceil(interval) + 5000) end
return 0
"""


# KEYS[1] schedule hash, KEYS[2] profile hash, KEYS[3] the slot's idempotency key.
# ARGV: slot (unix s), key TTL (s), "1" if this job was taken over from a dead worker.
# Everything about one user before a send, in one round trip: still opted in? slot already claimed? talked
# recently? Then SET the claim (the key is known absent here, so this is the SET NX) and advance the rotation.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'on') ~= '1' then return {'dropped_opted_out'} end
local state = redis.call('GET', KEYS[3])
if state then
  if ARGV[3] == '1' and state == 'claimed' then return {'uncertain'} end
  return {'duplicates_suppressed'}
end
local skip = tonumber(redis.call('HGET', KEYS[1], 'skip_h') or '0') or 0
local last = math.max(tonumber(redis.call('HGET', KEYS[1], 'last_chat_at') or '0') or 0,
                      tonumber(redis.call('HGET', KEYS[2], 'last_seen') or '0') or 0)
local since = tonumber(ARGV[1]) - last
if skip > 0 and since >= 0 and since < skip * 3600 then
  redis.call('SET', KEYS[3], 'skipped_recent_chat', 'EX', ARGV[2])
  return {'skipped_recent_chat'}
end
redis.call('SET', KEYS[3], 'claimed', 'NX', 'EX', ARGV[2])
return {'claimed', redis.call('HINCRBY', KEYS[1], 'rot', 1)}
"""


# A blocked user's check-ins go off; a user forgotten meanwhile is not brought back by this write.
_SWITCH_OFF = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'on', '0', 'blocked_at', ARGV[1]) end
return 0
"""


class SharedRateLimit:
    """A token bucket per platform plus a per-chat spacing, in Redis, so every worker process shares them."""

    def __init__(self, client: Any, platform: str, config: CheckinConfig, clock: Clock, sleep: Sleep) -> None:
        self._redis = client
        self._platform = platform
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._acquire = client.register_script(_ACQUIRE)

    async def wait_turn(self, user: UserRef) -> float:
        """Wait until this user's check-in may go; returns the seconds waited."""
        waited, bucket = 0.0, keys.rate_bucket(self._platform)
        while True:
            wait_ms = int(await self._acquire(
                keys=[bucket, keys.rate_chat(user), bucket + ":hold"],
                args=[f"{self._clock.now() * 1000:.0f}", self._config.rate_per_second, self._config.rate_burst,
                      int(self._config.per_chat_interval_seconds * 1000)]))
            if wait_ms <= 0:
                return waited
            await self._sleep(wait_ms / 1000)
            waited += wait_ms / 1000

    async def hold(self, seconds: float) -> None:
        """The platform said slow down: every worker of this platform pauses for `seconds`."""
        hold_ms = max(1, math.ceil(seconds * 1000))
        until_ms = self._clock.now() * 1000 + hold_ms
        await self._redis.set(keys.rate_bucket(self._platform) + ":hold", f"{until_ms:.0f}", px=hold_ms + 5000)


@dataclass(frozen=True, slots=True)
class Job:
    entry_id: str
    user: UserRef
    slot_at: int
    campaign: str


class CheckinDelivery:
    """One delivery worker for one platform. Run several (in each bot process); they share the outbox."""

    def __init__(self, client: Any, platform: str, notifier: Notifier, *, config: CheckinConfig | None = None,
                 clock: Clock | None = None, sleep: Sleep = asyncio.sleep, consumer: str | None = None) -> None:
        self._redis = client
        self.platform = platform
        self.notifier = notifier
        self.config = config or CheckinConfig()
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.catalog = Catalog(client)
        self.limit = SharedRateLimit(client, platform, self.config, self.clock, sleep)
        self._stream = keys.outbox(platform)
        self._group_ready = False
        self._templates: tuple[float, list[str]] | None = None
        self._claim = client.register_script(_CLAIM)
        self._switch_off = client.register_script(_SWITCH_OFF)

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, keys.DELIVERY_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def run(self, stop: asyncio.Event | None = None, *, block_seconds: float = 2.0) -> None:
        """Deliver until `stop` is set. Blocks at most `block_seconds` per read (under redis-py's socket timeout)."""
        stop = stop or asyncio.Event()
        await self.ensure_group()
        while not stop.is_set():
            try:
                await self.reclaim()
                await self.process(block_ms=int(block_seconds * 1000))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("check-in delivery round failed", exc_info=True)
                await asyncio.sleep(1.0)

    async def process(self, *, block_ms: int | None = None) -> int:
        """Read and deliver one batch of new jobs; returns how many were handled."""
        await self.ensure_group()
        answer = await self._redis.xreadgroup(keys.DELIVERY_GROUP, self.consumer, {self._stream: ">"},
                                              count=self.config.delivery_batch, block=block_ms)
        return await self._handle_all(_entries(answer))

    async def reclaim(self, min_idle_seconds: float | None = None) -> int:
        """Take over jobs another worker read but never finished (it died); returns how many were handled."""
        await self.ensure_group()
        idle_ms = int(1000 * (self.config.reclaim_idle_seconds if min_idle_seconds is None else min_idle_seconds))
        handled, cursor = 0, "0-0"
        while True:
            answer = await self._redis.xautoclaim(self._stream, keys.DELIVERY_GROUP, self.consumer, idle_ms,
                                                  start_id=cursor, count=self.config.delivery_batch)
            cursor, claimed = answer[0], answer[1]
            handled += await self._handle_all([(eid, fields) for eid, fields in claimed if fields], recovered=True)
            if cursor in ("0-0", b"0-0") or not claimed:
                return handled

    async def drain(self) -> int:
        """Deliver every job waiting now (tests, and a clean shutdown)."""
        total = 0
        while (handled := await self.process()) > 0:
            total += handled
        return total

    async def _handle_all(self, entries: list[tuple[str, dict[str, str]]], *, recovered: bool = False) -> int:
        for entry_id, fields in entries:
            job = Job(entry_id, keys.user_of(fields["u"]), int(fields["slot"]), fields.get("c", ""))
            event, sent_state = await self._deliver(job, recovered=recovered)
            # The outcome, its count and the acknowledgement travel together in one round trip.
            async with self._redis.pipeline(transaction=False) as pipe:
                if sent_state == "":
                    pipe.delete(keys.sent_key(job.user, job.slot_at))
                elif sent_state is not None:
                    pipe.set(keys.sent_key(job.user, job.slot_at), sent_state, xx=True, keepttl=True)
                pipe.hincrby(keys.STATS, event, 1)
                pipe.xack(self._stream, keys.DELIVERY_GROUP, entry_id)
                pipe.xdel(self._stream, entry_id)
                await pipe.execute()
        return len(entries)

    async def _deliver(self, job: Job, *, recovered: bool) -> tuple[str, str | None]:
        """Handle one job; returns (event to count, new state of the slot's key: None = leave, "" = delete)."""
        user, now = job.user, self.clock.now()
        sent_key = keys.sent_key(user, job.slot_at)
        if now - job.slot_at > self.config.grace_seconds:
            return "skipped_missed", None
        claim = await self._claim(keys=[keys.schedule_key(user), user_prefix(user) + "profile", sent_key],
                                  args=[job.slot_at, self.config.sent_key_ttl_seconds, "1" if recovered else "0"])
        if claim[0] != "claimed":
            return str(claim[0]), None
        text = await self._text(job.campaign, int(claim[1]) - 1)
        for _attempt in range(self.config.max_send_attempts):
            await self.limit.wait_turn(user)
            try:
                result = await self.notifier.send_checkin(user, text, checkin_buttons())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("check-in send failed user=%s error=%s", user.log_id, type(exc).__name__)
                result = DeliveryResult(DeliveryOutcome.FAILED)
            if result.outcome is DeliveryOutcome.RETRY_AFTER:
                await self.catalog.count("platform_retry_after")
                await self.limit.hold(result.retry_after_seconds)
                continue
            if result.outcome is DeliveryOutcome.DELIVERED:
                return "delivered", "delivered"
            if result.outcome is DeliveryOutcome.BLOCKED:
                await self._redis.zrem(keys.DUE, keys.member(user))
                await self._switch_off(keys=[keys.schedule_key(user)], args=[f"{self.clock.now():.0f}"])
                log.info("check-ins switched off: bot blocked user=%s", user.log_id)
                return "blocked_switched_off", "blocked"
            return "failed", ""  # not sent: free the slot's key; the job is dropped with a count
        return "failed", ""

    async def _text(self, campaign: str, rotation: int) -> str:
        if campaign:
            text = await self.catalog.campaign_text(campaign)
            if text:
                return text
        now = wallclock.monotonic()
        if self._templates is None or now - self._templates[0] > TEMPLATE_CACHE_SECONDS:
            self._templates = (now, [text for _, text in await self.catalog.templates()])
        found = self._templates[1]
        return found[rotation % len(found)] if found else await self.catalog.template_for(rotation)


def _entries(answer: Any) -> list[tuple[str, dict[str, str]]]:
    """XREADGROUP's answer as (id, fields) pairs, for both RESP2 (list) and RESP3 (dict) replies."""
    if not answer:
        return []
    streams = answer.items() if isinstance(answer, dict) else answer
    found: list[tuple[str, dict[str, str]]] = []
    for _name, entries in streams:
        if entries and isinstance(entries[0], list) and len(entries) == 1 and isinstance(entries[0][0], list):
            entries = entries[0]
        for entry_id, fields in entries:
            if fields:
                found.append((entry_id, fields))
    return found
