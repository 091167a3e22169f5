"""The coping tools in the console chat: /safetyplan, /breathe, /ground, /reframe, /journal, /cancel, and the
buttons of the last reply shown as /1, /2… (a terminal has no buttons, so a number stands in for a tap)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core.dialog import DialogManager
from core.tools import TOOL_COMMANDS
from core.tools.texts import line
from core.types import Button, Reply, UserRef


class ConsoleTools:
    def __init__(self, manager: DialogManager, user: UserRef) -> None:
        self.manager = manager
        self.user = user
        self.buttons: tuple[Button, ...] = ()
        self.later: list[str] = []  # breathing's timed messages, when nobody set `show`
        self.show: Callable[[str], None] = self.later.append

    def handles(self, name: str) -> bool:
        return name.lstrip("/") in TOOL_COMMANDS or name.lstrip("/").isdigit()

    def render(self, reply: Reply) -> str:
        """The reply's text with its buttons as /1, /2…; those numbers now press them."""
        self.buttons = reply.buttons
        if not reply.buttons:
            return reply.text
        choices = "   ".join(f"[/{index}] {button.label}" for index, button in enumerate(reply.buttons, 1))
        return f"{reply.text}\n\n{choices}"

    async def _send(self, reply: Reply) -> None:
        # A paced message without buttons leaves the last ones (breathing's Stop) in reach as /1.
        self.show(self.render(reply) if reply.buttons else reply.text)

    async def command(self, name: str, arg: str) -> str:
        tools = self.manager.tools
        if tools is None:
            return line("store_trouble")
        name = name.lstrip("/")
        if name.isdigit():
            index = int(name) - 1
            if not 0 <= index < len(self.buttons):
                return "There's no button with that number just now."
            reply = await tools.press(self.user, self.buttons[index].action, send=self._send)
            return self.render(reply) if reply is not None else line("unknown")
        return self.render(await tools.command(self.user, name, arg, send=self._send))

    async def settle(self) -> None:
        """Wait for a breathing run to finish (a piped script reads its output in order)."""
        tools = self.manager.tools
        task = tools.pacing(self.user) if tools is not None else None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
