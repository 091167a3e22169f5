"""Assemble a running Haven from the settings: Redis (given or embedded), the store, the model, the safety
screen and the dialog manager. Adapters and the CLI open one runtime and hand its manager to their handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis

from core.checkins import CheckinService
from core.dialog import DialogLimits, DialogManager
from core.engines import Engine, build_engine
from core.ratelimit import UserRateLimiter
from core.safety import SafetyScreen
from core.safety.alerts import CrisisAlertOutbox
from core.settings import Settings
from core.store import EmbeddedRedis, RedisContextStore, connect_redis
from core.tools import CopingTools

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    settings: Settings
    redis: aioredis.Redis
    store: RedisContextStore
    engine: Engine
    screen: SafetyScreen
    manager: DialogManager
    tools: CopingTools | None = None
    checkins: CheckinService | None = None


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    engine: Engine | None = None,
    screen: SafetyScreen | None = None,
    on_progress: Callable[[str], None] = lambda step: None,
) -> AsyncIterator[Runtime]:
    """Start everything Haven needs; stop it all on exit, in reverse order."""
    embedded: EmbeddedRedis | None = None
    if settings.redis_url:
        client = connect_redis(settings.redis_url)
    else:
        on_progress("Starting the embedded Redis")
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        socket_path = await asyncio.to_thread(embedded.start)
        client = connect_redis(unix_socket_path=socket_path)
    try:
        store = RedisContextStore(client, max_turns=settings.history_max_turns,
                                  max_tokens=settings.history_max_tokens,
                                  ttl_seconds=settings.history_ttl_seconds)
        if not await store.ping():
            log.warning("redis is not answering; Haven starts anyway and keeps trying")
        on_progress("Loading the safety screen")
        screen = screen or SafetyScreen()
        await asyncio.to_thread(screen.warm_up)
        if engine is None:
            on_progress("Loading the language model (the first start converts the bundled model once)")
            engine = await asyncio.to_thread(build_engine, settings)
            await asyncio.to_thread(engine.warm_up)
        tools = CopingTools(client, store, default_country=settings.default_country)
        # HAVEN_CRISIS_ALERTS: admins are told a crisis reply was sent (no message text); each adapter delivers it.
        crisis_alert = CrisisAlertOutbox() if settings.crisis_alerts else None
        checkins = CheckinService(client, store, screen, default_country=settings.default_country,
                                  crisis_alert=crisis_alert)
        manager = DialogManager(store, engine, screen, crisis_alert=crisis_alert, limits=DialogLimits(
            reply_timeout_seconds=settings.reply_timeout_seconds, default_country=settings.default_country,
            remember_conversations=settings.remember_conversations),
            tools=tools, checkins=checkins, rate_limiter=UserRateLimiter(client))
        try:
            yield Runtime(settings, client, store, engine, screen, manager, tools, checkins)
        finally:
            await tools.close()  # stop breathing runs still pacing
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
