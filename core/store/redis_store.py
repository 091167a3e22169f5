"""The context store on Redis (redis-py asyncio).

Every key of a user lives under `haven:{<platform>:<user_id>}:` (the braces keep a user's keys in one cluster
slot), so deleting or exporting a user is one SCAN over that prefix, whatever later features add there.
A turn is written by one Lua script: push the user message and the reply, trim to the turn and token budgets,
renew the sliding TTL. Either the whole exchange is stored or none of it. Another reads a message's context (the
profile and the conversation) in one command.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import StoreError, StoreUnavailable
from core.types import Profile, Turn, UserRef

T = TypeVar("T")

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

# KEYS[1] history list, KEYS[2] profile hash.
# ARGV[1] ttl seconds, ARGV[2] max entries (even), ARGV[3] max tokens, ARGV[4] now, ARGV[5..] entries (JSON).
# Entries are pushed in user/assistant pairs and dropped in pairs from the oldest end, keeping at least the
# newest pair, so the list always starts with a user message.
_APPEND_EXCHANGE = """
for i = 5, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local tokens = {}
local total = 0
for i = 1, #items do
  local ok, entry = pcall(cjson.decode, items[i])
  local n = (ok and tonumber(entry['tokens'])) or 0
  tokens[i] = n
  total = total + n
end
local drop = 0
while total > tonumber(ARGV[3]) and (#items - drop) > 2 do
  total = total - tokens[drop + 1] - (tokens[drop + 2] or 0)
  drop = drop + 2
end
if drop > 0 then redis.call('LTRIM', KEYS[1], drop, -1) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('HSET', KEYS[2], 'last_seen', ARGV[4])
return #items - drop
"""

# KEYS[1] profile hash, KEYS[2] history list. Returns one JSON string, [profile object, [history entries]]: one
# string instead of one per field and per entry is far less for the client to parse.
_READ_CONTEXT = """
local fields = redis.call('HGETALL', KEYS[1])
local profile = {}
for i = 1, #fields, 2 do profile[fields[i]] = fields[i + 1] end
local entries = redis.call('LRANGE', KEYS[2], 0, -1)
return '[' .. cjson.encode(profile) .. ',[' .. table.concat(entries, ',') .. ']]'
"""

_PROFILE_JSON_FIELDS = {"preferences"}
_MAX_CONNECTIONS = 100
_POOL_WAIT_SECONDS = 5


def user_prefix(user: UserRef) -> str:
    return f"haven:{{{user.platform}:{user.user_id}}}:"


def history_key(user: UserRef, place: str | None = None) -> str:
    return user_prefix(user) + ("history" if place is None else f"history:{place}")


def approx_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token for English) for the history budget."""
    return max(1, math.ceil(len(text) / 4))


def connect_redis(url: str | None = None, *, unix_socket_path: str | None = None) -> aioredis.Redis:
    """An asyncio client that decodes to str, with short timeouts so an outage is noticed quickly.

    The pool blocks (up to a few seconds) when all its connections are busy, so a burst of users waits for a
    connection instead of failing with "Too many connections" and losing their turn's memory."""
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 5, "socket_connect_timeout": 3,
                               "health_check_interval": 15, "max_connections": _MAX_CONNECTIONS,
                               "timeout": _POOL_WAIT_SECONDS}
    if unix_socket_path:
        pool = aioredis.BlockingConnectionPool(connection_class=aioredis.UnixDomainSocketConnection,
                                               path=unix_socket_path, **options)
    elif url:
        pool = aioredis.BlockingConnectionPool.from_url(url, **options)
    else:
        raise StoreError("no Redis URL or socket given")
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def as_store_error(exc: Exception) -> StoreError:
    """Redis trouble as the core's StoreError / StoreUnavailable."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        failure: StoreError = StoreUnavailable("Redis cannot be reached")
    else:
        failure = StoreError(f"Redis command failed: {type(exc).__name__}")
    failure.__cause__ = exc
    return failure


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    """Run one Redis call, turning Redis trouble into the core's StoreError / StoreUnavailable."""
    try:
        return await call()
    except (RedisError, OSError) as exc:
        raise as_store_error(exc) from exc


