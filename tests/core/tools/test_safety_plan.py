"""The safety plan through the dialog manager: built step by step, skipped, stopped and resumed, changed,
shown under a crisis reply, exported and forgotten."""

from __future__ import annotations

import json

from core.dialog import DialogManager
from core.safety import crisis_reply, helplines_for
from core.tools import CopingTools
from core.tools.texts import tool_data
from core.types import IncomingMessage, ReplyKind
from tests.core.tools.conftest import CRISIS_MESSAGE, SAM, user_keys
from tests.fakes import RecordingSink, ScriptedEngine

STEPS = [s["key"] for s in tool_data("safety_plan")["steps"]]


async def say(manager: DialogManager, words: str):
    return await manager.handle(IncomingMessage(SAM, words), RecordingSink())


def actions(reply) -> list[str]:
    return [b.action for b in reply.buttons]


async def test_build_the_whole_plan_skipping_a_step_and_nothing_reaches_the_model(
        manager: DialogManager, tools: CopingTools, engine: ScriptedEngine, redis_client) -> None:
    first = await tools.command(SAM, "safetyplan")
    assert "Step 1 of 6" in first.text and "My warning signs" in first.text
    assert actions(first) == ["tool:plan:skip:0", "tool:plan:stop"]

    second = await say(manager, "can't sleep\n- pulling away from friends")
    assert second.kind == ReplyKind.NOTICE and "Step 2 of 6" in second.text
    third = await say(manager, "a long walk")
    assert "Step 3 of 6" in third.text
    fourth = await tools.press(SAM, "tool:plan:skip:2")  # nothing for people and places, for now
    assert fourth is not None and "Step 4 of 6" in fourth.text
    fifth = await say(manager, "my sister Ana, 07700 900123")
    gb = helplines_for("GB")
    assert "Step 5 of 6" in fifth.text and gb is not None and gb.lines[0] in fifth.text  # prefilled helplines
    sixth = await say(manager, "Dr Okafor at the surgery")
    assert "Step 6 of 6" in sixth.text
    done = await say(manager, "ask my flatmate to hold on to things for a while")
    assert "Your safety plan is ready" in done.text
    assert "• can't sleep\n• pulling away from friends" in done.text and gb.lines[0] in done.text
    assert engine.prompts == []  # every answer went to the plan, none to the model

    stored = await redis_client.hgetall("haven:{console:sam}:safety_plan")
    assert json.loads(stored["warning_signs"]) == ["can't sleep", "pulling away from friends"]
    assert "distractions" not in stored and stored["progress"] == "6"
    assert "tools:flow" not in await user_keys(redis_client)  # the form is finished: chat is chat again
    after = await say(manager, "thanks, that helped")
    assert after.kind == ReplyKind.CHAT


async def test_stop_in_the_middle_then_resume_later_after_the_flow_expired(
        manager: DialogManager, tools: CopingTools, redis_client, engine: ScriptedEngine) -> None:
    await tools.command(SAM, "safetyplan")
    await say(manager, "snapping at people")
    stopped = await tools.command(SAM, "cancel")
    assert "saved" in stopped.text.lower()
    chat = await say(manager, "anyway, how are you")
    assert chat.kind == ReplyKind.CHAT and engine.prompts  # no longer captured by the plan

    await redis_client.delete("haven:{console:sam}:tools:flow")  # as if the TTL ran out overnight
    offer = await tools.command(SAM, "safetyplan")
    assert "1 of the 6 steps" in offer.text and actions(offer)[0] == "tool:plan:resume"
    resumed = await tools.press(SAM, "tool:plan:resume")
    assert resumed is not None and "Step 2 of 6" in resumed.text
    assert (await say(manager, "music")).text.count("Step 3 of 6") == 1


