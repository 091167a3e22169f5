"""Fixtures for the coping tools: the real dialog manager with the tools on a real Redis, the rules-only safety
screen, a scripted model, a fake clock and a fake sleeper that moves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.dialog import DialogLimits, DialogManager
from core.safety import SafetyScreen
from core.store import RedisContextStore
from core.tools import CopingTools
from core.types import Reply, UserRef
from tests.fakes import FakeClock, ScriptedEngine

SAM = UserRef("console", "sam")
CRISIS_MESSAGE = "i want to kill myself tonight"


class FakeSleeper:
    """Sleeps by moving the fake clock; can hold still after a number of sleeps until the test releases it."""

    def __init__(self, clock: FakeClock, *, hold_after: int | None = None) -> None:
        self.clock = clock
        self.slept: list[float] = []
        self.hold_after = hold_after
        self.release = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        if self.hold_after is not None and len(self.slept) >= self.hold_after:
            await self.release.wait()
        self.slept.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


class Outbox:
    """What an adapter's `send` delivered, with the fake clock's time of each message."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, Reply]] = []

    async def __call__(self, reply: Reply) -> None:
        self.sent.append((self.clock.now(), reply))

    @property
    def texts(self) -> list[str]:
        return [reply.text for _, reply in self.sent]


@pytest.fixture(scope="session")
def screen() -> SafetyScreen:
    return SafetyScreen(semantic=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeper(clock: FakeClock) -> FakeSleeper:
    return FakeSleeper(clock)


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(lambda messages: f"I hear you about {messages[-1]['content']}")


@pytest.fixture
async def tools(redis_client, store: RedisContextStore, clock: FakeClock, sleeper: FakeSleeper
                ) -> AsyncIterator[CopingTools]:
    tools = CopingTools(redis_client, store, clock=clock, sleep=sleeper)
    yield tools
    await tools.close()


@pytest.fixture
def manager(store: RedisContextStore, engine: ScriptedEngine, screen: SafetyScreen, clock: FakeClock,
            tools: CopingTools) -> DialogManager:
    return DialogManager(store, engine, screen, limits=DialogLimits(default_country="GB"), clock=clock, tools=tools)


async def user_keys(redis_client, user: UserRef = SAM) -> list[str]:
    prefix = f"haven:{{{user.platform}:{user.user_id}}}:"
    return sorted([k.removeprefix(prefix) async for k in redis_client.scan_iter(match=prefix + "*")])
