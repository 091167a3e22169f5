"""The coping tools on Discord: slash commands and tool buttons through the real client and command tree (with
the fake Interaction), flow answers as DMs through dpytest, the real dialog manager with the tools on a real
Redis, a scripted model and a fake clock."""

from __future__ import annotations

import asyncio
import json

import discord
import discord.ext.test as dpytest
import pytest

from bots.discord import HavenDiscord
from bots.discord.tools import TOOL_CUSTOM_ID, ToolButton
from core.dialog import DialogLimits, DialogManager
from core.safety import SafetyScreen, crisis_reply
from core.store import RedisContextStore
from core.tools import CopingTools
from core.tools.texts import line
from core.types import UserRef
from tests.bots.discord.harness import FakeInteraction, Wire, click, open_dm, run_command
from tests.core.tools.conftest import FakeSleeper
from tests.fakes import FakeClock, ScriptedEngine

CRISIS_MESSAGE = "i want to kill myself tonight"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeper(clock: FakeClock) -> FakeSleeper:
    return FakeSleeper(clock)


@pytest.fixture
async def manager(store: RedisContextStore, engine: ScriptedEngine, redis_client, clock: FakeClock,
                  sleeper: FakeSleeper):
    tools = CopingTools(redis_client, store, clock=clock, sleep=sleeper)
    yield DialogManager(store, engine, SafetyScreen(semantic=False), clock=clock, tools=tools,
                        limits=DialogLimits(default_country="GB"))
    sleeper.release.set()
    await tools.close()


def member(index: int = 0) -> discord.Member:
    return dpytest.get_config().members[index]


def ref(who: discord.abc.User) -> UserRef:
    return UserRef("discord", str(who.id))


def interaction_for(bot: HavenDiscord, who: discord.abc.User, guild_id: int | None = None) -> FakeInteraction:
    interaction = FakeInteraction(who, guild_id=guild_id)
    interaction.client = bot  # type: ignore[attr-defined]  # what a dynamic item's callback reaches for
    return interaction


async def command(bot: HavenDiscord, who: discord.abc.User, name: str) -> FakeInteraction:
    interaction = interaction_for(bot, who)
    await run_command(bot, name, interaction)
    return interaction


async def press(bot: HavenDiscord, who: discord.abc.User, custom_id: str) -> FakeInteraction:
    """A click on a tool button as discord.py routes it by custom id (what also works after a restart)."""
    interaction = interaction_for(bot, who)
    match = TOOL_CUSTOM_ID.fullmatch(custom_id)
    assert match is not None
    item = await ToolButton.from_custom_id(interaction, discord.ui.Button(custom_id=custom_id), match)  # type: ignore[arg-type]
    await item.callback(interaction)  # type: ignore[arg-type]
    return interaction


def view_ids(interaction: FakeInteraction) -> list[str]:
    view = interaction.answers[-1].view
    return [child.item.custom_id for child in view.children] if view else []  # type: ignore[attr-defined]


async def dm_say(wire: Wire, dm: discord.DMChannel, who: discord.Member, words: str) -> tuple[str, list[str]]:
    await dpytest.message(words, channel=dm, member=who)
    last = wire.in_channel(dm.id)[-1]  # the reply itself, or the edit that put it in its placeholder
    return wire.final_texts(dm.id)[-1], last.custom_ids


async def test_safety_plan_in_dms_complete_skip_stop_resume_edit_and_crisis(
        offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine, redis_client) -> None:
    bot, wire = offline
    user = member()
    dm = await open_dm(user)
    started = await command(bot, user, "safetyplan")
    assert started.answers[0].how == "defer" and not started.answers[-1].ephemeral
    assert "Step 1 of 6" in started.last_text
    assert view_ids(started) == ["haven:tool:plan:skip:0", "haven:tool:plan:stop"]

    shown, ids = await dm_say(wire, dm, user, "not sleeping\nsnapping at people")
    assert "Step 2 of 6" in shown and ids == ["haven:tool:plan:skip:1", "haven:tool:plan:stop"]
    skipped = await press(bot, user, ids[0])
    assert skipped.answers[0].how == "edit_message" and skipped.answers[0].options["view"] is None
    assert "Step 3 of 6" in skipped.last_text
    stopped = await press(bot, user, "haven:tool:plan:stop")
    assert "Saved so far" in stopped.last_text
    shown, _ = await dm_say(wire, dm, user, "thanks")
    assert shown.startswith("I hear you about: thanks")

    await redis_client.delete(f"haven:{{discord:{user.id}}}:tools:flow")  # the flow's TTL ran out
    offer = await command(bot, user, "safetyplan")
    assert "2 of the 6 steps" in offer.last_text
    resumed = await press(bot, user, "haven:tool:plan:resume")
    assert "Step 3 of 6" in resumed.last_text
    for words in ("the library", "my brother", "school counsellor"):
        await dm_say(wire, dm, user, words)
    shown, ids = await dm_say(wire, dm, user, "go to my brother's")
    assert "Your safety plan is ready" in shown and "haven:tool:plan:change" in ids
    await press(bot, user, "haven:tool:plan:change")
    editing = await press(bot, user, "haven:tool:plan:edit:2")
    assert "the library" in editing.last_text
    shown, _ = await dm_say(wire, dm, user, "the climbing gym")
    assert "• the climbing gym" in shown and "the library" not in shown

    await dpytest.message(CRISIS_MESSAGE, channel=dm, member=user)
    crisis = "\n".join(wire.final_texts(dm.id)[-2:])
    assert crisis_reply("GB")[:300] in crisis and "Your own safety plan" in crisis and "• snapping at people" in crisis
    assert not any("the climbing gym" in m["content"] for p in engine.prompts for m in p)


