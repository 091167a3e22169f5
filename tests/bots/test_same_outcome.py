"""One scenario (tests/bots/scenarios/*.yaml), run through the Discord and the Telegram adapter: each step must
give the same core-level outcome on both (the kinds of the core's replies, the user's Redis keys, consent and
country as stored, and the core texts the user sees, crisis text included).

Each adapter runs for real offline: Discord on dpytest, Telegram against the fake Bot API server of
tests/bots/telegram/harness.py. The dialog manager is the real one on the real test Redis with the rules-only
safety screen and a scripted model; a spy on the manager notes the kind of every reply it returns.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import discord.ext.test as dpytest
import pytest
import redis.asyncio as aioredis
import yaml

from core.dialog import DialogManager
from core.safety import SafetyScreen, crisis_reply
from core.store import RedisContextStore
from core.store.redis_store import user_prefix
from core.texts import text
from core.types import Reply, UserRef
from tests.fakes import FakeClock, ScriptedEngine

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
# The method whose reply ends each kind of step.
_FINAL_CALL = {"say": "handle", "press": "set_consent", "country": "set_country", "forget": "forget"}


@dataclass(frozen=True)
class Outcome:
    kinds: list[str]
    keys: list[str]
    consent: bool | None
    country: str | None
    shows: list[str]


class CoreSpy:
    """Wraps a dialog manager so every reply it gives is noted as (method, kind), whatever adapter asked."""

    def __init__(self, manager: DialogManager) -> None:
        self.calls: list[tuple[str, str]] = []
        self.texts: list[str] = []
        for name in ("handle", "set_consent", "set_country", "forget", "resources"):
            setattr(manager, name, self._spy(name, getattr(manager, name)))
        real_welcome = manager.welcome

        def welcome() -> Reply:
            reply = real_welcome()
            self.calls.append(("welcome", str(reply.kind)))
            self.texts.append(reply.text)
            return reply

        manager.welcome = welcome  # type: ignore[method-assign]

    def _spy(self, name: str, real: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
        async def spy(*args: Any, **kwargs: Any) -> Reply:
            reply = await real(*args, **kwargs)
            self.calls.append((name, str(reply.kind)))
            self.texts.append(reply.text)
            return reply

        return spy

    def finished(self, since: int, method: str) -> bool:
        return any(name == method for name, _ in self.calls[since:])

    def shown_in(self, shown: list[str], since: int) -> bool:
        """Whether the last reply since `since` is on screen (its opening, as a long reply may be split)."""
        return bool(self.texts[since:]) and any(self.texts[-1][:200] in message for message in shown)


class Driver(Protocol):
    user: UserRef

    async def say(self, words: str) -> list[str]: ...

    async def press(self, action: str) -> list[str]: ...

    async def command(self, name: str, argument: str | None, confirm: bool) -> list[str]: ...


# ---- Discord ----------------------------------------------------------------------------------------------------


class DiscordDriver:
    def __init__(self, bot: Any, wire: Any, welcome_buttons: Any) -> None:
        from tests.bots.discord import harness

        self.h = harness
        self.bot, self.wire = bot, wire
        self.member = dpytest.get_config().members[0]
        self.user = UserRef("discord", str(self.member.id))
        self.welcome_buttons = welcome_buttons
        self.dm: Any = None

    async def say(self, words: str) -> list[str]:
        self.dm = self.dm or await self.h.open_dm(self.member)
        before = len(self.wire.final_texts(self.dm.id))
        await dpytest.message(words, channel=self.dm, member=self.member)
        return self.wire.final_texts(self.dm.id)[before:]

    async def press(self, action: str) -> list[str]:
        # What discord.py does with a click on a persistent button: route it by custom id to the view.
        clicked = self.h.FakeInteraction(self.member)
        await self.h.click(self.bot.action_view(self.welcome_buttons), "haven:" + action, clicked)
        return [a.content for a in clicked.answers if a.content]

    async def command(self, name: str, argument: str | None, confirm: bool) -> list[str]:
        asked = self.h.FakeInteraction(self.member)
        await self.h.run_command(self.bot, name, asked, **({"code": argument} if argument else {}))
        shown = [a.content for a in asked.answers if a.content]
        if confirm:
            view = asked.answers[0].view
            confirming = self.h.FakeInteraction(self.member)
            await self.h.click(view, None, confirming, label="Yes, delete everything")
            shown += [a.content for a in confirming.answers if a.content]
        return shown


async def run_on_discord(manager: DialogManager, steps: list[dict[str, Any]], redis_client: aioredis.Redis
                         ) -> list[Outcome]:
    from tests.bots.discord.harness import start_offline_bot

    welcome_buttons = manager.welcome().buttons  # before the spy: this is the adapter's start-up, not a reply
    spy = CoreSpy(manager)
    bot, wire = await start_offline_bot(manager)
    try:
        return await play(DiscordDriver(bot, wire, welcome_buttons), spy, steps, manager, redis_client)
    finally:
        await dpytest.empty_queue()


# ---- Telegram ---------------------------------------------------------------------------------------------------


class TelegramDriver:
    USER_ID = 424242

    def __init__(self, bot: Any, spy: CoreSpy) -> None:
        self.bot, self.spy = bot, spy
        self.user = UserRef("telegram", str(self.USER_ID))

    async def _step(self, method: str, act: Callable[[], Any]) -> list[str]:
        before, since = len(self.bot.api.shown(self.USER_ID)), len(self.spy.calls)
        act()
        await self.bot.wait_for(lambda: self.spy.finished(since, method))
        # The core has answered; wait until the chat shows that answer (Telegram's per-chat rate limiter may
        # hold a message back for a second), then until the bot is quiet.
        await self.bot.wait_for(lambda: self.spy.shown_in(self.bot.api.shown(self.USER_ID), since))
        await self.bot.settle()
        return list(self.bot.api.shown(self.USER_ID)[before:])

    def _message_with(self, action: str) -> Any:
        for message in reversed(self.bot.api.bot_messages(self.USER_ID)):
            rows = (message.reply_markup or {}).get("inline_keyboard", [])
            if any(button.get("callback_data") == action for row in rows for button in row):
                return message
        raise AssertionError(f"no Telegram message with a {action} button")

    async def say(self, words: str) -> list[str]:
        return await self._step("handle", lambda: self.bot.send_text(self.USER_ID, words))

    async def press(self, action: str) -> list[str]:
        message = self._message_with(action)
        return await self._step("set_consent", lambda: self.bot.press(self.USER_ID, action, message))

    async def command(self, name: str, argument: str | None, confirm: bool) -> list[str]:
        line = f"/{name} {argument}" if argument else f"/{name}"
        if not confirm:
            return await self._step(_FINAL_CALL[name], lambda: self.bot.send_text(self.USER_ID, line))
        before = len(self.bot.api.shown(self.USER_ID))
        self.bot.send_text(self.USER_ID, line)
        await self.bot.wait_for(lambda: self._has_button(f"{name}:yes"))
        shown = list(self.bot.api.shown(self.USER_ID)[before:])
        message = self._message_with(f"{name}:yes")
        return shown + await self._step(_FINAL_CALL[name], lambda: self.bot.press(self.USER_ID, f"{name}:yes",
                                                                                   message))

    def _has_button(self, action: str) -> bool:
        try:
            self._message_with(action)
        except AssertionError:
            return False
        return True


async def run_on_telegram(steps: list[dict[str, Any]], redis_client: aioredis.Redis) -> list[Outcome]:
    from tests.bots.telegram.harness import FakeBotApi, TelegramHarness, make_runtime

    engine = ScriptedEngine()
    api = FakeBotApi()
    await api.start()
    try:
        runtime = make_runtime(redis_client, engine, api.base_url)
        spy = CoreSpy(runtime.manager)
        async with TelegramHarness.start(redis_client, engine, api=api, runtime=runtime) as bot:
            return await play(TelegramDriver(bot, spy), spy, steps, runtime.manager, redis_client)
    finally:
        await api.stop()


# ---- the scenario ---------------------------------------------------------------------------------------------


async def play(driver: Driver, spy: CoreSpy, steps: list[dict[str, Any]], manager: DialogManager,
               redis_client: aioredis.Redis) -> list[Outcome]:
    outcomes = []
    for step in steps:
        since = len(spy.calls)
        if "say" in step:
            shown = await driver.say(step["say"])
        elif "press" in step:
            shown = await driver.press(step["press"])
        else:
            shown = await driver.command(step["command"], step.get("argument"), bool(step.get("confirm")))
        prefix = user_prefix(driver.user)
        keys = sorted(key.removeprefix(prefix) for key in await redis_client.keys(prefix + "*"))
        profile = await manager.store.load_profile(driver.user)
        outcomes.append(Outcome(
            kinds=[kind for _, kind in spy.calls[since:]],
            keys=keys,
            consent=profile.consent,
            country=profile.country,
            shows=[key for key in step.get("shows", []) if _expected_text(key, step) in shown],
        ))
    return outcomes


def _expected_text(key: str, step: dict[str, Any]) -> str:
    if key == "crisis":
        return crisis_reply(step.get("country"))
    return text(key, country=step["country"]) if key == "country_set" else text(key)


def expected_outcomes(steps: list[dict[str, Any]]) -> list[Outcome]:
    return [Outcome(step["kinds"], step["keys"], step.get("consent"), step.get("country"), step.get("shows", []))
            for step in steps]


def load_steps(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))["steps"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[path.stem for path in SCENARIOS])
async def test_discord_and_telegram_give_the_same_outcome(scenario: Path, redis_client: aioredis.Redis,
                                                          store: RedisContextStore) -> None:
    steps = load_steps(scenario)
    expected = expected_outcomes(steps)

    manager = DialogManager(store, ScriptedEngine(), SafetyScreen(semantic=False), clock=FakeClock())
    on_discord = await run_on_discord(manager, steps, redis_client)
    on_telegram = await run_on_telegram(steps, redis_client)

    for number, (step, want, discord_got, telegram_got) in enumerate(
            zip(steps, expected, on_discord, on_telegram, strict=True), start=1):
        where = f"step {number} {json.dumps(step, ensure_ascii=False)}"
        assert discord_got == want, f"Discord, {where}"
        assert telegram_got == want, f"Telegram, {where}"
