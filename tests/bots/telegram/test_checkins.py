"""Check-ins and moods on Telegram, end to end: the real bot over HTTP against the fake Bot API, the real
CheckinService on a real Redis, the rules-only safety screen. /checkin with a city, status, pause and off;
/mood recorded by command and by buttons; the chart sent with sendPhoto; a low mood's gentle follow-up and
exercise offer; a scheduled check-in delivered through the TelegramNotifier, and a blocked user switched off."""

from __future__ import annotations

import time

import pytest
from telegram import Bot

from bots.checkin_commands import checkin_line
from bots.telegram.checkins import TelegramNotifier
from bots.telegram.render import line as telegram_line
from core.checkins import DeliveryOutcome, DeliveryResult, checkin_buttons, keys
from core.checkins.texts import line
from core.tools import suggest_exercise
from core.types import Button, UserRef
from tests.bots.telegram.harness import TOKEN, FakeBotApi, TelegramHarness
from tests.fakes import ScriptedEngine

USER = 7401
GROUP = -100555


def buttons(bot: TelegramHarness, chat_id: int = USER, index: int = -1) -> list[str]:
    message = bot.api.bot_messages(chat_id)[index]
    return [b["callback_data"] for row in (message.reply_markup or {}).get("inline_keyboard", []) for b in row]


async def say(bot: TelegramHarness, words: str, expect: str, chat_id: int = USER, **kwargs) -> str:
    before = len(bot.api.shown(chat_id))
    bot.send_text(USER, words, chat_id=chat_id, **kwargs)
    return await bot.wait_for(lambda: next((t for t in bot.api.shown(chat_id)[before:] if expect in t), None))


async def press(bot: TelegramHarness, data: str, expect: str) -> str:
    message = next(m for m in reversed(bot.api.bot_messages(USER))
                   if any(b["callback_data"] == data for row in (m.reply_markup or {}).get("inline_keyboard", [])
                          for b in row))
    before = len(bot.api.shown(USER))
    bot.press(USER, data, message)
    return await bot.wait_for(lambda: next((t for t in bot.api.shown(USER)[before:] if expect in t), None))


async def test_checkin_on_with_a_city_status_pause_and_off(redis_client) -> None:
    async with TelegramHarness.start(redis_client, ScriptedEngine()) as bot:
        assert await say(bot, "/checkin", "Check-ins are off") == line("not_opted_in")
        assert buttons(bot) == ["checkin:on"]
        said = await say(bot, "/checkin on 9am,18:30 weekdays Kolkata", "You're in")
        assert said == line("opted_in", times="09:00, 18:30", days="weekdays", timezone="Asia/Kolkata")
        status = await say(bot, "/checkin", "Check-ins:")
        assert status.startswith("Check-ins: 09:00, 18:30, weekdays, Asia/Kolkata time. Next one:")
        assert buttons(bot) == ["checkin:pause:7", "checkin:stop"]
        await press(bot, "checkin:pause:7", "Paused.")
        assert buttons(bot, index=-2) == []  # the pressed status lost its buttons
        assert "Paused until" in await say(bot, "/checkin", "Check-ins:")
        assert await say(bot, "/checkin pause forever", "How many days") == checkin_line("pause_usage")
        assert await say(bot, "/checkin on Atlantis", "couldn't place") == line("timezone_unknown", text="Atlantis")
        assert await say(bot, "/checkin sideways", "Here's what") == checkin_line("checkin_usage")
        assert await say(bot, "/checkin off", "Check-ins are off.") == line("opted_out")
        assert not (await bot.runtime.checkins.status(UserRef("telegram", str(USER)))).opted_in  # type: ignore[union-attr]


async def test_checkin_and_mood_stay_out_of_groups(redis_client) -> None:
    async with TelegramHarness.start(redis_client, ScriptedEngine()) as bot:
        said = await say(bot, "/mood 1 sad", "private", chat_id=GROUP, chat_type="supergroup")
        assert said.startswith(telegram_line("group_private_only", link="https://t.me/haven_test_bot")[:20])
        assert await bot.runtime.checkins.mood_entries(UserRef("telegram", str(USER))) == []  # type: ignore[union-attr]


