"""Discord buttons for Haven: the core's quick-reply buttons (consent), the "continue in DMs" offer, and the
/forget confirmation. A button only forwards the click to the adapter; what a click means lives in the core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from core.types import Button

ActionHandler = Callable[[discord.Interaction, str], Awaitable[None]]
ErrorHandler = Callable[[discord.Interaction, Exception, str], Awaitable[None]]

# custom_id prefix: the id survives restarts, so a consent button sent yesterday still works today.
CUSTOM_ID_PREFIX = "haven:"
OPEN_DM_ACTION = "dm:open"


class _ActionButton(discord.ui.Button["ActionView"]):
    def __init__(self, label: str, action: str, style: discord.ButtonStyle) -> None:
        super().__init__(label=label, style=style, custom_id=CUSTOM_ID_PREFIX + action)
        self.action = action

    async def callback(self, interaction: discord.Interaction) -> None:
        assert self.view is not None
        await self.view.on_action(interaction, self.action)


class ActionView(discord.ui.View):
    """Buttons whose click is an action string for the adapter ("consent:yes", "dm:open"…).

    Persistent (no timeout, fixed custom ids): register one with `Client.add_view` at start-up and clicks on
    messages sent before a restart still arrive. The click acts for whoever clicked, never for the user the
    message was first sent to, so a button in a shared channel cannot change someone else's settings."""

    def __init__(self, buttons: Sequence[Button], on_action: ActionHandler, on_error: ErrorHandler) -> None:
        super().__init__(timeout=None)
        self._on_action = on_action
        self._on_error = on_error
        from bots.discord.tools import ToolButton  # tool buttons route by custom id, even after a restart

        for index, button in enumerate(buttons):
            style = discord.ButtonStyle.primary if index == 0 else discord.ButtonStyle.secondary
            if button.action.startswith("tool:"):
                self.add_item(ToolButton(button.action, button.label, style))
            else:
                self.add_item(_ActionButton(button.label, button.action, style))

    async def on_action(self, interaction: discord.Interaction, action: str) -> None:
        await self._on_action(interaction, action)

    async def on_error(self, interaction: discord.Interaction, error: Exception,
                       item: discord.ui.Item[Any]) -> None:
        await self._on_error(interaction, error, "button")


class ForgetConfirmView(discord.ui.View):
    """Asks once more before /forget deletes everything; only the user who asked can press it."""

    def __init__(self, requester_id: int, on_confirm: Callable[[discord.Interaction], Awaitable[None]],
                 on_error: ErrorHandler, *, confirm_label: str, cancel_label: str, cancelled_text: str,
                 timeout_seconds: float = 120.0) -> None:
        super().__init__(timeout=timeout_seconds)
        self.requester_id = requester_id
        self._on_confirm = on_confirm
        self._on_error = on_error
        self.cancelled_text = cancelled_text
        self.confirm.label = confirm_label
        self.cancel.label = cancel_label

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.requester_id

    @discord.ui.button(style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await self._on_confirm(interaction)

    @discord.ui.button(style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content=self.cancelled_text, view=None)

    async def on_error(self, interaction: discord.Interaction, error: Exception,
                       item: discord.ui.Item[Any]) -> None:
        await self._on_error(interaction, error, "forget confirm")
