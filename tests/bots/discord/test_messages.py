"""Haven's Discord message flows, driven through the real discord.py client on dpytest's offline Discord:
consent on first contact, streaming and splitting, crisis replies, mentions in servers, mention safety, and
what happens when Discord refuses a send."""

from __future__ import annotations

import logging

import discord
import discord.ext.test as dpytest
import pytest
from discord.ext.test import factories

from bots.discord import HavenDiscord
from bots.rendering import DISCORD_MAX_CHARS
from core.safety import crisis_reply
from core.store import RedisContextStore
from core.texts import text
from core.types import UserRef
from tests.bots.discord.harness import FakeInteraction, Wire, click, forbidden, http_error, open_dm
from tests.fakes import ScriptedEngine

NO_PINGS = {"parse": []}


def member(index: int = 0) -> discord.Member:
    return dpytest.get_config().members[index]


def server_channel() -> discord.TextChannel:
    return dpytest.get_config().channels[0]


def ref(who: discord.abc.User) -> UserRef:
    return UserRef("discord", str(who.id))


async def consent(bot: HavenDiscord, who: discord.Member) -> None:
    await click(bot.action_view(bot.manager.welcome().buttons), "haven:consent:yes", FakeInteraction(who))


async def test_first_dm_asks_consent_and_the_button_stores_the_choice(
        offline: tuple[HavenDiscord, Wire], store: RedisContextStore) -> None:
    bot, wire = offline
    user = member()
    dm = await open_dm(user)

    await dpytest.message("hello, rough day", channel=dm, member=user)

    calls = wire.in_channel(dm.id)
    welcome = calls[0]
    assert welcome.content == text("welcome")
    assert welcome.custom_ids == ["haven:consent:yes", "haven:consent:no"]
    assert wire.final_texts(dm.id)[-1].startswith("I hear you about: hello, rough day")
    assert (await store.load_profile(ref(user))).consent is None
    assert await store.load_history(ref(user)) == []  # nothing stored before the user says yes

    # The persistent consent view (what discord.py routes a click on that custom id to) acts for the clicker.
    clicked = FakeInteraction(user)
    await click(bot.action_view(bot.manager.welcome().buttons), welcome.custom_ids[0], clicked)
    assert clicked.answers[0].how == "defer"
    assert clicked.last_text == text("consent_given")
    assert not clicked.answers[-1].ephemeral  # the user's own DM: keep the confirmation visible
    assert (await store.load_profile(ref(user))).consent is True

    await dpytest.message("still here", channel=dm, member=user)
    history = await store.load_history(ref(user))
    assert [turn.content for turn in history] == ["still here", "I hear you about: still here"]
    assert sum(call.content == text("welcome") for call in wire.calls) == 1  # asked once


async def test_a_long_reply_streams_into_one_message_then_splits_at_paragraphs(
        offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine) -> None:
    bot, wire = offline
    paragraph = " ".join(f"Sentence {n} is about taking one small step at a time." for n in range(28))
    long_reply = "\n\n".join([paragraph] * 4)  # about 6,300 characters: four messages' worth
    engine.reply = lambda messages: long_reply
    user = member()
    dm = await open_dm(user)
    await consent(bot, user)

    await dpytest.message("tell me more", channel=dm, member=user)

    calls = wire.in_channel(dm.id)
    sends = [call for call in calls if call.op == "send"]
    edits = [call for call in calls if call.op == "edit"]
    placeholder = sends[0].message_id
    assert len(edits) > 10 and all(edit.message_id == placeholder for edit in edits)
    assert all(len(call.content or "") <= DISCORD_MAX_CHARS for call in calls)
    shown = wire.final_texts(dm.id)
    assert len(shown) == 4
    assert shown == [paragraph] * 4  # each cut on a paragraph break, nothing lost
    assert all(call.payload.get("allowed_mentions") == NO_PINGS for call in calls)


