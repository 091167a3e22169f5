"""Redis fails under a live conversation: a real redis-server is SIGKILLed, frozen (SIGSTOP) and restarted
while the real dialog manager talks to it. Crisis replies still go out, other replies say kindly that memory
is failing, Haven recovers by itself when Redis returns, and no exchange is ever half-written."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

from core.dialog import DialogLimits, DialogManager
from core.store import EmbeddedRedis, RedisContextStore, connect_redis
from core.store.redis_store import history_key
from core.texts import text
from core.types import IncomingMessage, ReplyKind, Turn, UserRef
from tests.fakes import ScriptedEngine

CRISIS_MESSAGE = "i want to kill myself tonight"
RECOVERY_LIMIT_SECONDS = 5.0


def manager_for(store, screen, engine=None) -> DialogManager:
    return DialogManager(store, engine or ScriptedEngine(lambda m: "I'm listening. Tell me more."), screen,
                         limits=DialogLimits(reply_timeout_seconds=10))


def assert_whole_exchanges(entries: list[str]) -> None:
    """History holds user/assistant pairs only: never a user turn without its reply (or the reverse)."""
    roles = [json.loads(e)["role"] for e in entries]
    assert len(roles) % 2 == 0, roles
    assert roles == ["user", "assistant"] * (len(roles) // 2), roles


async def test_redis_killed_mid_conversation_then_back_recovers_by_itself(own_redis, own_store, own_client, screen):
    user = UserRef("telegram", "4101")
    manager = manager_for(own_store, screen)
    await manager.set_consent(user, True)
    first = await manager.handle(IncomingMessage(user, "work has been a lot this week"))
    assert first.kind == ReplyKind.CHAT and text("store_trouble") not in first.text

    own_redis.kill()  # SIGKILL: no clean shutdown

    started = time.monotonic()
    crisis = await manager.handle(IncomingMessage(user, CRISIS_MESSAGE))
    assert crisis.kind == ReplyKind.CRISIS, "the crisis reply goes out with Redis gone"
    chat = await manager.handle(IncomingMessage(user, "sorry, I mean I'm just tired"))
    assert chat.kind == ReplyKind.CHAT
    assert chat.text.endswith(text("store_trouble")), "the user is told memory is failing, kindly"
    assert "Error" not in chat.text and "Traceback" not in chat.text
    assert time.monotonic() - started < 2.0, "a dead Redis is noticed at once, not after timeouts"

    await asyncio.to_thread(own_redis.start)
    back_at = time.monotonic()
    while True:  # the same manager and client, nothing restarted by hand
        reply = await manager.handle(IncomingMessage(user, "are you there?"))
        if text("store_trouble") not in reply.text:
            break
        assert time.monotonic() - back_at < RECOVERY_LIMIT_SECONDS, "Haven did not recover by itself in 5 s"
        await asyncio.sleep(0.1)
    recovered_in = time.monotonic() - back_at
    assert recovered_in < RECOVERY_LIMIT_SECONDS

    entries = await own_client.lrange(history_key(user), 0, -1)
    assert_whole_exchanges(entries)
    contents = [json.loads(e)["content"] for e in entries]
    assert "are you there?" in contents, "the turn after recovery is remembered"
    assert "sorry, I mean I'm just tired" not in contents, "nothing was written while Redis was gone"


async def test_kill_during_a_stream_of_writes_leaves_only_whole_exchanges(own_redis, own_client):
    """Many exchanges in flight when Redis dies; after the restart (from the append-only file) every history
    is made of whole exchanges: the Lua script is one entry in the AOF, so a crash keeps all of it or none."""
    store = RedisContextStore(own_client, max_turns=50, max_tokens=100_000, ttl_seconds=3600)
    users = [UserRef("telegram", str(5000 + n)) for n in range(20)]
    stop = asyncio.Event()
    acknowledged = dict.fromkeys(users, 0)

    async def writer(user: UserRef) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await store.append_exchange(user, Turn("user", f"message {n}", time.time()),
                                            Turn("assistant", f"reply {n}", time.time()))
                acknowledged[user] = n
            except Exception:
                return

    tasks = [asyncio.create_task(writer(u)) for u in users]
    await asyncio.sleep(0.5)
    own_redis.kill()
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.to_thread(own_redis.start)

    fresh = connect_redis(unix_socket_path=own_redis.socket_path)
    try:
        assert sum(acknowledged.values()) > 100, "the writers were really writing when Redis died"
        for user in users:
            entries = await fresh.lrange(history_key(user), 0, -1)
            assert_whole_exchanges(entries)
            numbers = [int(json.loads(e)["content"].split()[-1]) for e in entries]
            assert numbers == sorted(numbers) and numbers[::2] == numbers[1::2], "each message with its reply"
    finally:
        await fresh.aclose()


async def test_crisis_reply_is_not_held_up_by_a_frozen_redis(own_redis, own_store, screen):
    user = UserRef("telegram", "4102")
    manager = manager_for(own_store, screen)
    os.kill(own_redis.pid, signal.SIGSTOP)  # alive but not answering: connections open, reads hang
    try:
        started = time.monotonic()
        reply = await manager.handle(IncomingMessage(user, CRISIS_MESSAGE))
        took = time.monotonic() - started
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
    assert reply.kind == ReplyKind.CRISIS
    assert took < 1.0, f"the crisis reply waited {took:.1f} s on a frozen Redis"


async def test_a_frozen_redis_still_gets_every_user_an_answer(own_redis, own_store, screen):
    """Redis hangs (SIGSTOP) rather than dies: every message is still answered, with the memory line, within
    the client's timeouts; after SIGCONT Haven remembers again."""
    user = UserRef("telegram", "4103")
    manager = manager_for(own_store, screen)
    await manager.set_consent(user, True)
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        replies = await asyncio.gather(*(manager.handle(IncomingMessage(UserRef("telegram", str(4200 + n)),
                                                                        "hello")) for n in range(5)))
        took = time.monotonic() - started
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
    assert all(r.kind == ReplyKind.CHAT and r.text.endswith(text("store_trouble")) for r in replies)
    assert took < 12.0, f"answers took {took:.1f} s"
    reply = await manager.handle(IncomingMessage(user, "back again"))
    assert text("store_trouble") not in reply.text


def test_a_stopped_embedded_redis_starts_again(tmp_path):
    """Found by these tests: stop() removed the socket folder, so a second start() failed."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    server.stop()
    try:
        server.start()
        assert server.pid is not None
    finally:
        server.stop()
