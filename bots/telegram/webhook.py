"""The webhook worker's HTTP side: Telegram posts updates here, a load balancer asks /healthz, Prometheus
scrapes /metrics.

POST <webhook path>  the update, with Telegram's secret header (compared in constant time; 403 without it).
                     Answered 200 as soon as the update is queued in Redis (see fleet.py): never after the reply,
                     which can take minutes, or Telegram would resend and hold back the chat's next update.
GET /healthz         200 {"redis": "ok", "engine": "ok"}, or 503 naming what is down. No secrets, no user data.
GET /metrics         core.metrics in Prometheus' text format: counts and timings only, never text or ids.

Only the webhook path should be reachable from the internet; /healthz and /metrics are for the load balancer
and the monitoring inside the deployment (deploy/SCALING.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError
from telegram import Bot
from telegram.error import TelegramError

from bots.telegram.fleet import Fleet
from core import metrics

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# An update is a few kilobytes; Telegram's own limit on a message is 4096 characters.
MAX_UPDATE_BYTES = 1024 * 1024
HEALTH_TIMEOUT_SECONDS = 2.0
# Workers starting within this long of each other register the webhook once between them.
SET_WEBHOOK_EVERY_SECONDS = 300

Probe = Callable[[], Awaitable[bool]]


class WebhookServer:
    def __init__(self, fleet: Fleet, *, path: str, secret: str, probes: dict[str, Probe]) -> None:
        self.fleet = fleet
        self.path = "/" + path.strip("/")
        self._secret = secret.encode()
        self.probes = probes
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPDATE_BYTES)
        app.router.add_post(self.path, self.on_update)
        app.router.add_get("/healthz", self.on_healthz)
        app.router.add_get("/metrics", self.on_metrics)
        return app

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)  # access logs would show nothing useful
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        log.info("webhook server listening port=%d reuse_port=%s", port, reuse_port)

    async def stop(self) -> None:
        """Stop taking updates (Telegram keeps what it could not deliver and sends it to the other workers)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def on_update(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            metrics.inc("haven_telegram_updates_total", "Updates received by the webhook, by outcome.",
                        outcome="refused")
            log.warning("webhook request without the right secret refused")
            return web.Response(status=403)
        try:
            update = json.loads(await request.read())
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                raise ValueError("no update_id")
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
            return web.Response(status=400)
        await self.fleet.submit(update)
        return web.Response(status=200)

    async def on_healthz(self, request: web.Request) -> web.Response:
        names = list(self.probes)
        results = await asyncio.gather(*(self._probe(self.probes[name]) for name in names))
        body = {name: "ok" if healthy else "down" for name, healthy in zip(names, results, strict=True)}
        return web.json_response(body, status=200 if all(results) else 503)

    @staticmethod
    async def _probe(probe: Probe) -> bool:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                return await probe()
        except Exception:  # a health check reports, it never fails
            return False

    async def on_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def redis_probe(redis: aioredis.Redis) -> Probe:
    async def probe() -> bool:
        return bool(await redis.ping())
    return probe


def engine_probe(engine: Any) -> Probe:
    """An engine behind a network (the OpenAI-compatible one) is asked; one inside this process is up if it
    loaded, which it did before the server started."""
    ping = getattr(engine, "ping", None)

    async def probe() -> bool:
        return True if ping is None else bool(await ping())
    return probe


async def register_webhook(bot: Bot, redis: aioredis.Redis, *, url: str, secret: str,
                           allowed_updates: list[str]) -> bool:
    """setWebhook, once for workers starting together: the first to set a Redis key for this (url, secret)
    registers it, the others skip. With Redis down every worker registers (the call is idempotent). The key
    holds a hash, never the secret. Returns whether this worker called setWebhook."""
    fingerprint = hashlib.sha256(f"{url}\n{secret}".encode()).hexdigest()[:16]
    key = f"haven:telegram:webhook-set:{bot.id}:{fingerprint}"
    try:
        first = await redis.set(key, "1", nx=True, ex=SET_WEBHOOK_EVERY_SECONDS)
    except (RedisError, OSError):
        first = True
    if not first:
        return False
    try:
        await bot.set_webhook(url=url, secret_token=secret, allowed_updates=allowed_updates)
    except TelegramError as exc:
        log.error("setWebhook failed error=%s", type(exc).__name__)
        with contextlib.suppress(RedisError, OSError):
            await redis.delete(key)  # the next worker to start tries again
        raise
    log.info("webhook registered")
    return True
