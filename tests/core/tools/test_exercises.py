"""Guided exercises: box breathing paced on a fake clock and cancellable; 5-4-3-2-1 grounding; the thought
record (complete, skip, stop and resume, change an answer, save to the journal)."""

from __future__ import annotations

import asyncio

import pytest

from core.dialog import DialogManager
from core.tools import CopingTools
from core.tools.exercises import BREATHING_LEAD_IN_SECONDS, BREATHING_PHASE_SECONDS
from core.tools.texts import tool_data
from core.types import IncomingMessage, ReplyKind
from tests.core.tools.conftest import SAM, FakeSleeper, Outbox, user_keys
from tests.fakes import FakeClock, RecordingSink, ScriptedEngine

PHASES = tool_data("exercises")["breathing"]["phases"]


async def say(manager: DialogManager, words: str):
    return await manager.handle(IncomingMessage(SAM, words), RecordingSink())


async def test_box_breathing_paces_four_rounds_on_the_clock(tools: CopingTools, clock: FakeClock,
                                                            sleeper: FakeSleeper, redis_client) -> None:
    outbox = Outbox(clock)
    start = clock.now()
    intro = await tools.command(SAM, "breathe", send=outbox)
    assert "in for 4" in intro.text and [b.action for b in intro.buttons] == ["tool:breathe:stop"]
    assert await redis_client.exists("haven:{console:sam}:tools:breathing")
    task = tools.pacing(SAM)
    assert task is not None
    await asyncio.wait_for(task, 5)

    offsets = [at - start for at, _ in outbox.sent]
    expected = [BREATHING_LEAD_IN_SECONDS + i * BREATHING_PHASE_SECONDS for i in range(16)]
    assert offsets[:16] == expected  # one message every 4 seconds, after a short lead-in
    assert outbox.texts[0] == f"Round 1 of 4\n{PHASES[0]}" and outbox.texts[1] == PHASES[1]
    assert outbox.texts[12].startswith("Round 4 of 4")
    assert len(outbox.sent) == 17 and "Notice how your body feels" in outbox.texts[16]
    assert offsets[16] == BREATHING_LEAD_IN_SECONDS + 16 * BREATHING_PHASE_SECONDS
    assert [b.action for b in outbox.sent[16][1].buttons] == ["tool:breathe", "tool:ground"]
    assert sum(sleeper.slept) == BREATHING_LEAD_IN_SECONDS + 16 * BREATHING_PHASE_SECONDS
    assert not await redis_client.exists("haven:{console:sam}:tools:breathing")


async def test_cancel_in_the_middle_stops_the_pace(redis_client, store, clock: FakeClock) -> None:
    sleeper = FakeSleeper(clock, hold_after=3)  # the lead-in and two phases, then it waits for the test
    tools = CopingTools(redis_client, store, clock=clock, sleep=sleeper)
    outbox = Outbox(clock)
    await tools.command(SAM, "breathe", send=outbox)
    for _ in range(500):  # real Redis I/O runs in between: allow up to ~5 s
        if len(outbox.sent) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(outbox.sent) == 3
    again = await tools.command(SAM, "breathe", send=outbox)
    assert "already" in again.text  # one run at a time
    stopped = await tools.command(SAM, "cancel")
    assert "stopped" in stopped.text
    sleeper.release.set()
    await asyncio.sleep(0.05)
    assert len(outbox.sent) == 3 and tools.pacing(SAM) is None
    assert not await redis_client.exists("haven:{console:sam}:tools:breathing")
    assert "nothing running" in (await tools.command(SAM, "cancel")).text


async def test_cancel_from_another_worker_stops_the_pace_at_the_next_phase(redis_client, store,
                                                                           clock: FakeClock) -> None:
    sleeper = FakeSleeper(clock, hold_after=2)
    here = CopingTools(redis_client, store, clock=clock, sleep=sleeper)
    elsewhere = CopingTools(redis_client, store, clock=clock)
    outbox = Outbox(clock)
    await here.command(SAM, "breathe", send=outbox)
    for _ in range(500):  # real Redis I/O runs in between: allow up to ~5 s
        if len(outbox.sent) == 2:
            break
        await asyncio.sleep(0.01)
    await elsewhere.command(SAM, "cancel")
    sleeper.release.set()
    task = here.pacing(SAM)
    if task is not None:
        await asyncio.wait_for(task, 5)
    assert len(outbox.sent) == 2


async def test_writing_during_breathing_stops_it_and_the_message_goes_to_the_conversation(
        manager: DialogManager, redis_client, store, clock: FakeClock, engine: ScriptedEngine) -> None:
    sleeper = FakeSleeper(clock, hold_after=1)
    tools = CopingTools(redis_client, store, clock=clock, sleep=sleeper)
    chatty = DialogManager(store, engine, manager.screen, clock=clock, tools=tools)
    outbox = Outbox(clock)
    await tools.command(SAM, "breathe", send=outbox)
    reply = await say(chatty, "this isn't helping, honestly")
    assert reply.kind == ReplyKind.CHAT and tools.pacing(SAM) is None
    sleeper.release.set()
    await asyncio.sleep(0.05)
    assert outbox.sent == []


