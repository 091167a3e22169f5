"""The coping tools on Telegram, end to end: the real bot over HTTP against the fake Bot API, the real dialog
manager with the tools on a real Redis, the rules-only safety screen, a scripted model, a fake clock."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from core.dialog import DialogLimits, DialogManager
from core.safety import crisis_reply
from core.tools import CopingTools
from core.tools.texts import line
from tests.bots.telegram.harness import FakeBotApi, TelegramHarness, make_runtime
from tests.core.tools.conftest import FakeSleeper
from tests.fakes import FakeClock, ScriptedEngine

USER = 7301
GROUP = -100777
CRISIS_MESSAGE = "i want to kill myself tonight"


@contextlib.asynccontextmanager
async def tools_bot(redis_client, *, sleeper_hold_after: int | None = None
                    ) -> AsyncIterator[tuple[TelegramHarness, ScriptedEngine, FakeSleeper]]:
    engine = ScriptedEngine(lambda messages: f"I hear you about {messages[-1]['content']}")
    clock = FakeClock()
    sleeper = FakeSleeper(clock, hold_after=sleeper_hold_after)
    api = FakeBotApi()
    await api.start()
    runtime = make_runtime(redis_client, engine, api.base_url)
    tools = CopingTools(redis_client, runtime.store, clock=clock, sleep=sleeper)
    runtime.manager = DialogManager(runtime.store, engine, runtime.screen, clock=clock, tools=tools,
                                    limits=DialogLimits(reply_timeout_seconds=20, default_country="GB"))
    try:
        async with TelegramHarness.start(redis_client, engine, api=api, runtime=runtime) as bot:
            yield bot, engine, sleeper
            sleeper.release.set()
            await tools.close()
    finally:
        await api.stop()


def buttons(bot: TelegramHarness, chat_id: int = USER) -> list[str]:
    """The callback data under the bot's last message."""
    last = bot.api.bot_messages(chat_id)[-1]
    return [b["callback_data"] for row in (last.reply_markup or {}).get("inline_keyboard", []) for b in row]


async def _new_message_with(bot: TelegramHarness, before: int, expect: str) -> str:
    return await bot.wait_for(lambda: next((t for t in bot.api.shown(USER)[before:] if expect in t), None))


async def say(bot: TelegramHarness, words: str, expect: str) -> str:
    """Send `words`; wait for a new bot message containing `expect`, and return it."""
    before = len(bot.api.shown(USER))
    bot.send_text(USER, words)
    return await _new_message_with(bot, before, expect)


async def press(bot: TelegramHarness, data: str, expect: str) -> str:
    message = next(m for m in reversed(bot.api.bot_messages(USER))
                   if any(b["callback_data"] == data for row in (m.reply_markup or {}).get("inline_keyboard", [])
                          for b in row))
    before = len(bot.api.shown(USER))
    bot.press(USER, data, message)
    return await _new_message_with(bot, before, expect)


async def test_safety_plan_complete_skip_stop_resume_edit_and_crisis_shows_it(redis_client) -> None:
    async with tools_bot(redis_client) as (bot, engine, _):
        await say(bot, "/safetyplan", "Step 1 of 6")
        assert buttons(bot) == ["tool:plan:skip:0", "tool:plan:stop"]
        await say(bot, "not sleeping\nskipping meals", "Step 2 of 6")
        await press(bot, "tool:plan:skip:1", "Step 3 of 6")
        assert buttons(bot) == ["tool:plan:skip:2", "tool:plan:stop"]
        pressed = bot.api.bot_messages(USER)[-2]
        assert pressed.reply_markup is None  # the answered step's buttons are gone
        await press(bot, "tool:plan:stop", "Saved so far")
        await say(bot, "how are you?", "I hear you about how are you?")  # chat again, not a plan step

        await redis_client.delete(f"haven:{{telegram:{USER}}}:tools:flow")  # later: the flow's TTL ran out
        await say(bot, "/safetyplan", "2 of the 6 steps")
        await press(bot, "tool:plan:resume", "Step 3 of 6")
        for words, expect in (("the gym", "Step 4 of 6"), ("Mum", "Step 5 of 6"), ("my GP", "Step 6 of 6"),
                              ("stay at a friend's", "Your safety plan is ready")):
            await say(bot, words, expect)
        await press(bot, "tool:plan:change", "Which step")
        await press(bot, "tool:plan:edit:3", "Step 4 of 6")
        edited = await say(bot, "Mum\nmy friend Jo", "Your safety plan")
        assert "• Mum\n• my friend Jo" in edited

        crisis = await say(bot, CRISIS_MESSAGE, "Your own safety plan")
        assert crisis.startswith(crisis_reply("GB")) and "• not sleeping" in crisis and "• my friend Jo" in crisis
        assert not any(CRISIS_MESSAGE in m["content"] for p in engine.prompts for m in p)
        plan_prompts = [m["content"] for p in engine.prompts for m in p if "the gym" in m["content"]]
        assert plan_prompts == []  # plan steps never reached the model


