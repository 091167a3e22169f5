"""Crisis alerts in the console chat: it has no admins to message, so with HAVEN_CRISIS_ALERTS on whoever runs it
sees one line on stderr (never the message text); stdout still holds exactly one reply per message."""

from __future__ import annotations

import io

from bots.console import CONSOLE_USER, ConsoleChat
from core.dialog import DialogManager
from core.safety import SafetyScreen, crisis_reply
from core.safety.alerts import CrisisAlertOutbox
from tests.fakes import FakeClock, ScriptedEngine

DISTINCTIVE = "marmalade-zebra-4417"
LINES = f"i want to kill myself tonight, {DISTINCTIVE}\nhello again\n"


async def run_piped(store, crisis_alert: CrisisAlertOutbox | None) -> tuple[list[str], str]:
    manager = DialogManager(store, ScriptedEngine(), SafetyScreen(semantic=False), clock=FakeClock(),
                            crisis_alert=crisis_alert)
    out, err = io.StringIO(), io.StringIO()
    await ConsoleChat(manager).run_pipe(io.StringIO(LINES), out, err)
    return out.getvalue().splitlines(), err.getvalue()


async def test_with_alerts_on_the_console_shows_one_line_on_stderr_without_the_words(store) -> None:
    replies, err = await run_piped(store, CrisisAlertOutbox())
    assert replies[0] == " ".join(crisis_reply(None).split()) and len(replies) == 2
    [notice] = [line for line in err.splitlines() if line.startswith("admin alert:")]
    assert CONSOLE_USER.log_id in notice and "platform console" in notice
    assert DISTINCTIVE not in err


async def test_with_alerts_off_the_console_shows_none(store) -> None:
    replies, err = await run_piped(store, None)
    assert replies[0] == " ".join(crisis_reply(None).split())
    assert "admin alert" not in err
