"""The personal safety plan: the six steps of the Stanley–Brown Safety Planning Intervention, built by chat.

Warning signs → things I can do on my own → people and places that take my mind off things → people I can ask
for help → professionals and services (shown with the reviewed helplines for the person's country) → making my
surroundings safer. Stored for good under the user's prefix (`safety_plan`), so /export shows it and /forget
deletes it; shown again under the crisis reply when the safety layer sends one.
"""

from __future__ import annotations

from typing import Any

from core.safety import helplines_for
from core.tools.flow import Flows, guarded, plan_key
from core.tools.form import FormData, Step, StepForm, ToolContext
from core.tools.texts import fill, label, tool_data
from core.types import Button, Reply, ReplyKind, UserRef

PROFESSIONALS = "professionals"


class SafetyPlan(StepForm):
    tool = "plan"
    list_items = True

    def __init__(self, client: Any, flows: Flows) -> None:
        super().__init__(client, flows, tool_data("safety_plan"))

    def key(self, user: UserRef) -> str:
        return plan_key(user)

    @staticmethod
    def helpline_items(country: str | None) -> list[str]:
        found = helplines_for(country)
        if found is None:
            return []
        texts = tool_data("safety_plan")
        return [*found.lines, fill(texts["emergency_item"], number=found.emergency)]

    def extra_lines(self, step: Step, ctx: ToolContext) -> list[str]:
        if step.key != PROFESSIONALS:
            return []
        items = self.helpline_items(ctx.country)
        if not items:
            return [str(self.texts["helplines_note_unknown"])]
        return [fill(self.texts["helplines_note"], country=ctx.country) + "\n"
                + "\n".join(f"• {item}" for item in items)]

    def extra_lines_in_summary(self, step: Step, ctx: ToolContext) -> list[str]:
        # The helplines are always the reviewed, current ones, never a copy that could go stale.
        if step.key != PROFESSIONALS:
            return []
        return [f"• {item}" for item in self.helpline_items(ctx.country)] or ["• findahelpline.com"]

    def summary_buttons(self, data: FormData) -> tuple[Button, ...]:
        return (*super().summary_buttons(data), Button(label("delete"), "tool:plan:delete"))

    async def act(self, ctx: ToolContext, verb: str, arg: str, now: float) -> Reply | None:
        if verb == "delete":
            return Reply(ReplyKind.NOTICE, str(self.texts["delete_confirm"]), (
                Button(label("delete_yes"), "tool:plan:delete!"), Button(label("delete_no"), "tool:plan:kept")))
        if verb == "delete!":
            await self.flows.clear(ctx.user)
            await self.discard(ctx.user)
            return Reply(ReplyKind.NOTICE, str(self.texts["deleted"]))
        if verb == "kept":
            return Reply(ReplyKind.NOTICE, str(self.texts["kept"]))
        return await super().act(ctx, verb, arg, now)

    async def crisis_text(self, user: UserRef) -> str | None:
        """The person's own plan, in their words, for under the crisis reply; None when they have none.
        The helplines are not repeated: the crisis reply above already lists them."""
        data = await self.load(user)
        parts = [f"{step.title}:\n{self.render_value(data.values[step.key])}"
                 for step in self.steps if data.filled(step.key)]
        if not parts:
            return None
        return "\n\n".join([str(self.texts["crisis_heading"]), *parts])

    async def exists(self, user: UserRef) -> bool:
        return bool(await guarded(lambda: self.redis.exists(self.key(user))))