async def test_breathing_is_paced_and_cancel_stops_it(redis_client) -> None:
    async with tools_bot(redis_client, sleeper_hold_after=3) as (bot, _, sleeper):
        await say(bot, "/breathe", "in for 4")
        await bot.wait_for(lambda: sum("Breathe out" in t for t in bot.api.shown(USER)) == 1)
        await say(bot, "/cancel", line("cancelled_breathing"))
        sleeper.release.set()
        await bot.settle()
        shown = bot.api.shown(USER)
        assert [t for t in shown if "Round" in t] == [t for t in shown if t.startswith("Round 1 of 4")]
        assert not any("Notice how your body feels" in t for t in shown)

    async with tools_bot(redis_client) as (bot, _, sleeper):
        await say(bot, "/breathe", "in for 4")
        await bot.wait_for(lambda: any("Notice how your body feels" in t for t in bot.api.shown(USER)))
        assert sum(t.startswith("Round") for t in bot.api.shown(USER)) == 4
        assert sum(sleeper.slept) == 3 + 16 * 4  # the lead-in and sixteen four-second phases, on the fake clock
        assert buttons(bot) == ["tool:breathe", "tool:ground"]


async def test_grounding_and_reframe_through_buttons_and_messages(redis_client) -> None:
    async with tools_bot(redis_client) as (bot, engine, _):
        await say(bot, "/ground", "5 things you can see")
        await say(bot, "desk, plant, mug, phone, door", "4 things")
        await press(bot, "tool:ground:next:1", "3 things")
        await say(bot, "/cancel", "stopped")
        await say(bot, "/reframe", "Step 1 of 6")
        for words, expect in (("exam results", "Step 2"), ("I'll fail", "Step 3")):
            await say(bot, words, expect)
        await press(bot, "tool:reframe:skip:2", "Step 4")
        for words in ("one bad mark", "passed the rest"):
            await say(bot, words, "Step")
        await say(bot, "one mark isn't everything", "Well done for slowing")
        await press(bot, "tool:reframe:save", "Saved in your journal")
        assert engine.prompts == []


async def test_journal_write_list_delete_export_and_forget(redis_client) -> None:
    async with tools_bot(redis_client) as (bot, engine, _):
        await say(bot, "/journal", "privately")
        await say(bot, "Sunny walk with the dog.", "Saved in your journal")
        await say(bot, "/journal list", "#1")
        assert buttons(bot) == ["tool:journal:open:1"]
        await press(bot, "tool:journal:open:1", "Sunny walk")
        await press(bot, "tool:journal:talk:1", "I hear you about")
        assert "Sunny walk with the dog." in engine.prompts[-1][-1]["content"]

        bot.send_text(USER, "/export")
        await bot.wait_for(lambda: bot.api.calls_of("sendDocument", chat_id=USER))
        exported = json.loads(bot.api.calls_of("sendDocument", chat_id=USER)[0].files["document"][1])
        assert exported["data"]["journal"]["1"]["text"] == "Sunny walk with the dog."

        await say(bot, "/journal read 1", "Sunny walk")
        await press(bot, "tool:journal:del:1", "Delete the entry")
        await press(bot, "tool:journal:del!:1", "Deleted")
        await say(bot, "/journal", "privately")
        await say(bot, "second entry", "Saved in your journal")
        bot.send_text(USER, "/forget")
        await bot.wait_for(lambda: "forget:yes" in buttons(bot))
        await press(bot, "forget:yes", "deleted")
        assert [k async for k in redis_client.scan_iter(match=f"haven:{{telegram:{USER}}}:*")] == []


async def test_tools_in_a_group_ask_for_a_private_chat(redis_client) -> None:
    async with tools_bot(redis_client) as (bot, _, _):
        bot.send_text(USER, "/journal", chat_id=GROUP, chat_type="supergroup")
        await bot.wait_for(lambda: line("private_only") in bot.api.shown(GROUP))
        assert [k async for k in redis_client.scan_iter(match=f"haven:{{telegram:{USER}}}:*")] == []
