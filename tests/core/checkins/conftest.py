"""Check-in fixtures: the real Redis from tests/conftest.py, a fake clock, a fake platform at the network edge."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from core.checkins import (
    CheckinConfig,
    CheckinDelivery,
    CheckinScheduler,
    CheckinService,
    DeliveryResult,
    LeaderLock,
)
from core.safety import SafetyScreen
from core.store import RedisContextStore, connect_redis
from core.types import Button, UserRef
from tests.fakes import FakeClock

# Fast knobs for tests: no real rate limit unless a test asks for one, a short lock TTL for failover.
TEST_CONFIG = CheckinConfig(tick_seconds=60, lock_ttl_seconds=0.5, grace_seconds=30 * 60,
                            rate_per_second=1_000_000, rate_burst=1_000_000, per_chat_interval_seconds=0,
                            batch_size=200)


def at(zone: str, text: str) -> float:
    """Unix time of a local wall-clock moment, e.g. at("Europe/London", "2026-03-29 09:00")."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone)).timestamp()


def local(zone: str, ts: float) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


class FakePlatform:
    """Records every check-in as a platform would; can refuse blocked users or enforce a rate like Telegram's."""

    def __init__(self, clock: FakeClock, *, blocked: Iterable[UserRef] = (), limit_per_second: int | None = None,
                 per_chat_interval: float | None = None) -> None:
        self.clock = clock
        self.blocked = set(blocked)
        self.sent: list[tuple[UserRef, float, str]] = []  # user, clock time, text
        self.limit_per_second = limit_per_second
        self.per_chat_interval = per_chat_interval
        self.too_many = 0
        self._window: deque[float] = deque()
        self._last_by_chat: dict[UserRef, float] = {}
        self.crash_after: int | None = None  # simulate the worker process dying right after the platform sent

    async def send_checkin(self, user: UserRef, text: str, buttons: tuple[Button, ...]) -> DeliveryResult:
        assert buttons and all(b.action.startswith("mood:") for b in buttons)
        if user in self.blocked:
            return DeliveryResult.blocked()
        now = self.clock.now()
        if self.limit_per_second is not None:
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.limit_per_second:
                self.too_many += 1
                return DeliveryResult.retry_after(1.0)
            self._window.append(now)
        if self.per_chat_interval is not None:
            last = self._last_by_chat.get(user)
            if last is not None and now - last < self.per_chat_interval:
                self.too_many += 1
                return DeliveryResult.retry_after(1.0)
            self._last_by_chat[user] = now
        self.sent.append((user, now, text))
        if self.crash_after is not None and len(self.sent) >= self.crash_after:
            self.crash_after = None
            raise asyncio.CancelledError  # the process dies after the platform accepted the message
        return DeliveryResult.delivered()

    def counts(self) -> Counter[UserRef]:
        return Counter(user for user, _, _ in self.sent)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at("UTC", "2026-06-01 00:00"))


@pytest.fixture
def screen() -> SafetyScreen:
    return SafetyScreen(semantic=False)


@pytest.fixture
def service(redis_client: aioredis.Redis, store: RedisContextStore, screen: SafetyScreen,
            clock: FakeClock) -> CheckinService:
    return CheckinService(redis_client, store, screen, clock=clock, default_country="GB")


@pytest.fixture
def platform(clock: FakeClock) -> FakePlatform:
    return FakePlatform(clock)


@pytest.fixture
async def second_client(redis_server: dict[str, str], redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """Another connection to the same database, standing in for a second process."""
    client = connect_redis(redis_server.get("url"), unix_socket_path=redis_server.get("unix_socket_path"))
    yield client
    await client.aclose()


def make_scheduler(client: aioredis.Redis, clock: FakeClock, name: str, config: CheckinConfig = TEST_CONFIG
                   ) -> CheckinScheduler:
    return CheckinScheduler(client, config=config, clock=clock,
                            lock=LeaderLock(client, config.lock_ttl_seconds, token=name))


def make_worker(client: aioredis.Redis, clock: FakeClock, platform: FakePlatform, name: str,
                config: CheckinConfig = TEST_CONFIG) -> CheckinDelivery:
    async def fake_sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return CheckinDelivery(client, "telegram", platform, config=config, clock=clock, sleep=fake_sleep, consumer=name)


async def run_clock(clock: FakeClock, schedulers: list[CheckinScheduler], workers: list[CheckinDelivery], *,
                    until: float, step: float = 300.0) -> None:
    """Move the fake clock forward, ticking every scheduler and draining every worker at each step."""
    while clock.now() <= until:
        await asyncio.gather(*(s.tick() for s in schedulers))
        await asyncio.gather(*(w.drain() for w in workers))
        clock.advance(step)
