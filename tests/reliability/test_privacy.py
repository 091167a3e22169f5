"""Privacy under a real conversation: at DEBUG, through the core and both adapters, no log line holds a
message, a model reply, a username, a platform id or a token; /forget leaves no key of the user anywhere in
Redis (history, profile, check-ins, moods, rate limit, pending records); /export holds everything stored about
the user and nothing about anyone else."""

from __future__ import annotations

import io
import json
import logging

import discord.ext.test as dpytest
import pytest

from bots.telegram.pending import PendingMessages
from core.checkins import keys as checkin_keys
from core.checkins.service import CheckinService
from core.dialog import DialogManager
from core.logs import configure_logging
from core.ratelimit import UserRateLimiter
from core.types import IncomingMessage, UserRef
from tests.bots.discord.harness import open_dm, start_offline_bot
from tests.bots.telegram.harness import TOKEN, TelegramHarness
from tests.fakes import FakeClock, RecordingSink, ScriptedEngine

TELEGRAM_ID, CORE_ID = 918273611, "console-user-551"
SECRETS = {
    "user words": "my neighbour Bartholomew keeps banging on the wall",
    "user words 2": "I keep thinking about the Quimby account",
    "model words": "That sounds draining; Bartholomew's noise is not your fault",
    "username": "zephyrine_private",
    "token": TOKEN,
    "token secret part": TOKEN.split(":")[1],
    "telegram id": str(TELEGRAM_ID),
    "core id": CORE_ID,
}


def reply_with_secret(messages) -> str:
    return SECRETS["model words"] + ". What would help tonight?"


@pytest.fixture
def every_log_line():
    """Haven's own logging set-up at DEBUG, then every library logger opened up to DEBUG as well (the worst
    case: an operator who turns everything up while debugging)."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("DEBUG", stream=stream)
    opened = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    for name in opened:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield stream
    for name, level in opened.items():
        logging.getLogger(name).setLevel(level)
    root.handlers[:], root.level = saved[0], saved[1]


async def test_no_log_line_holds_words_names_ids_or_tokens(every_log_line, redis_client, store, screen):
    engine = ScriptedEngine(reply_with_secret)
    # The core, as the console chat drives it.
    manager = DialogManager(store, engine, screen, clock=FakeClock())
    core_user = UserRef("console", CORE_ID)
    await manager.set_consent(core_user, True)
    for words in (SECRETS["user words"], SECRETS["user words 2"], "i want to kill myself"):
        await manager.handle(IncomingMessage(core_user, words), RecordingSink())
    # Telegram, with a failure the error handler has to log.
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(TELEGRAM_ID, SECRETS["user words"], username=SECRETS["username"])
        await bot.wait_for(lambda: any(SECRETS["model words"] in s for s in bot.api.shown(TELEGRAM_ID)))
        bot.api.fail_next("sendMessage", 500, times=10)
        bot.send_text(TELEGRAM_ID, SECRETS["user words 2"], username=SECRETS["username"])
        await bot.wait_for(lambda: len(bot.api.calls_of("sendMessage", ok_only=False)) >= 5)
        await bot.settle(0.5)
    # Discord, in a DM.
    _bot, wire = await start_offline_bot(DialogManager(store, engine, screen))
    member = dpytest.get_config().members[0]
    dm = await open_dm(member)
    await dpytest.message(SECRETS["user words"], channel=dm, member=member)
    assert any(SECRETS["model words"] in t for t in wire.final_texts(dm.id))
    await dpytest.empty_queue()

    logged = every_log_line.getvalue()
    assert logged.count("\n") > 30, "the conversation really was logged, at DEBUG"
    assert "replied user=" in logged and "message user=" in logged
    secrets = {**SECRETS, "discord name": member.name, "discord id": str(member.id)}
    leaks = {what: [ln for ln in logged.splitlines() if value in ln][:3]
             for what, value in secrets.items() if value in logged}
    assert leaks == {}


async def test_forget_leaves_no_key_of_the_user_anywhere(redis_client, store, screen):
    user, other = UserRef("telegram", "5550101"), UserRef("telegram", "5550202")
    clock = FakeClock()
    manager = DialogManager(store, ScriptedEngine(), screen, clock=clock)
    checkins = CheckinService(redis_client, store, screen, clock=clock)
    limiter = UserRateLimiter(redis_client)
    pending = PendingMessages(redis_client)
    for who in (user, other):
        await manager.set_consent(who, True)
        await manager.handle(IncomingMessage(who, "hello"), RecordingSink())
        await manager.handle(IncomingMessage(who, "in the group", chat_id="-100", public=True), RecordingSink())
        await checkins.opt_in(who, times="09:00", timezone="Europe/London")
        await checkins.record_mood(who, 3, ["tired"], "long day")
        await limiter.admit(who)
        await pending.accept(int(who.user_id), 42, int(who.user_id), 7)

    async def traces(of: UserRef) -> list[str]:
        found = [k async for k in redis_client.scan_iter(match="*", count=1000) if of.user_id in k]
        if await redis_client.zscore(checkin_keys.DUE, checkin_keys.member(of)) is not None:
            found.append(f"{checkin_keys.DUE} member {checkin_keys.member(of)}")
        return found

    assert len(await traces(user)) >= 5, "the user really had data in every place"
    exported = await manager.export(user)
    dumped = json.dumps(exported, ensure_ascii=False)
    assert "hello" in dumped and "in the group" in dumped and "long day" in dumped
    for kind in ("profile", "history", "ratelimit", "pending", "moods", "checkins"):
        assert any(kind in key for key in exported["data"]), f"/export is missing {kind}: {list(exported['data'])}"
    assert other.user_id not in dumped, "/export holds nothing of anyone else"

    await manager.forget(user)
    await checkins.forget_user(user)  # what lives outside the user's prefix (the global due index)
    assert await traces(user) == []
    assert len(await traces(other)) >= 5, "the other user's data is untouched"


async def test_the_dialog_managers_forget_alone_clears_the_due_index(redis_client, store, screen):
    user = UserRef("telegram", "5550303")
    checkins = CheckinService(redis_client, store, screen)
    manager = DialogManager(store, ScriptedEngine(), screen, checkins=checkins)
    await manager.set_consent(user, True)
    await checkins.opt_in(user, times="09:00", timezone="Europe/London")
    await manager.forget(user)
    assert await redis_client.zscore(checkin_keys.DUE, checkin_keys.member(user)) is None
