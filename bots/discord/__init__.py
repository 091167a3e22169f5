"""Haven on Discord (discord.py 2.7): DMs first, mentions and user-opened threads in servers, slash commands.

`build_bot(manager)` wires a client around the core's dialog manager; `run_discord(runtime)` runs it until
cancelled. The adapter is thin: it turns Discord events into core calls and renders what comes back.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import discord

from bots.discord.checkins import deliver_checkins, stop_delivery
from bots.discord.client import HavenDiscord, default_intents
from core.dialog import DialogManager
from core.errors import ConfigError

if TYPE_CHECKING:
    from core.runtime import Runtime

__all__ = ["HavenDiscord", "build_bot", "default_intents", "run_discord"]


def build_bot(manager: DialogManager, *, intents: discord.Intents | None = None, sync_commands: bool = False,
              **options: Any) -> HavenDiscord:
    """A Discord client for Haven. `sync_commands` publishes the slash commands to Discord at start-up;
    `checkins=`, `redis=` and `admins=` switch on /checkin, /mood and /checkins_admin."""
    return HavenDiscord(manager, intents=intents, sync_commands=sync_commands, **options)


async def run_discord(runtime: Runtime) -> None:
    """Connect to Discord with DISCORD_BOT_TOKEN and answer until cancelled."""
    token = runtime.settings.discord_bot_token
    if token is None:
        raise ConfigError("DISCORD_BOT_TOKEN is not set")
    bot = build_bot(runtime.manager, sync_commands=runtime.settings.discord_sync_commands,
                    checkins=runtime.checkins, redis=runtime.redis, admins=runtime.settings.admins)
    stop = asyncio.Event()
    async with bot:
        # Scheduled check-ins for Discord users, sent to their DMs once the client is logged in.
        delivery = (asyncio.create_task(deliver_checkins(bot, runtime.redis, stop), name="discord-checkin-delivery")
                    if runtime.checkins is not None else None)
        try:
            await bot.start(token.get_secret_value())
        except discord.LoginFailure:
            # discord.py's own message never contains the token; ours names the setting instead.
            raise ConfigError("DISCORD_BOT_TOKEN was refused by Discord (check the token)") from None
        except discord.PrivilegedIntentsRequired:
            raise ConfigError("Discord refused the bot's intents (Haven needs no privileged intent)") from None
        finally:
            if delivery is not None:
                await stop_delivery(delivery, stop)
