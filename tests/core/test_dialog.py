"""The dialog manager end to end: real Redis, the real rules screen, a scripted model."""

from __future__ import annotations

import asyncio

import pytest

from core.checkins import CheckinService
from core.checkins.keys import schedule_key
from core.dialog import DialogLimits, DialogManager, whole_sentences
from core.ratelimit import RateLimit, UserRateLimiter
from core.safety import SafetyScreen
from core.store import RedisContextStore, connect_redis
from core.store.redis_store import AlongRead
from core.texts import text
from core.tools import CopingTools
from core.tools.flow import flow_key
from core.types import IncomingMessage, ReplyKind, Turn, UserRef
from tests.fakes import FakeClock, RecordingSink, ScriptedEngine

SAM = UserRef("console", "sam")
CRISIS_MESSAGE = "i want to kill myself tonight"


@pytest.fixture(scope="module")
def screen() -> SafetyScreen:
    return SafetyScreen(semantic=False)


def make_manager(store, screen, engine=None, **limits) -> DialogManager:
    return DialogManager(store, engine or ScriptedEngine(), screen, limits=DialogLimits(**limits), clock=FakeClock())


async def user_keys(redis_client, user: UserRef) -> list[str]:
    return [k async for k in redis_client.scan_iter(match=f"haven:{{{user.platform}:{user.user_id}}}:*")]


async def test_first_contact_welcomes_once_and_stores_nothing_without_consent(store, redis_client, screen) -> None:
    manager, sink = make_manager(store, screen), RecordingSink()
    reply = await manager.handle(IncomingMessage(SAM, "hi, rough day"), sink)
    assert reply.kind == ReplyKind.CHAT
    assert [r.kind for r in sink.sent] == [ReplyKind.WELCOME]
    welcome = sink.sent[0]
    assert "AI" in welcome.text and "not a therapist" in welcome.text and "emergency" in welcome.text
    assert {b.action for b in welcome.buttons} == {"consent:yes", "consent:no"}
    await manager.handle(IncomingMessage(SAM, "still here"), sink)
    assert len(sink.sent) == 1  # the welcome is not repeated
    assert await user_keys(redis_client, SAM) == []


async def test_declining_consent_stores_only_the_choice(store, redis_client, screen) -> None:
    manager = make_manager(store, screen)
    await manager.set_consent(SAM, False)
    for line in ("one", "two", "three"):
        await manager.handle(IncomingMessage(SAM, line), RecordingSink())
    assert await user_keys(redis_client, SAM) == ["haven:{console:sam}:profile"]
    assert await redis_client.hgetall("haven:{console:sam}:profile") == {"consent": "no"}


async def test_consented_conversation_streams_remembers_and_forgets(store, redis_client, screen) -> None:
    engine = ScriptedEngine(lambda messages: f"reply to {messages[-1]['content']} " + "and more words " * 8)
    manager = make_manager(store, screen, engine)
    assert (await manager.set_consent(SAM, True)).text == text("consent_given")
    for n in range(3):
        sink = RecordingSink()
        reply = await manager.handle(IncomingMessage(SAM, f"message {n}"), sink)
        assert reply.kind == ReplyKind.CHAT and reply.text.startswith(f"reply to message {n}")
        assert len(sink.partials) >= 2, "the reply should stream in several pieces"
        assert all(b.startswith(a) for a, b in zip(sink.partials, sink.partials[1:], strict=False))
    history = await store.load_history(SAM)
    assert [t.content for t in history if t.role == "user"] == ["message 0", "message 1", "message 2"]
    # The third prompt carried the first two exchanges after the system guidance.
    assert [m["role"] for m in engine.prompts[-1]] == ["system"] + ["user", "assistant"] * 2 + ["user"]
    assert (await manager.forget(SAM)).text == text("forgotten")
    assert await user_keys(redis_client, SAM) == []


async def test_crisis_reply_is_fixed_text_and_never_asks_the_model(store, screen) -> None:
    engine = ScriptedEngine()
    manager = make_manager(store, screen, engine)
    reply = await manager.handle(IncomingMessage(SAM, CRISIS_MESSAGE), RecordingSink())
    assert reply.kind == ReplyKind.CRISIS
    assert engine.prompts == []
    assert "findahelpline.com" in reply.text


