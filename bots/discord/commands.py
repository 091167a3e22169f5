"""Haven's slash commands on Discord, the same set the Telegram bot and the console offer.

Each one answers at once when it has nothing slow to do, and otherwise defers first (Discord drops an
interaction not acknowledged within 3 s) before it touches Redis. Outside the user's own DM with Haven every
answer is ephemeral: only the user sees it. The commands work in DMs, servers and, as a user-installed app,
anywhere the user is (`allowed_contexts`/`allowed_installs` are set on the tree).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.discord.checkins import register_checkin_commands
from bots.discord.render import respond
from bots.discord.texts import COMMAND_DESCRIPTIONS, discord_text
from bots.discord.tools import register_tool_commands
from bots.discord.views import ForgetConfirmView
from core.errors import StoreError
from core.texts import text

if TYPE_CHECKING:
    from bots.discord.client import HavenDiscord

log = logging.getLogger(__name__)


def register_commands(tree: app_commands.CommandTree[HavenDiscord], bot: HavenDiscord) -> None:
    from bots.discord.client import discord_user, in_private_place

    manager = bot.manager
    register_tool_commands(tree, bot)  # /safetyplan, /breathe, /ground, /reframe, /journal, /cancel
    register_checkin_commands(tree, bot)  # /checkin, /mood, /checkins_admin

    def hidden(interaction: discord.Interaction) -> bool:
        return not in_private_place(interaction)

    async def defer(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=hidden(interaction), thinking=True)

    @tree.command(name="start", description=COMMAND_DESCRIPTIONS["start"])
    async def start(interaction: discord.Interaction) -> None:
        welcome = manager.welcome()
        await respond(interaction, welcome.text, ephemeral=hidden(interaction), view=bot.reply_view(welcome))

    @tree.command(name="help", description=COMMAND_DESCRIPTIONS["help"])
    async def help_(interaction: discord.Interaction) -> None:
        await respond(interaction, text("help"), ephemeral=hidden(interaction))

    @tree.command(name="privacy", description=COMMAND_DESCRIPTIONS["privacy"])
    async def privacy(interaction: discord.Interaction) -> None:
        await respond(interaction, text("privacy"), ephemeral=hidden(interaction))

    @tree.command(name="resources", description=COMMAND_DESCRIPTIONS["resources"])
    async def resources(interaction: discord.Interaction) -> None:
        await defer(interaction)
        reply = await manager.resources(discord_user(interaction.user))
        await respond(interaction, reply.text, ephemeral=hidden(interaction))

    @tree.command(name="country", description=COMMAND_DESCRIPTIONS["country"])
    @app_commands.describe(code=discord_text("country_hint"))
    async def country(interaction: discord.Interaction, code: app_commands.Range[str, 2, 8]) -> None:
        await defer(interaction)
        reply = await manager.set_country(discord_user(interaction.user), code)
        await respond(interaction, reply.text, ephemeral=hidden(interaction))

    @tree.command(name="forget", description=COMMAND_DESCRIPTIONS["forget"])
    async def forget(interaction: discord.Interaction) -> None:
        ephemeral = hidden(interaction)

        async def confirmed(click: discord.Interaction) -> None:
            # Take the buttons away first (this also acknowledges the click in time), then delete.
            await click.response.edit_message(content=discord_text("forget_confirm"), view=None)
            reply = await manager.forget(discord_user(click.user))
            await respond(click, reply.text, ephemeral=ephemeral)

        view = ForgetConfirmView(
            interaction.user.id, confirmed, bot.report_interaction_failure,
            confirm_label=discord_text("forget_confirm_button"), cancel_label=discord_text("forget_cancel_button"),
            cancelled_text=discord_text("forget_cancelled"))
        await respond(interaction, discord_text("forget_confirm"), ephemeral=ephemeral, view=view)

    @tree.command(name="export", description=COMMAND_DESCRIPTIONS["export"])
    async def export(interaction: discord.Interaction) -> None:
        await defer(interaction)
        try:
            data = await manager.export(discord_user(interaction.user))
        except StoreError:
            await respond(interaction, text("store_trouble"), ephemeral=hidden(interaction))
            return
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        payload = json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8")
        await respond(interaction, discord_text("export_ready"), ephemeral=hidden(interaction),
                      attachment=(f"haven-export-{stamp}.json", payload))
