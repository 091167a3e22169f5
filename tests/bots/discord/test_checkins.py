"""Check-ins and moods on Discord: the real command tree, views and CheckinService on a real Redis, with a fake
Interaction at the network edge and dpytest's offline Discord for DMs. /checkin with a city, status, pause and
off; /mood's chart as an attached PNG; the persistent 1–5 buttons; a low mood's follow-up and exercise offer;
a scheduled check-in sent to a DM by the DiscordNotifier, and a user whose DMs are closed switched off."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import discord
import discord.ext.test as dpytest
import pytest

from bots.checkin_commands import checkin_line
from bots.discord import HavenDiscord
from bots.discord.checkins import DiscordNotifier
from core.checkins import CheckinConfig, CheckinDelivery, CheckinService, checkin_buttons, keys
from core.checkins.texts import line
from core.dialog import DialogManager
from core.safety import SafetyScreen
from core.tools import suggest_exercise
from core.types import UserRef
from tests.bots.discord.harness import FakeInteraction, Wire, click, forbidden, open_dm, run_command, start_offline_bot
from tests.fakes import FakeClock, ScriptedEngine


def member(index: int = 0) -> discord.Member:
    return dpytest.get_config().members[index]


def ref(who: discord.abc.User) -> UserRef:
    return UserRef("discord", str(who.id))


def custom_ids(view: discord.ui.View | None) -> list[str]:
    assert view is not None
    return [item.custom_id for item in view.children]  # type: ignore[attr-defined]


@pytest.fixture
async def checkin_bot(store, redis_client) -> AsyncIterator[tuple[HavenDiscord, Wire, CheckinService]]:
    clock = FakeClock()
    screen = SafetyScreen(semantic=False)
    service = CheckinService(redis_client, store, screen, clock=clock, default_country="GB")
    manager = DialogManager(store, ScriptedEngine(), screen, clock=clock, checkins=service)
    bot, wire = await start_offline_bot(manager, checkins=service, redis=redis_client)
    bot.admins = frozenset({("discord", str(dpytest.get_config().members[1].id))})
    yield bot, wire, service
    await dpytest.empty_queue()


async def test_checkin_on_with_a_city_status_pause_and_off(checkin_bot) -> None:
    bot, _, service = checkin_bot
    dm = FakeInteraction(member())
    await run_command(bot, "checkin", dm, setting="on 8:30 mon,wed,fri Sao Paulo")
    assert dm.answers[0].how == "defer" and not dm.answers[0].ephemeral
    assert dm.last_text.startswith("You're in. I'll check in at 08:30")  # type: ignore[union-attr]
    assert "America/Sao_Paulo time" in dm.last_text  # type: ignore[operator]
    status = FakeInteraction(member())
    await run_command(bot, "checkin", status)
    assert status.last_text.startswith("Check-ins: 08:30")  # type: ignore[union-attr]
    assert custom_ids(status.answers[-1].view) == ["haven:checkin:pause:7", "haven:checkin:stop"]
    pressed = FakeInteraction(member())
    await click(status.answers[-1].view, "haven:checkin:pause:7", pressed)  # type: ignore[arg-type]
    assert pressed.answers[0].how == "edit_message" and pressed.answers[0].view is None
    assert pressed.last_text.startswith("Paused.")  # type: ignore[union-attr]
    bad = FakeInteraction(member())
    await run_command(bot, "checkin", bad, setting="pause lots")
    assert bad.last_text == checkin_line("pause_usage")
    off = FakeInteraction(member())
    await run_command(bot, "checkin", off, setting="off")
    assert off.last_text == line("opted_out")
    assert not (await service.status(ref(member()))).opted_in
    public = FakeInteraction(member(), guild_id=dpytest.get_config().guilds[0].id)
    await run_command(bot, "checkin", public)
    assert all(a.ephemeral for a in public.answers) and public.last_text == line("not_opted_in")


async def test_mood_chart_persistent_buttons_and_a_low_mood_follow_up(checkin_bot) -> None:
    bot, _, service = checkin_bot
    await bot.setup_hook()  # sync_commands is off: nothing goes to Discord
    persistent = {item.custom_id for view in bot.persistent_views for item in view.children}  # type: ignore[attr-defined]
    assert {f"haven:mood:{n}" for n in range(1, 6)} <= persistent and "haven:checkin:talk" in persistent
    shown = FakeInteraction(member())
    await run_command(bot, "mood", shown)
    chart = next(a for a in shown.answers if a.file is not None)
    assert chart.file[0] == "mood.png" and chart.file[1].startswith(b"\x89PNG")  # type: ignore[index]
    assert chart.content.startswith(line("summary_empty_1"))  # type: ignore[union-attr]
    assert shown.last_text == checkin_line("mood_ask")
    assert custom_ids(shown.answers[-1].view) == [f"haven:{b.action}" for b in checkin_buttons()]
    # A press on the persistent 1–5 view (as after a restart): "2 · low".
    mood_view = next(v for v in bot.persistent_views if "haven:mood:2" in custom_ids(v))
    pressed = FakeInteraction(member())
    await click(mood_view, "haven:mood:2", pressed)
    texts = [a.content for a in pressed.answers if a.how == "followup"]
    offer = suggest_exercise(low_mood=True)
    assert line("low_follow_up") in texts[0] and texts[1] == offer.text
    assert custom_ids(pressed.answers[-1].view) == [f"haven:{b.action}" for b in offer.buttons]
    typed = FakeInteraction(member())
    await run_command(bot, "mood", typed, entry="4 calm, hopeful - a good walk")
    assert typed.last_text.startswith("Thank you for telling me. I've noted good. (calm, hopeful)")  # type: ignore[union-attr]
    wrong = FakeInteraction(member())
    await run_command(bot, "mood", wrong, entry="fine")
    assert wrong.last_text == checkin_line("mood_usage")
    assert sorted(e.score for e in await service.mood_entries(ref(member()))) == [2, 4]


async def test_admin_command_is_for_admins_only(checkin_bot) -> None:
    bot, _, _ = checkin_bot
    await run_command(bot, "mood", FakeInteraction(member()), entry="3 - just between us")
    stranger, admin = FakeInteraction(member(0)), FakeInteraction(member(1))
    await run_command(bot, "checkins_admin", stranger, command="stats")
    await run_command(bot, "checkins_admin", admin, command="stats")
    assert stranger.last_text == line("admin_only") and stranger.answers[-1].ephemeral
    assert "moods_mood: 1" in admin.last_text and "between us" not in admin.last_text  # type: ignore[operator]


async def test_scheduled_checkin_reaches_the_dm_and_a_closed_dm_switches_off(checkin_bot, redis_client) -> None:
    bot, wire, service = checkin_bot
    reader, closed = member(0), member(1)
    for who in (closed, reader):
        await service.opt_in(ref(who), times="09:00", timezone="London", skip_if_chatted_hours=0)
    slot = int(time.time())
    for who in (closed, reader):
        await redis_client.xadd(keys.outbox("discord"), {"u": keys.member(ref(who)), "slot": str(slot), "c": ""})
    wire.fail_next("send", forbidden)
    config = CheckinConfig(rate_per_second=1000, rate_burst=1000, per_chat_interval_seconds=0)
    delivery = CheckinDelivery(redis_client, "discord", DiscordNotifier(bot), config=config)
    assert await delivery.drain() == 2
    dm = await open_dm(reader)
    sent = wire.in_channel(dm.id)
    assert len(sent) == 1 and sent[0].custom_ids == [f"haven:{b.action}" for b in checkin_buttons()]
    assert (await service.status(ref(reader))).opted_in
    assert not (await service.status(ref(closed))).opted_in
    assert await delivery.drain() == 0  # nothing left, nothing sent twice