async def test_mood_chart_buttons_and_a_low_mood_follow_up(redis_client) -> None:
    engine = ScriptedEngine()
    async with TelegramHarness.start(redis_client, engine) as bot:
        await say(bot, "/mood", checkin_line("mood_ask"))
        photo = bot.api.calls_of("sendPhoto", chat_id=USER)[0]
        assert photo.files["photo"][1].startswith(b"\x89PNG")
        assert photo.params["caption"].startswith(line("summary_empty_1"))
        assert buttons(bot) == [b.action for b in checkin_buttons()]
        said = await press(bot, "mood:4", "I've noted")
        assert said.startswith("Thank you for telling me. I've noted good.")
        assert buttons(bot)[0] == "feel:calm"
        assert await press(bot, "feel:calm", "Noted") == line("mood_updated")
        # A low mood: the core's gentle words with a way to talk, then an exercise offer.
        await say(bot, "/mood", checkin_line("mood_ask"))
        await press(bot, "mood:1", "I've noted")
        offer = suggest_exercise(low_mood=True)
        await bot.wait_for(lambda: offer.text in bot.api.shown(USER))
        follow_up = bot.api.shown(USER)[-2]
        assert line("low_follow_up") in follow_up
        assert buttons(bot, index=-2) == ["checkin:talk", "checkin:resources", "checkin:skip"]
        assert buttons(bot) == [b.action for b in offer.buttons]
        assert await press(bot, "checkin:talk", "I'm here") == line("talk_prompt")
        # Typed, with feelings and a note; then the chart counts all three.
        await say(bot, "/mood 2 tired, anxious - a rough day at work", "I've noted low. (tired, anxious)")
        await bot.wait_for(lambda: bot.api.shown(USER)[-1] == offer.text)
        await say(bot, "/mood", checkin_line("mood_ask"))
        assert bot.api.calls_of("sendPhoto", chat_id=USER)[-1].params["caption"].startswith("Last 30 days: 3")
        assert await say(bot, "/mood great", "To note a mood") == checkin_line("mood_usage")
        assert engine.prompts == []  # none of it went to the model


async def test_admin_command_is_for_admins_only(redis_client) -> None:
    async with TelegramHarness.start(redis_client, ScriptedEngine()) as bot:
        assert await say(bot, "/checkins_admin stats", "admins") == line("admin_only")
    async with TelegramHarness.start(redis_client, ScriptedEngine(), admin_ids=f"telegram:{USER}") as bot:
        await say(bot, "/mood 3 - between us", "I've noted")
        shown = await say(bot, "/checkins_admin stats", "moods_mood")
        assert "moods_mood: 1" in shown and "between us" not in shown


async def test_scheduled_checkins_are_delivered_and_a_blocked_user_is_switched_off(redis_client) -> None:
    reader, blocker, gone = (UserRef("telegram", str(n)) for n in (7501, 7502, 7503))
    async with TelegramHarness.start(redis_client, ScriptedEngine()) as bot:
        service = bot.runtime.checkins
        assert service is not None
        for user in (reader, blocker, gone):
            await service.opt_in(user, times="09:00", timezone="London", skip_if_chatted_hours=0)
        slot = int(time.time())
        bot.api.fail_next("sendMessage", 403, description="Forbidden: bot was blocked by the user")
        for user in (blocker, gone, reader):
            await redis_client.xadd(keys.outbox("telegram"), {"u": keys.member(user), "slot": str(slot), "c": ""})
            if user is blocker:
                await bot.wait_for(lambda: bot.api.calls_of("sendMessage", ok_only=False))
                bot.api.fail_next("sendMessage", 400, description="Bad Request: chat not found")
        await bot.wait_for(lambda: bot.api.shown(int(reader.user_id)))
        assert buttons(bot, int(reader.user_id)) == [b.action for b in checkin_buttons()]
        await bot.wait_for(lambda: len(bot.api.calls_of("sendMessage", ok_only=False)) >= 3)
        await bot.settle()
        assert (await service.status(reader)).opted_in
        assert not (await service.status(blocker)).opted_in
        assert not (await service.status(gone)).opted_in
        # The reader answers the check-in with a button.
        message = bot.api.bot_messages(int(reader.user_id))[-1]
        bot.api.push_update({"callback_query": {
            "id": "cq1", "from": {"id": int(reader.user_id), "is_bot": False, "first_name": "R"},
            "chat_instance": "ci", "data": "mood:5",
            "message": {"message_id": message.message_id, "date": 0, "text": message.text,
                        "chat": {"id": int(reader.user_id), "type": "private", "first_name": "R"}}}})
        await bot.wait_for(lambda: any("I've noted very good" in t for t in bot.api.shown(int(reader.user_id))))


@pytest.mark.parametrize(("status", "description", "retry_after", "expected"), [
    (403, "Forbidden: bot was blocked by the user", None, DeliveryResult.blocked()),
    (400, "Bad Request: chat not found", None, DeliveryResult.blocked()),
    (429, "", 7, DeliveryResult.retry_after(7)),
    (400, "Bad Request: message text is empty", None, DeliveryResult(DeliveryOutcome.FAILED)),
])
async def test_notifier_outcomes(status: int, description: str, retry_after: int | None,
                                 expected: DeliveryResult) -> None:
    api = FakeBotApi()
    await api.start()
    try:
        async with Bot(TOKEN, base_url=api.base_url) as telegram_bot:
            notifier = TelegramNotifier(telegram_bot)
            user = UserRef("telegram", "7601")
            assert await notifier.send_checkin(user, "How are you?", (Button("1", "mood:1"),)) == \
                DeliveryResult.delivered()
            api.fail_next("sendMessage", status, retry_after=retry_after, description=description)
            assert await notifier.send_checkin(user, "How are you?", (Button("1", "mood:1"),)) == expected
    finally:
        await api.stop()
