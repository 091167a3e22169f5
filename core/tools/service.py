"""`CopingTools`: the one object adapters and the dialog manager talk to about the coping tools.

    tools = CopingTools(redis, store, clock=clock)             # DialogManager(..., tools=tools) binds the chat
    reply = await tools.command(user, "safetyplan")             # a /command (arg: the rest of the line)
    reply = await tools.press(user, "tool:plan:skip:2")        # a button whose action starts with "tool:"
    reply = await tools.route(message)                          # the dialog manager, after the safety screen
    plan = await tools.on_crisis(user)                          # the dialog manager, for under a crisis reply

Store trouble never raises out of here: the person gets a kind line, and a crisis reply never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.clock import Clock, SystemClock
from core.errors import StoreError
from core.safety import resources_line
from core.store.base import ContextStore
from core.store.redis_store import AlongRead
from core.tools.exercises import BoxBreathing, Grounding, Send, Sleep, ThoughtRecord
from core.tools.flow import FLOW_TTL_SECONDS, Flows, flow_key, flow_state
from core.tools.form import ToolContext
from core.tools.journal import Journal
from core.tools.safety_plan import SafetyPlan
from core.tools.texts import line
from core.types import IncomingMessage, Reply, ReplyKind, UserRef

log = logging.getLogger(__name__)

TOOL_COMMANDS = ("safetyplan", "breathe", "ground", "reframe", "journal", "cancel")
# A crisis reply waits at most this long for the person's own plan; after that it goes without it.
CRISIS_PLAN_WAIT_SECONDS = 1.0

Chat = Callable[[IncomingMessage], Awaitable[Reply]]
_COMMAND_TOOL = {"safetyplan": "plan", "breathe": "breathe", "ground": "ground", "reframe": "reframe",
                 "journal": "journal", "cancel": "cancel"}
_JOURNAL_WORDS = {"list": "list", "read": "open", "open": "open", "delete": "del", "talk": "talk"}


class CopingTools:
    def __init__(self, client: Any, store: ContextStore | None = None, *, clock: Clock | None = None,
                 sleep: Sleep | None = None, default_country: str | None = None,
                 flow_ttl_seconds: int = FLOW_TTL_SECONDS, breathing: BoxBreathing | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.default_country = default_country
        self.flows = Flows(client, ttl_seconds=flow_ttl_seconds)
        self.plan = SafetyPlan(client, self.flows)
        self.journal = Journal(client, self.flows)
        self.reframe = ThoughtRecord(client, self.flows, self.journal)
        self.ground = Grounding(self.flows)
        self.breathing = breathing or BoxBreathing(client, self.clock, sleep or asyncio.sleep)
        self._chat: Chat | None = None

    def bind_chat(self, chat: Chat, *, default_country: str | None = None) -> None:
        """Where a journal entry goes when the person asks to talk about it (the dialog manager's handle), and
        the manager's default country for the helplines in the plan, unless these tools were given their own."""
        self._chat = chat
        self.default_country = self.default_country or default_country

    # ---- entry points -------------------------------------------------------------------------------------------

    async def command(self, user: UserRef, name: str, arg: str = "", *, send: Send | None = None,
                      locale: str | None = None) -> Reply:
        """A tool command (`TOOL_COMMANDS`, without the slash). `send` delivers breathing's timed messages."""
        name = name.lower().lstrip("/")
        words = arg.split()
        if name == "journal" and words:  # /journal list | read N | delete N | talk N
            verb = _JOURNAL_WORDS.get(words[0].lower())
            if verb:
                entry_id = words[1].lstrip("#") if len(words) > 1 else ""
                return await self.press(user, f"tool:journal:{verb}:{entry_id}", locale=locale) or _unknown()
        return await self.press(user, f"tool:{_COMMAND_TOOL.get(name, name)}", send=send,
                                locale=locale) or _unknown()

    async def press(self, user: UserRef, action: str, *, send: Send | None = None,
                    locale: str | None = None) -> Reply | None:
        """A `tool:<tool>[:<verb>[:<arg>]]` button; None when the action is not a tool's."""
        prefix, _, rest = action.partition(":")
        if prefix != "tool":
            return None
        tool, _, rest = rest.partition(":")
        verb, _, arg = rest.partition(":")
        try:
            ctx = await self._context(user, locale)
            return await self._dispatch(ctx, tool, verb, arg, send)
        except StoreError as exc:
            log.warning("tool unavailable user=%s tool=%s error=%s", user.log_id, tool, type(exc).__name__)
            return Reply(ReplyKind.NOTICE, line("store_trouble"))

    async def route(self, message: IncomingMessage, *, concern: bool = False) -> Reply | None:
        """The answer of the flow the person is in, or None when their message is for the conversation.
        Called after the safety screen, for private messages only. Writing anything ends a breathing run."""
        return await self.answer_flow(message, await self.flow_for_message(message.user), concern=concern)

    async def flow_for_message(self, user: UserRef) -> dict[str, Any] | None:
        """A private message from `user` arrived: end their breathing run, and return the state of the flow the
        message may answer (None: no flow, or Redis cannot say, and the message goes to the conversation).
        The dialog manager does the same with `end_breathing` and `flow_along`, in its context read's round trip."""
        await self.end_breathing(user)
        try:
            return await self.flows.get(user)
        except StoreError as exc:
            return self._no_flow(user, exc)

    def flow_along(self, user: UserRef) -> AlongRead[dict[str, Any] | None]:
        """`flow_for_message`'s read, sent in the same round trip as the message's context read (see `AlongRead`).
        The caller ends the breathing run with `end_breathing` alongside."""
        key = flow_key(user)

        def answer(replies: list[Any]) -> dict[str, Any] | None:
            return self._no_flow(user, replies[0]) if isinstance(replies[0], StoreError) else flow_state(replies[0])

        return AlongRead(lambda pipe: pipe.get(key), answer)

    async def end_breathing(self, user: UserRef) -> None:
        """A private message from `user` arrived: writing anything ends their breathing run."""
        if self.breathing.running(user):
            await self.breathing.stop(user)

    @staticmethod
    def _no_flow(user: UserRef, exc: StoreError) -> None:
        log.warning("flow unavailable user=%s error=%s", user.log_id, type(exc).__name__)
        return None

    async def answer_flow(self, message: IncomingMessage, state: dict[str, Any] | None, *,
                          concern: bool = False) -> Reply | None:
        """`route`, with the state already returned by `flow_for_message`."""
        user = message.user
        try:
            if state is None:
                return None
            ctx = await self._context(user, message.locale)
            handler = self._flow_handler(str(state["tool"]))
            if handler is None:
                await self.flows.clear(user)
                return None
            reply = await handler.answer(ctx, state, message.text.strip(), self.clock.now())
        except StoreError as exc:
            log.warning("flow unavailable user=%s error=%s", user.log_id, type(exc).__name__)
            return None
        log.info("flow answered user=%s tool=%s", user.log_id, state["tool"])
        if concern:
            reply = Reply(reply.kind, reply.text + "\n\n" + resources_line(ctx.country, message.locale), reply.buttons)
        return reply

    async def on_crisis(self, user: UserRef) -> str | None:
        """Pause any flow (the next message is for the conversation, not a form) and return the person's own
        safety plan for under the crisis reply. Never raises and never waits long."""
        try:
            async with asyncio.timeout(CRISIS_PLAN_WAIT_SECONDS):
                await self.breathing.stop(user)
                await self.flows.clear(user)
                return await self.plan.crisis_text(user)
        except (StoreError, TimeoutError) as exc:
            log.warning("own plan not shown with crisis reply user=%s error=%s", user.log_id, type(exc).__name__)
        except Exception:  # the crisis reply goes out whatever happens here
            log.exception("own plan failed with crisis reply user=%s", user.log_id)
        return None

    async def cancel(self, user: UserRef) -> Reply:
        breathing = await self.breathing.stop(user)
        flow = await self.flows.clear(user)
        if breathing and not flow:
            return Reply(ReplyKind.NOTICE, line("cancelled_breathing"))
        return Reply(ReplyKind.NOTICE, line("cancelled" if flow or breathing else "nothing_to_cancel"))

    def pacing(self, user: UserRef) -> asyncio.Task[None] | None:
        """The breathing run in progress for this person, if any (the console waits for it)."""
        return self.breathing.running(user)

    async def close(self) -> None:
        await self.breathing.close()

    # ---- inside ---------------------------------------------------------------------------------------------------

    async def _context(self, user: UserRef, locale: str | None) -> ToolContext:
        country, timezone = self.default_country, None
        if self.store is not None:
            with contextlib.suppress(StoreError):
                profile = await self.store.load_profile(user)
                country = profile.country or country
                timezone = profile.timezone
        return ToolContext(user, country, timezone, locale)

    def _flow_handler(self, tool: str) -> Any:
        return {"plan": self.plan, "reframe": self.reframe, "ground": self.ground, "journal": self.journal}.get(tool)

    async def _dispatch(self, ctx: ToolContext, tool: str, verb: str, arg: str, send: Send | None) -> Reply | None:
        now = self.clock.now()
        if tool == "cancel":
            return await self.cancel(ctx.user)
        if tool == "breathe":
            if verb == "stop":
                return await self.cancel(ctx.user)
            if send is None:
                return None
            await self.flows.clear(ctx.user)  # one thing at a time
            return await self.breathing.start(ctx.user, send)
        if tool == "journal":
            if not verb:
                return await self.journal.begin(ctx, now)
            if verb == "talk":
                return await self._talk_about(ctx, arg)
            return await self.journal.act(ctx, verb, arg, now)
        handler = self._flow_handler(tool)
        if handler is None:
            return None
        if not verb:
            await self.breathing.stop(ctx.user)
            return await handler.begin(ctx)  # type: ignore[no-any-return]
        return await handler.act(ctx, verb, arg, now)  # type: ignore[no-any-return]

    async def _talk_about(self, ctx: ToolContext, entry_id: str) -> Reply:
        words = await self.journal.talk_text(ctx.user, entry_id)
        if words is None:
            return await self.journal.show(ctx.user, entry_id)  # says it is not found
        if self._chat is None:
            return Reply(ReplyKind.NOTICE, line("unknown"))
        await self.flows.clear(ctx.user)
        log.info("journal entry brought into the conversation user=%s", ctx.user.log_id)
        return await self._chat(IncomingMessage(ctx.user, words, locale=ctx.locale))


def _unknown() -> Reply:
    return Reply(ReplyKind.NOTICE, line("unknown"))
