"""The check-in scheduler: one leader at a time finds who is due and hands them to the delivery workers.

APScheduler 3.11 (never 4.x) runs one interval job, the tick, in an AsyncIOScheduler with an in-memory job store:
nothing of APScheduler's is shared between processes (a shared job store runs jobs several times). Every process
ticks; only the one holding the Redis leader lock (SET NX with a TTL, renewed while it works) does anything, and
the others stand by until the lock lapses.

Per tick the leader reads the due index (a sorted set of next-firing times) from the front, so its work grows with
the number of users due, not with the number opted in. For each due user one Lua script, compare-and-set on the
index score, both moves the user to their next firing and enqueues the job in the platform's outbox stream. A
leader killed mid-tick leaves every user either fully handled or untouched; two leaders at once (a stalled one
whose lock lapsed) cannot both enqueue the same slot, and the per-slot SET NX in delivery catches anything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time as wallclock
import uuid
from dataclasses import dataclass
from typing import Any

from core.checkins import keys
from core.checkins.catalog import Catalog
from core.checkins.config import CheckinConfig
from core.checkins.schedule import CheckinSchedule, next_fire
from core.clock import Clock, SystemClock

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] due index, KEYS[2] outbox stream, KEYS[3] stats. ARGV: member, expected score, next score ("" = none),
# enqueue ("1"/"0"), slot, campaign, skip reason ("" = none).
# Compare-and-set: only the process that still sees the expected score moves the user on and enqueues the job.
_ADVANCE = """
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not current or tonumber(current) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
if ARGV[4] == '1' then
  redis.call('XADD', KEYS[2], '*', 'u', ARGV[1], 'slot', ARGV[5], 'c', ARGV[6])
  redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
end
if ARGV[7] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[7], 1) end
return 1
"""


class LeaderLock:
    """A Redis lock with a TTL: SET NX PX to take it, a compare-and-PEXPIRE to keep it, compare-and-DEL to leave."""

    def __init__(self, client: Any, ttl_seconds: float, *, key: str = keys.LEADER, token: str | None = None) -> None:
        self._redis = client
        self.key = key
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def hold(self) -> bool:
        """Take the lock or renew it; True while this process is the leader."""
        if await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            return True
        return bool(await self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.token])


@dataclass(frozen=True, slots=True)
class TickReport:
    leader: bool
    due_read: int = 0  # due-index members read this tick
    enqueued: int = 0
    skipped_missed: int = 0  # slots later than the grace period (downtime): skipped, not sent in a burst
    skipped_paused: int = 0
    removed: int = 0  # members whose schedule is gone or off (forgotten, opted out)
    conflicts: int = 0  # another process moved the user first
    seconds: float = 0.0


class CheckinScheduler:
    def __init__(self, client: Any, *, config: CheckinConfig | None = None, clock: Clock | None = None,
                 lock: LeaderLock | None = None) -> None:
        self._redis = client
        self.config = config or CheckinConfig()
        self.clock = clock or SystemClock()
        self.lock = lock or LeaderLock(client, self.config.lock_ttl_seconds)
        self.catalog = Catalog(client)
        self._advance = client.register_script(_ADVANCE)

    async def tick(self) -> TickReport:
        """One look at the due index, if this process is the leader."""
        started = wallclock.perf_counter()
        if not await self.lock.hold():
            return TickReport(leader=False)
        now = self.clock.now()
        campaigns = await self.catalog.campaign_slots()
        totals = {"due_read": 0, "enqueued": 0, "skipped_missed": 0, "skipped_paused": 0, "removed": 0,
                  "conflicts": 0}
        while totals["due_read"] < self.config.max_per_tick:
            due = await self._redis.zrangebyscore(keys.DUE, "-inf", now, start=0, num=self.config.batch_size,
                                                  withscores=True)
            if not due:
                break
            await self._advance_batch(due, now, campaigns, totals)
            if not await self.lock.hold():  # lost the lock mid-tick: stop; the new leader carries on
                log.warning("check-in scheduler lost leadership mid-tick")
                break
        seconds = wallclock.perf_counter() - started
        if totals["due_read"]:
            log.info("check-in tick due=%d enqueued=%d missed=%d removed=%d conflicts=%d seconds=%.3f",
                     totals["due_read"], totals["enqueued"], totals["skipped_missed"], totals["removed"],
                     totals["conflicts"], seconds)
        return TickReport(True, seconds=seconds, **totals)

    async def _advance_batch(self, due: list[tuple[str, float]], now: float, campaigns: list[Any],
                             totals: dict[str, int]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for member_name, _score in due:
                pipe.hgetall(keys.schedule_key(keys.user_of(member_name)))
            schedules = await pipe.execute()
        async with self._redis.pipeline(transaction=False) as pipe:
            kinds = []
            for (member_name, score), raw in zip(due, schedules, strict=True):
                user = keys.user_of(member_name)
                slot = int(score)
                args: list[Any]
                if not raw or raw.get("on") != "1":
                    args, kind = [member_name, slot, "", "0", slot, "", "removed_stale"], "removed"
                else:
                    schedule = CheckinSchedule.from_fields(raw)
                    firing = next_fire(schedule, slot - 1, campaigns)
                    campaign = firing.campaign if firing is not None and int(firing.at) == slot else ""
                    following = next_fire(schedule, max(float(slot), now), campaigns)
                    following_at = "" if following is None else str(int(following.at))
                    late = now - slot > self.config.grace_seconds
                    paused = slot < schedule.paused_until
                    send = not late and not paused
                    reason = "skipped_missed" if late else "skipped_paused" if paused else ""
                    args = [member_name, slot, following_at, "1" if send else "0", slot, campaign, reason]
                    kind = "enqueued" if send else reason
                await self._advance(keys=[keys.DUE, keys.outbox(user.platform), keys.STATS], args=args, client=pipe)
                kinds.append(kind)
            results = await pipe.execute()
        totals["due_read"] += len(due)
        for kind, moved in zip(kinds, results, strict=True):
            if moved:
                totals[kind] += 1
            else:
                totals["conflicts"] += 1

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Tick every `tick_seconds` with APScheduler until `stop` is set; a standby ticks too and takes over."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        stop = stop or asyncio.Event()
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(self._safe_tick, IntervalTrigger(seconds=self.config.tick_seconds), id="checkins-tick",
                          coalesce=True, max_instances=1, misfire_grace_time=int(self.config.tick_seconds * 2) or 1,
                          next_run_time=_utcnow())
        scheduler.start()
        log.info("check-in scheduler started tick_seconds=%s", self.config.tick_seconds)
        try:
            await stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self.lock.release()
            log.info("check-in scheduler stopped")

    async def _safe_tick(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.warning("check-in tick failed", exc_info=True)


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
