"""Wiring of the Telegram bot: `build_application` puts the handlers, the rate limiter, the retrying HTTP
layer and the update ordering together; `run_telegram` runs it by polling (one process) or as one of several
webhook workers sharing Redis (bots/telegram/fleet.py, bots/telegram/webhook.py) until cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlparse

from telegram import Update
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.ext import Application, ApplicationBuilder, BaseUpdateProcessor
from telegram.request import HTTPXRequest, RequestData

from bots.telegram.alerts import start_crisis_alerts, stop_crisis_alerts
from bots.telegram.checkins import TelegramCheckins, TelegramNotifier
from bots.telegram.dedupe import ClaimedAtTheWebhook, UpdateDeduplicator
from bots.telegram.fleet import Fleet, FleetTimings
from bots.telegram.flood import FleetRateLimiter, bot_id_from_token
from bots.telegram.handlers import TelegramHandlers, bot_commands
from bots.telegram.options import TelegramOptions
from bots.telegram.tools import TelegramTools, tool_bot_commands
from bots.telegram.webhook import WebhookServer, engine_probe, redis_probe, register_webhook
from core.checkins import CheckinDelivery
from core.errors import ConfigError
from core.ordering import KeyedLocks
from core.runtime import Runtime

log = logging.getLogger(__name__)

# Only what Haven handles; edited messages, reactions, channel posts etc. are never sent to it.
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
# These loggers write request URLs (which hold the bot token) or update payloads at INFO and DEBUG.
_CHATTY_LOGGERS = ("httpx", "httpcore", "telegram", "apscheduler")


class RetryingRequest(HTTPXRequest):
    """HTTPX transport that retries a Bot API call when Telegram answers 5xx or the connection is refused,
    a bounded number of times with exponential back-off. A timeout is not retried: the message may already
    have been sent, and sending it twice is worse than the error handler's apology."""

    def __init__(self, *, server_error_retries: int, backoff_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_error_retries = server_error_retries
        self.backoff_seconds = backoff_seconds

    async def do_request(  # type: ignore[override]  # the timeouts are forwarded untouched
            self, url: str, method: str, request_data: RequestData | None = None, **timeouts: Any,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]  # never log the URL itself: it holds the token
        for attempt in range(self.server_error_retries + 1):
            last = attempt == self.server_error_retries
            try:
                code, payload = await super().do_request(url, method, request_data, **timeouts)
            except TimedOut:
                raise
            except NetworkError as exc:
                if last:
                    raise
                log.warning("telegram %s unreachable; retrying attempt=%d error=%s", endpoint, attempt + 1,
                            type(exc).__name__)
            else:
                if code < 500 or last:
                    return code, payload
                log.warning("telegram %s answered %d; retrying attempt=%d", endpoint, code, attempt + 1)
            await asyncio.sleep(self.backoff_seconds * 2**attempt)
        raise AssertionError("unreachable")


class PerUserOrder(BaseUpdateProcessor):
    """Updates of different users run concurrently; one user's updates run one at a time, in arrival order.
    The lock is taken before anything awaits (asyncio.Lock queues waiters FIFO), so the order Telegram gave
    holds all the way into the dialog manager."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._locks = KeyedLocks()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        user = update.effective_user if isinstance(update, Update) else None
        if user is None:
            await coroutine
            return
        async with self._locks.hold(user.id):
            await coroutine

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def quiet_token_loggers() -> None:
    """Keep libraries that log URLs (with the token) or update payloads at WARNING or above."""
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def build_application(runtime: Runtime, options: TelegramOptions | None = None, *,
                      with_updater: bool = True, claimed_at_the_webhook: bool = False,
                      ) -> Application:  # type: ignore[type-arg]
    """The python-telegram-bot Application for this runtime, with every Haven handler registered.
    `with_updater=False` builds one that is fed with `process_update` (tests, the webhook workers);
    `claimed_at_the_webhook`: updates come through the fleet, which already dropped duplicates."""
    settings = runtime.settings
    if settings.telegram_bot_token is None:
        raise ConfigError("TELEGRAM_BOT_TOKEN: not set")
    options = options or TelegramOptions()
    quiet_token_loggers()
    request = RetryingRequest(server_error_retries=options.server_error_retries,
                              backoff_seconds=options.server_error_backoff_seconds,
                              connection_pool_size=64, pool_timeout=10.0, read_timeout=15.0,
                              media_write_timeout=30.0)
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_base_url)
        .request(request)
        # Telegram's flood limits (30 messages/s overall, ~1/s per chat, 20/min per group), shared by every
        # worker through Redis; on a 429 every worker waits the retry_after Telegram gives, then this request is
        # sent again, so a reply is delayed, never dropped.
        .rate_limiter(FleetRateLimiter(
            runtime.redis, bot_id_from_token(settings.telegram_bot_token.get_secret_value()),
            messages_per_second=settings.telegram_messages_per_second,
            chat_messages_per_second=settings.telegram_chat_messages_per_second,
            group_messages_per_minute=settings.telegram_group_messages_per_minute,
            max_retries=options.flood_retries))
        .concurrent_updates(PerUserOrder(options.max_concurrent_updates))
        .arbitrary_callback_data(False)
    )
    if with_updater:
        poll_request = HTTPXRequest(connection_pool_size=1, read_timeout=options.poll_timeout_seconds + 10.0)
        builder = builder.get_updates_request(poll_request)
    else:
        builder = builder.updater(None)
    app = builder.build()
    TelegramTools(runtime.manager).register(app)  # first: its commands and "tool:" buttons win over the general ones
    # Before the general handlers too: /checkin, /mood and the mood/check-in buttons are answered there.
    TelegramCheckins(runtime.checkins, runtime.redis, settings.admins).register(app)
    dedupe = (ClaimedAtTheWebhook if claimed_at_the_webhook else UpdateDeduplicator)(
        runtime.redis, ttl_seconds=options.update_claim_ttl_seconds)
    TelegramHandlers(runtime.manager, dedupe, options).register(app)
    return app


async def register_commands(app: Application) -> None:  # type: ignore[type-arg]
    """Fill the bot's command menu. A failure is logged, not fatal: the commands work without the menu."""
    try:
        await app.bot.set_my_commands(bot_commands() + tool_bot_commands())
    except TelegramError as exc:
        log.warning("command menu not set error=%s", type(exc).__name__)


async def _stop_delivery(delivery: asyncio.Task[None], wait_seconds: float) -> None:
    """Let the delivery worker finish the check-in it is sending (it stops on `stop`); cancel it if it hangs."""
    if not delivery.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(delivery), wait_seconds)
        delivery.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await delivery
    if not delivery.cancelled() and delivery.exception() is not None:
        log.error("check-in delivery stopped with error=%s", type(delivery.exception()).__name__)


