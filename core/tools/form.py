"""A form filled in one step at a time, by chat: the shape shared by the safety plan and the thought record.

Every step can be answered, skipped, or changed later; stopping keeps what was written, and the form picks up
at the first step not yet done. Buttons carry the step they belong to, so a stale or doubled tap re-shows the
current step instead of acting on another one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.tools.flow import Flows, guarded
from core.tools.texts import fill, label, line
from core.types import Button, Reply, ReplyKind, UserRef

_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)])\s*")
MAX_ITEMS_PER_STEP = 10
MAX_ITEM_CHARS = 300
MAX_TEXT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    title: str
    prompt: str


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may need to know about the person besides their words."""

    user: UserRef
    country: str | None = None
    timezone: str | None = None
    locale: str | None = None


@dataclass(slots=True)
class FormData:
    values: dict[str, Any] = field(default_factory=dict)
    progress: int = 0  # how many steps have been answered or skipped, in order
    updated_at: float | None = None

    def filled(self, key: str) -> bool:
        return bool(self.values.get(key))


def parse_items(words: str) -> list[str]:
    """One item per line, list bullets and numbering dropped, at most a few short items."""
    items = [_BULLET.sub("", part).strip() for part in words.splitlines()]
    return [item[:MAX_ITEM_CHARS] for item in items if item][:MAX_ITEMS_PER_STEP]


