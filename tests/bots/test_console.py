"""The console chat: scripted through a pipe, with a scripted model and with the real bundled model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bots.console import ConsoleChat
from core.dialog import DialogManager
from core.safety import SafetyScreen
from core.texts import text
from tests.fakes import FakeClock, ScriptedEngine


def one_line(value: str) -> str:
    return " ".join(value.split())


async def test_piped_conversation_consent_three_turns_export_forget(store, redis_client, tmp_path: Path) -> None:
    engine = ScriptedEngine(lambda messages: f"I hear you about {messages[-1]['content']}")
    manager = DialogManager(store, engine, SafetyScreen(semantic=False), clock=FakeClock())
    chat = ConsoleChat(manager, export_dir=tmp_path)
    lines = ["hello there", "/consent yes", "i can't sleep", "work is a lot", "/export", "/forget", "/quit", "never"]
    out, err = io.StringIO(), io.StringIO()
    await chat.run_pipe(io.StringIO("\n".join(lines) + "\n"), out, err)
    replies = out.getvalue().splitlines()
    assert len(replies) == 6  # one line per message up to /quit
    assert replies[0] == "I hear you about hello there"
    assert replies[1] == one_line(text("consent_given"))
    assert replies[2:4] == ["I hear you about i can't sleep", "I hear you about work is a lot"]
    assert replies[5] == one_line(text("forgotten"))
    assert one_line(text("welcome")) in err.getvalue()  # the welcome goes to stderr, not into the replies
    export_file = Path(replies[4].removeprefix("Your data is in "))
    exported = json.loads(export_file.read_text())
    assert [e["content"] for e in exported["data"]["history"] if e["role"] == "user"] == [
        "i can't sleep", "work is a lot"]
    assert oct(export_file.stat().st_mode & 0o777) == "0o600"
    assert [k async for k in redis_client.scan_iter(match="haven:{console:*")] == []


async def test_unknown_command_is_named_kindly(store) -> None:
    chat = ConsoleChat(DialogManager(store, ScriptedEngine(), SafetyScreen(semantic=False)))
    shown = await chat.command("/dance", lambda q: True)
    assert shown == "I don't know the command /dance. Send /help to see what I can do."


@pytest.mark.slow
def test_haven_run_without_tokens_chats_with_the_bundled_model(tmp_path: Path) -> None:
    """The real thing: `haven run` with no bot token falls back to the console chat, in a pipe, on the embedded
    Redis, the bundled SmolLM2 and the full safety screen."""
    env = {**os.environ, "HAVEN_DATA_DIR": str(tmp_path / "data"), "HAVEN_MAX_NEW_TOKENS": "40",
           "HAVEN_TEMPERATURE": "0"}
    for name in ("REDIS_URL", "TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN"):
        env.pop(name, None)
    messages = ["/consent yes", "I can't sleep and my mind keeps racing about work.",
                "What is one small thing I could try tonight?", "I want to end my life", "/forget"]
    done = subprocess.run([sys.executable, "-m", "bots.cli", "run"], input="\n".join(messages) + "\n",
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TELEGRAM_BOT_TOKEN" in done.stderr.splitlines()[0]  # how to connect the bots, in one line
    replies = done.stdout.splitlines()
    assert len(replies) == len(messages)
    assert replies[0] == one_line(text("consent_given"))
    for reply in replies[1:3]:
        assert len(reply.split()) >= 3 and "Traceback" not in reply
    assert "findahelpline.com" in replies[3] or "988" in replies[3]
    assert replies[4] == one_line(text("forgotten"))
    log = (tmp_path / "data" / "haven.log").read_text()
    for message in messages[1:4]:
        assert message not in log
