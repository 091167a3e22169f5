"""The console chat: the same core the bots use, in a terminal.

In a terminal it is a small chat UI with the reply streaming in as the model writes it. With stdin not a
terminal it reads one message per line and prints one reply per message on one line of stdout (notices such
as the welcome go to stderr), so it can be scripted and piped.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from bots.console_checkins import HELP as CHECKIN_HELP
from bots.console_checkins import ConsoleCheckins
from bots.console_tools import ConsoleTools
from core.checkins import CheckinService
from core.dialog import DialogManager
from core.errors import StoreError
from core.safety.alerts import outbox_of
from core.texts import text
from core.tools.texts import line as tool_line
from core.types import IncomingMessage, Reply, ReplyKind, UserRef

CONSOLE_USER = UserRef("console", "local")

_STYLE = {
    ReplyKind.CRISIS: "bold magenta",
    ReplyKind.FALLBACK: "yellow",
    ReplyKind.NOTICE: "cyan",
    ReplyKind.WELCOME: "cyan",
    ReplyKind.CHAT: "green",
}


def one_line(reply_text: str) -> str:
    return " ".join(reply_text.split())


class _TerminalSink:
    """Shows the welcome and the growing reply in a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.asked_consent = False
        self.thinking = console.status("Haven is thinking…", spinner="dots")
        self.thinking.start()

    async def send(self, reply: Reply) -> None:
        self.thinking.stop()
        self.console.print(Panel(reply.text, title="Haven", border_style=_STYLE[reply.kind]))
        self.asked_consent = any(b.action.startswith("consent:") for b in reply.buttons)

    async def partial(self, text_so_far: str) -> None:
        self.thinking.stop()
        if self.live is None:
            self.live = Live(Text(text_so_far), console=self.console, refresh_per_second=8, transient=True)
            self.live.start()
        else:
            self.live.update(Text(text_so_far))

    def close(self) -> None:
        self.thinking.stop()
        if self.live is not None:
            self.live.stop()
            self.live = None


class _PipeSink:
    """Notices go to stderr so that stdout holds exactly one line per message."""

    def __init__(self, err: TextIO) -> None:
        self.err = err

    async def send(self, reply: Reply) -> None:
        print(one_line(reply.text), file=self.err, flush=True)

    async def partial(self, text_so_far: str) -> None:
        return None


