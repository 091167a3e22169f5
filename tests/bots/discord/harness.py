"""An offline Discord for Haven's tests: the real discord.py client driven by dpytest, with every message
send/edit recorded as the payload discord.py put on the wire, and a small fake Interaction for slash commands
and buttons (the network edge of an interaction: response, follow-up).

Used by the Discord tests and by the cross-adapter scenario test.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import discord
import discord.ext.test as dpytest
from discord.ext.test import backend

from bots.discord import HavenDiscord, build_bot, default_intents
from bots.rendering import EditThrottle
from core.dialog import DialogManager


@dataclass
class WireCall:
    """One message send or edit, as discord.py serialised it for Discord's API."""

    op: str  # "send" | "edit"
    channel_id: int
    message_id: int
    payload: dict[str, Any]
    files: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def content(self) -> str | None:
        return self.payload.get("content")

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for row in self.payload.get("components") or [] for c in row.get("components", [])
                if "custom_id" in c]


class Wire:
    """Records what the bot sends through dpytest's fake HTTP client; can make calls fail."""

    def __init__(self, client: discord.Client) -> None:
        self.calls: list[WireCall] = []
        self._failures: list[tuple[str, Callable[[], Exception]]] = []
        http = client.http
        real_send, real_edit = type(http).send_message, type(http).edit_message
        wire = self

        async def send_message(channel_id: int, *, params: Any) -> Any:
            # dpytest's FakeHttp reads `channel` from its caller's locals: keep that name here.
            channel = sys._getframe(1).f_locals.get("channel")  # noqa: F841
            wire._maybe_fail("send")
            data = await real_send(http, channel_id, params=params)
            wire.calls.append(WireCall("send", channel_id, int(data["id"]), dict(params.payload or {}),
                                       _files(params)))
            return data

        async def edit_message(channel_id: int, message_id: int, **fields: Any) -> Any:
            self = sys._getframe(1).f_locals.get("self")  # noqa: F841 - dpytest reads the message as `self`
            wire._maybe_fail("edit")
            data = await real_edit(http, channel_id, message_id, **fields)
            wire.calls.append(WireCall("edit", channel_id, message_id, dict(fields["params"].payload or {})))
            return data

        http.send_message = send_message  # type: ignore[method-assign]
        http.edit_message = edit_message  # type: ignore[method-assign]

    def fail_next(self, op: str, make_error: Callable[[], Exception], times: int = 1) -> None:
        self._failures.extend([(op, make_error)] * times)

    def _maybe_fail(self, op: str) -> None:
        for index, (failing_op, make_error) in enumerate(self._failures):
            if failing_op == op:
                del self._failures[index]
                raise make_error()

    def in_channel(self, channel_id: int) -> list[WireCall]:
        return [call for call in self.calls if call.channel_id == channel_id]

    def final_texts(self, channel_id: int) -> list[str]:
        """What the channel shows now: each message the bot sent, in order, with its last edit applied."""
        shown: dict[int, str] = {}
        for call in self.in_channel(channel_id):
            if call.content is not None:
                shown[call.message_id] = call.content
        return list(shown.values())


def _files(params: Any) -> list[tuple[str, bytes]]:
    files = []
    for file in params.files or []:
        file.fp.seek(0)
        files.append((file.filename, file.fp.read()))
        file.fp.seek(0)
    return files


def http_error(status: int) -> discord.HTTPException:
    return discord.HTTPException(backend.FakeRequest(status, "test"), "injected by the test")


def forbidden() -> discord.Forbidden:
    return discord.Forbidden(backend.FakeRequest(403, "Forbidden"), "Cannot send messages to this user")


async def start_offline_bot(manager: DialogManager, *, members: int = 2, edit_interval_seconds: float = 0.0,
                            **options: Any) -> tuple[HavenDiscord, Wire]:
    """The real Haven client on dpytest's fake Discord: one server with a text channel and `members` users."""
    intents = default_intents()
    # dpytest keeps its fake server's members in the member cache, which needs this intent; the production
    # client runs without it (see test_runs_without_privileged_intents).
    intents.members = True
    bot = build_bot(manager, intents=intents, edit_throttle=lambda: EditThrottle(edit_interval_seconds), **options)
    await bot._async_setup_hook()
    dpytest.configure(bot, members=members)
    return bot, Wire(bot)


