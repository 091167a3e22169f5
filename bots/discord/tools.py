"""The coping tools on Discord: the slash commands /safetyplan, /breathe, /ground, /reframe, /journal and
/cancel, and the buttons whose action starts with "tool:". What each one does lives in core/tools; here an
interaction becomes a core call and the reply becomes a message with buttons.

Tool buttons are `DynamicItem`s (custom id "haven:tool:…"): discord.py routes a click on one by its id alone,
so a step's buttons keep working after a restart. Tools run in the user's DM with Haven only; in a server the
answer is an ephemeral offer to move to DMs, since a plan or a journal is nobody else's business.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bots.discord.render import display_text, respond
from core.tools import TOOL_COMMANDS
from core.tools.exercises import Send
from core.tools.texts import command_description, line
from core.types import Reply

if TYPE_CHECKING:
    from bots.discord.client import HavenDiscord

log = logging.getLogger(__name__)

TOOL_CUSTOM_ID = re.compile(r"haven:(?P<action>tool:[\w:!-]+)")


class ToolButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TOOL_CUSTOM_ID.pattern):
    """One button of a coping tool; a click goes to the client's `on_action`, whoever's message it is on."""

    def __init__(self, action: str, label: str | None = None,
                 style: discord.ButtonStyle = discord.ButtonStyle.secondary) -> None:
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=f"haven:{action}"))
        self.action = action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str]) -> ToolButton:
        return cls(match["action"], getattr(item, "label", None))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: HavenDiscord = interaction.client  # type: ignore[assignment]
        try:
            await bot.on_action(interaction, self.action)
        except Exception as exc:  # discord.py would only log it; the person should hear back
            await bot.report_interaction_failure(interaction, exc, "tool button")


def _sender(bot: HavenDiscord, interaction: discord.Interaction) -> Send:
    async def send(reply: Reply) -> None:
        await respond(interaction, display_text(reply.kind, reply.text), ephemeral=False, view=bot.reply_view(reply))

    return send


async def _outside_dms(bot: HavenDiscord, interaction: discord.Interaction) -> bool:
    from bots.discord.client import in_private_place

    if in_private_place(interaction):
        return False
    await respond(interaction, line("private_only"), ephemeral=True, view=bot.dm_offer_view())
    return True


async def on_tool_action(bot: HavenDiscord, interaction: discord.Interaction, action: str) -> None:
    """A tool button was pressed (from `HavenDiscord.on_action`)."""
    from bots.discord.client import discord_user

    if await _outside_dms(bot, interaction):
        return
    tools = bot.manager.tools
    if tools is None:
        await respond(interaction, line("store_trouble"), ephemeral=False)
        return
    # Acknowledge by taking the pressed message's buttons away, so a step cannot be answered twice.
    await interaction.response.edit_message(view=None)
    user = discord_user(interaction.user)
    reply = await tools.press(user, action, send=_sender(bot, interaction))
    await respond(interaction, display_text(reply.kind, reply.text) if reply else line("unknown"),
                  ephemeral=False, view=bot.reply_view(reply) if reply else None)
    log.info("tool button user=%s tool=%s", user.log_id, action.split(":")[1:2])


def register_tool_commands(tree: app_commands.CommandTree[HavenDiscord], bot: HavenDiscord) -> None:
    """Add the tool commands to the tree and route tool buttons by custom id, even after a restart."""
    bot.add_dynamic_items(ToolButton)
    for name in TOOL_COMMANDS:
        tree.add_command(app_commands.Command(name=name, description=command_description(name),
                                              callback=_command_callback(bot, name)))


def _command_callback(bot: HavenDiscord, name: str) -> Any:
    async def run_tool(interaction: discord.Interaction) -> None:
        from bots.discord.client import discord_user

        if await _outside_dms(bot, interaction):
            return
        tools = bot.manager.tools
        if tools is None:
            await respond(interaction, line("store_trouble"), ephemeral=False)
            return
        await interaction.response.defer(thinking=True)
        user = discord_user(interaction.user)
        reply = await tools.command(user, name, send=_sender(bot, interaction))
        await respond(interaction, display_text(reply.kind, reply.text), ephemeral=False, view=bot.reply_view(reply))
        log.info("tool command user=%s command=%s", user.log_id, name)

    run_tool.__name__ = f"tool_{name}"
    return run_tool
