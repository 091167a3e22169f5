"""Fixtures for the Discord adapter tests: the real dialog manager on a real Redis, a scripted model, and the
real discord.py client on dpytest's offline Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord.ext.test as dpytest
import pytest

from bots.discord import HavenDiscord, render
from core.dialog import DialogManager
from core.safety import SafetyScreen
from core.store import RedisContextStore
from tests.bots.discord.harness import Wire, start_offline_bot
from tests.fakes import FakeClock, ScriptedEngine


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "RETRY_DELAYS_SECONDS", (0.0, 0.0))


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def manager(store: RedisContextStore, engine: ScriptedEngine) -> DialogManager:
    return DialogManager(store, engine, SafetyScreen(semantic=False), clock=FakeClock())


@pytest.fixture
async def offline(manager: DialogManager) -> AsyncIterator[tuple[HavenDiscord, Wire]]:
    bot, wire = await start_offline_bot(manager)
    yield bot, wire
    await dpytest.empty_queue()
