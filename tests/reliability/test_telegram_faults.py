"""Telegram answers 429 (flood control) and 5xx in bursts while several users talk at once: replies are
delayed, never lost, never doubled; a burst longer than the retries ends in the kind error line, not silence."""

from __future__ import annotations

import asyncio

from bots.telegram.render import line
from tests.bots.telegram.harness import FAST_OPTIONS, TelegramHarness
from tests.fakes import ScriptedEngine

USERS = [9101, 9102, 9103, 9104, 9105]
MESSAGES_EACH = 3


def echo(messages):
    return f"I hear you about {messages[-1]['content']}."


async def test_bursts_of_429_and_5xx_delay_replies_but_lose_none(redis_client):
    engine = ScriptedEngine(echo, delay_seconds=0.01)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.api.fail_next("sendMessage", 429, times=4, retry_after=1)
        bot.api.fail_next("sendMessage", 502, times=FAST_OPTIONS.server_error_retries)
        bot.api.fail_next("editMessageText", 503, times=3)
        for n in range(MESSAGES_EACH):
            for user in USERS:
                bot.send_text(user, f"note {n} from {user}")
        expected = {user: [f"I hear you about note {n} from {user}." for n in range(MESSAGES_EACH)]
                    for user in USERS}

        def all_answered() -> bool:
            return all(all(any(e in s for s in bot.api.shown(u)) for e in expected[u]) for u in USERS)

        await bot.wait_for(all_answered, limit_seconds=40)
        await bot.settle(0.5)
        failed = [c for c in bot.api.calls if c.status != 200]
        assert len(failed) >= 4 + FAST_OPTIONS.server_error_retries, "the faults were really injected"
        for user in USERS:
            shown = bot.api.shown(user)
            replies = [s for s in shown if s.startswith("I hear you")]
            assert replies == expected[user], f"in order, once each: {shown}"
            assert line("error") not in shown


async def test_a_5xx_burst_longer_than_the_retries_ends_in_the_error_line_not_silence(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        user = 9201
        bot.api.fail_next("sendMessage", 500, times=FAST_OPTIONS.server_error_retries + 1)
        bot.send_text(user, "is anyone there")
        await bot.wait_for(lambda: line("error") in bot.api.shown(user))
        bot.send_text(user, "hello?")
        await bot.wait_for(lambda: "I hear you about hello?." in bot.api.shown(user))
        # The record is cleared just after the reply is shown: give it a moment, not forever.
        for _ in range(50):
            if not await redis_client.keys(f"haven:{{telegram:{user}}}:pending:*"):
                break
            await asyncio.sleep(0.1)
        assert not await redis_client.keys(f"haven:{{telegram:{user}}}:pending:*"), "nothing left pending"
