"""How Haven's replies look on Telegram: plain text (no parse mode, so a model reply can never cause "can't
parse entities"), split under Telegram's 4096-character limit, buttons as an inline keyboard, and a reply that
streams by editing one message at a bounded rate while the model writes it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from bots.rendering import STREAM_EDIT_INTERVAL_SECONDS, TELEGRAM_MAX_CHARS, EditThrottle, split_message
from core.texts import load_yaml_mapping
from core.types import Button, Reply, ReplyKind

log = logging.getLogger(__name__)

# Telegram rejects an empty message; this stands in for a reply with no visible text.
_EMPTY_PLACEHOLDER = "…"
# Telegram shows "typing…" for about 5 seconds per chat action.
TYPING_REFRESH_SECONDS = 4.5
# Quick answers (commands, crisis replies) need no "typing…"; under flood limits each action would cost a
# place in the 30-per-second budget that replies need.
TYPING_DELAY_SECONDS = 0.4


def _lines() -> dict[str, Any]:
    return load_yaml_mapping("bots.telegram", "lines.yaml")


def line(key: str, **values: str) -> str:
    """One of the adapter's fixed lines (bots/telegram/lines.yaml), with `{placeholders}` filled in."""
    value = str(_lines()[key])
    return value.format(**values) if values else value


def line_table(key: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _lines()[key].items()}


