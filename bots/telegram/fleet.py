"""Several webhook workers, one Redis: each update is answered once, and one user's updates are answered one at
a time in update_id order, whichever workers they land on.

Why a lock alone is not enough: two of a user's updates on two workers race for it, and the later one can win.
So order comes from a per-user mailbox instead, a Redis sorted set scored by update_id:

1. A worker that receives an update runs one script: claim the update_id (SET NX; a redelivery or a second
   copy stops here), add the update to the user's mailbox, and try to take the user's turn lock (SET NX PX with
   a random token). Only then does it answer Telegram 200.
2. Telegram's Bot API server sends one chat's updates one at a time: the next only after the webhook answered
   2xx for the previous one (telegram-bot-api's WebhookActor keeps a queue per chat). Answering after step 1
   therefore means a user's earlier update is always in the mailbox before a later one arrives anywhere.
3. The worker holding the turn lock takes the mailbox's lowest update_id, handles it, and repeats. "Take the
   next, or give the lock back if the mailbox is empty" is one script, so an update added meanwhile is either
   taken by this holder or finds the lock free and is drained by its own worker: none is stranded.
4. The holder renews the lock while it works (a reply can take minutes). If it dies, the lock expires; the
   user's next update, or any worker's periodic sweep of users with waiting mail, drains the rest in order.

Privacy: a mailbox holds the update's JSON (the user's words) only while it waits: each entry is removed when
its turn comes, and the mailbox expires on its own (`mailbox_ttl_seconds`) if no worker is left to drain it.
Other keys hold ids and tokens, never text. Logs and metrics carry no user data.

If Redis is down, a worker handles what it receives itself, in arrival order per user within the worker:
answering matters more than order across workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bots.telegram.dedupe import UPDATE_CLAIM_TTL_SECONDS, UpdateDeduplicator
from core import metrics
from core.logs import redacted_traceback
from core.ordering import KeyedLocks

log = logging.getLogger(__name__)

_DEPTH_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100)
_SWEEP_BATCH = 200

# KEYS: update claim, mailbox, turn lock, index of users with waiting mail.
# ARGV: update_id, update JSON, claim TTL s, mailbox TTL ms, lock token, lock TTL ms, user id.
# Returns {outcome, mailbox depth}: outcome -1 duplicate, 0 queued behind the lock's holder, 1 queued and the
# lock taken by the caller (who must now drain).
_ADMIT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then return {-1, 0} end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[7])
local depth = redis.call('ZCARD', KEYS[2])
if redis.call('SET', KEYS[3], ARGV[5], 'NX', 'PX', ARGV[6]) then return {1, depth} end
return {0, depth}
"""

