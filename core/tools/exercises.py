"""Guided exercises: paced box breathing, 5-4-3-2-1 grounding, and a short CBT thought record.

Breathing sends its pace as timed messages from a background task, through a `send` callback the adapter
gives, sleeping with an injected sleeper (tests move a fake clock instead of waiting). It stops on /cancel, on
its Stop button, or when the person writes something else; the run id in Redis lets a /cancel handled by
another worker stop it too. Grounding keeps nothing the person writes. The thought record keeps its answers
for a few days so it can be finished later, then saved to the journal or let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from core.clock import Clock
from core.errors import StoreError
from core.tools.flow import Flows, breathing_key, guarded, reframe_key
from core.tools.form import FormData, StepForm, ToolContext
from core.tools.texts import fill, label, line, tool_data
from core.types import Button, Reply, ReplyKind, UserRef

if TYPE_CHECKING:
    from core.tools.journal import Journal

log = logging.getLogger(__name__)

Send = Callable[[Reply], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

BREATHING_ROUNDS = 4
BREATHING_PHASE_SECONDS = 4.0
# A moment between the invitation and the first "breathe in", so the invitation arrives first.
BREATHING_LEAD_IN_SECONDS = 3.0
REFRAME_DRAFT_TTL_SECONDS = 7 * 86400


def _texts(name: str) -> dict[str, Any]:
    return tool_data("exercises")[name]  # type: ignore[no-any-return]


class BoxBreathing:
    """In for 4, hold for 4, out for 4, hold for 4, a few rounds, one message per phase."""

    def __init__(self, client: Any, clock: Clock, sleep: Sleep, *, rounds: int = BREATHING_ROUNDS,
                 phase_seconds: float = BREATHING_PHASE_SECONDS,
                 lead_in_seconds: float = BREATHING_LEAD_IN_SECONDS) -> None:
        self.redis = client
        self.clock = clock
        self.sleep = sleep
        self.rounds = rounds
        self.phase_seconds = phase_seconds
        self.lead_in_seconds = lead_in_seconds
        self._runs: dict[UserRef, asyncio.Task[None]] = {}

    @property
    def total_seconds(self) -> float:
        return self.lead_in_seconds + self.rounds * len(_texts("breathing")["phases"]) * self.phase_seconds

    def running(self, user: UserRef) -> asyncio.Task[None] | None:
        task = self._runs.get(user)
        return task if task is not None and not task.done() else None

    async def start(self, user: UserRef, send: Send) -> Reply:
        texts = _texts("breathing")
        if self.running(user):
            return Reply(ReplyKind.NOTICE, str(texts["busy"]), (Button(label("stop"), "tool:breathe:stop"),))
        run_id = secrets.token_hex(6)
        await guarded(lambda: self.redis.set(breathing_key(user), run_id, ex=int(self.total_seconds) + 60))
        task = asyncio.create_task(self._pace(user, run_id, send), name=f"breathing-{user.log_id}")
        self._runs[user] = task
        task.add_done_callback(lambda done: self._runs.pop(user, None) if self._runs.get(user) is done else None)
        log.info("breathing started user=%s", user.log_id)
        return Reply(ReplyKind.NOTICE, str(texts["intro"]), (Button(label("stop"), "tool:breathe:stop"),))

    async def stop(self, user: UserRef) -> bool:
        """Stop this person's exercise, here or in another worker. True if one was running."""
        task = self._runs.pop(user, None)
        stopped = task is not None and not task.done()
        if task is not None:
            task.cancel()
        # On store trouble the local task is stopped anyway; another worker's stops at its TTL.
        with contextlib.suppress(StoreError):
            stopped = bool(await guarded(lambda: self.redis.delete(breathing_key(user)))) or stopped
        if stopped:
            log.info("breathing stopped user=%s", user.log_id)
        return stopped

    async def _still_on(self, user: UserRef, run_id: str) -> bool:
        try:
            return bool(await guarded(lambda: self.redis.get(breathing_key(user))) == run_id)
        except StoreError:
            return True  # Redis trouble is no reason to break off someone's breathing

    async def _pace(self, user: UserRef, run_id: str, send: Send) -> None:
        texts = _texts("breathing")
        phases = [str(p) for p in texts["phases"]]
        try:
            await self.sleep(self.lead_in_seconds)
            for round_number in range(1, self.rounds + 1):
                for index, phase in enumerate(phases):
                    if not await self._still_on(user, run_id):
                        return
                    shown = (fill(texts["round"], round=round_number, rounds=self.rounds) + "\n" + phase
                             if index == 0 else phase)
                    await send(Reply(ReplyKind.NOTICE, shown))
                    await self.sleep(self.phase_seconds)
            if not await self._still_on(user, run_id):
                return
            await send(Reply(ReplyKind.NOTICE, str(texts["closing"]), (
                Button(label("again"), "tool:breathe"), Button(label("ground"), "tool:ground"))))
            await guarded(lambda: self.redis.delete(breathing_key(user)))
            log.info("breathing finished user=%s", user.log_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a message that cannot be delivered ends the exercise quietly
            log.warning("breathing ended early user=%s error=%s", user.log_id, type(exc).__name__)

    async def close(self) -> None:
        tasks = list(self._runs.values())
        self._runs.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Grounding:
    """5-4-3-2-1: one sense at a time. Answers are acknowledged and never stored."""

    tool = "ground"

    def __init__(self, flows: Flows) -> None:
        self.flows = flows

    def _step(self, index: int, lead: str = "") -> Reply:
        texts = _texts("grounding")
        body = fill(texts["step_heading"], number=index + 1) + "\n" + str(texts["steps"][index])
        return Reply(ReplyKind.NOTICE, (lead + "\n\n" if lead else "") + body, (
            Button(str(texts["next"]), f"tool:ground:next:{index}"), Button(label("stop"), "tool:ground:stop")))

    async def begin(self, ctx: ToolContext) -> Reply:
        state = await self.flows.get(ctx.user)
        if state and state.get("tool") == self.tool and 0 < int(state.get("step", 0)) < 5:
            return self._step(int(state["step"]))  # still under way: carry on where it was
        await self.flows.set(ctx.user, tool=self.tool, step=0)
        return self._step(0, str(_texts("grounding")["intro"]))

    async def _advance(self, ctx: ToolContext, index: int, lead: str = "") -> Reply:
        if index + 1 >= len(_texts("grounding")["steps"]):
            await self.flows.clear(ctx.user)
            closing = str(_texts("grounding")["closing"])
            return Reply(ReplyKind.NOTICE, (lead + " " if lead else "") + closing)
        await self.flows.set(ctx.user, tool=self.tool, step=index + 1)
        return self._step(index + 1, lead)

    async def answer(self, ctx: ToolContext, state: dict[str, Any], words: str, now: float) -> Reply:
        index = int(state.get("step", 0))
        acks = _texts("grounding")["ack"]
        return await self._advance(ctx, index, str(acks[index % len(acks)]))

    async def act(self, ctx: ToolContext, verb: str, arg: str, now: float) -> Reply | None:
        if verb == "stop":
            await self.flows.clear(ctx.user)
            return Reply(ReplyKind.NOTICE, line("cancelled"))
        if verb == "next":
            state = await self.flows.get(ctx.user)
            if not state or state.get("tool") != self.tool:
                return await self.begin(ctx)
            if str(state.get("step")) != arg:
                return self._step(int(state.get("step", 0)))  # a stale tap: show where we are
            return await self._advance(ctx, int(arg))
        return None


class ThoughtRecord(StepForm):
    """Situation → thought → feeling → evidence for → evidence against → a more balanced thought."""

    tool = "reframe"
    list_items = False

    def __init__(self, client: Any, flows: Flows, journal: Journal) -> None:
        super().__init__(client, flows, _texts("thought_record"), ttl_seconds=REFRAME_DRAFT_TTL_SECONDS)
        self.journal = journal

    def key(self, user: UserRef) -> str:
        return reframe_key(user)

    def resume_extra_buttons(self) -> tuple[Button, ...]:
        return (Button(label("start_fresh"), "tool:reframe:fresh"),)

    def summary_buttons(self, data: FormData) -> tuple[Button, ...]:
        if data.progress < len(self.steps):
            return super().summary_buttons(data)
        return (Button(label("save_journal"), "tool:reframe:save"),
                Button(label("change"), "tool:reframe:change"), Button(label("done"), "tool:reframe:discard"))

    def record_text(self, data: FormData) -> str:
        return "\n\n".join(f"{step.title}:\n{data.values[step.key]}" for step in self.steps if data.filled(step.key))

    async def act(self, ctx: ToolContext, verb: str, arg: str, now: float) -> Reply | None:
        if verb == "fresh":
            await self.discard(ctx.user)
            return await self.begin(ctx)
        if verb == "discard":
            await self.flows.clear(ctx.user)
            await self.discard(ctx.user)
            return Reply(ReplyKind.NOTICE, str(self.texts["discarded"]))
        if verb == "save":
            data = await self.load(ctx.user)
            record = self.record_text(data)
            if not record:
                return Reply(ReplyKind.NOTICE, str(self.texts["discarded"]))
            saved = await self.journal.add(ctx, record, str(self.texts["journal_prompt"]), now)
            if saved is None:
                return Reply(ReplyKind.NOTICE, self.journal.full_text())
            await self.discard(ctx.user)
            return Reply(ReplyKind.NOTICE, str(self.texts["saved"]))
        return await super().act(ctx, verb, arg, now)
