"""A flood of 100 messages in 10 s from one user: the per-user limit (core/ratelimit.py) admits the first
ones, tells the user once, drops the rest quietly, and leaves everyone else alone. Its counter lives under the
user's prefix (so /forget removes it), and with Redis down it fails open."""

from __future__ import annotations

import asyncio

from core.dialog import DialogManager
from core.ratelimit import Admission, RateLimit, UserRateLimiter
from core.store import connect_redis
from core.texts import text
from core.types import IncomingMessage, ReplyKind, UserRef
from tests.fakes import FakeClock, RecordingSink, ScriptedEngine

FLOODER, NEIGHBOUR = UserRef("telegram", "7701"), UserRef("telegram", "7702")
LIMIT = RateLimit(max_messages=20, window_seconds=60)


async def test_a_flood_is_admitted_up_to_the_limit_told_once_then_dropped_quietly(redis_client):
    clock = FakeClock()
    limiter = UserRateLimiter(redis_client, LIMIT, clock=clock.now)
    flood, neighbour = [], []
    for n in range(100):  # 100 messages in 10 s
        flood.append(await limiter.admit(FLOODER))
        if n % 10 == 0:
            neighbour.append(await limiter.admit(NEIGHBOUR))
        clock.advance(0.1)
    assert flood.count(Admission.ALLOWED) == LIMIT.max_messages
    assert flood[LIMIT.max_messages] is Admission.LIMITED_NOTIFY
    assert flood[LIMIT.max_messages + 1:] == [Admission.LIMITED_QUIET] * (100 - LIMIT.max_messages - 1)
    assert neighbour == [Admission.ALLOWED] * 10, "other users are unaffected"

    clock.advance(LIMIT.window_seconds)
    assert await limiter.admit(FLOODER) is Admission.ALLOWED, "the next window admits again"


async def test_the_counter_is_the_users_own_expires_and_is_forgotten(redis_client, store):
    limiter = UserRateLimiter(redis_client, LIMIT)
    await limiter.admit(FLOODER)
    keys = [k async for k in redis_client.scan_iter(match="*7701*")]
    assert keys == [limiter.key(FLOODER)] and keys[0].startswith("haven:{telegram:7701}:")
    assert 0 < await redis_client.ttl(keys[0]) <= LIMIT.window_seconds + 1
    assert await redis_client.get(keys[0]) == "1", "a count, never text"
    await store.forget(FLOODER)
    assert [k async for k in redis_client.scan_iter(match="*7701*")] == []


async def test_with_redis_down_the_limit_fails_open(tmp_path):
    client = connect_redis(unix_socket_path=str(tmp_path / "no-redis-here.sock"))
    try:
        limiter = UserRateLimiter(client, RateLimit(max_messages=1, window_seconds=60))
        assert [await limiter.admit(FLOODER) for _ in range(3)] == [Admission.ALLOWED] * 3
    finally:
        await client.aclose()


async def test_the_dialog_manager_limits_a_flood_but_never_a_crisis(store, redis_client, screen):
    engine = ScriptedEngine(lambda m: "I'm here.")
    manager = DialogManager(store, engine, screen, rate_limiter=UserRateLimiter(redis_client, LIMIT))
    flood = [manager.handle(IncomingMessage(FLOODER, f"message {n}"), RecordingSink()) for n in range(100)]
    calm = [manager.handle(IncomingMessage(NEIGHBOUR, f"hello {n}"), RecordingSink()) for n in range(5)]
    replies = await asyncio.gather(*flood, *calm)
    flooded, neighbour = replies[:100], replies[100:]
    assert [r.kind for r in flooded[:LIMIT.max_messages]] == [ReplyKind.CHAT] * LIMIT.max_messages
    assert flooded[LIMIT.max_messages].text == text("rate_limited")
    assert all(r.text == "" for r in flooded[LIMIT.max_messages + 1:])
    assert all(r.kind == ReplyKind.CHAT for r in neighbour)
    crisis = await manager.handle(IncomingMessage(FLOODER, "i want to kill myself tonight"), RecordingSink())
    assert crisis.kind == ReplyKind.CRISIS, "a crisis is never rate limited"