async def test_crisis_reply_goes_out_when_redis_is_down_and_the_model_fails(screen, tmp_path) -> None:
    dead = connect_redis(unix_socket_path=str(tmp_path / "nobody-listens.sock"))
    store = RedisContextStore(dead, max_turns=4, max_tokens=400, ttl_seconds=60)
    manager = make_manager(store, screen, ScriptedEngine(fail=True), default_country="US")
    reply = await manager.handle(IncomingMessage(SAM, CRISIS_MESSAGE), RecordingSink())
    assert reply.kind == ReplyKind.CRISIS and "988" in reply.text
    ordinary = await manager.handle(IncomingMessage(SAM, "hello?"), RecordingSink())
    assert ordinary.kind == ReplyKind.FALLBACK
    await dead.aclose()


async def test_with_redis_down_a_fully_wired_manager_still_answers_and_the_crisis_path_comes_first(screen,
                                                                                                     tmp_path) -> None:
    dead = connect_redis(unix_socket_path=str(tmp_path / "nobody-listens.sock"))
    store = RedisContextStore(dead, max_turns=4, max_tokens=400, ttl_seconds=60)
    manager = DialogManager(store, ScriptedEngine(), screen, clock=FakeClock(), tools=CopingTools(dead, store),
                            rate_limiter=UserRateLimiter(dead, RateLimit(max_messages=1)))
    for words in ("hello?", "is anyone there", "still here"):  # the limit fails open; no form waits
        reply = await manager.handle(IncomingMessage(SAM, words), RecordingSink())
        assert reply.kind == ReplyKind.CHAT and reply.text.endswith(text("store_trouble"))
    crisis = await manager.handle(IncomingMessage(SAM, CRISIS_MESSAGE), RecordingSink())
    assert crisis.kind == ReplyKind.CRISIS and "findahelpline.com" in crisis.text
    await dead.aclose()


async def test_engine_failure_gives_a_kind_line_keeps_history_and_recovers(store, screen) -> None:
    engine = ScriptedEngine()
    manager = make_manager(store, screen, engine)
    await manager.set_consent(SAM, True)
    await manager.handle(IncomingMessage(SAM, "first"), RecordingSink())
    engine.fail = True
    failed = await manager.handle(IncomingMessage(SAM, "second"), RecordingSink())
    assert failed.kind == ReplyKind.FALLBACK and failed.text.startswith(text("fallback"))
    assert "Traceback" not in failed.text and "scripted failure" not in failed.text
    assert [t.content for t in await store.load_history(SAM) if t.role == "user"] == ["first"]
    engine.fail = False
    again = await manager.handle(IncomingMessage(SAM, "third"), RecordingSink())
    assert again.kind == ReplyKind.CHAT
    assert [t.content for t in await store.load_history(SAM) if t.role == "user"] == ["first", "third"]


async def test_a_hanging_engine_times_out_without_blocking_other_users(store, screen) -> None:
    manager = make_manager(store, screen, ScriptedEngine(hang=True), reply_timeout_seconds=0.5)
    other = make_manager(store, screen, ScriptedEngine())
    slow = asyncio.create_task(manager.handle(IncomingMessage(SAM, "hello"), RecordingSink()))
    quick = await asyncio.wait_for(other.handle(IncomingMessage(UserRef("console", "kim"), "hi"), None), 2)
    assert quick.kind == ReplyKind.CHAT
    assert (await asyncio.wait_for(slow, 5)).kind == ReplyKind.FALLBACK


async def test_each_users_replies_come_back_in_that_users_order(store, screen) -> None:
    engine = ScriptedEngine(lambda messages: messages[-1]["content"], delay_seconds=0.001)
    manager = make_manager(store, screen, engine)
    users = [UserRef("telegram", str(n)) for n in range(5)]
    for user in users:
        await manager.set_consent(user, True)
    finished: dict[UserRef, list[str]] = {user: [] for user in users}

    async def send(user: UserRef, n: int) -> None:
        reply = await manager.handle(IncomingMessage(user, f"{user.user_id}-{n}"), RecordingSink())
        finished[user].append(reply.text.strip())

    # 20 messages, 4 per user, fired together; asyncio starts them in this order.
    await asyncio.gather(*(send(user, n) for n in range(4) for user in users))
    for user in users:
        expected = [f"{user.user_id}-{n}" for n in range(4)]
        assert finished[user] == expected
        assert [t.content for t in await store.load_history(user) if t.role == "user"] == expected


async def test_empty_message_gets_a_gentle_prompt(store, screen) -> None:
    reply = await make_manager(store, screen).handle(IncomingMessage(SAM, "   \n "), RecordingSink())
    assert reply.kind == ReplyKind.NOTICE and reply.text == text("empty_message")


