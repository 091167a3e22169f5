"""Start-up of Haven's Discord client: persistent buttons, the token handled as a secret, rate limits."""

from __future__ import annotations

import discord
import discord.ext.test as dpytest
import pytest

from bots.discord import HavenDiscord, run_discord
from core.dialog import DialogManager
from core.errors import ConfigError
from core.runtime import Runtime
from core.settings import Settings
from core.store import RedisContextStore
from tests.bots.discord.harness import FakeInteraction, Wire, click, open_dm
from tests.fakes import ScriptedEngine

TOKEN = "MTIz.fake-discord-token.never-logged"


async def test_setup_registers_persistent_buttons_without_syncing_in_tests(
        offline: tuple[HavenDiscord, Wire]) -> None:
    bot, _ = offline
    await bot.setup_hook()  # sync_commands is off: nothing goes to Discord
    custom_ids = {item.custom_id for view in bot.persistent_views for item in view.children}  # type: ignore[attr-defined]
    assert {"haven:consent:yes", "haven:consent:no", "haven:dm:open"} <= custom_ids


def runtime_with(manager: DialogManager, store: RedisContextStore, token: str | None) -> Runtime:
    settings = Settings(_env_file=None, discord_bot_token=token)  # type: ignore[call-arg]
    return Runtime(settings, store._redis, store, manager.engine, manager.screen, manager)  # type: ignore[attr-defined]


async def test_a_refused_token_stops_with_one_line_that_does_not_show_it(
        manager: DialogManager, store: RedisContextStore, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(self: HavenDiscord, token: str) -> None:
        assert token == TOKEN  # the real secret reaches discord.py, and only discord.py
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(HavenDiscord, "login", refuse)
    with pytest.raises(ConfigError) as refused:
        await run_discord(runtime_with(manager, store, TOKEN))
    assert "DISCORD_BOT_TOKEN" in str(refused.value) and TOKEN not in str(refused.value)
    assert TOKEN not in caplog.text

    with pytest.raises(ConfigError):
        await run_discord(runtime_with(manager, store, None))


async def test_a_rate_limited_final_edit_is_waited_out(
        offline: tuple[HavenDiscord, Wire], engine: ScriptedEngine) -> None:
    bot, wire = offline
    engine.reply = lambda messages: "a reply long enough to be streamed into a preview first"
    user = dpytest.get_config().members[0]
    await click(bot.action_view(bot.manager.welcome().buttons), "haven:consent:yes", FakeInteraction(user))
    dm = await open_dm(user)
    # discord.py raises RateLimited when Discord asks for a wait longer than the client will sit through.
    wire.fail_next("edit", lambda: discord.RateLimited(0.01), times=2)

    await dpytest.message("hi", channel=dm, member=user)

    assert wire.final_texts(dm.id) == [engine.reply([])]