async def test_streaming_edits_are_rate_limited(manager, engine: ScriptedEngine) -> None:  # type: ignore[no-untyped-def]
    from tests.bots.discord.harness import start_offline_bot

    engine.reply = lambda messages: "word " * 400
    bot, wire = await start_offline_bot(manager, edit_interval_seconds=3600.0)
    try:
        user = member()
        dm = await open_dm(user)
        await consent(bot, user)
        await dpytest.message("hi", channel=dm, member=user)
        ops = [call.op for call in wire.in_channel(dm.id)]
        # One preview, then only the final edit: no edit between, however fast the model writes.
        assert ops == ["send", "edit"]
        assert wire.final_texts(dm.id) == [("word " * 400).strip()]
    finally:
        await dpytest.empty_queue()


async def test_crisis_message_gets_the_fixed_reply_without_the_model(
        offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine) -> None:
    _, wire = offline
    user = member()
    dm = await open_dm(user)

    await dpytest.message("I want to kill myself tonight", channel=dm, member=user)

    assert wire.final_texts(dm.id) == [crisis_reply(None)]
    assert engine.prompts == []


async def test_in_a_server_only_mentions_are_answered_and_other_messages_never_stored(
        offline: tuple[HavenDiscord, Wire], store: RedisContextStore, engine: ScriptedEngine) -> None:
    bot, wire = offline
    user, channel = member(), server_channel()
    await consent(bot, user)

    await dpytest.message("talking to my friends, not the bot", channel=channel, member=user)
    assert wire.in_channel(channel.id) == []
    assert engine.prompts == []
    assert await store.load_history(ref(user)) == []

    assert bot.user is not None
    await dpytest.message(f"<@{bot.user.id}> can we talk?", channel=channel, member=user)
    shown = wire.final_texts(channel.id)
    assert shown[0] == "I hear you about: can we talk?"  # the mention itself is not part of the words
    first = wire.in_channel(channel.id)[0]
    assert first.payload["message_reference"]["fail_if_not_exists"] is False  # answers the user's message
    assert shown[1].startswith("This channel is public")  # offers a private conversation
    assert wire.in_channel(channel.id)[-1].custom_ids == ["haven:dm:open"]
    # Remembered with this channel, apart from the private conversation.
    assert await store.load_history(ref(user)) == []
    assert [turn.content for turn in await store.load_history(ref(user), str(channel.id))] == [
        "can we talk?", "I hear you about: can we talk?"]

    await dpytest.message(f"<@{bot.user.id}> thanks", channel=channel, member=user)
    assert sum(text.startswith("This channel is public") for text in wire.final_texts(channel.id)) == 1


async def test_the_dm_offer_button_opens_a_dm(offline: tuple[HavenDiscord, Wire]) -> None:
    bot, wire = offline
    user = member()
    pressed = FakeInteraction(user, guild_id=server_channel().guild.id)
    await click(bot.dm_offer_view(), "haven:dm:open", pressed)
    dm = await open_dm(user)
    assert wire.final_texts(dm.id) == ["Hi, it's Haven. This conversation is private. What's on your mind?"]
    assert pressed.answers[-1].ephemeral

    wire.fail_next("send", forbidden)  # the user's privacy settings block DMs from server apps
    refused = FakeInteraction(user, guild_id=server_channel().guild.id)
    await click(bot.dm_offer_view(), "haven:dm:open", refused)
    assert refused.last_text is not None and refused.last_text.startswith("I couldn't send you a direct message")


async def test_everyone_in_a_model_reply_pings_nobody(
        offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine) -> None:
    bot, wire = offline
    engine.reply = lambda messages: "@everyone look <@&123456789012345678> and <@123456789012345678> @here"
    user, channel = member(), server_channel()
    assert bot.user is not None

    await dpytest.message(f"<@{bot.user.id}> hi", channel=channel, member=user)

    calls = wire.in_channel(channel.id)
    assert calls and all(call.payload["allowed_mentions"] == NO_PINGS for call in calls)
    welcome, reply = wire.final_texts(channel.id)[:2]
    assert welcome == text("welcome")
    assert "@everyone" not in reply and "@here" not in reply and "<@&1" not in reply
    assert reply.replace("\u200b", "") == engine.reply([])


async def test_a_failed_send_is_retried(offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine) -> None:
    bot, wire = offline
    engine.reply = lambda messages: "short"  # shorter than one preview: the reply is one plain send
    user = member()
    dm = await open_dm(user)
    await consent(bot, user)
    wire.fail_next("send", lambda: http_error(503))

    await dpytest.message("hi", channel=dm, member=user)

    assert wire.final_texts(dm.id) == ["short"]


