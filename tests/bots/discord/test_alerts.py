"""Crisis alerts on Discord: the real client on dpytest's offline Discord, a real DialogManager on a real Redis. A
person's crisis DM makes Haven DM the Discord admin once, with the hashed reference and none of their words; a
failing alert DM leaves the person's crisis reply; with alerts off the admin is never written to."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import discord
import discord.ext.test as dpytest
import pytest

from bots.discord import HavenDiscord
from core.dialog import DialogManager
from core.safety import SafetyScreen, crisis_reply
from core.safety.alerts import CrisisAlertOutbox
from core.store import RedisContextStore
from core.types import UserRef
from tests.bots.discord.harness import Wire, forbidden, open_dm, start_offline_bot
from tests.fakes import FakeClock, ScriptedEngine

DISTINCTIVE = "marmalade-zebra-4417"
CRISIS_WORDS = f"I want to kill myself tonight, {DISTINCTIVE}"


async def wait_for(predicate: Callable[[], Any], limit_seconds: float = 10.0) -> Any:
    for _ in range(int(limit_seconds / 0.02)):
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


@pytest.fixture
async def alerting(store: RedisContextStore, redis_client, request: pytest.FixtureRequest,
                   monkeypatch: pytest.MonkeyPatch,
                   ) -> AsyncIterator[tuple[HavenDiscord, Wire, discord.Member, discord.Member]]:
    """Haven with member 1 as its Discord admin, logged in. Parameter: "on" (default: alerts on, READY received),
    "not ready" (alerts on, READY not yet received: the test fires it) or "off" (HAVEN_CRISIS_ALERTS unset)."""
    mode = getattr(request, "param", "on")

    async def gateway_closed(self: discord.Client) -> None:
        return None  # dpytest's fake gateway cannot be closed; HavenDiscord.close's own part still runs

    monkeypatch.setattr(discord.Client, "close", gateway_closed)
    outbox = None if mode == "off" else CrisisAlertOutbox()
    manager = DialogManager(store, ScriptedEngine(), SafetyScreen(semantic=False), clock=FakeClock(),
                            crisis_alert=outbox)
    bot, wire = await start_offline_bot(manager, redis=redis_client)
    person, admin = dpytest.get_config().members[:2]
    bot.admins = frozenset({("discord", str(admin.id))})  # what HAVEN_ADMIN_IDS=discord:<id> gives build_bot
    await bot.setup_hook()  # what login() runs: starts the alert delivery, which waits for READY
    if mode != "not ready":
        gateway_ready(bot)
    yield bot, wire, person, admin
    await bot.close()
    await dpytest.empty_queue()


def gateway_ready(bot: HavenDiscord) -> None:
    bot._handle_ready()  # what discord.py runs on the gateway's READY (dpytest never sends one)


async def dm_texts(wire: Wire, member: discord.Member) -> list[str]:
    return wire.final_texts((await open_dm(member)).id)


async def test_a_crisis_dm_alerts_the_discord_admin_once_without_the_words(alerting) -> None:
    bot, wire, person, admin = alerting
    assert bot.crisis_alerts is not None
    dm = await open_dm(person)
    for _ in range(2):  # two messages in a row: one alert
        await dpytest.message(CRISIS_WORDS, channel=dm, member=person)

    admin_dm = await open_dm(admin)
    [alert] = await wait_for(lambda: wire.final_texts(admin_dm.id))
    assert wire.final_texts(dm.id) == [crisis_reply(None)] * 2
    assert alert.startswith("Haven admin alert: a crisis reply was sent.") and "Platform: Discord" in alert
    assert UserRef("discord", str(person.id)).log_id in alert
    assert DISTINCTIVE not in alert and "kill" not in alert
    assert person.name not in alert and str(person.id) not in alert
    assert wire.in_channel(admin_dm.id)[0].payload["allowed_mentions"]["parse"] == []  # pings nobody
    await bot.close()  # stopping sends nothing more
    assert len(wire.in_channel(admin_dm.id)) == 1


@pytest.mark.parametrize("alerting", ["not ready"], indirect=True)
async def test_a_closed_admin_dm_is_logged_by_type_and_the_person_still_has_the_crisis_reply(
        alerting, caplog: pytest.LogCaptureFixture) -> None:
    bot, wire, person, admin = alerting
    caplog.set_level(logging.INFO, logger="core.safety.alerts")
    dm = await open_dm(person)
    await dpytest.message(CRISIS_WORDS, channel=dm, member=person)
    await wait_for(lambda: wire.final_texts(dm.id) == [crisis_reply(None)])  # the alert waits for READY

    wire.fail_next("send", forbidden)  # the admin closed their DMs: the next send, the alert, gets 403
    gateway_ready(bot)
    await wait_for(lambda: "crisis alert not sent" in caplog.text)
    await bot.close()

    assert "error=Forbidden" in caplog.text and "crisis alert sent" not in caplog.text
    assert DISTINCTIVE not in caplog.text and "Cannot send messages" not in caplog.text
    assert str(admin.id) not in caplog.text
    assert await dm_texts(wire, admin) == []  # tried once, not again
    assert wire.final_texts(dm.id) == [crisis_reply(None)]


@pytest.mark.parametrize("alerting", ["off"], indirect=True)
async def test_with_alerts_off_the_admin_is_never_written_to(alerting) -> None:
    bot, wire, person, admin = alerting
    assert bot.crisis_alerts is None
    await dpytest.message(CRISIS_WORDS, channel=await open_dm(person), member=person)
    await asyncio.sleep(0)
    assert await dm_texts(wire, admin) == []
