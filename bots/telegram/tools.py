"""The coping tools on Telegram: /safetyplan, /breathe, /ground, /reframe, /journal, /cancel and the buttons
whose callback data starts with "tool:". What each one does lives in core/tools; here an update becomes a
core call and the reply becomes a message with an inline keyboard. Private chats only: a plan or a journal
is nobody else's business, so in a group Haven asks to continue privately.

Registered before the general handlers (`build_application`), so these commands and buttons reach here first.
"""

from __future__ import annotations

import logging

from telegram import BotCommand, Update
from telegram.constants import ChatType
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters

from bots.telegram.render import send_text
from core.dialog import DialogManager
from core.tools import TOOL_COMMANDS
from core.tools.exercises import Send
from core.tools.texts import command_description, line
from core.types import Reply, UserRef

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE


def tool_bot_commands() -> list[BotCommand]:
    return [BotCommand(name, command_description(name)) for name in TOOL_COMMANDS]


class TelegramTools:
    def __init__(self, manager: DialogManager) -> None:
        self.manager = manager

    def register(self, app: Application) -> None:  # type: ignore[type-arg]
        for name in TOOL_COMMANDS:
            app.add_handler(CommandHandler(name, self.on_command, filters=filters.UpdateType.MESSAGE))
        app.add_handler(CallbackQueryHandler(self.on_button, pattern=r"^tool:"))

    @staticmethod
    def _sender(context: Context, chat_id: int) -> Send:
        async def send(reply: Reply) -> None:
            await send_text(context.bot, chat_id, reply.text, buttons=reply.buttons)

        return send

    async def on_command(self, update: Update, context: Context) -> None:
        chat, user, message = update.effective_chat, update.effective_user, update.effective_message
        assert chat is not None and user is not None and message is not None
        if chat.type != ChatType.PRIVATE:
            await send_text(context.bot, chat.id, line("private_only"), reply_to=message.message_id)
            return
        tools = self.manager.tools
        if tools is None:
            await send_text(context.bot, chat.id, line("store_trouble"))
            return
        name = (message.text or "").split()[0].lstrip("/").split("@")[0].lower()
        who = UserRef("telegram", str(user.id))
        reply = await tools.command(who, name, " ".join(context.args or ()), send=self._sender(context, chat.id),
                                    locale=user.language_code)
        await send_text(context.bot, chat.id, reply.text, buttons=reply.buttons)
        log.info("tool command user=%s command=%s", who.log_id, name)

    async def on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        chat = query.message.chat if query.message is not None else None
        tools = self.manager.tools
        if chat is None or chat.type != ChatType.PRIVATE or tools is None:
            return  # tool buttons are only ever shown in private chats
        who = UserRef("telegram", str(query.from_user.id))
        # Answered: take the buttons away, so a step cannot be answered twice by mistake.
        try:
            await query.edit_message_reply_markup(None)
        except BadRequest as exc:
            log.info("buttons not removed error=%s", type(exc).__name__)
        reply = await tools.press(who, query.data or "", send=self._sender(context, chat.id),
                                  locale=query.from_user.language_code)
        if reply is None:
            log.info("unknown tool button ignored user=%s", who.log_id)
            return
        await send_text(context.bot, chat.id, reply.text, buttons=reply.buttons)
        log.info("tool button user=%s tool=%s", who.log_id, (query.data or "").split(":")[1:2])
