"""Haven's slash commands on Discord, their callbacks run with the real command tree and views and a fake
Interaction (the network edge): who sees the answer, deferral before slow work, /forget's confirmation,
/export's file, and the error handler."""

from __future__ import annotations

import logging

import discord
import discord.ext.test as dpytest
import pytest

from bots.discord import HavenDiscord, default_intents
from bots.discord.views import ForgetConfirmView
from core.safety import crisis_reply
from core.store import RedisContextStore
from core.texts import text
from core.types import UserRef
from tests.bots.discord.harness import FakeInteraction, Wire, click, open_dm, run_command

COMMANDS = {"start", "help", "resources", "country", "checkin", "mood", "forget", "export", "privacy",
            "safetyplan", "breathe", "ground", "reframe", "journal", "cancel", "checkins_admin"}


def member(index: int = 0) -> discord.Member:
    return dpytest.get_config().members[index]


def in_server(who: discord.abc.User, events: list | None = None) -> FakeInteraction:  # type: ignore[type-arg]
    return FakeInteraction(who, guild_id=dpytest.get_config().guilds[0].id, events=events)


def ref(who: discord.abc.User) -> UserRef:
    return UserRef("discord", str(who.id))


async def chat_with_consent(bot: HavenDiscord, who: discord.Member) -> None:
    await click(bot.action_view(bot.manager.welcome().buttons), "haven:consent:yes", FakeInteraction(who))
    dm = await open_dm(who)
    await dpytest.message("I worry about exams", channel=dm, member=who)


async def test_every_command_is_registered_for_dms_servers_and_user_installs(
        offline: tuple[HavenDiscord, Wire]) -> None:
    bot, _ = offline
    assert {command.name for command in bot.tree.get_commands()} == COMMANDS
    contexts = bot.tree.allowed_contexts
    assert contexts.dm_channel and contexts.guild and contexts.private_channel
    assert bot.tree.allowed_installs.user and bot.tree.allowed_installs.guild
    payload = bot.tree.get_command("export").to_dict(bot.tree)  # type: ignore[union-attr]
    assert set(payload["contexts"]) == {0, 1, 2}  # what Discord is told: guild, bot DM, private channels


def test_runs_without_privileged_intents() -> None:
    intents = default_intents()
    assert not intents.message_content and not intents.members and not intents.presences
    assert intents.dm_messages and intents.guild_messages


@pytest.mark.parametrize("name", ["help", "privacy", "start"])
async def test_quick_commands_answer_at_once_visible_in_dms_hidden_in_servers(
        offline: tuple[HavenDiscord, Wire], name: str) -> None:
    bot, _ = offline
    in_dm, public = FakeInteraction(member()), in_server(member())
    await run_command(bot, name, in_dm)
    await run_command(bot, name, public)
    assert [a.how for a in in_dm.answers] == ["send_message"] and not in_dm.answers[0].ephemeral
    assert [a.how for a in public.answers] == ["send_message"] and public.answers[0].ephemeral
    assert in_dm.last_text == public.last_text
    expected = {"help": text("help"), "privacy": text("privacy"), "start": text("welcome")}[name]
    assert in_dm.last_text == expected
    if name == "start":  # the consent question comes with its buttons
        view = in_dm.answers[0].view
        assert view is not None
        assert [item.custom_id for item in view.children] == ["haven:consent:yes", "haven:consent:no"]


async def test_country_and_resources_defer_before_touching_redis(
        offline: tuple[HavenDiscord, Wire], store: RedisContextStore) -> None:
    bot, _ = offline
    user = member()
    events: list[object] = []
    real_load = store.load_profile

    async def watched_load(who: UserRef):  # type: ignore[no-untyped-def]
        events.append("redis")
        return await real_load(who)

    store.load_profile = watched_load  # type: ignore[method-assign]
    setting = in_server(user, events)
    await run_command(bot, "country", setting, code="gb")
    assert setting.last_text == text("country_set", country="GB")
    assert (await real_load(ref(user))).country == "GB"

    asking = in_server(user, events := [])
    await run_command(bot, "resources", asking)
    assert [getattr(e, "how", e) for e in events] == ["defer", "redis", "followup"]
    assert asking.last_text == crisis_reply("GB")
    assert all(answer.ephemeral for answer in asking.answers)