async def run_telegram(runtime: Runtime, *, options: TelegramOptions | None = None,
                       stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                       fleet_timings: FleetTimings | None = None) -> None:
    """Run the Telegram bot until `stop` is set or the task is cancelled; in-flight replies finish first.
    `ready` is set once updates are being received (polling started, or the webhook server listening)."""
    settings = runtime.settings
    webhook = settings.telegram_mode == "webhook"
    if webhook and not settings.telegram_webhook_url:
        raise ConfigError("HAVEN_TELEGRAM_WEBHOOK_URL: webhook mode needs the public https URL Telegram posts to")
    if webhook and not settings.telegram_webhook_secret:
        raise ConfigError("HAVEN_TELEGRAM_WEBHOOK_SECRET: webhook mode needs a secret, or anyone could post "
                          "updates")
    if webhook and not settings.redis_url:
        log.warning("webhook mode with the embedded Redis: run one worker only (several need one REDIS_URL)")
    options = options or TelegramOptions()
    app = build_application(runtime, options, with_updater=not webhook, claimed_at_the_webhook=webhook)
    stop = stop or asyncio.Event()
    async with app:  # getMe, then shutdown on the way out
        await register_commands(app)
        updater = app.updater
        server, sweeps, fleet = None, None, None
        if webhook:
            await app.start()
            server, fleet = await _start_webhook_worker(app, runtime, fleet_timings)
            sweeps = asyncio.create_task(fleet.run_sweeps(stop), name="telegram-fleet-sweep")
        else:
            assert updater is not None
            await updater.start_polling(timeout=options.poll_timeout_seconds, allowed_updates=ALLOWED_UPDATES)
            await app.start()
        delivery, delivery_stop = None, asyncio.Event()
        if runtime.checkins is not None:
            # Scheduled check-ins for Telegram users: the outbox the scheduler fills, sent with this bot.
            worker = CheckinDelivery(runtime.redis, "telegram", TelegramNotifier(app.bot))
            delivery = asyncio.create_task(worker.run(delivery_stop, block_seconds=options.checkin_poll_seconds),
                                           name="telegram-checkin-delivery")
        alerts = start_crisis_alerts(runtime, app.bot)  # HAVEN_CRISIS_ALERTS: tell the Telegram admins
        log.info("telegram bot running mode=%s checkins=%s", settings.telegram_mode, delivery is not None)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            delivery_stop.set()
            await stop_crisis_alerts(alerts)
            if delivery is not None:
                await _stop_delivery(delivery, options.checkin_poll_seconds + 3.0)
            if server is not None and fleet is not None and sweeps is not None:
                await server.stop()  # no new updates: Telegram sends them to the other workers
                await sweeps
                await fleet.close()  # replies being written finish first
            with contextlib.suppress(Exception):
                if updater is not None and updater.running:
                    await updater.stop()
            if app.running:
                await app.stop()
            log.info("telegram bot stopped")


async def _start_webhook_worker(app: Application, runtime: Runtime,  # type: ignore[type-arg]
                                timings: FleetTimings | None) -> tuple[WebhookServer, Fleet]:
    """Register the webhook (once for workers starting together) and listen for Telegram's posts."""
    settings = runtime.settings
    assert settings.telegram_webhook_url and settings.telegram_webhook_secret
    secret = settings.telegram_webhook_secret.get_secret_value()

    async def handle(data: dict[str, Any]) -> None:
        update = Update.de_json(data, app.bot)
        await app.update_processor.process_update(update, app.process_update(update))

    fleet = Fleet(runtime.redis, app.bot.id, handle, timings)
    server = WebhookServer(fleet, path=urlparse(settings.telegram_webhook_url).path, secret=secret,
                           probes={"redis": redis_probe(runtime.redis), "engine": engine_probe(runtime.engine)})
    if settings.telegram_set_webhook:
        await register_webhook(app.bot, runtime.redis, url=settings.telegram_webhook_url, secret=secret,
                               allowed_updates=ALLOWED_UPDATES)
    await server.start(settings.telegram_listen_host, settings.telegram_listen_port,
                       reuse_port=settings.telegram_reuse_port)
    return server, fleet