class StepForm:
    """One kind of form: its steps and words, where it is stored, and how long it is kept."""

    tool = ""  # the action and flow name: "plan", "reframe"
    list_items = False  # each answer a list of lines (plan) or one text (thought record)

    def __init__(self, client: Any, flows: Flows, texts: Mapping[str, Any], *,
                 ttl_seconds: int | None = None) -> None:
        self.redis = client
        self.flows = flows
        self.texts = texts
        self.ttl_seconds = ttl_seconds
        self.steps = tuple(Step(str(s["key"]), str(s["title"]), str(s["prompt"])) for s in texts["steps"])

    # ---- storage ---------------------------------------------------------------------------------------------

    def key(self, user: UserRef) -> str:
        raise NotImplementedError

    async def load(self, user: UserRef) -> FormData:
        raw: dict[str, str] = await guarded(lambda: self.redis.hgetall(self.key(user)))
        data = FormData(progress=int(raw.get("progress") or 0),
                        updated_at=float(raw["updated_at"]) if raw.get("updated_at") else None)
        for step in self.steps:
            value = raw.get(step.key)
            if value and self.list_items:
                try:
                    items = json.loads(value)
                except ValueError:
                    items = [value]
                data.values[step.key] = [str(item) for item in items] if isinstance(items, list) else [str(items)]
            elif value:
                data.values[step.key] = value
        return data

    async def _write(self, user: UserRef, mapping: dict[str, str], now: float) -> None:
        key = self.key(user)
        mapping = {**mapping, "updated_at": str(now)}

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=mapping)
                if self.ttl_seconds:
                    pipe.expire(key, self.ttl_seconds)
                await pipe.execute()

        await guarded(write)

    async def discard(self, user: UserRef) -> bool:
        return bool(await guarded(lambda: self.redis.delete(self.key(user))))

    # ---- what the person sees --------------------------------------------------------------------------------

    def step_buttons(self, index: int, mode: str) -> tuple[Button, ...]:
        first = (Button(label("skip"), f"tool:{self.tool}:skip:{index}") if mode == "build"
                 else Button(label("keep"), f"tool:{self.tool}:keep:{index}"))
        return first, Button(label("stop"), f"tool:{self.tool}:stop")

    def extra_lines(self, step: Step, ctx: ToolContext) -> list[str]:
        """Lines shown with a step besides the person's own (the plan shows the helplines)."""
        return []

    def render_value(self, value: Any) -> str:
        if isinstance(value, list):
            return "\n".join(f"• {item}" for item in value)
        return str(value)

    def prompt(self, index: int, data: FormData, mode: str, ctx: ToolContext, *, lead: str = "") -> Reply:
        step = self.steps[index]
        parts = [lead] if lead else []
        parts.append(fill(self.texts["step_heading"], number=index + 1, title=step.title))
        parts.append(step.prompt)
        parts.extend(self.extra_lines(step, ctx))
        if data.filled(step.key):
            parts.append(line("so_far") + "\n" + self.render_value(data.values[step.key]))
            parts.append(line("replace_hint"))
        elif self.list_items:
            parts.append(self.texts["list_hint"])
        return Reply(ReplyKind.NOTICE, "\n\n".join(p for p in parts if p), self.step_buttons(index, mode))

    def summary_text(self, data: FormData, ctx: ToolContext) -> str:
        parts = [str(self.texts["summary_heading"])]
        for step in self.steps:
            shown = [self.render_value(data.values[step.key])] if data.filled(step.key) else []
            shown.extend(self.extra_lines_in_summary(step, ctx))
            parts.append(f"{step.title}:\n" + ("\n".join(shown) if shown else line("empty_step")))
        return "\n\n".join(parts)

    def extra_lines_in_summary(self, step: Step, ctx: ToolContext) -> list[str]:
        return []

    def summary_buttons(self, data: FormData) -> tuple[Button, ...]:
        buttons = [Button(label("change"), f"tool:{self.tool}:change")]
        if data.progress < len(self.steps):
            buttons.insert(0, Button(label("carry_on"), f"tool:{self.tool}:resume"))
        return tuple(buttons)

    def pick_step(self) -> Reply:
        buttons = tuple(Button(f"{i + 1}. {s.title}", f"tool:{self.tool}:edit:{i}") for i, s in enumerate(self.steps))
        return Reply(ReplyKind.NOTICE, str(self.texts["pick_step"]),
                     (*buttons, Button(label("back"), f"tool:{self.tool}:all")))

    def finished(self, data: FormData, ctx: ToolContext) -> Reply:
        return Reply(ReplyKind.NOTICE, self.summary_text(data, ctx) + "\n\n" + str(self.texts["finished"]),
                     self.summary_buttons(data))

    # ---- the flow --------------------------------------------------------------------------------------------

    async def begin(self, ctx: ToolContext) -> Reply:
        """The command: a fresh form starts at step 1; one under way offers to carry on; a finished one shows."""
        data = await self.load(ctx.user)
        if data.progress == 0 and not data.values:
            await self.flows.set(ctx.user, tool=self.tool, step=0, mode="build")
            return self.prompt(0, data, "build", ctx, lead=str(self.texts["intro"]))
        if data.progress < len(self.steps):
            await self.flows.clear(ctx.user)
            return Reply(ReplyKind.NOTICE, fill(self.texts["resume"], done=data.progress), (
                Button(label("carry_on"), f"tool:{self.tool}:resume"),
                *self.resume_extra_buttons()))
        await self.flows.clear(ctx.user)
        return Reply(ReplyKind.NOTICE, self.summary_text(data, ctx), self.summary_buttons(data))

    def resume_extra_buttons(self) -> tuple[Button, ...]:
        return (Button(label("see_all"), f"tool:{self.tool}:all"),)

    async def answer(self, ctx: ToolContext, state: Mapping[str, Any], words: str, now: float) -> Reply:
        """The person's words for the step they are on."""
        index, mode = int(state.get("step", 0)), str(state.get("mode", "build"))
        if not 0 <= index < len(self.steps):
            await self.flows.clear(ctx.user)
            return Reply(ReplyKind.NOTICE, line("unknown"))
        limit = MAX_ITEM_CHARS * MAX_ITEMS_PER_STEP if self.list_items else MAX_TEXT_CHARS
        if len(words) > limit:
            return Reply(ReplyKind.NOTICE, line("too_long", limit=limit), self.step_buttons(index, mode))
        value = json.dumps(parse_items(words), ensure_ascii=False) if self.list_items else words.strip()
        data = await self.load(ctx.user)
        mapping = {self.steps[index].key: value}
        if mode == "build":
            mapping["progress"] = str(max(data.progress, index + 1))
        await self._write(ctx.user, mapping, now)
        return await self._after_step(ctx, index, mode, now, lead=line("saved_step"))

    async def _after_step(self, ctx: ToolContext, index: int, mode: str, now: float, *, lead: str = "") -> Reply:
        data = await self.load(ctx.user)
        if mode == "build" and index + 1 < len(self.steps):
            await self.flows.set(ctx.user, tool=self.tool, step=index + 1, mode="build")
            return self.prompt(index + 1, data, "build", ctx, lead=lead)
        await self.flows.clear(ctx.user)
        if mode == "build":
            return self.finished(data, ctx)
        return Reply(ReplyKind.NOTICE, (lead + "\n\n" if lead else "") + self.summary_text(data, ctx),
                     self.summary_buttons(data))

    async def act(self, ctx: ToolContext, verb: str, arg: str, now: float) -> Reply | None:
        """A button of this form; None when the action is not one of its own."""
        user = ctx.user
        state = await self.flows.get(user)
        current = state if state and state.get("tool") == self.tool else None
        if verb in {"skip", "keep"}:
            if current is None or str(current.get("step")) != arg:
                return await self._reshow(ctx, current)
            index = int(current["step"])
            if verb == "skip" and current.get("mode") == "build":
                data = await self.load(user)
                await self._write(user, {"progress": str(max(data.progress, index + 1))}, now)
            return await self._after_step(ctx, index, str(current.get("mode", "build")), now)
        if verb == "stop":
            await self.flows.clear(user)
            return Reply(ReplyKind.NOTICE, str(self.texts["stopped"]))
        if verb == "resume":
            data = await self.load(user)
            if data.progress >= len(self.steps):
                return Reply(ReplyKind.NOTICE, self.summary_text(data, ctx), self.summary_buttons(data))
            await self.flows.set(user, tool=self.tool, step=data.progress, mode="build")
            return self.prompt(data.progress, data, "build", ctx)
        if verb == "all":
            await self.flows.clear(user)
            data = await self.load(user)
            return Reply(ReplyKind.NOTICE, self.summary_text(data, ctx), self.summary_buttons(data))
        if verb == "change":
            await self.flows.clear(user)
            return self.pick_step()
        if verb == "edit" and arg.isdigit() and int(arg) < len(self.steps):
            index = int(arg)
            await self.flows.set(user, tool=self.tool, step=index, mode="edit")
            return self.prompt(index, await self.load(user), "edit", ctx)
        return None

    async def _reshow(self, ctx: ToolContext, current: Mapping[str, Any] | None) -> Reply:
        if current is None:
            return await self.begin(ctx)
        index, mode = int(current.get("step", 0)), str(current.get("mode", "build"))
        return self.prompt(index, await self.load(ctx.user), mode, ctx)

