"""Check-ins and moods in the console chat: /checkin, /mood (the chart goes to a PNG file in the current folder,
like /export) and /checkins_admin. Buttons under a reply are pressed by number (/1, /2…) as for the tools."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bots.checkin_commands import (
    ADMIN_COMMAND,
    checkin_action,
    checkin_command,
    checkin_line,
    checkins_admin,
    is_checkin_action,
    mood_command,
)
from bots.console_tools import ConsoleTools
from core.checkins import CheckinService
from core.types import Reply, UserRef

COMMANDS = ("/checkin", "/mood", f"/{ADMIN_COMMAND}")
HELP = ("/checkin [on|off|pause N|resume]  scheduled check-ins\n"
        "/mood [1-5 words - note]  note a mood, or see the last 30 days")


class ConsoleCheckins:
    def __init__(self, service: CheckinService, user: UserRef, buttons_ui: ConsoleTools, *,
                 redis: Any = None, admins: Iterable[tuple[str, str]] = (), chart_dir: Path | None = None) -> None:
        self.service = service
        self.user = user
        self.buttons_ui = buttons_ui  # one numbering of buttons for the whole chat, whoever rendered them
        self.redis = redis
        self.admins = frozenset(admins)
        self.chart_dir = chart_dir or Path.cwd()

    def handles(self, name: str) -> bool:
        """Our commands, and a button number whose button is a check-in or mood button."""
        if name in COMMANDS:
            return True
        index = int(name[1:]) - 1 if name[1:].isdigit() else -1
        buttons = self.buttons_ui.buttons
        return 0 <= index < len(buttons) and is_checkin_action(buttons[index].action)

    async def command(self, name: str, arg: str) -> str:
        if name == "/checkin":
            return self._render((await checkin_command(self.service, self.user, arg),))
        if name == "/mood":
            answer = await mood_command(self.service, self.user, arg)
            shown = self._render(answer.replies)
            if answer.chart_png is None:
                return shown
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            path = self.chart_dir / f"haven-mood-{stamp}.png"
            path.write_bytes(answer.chart_png)
            path.chmod(0o600)
            return checkin_line("chart_saved", path=str(path)) + "\n\n" + shown
        if name == f"/{ADMIN_COMMAND}":
            return (await checkins_admin(self.redis, self.user, self.admins, arg)).text
        action = self.buttons_ui.buttons[int(name[1:]) - 1].action
        replies = await checkin_action(self.service, self.user, action)
        return self._render(replies or ())

    def _render(self, replies: Iterable[Reply]) -> str:
        # One numbering for everything shown at once, so /1… always press what is on screen.
        replies = tuple(replies)
        if not replies:
            return ""
        merged = Reply(replies[0].kind, "\n\n".join(r.text for r in replies),
                       tuple(b for r in replies for b in r.buttons))
        return self.buttons_ui.render(merged)
