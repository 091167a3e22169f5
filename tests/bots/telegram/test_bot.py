"""Haven's Telegram bot end to end: the real python-telegram-bot over real HTTP against the fake Bot API on
127.0.0.1, the real dialog manager and safety rules, a real Redis, a scripted model."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bots.checkin_commands import checkin_line
from bots.rendering import STREAM_EDIT_INTERVAL_SECONDS
from bots.telegram.render import line, utf16_len
from core.checkins.texts import line as checkin_text
from core.safety import crisis_reply
from core.texts import text
from tests.bots.telegram.harness import (
    BOT_ID,
    BOT_USERNAME,
    FAST_OPTIONS,
    STICKER,
    TOKEN,
    FakeBotApi,
    TelegramHarness,
    mention_entity,
    message_update,
)
from tests.fakes import ScriptedEngine

USER = 7001
GROUP = -100555


class ChunkedEngine:
    """A fake model that streams a fixed reply in big chunks (the output guard re-reads the whole draft on
    every partial, so word-by-word streaming of 10,000 characters would test the guard's speed, not ours)."""

    name = "chunked"

    def __init__(self, reply: str, chunk_chars: int) -> None:
        self.reply, self.chunk_chars = reply, chunk_chars
        self.prompts: list = []

    def warm_up(self) -> None:
        return None

    async def stream(self, messages, *, max_new_tokens=None):
        self.prompts.append(list(messages))
        for start in range(0, len(self.reply), self.chunk_chars):
            await asyncio.sleep(0.01)
            yield self.reply[start:start + self.chunk_chars]


def echo(messages):
    return f"I hear you about {messages[-1]['content']}"


def consent_buttons(api: FakeBotApi, chat_id: int):
    for message in api.bot_messages(chat_id):
        rows = (message.reply_markup or {}).get("inline_keyboard", [])
        actions = [button["callback_data"] for row in rows for button in row]
        if "consent:yes" in actions:
            return message, actions
    return None


async def user_keys(redis_client, user_id: int) -> list[str]:
    return [key for key in await redis_client.keys("*") if str(user_id) in key]


async def test_consent_flow_with_buttons_and_memory_across_a_restart(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "/start")
        welcome, actions = await bot.wait_for(lambda: consent_buttons(bot.api, USER))
        assert actions == ["consent:yes", "consent:no"]
        assert "AI companion" in welcome.text and "not a therapist" in welcome.text

        bot.press(USER, "consent:yes", welcome)
        await bot.wait_for(lambda: text("consent_given") in bot.api.shown(USER))
        assert bot.api.calls_of("answerCallbackQuery")
        assert welcome.reply_markup in (None, {}), "answered buttons are taken away"
        assert await redis_client.hget(f"haven:{{telegram:{USER}}}:profile", "consent") is not None

        bot.send_text(USER, "my sister moved away")
        await bot.wait_for(lambda: "I hear you about my sister moved away" in bot.api.shown(USER))

    # A deploy restarts the bot: a fresh process, same Redis. The conversation is still there.
    engine_after = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine_after) as bot:
        bot.send_text(USER, "I miss her")
        await bot.wait_for(lambda: "I hear you about I miss her" in bot.api.shown(USER))
        prompt = " ".join(m["content"] for m in engine_after.prompts[-1])
        assert "my sister moved away" in prompt
        assert consent_buttons(bot.api, USER) is None, "a user who answered is not asked again"


async def test_streamed_reply_is_one_message_edited_at_a_bounded_rate(redis_client):
    words = "Thank you for telling me. That sounds really heavy to carry on your own, and it makes sense " \
            "that you feel worn out. What would help most right now, even a little?"
    engine = ScriptedEngine(lambda m: words, delay_seconds=0.03)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "I'm exhausted")
        await bot.wait_for(lambda: words in bot.api.shown(USER))
        await bot.settle()
        reply = bot.api.bot_messages(USER)[-1]
        sends = bot.api.calls_of("sendMessage", chat_id=USER)
        reply_sends = [c for c in sends if not c.params["text"].startswith("Hi, I'm Haven")]
        assert len(reply_sends) == 1, "the reply streams into one placeholder message"
        edits = [c for c in bot.api.calls_of("editMessageText", chat_id=USER)
                 if int(c.params["message_id"]) == reply.message_id]
        assert len(edits) >= 2 and reply.text == words
        gaps = [b.at - a.at for a, b in zip([reply_sends[0], *edits], edits, strict=False)]
        assert min(gaps) >= FAST_OPTIONS.edit_interval_seconds * 0.9, gaps
        typing = bot.api.calls_of("sendChatAction", chat_id=USER)
        assert typing and typing[0].params["action"] == "typing" and typing[0].at <= reply_sends[0].at
    assert STREAM_EDIT_INTERVAL_SECONDS >= 1.0, "the production cadence respects ~1 edit/s per chat"