# KEYS: mailbox, turn lock, index. ARGV: lock token, lock TTL ms, user id.
# Returns {1, update JSON} (the lock renewed), {0} (mailbox empty: lock released), {-1} (the lock is not ours).
_NEXT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
local head = redis.call('ZPOPMIN', KEYS[1])
if head[1] == nil then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[3])
  return {0}
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {1, head[1]}
"""

# KEYS: turn lock. ARGV: token, TTL ms (renew) or nothing (release). Only the holder's token may do either.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class Admission(StrEnum):
    QUEUED = "queued"  # in the user's mailbox; this worker or the lock's holder answers it
    DUPLICATE = "duplicate"  # already claimed: a redelivery or a second copy
    LOCAL = "local"  # Redis did not answer: handled by this worker alone


@dataclass(frozen=True, slots=True)
class FleetTimings:
    # A dead holder's users wait at most about this long; the holder renews every third of it.
    lock_ttl_seconds: float = 30.0
    # Waiting updates (with the user's words) are dropped after this long if no worker is left to drain them.
    mailbox_ttl_seconds: float = 600.0
    # How often each worker looks for users whose mail waits with nobody holding their turn.
    sweep_interval_seconds: float = 10.0
    update_claim_ttl_seconds: int = UPDATE_CLAIM_TTL_SECONDS
    # At shutdown, replies being written get this long to finish (systemd's TimeoutStopSec is 30 s).
    stop_wait_seconds: float = 25.0


Handle = Callable[[dict[str, Any]], Awaitable[None]]


def user_of(update: dict[str, Any]) -> int | None:
    """Whose update this is: the sender of a message or a button press (the updates Haven subscribes to)."""
    for kind in ("message", "edited_message", "callback_query", "my_chat_member"):
        sender = (update.get(kind) or {}).get("from") or {}
        if isinstance(sender.get("id"), int):
            return int(sender["id"])
    return None


class Fleet:
    """Takes updates from this worker's webhook server and has them handled in order, once, fleet-wide.
    `handle` runs one update (the Application's processing); it is awaited, one per user at a time."""

    def __init__(self, redis: aioredis.Redis, bot_id: int, handle: Handle,
                 timings: FleetTimings | None = None) -> None:
        self.redis = redis
        self.bot_id = bot_id
        self.handle = handle
        self.timings = timings or FleetTimings()
        self._admit = redis.register_script(_ADMIT)
        self._next = redis.register_script(_NEXT)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._dedupe = UpdateDeduplicator(redis, ttl_seconds=self.timings.update_claim_ttl_seconds)
        self._local_order = KeyedLocks()

    # ---- keys: ids only --------------------------------------------------------------------------------------

    def _mailbox(self, user_id: int) -> str:
        return f"haven:telegram:mailbox:{self.bot_id}:{user_id}"

    def _lock(self, user_id: int) -> str:
        return f"haven:telegram:turn:{self.bot_id}:{user_id}"

    @property
    def _waiting(self) -> str:
        return f"haven:telegram:waiting:{self.bot_id}"

    @property
    def _lock_ttl_ms(self) -> int:
        return max(1, int(self.timings.lock_ttl_seconds * 1000))

    # ---- arrivals --------------------------------------------------------------------------------------------

    async def submit(self, update: dict[str, Any]) -> Admission:
        """Take one update from Telegram. Returns once it is safe to answer 200: queued in Redis, known to be a
        duplicate, or (Redis down) being handled here."""
        update_id, user_id = int(update["update_id"]), user_of(update)
        if user_id is None:  # nobody's turn to keep: claim it and handle it
            claimed = await self._dedupe.claim(self.bot_id, update_id)
            if claimed:
                self._spawn(self._handle_counted(update))
            return self._counted(Admission.QUEUED if claimed else Admission.DUPLICATE)
        token = uuid.uuid4().hex
        try:
            outcome, depth = await self._admit(
                keys=[UpdateDeduplicator.key(self.bot_id, update_id), self._mailbox(user_id), self._lock(user_id),
                      self._waiting],
                # ASCII JSON: a lone surrogate from a "\ud83d" escape survives the round trip through Redis.
                args=[update_id, json.dumps(update), self.timings.update_claim_ttl_seconds,
                      int(self.timings.mailbox_ttl_seconds * 1000), token, self._lock_ttl_ms, user_id])
        except (RedisError, OSError) as exc:
            log.warning("fleet coordination unavailable; handling in this worker update_id=%d error=%s",
                        update_id, type(exc).__name__)
            self._spawn(self._handle_locally(user_id, update))
            return self._counted(Admission.LOCAL)
        if int(outcome) < 0:
            log.info("duplicate update dropped update_id=%d", update_id)
            return self._counted(Admission.DUPLICATE)
        metrics.observe("haven_telegram_mailbox_depth", "Updates waiting in the user's mailbox when one arrives.",
                        float(depth), buckets=_DEPTH_BUCKETS)
        if int(outcome) == 1:
            self._spawn(self._drain(user_id, token))
        return self._counted(Admission.QUEUED)

    @staticmethod
    def _counted(admission: Admission) -> Admission:
        metrics.inc("haven_telegram_updates_total", "Updates received by the webhook, by outcome.",
                    outcome=str(admission))
        return admission

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- handling, in turn -----------------------------------------------------------------------------------

    async def _drain(self, user_id: int, token: str) -> None:
        """Hold the user's turn: handle their waiting updates lowest update_id first until none is left."""
        keys = [self._mailbox(user_id), self._lock(user_id), self._waiting]
        renewal = asyncio.create_task(self._keep_turn(user_id, token))
        try:
            while True:
                if self._closing:  # shutting down: hand the user's turn to a worker that stays (sweep, next update)
                    await self._release(keys=[self._lock(user_id)], args=[token])
                    return
                popped = await self._next(keys=keys, args=[token, self._lock_ttl_ms, user_id])
                if int(popped[0]) != 1:
                    if int(popped[0]) < 0:
                        log.warning("turn lock lost while draining; another worker goes on")
                    return
                raw = popped[1].decode() if isinstance(popped[1], bytes) else popped[1]
                await self._handle_counted(json.loads(raw))
        except (RedisError, OSError) as exc:
            # The lock expires on its own; the next arrival or a sweep drains what is left.
            log.warning("fleet drain interrupted error=%s", type(exc).__name__)
        except asyncio.CancelledError:
            with contextlib.suppress(RedisError, OSError):  # let another worker take over at once
                await self._release(keys=[self._lock(user_id)], args=[token])
            raise
        finally:
            renewal.cancel()

    async def _keep_turn(self, user_id: int, token: str) -> None:
        while True:
            await asyncio.sleep(self.timings.lock_ttl_seconds / 3)
            try:
                if not await self._renew(keys=[self._lock(user_id)], args=[token, self._lock_ttl_ms]):
                    return
            except (RedisError, OSError) as exc:
                log.warning("turn lock not renewed error=%s", type(exc).__name__)

    async def _handle_counted(self, update: dict[str, Any]) -> None:
        metrics.add_to_gauge("haven_telegram_updates_in_flight", "Updates being handled by this worker.", 1)
        try:
            await self.handle(update)
        except Exception as exc:  # the Application reports handler errors itself; this is a bug in the plumbing
            log.error("update not handled update_id=%s error=%s\n%s", update.get("update_id"), type(exc).__name__,
                      redacted_traceback(exc))
        finally:
            metrics.add_to_gauge("haven_telegram_updates_in_flight", "Updates being handled by this worker.", -1)

    async def _handle_locally(self, user_id: int, update: dict[str, Any]) -> None:
        """Redis is down: one user's updates on this worker still go one at a time, in arrival order."""
        async with self._local_order.hold(user_id):
            await self._handle_counted(update)

    # ---- users nobody is serving -----------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Take the turn of users whose mail waits with no holder (theirs died) and drain it. Returns how many."""
        users = cast(list[bytes], await self.redis.zrange(self._waiting, 0, _SWEEP_BATCH - 1))  # members only
        metrics.set_gauge("haven_telegram_users_waiting", "Users with updates waiting in a mailbox (fleet-wide).",
                          float(await self.redis.zcard(self._waiting)))
        taken = 0
        for raw in users:
            user_id = int(raw)
            token = uuid.uuid4().hex
            if await self.redis.set(self._lock(user_id), token, nx=True, px=self._lock_ttl_ms):
                taken += 1
                self._spawn(self._drain(user_id, token))
        if taken:
            log.info("sweep resumed users=%d", taken)
        return taken

    async def run_sweeps(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.timings.sweep_interval_seconds)
            if stop.is_set():
                return
            try:
                await self.sweep()
            except (RedisError, OSError) as exc:
                log.warning("fleet sweep failed error=%s", type(exc).__name__)

    async def close(self) -> None:
        """Let updates being handled finish (up to `stop_wait_seconds`), then cancel the rest; a cancelled drain
        gives its user's turn back so another worker goes on at once."""
        self._closing = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.timings.stop_wait_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