async def test_store_outage_is_told_and_nothing_is_half_written(store, redis_client, screen, tmp_path) -> None:
    manager = make_manager(store, screen)
    await manager.set_consent(SAM, True)
    await manager.handle(IncomingMessage(SAM, "before"), RecordingSink())
    dead = connect_redis(unix_socket_path=str(tmp_path / "gone.sock"))
    manager.store = RedisContextStore(dead, max_turns=4, max_tokens=400, ttl_seconds=60)
    reply = await manager.handle(IncomingMessage(SAM, "during"), RecordingSink())
    assert reply.kind == ReplyKind.CHAT and reply.text.endswith(text("store_trouble"))
    manager.store = store
    history = await store.load_history(SAM)
    assert [t.role for t in history] == ["user", "assistant"]
    await dead.aclose()


@pytest.mark.parametrize(("reply", "expected"), [
    ("That sounds hard. Try one slow breath. It can", "That sounds hard. Try one slow breath."),
    ("Done.", "Done."),
    ('She said "rest first."', 'She said "rest first."'),
    ("It's ok to rest. I can't say when it", "It's ok to rest."),
    ("no full stop anywhere in here", "no full stop anywhere in here"),
    ("Short. And then a very long unfinished tail that goes on and on and on", "Short. And then a very long "
     "unfinished tail that goes on and on and on"),
])
def test_a_reply_cut_by_the_token_limit_ends_on_a_whole_sentence(reply: str, expected: str) -> None:
    assert whole_sentences(reply) == expected


async def test_public_places_get_their_own_history_apart_from_the_private_one(store, screen) -> None:
    engine = ScriptedEngine()
    manager = make_manager(store, screen, engine)
    await manager.set_consent(SAM, True)
    await manager.handle(IncomingMessage(SAM, "my private worry", chat_id="dm"), RecordingSink())
    await manager.handle(IncomingMessage(SAM, "hi all", chat_id="guild-channel-7", public=True), RecordingSink())
    public_prompt = engine.prompts[-1]
    assert "my private worry" not in str(public_prompt)
    assert [t.content for t in await store.load_history(SAM, "guild-channel-7") if t.role == "user"] == ["hi all"]
    await manager.handle(IncomingMessage(SAM, "back in private", chat_id="dm"), RecordingSink())
    assert "hi all" not in str(engine.prompts[-1]) and "my private worry" in str(engine.prompts[-1])
    await manager.set_consent(SAM, False)  # withdrawing consent deletes every conversation
    assert await store.load_history(SAM) == [] and await store.load_history(SAM, "guild-channel-7") == []


async def test_a_long_streamed_reply_is_guarded_a_bounded_number_of_times(store, screen, monkeypatch) -> None:
    import core.dialog

    calls: list[int] = []
    real_guard = core.dialog.guard_reply

    def counting_guard(draft: str):
        calls.append(len(draft))
        return real_guard(draft)

    monkeypatch.setattr(core.dialog, "guard_reply", counting_guard)
    engine = ScriptedEngine(lambda messages: "word " * 2000)  # 10,000 characters, streamed word by word
    reply = await make_manager(store, screen, engine).handle(IncomingMessage(SAM, "talk to me"), RecordingSink())
    assert reply.kind == ReplyKind.CHAT
    assert len(calls) < 40  # not one check per word (2,000) or per 24 characters (400)
    assert sum(calls) < 100_000  # about ten passes over the text in all, not hundreds


async def test_a_blocked_draft_is_replaced_and_stops_streaming(store, screen) -> None:
    engine = ScriptedEngine(lambda messages: "As a licensed therapist I can tell you that you have depression. " * 3)
    sink = RecordingSink()
    reply = await make_manager(store, screen, engine).handle(IncomingMessage(SAM, "what's wrong with me"), sink)
    assert reply.kind == ReplyKind.CHAT
    assert "licensed therapist" not in reply.text and "you have depression" not in reply.text
    assert not any("licensed therapist" in shown for shown in sink.partials)


async def test_an_instance_set_to_keep_nothing_stores_no_conversation(store, redis_client, screen) -> None:
    manager = make_manager(store, screen, remember_conversations=False)
    sink = RecordingSink()
    await manager.handle(IncomingMessage(SAM, "hello"), sink)
    assert [r.text for r in sink.sent] == [text("welcome_no_memory")]  # still told it's an AI; no consent buttons
    assert not sink.sent[0].buttons
    assert (await manager.set_consent(SAM, True)).text == text("memory_off")
    for line in ("one", "two"):
        assert (await manager.handle(IncomingMessage(SAM, line), RecordingSink())).kind == ReplyKind.CHAT
    await manager.handle(IncomingMessage(SAM, CRISIS_MESSAGE), RecordingSink())
    assert await user_keys(redis_client, SAM) == []