async def test_ten_thousand_character_reply_is_split_whole(redis_client):
    paragraph = "This is one calm sentence about taking things one step at a time. " * 12
    long_reply = "\n\n".join(paragraph.strip() for _ in range(13))
    assert len(long_reply) > 10_000
    engine = ChunkedEngine(long_reply, chunk_chars=700)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "tell me everything")
        await bot.wait_for(lambda: len(bot.api.shown(USER)) >= 4 and "".join(bot.api.shown(USER)[1:]).count(
            "one calm sentence") == long_reply.count("one calm sentence"))
        await bot.settle()
        pieces = bot.api.shown(USER)[1:]  # after the welcome
        assert len(pieces) == 3
        assert all(utf16_len(piece) <= 4096 for piece in pieces)
        assert all(piece.endswith(".") for piece in pieces), "cut at paragraph or sentence ends"
        assert " ".join(" ".join(pieces).split()) == " ".join(long_reply.split())


async def test_markdown_heavy_reply_is_sent_verbatim_as_plain_text(redis_client):
    tricky = "Try *this*: _one_ [small] step (today) ~ `2 > 1` #hope + - = | {ok}. Isn't it? 100% <b>bold!"
    engine = ScriptedEngine(lambda m: tricky)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "any tips?")
        await bot.wait_for(lambda: tricky in bot.api.shown(USER))
        sent = bot.api.calls_of("sendMessage") + bot.api.calls_of("editMessageText")
        assert all(not c.params.get("parse_mode") for c in sent)
        assert not [c for c in bot.api.calls if c.status == 400]


async def test_crisis_message_gets_the_fixed_reply_and_never_reaches_the_model(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "I want to kill myself tonight")
        await bot.wait_for(lambda: crisis_reply(None) in bot.api.shown(USER))
        await bot.settle()
        assert engine.prompts == []
        assert bot.api.shown(USER) == [crisis_reply(None)]


