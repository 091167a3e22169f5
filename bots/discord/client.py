"""The Discord client: which messages are aimed at Haven, and the one place failures are reported.

DMs are the main place. In a server Haven answers only when mentioned, or in a thread the user opened and
called Haven into; everything else is ignored and never reaches the core (so it is never stored). Each user has
their own context wherever they write. None of this needs the privileged `message_content` intent: Discord
gives an app the text of DMs, of messages that mention it, and of its slash commands.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands

from bots.checkin_commands import is_checkin_action
from bots.discord.alerts import start_crisis_alerts, stop_crisis_alerts
from bots.discord.checkins import on_checkin_action, persistent_checkin_buttons
from bots.discord.render import MAX_RATE_LIMIT_WAIT_SECONDS, NO_MENTIONS, StreamedReply, respond, send_text
from bots.discord.texts import discord_text
from bots.discord.tools import on_tool_action
from bots.discord.views import OPEN_DM_ACTION, ActionView
from bots.rendering import EditThrottle
from core.checkins import CheckinService
from core.dialog import DialogManager
from core.logs import redacted_traceback
from core.safety.alerts import RunningAlerts
from core.texts import text
from core.types import Button, IncomingMessage, Reply, UserRef

log = logging.getLogger(__name__)

# In-memory bookkeeping is bounded: after this many entries the oldest are forgotten.
_REMEMBERED = 10_000


def default_intents() -> discord.Intents:
    """Guilds, guild messages and DMs; none of the privileged intents (message_content, members, presences)."""
    intents = discord.Intents.default()
    intents.message_content = False
    intents.members = False
    intents.presences = False
    return intents


def readable(words: str) -> str:
    """The text as valid Unicode: a lone surrogate (a JSON "\\ud83d" escape decodes to one) becomes U+FFFD
    instead of failing in Redis, hashing or logging."""
    return words.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def discord_user(user: discord.abc.User) -> UserRef:
    return UserRef("discord", str(user.id))


def in_private_place(interaction: discord.Interaction) -> bool:
    """True only in the user's own DM with Haven. Everywhere else (servers, group DMs, other people's DMs
    when Haven is a user-installed app) answers are ephemeral: only the user sees them."""
    context = interaction.context
    return (interaction.guild_id is None and context.dm_channel
            and not context.guild and not context.private_channel)


class HavenDiscord(discord.Client):
    """Haven on Discord. Build it with `build_bot`; the slash commands live in `bots.discord.commands`."""

    def __init__(self, manager: DialogManager, *, intents: discord.Intents | None = None,
                 sync_commands: bool = False, edit_throttle: Callable[[], EditThrottle] = EditThrottle,
                 checkins: CheckinService | None = None, redis: Any = None,
                 admins: frozenset[tuple[str, str]] = frozenset(), **options: Any) -> None:
        super().__init__(
            intents=intents or default_intents(),
            allowed_mentions=NO_MENTIONS,  # the client-wide default too, for any send that forgets it
            max_messages=None,  # keep no cache of channel messages: Haven reads only what is aimed at it
            max_ratelimit_timeout=MAX_RATE_LIMIT_WAIT_SECONDS,  # longer waits surface as RateLimited: retried
            **options,
        )
        self.manager = manager
        self.checkins = checkins  # check-ins and moods; None: /checkin and /mood say they are not on here
        self.redis = redis  # for the admins' /checkins_admin
        self.admins = admins
        self.sync_commands = sync_commands
        self.edit_throttle = edit_throttle
        self.tree = app_commands.CommandTree(
            self,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
        )
        self.tree.error(self._on_app_command_error)
        self._threads_with_haven: OrderedDict[int, None] = OrderedDict()
        self._dm_offered: OrderedDict[int, None] = OrderedDict()
        self.crisis_alerts: RunningAlerts | None = None  # HAVEN_CRISIS_ALERTS: DMs to the Discord admins

        from bots.discord.commands import register_commands

        register_commands(self.tree, self)

    async def setup_hook(self) -> None:
        # Persistent buttons: clicks on consent/DM-offer messages sent before a restart still arrive.
        self.add_view(self.action_view(self.manager.welcome().buttons))
        self.add_view(self.dm_offer_view())
        if self.checkins is not None:  # a check-in sent before a restart can still be answered
            for buttons in persistent_checkin_buttons():
                self.add_view(self.action_view(buttons))
        if self.sync_commands:
            await self.tree.sync()
        self.crisis_alerts = self.crisis_alerts or start_crisis_alerts(self)

    async def close(self) -> None:
        await stop_crisis_alerts(self.crisis_alerts)  # while still logged in: queued alerts can go out
        self.crisis_alerts = None
        await super().close()

    # ---- messages ----------------------------------------------------------------------------------------------

    def aimed_text(self, message: discord.Message) -> str | None:
        """The words meant for Haven, or None when the message is not aimed at Haven."""
        me = self.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return None
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return None
        if isinstance(message.channel, discord.DMChannel):
            return message.content
        if message.guild is None:
            return None  # a group DM: not a place Haven talks
        mentioned = any(user.id == me.id for user in message.mentions)
        channel = message.channel
        if isinstance(channel, discord.Thread) and channel.owner_id == message.author.id:
            if mentioned:
                _remember(self._threads_with_haven, channel.id)
            elif channel.id in self._threads_with_haven:
                # Without the message_content intent Discord sends this text empty; then stay quiet.
                return message.content.strip() or None
        if not mentioned:
            return None
        return re.sub(rf"<@!?{me.id}>", "", message.content).strip()

    async def on_message(self, message: discord.Message) -> None:
        words = self.aimed_text(message)
        if words is None:
            return
        words = readable(words)
        user = discord_user(message.author)
        in_server = message.guild is not None
        stream = StreamedReply(message.channel, reference=message if in_server else None, view_for=self.reply_view,
                               throttle=self.edit_throttle())
        try:
            async with stream:
                reply = await self.manager.handle(
                    IncomingMessage(user, words, chat_id=str(message.channel.id), public=in_server), stream)
                await stream.finish(reply)
        except Exception as exc:
            await self.report_failure(exc, "message", user, tell=lambda line: send_text(message.channel, line))
            return
        if in_server:
            try:
                await self.offer_dm(message)
            except Exception as exc:  # the reply itself arrived; a missing offer needs no apology
                await self.report_failure(exc, "dm offer", user)

    async def offer_dm(self, message: discord.Message) -> None:
        """Once per user (per process): say the channel is public and offer a private conversation."""
        if message.author.id in self._dm_offered:
            return
        _remember(self._dm_offered, message.author.id)
        await send_text(message.channel, discord_text("dm_offer"), view=self.dm_offer_view())

    # ---- buttons -------------------------------------------------------------------------------------------------

    def action_view(self, buttons: tuple[Button, ...]) -> ActionView:
        return ActionView(buttons, self.on_action, self.report_interaction_failure)

    def reply_view(self, reply: Reply) -> ActionView | None:
        return self.action_view(reply.buttons) if reply.buttons else None

    def dm_offer_view(self) -> ActionView:
        return self.action_view((Button(discord_text("dm_offer_button"), OPEN_DM_ACTION),))

    async def on_action(self, interaction: discord.Interaction, action: str) -> None:
        """A button press; it always acts for the user who pressed it."""
        user = discord_user(interaction.user)
        private = in_private_place(interaction)
        if action in {"consent:yes", "consent:no"}:
            await interaction.response.defer(ephemeral=not private, thinking=True)
            reply = await self.manager.set_consent(user, action == "consent:yes")
            await respond(interaction, reply.text, ephemeral=not private)
        elif action.startswith("tool:"):
            await on_tool_action(self, interaction, action)
        elif is_checkin_action(action):
            await on_checkin_action(self, interaction, action)
        elif action == OPEN_DM_ACTION:
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                await send_text(interaction.user, discord_text("dm_hello"))
            except discord.Forbidden:
                await respond(interaction, discord_text("dm_closed"), ephemeral=True)
            else:
                await respond(interaction, discord_text("dm_opened"), ephemeral=True)
        else:
            log.warning("unknown button action user=%s", user.log_id)
            await respond(interaction, text("fallback"), ephemeral=True)

    # ---- the one error handler ------------------------------------------------------------------------------

    async def report_failure(self, exc: BaseException, where: str, user: UserRef | None, *,
                             tell: Any = None) -> None:
        """Log where it failed (frames and exception types, not what the exceptions said: their messages can
        quote a user's words) and tell the user something kind and true."""
        log.error("discord %s failed user=%s error=%s\n%s", where, user.log_id if user else "-",
                  type(exc).__name__, redacted_traceback(exc))
        if tell is None:
            return
        try:
            await tell(text("fallback"))
        except Exception as second:  # Discord itself is failing; the log line above is all we can do
            log.error("discord %s: could not tell the user either user=%s error=%s", where,
                      user.log_id if user else "-", type(second).__name__)

    async def report_interaction_failure(self, interaction: discord.Interaction, exc: Exception,
                                         where: str) -> None:
        await self.report_failure(exc, where, discord_user(interaction.user),
                                  tell=lambda line: respond(interaction, line, ephemeral=True))

    async def _on_app_command_error(self, interaction: discord.Interaction,
                                    error: app_commands.AppCommandError) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        name = interaction.command.name if interaction.command else "?"
        await self.report_interaction_failure(interaction, cause, f"/{name}")

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            await self.report_failure(exc, f"event {event_method}", None)


def _remember(entries: OrderedDict[int, None], key: int) -> None:
    entries[key] = None
    entries.move_to_end(key)
    while len(entries) > _REMEMBERED:
        entries.popitem(last=False)
