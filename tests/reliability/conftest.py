"""Fixtures for the fault tests: a redis-server of the test's own, which the test may kill, stop and restart
(the session's shared server is never touched), with the durability settings of deploy/redis.conf."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.safety import SafetyScreen
from core.store import EmbeddedRedis, RedisContextStore, connect_redis

DEPLOY_REDIS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "redis.conf"
# The persistence settings production runs with; networking stays on the private unix socket.
_DURABILITY_SETTINGS = ("appendonly", "appendfsync", "save", "maxmemory-policy")


def deploy_durability_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for raw in DEPLOY_REDIS_CONF.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if name in _DURABILITY_SETTINGS:
            settings[name] = value.strip().strip('"')
    return settings


@pytest.fixture(scope="session")
def screen() -> SafetyScreen:
    return SafetyScreen(semantic=False)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", extra_config=deploy_durability_settings())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def own_client(own_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(unix_socket_path=own_redis.socket_path)
    yield client
    await client.aclose()


@pytest.fixture
def own_store(own_client: aioredis.Redis) -> RedisContextStore:
    return RedisContextStore(own_client, max_turns=6, max_tokens=400, ttl_seconds=3600)
