"""How Haven's replies look and travel on Discord: every send pings nobody, model text has its mentions
defused, a streamed reply edits one message at a bounded rate, long replies are split at 2000 characters on
paragraph/sentence boundaries (the shared rules in `bots.rendering`), and a failed send is retried, then raised
so the adapter's one error handler can tell the user and log it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import discord

from bots.rendering import DISCORD_MAX_CHARS, EditThrottle, split_message
from core.types import Reply, ReplyKind

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every message Haven sends: no @everyone/@here, no roles, no users, no reply ping. A model reply (or a user's
# own words echoed back) must never notify anyone.
NO_MENTIONS = discord.AllowedMentions.none()

# Transient failures (429 the library gave up waiting on, 5xx) are retried after these pauses; then the error
# goes to the adapter's error handler, which reports it. Tests shorten them.
RETRY_DELAYS_SECONDS: tuple[float, ...] = (0.5, 2.0)
# A rate limit longer than this is not waited out inside one reply.
MAX_RATE_LIMIT_WAIT_SECONDS = 30.0
# Discord shows "typing…" for about 10 s per trigger; refresh it until the first words appear.
TYPING_REFRESH_SECONDS = 8.0
# Shown at the end of a streamed preview that is longer than one Discord message (the final split replaces it).
_MORE = " …"


def display_text(kind: ReplyKind | None, text: str) -> str:
    """What Discord shows for a reply. Model-written text (kind CHAT, or a stream in progress: None) gets its
    mention syntax defused as well, so even a client that ignored `allowed_mentions` would ping nobody.
    Markdown is left as written: Discord never rejects a message for its Markdown, and the fixed texts use it."""
    if kind in (None, ReplyKind.CHAT):
        return discord.utils.escape_mentions(text)
    return text


def _transient(exc: Exception) -> float | None:
    """How long to wait before retrying `exc`, or None when retrying cannot help (403, 404, 400…)."""
    if isinstance(exc, discord.RateLimited):
        return min(exc.retry_after, MAX_RATE_LIMIT_WAIT_SECONDS)
    if isinstance(exc, discord.HTTPException) and (exc.status == 429 or exc.status >= 500):
        return 0.0
    return None


async def with_retry(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Run one Discord call; retry transient failures a bounded number of times, then raise."""
    delays = RETRY_DELAYS_SECONDS
    for attempt in range(len(delays) + 1):
        try:
            return await call()
        except (discord.HTTPException, discord.RateLimited) as exc:
            wait = _transient(exc)
            if wait is None or attempt == len(delays):
                raise
            log.warning("discord %s failed, retrying attempt=%d error=%s status=%s", what, attempt + 1,
                        type(exc).__name__, getattr(exc, "status", None))
            await asyncio.sleep(max(wait, delays[attempt]))
    raise AssertionError("unreachable")


async def send_text(target: discord.abc.Messageable, text: str, *, view: discord.ui.View | None = None,
                    reference: discord.Message | None = None) -> discord.Message:
    """Send one message (at most 2000 characters), pinging nobody, retried on transient failures."""
    options: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
    if view is not None:
        options["view"] = view
    if reference is not None:
        # Answer the user's message in a busy channel; fail_if_not_exists=False: if they deleted it, still send.
        options["reference"] = reference.to_reference(fail_if_not_exists=False)
    return await with_retry(lambda: target.send(text, **options), "send")


async def send_reply(target: discord.abc.Messageable, reply: Reply, *, view: discord.ui.View | None = None,
                     reference: discord.Message | None = None) -> list[discord.Message]:
    """A complete reply as one or more messages; the buttons (if any) go on the last piece."""
    pieces = split_message(display_text(reply.kind, reply.text), DISCORD_MAX_CHARS)
    sent = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        sent.append(await send_text(target, piece, view=view if last else None,
                                    reference=reference if index == 0 else None))
    return sent