async def test_a_send_that_keeps_failing_is_reported_and_logged_without_text(
        offline: tuple[HavenDiscord, Wire], caplog: pytest.LogCaptureFixture) -> None:
    bot, wire = offline
    user = member()
    dm = await open_dm(user)
    await consent(bot, user)
    # The streamed preview and all three attempts at the final reply fail; the next send (the notice) works.
    wire.fail_next("send", lambda: http_error(500), times=4)

    with caplog.at_level(logging.INFO):
        await dpytest.message("my secret worry", channel=dm, member=user)

    assert wire.final_texts(dm.id) == [text("fallback")]  # the user hears that something went wrong
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("bots.discord")]
    assert failures and "bots/discord/render.py" in failures[0].getMessage()  # where it failed, for the log
    assert "HTTPException" in failures[0].getMessage()
    assert "injected by the test" not in failures[0].getMessage()  # but not what the exception said
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "secret worry" not in logged and user.name not in logged and "I hear you" not in logged


async def test_a_channel_haven_may_not_post_in_is_logged_not_raised(
        offline: tuple[HavenDiscord, Wire], caplog: pytest.LogCaptureFixture) -> None:
    bot, wire = offline
    assert bot.user is not None
    wire.fail_next("send", forbidden, times=10)  # Haven may not post in this channel at all
    await dpytest.message(f"<@{bot.user.id}> hi", channel=server_channel(), member=member())
    assert wire.in_channel(server_channel().id) == []
    assert "Forbidden" in caplog.text


async def test_a_failed_dm_offer_does_not_apologise_for_a_reply_that_arrived(
        offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine) -> None:
    bot, wire = offline
    engine.reply = lambda messages: "short"
    user = member()
    await consent(bot, user)
    assert bot.user is not None
    original, refused = wire._maybe_fail, []

    def refuse_the_offer(op: str) -> None:
        if len(wire.in_channel(server_channel().id)) == 1 and not refused:  # the reply is out; the offer is next
            refused.append(op)
            raise forbidden()
        original(op)

    wire._maybe_fail = refuse_the_offer  # type: ignore[method-assign]
    await dpytest.message(f"<@{bot.user.id}> hi", channel=server_channel(), member=user)
    assert wire.final_texts(server_channel().id) == ["short"]


def open_thread(owner: discord.Member, parent: discord.TextChannel) -> discord.Thread:
    """A public thread in dpytest's server (dpytest has no thread support of its own)."""
    state = dpytest.get_config().client._connection
    data = {"id": factories.make_id(), "guild_id": parent.guild.id,
            "parent_id": parent.id, "owner_id": owner.id, "name": "talk", "type": 11,
            "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
            "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "locked": False,
                                "archive_timestamp": discord.utils.utcnow().isoformat()}}
    thread = discord.Thread(guild=parent.guild, state=state, data=data)  # type: ignore[arg-type]
    parent.guild._add_thread(thread)
    return thread


async def test_in_the_users_own_thread_haven_answers_after_being_called_in(
        offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine) -> None:
    bot, wire = offline
    owner, other = member(0), member(1)
    thread = open_thread(owner, server_channel())
    assert bot.user is not None

    await dpytest.message("before Haven was called in", channel=thread, member=owner)
    assert wire.in_channel(thread.id) == []

    await dpytest.message(f"<@{bot.user.id}> can we talk here?", channel=thread, member=owner)
    await dpytest.message("thanks for listening", channel=thread, member=owner)
    shown = wire.final_texts(thread.id)
    assert "I hear you about: can we talk here?" in shown
    assert "I hear you about: thanks for listening" in shown  # no mention needed any more in this thread

    prompts = len(engine.prompts)
    await dpytest.message("someone else chiming in", channel=thread, member=other)
    await dpytest.message("", channel=thread, member=owner)  # without message_content, Discord sends no text
    assert len(engine.prompts) == prompts

    other_thread = open_thread(other, server_channel())
    await dpytest.message(f"<@{bot.user.id}> hi", channel=other_thread, member=owner)  # a mention still counts
    await dpytest.message("no mention, not my thread", channel=other_thread, member=owner)
    assert len(engine.prompts) == prompts + 1
