"""The journal: write with a prompt, list, read, delete, talk about an entry (the only way one reaches the
model), screened first, exported and forgotten."""

from __future__ import annotations

import json

from core.dialog import DialogManager
from core.tools import CopingTools
from core.types import IncomingMessage, ReplyKind
from tests.core.tools.conftest import CRISIS_MESSAGE, SAM, user_keys
from tests.fakes import FakeClock, RecordingSink, ScriptedEngine


async def say(manager: DialogManager, words: str):
    return await manager.handle(IncomingMessage(SAM, words), RecordingSink())


async def test_write_list_read_delete_and_the_model_never_sees_an_entry(
        manager: DialogManager, tools: CopingTools, engine: ScriptedEngine, redis_client, clock: FakeClock) -> None:
    invite = await tools.command(SAM, "journal")
    assert "privately" in invite.text and [b.action for b in invite.buttons][:2] == [
        "tool:journal:another", "tool:journal:list"]
    other = await tools.press(SAM, "tool:journal:another")
    assert other is not None and other.text != invite.text
    saved = await say(manager, "Walked by the river. Felt lighter after.")
    assert saved.kind == ReplyKind.NOTICE and "Saved in your journal" in saved.text
    clock.advance(86400)
    await tools.press(SAM, "tool:journal:write")
    await say(manager, "Rough meeting, but I spoke up.")
    assert engine.prompts == []
    assert (await say(manager, "hello")).kind == ReplyKind.CHAT  # one entry per /journal, then chat again
    assert all("river" not in m["content"] for prompt in engine.prompts for m in prompt)

    listing = await tools.command(SAM, "journal", "list")
    assert listing.text.index("#2") < listing.text.index("#1")  # newest first
    assert [b.action for b in listing.buttons] == ["tool:journal:open:2", "tool:journal:open:1"]
    opened = await tools.press(SAM, "tool:journal:open:1")
    assert opened is not None and "Walked by the river" in opened.text and "15 January 2027" in opened.text
    confirm = await tools.press(SAM, "tool:journal:del:1")
    assert confirm is not None and "15 January 2027" in confirm.text
    await tools.press(SAM, "tool:journal:del!:1")
    after = await tools.command(SAM, "journal", "list")
    assert "#1" not in after.text and "#2" in after.text
    stored = await redis_client.hgetall("haven:{console:sam}:journal")
    assert list(stored) == ["2"] and json.loads(stored["2"])["date"] == "16 January 2027"


async def test_talk_about_an_entry_sends_it_to_the_model_only_when_asked(
        manager: DialogManager, tools: CopingTools, engine: ScriptedEngine) -> None:
    await tools.command(SAM, "journal")
    await say(manager, "I miss my grandmother.")
    assert engine.prompts == []
    reply = await tools.command(SAM, "journal", "talk 1")
    assert reply.kind == ReplyKind.CHAT
    assert "I miss my grandmother." in engine.prompts[-1][-1]["content"]
    missing = await tools.command(SAM, "journal", "talk 9")
    assert "can't find" in missing.text


async def test_a_crisis_written_as_a_journal_entry_gets_the_crisis_reply(manager: DialogManager,
                                                                        tools: CopingTools, redis_client) -> None:
    await tools.command(SAM, "journal")
    reply = await say(manager, CRISIS_MESSAGE)
    assert reply.kind == ReplyKind.CRISIS
    assert not await redis_client.exists("haven:{console:sam}:journal")


async def test_export_includes_entries_and_forget_deletes_them(manager: DialogManager, tools: CopingTools,
                                                               redis_client) -> None:
    await tools.command(SAM, "journal")
    await say(manager, "A quiet evening.")
    exported = await manager.export(SAM)
    assert exported["data"]["journal"]["1"]["text"] == "A quiet evening."
    await manager.forget(SAM)
    assert await user_keys(redis_client) == []
    assert "empty" in (await tools.command(SAM, "journal", "list")).text


async def test_entries_use_the_persons_time_zone(manager: DialogManager, tools: CopingTools, store,
                                                 clock: FakeClock) -> None:
    clock.t = 1_800_000_000.0 - 3600 * 6  # 15 Jan 2027, 02:00 UTC: still 14 January in New York
    await store.update_profile(SAM, timezone="America/New_York")
    await tools.command(SAM, "journal")
    saved = await say(manager, "late night")
    assert "14 January 2027" in saved.text
