"""The Redis context store against a real Redis server."""

from __future__ import annotations

import asyncio
import json

import pytest

from core.errors import StoreError, StoreUnavailable
from core.store import RedisContextStore, connect_redis
from core.store.redis_store import AlongRead, user_prefix
from core.types import Turn, UserRef

ALICE = UserRef("telegram", "1001")
BOB = UserRef("telegram", "1002")


def exchange(n: int, size: int = 10) -> tuple[Turn, Turn]:
    return Turn("user", f"message {n} " + "x" * size, float(n)), Turn("assistant", f"reply {n}", float(n))


async def test_history_keeps_only_the_newest_turns(store: RedisContextStore) -> None:
    for n in range(10):
        await store.append_exchange(ALICE, *exchange(n))
    history = await store.load_history(ALICE)
    assert len(history) == 12  # max_turns=6 → 6 exchanges
    assert [t.role for t in history] == ["user", "assistant"] * 6
    assert history[0].content.startswith("message 4 ")
    assert history[-1].content == "reply 9"


async def test_history_is_bounded_by_tokens_dropping_whole_exchanges(store: RedisContextStore) -> None:
    for n in range(4):  # each user message is ~1000 chars, about 250 tokens; the budget is 400
        await store.append_exchange(ALICE, *exchange(n, size=1000))
    history = await store.load_history(ALICE)
    assert [t.role for t in history] == ["user", "assistant"]
    assert history[0].content.startswith("message 3 ")


async def test_newest_exchange_survives_even_when_alone_over_budget(store: RedisContextStore) -> None:
    await store.append_exchange(ALICE, *exchange(0, size=5000))
    assert len(await store.load_history(ALICE)) == 2


async def test_history_ttl_slides_with_each_exchange(store: RedisContextStore, redis_client) -> None:
    key = user_prefix(ALICE) + "history"
    await store.append_exchange(ALICE, *exchange(0))
    await redis_client.expire(key, 10)
    await store.append_exchange(ALICE, *exchange(1))
    assert 3500 < await redis_client.ttl(key) <= 3600


async def test_concurrent_exchanges_never_interleave(store: RedisContextStore) -> None:
    await asyncio.gather(*(store.append_exchange(ALICE, *exchange(n)) for n in range(40)))
    history = await store.load_history(ALICE)
    assert [t.role for t in history] == ["user", "assistant"] * 6
    for user_turn, reply_turn in zip(history[::2], history[1::2], strict=True):
        assert user_turn.content.split()[1] == reply_turn.content.split()[1]


async def test_a_failed_exchange_writes_nothing(store: RedisContextStore, redis_client) -> None:
    key = user_prefix(ALICE) + "history"
    await redis_client.set(key, "not a list")  # RPUSH will fail inside the script
    with pytest.raises(StoreError):
        await store.append_exchange(ALICE, *exchange(0))
    assert await redis_client.get(key) == "not a list"
    assert await redis_client.hgetall(user_prefix(ALICE) + "profile") == {}


async def test_profile_round_trip(store: RedisContextStore) -> None:
    await store.update_profile(ALICE, consent=True, country="GB", timezone="Europe/London",
                               preferences={"checkins": ["09:00"]})
    profile = await store.load_profile(ALICE)
    assert (profile.consent, profile.country, profile.timezone) == (True, "GB", "Europe/London")
    assert profile.preferences == {"checkins": ["09:00"]}
    assert (await store.load_profile(BOB)).consent is None


async def test_forget_leaves_no_key_of_that_user_and_spares_others(store: RedisContextStore, redis_client) -> None:
    odd = UserRef("discord", "a*b[1]?")
    for user in (ALICE, BOB, odd):
        await store.update_profile(user, consent=True)
        await store.append_exchange(user, *exchange(1))
    await redis_client.set(user_prefix(ALICE) + "mood", "3")  # a key a later feature adds
    assert await store.forget(ALICE) == 3
    assert [k async for k in redis_client.scan_iter(match="*1001*")] == []
    assert await store.forget(odd) == 2
    assert len(await store.load_history(BOB)) == 2


