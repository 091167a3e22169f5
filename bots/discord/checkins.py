"""Check-ins and moods on Discord: /checkin, /mood (the chart as an attached PNG), /checkins_admin, the buttons
whose action starts with "mood:", "feel:" or "checkin:", and `DiscordNotifier`, which sends a scheduled check-in
to the user's DMs for the delivery worker. Outside the user's own DM every answer is ephemeral.

The 1–5 buttons and the other check-in buttons are registered as persistent views at start-up, so a check-in
sent before a restart can still be answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bots.checkin_commands import (
    ADMIN_COMMAND,
    checkin_action,
    checkin_command,
    checkins_admin,
    mood_command,
)
from bots.discord.render import display_text, respond, send_text
from bots.discord.texts import COMMAND_DESCRIPTIONS, discord_text
from core.checkins import CheckinDelivery, DeliveryOutcome, DeliveryResult, checkin_buttons, feeling_buttons
from core.checkins.texts import button_label
from core.types import Button, Reply, UserRef

if TYPE_CHECKING:
    from bots.discord.client import HavenDiscord

log = logging.getLogger(__name__)


def persistent_checkin_buttons() -> tuple[tuple[Button, ...], ...]:
    """Every check-in button a message can carry for long, grouped into views of at most 25."""
    others = (Button(button_label("talk"), "checkin:talk"), Button(button_label("resources"), "checkin:resources"),
              Button(button_label("skip"), "checkin:skip"), Button(button_label("pause_week"), "checkin:pause:7"),
              Button(button_label("stop"), "checkin:stop"), Button("Yes, check in", "checkin:on"))
    return checkin_buttons(), feeling_buttons() + others


class DiscordNotifier:
    """Sends one scheduled check-in to the user's DMs and says how it went."""

    def __init__(self, bot: HavenDiscord) -> None:
        self.bot = bot

    async def send_checkin(self, user: UserRef, text: str, buttons: tuple[Button, ...]) -> DeliveryResult:
        try:
            target = self.bot.get_user(int(user.user_id)) or await self.bot.fetch_user(int(user.user_id))
            await send_text(target, text, view=self.bot.action_view(buttons) if buttons else None)
        except (discord.Forbidden, discord.NotFound):
            # DMs closed, the bot blocked, or the account gone: switch their check-ins off.
            return DeliveryResult.blocked()
        except discord.RateLimited as exc:
            return DeliveryResult.retry_after(exc.retry_after)
        except discord.HTTPException as exc:
            if exc.status == 429:
                return DeliveryResult.retry_after(1.0)
            log.warning("check-in not sent user=%s error=%s status=%s", user.log_id, type(exc).__name__, exc.status)
            return DeliveryResult(DeliveryOutcome.FAILED)
        return DeliveryResult.delivered()


async def deliver_checkins(bot: HavenDiscord, client: object, stop: asyncio.Event) -> None:
    """The delivery worker for Discord, once the client is logged in (a send before that would fail)."""
    await bot.wait_until_ready()
    await CheckinDelivery(client, "discord", DiscordNotifier(bot)).run(stop)


async def stop_delivery(task: asyncio.Task[None], stop: asyncio.Event, wait_seconds: float = 5.0) -> None:
    stop.set()
    if not task.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), wait_seconds)
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def register_checkin_commands(tree: app_commands.CommandTree[HavenDiscord], bot: HavenDiscord) -> None:
    from bots.discord.client import discord_user, in_private_place

    def hidden(interaction: discord.Interaction) -> bool:
        return not in_private_place(interaction)

    async def not_here(interaction: discord.Interaction) -> bool:
        if bot.checkins is None:
            await respond(interaction, discord_text("checkin_not_enabled"), ephemeral=hidden(interaction))
            return True
        await interaction.response.defer(ephemeral=hidden(interaction), thinking=True)
        return False

    @tree.command(name="checkin", description=COMMAND_DESCRIPTIONS["checkin"])
    @app_commands.describe(setting=discord_text("checkin_hint"))
    async def checkin(interaction: discord.Interaction, setting: str = "") -> None:
        if await not_here(interaction):
            return
        assert bot.checkins is not None
        user = discord_user(interaction.user)
        reply = await checkin_command(bot.checkins, user, setting)
        await send_replies(bot, interaction, (reply,))
        log.info("checkin command user=%s", user.log_id)

    @tree.command(name="mood", description=COMMAND_DESCRIPTIONS["mood"])
    @app_commands.describe(entry=discord_text("mood_hint"))
    async def mood(interaction: discord.Interaction, entry: str = "") -> None:
        if await not_here(interaction):
            return
        assert bot.checkins is not None
        user = discord_user(interaction.user)
        answer = await mood_command(bot.checkins, user, entry, locale=_locale(interaction))
        replies: Sequence[Reply] = answer.replies
        if answer.chart_png is not None:
            first, *rest = replies
            await respond(interaction, first.text, ephemeral=hidden(interaction), view=bot.reply_view(first),
                          attachment=("mood.png", answer.chart_png))
            replies = rest
        await send_replies(bot, interaction, replies)
        log.info("mood command user=%s chart=%s", user.log_id, answer.chart_png is not None)

    @tree.command(name=ADMIN_COMMAND, description=COMMAND_DESCRIPTIONS[ADMIN_COMMAND])
    @app_commands.describe(command=discord_text("checkins_admin_hint"))
    async def checkins_admin_(interaction: discord.Interaction, command: str = "stats") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # counts are for the admin's eyes
        reply = await checkins_admin(bot.redis, discord_user(interaction.user), bot.admins, command)
        await respond(interaction, reply.text, ephemeral=True)


async def on_checkin_action(bot: HavenDiscord, interaction: discord.Interaction, action: str) -> None:
    """A check-in or mood button was pressed (from `HavenDiscord.on_action`); it acts for whoever pressed it."""
    from bots.discord.client import discord_user

    if bot.checkins is None:
        await respond(interaction, discord_text("checkin_not_enabled"), ephemeral=True)
        return
    # Acknowledge by taking the pressed message's buttons away, so a check-in cannot be answered twice.
    await interaction.response.edit_message(view=None)
    user = discord_user(interaction.user)
    replies = await checkin_action(bot.checkins, user, action, locale=_locale(interaction))
    if replies is None:
        log.info("unknown check-in button ignored user=%s", user.log_id)
        return
    await send_replies(bot, interaction, replies)
    log.info("check-in button user=%s kind=%s", user.log_id, action.split(":")[0])


def _locale(interaction: discord.Interaction) -> str | None:
    locale = getattr(interaction, "locale", None)
    return str(locale) if locale else None


async def send_replies(bot: HavenDiscord, interaction: discord.Interaction, replies: Sequence[Reply]) -> None:
    from bots.discord.client import in_private_place

    for reply in replies:
        await respond(interaction, display_text(reply.kind, reply.text), ephemeral=not in_private_place(interaction),
                      view=bot.reply_view(reply))