class AlongRead(Generic[T]):
    """Commands another feature sends in the same round trip as a message's context read (the rate-limit count,
    the coping-tool flow, the check-in note): they go on its pipeline, so the message costs one round trip
    instead of several.

    `queue` puts the commands on the pipeline; `answer` turns their replies into the feature's answer, each reply
    being what Redis answered or the StoreError it met (the whole round trip failing gives every command that
    error), so each feature keeps its own rule for trouble. The answer is in `result` once the read is done."""

    def __init__(self, queue: Callable[[Any], object], answer: Callable[[list[Any]], T]) -> None:
        self.queue = queue
        self.answer = answer
        self.result: T | None = None

    def settle(self, replies: list[Any]) -> None:
        self.result = self.answer(replies)


class RedisContextStore:
    def __init__(self, client: aioredis.Redis, *, max_turns: int, max_tokens: int, ttl_seconds: int) -> None:
        # Typed Any: redis-py's annotations can't see that decode_responses=True makes every reply a str.
        self._redis: Any = client
        self._max_entries = 2 * max_turns
        self._max_tokens = max_tokens
        self._ttl_seconds = ttl_seconds
        self._append = client.register_script(_APPEND_EXCHANGE)
        self._read_context = client.register_script(_READ_CONTEXT)

    @property
    def client(self) -> aioredis.Redis:
        return self._redis  # type: ignore[no-any-return]

    async def ping(self) -> bool:
        try:
            return bool(await guarded(self._redis.ping))
        except StoreError:
            return False

    async def load_history(self, user: UserRef, place: str | None = None) -> list[Turn]:
        return _turns_from(await guarded(lambda: self._redis.lrange(history_key(user, place), 0, -1)))

    async def load_context(self, user: UserRef, place: str | None = None, *, with_history: bool = True,
                           along: Sequence[AlongRead[Any]] = ()) -> tuple[Profile, list[Turn]]:
        """The profile and, if the user agreed to be remembered, the conversation in `place`, in one round trip,
        with the commands `along` brings (each settled, whatever happens to the context read).

        Both are read by one script, which saves a whole round trip on every message, and hands the conversation
        back as one JSON array. The history is returned only with consent; without it the key holds nothing
        anyway, since nothing is written then."""
        profile_key, history = user_prefix(user) + "profile", history_key(user, place)
        if along:
            raw_profile, entries = await self._read_along(profile_key, history, with_history, along)
        elif with_history:
            raw_profile, entries = json.loads(await guarded(lambda: self._read_context(keys=[profile_key, history])))
        else:
            return await self.load_profile(user), []
        profile = _profile_from(raw_profile)
        return profile, _turns_of(entries) if profile.consent else []

    async def _read_along(self, profile_key: str, history: str, with_history: bool,
                          along: Sequence[AlongRead[Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """The context read and `along`'s commands in one pipeline. EVAL, not EVALSHA: a script missing from the
        server's cache must not fail one command of the batch."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if with_history:
                pipe.eval(_READ_CONTEXT, 2, profile_key, history)
            else:
                pipe.hgetall(profile_key)
            spans = []
            for read in along:
                start = len(pipe)
                read.queue(pipe)
                spans.append((start, len(pipe)))
            count = len(pipe)
            try:
                replies = [as_store_error(r) if isinstance(r, Exception) else r
                           for r in await pipe.execute(raise_on_error=False)]
            except (RedisError, OSError) as exc:
                replies = [as_store_error(exc)] * count
        for read, (start, end) in zip(along, spans, strict=True):
            read.settle(replies[start:end])
        if isinstance(replies[0], StoreError):
            raise replies[0]
        if with_history:
            raw_profile, entries = json.loads(replies[0])
            return raw_profile, entries
        return replies[0], []

    async def append_exchange(self, user: UserRef, user_turn: Turn, reply_turn: Turn, place: str | None = None
                              ) -> None:
        prefix = user_prefix(user)
        entries = [json.dumps({"role": t.role, "content": t.content, "at": t.at, "kind": t.kind,
                               "tokens": approx_tokens(t.content)}) for t in (user_turn, reply_turn)]
        await guarded(lambda: self._append(
            keys=[history_key(user, place), prefix + "profile"],
            args=[self._ttl_seconds, self._max_entries, self._max_tokens, reply_turn.at, *entries]))

    async def load_profile(self, user: UserRef) -> Profile:
        return _profile_from(await guarded(lambda: self._redis.hgetall(user_prefix(user) + "profile")))

    async def update_profile(self, user: UserRef, **fields: Any) -> None:
        mapping: dict[str, str] = {}
        for name, value in fields.items():
            if name == "consent":
                mapping[name] = "yes" if value else "no"
            elif name in _PROFILE_JSON_FIELDS:
                mapping[name] = json.dumps(value)
            else:
                mapping[name] = "" if value is None else str(value)
        await guarded(lambda: self._redis.hset(user_prefix(user) + "profile", mapping=mapping))

    async def delete_history(self, user: UserRef) -> None:
        keys = [key for key in await self._user_keys(user)
                if key == history_key(user) or key.startswith(history_key(user) + ":")]
        if keys:
            await guarded(lambda: self._redis.delete(*keys))

    async def _user_keys(self, user: UserRef) -> list[str]:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", user_prefix(user)) + "*"

        async def scan() -> list[str]:
            return [key async for key in self._redis.scan_iter(match=pattern, count=500)]

        return await guarded(scan)

    async def forget(self, user: UserRef) -> int:
        keys = await self._user_keys(user)
        if not keys:
            return 0
        return int(await guarded(lambda: self._redis.delete(*keys)))

    async def export(self, user: UserRef) -> dict[str, Any]:
        """Everything stored under the user's prefix, decoded by Redis type."""
        prefix = user_prefix(user)
        data: dict[str, Any] = {}
        for key in sorted(await self._user_keys(user)):
            data[key.removeprefix(prefix)] = await self._read_key(key)
        return {"platform": user.platform, "user_id": user.user_id, "data": data}

    async def _read_key(self, key: str) -> Any:
        kind = await guarded(lambda: self._redis.type(key))
        if kind == "list":
            return [_maybe_json(v) for v in await guarded(lambda: self._redis.lrange(key, 0, -1))]
        if kind == "hash":
            return {k: _maybe_json(v) for k, v in (await guarded(lambda: self._redis.hgetall(key))).items()}
        if kind == "zset":
            pairs = await guarded(lambda: self._redis.zrange(key, 0, -1, withscores=True))
            return [{"member": _maybe_json(m), "score": s} for m, s in pairs]
        if kind == "set":
            return sorted(await guarded(lambda: self._redis.smembers(key)))
        if kind == "string":
            return _maybe_json(await guarded(lambda: self._redis.get(key)))
        return None


def _turns_from(raw: list[str]) -> list[Turn]:
    return _turns_of([json.loads(item) for item in raw])


def _turns_of(entries: list[dict[str, Any]]) -> list[Turn]:
    return [Turn(role=entry["role"], content=entry["content"], at=entry["at"], kind=entry.get("kind", "chat"))
            for entry in entries]


def _profile_from(raw: dict[str, str]) -> Profile:
    consent = raw.get("consent")
    return Profile(
        consent=None if consent is None else consent == "yes",
        country=raw.get("country") or None,
        timezone=raw.get("timezone") or None,
        locale=raw.get("locale") or None,
        last_crisis_at=float(raw["last_crisis_at"]) if raw.get("last_crisis_at") else None,
        preferences=json.loads(raw["preferences"]) if raw.get("preferences") else {},
    )


def _maybe_json(value: str) -> Any:
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
