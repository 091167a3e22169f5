"""Check-ins and moods in the console chat, scripted through a pipe: /checkin on with a city, status, pause,
resume, off and bad input; /mood noted by command and by button number, the chart written to a PNG file, a low
mood followed by the offer of an exercise; /checkins_admin for admins only."""

from __future__ import annotations

import io
from pathlib import Path

from bots.checkin_commands import checkin_line
from bots.console import CONSOLE_USER, ConsoleChat
from core.checkins import CheckinService
from core.checkins.texts import line
from core.dialog import DialogLimits, DialogManager
from core.safety import SafetyScreen
from core.tools import CopingTools, suggest_exercise
from tests.fakes import FakeClock, ScriptedEngine


def make_chat(store, redis_client, tmp_path: Path, *, admin: bool = False) -> ConsoleChat:
    clock = FakeClock()
    screen = SafetyScreen(semantic=False)
    checkins = CheckinService(redis_client, store, screen, clock=clock, default_country="GB")
    manager = DialogManager(store, ScriptedEngine(), screen, clock=clock, checkins=checkins,
                            tools=CopingTools(redis_client, store, clock=clock),
                            limits=DialogLimits(default_country="GB"))
    admins = frozenset({(CONSOLE_USER.platform, CONSOLE_USER.user_id)}) if admin else frozenset()
    return ConsoleChat(manager, export_dir=tmp_path, checkins=checkins, redis=redis_client, admins=admins)


async def run(chat: ConsoleChat, lines: list[str]) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    await chat.run_pipe(io.StringIO("\n".join(lines) + "\n"), out, err)
    return out.getvalue().splitlines()


def flat(value: str) -> str:
    return " ".join(value.split())


async def test_checkin_on_with_a_city_status_pause_resume_off_and_bad_input(store, redis_client,
                                                                            tmp_path: Path) -> None:
    chat = make_chat(store, redis_client, tmp_path)
    shown = await run(chat, ["/checkin", "/checkin on 9am weekdays London", "/checkin", "/checkin pause 3",
                             "/checkin pause soon", "/checkin resume", "/checkin on 25:00", "/checkin dance",
                             "/checkin off", "/checkin"])
    assert shown[0].startswith(flat(line("not_opted_in"))) and "[/1] Yes, check in" in shown[0]
    assert shown[1] == flat(line("opted_in", times="09:00", days="weekdays", timezone="Europe/London"))
    assert shown[2].startswith("Check-ins: 09:00, weekdays, Europe/London time. Next one:")
    assert "[/1] Pause a week" in shown[2] and "[/2] Stop check-ins" in shown[2]
    assert shown[3].startswith("Paused. I won't check in until")
    assert shown[4] == flat(checkin_line("pause_usage"))
    assert shown[5].startswith("Welcome back. Next check-in:")
    assert shown[6].startswith("I didn't quite get that: not a time of day")
    assert shown[7] == flat(checkin_line("checkin_usage"))
    assert shown[8] == flat(line("opted_out"))
    assert shown[9].startswith(flat(line("not_opted_in")))
    assert (await chat.checkins_ui.service.status(CONSOLE_USER)).opted_in is False  # type: ignore[union-attr]


async def test_checkin_buttons_by_number(store, redis_client, tmp_path: Path) -> None:
    chat = make_chat(store, redis_client, tmp_path)
    shown = await run(chat, ["/checkin", "/1", "/checkin", "/2"])
    assert shown[1].startswith("You're in.")  # "Yes, check in" pressed; the zone is asked for
    assert "[/1] London" in shown[1] or "London" in shown[1]
    assert shown[3] == flat(line("opted_out"))  # "Stop check-ins" pressed


async def test_mood_by_command_and_button_chart_and_low_mood_offer(store, redis_client, tmp_path: Path) -> None:
    chat = make_chat(store, redis_client, tmp_path)
    shown = await run(chat, ["/mood 4 calm - a good walk", "/mood", "/2", "/1", "/mood sometimes"])
    assert shown[0].startswith("Thank you for telling me. I've noted good. (calm)")
    assert "[/1] calm" in shown[0]  # feeling words to add
    charts = list(tmp_path.glob("haven-mood-*.png"))
    assert len(charts) == 1 and charts[0].read_bytes().startswith(b"\x89PNG")
    assert shown[1].startswith(flat(checkin_line("chart_saved", path=str(charts[0]))))
    assert "Last 30 days: 1" in shown[1] and "[/1] 1 · very low" in shown[1]
    # "/2" pressed "2 · low": the core's gentle follow-up, then the exercises, numbered together.
    assert flat(line("low_follow_up")) in shown[2]
    offer = suggest_exercise(low_mood=True)
    assert flat(offer.text) in shown[2]
    assert f"[/4] {offer.buttons[0].label}" in shown[2]
    assert shown[3] == flat(line("talk_prompt"))  # "/1" was "Talk now"
    assert shown[4].startswith(flat(checkin_line("mood_usage")))
    entries = await chat.checkins_ui.service.mood_entries(CONSOLE_USER)  # type: ignore[union-attr]
    assert sorted(e.score for e in entries) == [2, 4]


async def test_admin_command_only_for_admins(store, redis_client, tmp_path: Path) -> None:
    chat = make_chat(store, redis_client, tmp_path)
    shown = await run(chat, ["/mood 3 - a private note", "/checkins_admin stats"])
    assert shown[1] == flat(line("admin_only"))
    admin = make_chat(store, redis_client, tmp_path, admin=True)
    shown = await run(admin, ["/checkins_admin stats"])
    assert "moods_mood: 1" in shown[0] and "private note" not in shown[0]  # counts only