async def open_dm(member: discord.Member) -> discord.DMChannel:
    return await member.create_dm()


# ---- interactions ---------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One answer to an interaction: how it was sent and what it carried."""

    how: str  # "defer" | "send_message" | "edit_message" | "followup"
    content: str | None = None
    ephemeral: bool = False
    view: discord.ui.View | None = None
    file: tuple[str, bytes] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        assert self.file is not None
        return json.loads(self.file[1])


class _FakeResponse:
    def __init__(self, interaction: FakeInteraction) -> None:
        self._interaction = interaction
        self._done = False

    def is_done(self) -> bool:
        return self._done

    def _ack(self, answer: Answer) -> None:
        assert not self._done, "an interaction can be acknowledged only once"
        self._done = True
        self._interaction.record(answer)

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        self._ack(Answer("defer", ephemeral=ephemeral, options={"thinking": thinking}))

    async def send_message(self, content: str | None = None, **options: Any) -> None:
        self._ack(_answer("send_message", content, options))

    async def edit_message(self, **options: Any) -> None:
        self._ack(_answer("edit_message", options.pop("content", None), options))


class _FakeFollowup:
    def __init__(self, interaction: FakeInteraction) -> None:
        self._interaction = interaction

    async def send(self, content: str | None = None, **options: Any) -> None:
        assert self._interaction.response.is_done(), "a follow-up needs an acknowledged interaction"
        self._interaction.record(_answer("followup", content, options))


def _answer(how: str, content: str | None, options: dict[str, Any]) -> Answer:
    file = options.pop("file", None)
    attached = (file.filename, file.fp.read()) if file is not None else None
    return Answer(how, content, bool(options.get("ephemeral", False)), options.get("view"), attached, options)


class FakeInteraction:
    """The parts of `discord.Interaction` Haven uses, for a slash command or a button click."""

    def __init__(self, user: discord.abc.User, *, guild_id: int | None = None,
                 events: list[Any] | None = None) -> None:
        self.user = user
        self.guild_id = guild_id
        self.context = (discord.app_commands.AppCommandContext(guild=True) if guild_id
                        else discord.app_commands.AppCommandContext(dm_channel=True))
        self.command = None
        self.events: list[Any] = events if events is not None else []
        self.response = _FakeResponse(self)
        self.followup = _FakeFollowup(self)

    def record(self, answer: Answer) -> None:
        self.events.append(answer)

    @property
    def answers(self) -> list[Answer]:
        return [event for event in self.events if isinstance(event, Answer)]

    @property
    def last_text(self) -> str | None:
        return next((a.content for a in reversed(self.answers) if a.content is not None), None)


async def run_command(bot: HavenDiscord, name: str, interaction: FakeInteraction, **arguments: Any) -> None:
    """Invoke a registered slash command's callback the way the command tree would."""
    command = bot.tree.get_command(name)
    assert isinstance(command, discord.app_commands.Command), f"/{name} is not registered"
    await command.callback(interaction, **arguments)  # type: ignore[arg-type]


async def click(view: discord.ui.View, custom_id: str | None, interaction: FakeInteraction,
                label: str | None = None) -> None:
    """Press a button of `view` (found by custom id or label), checks included, as discord.py would."""
    for item in view.children:
        if isinstance(item, discord.ui.Button) and (
                (custom_id is not None and item.custom_id == custom_id) or (label is not None and item.label == label)):
            if not await view.interaction_check(interaction):  # type: ignore[arg-type]
                return
            try:
                await item.callback(interaction)  # type: ignore[arg-type]
            except Exception as exc:  # discord.py hands a failing callback to the view's error handler
                await view.on_error(interaction, exc, item)  # type: ignore[arg-type]
            return
    raise AssertionError(f"no button {custom_id or label} in the view")
