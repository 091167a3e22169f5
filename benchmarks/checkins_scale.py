"""Check-ins at scale: 10k vs 100k opted-in users side by side, on a real Redis.

Run: python benchmarks/checkins_scale.py [--sizes 10000 100000] [--due 0 500 5000] [--deliveries 250]

1. Memory: Redis used_memory per opted-in user for the check-in schedule hash + its due-index member, and with
   a typical profile hash (consent, country, last_seen) added. Target ≤ 1 KB.
2. Work per tick: the leader's tick with the same number due at both sizes (Redis commands and wall time).
   It should follow the number due, not the number opted in.
3. Delivery rate: two workers on the real clock against a fake platform that answers 429 above 30/s overall or
   1/s per chat; the shared limit is 25/s. Prints the achieved rate and the number of 429s.

Users are written with the same fields `CheckinService.opt_in` writes, in pipelines (opting in 100k users one
by one would time the set-up, not the scheduler). Uses HAVEN_BENCH_REDIS_URL if set, else a private embedded
Redis. Never prints user ids.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from core.checkins import CheckinConfig, CheckinDelivery, CheckinSchedule, CheckinScheduler, DeliveryResult, keys
from core.checkins.schedule import next_fire
from core.store import EmbeddedRedis, connect_redis, user_prefix
from core.types import Button, UserRef

ZONES = ["Europe/London", "America/New_York", "Asia/Kolkata", "America/Sao_Paulo", "Australia/Sydney"]
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC).timestamp()


class FixedClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def users(count: int) -> list[UserRef]:
    return [UserRef("telegram", str(7_000_000_000 + i)) for i in range(count)]


async def populate(client: Any, count: int, due_now: int, *, profiles: bool) -> None:
    """`due_now` users are due at T0; everyone else fires later that day, at their own local times."""
    batch = 2000
    everyone = users(count)
    for start in range(0, count, batch):
        async with client.pipeline(transaction=False) as pipe:
            for i, user in enumerate(everyone[start:start + batch], start):
                zone = ZONES[i % len(ZONES)]
                schedule = CheckinSchedule(timezone=zone, times=(dtime(9, 0), dtime(21, 30)),
                                           quiet=None, skip_if_chatted_hours=3)
                fields = schedule.to_fields() | {"on": "1", "opted_in_at": f"{T0 - 86400:.0f}",
                                                  "last_chat_at": f"{T0 - 7200:.0f}", "rot": "3"}
                pipe.hset(keys.schedule_key(user), mapping=fields)
                if i < due_now:
                    score = T0
                else:
                    firing = next_fire(schedule, T0 + 60)
                    score = firing.at if firing else T0 + 86400
                pipe.zadd(keys.DUE, {keys.member(user): int(score)})
                if profiles:
                    pipe.hset(user_prefix(user) + "profile", mapping={
                        "consent": "yes", "country": "GB", "last_seen": f"{T0 - 7200:.0f}"})
            await pipe.execute()


async def used_memory(client: Any) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def commands_processed(client: Any) -> int:
    return int((await client.info("stats"))["total_commands_processed"])


async def measure_memory(client: Any, count: int) -> tuple[float, float]:
    await client.flushdb()
    before = await used_memory(client)
    await populate(client, count, 0, profiles=False)
    schedule_only = (await used_memory(client) - before) / count
    await client.flushdb()
    before = await used_memory(client)
    await populate(client, count, 0, profiles=True)
    with_profile = (await used_memory(client) - before) / count
    return schedule_only, with_profile


async def measure_tick(client: Any, count: int, due: int) -> tuple[int, float, int]:
    await client.flushdb()
    await populate(client, count, due, profiles=True)
    scheduler = CheckinScheduler(client, config=CheckinConfig(), clock=FixedClock(T0))
    await scheduler.lock.hold()  # leader already
    before = await commands_processed(client)
    started = time.perf_counter()
    report = await scheduler.tick()
    seconds = time.perf_counter() - started
    commands = await commands_processed(client) - before - 1  # minus the INFO call itself
    assert report.enqueued == due, report
    return commands, seconds, report.due_read


class RatedPlatform:
    """Answers like Telegram: 429 (retry_after) above 30 messages in any second, or 1 per second per chat."""

    def __init__(self) -> None:
        self.window: deque[float] = deque()
        self.last_by_chat: dict[UserRef, float] = {}
        self.sent: list[float] = []
        self.too_many = 0

    async def send_checkin(self, user: UserRef, text: str, buttons: tuple[Button, ...]) -> DeliveryResult:
        now = time.monotonic()
        await asyncio.sleep(0.005)  # a platform round trip
        while self.window and now - self.window[0] >= 1.0:
            self.window.popleft()
        if len(self.window) >= 30 or now - self.last_by_chat.get(user, -10.0) < 1.0:
            self.too_many += 1
            return DeliveryResult.retry_after(1.0)
        self.window.append(now)
        self.last_by_chat[user] = now
        self.sent.append(now)
        return DeliveryResult.delivered()


async def measure_delivery(client: Any, count: int, rate: float) -> tuple[float, int, int]:
    from core.clock import SystemClock

    await client.flushdb()
    clock = SystemClock()
    config = replace(CheckinConfig(), rate_per_second=rate, rate_burst=1.0, per_chat_interval_seconds=1.0)
    everyone = users(count)
    async with client.pipeline(transaction=False) as pipe:
        for user in everyone:
            pipe.hset(keys.schedule_key(user), mapping=CheckinSchedule().to_fields() | {"on": "1", "skip_h": "0"})
            pipe.zadd(keys.DUE, {keys.member(user): int(clock.now()) - 1})
        await pipe.execute()
    await CheckinScheduler(client, config=config, clock=clock).tick()
    platform = RatedPlatform()
    workers = [CheckinDelivery(client, "telegram", platform, config=config, clock=clock, consumer=f"w{i}")
               for i in range(2)]
    await asyncio.gather(*(w.drain() for w in workers))
    span = platform.sent[-1] - platform.sent[0]
    return (len(platform.sent) - 1) / span, platform.too_many, len(platform.sent)


async def main_async(args: argparse.Namespace) -> None:
    url = os.environ.get("HAVEN_BENCH_REDIS_URL")
    embedded = None
    if url:
        client = connect_redis(url)
    else:
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="haven-bench-")))
        client = connect_redis(unix_socket_path=await asyncio.to_thread(embedded.start))
    try:
        print("## Redis memory per opted-in user (used_memory delta / users)")
        print(f"{'users':>8} | {'schedule + index':>16} | {'+ profile hash':>14}")
        for size in args.sizes:
            schedule_only, with_profile = await measure_memory(client, size)
            print(f"{size:>8} | {schedule_only:>12.0f} B   | {with_profile:>10.0f} B")

        print("\n## Leader tick: same number due, different number opted in")
        print(f"{'users':>8} | {'due':>6} | {'Redis commands':>14} | {'commands/due':>12} | {'wall ms':>8}")
        results: dict[tuple[int, int], tuple[int, float]] = {}
        for due in args.due:
            for size in args.sizes:
                commands, seconds, _ = await measure_tick(client, size, due)
                results[(size, due)] = (commands, seconds)
                per_due = f"{commands / due:.2f}" if due else "-"
                print(f"{size:>8} | {due:>6} | {commands:>14} | {per_due:>12} | {seconds * 1000:>8.1f}")
        if len(args.sizes) == 2:
            small, large = args.sizes
            for due in args.due:
                c_small, s_small = results[(small, due)]
                c_large, s_large = results[(large, due)]
                print(f"due={due}: {large // small}x the users → {c_large / c_small:.2f}x the commands, "
                      f"{s_large / s_small:.2f}x the wall time")

        print(f"\n## Delivery rate: 2 workers, shared limit {args.rate:g}/s, platform 429s above 30/s or 1/s/chat")
        achieved, too_many, sent = await measure_delivery(client, args.deliveries, args.rate)
        print(f"sent {sent} | achieved {achieved:.1f}/s | 429s from the platform: {too_many}")
    finally:
        await client.flushdb()
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--due", type=int, nargs="+", default=[0, 500, 5000])
    parser.add_argument("--deliveries", type=int, default=250)
    parser.add_argument("--rate", type=float, default=25.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