async def test_group_answers_mentions_and_replies_only_and_stores_nothing_else(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.api.push_update(message_update(8001, text="rough week for everyone huh", chat_id=GROUP,
                                           chat_type="supergroup"))
        await bot.settle(0.5)
        assert bot.api.calls_of("sendMessage", chat_id=GROUP) == []
        assert bot.api.calls_of("sendChatAction", chat_id=GROUP) == []
        assert engine.prompts == []
        assert await user_keys(redis_client, 8001) == []

        said = f"@{BOT_USERNAME} I can't sleep before exams"
        asked = bot.api.push_update(message_update(8002, text=said, chat_id=GROUP, chat_type="supergroup",
                                                   entities=[mention_entity(said)]))
        await bot.wait_for(lambda: any("I hear you about I can't sleep before exams" in t
                                       for t in bot.api.shown(GROUP)))
        await bot.settle()
        assert engine.prompts[-1][-1]["content"] == "I can't sleep before exams", "the mention is stripped"
        answer = [c for c in bot.api.calls_of("sendMessage", chat_id=GROUP) if "I hear you" in c.params["text"]]
        assert answer[0].params["reply_parameters"]["message_id"] == asked["message"]["message_id"]
        shown = "\n".join(bot.api.shown(GROUP))
        assert f"https://t.me/{BOT_USERNAME}" in shown, "suggests a private chat"
        assert all(not (m.reply_markup or {}).get("inline_keyboard") for m in bot.api.bot_messages(GROUP)), \
            "no consent buttons in a group: anyone could press them"

        haven_said = {"message_id": bot.api.bot_messages(GROUP)[-1].message_id, "date": 0, "text": "…",
                      "chat": {"id": GROUP, "type": "supergroup", "title": "g"},
                      "from": {"id": BOT_ID, "is_bot": True, "first_name": "Haven"}}
        bot.api.push_update(message_update(8003, text="same here honestly", chat_id=GROUP,
                                           chat_type="supergroup", reply_to=haven_said))
        await bot.wait_for(lambda: any("I hear you about same here honestly" in t for t in bot.api.shown(GROUP)))
        assert await user_keys(redis_client, 8001) == []


async def test_private_memory_never_reaches_a_group_reply_and_forget_covers_both(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "/start")
        welcome, _ = await bot.wait_for(lambda: consent_buttons(bot.api, USER))
        bot.press(USER, "consent:yes", welcome)
        await bot.wait_for(lambda: text("consent_given") in bot.api.shown(USER))
        bot.send_text(USER, "I relapsed last night")
        await bot.wait_for(lambda: "I hear you about I relapsed last night" in bot.api.shown(USER))

        said = f"@{BOT_USERNAME} any tips for exam week?"
        bot.api.push_update(message_update(USER, text=said, chat_id=GROUP, chat_type="supergroup",
                                           entities=[mention_entity(said)]))
        await bot.wait_for(lambda: any("exam week" in t for t in bot.api.shown(GROUP)))
        group_prompt = " ".join(m["content"] for m in engine.prompts[-1])
        assert "relapsed" not in group_prompt, "nothing said in private is drawn into a public reply"

        bot.send_text(USER, "/forget")
        confirm = await bot.wait_for(lambda: next((m for m in bot.api.bot_messages(USER)
                                                   if m.text == line("forget_confirm")), None))
        bot.press(USER, "forget:yes", confirm)
        await bot.wait_for(lambda: text("forgotten") in bot.api.shown(USER))
        await bot.settle()
        assert await user_keys(redis_client, USER) == []


async def test_forget_asks_first_then_leaves_no_key_of_the_user(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "/start")
        welcome, _ = await bot.wait_for(lambda: consent_buttons(bot.api, USER))
        bot.press(USER, "consent:yes", welcome)
        await bot.wait_for(lambda: text("consent_given") in bot.api.shown(USER))
        bot.send_text(USER, "work is a lot")
        await bot.wait_for(lambda: "I hear you about work is a lot" in bot.api.shown(USER))
        assert await user_keys(redis_client, USER)

        bot.send_text(USER, "/forget")
        confirm = await bot.wait_for(lambda: next((m for m in bot.api.bot_messages(USER)
                                                   if m.text == line("forget_confirm")), None))
        actions = [b["callback_data"] for row in confirm.reply_markup["inline_keyboard"] for b in row]
        assert actions == ["forget:yes", "forget:no"]
        assert await user_keys(redis_client, USER), "nothing is deleted before the user confirms"

        bot.press(USER, "forget:yes", confirm)
        await bot.wait_for(lambda: text("forgotten") in bot.api.shown(USER))
        await bot.settle()
        assert await user_keys(redis_client, USER) == []


async def test_export_sends_a_json_document(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.send_text(USER, "/start")
        welcome, _ = await bot.wait_for(lambda: consent_buttons(bot.api, USER))
        bot.press(USER, "consent:yes", welcome)
        await bot.wait_for(lambda: text("consent_given") in bot.api.shown(USER))
        bot.send_text(USER, "I started running again")
        await bot.wait_for(lambda: "I hear you about I started running again" in bot.api.shown(USER))

        bot.send_text(USER, "/export")
        call = (await bot.wait_for(lambda: bot.api.calls_of("sendDocument", chat_id=USER)))[0]
        name, body = call.files["document"]
        assert name.startswith("haven-export-") and name.endswith(".json")
        exported = json.loads(body)
        assert "I started running again" in json.dumps(exported)


async def test_flood_control_mid_stream_delays_the_reply_but_never_loses_it(redis_client):
    words = " ".join(f"word{i}" for i in range(60))
    engine = ScriptedEngine(lambda m: words, delay_seconds=0.01)
    api = FakeBotApi()
    await api.start()
    try:
        async with TelegramHarness.start(redis_client, engine, api=api) as bot:
            bot.send_text(USER, "/privacy")
            await bot.wait_for(lambda: bot.api.shown(USER))
            api.fail_next("editMessageText", 429, retry_after=1)
            bot.send_text(USER, "talk to me")
            await bot.wait_for(lambda: words in bot.api.shown(USER), limit_seconds=15)
            limited = [c for c in api.calls if c.status == 429]
            assert len(limited) == 1
            after = [c for c in api.calls if c.method in {"editMessageText", "sendMessage"}
                     and c.at > limited[0].at and c.status == 200]
            assert after and after[0].at - limited[0].at >= 1.0, "waited retry_after before sending again"

            # A 429 on a complete message: delayed by retry_after, delivered exactly once.
            api.fail_next("sendMessage", 429, retry_after=1)
            bot.send_text(USER, "/help")
            await bot.wait_for(lambda: text("help") in bot.api.shown(USER), limit_seconds=15)
            await bot.settle()
            helps = [c for c in api.calls if c.method == "sendMessage" and c.params.get("text") == text("help")]
            assert [c.status for c in helps] == [429, 200]
            assert helps[1].at - helps[0].at >= 1.0
            assert bot.api.shown(USER).count(text("help")) == 1
    finally:
        await api.stop()


async def test_server_errors_are_retried_a_bounded_number_of_times(redis_client, caplog):
    engine = ScriptedEngine(echo)
    api = FakeBotApi()
    await api.start()
    try:
        async with TelegramHarness.start(redis_client, engine, api=api) as bot:
            api.fail_next("sendMessage", 502, times=2)
            bot.send_text(USER, "/privacy")
            await bot.wait_for(lambda: text("privacy") in bot.api.shown(USER))
            assert [c.status for c in api.calls if c.method == "sendMessage"] == [502, 502, 200]

            # Telegram down for longer than the retries: the error handler logs it and, once Telegram
            # answers again, the user hears a kind line instead of silence or a traceback.
            attempts = FAST_OPTIONS.server_error_retries + 1
            api.fail_next("sendMessage", 500, times=attempts)
            with caplog.at_level(logging.ERROR, logger="bots.telegram"):
                bot.send_text(USER, "/help")
                await bot.wait_for(lambda: line("error") in bot.api.shown(USER))
            assert [c.status for c in api.calls if c.method == "sendMessage"][3:] == [500] * attempts + [200]
            failures = [r for r in caplog.records if r.name.startswith("bots.telegram") and "update failed" in
                        r.getMessage()]
            assert failures and "NetworkError" in failures[0].getMessage()
    finally:
        await api.stop()


async def test_sticker_gets_a_kind_line(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.api.push_update(message_update(USER, extra=STICKER))
        await bot.wait_for(lambda: bot.api.shown(USER))
        assert bot.api.shown(USER) == [line("non_text", kind="sticker")]
        assert engine.prompts == []


async def test_duplicate_update_id_is_answered_once(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        first = message_update(USER, text="/privacy", update_id=424242)
        bot.api.push_update(first)
        bot.api.push_update(json.loads(json.dumps(first)))
        await bot.wait_for(lambda: bot.api.shown(USER))
        await bot.settle(0.5)
        assert bot.api.shown(USER) == [text("privacy")]


async def test_one_users_messages_are_answered_in_order(redis_client):
    engine = ScriptedEngine(echo, delay_seconds=0.005)
    async with TelegramHarness.start(redis_client, engine) as bot:
        for i in range(5):
            bot.send_text(USER, f"message {i}")
        bot.send_text(USER + 1, "someone else")
        expected = [f"I hear you about message {i}" for i in range(5)]
        await bot.wait_for(lambda: expected[-1] in bot.api.shown(USER))
        await bot.wait_for(lambda: "I hear you about someone else" in bot.api.shown(USER + 1))
        await bot.settle()
        assert [t for t in bot.api.shown(USER) if t.startswith("I hear you")] == expected
        asked = [p[-1]["content"] for p in engine.prompts if p[-1]["content"].startswith("message")]
        assert asked == [f"message {i}" for i in range(5)], "the model saw them in the order they were sent"


async def test_commands_menu_and_plain_commands(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        menu = bot.api.calls_of("setMyCommands")[0].params["commands"]
        assert [c["command"] for c in menu] == ["start", "help", "resources", "country", "checkin", "mood",
                                                "forget", "export", "privacy", "safetyplan", "breathe", "ground",
                                                "reframe", "journal", "cancel"]
        for command, expected in (("/checkin", checkin_text("not_opted_in")), ("/mood", checkin_line("mood_ask")),
                                  ("/country GB", text("country_set", country="GB")),
                                  ("/resources", crisis_reply("GB")), ("/nonsense", line("unknown_command"))):
            bot.send_text(USER, command)
            await bot.wait_for(lambda expected=expected: expected in bot.api.shown(USER))
        assert engine.prompts == []


async def test_nothing_private_reaches_the_logs(redis_client, caplog):
    user = 918273645
    secret_words = "my landlord Gerald shouted at me"
    engine = ScriptedEngine(lambda m: "That sounds frightening, Gerald had no right")
    with caplog.at_level(logging.DEBUG):
        async with TelegramHarness.start(redis_client, engine) as bot:
            bot.send_text(user, secret_words, username="sam_private_handle")
            await bot.wait_for(lambda: "That sounds frightening, Gerald had no right" in bot.api.shown(user))
            bot.api.fail_next("sendMessage", 500, times=FAST_OPTIONS.server_error_retries + 1)
            bot.send_text(user, "I want to kill myself")
            await bot.wait_for(lambda: line("error") in bot.api.shown(user))
    logged = caplog.text
    assert "replied user=" in logged, "the conversation was logged, by hashed id"
    for private in (TOKEN, TOKEN.split(":")[1], "Gerald", "landlord", "sam_private_handle", "kill myself",
                    str(user)):
        assert private not in logged


@pytest.mark.parametrize("secret_header", [None, "wrong"])
async def test_webhook_rejects_requests_without_the_secret(redis_client, secret_header):
    await _webhook_round(redis_client, secret_header)


async def test_webhook_acknowledges_fast_and_answers_in_the_background_once(redis_client):
    await _webhook_round(redis_client, "s3cret-webhook")


async def _webhook_round(redis_client, secret_header: str | None) -> None:
    import httpx

    words = "I'm glad you wrote. " * 10
    engine = ScriptedEngine(lambda m: words, delay_seconds=0.02)
    api = FakeBotApi()
    await api.start()  # first, so the port picked below cannot be the one the fake server took
    port = _unused_port()
    try:
        async with TelegramHarness.start(
                redis_client, engine, api=api, telegram_mode="webhook", telegram_listen_port=port,
                telegram_webhook_url="https://haven.example/tg/hook", telegram_webhook_secret="s3cret-webhook",
        ) as bot:
            assert bot.api.webhook["url"] == "https://haven.example/tg/hook"
            assert bot.api.webhook["secret_token"] == "s3cret-webhook"
            update = message_update(USER, text="hello from the webhook", update_id=777001)
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret_header} if secret_header else {}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                first = await client.post("/tg/hook", json=update, headers=headers)
                again = await client.post("/tg/hook", json=update, headers=headers)  # Telegram retrying
            if secret_header != "s3cret-webhook":
                assert first.status_code == again.status_code == 403
                await bot.settle(0.5)
                assert bot.api.shown(USER) == [] and engine.prompts == []
                return
            assert first.status_code == again.status_code == 200
            assert first.elapsed.total_seconds() < 0.5, "acknowledged before the reply is written"
            await bot.wait_for(lambda: words.strip() in bot.api.shown(USER))
            await bot.settle()
            assert len(engine.prompts) == 1, "a redelivered update is answered once"
    finally:
        await api.stop()


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_blocked_user_is_not_retried(redis_client):
    engine = ScriptedEngine(echo)
    async with TelegramHarness.start(redis_client, engine) as bot:
        bot.api.fail_next("sendMessage", 403, description="Forbidden: bot was blocked by the user")
        bot.send_text(USER, "/privacy")
        await bot.wait_for(lambda: bot.api.calls_of("sendMessage", ok_only=False))
        await bot.settle(0.5)
        assert [c.status for c in bot.api.calls if c.method == "sendMessage"] == [403]
        await asyncio.sleep(0)