async def test_export_round_trips_through_json(store: RedisContextStore) -> None:
    await store.update_profile(ALICE, consent=True, country="IE")
    await store.append_exchange(ALICE, *exchange(7))
    exported = json.loads(json.dumps(await store.export(ALICE)))
    assert exported["user_id"] == "1001"
    assert exported["data"]["profile"]["country"] == "IE"
    assert [e["content"] for e in exported["data"]["history"]] == ["message 7 " + "x" * 10, "reply 7"]
    assert await store.export(BOB) == {"platform": "telegram", "user_id": "1002", "data": {}}


async def test_context_in_one_read_equals_the_separate_reads(store: RedisContextStore) -> None:
    await store.update_profile(ALICE, consent=True, country="GB", preferences={"tone": "calm", "name": 'Ré/"N" 😢'})
    for n in range(3):
        await store.append_exchange(ALICE, *exchange(n))
    await store.append_exchange(ALICE, *exchange(9), "guild-7")
    awkward = 'she said "no", then ]},[{"role": 1} left\n\\ 😢 – ok'  # the history comes back as one JSON array
    await store.append_exchange(ALICE, Turn("user", awkward, 4.5, "crisis"), Turn("assistant", "[]", 4.5), "guild-7")
    for place in (None, "guild-7", "elsewhere"):
        profile, history = await store.load_context(ALICE, place)
        assert profile == await store.load_profile(ALICE)
        assert history == await store.load_history(ALICE, place)
    assert len((await store.load_context(ALICE))[1]) == 6
    assert [t.content for t in (await store.load_context(ALICE, "guild-7"))[1]][-2:] == [awkward, "[]"]


async def test_context_read_leaves_out_history_without_consent(store: RedisContextStore) -> None:
    await store.append_exchange(BOB, *exchange(1))  # turns present, but Bob never said yes
    assert await store.load_context(BOB) == (await store.load_profile(BOB), [])
    await store.update_profile(BOB, consent=False)
    profile, history = await store.load_context(BOB)
    assert profile.consent is False and history == []
    await store.update_profile(BOB, consent=True)
    assert len((await store.load_context(BOB))[1]) == 2
    assert (await store.load_context(BOB, with_history=False))[1] == []


async def test_context_read_fails_as_a_store_error(store: RedisContextStore, redis_client) -> None:
    await store.update_profile(ALICE, consent=True)
    await redis_client.set(user_prefix(ALICE) + "history", "not a list")  # LRANGE fails inside the pipeline
    with pytest.raises(StoreError):
        await store.load_context(ALICE)


def along(*commands: tuple[str, ...]) -> AlongRead[list]:
    """Commands sent along a context read, answering with the replies they got, as they got them."""
    return AlongRead(lambda pipe: [pipe.execute_command(*command) for command in commands], lambda replies: replies)


async def test_commands_along_the_context_read_get_their_own_replies_and_troubles(store, redis_client) -> None:
    await store.update_profile(ALICE, consent=True, country="GB")
    await store.append_exchange(ALICE, *exchange(1))
    await redis_client.rpush("a-list", "x")
    counting, mixed = along(("INCR", "n"), ("INCR", "n")), along(("GET", "a-list"), ("SET", "s", "v"))
    profile, history = await store.load_context(ALICE, along=[counting, mixed])
    assert (profile, history) == await store.load_context(ALICE)
    assert counting.result == [1, 2]
    assert isinstance(mixed.result[0], StoreError) and mixed.result[1] is True  # a failed GET spoils nothing else
    assert await redis_client.get("s") == "v"

    without_history = along(("GET", "s"))
    assert await store.load_context(ALICE, with_history=False, along=[without_history]) == (profile, [])
    assert without_history.result == ["v"]


async def test_commands_along_a_failed_context_read_are_still_answered(store, redis_client, tmp_path) -> None:
    await store.update_profile(ALICE, consent=True)
    await redis_client.set(user_prefix(ALICE) + "history", "not a list")
    counting = along(("INCR", "n"))
    with pytest.raises(StoreError):
        await store.load_context(ALICE, along=[counting])
    assert counting.result == [1]

    dead = connect_redis(unix_socket_path=str(tmp_path / "nobody-listens.sock"))
    unreachable = along(("INCR", "n"), ("GET", "s"))
    with pytest.raises(StoreUnavailable):
        await RedisContextStore(dead, max_turns=4, max_tokens=400, ttl_seconds=60).load_context(
            ALICE, along=[unreachable])
    assert [type(reply) for reply in unreachable.result] == [StoreUnavailable, StoreUnavailable]
    await dead.aclose()
