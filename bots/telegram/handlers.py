"""Telegram handlers: each turns an update into a core call and renders what comes back. No business rule
lives here; what Haven says and remembers is the dialog manager's business.

Private chats are the main place. In groups Haven answers only messages aimed at it (a mention or a reply to
one of its messages); everything else is ignored before it reaches the core, so it is never stored or logged.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from datetime import UTC, datetime

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    MessageEntity,
    Update,
)
from telegram import User as TelegramUser
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bots.telegram.dedupe import UpdateDeduplicator
from bots.telegram.options import TelegramOptions
from bots.telegram.pending import LEASE_SECONDS, LOST_MESSAGE_LINE, PendingMessage, PendingMessages
from bots.telegram.render import StreamingReply, line, line_table, send_text, typing_while
from core.dialog import DialogManager
from core.errors import StoreError
from core.logs import redacted_traceback
from core.safety import known_countries
from core.texts import text
from core.types import IncomingMessage, Reply, ReplyKind, UserRef

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE

COMMANDS = ("start", "help", "resources", "country", "checkin", "mood", "forget", "export", "privacy")
# In the menu with the others, handled by bots/telegram/checkins.py.
_ELSEWHERE = frozenset({"checkin", "mood"})

# Only new messages: an edited message was already answered (or ignored) when it first arrived.
_NEW = filters.UpdateType.MESSAGE
_NON_TEXT = (filters.Sticker.ALL | filters.VOICE | filters.VIDEO_NOTE | filters.AUDIO | filters.PHOTO
             | filters.VIDEO | filters.ANIMATION | filters.Document.ALL | filters.LOCATION | filters.CONTACT)
# In groups, remember whom Haven already pointed to a private chat, so the hint comes once, not every reply.
_GROUP_HINTS_REMEMBERED = 10_000
_COUNTRY_BUTTONS_PER_ROW = 4


def user_ref(user: TelegramUser) -> UserRef:
    return UserRef("telegram", str(user.id))


def readable(words: str) -> str:
    """The text as valid Unicode: a JSON "\\ud83d" escape decodes to a lone surrogate, which no encoder (Redis,
    hashing, logging) accepts; it becomes U+FFFD instead of failing the whole update."""
    return words.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def bot_commands() -> list[BotCommand]:
    descriptions = line_table("commands")
    return [BotCommand(name, descriptions[name]) for name in COMMANDS]


class TelegramHandlers:
    # How long a crashed worker's unanswered messages wait before another worker answers or apologises.
    pending_lease_seconds: float = LEASE_SECONDS

    def __init__(self, manager: DialogManager, dedupe: UpdateDeduplicator, options: TelegramOptions) -> None:
        self.manager = manager
        self.dedupe = dedupe
        self.options = options
        # Conversation messages being answered, so one lost to a crash is answered or apologised for later.
        self.pending = PendingMessages(dedupe.redis, lease_seconds=self.pending_lease_seconds)
        self._notices_to_retry: list[PendingMessage] = []
        self._group_hinted: OrderedDict[tuple[int, int], None] = OrderedDict()

    def register(self, app: Application) -> None:  # type: ignore[type-arg]
        app.add_handler(TypeHandler(Update, self.drop_duplicates), group=-1)
        private = filters.ChatType.PRIVATE
        groups = filters.ChatType.GROUPS
        for name in COMMANDS:
            if name in _ELSEWHERE:
                continue
            app.add_handler(CommandHandler(name, getattr(self, f"command_{name}"), filters=_NEW))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(MessageHandler(_NEW & private & filters.TEXT & ~filters.COMMAND, self.on_private_text))
        app.add_handler(MessageHandler(_NEW & groups & filters.TEXT & ~filters.COMMAND, self.on_group_text))
        app.add_handler(MessageHandler(_NEW & private & filters.COMMAND, self.on_unknown_command))
        app.add_handler(MessageHandler(_NEW & _NON_TEXT, self.on_non_text))
        app.add_error_handler(self.on_error)
        jobs = app.job_queue
        if jobs is None:
            log.warning("no job queue: messages lost to a crash will not be apologised for")
            return
        lease = self.pending.lease_seconds
        jobs.run_repeating(self.keep_lease, interval=lease / 3, first=0, name="pending-lease")
        # The first sweep waits out the lease of a worker that died just before this one started.
        jobs.run_repeating(self.sweep_lost_messages, interval=lease, first=lease + 0.5, name="pending-sweep")

    # ---- every update ------------------------------------------------------------------------------------

    async def drop_duplicates(self, update: Update, context: Context) -> None:
        if not await self.dedupe.claim(context.bot.id, update.update_id):
            user = update.effective_user
            if user is not None and await self.pending.redelivered(user.id, update.update_id) is not None:
                # Telegram redelivered a message whose first worker died before answering: answer it now.
                log.info("lost update answered after a restart update_id=%d", update.update_id)
                return
            log.info("duplicate update dropped update_id=%d", update.update_id)
            raise ApplicationHandlerStop

    # ---- conversation --------------------------------------------------------------------------------------

    async def on_private_text(self, update: Update, context: Context) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        await self._converse(update, context, readable(message.text), in_group=False)

    async def on_group_text(self, update: Update, context: Context) -> None:
        message = update.effective_message
        assert message is not None
        words = self._aimed_at_bot(message, context)
        if words is None:
            return  # not for Haven: not passed on, not stored, not logged
        await self._converse(update, context, words, in_group=True)

    async def _converse(self, update: Update, context: Context, words: str, *, in_group: bool) -> None:
        chat, user, message = update.effective_chat, update.effective_user, update.effective_message
        assert chat is not None and user is not None and message is not None
        link = self._private_link(context)
        stream = StreamingReply(
            context.bot, chat.id,
            reply_to=message.message_id if in_group else None,
            edit_interval_seconds=self.options.edit_interval_seconds,
            # A consent question in a group could be answered by anyone: ask it in the private chat instead.
            welcome=Reply(ReplyKind.NOTICE, line("group_welcome", link=link)) if in_group else None,
        )
        # A group conversation is public: the core keeps it apart from the private one.
        incoming = IncomingMessage(user_ref(user), words, str(chat.id), user.language_code, public=in_group)
        await self.pending.accept(user.id, update.update_id, chat.id, message.message_id)
        try:
            async with typing_while(context.bot, chat.id, stream, self.options.typing_refresh_seconds,
                                    self.options.typing_delay_seconds):
                reply = await self.manager.handle(incoming, stream)
            if not reply.text.strip():
                # The core chose to stay quiet (a flood already told once to slow down): nothing to show.
                log.info("no reply needed user=%s kind=%s", incoming.user.log_id, reply.kind)
                await self.pending.done(user.id, update.update_id)
                return
            if in_group and self._first_group_reply(chat.id, user.id):
                reply = Reply(reply.kind, reply.text + "\n\n" + line("group_hint", link=link), reply.buttons)
            await stream.finish(reply)
        finally:
            await stream.abandon()
        # Only once the reply is out: a crash before this line leaves the record for a redelivery or the sweep.
        await self.pending.done(user.id, update.update_id)
        log.info("replied user=%s kind=%s group=%s", incoming.user.log_id, reply.kind, in_group)

    def _aimed_at_bot(self, message: Message, context: Context) -> str | None:
        """The message text without the mention if it is aimed at Haven, else None."""
        bot = context.bot
        replied = message.reply_to_message
        aimed = replied is not None and replied.from_user is not None and replied.from_user.id == bot.id
        handle = f"@{bot.username}".lower()
        for entity, value in message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION]).items():
            if (entity.type == MessageEntity.MENTION and value.lower() == handle) or (
                    entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot.id):
                aimed = True
        if not aimed:
            return None
        return re.sub(re.escape(handle), "", readable(message.text or ""), flags=re.IGNORECASE).strip()

    def _first_group_reply(self, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        if key in self._group_hinted:
            return False
        self._group_hinted[key] = None
        while len(self._group_hinted) > _GROUP_HINTS_REMEMBERED:
            self._group_hinted.popitem(last=False)
        return True

    @staticmethod
    def _private_link(context: Context) -> str:
        return f"https://t.me/{context.bot.username}"

    async def on_non_text(self, update: Update, context: Context) -> None:
        message, chat = update.effective_message, update.effective_chat
        assert message is not None and chat is not None
        in_group = chat.type != ChatType.PRIVATE
        if in_group and self._aimed_at_bot(message, context) is None:
            return
        kinds = line_table("non_text_kinds")
        kind = next((kinds[name] for name in ("sticker", "voice", "video_note", "audio", "photo", "video",
                                              "animation", "document", "location", "contact")
                     if getattr(message, name, None)), kinds["other"])
        await send_text(context.bot, chat.id, line("non_text", kind=kind),
                        reply_to=message.message_id if in_group else None)

    # ---- commands ------------------------------------------------------------------------------------------

    async def command_start(self, update: Update, context: Context) -> None:
        chat = update.effective_chat
        assert chat is not None
        if chat.type != ChatType.PRIVATE:
            await self._reply(update, context, line("group_welcome", link=self._private_link(context)))
            return
        welcome = self.manager.welcome()
        await send_text(context.bot, chat.id, welcome.text, buttons=welcome.buttons)

    async def command_help(self, update: Update, context: Context) -> None:
        await self._reply(update, context, text("help"))

    async def command_privacy(self, update: Update, context: Context) -> None:
        await self._reply(update, context, text("privacy"))

    async def command_resources(self, update: Update, context: Context) -> None:
        assert update.effective_user is not None
        reply = await self.manager.resources(user_ref(update.effective_user))
        await self._reply(update, context, reply.text)

    async def command_country(self, update: Update, context: Context) -> None:
        if await self._private_only(update, context):
            return
        assert update.effective_user is not None and update.effective_chat is not None
        if context.args:
            reply = await self.manager.set_country(user_ref(update.effective_user), readable(context.args[0]))
            await self._reply(update, context, reply.text)
            return
        codes = sorted(known_countries())
        rows = [[InlineKeyboardButton(code, callback_data=f"country:{code}") for code in codes[i:i + n]]
                for n in (_COUNTRY_BUTTONS_PER_ROW,) for i in range(0, len(codes), n)]
        await context.bot.send_message(update.effective_chat.id, line("country_ask"),
                                       reply_markup=InlineKeyboardMarkup(rows) if rows else None)

    async def command_forget(self, update: Update, context: Context) -> None:
        if await self._private_only(update, context):
            return
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id, line("forget_confirm"), reply_markup=(
            InlineKeyboardMarkup([[InlineKeyboardButton(line("forget_yes_button"), callback_data="forget:yes"),
                                   InlineKeyboardButton(line("forget_no_button"), callback_data="forget:no")]])))

    async def command_export(self, update: Update, context: Context) -> None:
        if await self._private_only(update, context):
            return
        user, chat = update.effective_user, update.effective_chat
        assert user is not None and chat is not None
        try:
            data = await self.manager.export(user_ref(user))
        except StoreError:
            await send_text(context.bot, chat.id, text("store_trouble"))
            return
        payload = json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8")
        name = f"haven-export-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
        await context.bot.send_document(chat.id, InputFile(payload, filename=name), caption=line("export_caption"))
        log.info("export sent user=%s bytes=%d", user_ref(user).log_id, len(payload))

    async def on_unknown_command(self, update: Update, context: Context) -> None:
        await self._reply(update, context, line("unknown_command"))

    async def _private_only(self, update: Update, context: Context) -> bool:
        """Commands about a user's own data run only in the private chat, where nobody else sees them."""
        chat = update.effective_chat
        if chat is not None and chat.type != ChatType.PRIVATE:
            await self._reply(update, context, line("group_private_only", link=self._private_link(context)))
            return True
        return False

    async def _reply(self, update: Update, context: Context, reply_text: str) -> None:
        chat, message = update.effective_chat, update.effective_message
        assert chat is not None
        in_group = chat.type != ChatType.PRIVATE
        await send_text(context.bot, chat.id, reply_text,
                        reply_to=message.message_id if in_group and message is not None else None)

    # ---- buttons -------------------------------------------------------------------------------------------

    async def on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()  # stop the button's spinner at once; the answer follows as a message
        chat = query.message.chat if query.message is not None else None
        if chat is None or chat.type != ChatType.PRIVATE:
            return  # Haven only shows buttons in private chats; a stale or forged press elsewhere does nothing
        user = user_ref(query.from_user)
        action, _, value = (query.data or "").partition(":")
        if action == "consent" and value in {"yes", "no"}:
            reply = await self.manager.set_consent(user, value == "yes")
        elif action == "forget" and value in {"yes", "no"}:
            reply = (await self.manager.forget(user) if value == "yes"
                     else Reply(ReplyKind.NOTICE, line("forget_cancelled")))
        elif action == "country" and value:
            reply = await self.manager.set_country(user, value)
        else:
            log.info("unknown button ignored user=%s", user.log_id)
            return
        # The question is answered: take its buttons away so it cannot be answered twice by mistake.
        try:
            await query.edit_message_reply_markup(None)
        except BadRequest as exc:
            log.info("buttons not removed error=%s", type(exc).__name__)
        await send_text(context.bot, chat.id, reply.text, buttons=reply.buttons)
        log.info("button handled user=%s action=%s", user.log_id, action)

    # ---- messages lost to a crash ------------------------------------------------------------------------

    async def keep_lease(self, context: Context) -> None:
        await self.pending.heartbeat()

    async def sweep_lost_messages(self, context: Context) -> None:
        """Tell each user whose message a dead worker had accepted but not answered (and Telegram did not
        redeliver to this one) that it was lost, so they can send it again."""
        retries, self._notices_to_retry = self._notices_to_retry, []
        for lost in retries + await self.pending.orphans():
            in_group = lost.chat_id != lost.user_id
            try:
                await send_text(context.bot, lost.chat_id, LOST_MESSAGE_LINE,
                                reply_to=lost.message_id if in_group else None)
            except Forbidden:
                log.info("lost-message notice not deliverable: chat unreachable")
            except TelegramError as exc:
                # Keep the record (this worker owns it now) and try again at the next sweep.
                log.warning("lost-message notice not delivered error=%s", type(exc).__name__)
                self._notices_to_retry.append(lost)
                continue
            await self.pending.done(lost.user_id, lost.update_id)
            log.info("lost message apologised for user=%s", UserRef("telegram", str(lost.user_id)).log_id)

    # ---- the one error handler -----------------------------------------------------------------------------

    async def on_error(self, update: object, context: Context) -> None:
        error = context.error
        update_id = update.update_id if isinstance(update, Update) else None
        try:
            await self._report_error(update, context, error, update_id)
        finally:
            # The user was answered (with the error line) or cannot be reached: nothing is pending any more.
            user = update.effective_user if isinstance(update, Update) else None
            if user is not None and update_id is not None:
                await self.pending.done(user.id, update_id)

    async def _report_error(self, update: object, context: Context, error: Exception | None,
                            update_id: int | None) -> None:
        if isinstance(error, Forbidden):
            # The user blocked Haven or left: stop talking to them rather than retrying.
            log.info("chat unreachable update_id=%s error=Forbidden", update_id)
            return
        log.error("update failed update_id=%s error=%s\n%s", update_id, type(error).__name__,
                  redacted_traceback(error) if error is not None else "")
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            return
        try:
            await context.bot.send_message(chat.id, line("error"))
        except TelegramError as exc:
            log.error("error line not delivered update_id=%s error=%s", update_id, type(exc).__name__)