class ConsoleChat:
    def __init__(self, manager: DialogManager, *, user: UserRef = CONSOLE_USER,
                 export_dir: Path | None = None, checkins: CheckinService | None = None, redis: Any = None,
                 admins: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.manager = manager
        self.user = user
        self.export_dir = export_dir or Path.cwd()
        self.tools_ui = ConsoleTools(manager, user)  # coping tools; buttons as /1, /2…
        self.checkins_ui = (ConsoleCheckins(checkins, user, self.tools_ui, redis=redis, admins=admins,
                                            chart_dir=self.export_dir) if checkins is not None else None)
        # HAVEN_CRISIS_ALERTS: the console has no admins to message; whoever runs it locally sees a one-line
        # notice on stderr instead, so they can tell the alert works (it never holds the message text).
        outbox = outbox_of(manager.crisis_alert)
        self.crisis_alerts = outbox.reader("console") if outbox is not None else None

    def show_crisis_alerts(self, err: TextIO) -> None:
        for notice in self.crisis_alerts.take() if self.crisis_alerts is not None else ():
            print(notice.one_line(), file=err, flush=True)

    # ---- commands, the same set the bots offer --------------------------------------------------------------

    async def command(self, line: str, confirm: Callable[[str], bool]) -> str | None:
        """Run a /command; returns the text to show, or None for /quit."""
        name, _, arg = line.strip().partition(" ")
        name = name.lower()
        if name in {"/quit", "/exit"}:
            return None
        if name in {"/help", "/start"}:
            return (text("help") + "\n/consent yes|no  whether I may remember our conversation\n/quit  leave\n\n"
                    + tool_line("help") + "\n/1, /2…       press a button shown under a reply"
                    + ("\n" + CHECKIN_HELP if self.checkins_ui is not None else ""))
        if name == "/privacy":
            return text("privacy")
        if name == "/resources":
            return (await self.manager.resources(self.user)).text
        if name == "/country":
            if not arg.strip():
                return "Send a two-letter country code, for example /country GB."
            return (await self.manager.set_country(self.user, arg)).text
        if name == "/consent":
            choice = arg.strip().lower()
            if choice not in {"yes", "no"}:
                return "Send /consent yes or /consent no."
            return (await self.manager.set_consent(self.user, choice == "yes")).text
        if name == "/forget":
            if not confirm("Delete everything I have stored about you? This cannot be undone. [y/N] "):
                return "Nothing was deleted."
            return (await self.manager.forget(self.user)).text
        if name == "/export":
            try:
                data = await self.manager.export(self.user)
            except StoreError:
                return text("store_trouble")
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            path = self.export_dir / f"haven-export-{stamp}.json"
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
            path.chmod(0o600)
            return f"Your data is in {path}"
        if self.checkins_ui is not None and self.checkins_ui.handles(name):
            return await self.checkins_ui.command(name, arg)
        if self.tools_ui.handles(name):
            return await self.tools_ui.command(name, arg)
        return f"I don't know the command {name[:32]}. Send /help to see what I can do."

    # ---- the two ways to run --------------------------------------------------------------------------------

    async def run_terminal(self, console: Console) -> None:
        console.print(Panel(text("help"), title="Haven", border_style="cyan"))
        self.tools_ui.show = lambda shown: console.print(Panel(shown, title="Haven", border_style="cyan"))
        while True:
            try:
                line = await asyncio.to_thread(console.input, "[bold]you[/] › ")
            except (EOFError, KeyboardInterrupt):
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                shown = await self.command(line, lambda q: console.input(q).strip().lower() in {"y", "yes"})
                if shown is None:
                    break
                console.print(Panel(shown, border_style="cyan"))
                continue
            sink = _TerminalSink(console)
            try:
                reply = await self.manager.handle(IncomingMessage(self.user, line), sink)
            finally:
                sink.close()
            self.show_crisis_alerts(sys.stderr)
            if reply.text:  # an empty reply means "say nothing" (a flood past the rate limit)
                console.print(Panel(self.tools_ui.render(reply), title="Haven", border_style=_STYLE[reply.kind]))
            if sink.asked_consent:
                answer = await asyncio.to_thread(console.input, "Remember our conversation? [y/n] ")
                allow = answer.strip().lower() in {"y", "yes"}
                console.print(Panel((await self.manager.set_consent(self.user, allow)).text, border_style="cyan"))
        console.print("Take care. I'm here whenever you want to talk.")

    async def run_pipe(self, lines: TextIO, out: TextIO, err: TextIO) -> None:
        sink = _PipeSink(err)
        self.tools_ui.show = lambda shown: print(one_line(shown), file=out, flush=True)
        for line in lines:
            line = line.rstrip("\n")
            if line.startswith("/"):
                shown = await self.command(line, lambda q: True)  # scripted /forget means it
                if shown is None:
                    break
                print(one_line(shown), file=out, flush=True)
                await self.tools_ui.settle()  # a breathing run prints its pace before the next line is read
                continue
            reply = await self.manager.handle(IncomingMessage(self.user, line), sink)
            print(one_line(self.tools_ui.render(reply)), file=out, flush=True)
            self.show_crisis_alerts(err)


async def run_console(manager: DialogManager, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout,
                      stderr: TextIO = sys.stderr, checkins: CheckinService | None = None, redis: Any = None,
                      admins: frozenset[tuple[str, str]] = frozenset()) -> None:
    chat = ConsoleChat(manager, checkins=checkins, redis=redis, admins=admins)
    if stdin.isatty() and stdout.isatty():
        await chat.run_terminal(Console())
    else:
        await chat.run_pipe(stdin, stdout, stderr)