async def test_change_one_step_later_and_a_stale_button_does_nothing_wrong(
        manager: DialogManager, tools: CopingTools) -> None:
    await tools.command(SAM, "safetyplan")
    for words in ["tired", "walk", "the park", "Ana", "GP", "stay with people"]:
        await say(manager, words)
    stale = await tools.press(SAM, "tool:plan:skip:3")  # a button from earlier in the conversation
    assert stale is not None and "Step 1 of 6" not in stale.text

    shown = await tools.command(SAM, "safetyplan")
    assert "the park" in shown.text and "tool:plan:change" in actions(shown)
    pick = await tools.press(SAM, "tool:plan:change")
    assert pick is not None and "tool:plan:edit:2" in actions(pick)
    editing = await tools.press(SAM, "tool:plan:edit:2")
    assert editing is not None and "the park" in editing.text and actions(editing)[0] == "tool:plan:keep:2"
    changed = await say(manager, "the library\nmy cousin's place")
    assert "• the library\n• my cousin's place" in changed.text and "the park" not in changed.text
    assert "Step 4 of 6" not in changed.text  # editing one step goes back to the plan, not on through it
    kept = await tools.press(SAM, "tool:plan:edit:0")
    assert kept is not None
    back = await tools.press(SAM, "tool:plan:keep:0")
    assert back is not None and "• tired" in back.text


async def test_crisis_inside_a_plan_step_gets_the_crisis_reply_with_the_persons_own_plan(
        manager: DialogManager, tools: CopingTools, redis_client) -> None:
    await manager.set_consent(SAM, True)
    await tools.command(SAM, "safetyplan")
    await say(manager, "not eating")
    await say(manager, "call my brother\nhot shower")
    reply = await say(manager, CRISIS_MESSAGE)  # typed as the answer to step 3
    assert reply.kind == ReplyKind.CRISIS
    assert reply.text.startswith(crisis_reply("GB"))
    assert "Your own safety plan" in reply.text and "• hot shower" in reply.text
    stored = await redis_client.hgetall("haven:{console:sam}:safety_plan")
    assert CRISIS_MESSAGE not in json.dumps(stored)  # the crisis message was not saved as a plan step
    history = await redis_client.lrange("haven:{console:sam}:history", 0, -1)
    assert all("hot shower" not in item for item in history)  # the model never reads the plan from history
    assert (await say(manager, "ok")).kind == ReplyKind.CHAT  # the form paused: the next message is chat


async def test_crisis_reply_without_a_plan_is_the_fixed_text(manager: DialogManager) -> None:
    reply = await say(manager, CRISIS_MESSAGE)
    assert reply.kind == ReplyKind.CRISIS and reply.text == crisis_reply("GB")


async def test_export_includes_the_plan_and_forget_deletes_it(manager: DialogManager, tools: CopingTools,
                                                              redis_client) -> None:
    await tools.command(SAM, "safetyplan")
    await say(manager, "not sleeping")
    exported = await manager.export(SAM)
    assert exported["data"]["safety_plan"]["warning_signs"] == ["not sleeping"]
    await manager.forget(SAM)
    assert await user_keys(redis_client) == []
    fresh = await tools.command(SAM, "safetyplan")
    assert "Step 1 of 6" in fresh.text


async def test_delete_the_plan_asks_first(manager: DialogManager, tools: CopingTools, redis_client) -> None:
    await tools.command(SAM, "safetyplan")
    await say(manager, "tired")
    confirm = await tools.press(SAM, "tool:plan:delete")
    assert confirm is not None and actions(confirm) == ["tool:plan:delete!", "tool:plan:kept"]
    assert await redis_client.exists("haven:{console:sam}:safety_plan")
    await tools.press(SAM, "tool:plan:delete!")
    assert not await redis_client.exists("haven:{console:sam}:safety_plan")


async def test_store_trouble_is_a_kind_line(screen, tmp_path) -> None:
    from core.store import RedisContextStore, connect_redis

    dead = connect_redis(unix_socket_path=str(tmp_path / "nobody.sock"))
    tools = CopingTools(dead, RedisContextStore(dead, max_turns=2, max_tokens=100, ttl_seconds=60))
    reply = await tools.command(SAM, "safetyplan")
    assert "trouble" in reply.text
    manager = DialogManager(RedisContextStore(dead, max_turns=2, max_tokens=100, ttl_seconds=60),
                            ScriptedEngine(), screen, tools=tools)
    crisis = await manager.handle(IncomingMessage(SAM, CRISIS_MESSAGE))
    assert crisis.kind == ReplyKind.CRISIS and crisis.text == crisis_reply(None)
    await dead.aclose()
