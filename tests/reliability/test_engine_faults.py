"""The language model hangs, fails, or writes garbage, before or in the middle of a reply: the user hears back
within the configured timeout, sees no error text, and the next message works. Through the dialog manager and
through the real Telegram bot (where a half-streamed reply must end in something whole)."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.dialog import DialogLimits, DialogManager
from core.runtime import Runtime
from core.settings import Settings
from core.texts import text
from core.types import IncomingMessage, ReplyKind, UserRef
from tests.bots.telegram.harness import TOKEN, FakeBotApi, TelegramHarness
from tests.fakes import RecordingSink

TIMEOUT_SECONDS = 1.0
SLACK_SECONDS = 1.0
WORDS = "That sounds like a hard week, and you got through it anyway. What helped a little?"


class FaultyEngine:
    """A model at the network edge that misbehaves as told: `mode` is read at each reply."""

    name = "faulty"

    def __init__(self) -> None:
        self.mode = "ok"
        self.garbage = ""
        self.calls = 0

    def warm_up(self) -> None:
        return None

    async def stream(self, messages, *, max_new_tokens=None):
        self.calls += 1
        mode = self.mode
        if mode == "error":
            raise RuntimeError(f"CUDA exploded while reading {messages[-1]['content']}")
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "garbage":
            yield self.garbage
            return
        for n, word in enumerate(WORDS.split(" ")):
            if n == 6 and mode == "hang-midway":
                await asyncio.Event().wait()
            if n == 6 and mode == "error-midway":
                raise ConnectionResetError("model server went away mid-reply")
            await asyncio.sleep(0.01)
            yield word + " "


GARBAGE = [
    "",
    "   \n\t  ",
    "\x00\x01\x02\x7f",
    "<eos><end_of_turn>",
    "\ud800 lone surrogate",
    "😀" * 3000,
    "word " * 20_000,
    "<b>unclosed *markdown [link](javascript:alert(1)) @everyone",
]


@pytest.fixture
def engine() -> FaultyEngine:
    return FaultyEngine()


@pytest.fixture
def manager(store, engine, screen) -> DialogManager:
    return DialogManager(store, engine, screen, limits=DialogLimits(reply_timeout_seconds=TIMEOUT_SECONDS))


def assert_kind_and_clean(reply_text: str) -> None:
    assert reply_text.strip()
    for leak in ("Traceback", "Error", "Exception", "CUDA", "went away", "surrogate"):
        assert leak not in reply_text, leak


@pytest.mark.parametrize("mode", ["hang", "error", "hang-midway", "error-midway"])
async def test_a_failing_model_gets_the_user_an_answer_in_time_and_the_next_message_works(manager, engine, mode):
    user = UserRef("telegram", f"81{len(mode)}")
    await manager.set_consent(user, True)
    engine.mode = mode
    started = time.monotonic()
    reply = await manager.handle(IncomingMessage(user, "my week was awful"), RecordingSink())
    assert time.monotonic() - started < TIMEOUT_SECONDS + SLACK_SECONDS
    assert reply.kind == ReplyKind.FALLBACK and reply.text.startswith(text("fallback"))
    assert_kind_and_clean(reply.text)

    engine.mode = "ok"
    after = await manager.handle(IncomingMessage(user, "trying again"), RecordingSink())
    assert after.kind == ReplyKind.CHAT and WORDS in after.text


@pytest.mark.parametrize("garbage", GARBAGE, ids=[f"garbage{n}" for n in range(len(GARBAGE))])
async def test_garbage_from_the_model_never_crashes_or_overfills_memory(manager, engine, store, garbage):
    user = UserRef("telegram", "8201")
    await manager.set_consent(user, True)
    engine.mode, engine.garbage = "garbage", garbage
    reply = await manager.handle(IncomingMessage(user, "hello"), RecordingSink())
    assert reply.kind in {ReplyKind.CHAT, ReplyKind.FALLBACK}
    assert reply.text.strip(), "the user always sees something"
    assert "Traceback" not in reply.text
    history = await store.load_history(user)
    assert len(history) <= 2 * 6
    engine.mode = "ok"
    assert WORDS in (await manager.handle(IncomingMessage(user, "and now?"), RecordingSink())).text


async def test_telegram_user_sees_a_whole_line_when_the_model_dies_mid_stream(redis_client, store, screen, engine):
    """The placeholder already shows half a reply; it must end as Haven's kind line, not a torn sentence."""
    api = FakeBotApi()
    await api.start()
    manager = DialogManager(store, engine, screen, limits=DialogLimits(reply_timeout_seconds=TIMEOUT_SECONDS))
    config = Settings(_env_file=None, telegram_bot_token=TOKEN, telegram_base_url=api.base_url)  # type: ignore[call-arg]
    runtime = Runtime(config, redis_client, store, engine, screen, manager)
    try:
        async with TelegramHarness.start(redis_client, engine, api=api, runtime=runtime) as bot:
            for n, mode in enumerate(("hang-midway", "error-midway")):
                user = 8301 + n
                engine.mode = mode
                bot.send_text(user, "it's been a long day")
                await bot.wait_for(lambda user=user: any(text("fallback") in s for s in api.shown(user)),
                                   TIMEOUT_SECONDS + 5)
                await bot.settle()
                shown = api.shown(user)
                assert len([s for s in shown if text("fallback") in s]) == 1
                assert not any(s.startswith("That sounds") for s in shown), "no torn half-reply left on screen"
                engine.mode = "ok"
                bot.send_text(user, "again?")
                await bot.wait_for(lambda user=user: any(WORDS in s for s in api.shown(user)))
    finally:
        await api.stop()
