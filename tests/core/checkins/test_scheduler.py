"""The scheduler and delivery together, on a real Redis with a fake clock: never twice, never lost."""

from __future__ import annotations

import asyncio
import contextlib
import time as wallclock
from collections import Counter
from dataclasses import replace

import redis.asyncio as aioredis

from core.checkins import CheckinScheduler, CheckinService, LeaderLock, keys
from core.checkins.schedule import CheckinSchedule, next_fire
from core.clock import SystemClock
from core.types import UserRef
from tests.core.checkins.conftest import (
    TEST_CONFIG,
    at,
    local,
    make_scheduler,
    make_worker,
    run_clock,
)
from tests.fakes import FakeClock


class DyingLock(LeaderLock):
    """The leader's process is killed on its n-th lock renewal, i.e. after n-1 batches of one tick."""

    def __init__(self, *args: object, die_on_call: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls, self.die_on_call = 0, die_on_call

    async def hold(self) -> bool:
        self.calls += 1
        if self.calls == self.die_on_call:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
        return await super().hold()


ZONES = ["Europe/London", "America/Sao_Paulo", "Asia/Kolkata", "America/New_York"]


async def opt_in_many(service: CheckinService, count: int, times: str, zones: list[str]) -> list[UserRef]:
    users = [UserRef("telegram", str(1000 + i)) for i in range(count)]
    for start in range(0, count, 100):
        await asyncio.gather(*(service.opt_in(u, times=times, timezone=zones[int(u.user_id) % len(zones)],
                                              skip_if_chatted_hours=0) for u in users[start:start + 100]))
    return users


async def slot_states(client: aioredis.Redis, user: UserRef, slots: set[int]) -> set[str | None]:
    return {await client.get(keys.sent_key(user, slot)) for slot in slots}


def expected_slots(user: UserRef, times: str, start: float, end: float) -> set[int]:
    from core.checkins.schedule import parse_times

    schedule = CheckinSchedule(timezone=ZONES[int(user.user_id) % len(ZONES)], times=parse_times(times))
    out, after = set(), start
    while (firing := next_fire(schedule, after)) is not None and firing.at <= end:
        out.add(int(firing.at))
        after = firing.at
    return out


async def test_two_schedulers_1000_users_three_slots_each_fire_exactly_once(
        service, redis_client, second_client, clock, platform):
    times = "08:00,13:00,19:00"
    start = clock.now()
    users = await opt_in_many(service, 1000, times, ZONES)
    # Two processes (own connections) tick side by side; both also deliver.
    schedulers = [make_scheduler(redis_client, clock, "a"), make_scheduler(second_client, clock, "b")]
    workers = [make_worker(redis_client, clock, platform, "w1"), make_worker(second_client, clock, platform, "w2")]
    end = start + 24 * 3600 - 1
    await run_clock(clock, schedulers, workers, until=start + 12 * 3600, step=600)
    # Half-way, the leader's lock is handed over (a restart): the other process carries on.
    await schedulers[0].lock.release()
    await run_clock(clock, schedulers, workers, until=end, step=600)

    counts = platform.counts()
    assert len(platform.sent) == 3000
    assert set(counts.values()) == {3} and len(counts) == 1000  # zero duplicates, zero misses
    for user in users[:50]:  # at the user's own local times
        assert len(expected_slots(user, times, start, end)) == 3
        assert await slot_states(redis_client, user, expected_slots(user, times, start, end)) == {"delivered"}
    stats = await service.catalog.stats()
    assert stats["delivered"] == 3000 and stats["enqueued"] == 3000


async def test_two_leaders_at_once_still_send_each_slot_once(service, redis_client, second_client, clock, platform):
    """A stalled leader whose lock lapsed and the new one both act: the compare-and-set and SET NX hold."""
    users = await opt_in_many(service, 300, "09:00", ["UTC"])
    clock.t = at("UTC", "2026-06-01 09:00")
    config = replace(TEST_CONFIG, batch_size=25)
    both = [make_scheduler(redis_client, clock, "same-token", config),
            make_scheduler(second_client, clock, "same-token", config)]
    reports = await asyncio.gather(*(s.tick() for s in both))
    assert all(r.leader for r in reports)
    assert sum(r.enqueued for r in reports) == 300
    workers = [make_worker(redis_client, clock, platform, "w1"), make_worker(second_client, clock, platform, "w2")]
    await asyncio.gather(*(w.drain() for w in workers))
    assert Counter(platform.counts().values()) == {1: 300}
    assert set(platform.counts()) == set(users)


async def test_scheduler_killed_mid_slot_and_restarted_loses_and_duplicates_nothing(
        service, redis_client, second_client, clock, platform):
    users = await opt_in_many(service, 1000, "09:00", ["UTC"])
    clock.t = at("UTC", "2026-06-01 09:00")
    config = replace(TEST_CONFIG, batch_size=20)
    first = make_scheduler(redis_client, clock, "first", config)
    first.lock = DyingLock(redis_client, config.lock_ttl_seconds, token="first", die_on_call=20)
    tick = asyncio.create_task(first.tick())
    with contextlib.suppress(asyncio.CancelledError):
        await tick
    assert tick.cancelled()  # killed part-way through the slot: no lock release, no clean-up
    left = await second_client.zcount(keys.DUE, "-inf", clock.now())
    assert 0 < left < 1000

    restarted = make_scheduler(second_client, clock, "restarted", config)
    assert not (await restarted.tick()).leader  # the dead leader's lock has not lapsed yet
    await asyncio.sleep(config.lock_ttl_seconds + 0.1)
    clock.advance(60)
    report = await restarted.tick()
    assert report.leader and report.enqueued == left
    assert await second_client.xlen(keys.outbox("telegram")) == 1000

    # A delivery worker dies too, right after the platform accepted a message and before it noted that.
    platform.crash_after = 137
    crashed = make_worker(redis_client, clock, platform, "crashed")
    with contextlib.suppress(asyncio.CancelledError):
        await crashed.drain()
    survivor = make_worker(second_client, clock, platform, "survivor")
    await survivor.reclaim(min_idle_seconds=0)
    await survivor.drain()
    assert Counter(platform.counts().values()) == {1: 1000}
    assert set(platform.counts()) == set(users)
    assert await second_client.xlen(keys.outbox("telegram")) == 0
    assert (await service.catalog.stats())["uncertain"] == 1  # the one in flight: not sent again


async def test_after_downtime_late_slots_are_skipped_not_sent_in_a_burst(service, redis_client, clock, platform):
    users = await opt_in_many(service, 20, "09:00", ["UTC"])
    scheduler, worker = make_scheduler(redis_client, clock, "a"), make_worker(redis_client, clock, platform, "w")
    clock.t = at("UTC", "2026-06-01 10:00")  # down from before 09:00 until 10:00; grace is 30 minutes
    report = await scheduler.tick()
    assert report.skipped_missed == 20 and report.enqueued == 0
    await worker.drain()
    assert platform.sent == []
    clock.t = at("UTC", "2026-06-02 09:20")  # late, but within grace: sent once
    assert (await scheduler.tick()).enqueued == 20
    await worker.drain()
    assert set(platform.counts()) == set(users) and len(platform.sent) == 20
    assert [local("UTC", score) for _, score in await redis_client.zrange(keys.DUE, 0, 0, withscores=True)] == [
        "2026-06-03 09:00"]


async def test_tick_work_follows_the_number_due_not_the_number_opted_in(service, redis_client, clock):
    await opt_in_many(service, 300, "09:00", ["UTC"])
    for i in range(7):
        await service.opt_in(UserRef("discord", f"d{i}"), times="08:00", timezone="UTC")
    scheduler = make_scheduler(redis_client, clock, "a")
    clock.t = at("UTC", "2026-06-01 08:00")
    report = await scheduler.tick()
    assert report.due_read == 7 and report.enqueued == 7
    assert (await scheduler.tick()).due_read == 0
    assert await redis_client.xlen(keys.outbox("discord")) == 7
    assert not await redis_client.exists(keys.outbox("telegram"))


async def test_standby_takes_over_when_the_leader_stops_renewing(redis_client, second_client, clock):
    leader, standby = make_scheduler(redis_client, clock, "leader"), make_scheduler(second_client, clock, "standby")
    assert (await leader.tick()).leader
    assert not (await standby.tick()).leader
    await asyncio.sleep(TEST_CONFIG.lock_ttl_seconds + 0.1)  # the leader died without letting go
    assert (await standby.tick()).leader
    assert not (await leader.tick()).leader


async def test_apscheduler_runs_the_tick_and_only_one_of_two_processes_leads(service, redis_client, second_client):
    real = SystemClock()
    live = CheckinService(redis_client, None, service.screen, clock=real)
    users = [UserRef("telegram", f"live{i}") for i in range(30)]
    for user in users:
        await live.opt_in(user, times="03:00", timezone="UTC")
        await redis_client.zadd(keys.DUE, {keys.member(user): int(real.now()) - 5})  # due a moment ago
    config = replace(TEST_CONFIG, tick_seconds=0.2, lock_ttl_seconds=2.0)
    stop = asyncio.Event()
    runs = [asyncio.create_task(CheckinScheduler(c, config=config, clock=real).run(stop))
            for c in (redis_client, second_client)]
    deadline = wallclock.monotonic() + 5
    while await redis_client.xlen(keys.outbox("telegram")) < 30 and wallclock.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # polling another process's effect in Redis; there is no event to wait on
    await asyncio.sleep(0.5)  # several more ticks from both processes
    leader = await redis_client.get(keys.LEADER)
    stop.set()
    await asyncio.gather(*runs)
    assert leader is not None
    entries = await redis_client.xrange(keys.outbox("telegram"))
    assert sorted(fields["u"] for _, fields in entries) == sorted(keys.member(u) for u in users)
    assert await redis_client.get(keys.LEADER) is None  # released on a clean stop


async def test_fake_clock_is_what_the_scheduler_reads(redis_client):
    clock = FakeClock(at("UTC", "2026-01-01 00:00"))
    assert make_scheduler(redis_client, clock, "x").clock.now() == clock.now()
