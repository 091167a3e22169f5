"""The coping tools in the console chat, scripted through a pipe and through `command`: each flow complete,
skipped, cancelled, resumed and edited; the crisis reply with the person's own plan; breathing on a fake
clock; /export and /forget."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from bots.console import CONSOLE_USER, ConsoleChat
from core.dialog import DialogLimits, DialogManager
from core.safety import SafetyScreen, crisis_reply
from core.tools import CopingTools
from tests.core.tools.conftest import FakeSleeper
from tests.fakes import FakeClock, ScriptedEngine

CRISIS_MESSAGE = "i want to kill myself tonight"


def one_line(value: str) -> str:
    return " ".join(value.split())


def make_chat(store, redis_client, tmp_path: Path, *, hold_after: int | None = None
              ) -> tuple[ConsoleChat, ScriptedEngine, FakeSleeper]:
    clock = FakeClock()
    sleeper = FakeSleeper(clock, hold_after=hold_after)
    engine = ScriptedEngine(lambda messages: f"I hear you about {messages[-1]['content']}")
    tools = CopingTools(redis_client, store, clock=clock, sleep=sleeper)
    manager = DialogManager(store, engine, SafetyScreen(semantic=False), clock=clock, tools=tools,
                            limits=DialogLimits(default_country="GB"))
    return ConsoleChat(manager, export_dir=tmp_path), engine, sleeper


async def run(chat: ConsoleChat, lines: list[str]) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    await chat.run_pipe(io.StringIO("\n".join(lines) + "\n"), out, err)
    return out.getvalue().splitlines()


async def test_safety_plan_by_pipe_skip_stop_resume_edit_crisis_export_forget(store, redis_client,
                                                                               tmp_path: Path) -> None:
    chat, engine, _ = make_chat(store, redis_client, tmp_path)
    shown = await run(chat, [
        "/safetyplan", "not sleeping", "/1",  # answer step 1, skip step 2 with its first button
        "/cancel", "just chatting now",
        "/safetyplan", "/1",  # later: carry on at step 3
        "the park", "my sister", "/1", "stay with friends",  # step 5 skipped: the helplines stay in the plan
        "/1", "/3",  # change a step → step 3
        "the pool",  # one line: a pipe carries one message per line
        CRISIS_MESSAGE,
        "/export", "/forget",
    ])
    assert "Step 1 of 6" in shown[0] and "[/1] Skip this step" in shown[0]
    assert "Step 2 of 6" in shown[1] and "Step 3 of 6" in shown[2]
    assert "Saved so far" in shown[3] or "stopped" in shown[3]
    assert shown[4] == "I hear you about just chatting now"
    assert "2 of the 6 steps" in shown[5] and "Step 3 of 6" in shown[6]
    assert "Your safety plan is ready" in shown[10] and "Samaritans" in shown[10]
    assert "Which step" in shown[11] and "Step 3 of 6" in shown[12]
    assert "• the pool" in shown[13] and "the park" not in shown[13]
    assert shown[14].startswith(one_line(crisis_reply("GB"))) and "Your own safety plan" in shown[14]
    assert "• not sleeping" in shown[14]
    export = json.loads(Path(shown[15].removeprefix("Your data is in ")).read_text())
    assert export["data"]["safety_plan"]["distractions"] == ["the pool"]
    assert [k async for k in redis_client.scan_iter(match="haven:{console:*")] == []
    said = [m["content"] for p in engine.prompts for m in p if m["role"] == "user"]
    assert said and not any("the park" in m or "the pool" in m or "not sleeping" in m for m in said)


async def test_breathing_by_pipe_prints_the_pace_in_order(store, redis_client, tmp_path: Path) -> None:
    chat, _, sleeper = make_chat(store, redis_client, tmp_path)
    shown = await run(chat, ["/breathe", "/help"])
    assert "in for 4" in shown[0]
    assert [s.split(" Breathe")[0] for s in shown[1:17:4]] == [f"Round {n} of 4" for n in range(1, 5)]
    assert "Notice how your body feels" in shown[17] and "[/1] Once more" in shown[17]
    assert sum(sleeper.slept) == 3 + 16 * 4
    assert "/safetyplan" in shown[18]  # /help lists the tools


async def test_breathing_cancelled_in_the_middle(store, redis_client, tmp_path: Path) -> None:
    chat, _, sleeper = make_chat(store, redis_client, tmp_path, hold_after=2)
    intro = await chat.command("/breathe", lambda q: True)
    assert "in for 4" in intro and "[/1] Stop for now" in intro
    for _ in range(500):  # real Redis I/O runs in between: allow up to ~5 s
        if chat.tools_ui.later:
            break
        await asyncio.sleep(0.01)
    assert chat.tools_ui.later, "the pace has started"
    stopped = await chat.command("/1", lambda q: True)  # the Stop button
    assert "stopped" in stopped
    shown_when_stopped = len(chat.tools_ui.later)
    sleeper.release.set()
    await asyncio.sleep(0.05)
    assert len(chat.tools_ui.later) == shown_when_stopped  # nothing more after the stop
    assert chat.manager.tools.pacing(CONSOLE_USER) is None  # type: ignore[union-attr]


async def test_grounding_reframe_and_journal_by_pipe(store, redis_client, tmp_path: Path) -> None:
    chat, engine, _ = make_chat(store, redis_client, tmp_path)
    shown = await run(chat, [
        "/ground", "chair, lamp, door, rug, mug", "/1", "/cancel",
        "/reframe", "the exam", "I'll fail", "/1", "failed one mock", "passed two", "I can prepare",
        "/1",  # save to the journal
        "/journal", "Slept well for once.", "/journal list", "/journal talk 2",
        "/journal delete 1", "/1", "/journal list",
    ])
    assert "5 things" in shown[0] and "4 things" in shown[1] and "3 things" in shown[2]
    assert "stopped" in shown[3]
    assert "Step 1 of 6" in shown[4] and "Step 4 of 6" in shown[7]
    assert "Well done for slowing" in shown[10] and "[/1] Save to my journal" in shown[10]
    assert "Saved in your journal" in shown[11]
    assert "Saved in your journal" in shown[13]
    assert "#2" in shown[14] and "#1" in shown[14]
    assert shown[15].startswith("I hear you about I'd like to talk about something I wrote")
    assert "Delete the entry" in shown[16] and shown[17].startswith("Deleted")
    assert "#1" not in shown[18] and "#2" in shown[18]
    assert len(engine.prompts) == 1  # only the entry the person asked to talk about
