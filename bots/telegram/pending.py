"""Messages accepted but not yet answered, so a crash never loses one silently.

The update deduplicator claims an update_id the moment it arrives. If the process then dies (SIGKILL, OOM, a
power cut) while the model is still writing, Telegram redelivers the update after the restart, but the claim
says "already handled" and the message would vanish. So each conversation message gets a small record while
it is being answered:

    haven:{telegram:<user_id>}:pending:<update_id>   JSON {chat, message, worker, at}; cleared once answered

Each running bot process (a worker) keeps a liveness key `haven:telegram:worker:<id>` alive with a short lease.
A record whose worker's lease has lapsed is an orphan: a redelivered copy of that update is answered by the
worker that receives it, and a periodic sweep tells the user of any other orphan ("sorry, I lost that
message"). Taking an orphan over is one Lua script, so two workers never both answer or both apologise.

Records sit under the user's prefix, so /forget removes them and /export shows them; they hold ids and a
time, never what the user wrote. With Redis down everything here fails open: the message is still answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.store.redis_store import user_prefix
from core.types import UserRef

log = logging.getLogger(__name__)

# What the user hears when their message was lost. (To move into bots/telegram/lines.yaml as `lost_message`.)
LOST_MESSAGE_LINE = (
    "I'm sorry, I restarted while I was answering you and lost your last message. "
    "Could you send it again? If you are in danger right now, please call your local emergency number."
)

# A worker renews its lease every LEASE/3 seconds; a worker silent for LEASE seconds is taken for dead.
LEASE_SECONDS = 6.0
# Telegram keeps an undelivered update for 24 hours; a record outliving that is of no use.
RECORD_TTL_SECONDS = 24 * 3600
_WORKER_PREFIX = "haven:telegram:worker:"
_SCAN_PATTERN = "haven:{telegram:*}:pending:*"

# KEYS[1] the record; ARGV[1] the worker key prefix, ARGV[2] the taker's worker id, ARGV[3] the record TTL.
# If the record's worker is dead (its lease key gone), the taker becomes its owner and gets the record back.
_TAKE_OVER = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ok, record = pcall(cjson.decode, raw)
if not ok or type(record) ~= 'table' then
  redis.call('DEL', KEYS[1])
  return false
end
if record['worker'] == ARGV[2] then return false end
if redis.call('EXISTS', ARGV[1] .. tostring(record['worker'])) == 1 then return false end
record['worker'] = ARGV[2]
local updated = cjson.encode(record)
redis.call('SET', KEYS[1], updated, 'EX', tonumber(ARGV[3]))
return raw
"""


@dataclass(frozen=True, slots=True)
class PendingMessage:
    user_id: int
    update_id: int
    chat_id: int
    message_id: int | None


class PendingMessages:
    def __init__(self, redis: aioredis.Redis, *, worker_id: str | None = None,
                 lease_seconds: float = LEASE_SECONDS, record_ttl_seconds: int = RECORD_TTL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis: Any = redis
        self.worker_id = worker_id or uuid.uuid4().hex
        self.lease_seconds = lease_seconds
        self.record_ttl_seconds = record_ttl_seconds
        self._clock = clock
        self._take_over = redis.register_script(_TAKE_OVER)

    @staticmethod
    def key(user_id: int, update_id: int) -> str:
        return f"{user_prefix(UserRef('telegram', str(user_id)))}pending:{update_id}"

    async def heartbeat(self) -> None:
        """Renew this worker's lease (call every lease/3 seconds)."""
        try:
            await self._redis.set(_WORKER_PREFIX + self.worker_id, "1", px=int(self.lease_seconds * 1000))
        except (RedisError, OSError) as exc:
            log.warning("pending-message lease not renewed error=%s", type(exc).__name__)

    async def release(self) -> None:
        """A clean shutdown: drop the lease at once, so another worker may take over what is left."""
        try:
            await self._redis.delete(_WORKER_PREFIX + self.worker_id)
        except (RedisError, OSError) as exc:
            log.warning("pending-message lease not released error=%s", type(exc).__name__)

    async def accept(self, user_id: int, update_id: int, chat_id: int, message_id: int | None) -> None:
        record = {"chat": chat_id, "message": message_id, "worker": self.worker_id, "at": int(self._clock())}
        try:
            await self.heartbeat()
            await self._redis.set(self.key(user_id, update_id), json.dumps(record), ex=self.record_ttl_seconds)
        except (RedisError, OSError) as exc:
            log.warning("pending message not recorded error=%s", type(exc).__name__)

    async def done(self, user_id: int, update_id: int) -> None:
        try:
            await self._redis.delete(self.key(user_id, update_id))
        except (RedisError, OSError) as exc:
            log.warning("pending message not cleared error=%s", type(exc).__name__)

    async def take_over(self, user_id: int, update_id: int) -> PendingMessage | None:
        """Own this record if its worker is dead; returns it, or None (no record, or its worker is alive)."""
        try:
            raw = await self._take_over(keys=[self.key(user_id, update_id)],
                                        args=[_WORKER_PREFIX, self.worker_id, self.record_ttl_seconds])
        except (RedisError, OSError) as exc:
            log.warning("pending message not checked error=%s", type(exc).__name__)
            return None
        if not raw:
            return None
        record = json.loads(raw)
        return PendingMessage(user_id, update_id, int(record["chat"]), record.get("message"))

    async def redelivered(self, user_id: int, update_id: int) -> PendingMessage | None:
        """A duplicate of an update arrived. If its first worker died before answering, own it and return it
        (the caller answers it now); if that worker may still be alive, wait out its lease first."""
        deadline = time.monotonic() + self.lease_seconds + 0.5
        while True:
            taken = await self.take_over(user_id, update_id)
            if taken is not None:
                return taken
            try:
                record = await self._redis.get(self.key(user_id, update_id))
            except (RedisError, OSError):
                return None
            if record is None or json.loads(record).get("worker") == self.worker_id:
                return None  # answered already, or being answered by this very worker
            if time.monotonic() >= deadline:
                return None  # its worker is alive and still answering
            await asyncio.sleep(min(0.25, self.lease_seconds / 4))

    async def orphans(self) -> list[PendingMessage]:
        """Every record whose worker died, now owned by this worker (the sweep tells their users)."""
        taken = []
        try:
            keys = [key async for key in self._redis.scan_iter(match=_SCAN_PATTERN, count=500)]
        except (RedisError, OSError) as exc:
            log.warning("pending-message sweep skipped error=%s", type(exc).__name__)
            return []
        for key in keys:
            user_part, _, update_part = key.rpartition(":pending:")
            try:
                user_id, update_id = int(user_part.rsplit(":", 1)[-1].rstrip("}")), int(update_part)
            except ValueError:
                continue
            found = await self.take_over(user_id, update_id)
            if found is not None:
                taken.append(found)
        return taken
