"""Crisis alerts on Telegram, end to end: the runtime `open_runtime` builds (so the HAVEN_CRISIS_ALERTS wiring is
the real one) over a real Redis, the real bot polling the fake Bot API server. An admin gets one alert, with the
hashed reference and none of the person's words; a failing alert send never costs the person their crisis reply;
with the setting unset nothing is sent."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.runtime import open_runtime
from core.safety import SafetyScreen, crisis_reply
from core.settings import Settings
from core.types import UserRef
from tests.bots.telegram.harness import TOKEN, FakeBotApi, TelegramHarness, _ApiError
from tests.fakes import ScriptedEngine

PERSON = 7601
ADMIN = 9001
DISTINCTIVE = "marmalade-zebra-4417"
CRISIS_WORDS = f"I want to kill myself tonight, {DISTINCTIVE}"


class AdminUnreachable(FakeBotApi):
    """Telegram answering 500 to every message for the admin's chat, and normally to everyone else."""

    def _api_sendMessage(self, params: dict[str, Any], files: Any) -> dict[str, Any]:
        if int(params["chat_id"]) == ADMIN:
            raise _ApiError(500, "Internal Server Error")
        return super()._api_sendMessage(params, files)


@contextlib.asynccontextmanager
async def haven_on_telegram(redis_client, redis_server: dict[str, str], api: FakeBotApi | None = None, *,
                            admin_ids: str = f"telegram:{ADMIN}", **settings: Any) -> AsyncIterator[TelegramHarness]:
    api = api or FakeBotApi()
    await api.start()
    redis_url = redis_server.get("url") or f"unix://{redis_server['unix_socket_path']}"
    config = Settings(_env_file=None, telegram_bot_token=TOKEN, telegram_base_url=api.base_url,  # type: ignore[call-arg]
                      redis_url=redis_url, admin_ids=admin_ids, **settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(
                open_runtime(config, engine=ScriptedEngine(), screen=SafetyScreen(semantic=False)))
            yield await stack.enter_async_context(
                TelegramHarness.start(redis_client, runtime.engine, api=api, runtime=runtime))
    finally:
        await api.stop()


async def crisis_from_person(bot: TelegramHarness, times: int = 1) -> None:
    for n in range(1, times + 1):
        bot.send_text(PERSON, CRISIS_WORDS, username="sam_private_handle")
        await bot.wait_for(lambda n=n: bot.api.shown(PERSON).count(crisis_reply(None)) >= n)
    await bot.settle()


async def test_an_admin_gets_one_alert_with_the_hashed_ref_and_none_of_the_words(redis_client, redis_server) -> None:
    async with haven_on_telegram(redis_client, redis_server, crisis_alerts=True) as bot:
        await crisis_from_person(bot, times=3)  # three messages in a row: the admins hear about it once

        [alert] = await bot.wait_for(lambda: bot.api.shown(ADMIN))
        assert alert.startswith("Haven admin alert: a crisis reply was sent.")
        assert UserRef("telegram", str(PERSON)).log_id in alert and "Platform: Telegram" in alert
        assert DISTINCTIVE not in alert and "kill" not in alert
        assert "sam_private_handle" not in alert and "Sam" not in alert and str(PERSON) not in alert
        assert not bot.api.calls_of("sendMessage", chat_id=ADMIN)[0].params.get("parse_mode")
        assert bot.api.shown(PERSON) == [crisis_reply(None)] * 3


async def test_a_failing_alert_send_leaves_the_crisis_reply_and_is_not_retried_forever(
        redis_client, redis_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with haven_on_telegram(redis_client, redis_server, AdminUnreachable(), crisis_alerts=True) as bot:
        await crisis_from_person(bot)
        attempts = bot.options.server_error_retries + 1  # the transport's bounded retries, then it gives up
        await bot.wait_for(lambda: len(bot.api.calls_of("sendMessage", chat_id=ADMIN, ok_only=False)) >= attempts)
        await bot.wait_for(lambda: "crisis alert not sent" in caplog.text)
        await bot.settle()

        assert bot.api.shown(PERSON) == [crisis_reply(None)]
        assert len(bot.api.calls_of("sendMessage", chat_id=ADMIN, ok_only=False)) == attempts
        assert "platform=telegram" in caplog.text and "Internal Server Error" not in caplog.text
        assert DISTINCTIVE not in caplog.text


async def test_with_crisis_alerts_unset_no_admin_is_told(redis_client, redis_server) -> None:
    async with haven_on_telegram(redis_client, redis_server) as bot:
        assert bot.runtime.manager.crisis_alert is None
        await crisis_from_person(bot)
        assert bot.api.calls_of("sendMessage", chat_id=ADMIN, ok_only=False) == []


async def test_alerts_on_without_a_telegram_admin_warns_once_at_start(
        redis_client, redis_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.safety.alerts")
    async with haven_on_telegram(redis_client, redis_server, crisis_alerts=True):
        pass
    assert "no telegram admin" not in caplog.text
    async with haven_on_telegram(redis_client, redis_server, admin_ids="discord:5", crisis_alerts=True) as bot:
        await crisis_from_person(bot)
    assert caplog.text.count("names no telegram admin") == 1
    assert bot.api.calls_of("sendMessage", chat_id=ADMIN, ok_only=False) == []