async def test_grounding_complete_with_answers_kept_nowhere(manager: DialogManager, tools: CopingTools,
                                                            redis_client, engine: ScriptedEngine) -> None:
    first = await tools.command(SAM, "ground")
    assert "5 things you can see" in first.text and first.buttons[0].action == "tool:ground:next:0"
    second = await say(manager, "lamp, cup, window, cat, book")
    assert "4 things" in second.text
    third = await tools.press(SAM, "tool:ground:next:1")  # skipped: answered in their head
    assert third is not None and "3 things" in third.text
    await say(manager, "traffic")
    await say(manager, "coffee")
    last = await say(manager, "mint")
    assert "Well done" in last.text and last.buttons == ()
    assert engine.prompts == []
    assert await user_keys(redis_client) == []  # nothing of what they noticed was stored


async def test_grounding_cancel_in_the_middle_and_resume(manager: DialogManager, tools: CopingTools) -> None:
    await tools.command(SAM, "ground")
    await say(manager, "lamp")
    again = await tools.command(SAM, "ground")  # still under way: carries on at step 2
    assert "4 things" in again.text
    stale = await tools.press(SAM, "tool:ground:next:0")
    assert stale is not None and "4 things" in stale.text
    await tools.press(SAM, "tool:ground:stop")
    assert (await say(manager, "hello")).kind == ReplyKind.CHAT


async def test_thought_record_complete_with_a_skip_then_change_an_answer_and_save_to_the_journal(
        manager: DialogManager, tools: CopingTools, redis_client, engine: ScriptedEngine) -> None:
    first = await tools.command(SAM, "reframe")
    assert "Step 1 of 6" in first.text and "What happened" in first.text
    await say(manager, "my manager didn't reply to my email")
    await say(manager, "she thinks my work is useless")
    skipped = await tools.press(SAM, "tool:reframe:skip:2")
    assert skipped is not None and "Step 4 of 6" in skipped.text
    await say(manager, "she replied to others")
    await say(manager, "she is on leave this week")
    done = await say(manager, "she is probably just busy")
    assert "Well done" in done.text and "The feeling:\n(nothing yet)" in done.text
    assert [b.action for b in done.buttons] == ["tool:reframe:save", "tool:reframe:change", "tool:reframe:discard"]
    assert engine.prompts == []

    await tools.press(SAM, "tool:reframe:edit:2")
    changed = await say(manager, "anxious, 7 out of 10")
    assert "The feeling:\nanxious, 7 out of 10" in changed.text
    saved = await tools.press(SAM, "tool:reframe:save")
    assert saved is not None and "journal" in saved.text
    assert "tools:reframe" not in await user_keys(redis_client)
    listing = await tools.command(SAM, "journal", "list")
    assert "#1" in listing.text and "What happened" in listing.text


async def test_thought_record_stop_and_resume_days_later_or_start_fresh(manager: DialogManager,
                                                                         tools: CopingTools, redis_client) -> None:
    await tools.command(SAM, "reframe")
    await say(manager, "the party")
    await tools.command(SAM, "cancel")
    ttl = await redis_client.ttl("haven:{console:sam}:tools:reframe")
    assert 6 * 86400 < ttl <= 7 * 86400  # a draft is kept for a week, not for good
    await redis_client.delete("haven:{console:sam}:tools:flow")
    offer = await tools.command(SAM, "reframe")
    assert "1 of 6" in offer.text and [b.action for b in offer.buttons] == ["tool:reframe:resume",
                                                                          "tool:reframe:fresh"]
    resumed = await tools.press(SAM, "tool:reframe:resume")
    assert resumed is not None and "Step 2 of 6" in resumed.text
    fresh = await tools.press(SAM, "tool:reframe:fresh")
    assert fresh is not None and "Step 1 of 6" in fresh.text
    assert not await redis_client.hget("haven:{console:sam}:tools:reframe", "situation")


async def test_thought_record_done_without_saving_keeps_nothing(manager: DialogManager, tools: CopingTools,
                                                                redis_client) -> None:
    await tools.command(SAM, "reframe")
    for words in ["a", "b", "c", "d", "e", "f"]:
        await say(manager, words)
    await tools.press(SAM, "tool:reframe:discard")
    assert await user_keys(redis_client) == []


@pytest.mark.parametrize("words, actions", [
    ("I think I'm having a panic attack", ["tool:breathe"]),
    ("my heart is racing and I feel overwhelmed", ["tool:breathe", "tool:ground"]),
    ("I feel so overwhelmed by everything", ["tool:ground"]),
    ("work was fine today", []),
])
async def test_a_model_reply_offers_an_exercise_when_the_words_fit(manager: DialogManager, words: str,
                                                                   actions: list[str]) -> None:
    reply = await say(manager, words)
    assert reply.kind == ReplyKind.CHAT and [b.action for b in reply.buttons] == actions


async def test_no_exercise_button_in_public_places_or_without_tools(manager: DialogManager, store, screen) -> None:
    public = await manager.handle(IncomingMessage(SAM, "panic attack", chat_id="-100", public=True))
    assert public.buttons == ()
    plain = DialogManager(store, ScriptedEngine(), screen)
    assert (await plain.handle(IncomingMessage(SAM, "panic attack"))).buttons == ()


async def test_suggest_exercise_for_check_ins_opens_each_tool(tools: CopingTools, clock: FakeClock) -> None:
    from core.tools import suggest_exercise

    offer = suggest_exercise(low_mood=True)
    assert [b.action for b in offer.buttons] == ["tool:breathe", "tool:ground", "tool:reframe"]
    outbox = Outbox(clock)
    for button in offer.buttons:
        reply = await tools.press(SAM, button.action, send=outbox)
        assert reply is not None and reply.kind == ReplyKind.NOTICE and reply.text
    await tools.command(SAM, "cancel")