class StreamedReply:
    """The `ReplySink` for one message: shows "typing…", edits one placeholder message as the model writes
    (at most once per `EditThrottle` interval), then puts the final reply in its place, split when long."""

    def __init__(self, channel: discord.abc.Messageable, *, reference: discord.Message | None = None,
                 view_for: Callable[[Reply], discord.ui.View | None] = lambda reply: None,
                 throttle: EditThrottle | None = None) -> None:
        self.channel = channel
        self.reference = reference
        self.view_for = view_for
        self.throttle = throttle or EditThrottle()
        self.placeholder: discord.Message | None = None
        self._typing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamedReply:
        self._typing = asyncio.create_task(self._keep_typing())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop_typing()

    async def _keep_typing(self) -> None:
        while True:
            with contextlib.suppress(discord.HTTPException):  # a missing "typing…" is not worth failing over
                await self.channel.typing()
            await asyncio.sleep(TYPING_REFRESH_SECONDS)

    async def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing
            self._typing = None

    # ---- the ReplySink protocol -----------------------------------------------------------------------------

    async def send(self, reply: Reply) -> None:
        """A complete message before the main reply (the first-contact welcome, with its consent buttons)."""
        await send_reply(self.channel, reply, view=self.view_for(reply), reference=self.reference)

    async def partial(self, text_so_far: str) -> None:
        preview = self._preview(text_so_far)
        if not self.throttle.ready(preview):
            return
        self.throttle.mark(preview)
        try:
            if self.placeholder is None:
                await self._stop_typing()
                self.placeholder = await self.channel.send(preview, allowed_mentions=NO_MENTIONS,
                                                           **self._reference_option())
            else:
                await self.placeholder.edit(content=preview, allowed_mentions=NO_MENTIONS)
        except (discord.HTTPException, discord.RateLimited) as exc:
            # A preview edit that fails costs nothing: the final reply below is sent (with retries) anyway.
            log.info("discord stream preview skipped error=%s", type(exc).__name__)

    # ---- the end of the reply ----------------------------------------------------------------------------------

    async def finish(self, reply: Reply) -> list[discord.Message]:
        """Replace the streamed preview with the final text; any further pieces follow as new messages."""
        await self._stop_typing()
        pieces = split_message(display_text(reply.kind, reply.text), DISCORD_MAX_CHARS)
        view = self.view_for(reply)
        sent: list[discord.Message] = []
        for index, piece in enumerate(pieces):
            piece_view = view if index == len(pieces) - 1 else None
            if index == 0 and self.placeholder is not None:
                sent.append(await self._replace_placeholder(self.placeholder, piece, piece_view))
                continue
            reference = self.reference if index == 0 else None
            sent.append(await send_text(self.channel, piece, view=piece_view, reference=reference))
        return sent

    async def _replace_placeholder(self, placeholder: discord.Message, text: str,
                                   view: discord.ui.View | None) -> discord.Message:
        options: dict[str, Any] = {"content": text, "allowed_mentions": NO_MENTIONS}
        if view is not None:
            options["view"] = view
        try:
            edited = await with_retry(lambda: placeholder.edit(**options), "edit")
        except discord.NotFound:
            # Someone deleted the preview: the reply still has to arrive, so send it fresh.
            return await send_text(self.channel, text, view=view, reference=self.reference)
        return edited or placeholder

    def _preview(self, text_so_far: str) -> str:
        text = display_text(None, text_so_far)
        if len(text) <= DISCORD_MAX_CHARS:
            return text
        return split_message(text, DISCORD_MAX_CHARS - len(_MORE))[0] + _MORE

    def _reference_option(self) -> dict[str, Any]:
        if self.reference is None:
            return {}
        return {"reference": self.reference.to_reference(fail_if_not_exists=False)}


async def respond(interaction: discord.Interaction, text: str, *, ephemeral: bool,
                  view: discord.ui.View | None = None, attachment: tuple[str, bytes] | None = None) -> None:
    """Answer an interaction, whether or not it was acknowledged yet (deferred or answered): the first piece
    as the response, the rest as follow-ups. `attachment` is (filename, bytes), rebuilt for each attempt
    because discord.py closes a File once it has been sent."""
    pieces = split_message(text, DISCORD_MAX_CHARS) or [text]
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1

        def options(last: bool = last) -> dict[str, Any]:
            chosen: dict[str, Any] = {"ephemeral": ephemeral, "allowed_mentions": NO_MENTIONS}
            if last and view is not None:
                chosen["view"] = view
            if last and attachment is not None:
                chosen["file"] = discord.File(io.BytesIO(attachment[1]), filename=attachment[0])
            return chosen

        if not interaction.response.is_done():
            # The first answer must come within 3 s; it is not retried (a late retry would be refused anyway).
            await interaction.response.send_message(piece, **options())
        else:
            await with_retry(_follow_up(interaction, piece, options), "follow-up")


def _follow_up(interaction: discord.Interaction, piece: str,
               options: Callable[[], dict[str, Any]]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await interaction.followup.send(piece, **options())

    return call
