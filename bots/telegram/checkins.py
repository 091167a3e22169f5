"""Check-ins and moods on Telegram: /checkin, /mood (the chart goes out with sendPhoto), /checkins_admin, the
buttons whose callback data starts with "mood:", "feel:" or "checkin:", and `TelegramNotifier`, which the
check-in delivery worker uses to send a scheduled check-in. Private chats only: a mood is nobody else's business.

Registered before the general handlers (`build_application`), so these commands and buttons reach here first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from telegram import Bot, InputFile, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters

from bots.checkin_commands import (
    ADMIN_COMMAND,
    checkin_action,
    checkin_command,
    checkins_admin,
    mood_command,
)
from bots.telegram.render import keyboard, line, send_text
from core.checkins import CheckinService, DeliveryOutcome, DeliveryResult
from core.types import Button, Reply, UserRef

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE

BUTTON_PATTERN = r"^(mood|feel|checkin):"
# Bad requests that mean the chat is gone for good, like a block: switch the user's check-ins off.
_GONE = ("chat not found", "user is deactivated", "bot was blocked", "peer_id_invalid")


class TelegramNotifier:
    """Sends one scheduled check-in to a user's private chat (chat id = user id) and says how it went."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send_checkin(self, user: UserRef, text: str, buttons: tuple[Button, ...]) -> DeliveryResult:
        try:
            await self.bot.send_message(int(user.user_id), text, reply_markup=keyboard(buttons))
        except Forbidden:
            return DeliveryResult.blocked()
        except RetryAfter as exc:
            wait = exc.retry_after
            return DeliveryResult.retry_after(wait.total_seconds() if isinstance(wait, timedelta) else float(wait))
        except BadRequest as exc:
            if any(reason in exc.message.lower() for reason in _GONE):
                return DeliveryResult.blocked()
            log.warning("check-in not sent user=%s error=BadRequest", user.log_id)
            return DeliveryResult(DeliveryOutcome.FAILED)
        except TelegramError as exc:
            # A timeout may have delivered it: not retried, as a double check-in is worse than a missing one.
            log.warning("check-in not sent user=%s error=%s", user.log_id, type(exc).__name__)
            return DeliveryResult(DeliveryOutcome.FAILED)
        return DeliveryResult.delivered()


class TelegramCheckins:
    def __init__(self, service: CheckinService | None, redis: Any, admins: Iterable[tuple[str, str]]) -> None:
        self.service = service
        self.redis = redis
        self.admins = frozenset(admins)

    def register(self, app: Application) -> None:  # type: ignore[type-arg]
        new = filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("checkin", self.command_checkin, filters=new))
        app.add_handler(CommandHandler("mood", self.command_mood, filters=new))
        app.add_handler(CommandHandler(ADMIN_COMMAND, self.command_admin, filters=new))
        app.add_handler(CallbackQueryHandler(self.on_button, pattern=BUTTON_PATTERN))

    # ---- commands ----------------------------------------------------------------------------------------

    async def command_checkin(self, update: Update, context: Context) -> None:
        who = await self._private_user(update, context)
        if who is None or self.service is None:
            return
        reply = await checkin_command(self.service, who, " ".join(context.args or ()))
        await self._send(context, who, (reply,))
        log.info("checkin command user=%s", who.log_id)

    async def command_mood(self, update: Update, context: Context) -> None:
        who = await self._private_user(update, context)
        if who is None or self.service is None:
            return
        user = update.effective_user
        answer = await mood_command(self.service, who, " ".join(context.args or ()),
                                    locale=user.language_code if user else None)
        replies: Sequence[Reply] = answer.replies
        if answer.chart_png is not None:
            first, *rest = replies
            await context.bot.send_photo(int(who.user_id), InputFile(answer.chart_png, filename="mood.png"),
                                         caption=first.text, reply_markup=keyboard(first.buttons))
            replies = rest
        await self._send(context, who, replies)
        log.info("mood command user=%s chart=%s", who.log_id, answer.chart_png is not None)

    async def command_admin(self, update: Update, context: Context) -> None:
        who = await self._private_user(update, context, needs_service=False)
        if who is None:
            return
        reply = await checkins_admin(self.redis, who, self.admins, " ".join(context.args or ()))
        await self._send(context, who, (reply,))

    async def _private_user(self, update: Update, context: Context, *,
                            needs_service: bool = True) -> UserRef | None:
        """The user, when this is their private chat and check-ins are on here; else says why not."""
        chat, user, message = update.effective_chat, update.effective_user, update.effective_message
        assert chat is not None and user is not None
        if chat.type != ChatType.PRIVATE:
            await send_text(context.bot, chat.id, line("group_private_only", link=f"https://t.me/{context.bot.username}"),
                            reply_to=message.message_id if message is not None else None)
            return None
        if needs_service and self.service is None:
            await send_text(context.bot, chat.id, line("not_enabled"))
        return UserRef("telegram", str(user.id))

    # ---- buttons -----------------------------------------------------------------------------------------

    async def on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        chat = query.message.chat if query.message is not None else None
        if chat is None or chat.type != ChatType.PRIVATE or self.service is None:
            return  # check-in buttons are only ever shown in private chats
        who = UserRef("telegram", str(query.from_user.id))
        # Answered: take the buttons away, so a check-in cannot be answered twice by mistake.
        try:
            await query.edit_message_reply_markup(None)
        except BadRequest as exc:
            log.info("buttons not removed error=%s", type(exc).__name__)
        replies = await checkin_action(self.service, who, query.data or "", locale=query.from_user.language_code)
        if replies is None:
            log.info("unknown check-in button ignored user=%s", who.log_id)
            return
        await self._send(context, who, replies)
        log.info("check-in button user=%s kind=%s", who.log_id, (query.data or "").split(":")[0])

    @staticmethod
    async def _send(context: Context, who: UserRef, replies: Iterable[Reply]) -> None:
        for reply in replies:
            await send_text(context.bot, int(who.user_id), reply.text, buttons=reply.buttons)