async def test_forget_asks_first_and_only_the_asker_can_confirm(
        offline: tuple[HavenDiscord, Wire], store: RedisContextStore, redis_client) -> None:  # type: ignore[no-untyped-def]
    bot, _ = offline
    user, other = member(0), member(1)
    await chat_with_consent(bot, user)
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:*")

    asked = in_server(user)
    await run_command(bot, "forget", asked)
    question = asked.answers[0]
    assert question.how == "send_message" and question.ephemeral
    assert isinstance(question.view, ForgetConfirmView)
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:*")  # nothing deleted by asking

    intruder = in_server(other)
    await click(question.view, None, intruder, label="Yes, delete everything")
    assert intruder.answers == []
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:*")

    confirming = in_server(user)
    await click(question.view, None, confirming, label="Yes, delete everything")
    assert confirming.answers[0].how == "edit_message" and confirming.answers[0].options["view"] is None
    assert confirming.last_text == text("forgotten")
    assert confirming.answers[-1].ephemeral
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:*") == []
    assert (await store.load_profile(ref(user))).consent is None


async def test_forget_cancel_keeps_everything(offline: tuple[HavenDiscord, Wire], redis_client) -> None:  # type: ignore[no-untyped-def]
    bot, _ = offline
    user = member()
    await chat_with_consent(bot, user)
    asked = FakeInteraction(user)
    await run_command(bot, "forget", asked)
    assert asked.answers[0].view is not None
    cancelling = FakeInteraction(user)
    await click(asked.answers[0].view, None, cancelling, label="No, keep it")
    assert cancelling.last_text == "Okay, nothing was deleted."
    assert await redis_client.keys(f"haven:{{discord:{user.id}}}:*")


async def test_export_defers_then_sends_everything_as_a_json_file(
        offline: tuple[HavenDiscord, Wire]) -> None:
    bot, _ = offline
    user = member()
    await chat_with_consent(bot, user)

    asking = FakeInteraction(user)
    await run_command(bot, "export", asking)

    assert [a.how for a in asking.answers] == ["defer", "followup"]
    sent = asking.answers[-1]
    assert sent.file is not None and sent.file[0].startswith("haven-export-") and sent.file[0].endswith(".json")
    exported = sent.json()
    assert "I worry about exams" in str(exported)
    assert not sent.ephemeral  # in the user's own DM the file stays

    hidden = in_server(user)
    await run_command(bot, "export", hidden)
    assert hidden.answers[0].ephemeral and hidden.answers[-1].ephemeral


async def test_export_with_redis_down_says_so(offline: tuple[HavenDiscord, Wire], redis_server) -> None:  # type: ignore[no-untyped-def]
    from core.store import RedisContextStore, connect_redis

    bot, _ = offline
    broken = connect_redis(unix_socket_path="/nonexistent/redis.sock")
    bot.manager.store = RedisContextStore(broken, max_turns=6, max_tokens=400, ttl_seconds=60)
    asking = FakeInteraction(member())
    await run_command(bot, "export", asking)
    assert asking.last_text == text("store_trouble")
    assert asking.answers[-1].file is None
    await broken.aclose()


async def test_a_failing_command_goes_to_the_one_error_handler(
        offline: tuple[HavenDiscord, Wire], caplog: pytest.LogCaptureFixture) -> None:
    bot, _ = offline

    async def broken(user: UserRef) -> None:
        raise RuntimeError("boom")

    bot.manager.resources = broken  # type: ignore[method-assign,assignment]
    asking = in_server(member())
    command = bot.tree.get_command("resources")
    assert isinstance(command, discord.app_commands.Command)
    try:
        await run_command(bot, "resources", asking)
    except RuntimeError as exc:  # the command tree wraps it and calls the tree's error handler
        await bot.tree.on_error(asking, discord.app_commands.CommandInvokeError(command, exc))  # type: ignore[arg-type]
    assert asking.last_text == text("fallback")
    assert asking.answers[-1].ephemeral
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("bots.discord")]
    assert errors and "RuntimeError" in errors[0].getMessage()