async def test_breathing_paces_with_follow_ups_and_stop_ends_it(offline: tuple[HavenDiscord, Wire],
                                                                manager: DialogManager, clock: FakeClock) -> None:
    bot, _ = offline
    user = member()
    start = clock.now()
    breathing = await command(bot, user, "breathe")
    assert "in for 4" in breathing.answers[1].content and view_ids(breathing) == ["haven:tool:breathe:stop"]
    task = manager.tools.pacing(ref(user))  # type: ignore[union-attr]
    assert task is not None
    await asyncio.wait_for(task, 5)
    texts = [a.content for a in breathing.answers[2:]]
    assert len(texts) == 17 and texts[0].startswith("Round 1 of 4") and "Notice how your body" in texts[-1]
    assert clock.now() - start == 3 + 16 * 4
    assert all(a.how == "followup" and not a.ephemeral for a in breathing.answers[1:])


async def test_breathing_stop_button_in_the_middle(offline: tuple[HavenDiscord, Wire], store, redis_client,
                                                   engine: ScriptedEngine, clock: FakeClock) -> None:
    bot, _ = offline
    sleeper = FakeSleeper(clock, hold_after=2)
    tools = CopingTools(redis_client, store, clock=clock, sleep=sleeper)
    bot.manager = DialogManager(store, engine, SafetyScreen(semantic=False), clock=clock, tools=tools)
    user = member()
    breathing = await command(bot, user, "breathe")
    for _ in range(500):  # real Redis I/O runs in between: allow up to ~5 s
        if len(breathing.answers) == 4:  # defer, intro, two phases
            break
        await asyncio.sleep(0.01)
    stopping = await press(bot, user, "haven:tool:breathe:stop")
    assert stopping.last_text == line("cancelled_breathing")
    sleeper.release.set()
    await asyncio.sleep(0.05)
    assert len(breathing.answers) == 4 and tools.pacing(ref(user)) is None


async def test_grounding_reframe_and_journal_through_dms(offline: tuple[HavenDiscord, Wire],
                                                         engine: ScriptedEngine, store) -> None:
    bot, wire = offline
    user = member()
    dm = await open_dm(user)
    await command(bot, user, "ground")
    shown, ids = await dm_say(wire, dm, user, "window, lamp, cup, cat, rug")
    assert "4 things" in shown and ids[0] == "haven:tool:ground:next:1"
    cancelled = await command(bot, user, "cancel")
    assert cancelled.last_text == line("cancelled")

    await command(bot, user, "reframe")
    for words in ("the group chat went quiet", "they're annoyed with me", "worried, 6"):
        await dm_say(wire, dm, user, words)
    skipped = await press(bot, user, "haven:tool:reframe:skip:3")
    assert "Step 5 of 6" in skipped.last_text
    await dm_say(wire, dm, user, "it's late, people are asleep")
    shown, ids = await dm_say(wire, dm, user, "they're probably just busy")
    assert "Well done" in shown and ids[0] == "haven:tool:reframe:save"
    await press(bot, user, "haven:tool:reframe:save")

    await command(bot, user, "journal")
    shown, _ = await dm_say(wire, dm, user, "Made soup. Felt okay.")
    assert "Saved in your journal" in shown
    listing = await press(bot, user, "haven:tool:journal:list")
    assert "#2" in listing.last_text and "#1" in listing.last_text
    assert engine.prompts == []  # nothing from any tool reached the model
    talking = await press(bot, user, "haven:tool:journal:talk:2")
    assert talking.last_text.startswith("I hear you about") and "Made soup" in engine.prompts[-1][-1]["content"]
    await press(bot, user, "haven:tool:journal:del:1")
    await press(bot, user, "haven:tool:journal:del!:1")
    exporting = await command(bot, user, "export")
    exported = exporting.answers[-1].json()
    assert list(exported["data"]["journal"]) == ["2"]


async def test_forget_removes_plans_and_journal(offline: tuple[HavenDiscord, Wire], redis_client) -> None:
    bot, wire = offline
    user = member()
    dm = await open_dm(user)
    await command(bot, user, "safetyplan")
    await dm_say(wire, dm, user, "tired")
    await command(bot, user, "journal")
    await dm_say(wire, dm, user, "an entry")
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:safety_plan")
    asked = FakeInteraction(user)
    await run_command(bot, "forget", asked)
    await click(asked.answers[0].view, None, FakeInteraction(user), label="Yes, delete everything")  # type: ignore[arg-type]
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:*") == []


async def test_in_a_server_tools_offer_dms_and_keep_nothing(offline: tuple[HavenDiscord, Wire],
                                                            redis_client) -> None:
    bot, _ = offline
    user = member()
    interaction = interaction_for(bot, user, guild_id=dpytest.get_config().guilds[0].id)
    await run_command(bot, "journal", interaction)
    answer = interaction.answers[0]
    assert answer.ephemeral and answer.content == line("private_only")
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:*") == []


async def test_a_chat_reply_can_carry_an_exercise_button(offline: tuple[HavenDiscord, Wire]) -> None:
    bot, wire = offline
    user = member()
    dm = await open_dm(user)
    _, ids = await dm_say(wire, dm, user, "I'm having a panic attack")
    assert ids == ["haven:tool:breathe"]
    opened = await press(bot, user, "haven:tool:breathe")
    assert "in for 4" in opened.last_text
    await press(bot, user, "haven:tool:breathe:stop")


def test_tool_payloads_fit_discord_limits() -> None:
    longest = "haven:tool:journal:del!:" + "9" * 12
    assert TOOL_CUSTOM_ID.fullmatch(longest) and len(longest) <= 100
    assert json.dumps(ToolButton("tool:plan:skip:0", "Skip this step").to_component_dict())