class GatedCheckins:
    """The check-in hooks: a note sent on its own waits until the test opens the gate; one sent along a message's
    context read is noted when that read is answered."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.noted: list[UserRef] = []

    async def note_chat(self, user: UserRef) -> None:
        await self.gate.wait()
        self.noted.append(user)

    def note_chat_along(self, user: UserRef) -> AlongRead[None]:
        return AlongRead(lambda pipe: None, lambda replies: self.noted.append(user))

    async def forget_user(self, user: UserRef) -> int:
        return 0


async def test_a_crisis_reply_never_waits_for_the_check_in_note_and_the_note_is_not_lost(store, screen) -> None:
    checkins = GatedCheckins()
    manager = DialogManager(store, ScriptedEngine(), screen, clock=FakeClock(), checkins=checkins)
    crisis = await asyncio.wait_for(manager.handle(IncomingMessage(SAM, CRISIS_MESSAGE), RecordingSink()), 5)
    assert crisis.kind == ReplyKind.CRISIS and checkins.noted == []
    ordinary = await asyncio.wait_for(manager.handle(IncomingMessage(SAM, "thank you"), RecordingSink()), 5)
    assert ordinary.kind == ReplyKind.CHAT and checkins.noted == [SAM], "an ordinary reply returns after its note"
    checkins.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert checkins.noted == [SAM, SAM], "the crisis note went too"


async def test_the_check_in_note_rides_with_the_context_read_and_never_creates_check_in_data(store, redis_client,
                                                                                            screen) -> None:
    clock = FakeClock()
    checkins = CheckinService(redis_client, store, screen, clock=clock)
    await checkins.opt_in(SAM, times="09:00", timezone="UTC")
    manager = DialogManager(store, ScriptedEngine(), screen, clock=clock, checkins=checkins)
    stranger = UserRef("console", "never-opted-in")
    for user, words in ((SAM, "hello"), (stranger, "hello"), (SAM, ""), (SAM, CRISIS_MESSAGE)):
        clock.t += 60
        await manager.handle(IncomingMessage(user, words), RecordingSink())
        if user == SAM:
            for _ in range(100):  # a crisis reply doesn't wait for its note
                if await redis_client.hget(schedule_key(SAM), "last_chat_at") == f"{clock.t:.0f}":
                    break
                await asyncio.sleep(0.01)
            assert await redis_client.hget(schedule_key(SAM), "last_chat_at") == f"{clock.t:.0f}"
    assert not await redis_client.exists(schedule_key(stranger))


async def test_each_message_is_counted_once_and_a_crisis_seen_only_in_stored_turns_never(store, redis_client,
                                                                                          screen) -> None:
    limiter = UserRateLimiter(redis_client, RateLimit(max_messages=5, window_seconds=3600))
    manager = DialogManager(store, ScriptedEngine(), screen, clock=FakeClock(), rate_limiter=limiter)
    await manager.set_consent(SAM, True)
    for line in ("I feel so hopeless", "I feel worthless", "I slept badly"):  # the first one is counted before
        assert (await manager.handle(IncomingMessage(SAM, line), RecordingSink())).kind == ReplyKind.CHAT
    assert await redis_client.get(limiter.key(SAM)) == "3"  # the later ones while the context loads
    await store.delete_history(SAM)
    for line in ("I feel so hopeless", "I feel worthless"):
        await store.append_exchange(SAM, Turn("user", line, 1.0), Turn("assistant", "I'm here.", 1.0))
    restarted = DialogManager(store, ScriptedEngine(), screen, clock=FakeClock(), rate_limiter=limiter)
    escalated = await restarted.handle(IncomingMessage(SAM, "I can't go on like this"), RecordingSink())
    assert escalated.kind == ReplyKind.CRISIS  # only the stored turns made it one
    assert await redis_client.get(limiter.key(SAM)) == "3"


async def test_a_rate_limited_message_never_answers_a_waiting_form(store, redis_client, screen) -> None:
    tools = CopingTools(redis_client, store, clock=FakeClock())
    limiter = UserRateLimiter(redis_client, RateLimit(max_messages=1, window_seconds=3600))
    manager = DialogManager(store, ScriptedEngine(), screen, clock=FakeClock(), tools=tools, rate_limiter=limiter)
    assert (await manager.handle(IncomingMessage(SAM, "hello"), RecordingSink())).kind == ReplyKind.CHAT
    await tools.command(SAM, "ground")
    waiting = await redis_client.get(flow_key(SAM))
    limited = await manager.handle(IncomingMessage(SAM, "lamp, cup, window, cat, book"), RecordingSink())
    assert limited.text == text("rate_limited")  # the flow state was read alongside, but not answered
    assert await redis_client.get(flow_key(SAM)) == waiting