def utf16_len(text: str) -> int:
    """Telegram counts a message's length in UTF-16 code units: an emoji outside the BMP counts twice."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clean(text: str) -> str:
    """Text Telegram accepts as-is: valid UTF-8, not blank."""
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return text if text.strip() else _EMPTY_PLACEHOLDER


def split_for_telegram(text: str, limit: int = TELEGRAM_MAX_CHARS) -> list[str]:
    """The shared split rules, then a second pass for pieces whose UTF-16 length still exceeds the limit."""
    pieces = [fitted for piece in split_message(clean(text), limit) for fitted in _fit_utf16(piece, limit)]
    return pieces or [_EMPTY_PLACEHOLDER]


def _fit_utf16(piece: str, limit: int) -> list[str]:
    if utf16_len(piece) <= limit:
        return [piece]
    chars = max(1, len(piece) * limit // utf16_len(piece))
    while True:  # ends: at one character a piece every piece fits (one code point is at most 2 units)
        pieces = split_message(piece, chars)
        if all(utf16_len(p) <= limit for p in pieces):
            return pieces
        chars = max(1, chars * 9 // 10)


def clip_for_preview(text: str, limit: int = TELEGRAM_MAX_CHARS) -> str:
    """While streaming, the placeholder shows the first piece only; the final reply is split properly."""
    return split_for_telegram(text, limit)[0]


def keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.action)] for b in buttons])


async def send_text(bot: Bot, chat_id: int, text: str, *, buttons: Sequence[Button] = (),
                    reply_to: int | None = None) -> list[Message]:
    """Send a complete text as one or more plain messages; buttons go under the last one."""
    pieces = split_for_telegram(text)
    sent = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        sent.append(await bot.send_message(
            chat_id, piece, reply_markup=keyboard(buttons) if last else None,
            reply_parameters=_reply_to(reply_to) if index == 0 else None))
    return sent


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    return None if message_id is None else ReplyParameters(message_id, allow_sending_without_reply=True)


def _not_modified(exc: BadRequest) -> bool:
    return "not modified" in exc.message.lower()


class StreamingReply:
    """The dialog manager's sink for one Telegram message: a complete message goes out as is; the streaming
    reply appears as one placeholder message edited in place at most once per interval; `finish` replaces
    it with the final text (split when long). Edits run in a background task so a slow or rate-limited
    edit never holds up the model."""

    def __init__(self, bot: Bot, chat_id: int, *, reply_to: int | None = None,
                 edit_interval_seconds: float = STREAM_EDIT_INTERVAL_SECONDS,
                 welcome: Reply | None = None) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.reply_to = reply_to
        self.welcome_override = welcome
        self._throttle = EditThrottle(edit_interval_seconds)
        self._interval = edit_interval_seconds
        self._last_edit_at: float | None = None
        self._latest = ""
        self._shown = ""
        self._message: Message | None = None
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._editor: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """True once some of the reply is visible (typing… is no longer needed)."""
        return self._message is not None

    # ---- the sink the dialog manager talks to --------------------------------------------------------------

    async def send(self, reply: Reply) -> None:
        if self.welcome_override is not None and reply.kind == ReplyKind.WELCOME:
            reply = self.welcome_override
        await send_text(self.bot, self.chat_id, reply.text, buttons=reply.buttons, reply_to=self.reply_to)

    async def partial(self, text_so_far: str) -> None:
        self._latest = clip_for_preview(text_so_far)
        self._changed.set()
        if self._editor is None:
            self._editor = asyncio.create_task(self._edit_loop(), name="telegram-stream-edits")

    # ---- the final reply ---------------------------------------------------------------------------------

    async def finish(self, reply: Reply) -> None:
        """Show `reply` in full: the placeholder becomes its first piece, further pieces are new messages."""
        await self._stop_editing()
        pieces = split_for_telegram(reply.text)
        markup = keyboard(reply.buttons)
        if self._message is not None:
            first, *rest = pieces
            await self._replace_placeholder(first, markup if not rest else None)
            pieces = rest
            reply_to = None
        else:
            reply_to = self.reply_to
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            await self.bot.send_message(self.chat_id, piece, reply_markup=markup if last else None,
                                        reply_parameters=_reply_to(reply_to) if index == 0 else None)

    async def _replace_placeholder(self, text: str, markup: InlineKeyboardMarkup | None) -> None:
        assert self._message is not None
        if text == self._shown and markup is None:
            return
        # The final edit keeps the same cadence as the progress edits (Telegram: about one per second per chat).
        await asyncio.sleep(self._next_edit_in())
        try:
            await self.bot.edit_message_text(text, self.chat_id, self._message.message_id, reply_markup=markup)
        except BadRequest as exc:
            if _not_modified(exc):
                return
            # The placeholder is gone (deleted by the user, too old to edit): send the text as a new message.
            log.info("stream placeholder not editable; sending anew error=%s", type(exc).__name__)
            await self.bot.send_message(self.chat_id, text, reply_markup=markup)

    async def abandon(self) -> None:
        """Stop the edit task without a final reply (the update failed)."""
        await self._stop_editing()

    async def _stop_editing(self) -> None:
        # Let an edit already on the wire finish (cancelling a send could leave a message we cannot track).
        self._closing.set()
        self._changed.set()
        if self._editor is not None:
            with contextlib.suppress(Exception):
                await self._editor

    async def _edit_loop(self) -> None:
        while True:
            await self._changed.wait()
            if self._closing.is_set():
                return
            wait = self._next_edit_in()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait)
                if self._closing.is_set():
                    return
            self._changed.clear()
            text = self._latest
            if not self._throttle.ready(text):
                continue
            self._throttle.mark(text)
            self._last_edit_at = time.monotonic()
            try:
                if self._message is None:
                    self._message = await self.bot.send_message(self.chat_id, text,
                                                                reply_parameters=_reply_to(self.reply_to))
                else:
                    await self.bot.edit_message_text(text, self.chat_id, self._message.message_id)
                self._shown = text
            except TelegramError as exc:  # a missed progress edit is harmless: the final text replaces it
                log.info("stream edit skipped error=%s", type(exc).__name__)

    def _next_edit_in(self) -> float:
        if self._last_edit_at is None:
            return 0.0
        return max(0.0, self._interval - (time.monotonic() - self._last_edit_at))


@contextlib.asynccontextmanager
async def typing_while(bot: Bot, chat_id: int, stream: StreamingReply | None = None,
                       refresh_seconds: float = TYPING_REFRESH_SECONDS,
                       delay_seconds: float = TYPING_DELAY_SECONDS) -> AsyncIterator[None]:
    """Show "typing…" once the answer takes longer than `delay_seconds`, until the block ends or the streamed
    reply becomes visible. An action already on the wire is let finish rather than cancelled, so it cannot
    arrive after the reply."""
    done = asyncio.Event()

    async def keep_typing() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), delay_seconds)
        while not done.is_set() and (stream is None or not stream.started):
            try:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            except TelegramError as exc:
                log.info("typing action failed error=%s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), refresh_seconds)

    task = asyncio.create_task(keep_typing(), name="telegram-typing")
    try:
        yield
    finally:
        done.set()
        try:
            await task
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:  # typing is decoration; it never costs the user the reply
            log.info("typing task failed error=%s", type(exc).__name__)
