"""Several webhook workers sharing one real Redis: one user's updates are handled one at a time in update_id
order whichever worker Telegram's load balancer picks, a duplicate is answered once, a dead worker's users are
picked up, the flood limits hold for the fleet as a whole, and /healthz and /metrics say what they should.

The workers are the real `run_telegram` in webhook mode (two in this event loop, each with its own runtime and
port), talking to the fake Bot API on 127.0.0.1. Like Telegram, the tests post a chat's next update only after
the previous one was answered 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest

from bots.telegram import run_telegram
from bots.telegram.fleet import Fleet, FleetTimings
from bots.telegram.flood import FleetRateLimiter
from bots.telegram.webhook import SECRET_HEADER, WebhookServer, engine_probe, redis_probe
from core import metrics
from core.store import EmbeddedRedis, connect_redis
from tests.bots.telegram.harness import BOT_ID, FAST_OPTIONS, FakeBotApi, make_runtime, message_update

USER = 7301
SECRET = "fleet-webhook-secret"
URL = "https://haven.example/tg/hook"
# A lock long enough that a busy test machine never loses it mid-reply; tests make a dead lock expire by hand.
FAST_FLEET = FleetTimings(lock_ttl_seconds=5.0, sweep_interval_seconds=0.2, stop_wait_seconds=5.0)


class TurnRecordingEngine:
    """A model that takes a while per reply and notes when each reply starts and ends, across workers."""

    name = "turns"

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds
        self.events: list[tuple[str, str]] = []

    def warm_up(self) -> None:
        return None

    async def stream(self, messages: Sequence[Any], *, max_new_tokens: int | None = None) -> AsyncIterator[str]:
        said = messages[-1]["content"]
        self.events.append(("start", said))
        await asyncio.sleep(self.seconds)
        self.events.append(("end", said))
        yield f"reply to {said}"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for(predicate: Callable[[], Any], limit_seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + limit_seconds
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)
    return value


@contextlib.asynccontextmanager
async def webhook_workers(redis_client: Any, engine: Any, api: FakeBotApi, count: int = 2,
                          ) -> AsyncIterator[list[str]]:
    """`count` webhook workers on their own ports; yields their base URLs."""
    stop = asyncio.Event()
    tasks, urls = [], []
    try:
        for _ in range(count):
            port = unused_port()
            runtime = make_runtime(redis_client, engine, api.base_url, telegram_mode="webhook",
                                   telegram_listen_port=port, telegram_webhook_url=URL,
                                   telegram_webhook_secret=SECRET)
            ready = asyncio.Event()
            task = asyncio.create_task(run_telegram(runtime, options=FAST_OPTIONS, stop=stop, ready=ready,
                                                    fleet_timings=FAST_FLEET))
            tasks.append(task)
            await wait_for(lambda t=task, r=ready: r.is_set() or (t.done() and t.result()))
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    server = FakeBotApi()
    await server.start()
    yield server
    await server.stop()


_update_ids = itertools.count(2_000_000)


def update_from(user_id: int, words: str) -> dict[str, Any]:
    """A private message as Telegram posts it to a webhook: with its update_id."""
    return message_update(user_id, text=words, update_id=next(_update_ids))


async def post(client: httpx.AsyncClient, base_url: str, update: dict[str, Any], secret: str = SECRET) -> int:
    response = await client.post(base_url + "/tg/hook", json=update, headers={SECRET_HEADER: secret})
    return response.status_code


async def test_one_users_updates_alternating_between_workers_are_handled_in_order_one_at_a_time(
        redis_client, api):
    engine = TurnRecordingEngine(seconds=0.2)
    said = [f"message {n}" for n in range(6)]
    async with webhook_workers(redis_client, engine, api) as (first, second), httpx.AsyncClient() as client:
        for n, words in enumerate(said):
            # Telegram sends a chat's next update once the previous one was acknowledged; the load balancer
            # alternates, so every other update lands on the other worker while the first is still answering.
            assert await post(client, (first, second)[n % 2], update_from(USER, words)) == 200
        await wait_for(lambda: f"reply to {said[-1]}" in api.shown(USER))
    expected = [(edge, words) for words in said for edge in ("start", "end")]
    assert engine.events == expected, "one reply at a time, in the order the user wrote"
    replies = [text for text in api.shown(USER) if text.startswith("reply to")]
    assert replies == [f"reply to {words}" for words in said], "each answered once, in order"
    assert await redis_client.keys("haven:telegram:mailbox:*") == [], "nothing the user wrote stays queued"
    assert await redis_client.keys("haven:telegram:turn:*") == []


async def test_a_duplicate_update_on_another_worker_is_answered_once(redis_client, api):
    engine = TurnRecordingEngine(seconds=0.05)
    update = message_update(USER, text="are you there", update_id=880001)
    async with webhook_workers(redis_client, engine, api) as (first, second), httpx.AsyncClient() as client:
        assert await post(client, first, update) == 200
        assert await post(client, second, update) == 200  # Telegram retrying through the other worker
        await wait_for(lambda: "reply to are you there" in api.shown(USER))
        await asyncio.sleep(0.3)  # room for a second answer to show up, if one were coming
    assert api.shown(USER).count("reply to are you there") == 1
    assert engine.events == [("start", "are you there"), ("end", "are you there")]


async def test_a_dead_workers_lock_expires_and_its_users_mail_is_drained(redis_client, api):
    engine = TurnRecordingEngine(seconds=0.05)
    lock = f"haven:telegram:turn:{BOT_ID}:{USER}"
    async with webhook_workers(redis_client, engine, api, count=1) as (worker,), httpx.AsyncClient() as client:
        # A worker took this user's turn and died: its lock is still there, nobody will release it.
        await redis_client.set(lock, "dead-worker", px=60_000)
        assert await post(client, worker, update_from(USER, "hello again")) == 200
        assert await redis_client.zcard(f"haven:telegram:mailbox:{BOT_ID}:{USER}") == 1, "waits behind the lock"
        await redis_client.pexpire(lock, 1)  # its TTL runs out
        await wait_for(lambda: "reply to hello again" in api.shown(USER))
    assert await redis_client.keys("haven:telegram:mailbox:*") == []


async def test_wrong_or_missing_secret_is_refused_and_nothing_is_handled(redis_client, api):
    engine = TurnRecordingEngine(seconds=0.01)
    async with webhook_workers(redis_client, engine, api, count=1) as (worker,), httpx.AsyncClient() as client:
        assert await post(client, worker, update_from(USER, "let me in"), secret="guess") == 403
        response = await client.post(worker + "/tg/hook", json=update_from(USER, "let me in"))
        assert response.status_code == 403
        await asyncio.sleep(0.3)
    assert engine.events == [] and api.shown(USER) == []
    assert await redis_client.keys("haven:telegram:update:*") == [], "not even claimed"
    assert await redis_client.keys("haven:telegram:mailbox:*") == []


async def test_metrics_count_the_conversation_and_never_show_its_words(redis_client, api):
    engine = TurnRecordingEngine(seconds=0.01)
    secret_words = "my neighbour Bartholomew frightens me"
    async with webhook_workers(redis_client, engine, api, count=1) as (worker,), httpx.AsyncClient() as client:
        assert await post(client, worker, update_from(USER, secret_words)) == 200
        await wait_for(lambda: f"reply to {secret_words}" in api.shown(USER))
        response = await client.get(worker + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    page = response.text
    for name in ("haven_messages_total", "haven_telegram_updates_total", "haven_telegram_mailbox_depth_bucket",
                 "haven_telegram_updates_in_flight", "haven_reply_engine_seconds_count"):
        assert name in page
    assert 'haven_telegram_updates_total{outcome="queued"}' in page
    for private in ("Bartholomew", "neighbour", str(USER), SECRET):
        assert private not in page


async def test_healthz_names_what_is_down(tmp_path, api):
    server = EmbeddedRedis(tmp_path / "redis")
    client = connect_redis(unix_socket_path=await asyncio.to_thread(server.start))

    class UnreachableEngine:
        async def ping(self) -> bool:
            return False

    async def nothing(update: dict[str, Any]) -> None:
        return None

    port = unused_port()
    fleet = Fleet(client, BOT_ID, nothing)
    healthy = WebhookServer(fleet, path="/tg/hook", secret=SECRET,
                            probes={"redis": redis_probe(client), "engine": engine_probe(object())})
    await healthy.start("127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            ok = await http.get("/healthz")
            assert (ok.status_code, ok.json()) == (200, {"redis": "ok", "engine": "ok"})
            await asyncio.to_thread(server.stop)
            down = await http.get("/healthz")
            assert (down.status_code, down.json()) == (503, {"redis": "down", "engine": "ok"})
    finally:
        await healthy.stop()
        await client.aclose()
    engine_down = WebhookServer(fleet, path="/tg/hook", secret=SECRET,
                                probes={"engine": engine_probe(UnreachableEngine())})
    response = await engine_down.on_healthz(None)  # type: ignore[arg-type]
    assert response.status == 503 and b'"engine": "down"' in response.body  # type: ignore[operator]


async def test_with_redis_down_a_worker_still_answers_what_it_receives(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    client = connect_redis(unix_socket_path=await asyncio.to_thread(server.start))
    await asyncio.to_thread(server.stop)
    handled: list[int] = []

    async def handle(update: dict[str, Any]) -> None:
        handled.append(update["update_id"])

    fleet = Fleet(client, BOT_ID, handle)
    try:
        for update_id in (990001, 990002):
            assert await fleet.submit(message_update(USER, text="hi", update_id=update_id)) == "local"
        await wait_for(lambda: len(handled) == 2)
        assert handled == [990001, 990002]
    finally:
        await fleet.close()
        await client.aclose()


# ---- the flood limits, shared ---------------------------------------------------------------------------------

async def _sent_at(limiter: FleetRateLimiter, chat_id: int, times: list[float]) -> None:
    async def send() -> bool:
        times.append(time.monotonic())
        return True
    await limiter.process_request(send, (), {}, "sendMessage", {"chat_id": chat_id}, None)


async def test_two_workers_share_one_overall_budget(redis_client):
    one, two = (FleetRateLimiter(redis_client, BOT_ID, messages_per_second=5) for _ in range(2))
    times: list[float] = []
    # Ten messages to ten chats, five through each worker: 5 a second for the bot means two seconds' worth.
    await asyncio.gather(*(_sent_at(one if n % 2 else two, 1000 + n, times) for n in range(10)))
    times.sort()
    assert all(times[i + 5] - times[i] >= 0.9 for i in range(5)), "never six within a second, fleet-wide"


async def test_a_group_gets_its_twenty_a_minute_across_workers(redis_client):
    one, two = (FleetRateLimiter(redis_client, BOT_ID, group_messages_per_minute=2) for _ in range(2))
    assert await one.wait_turn(-100777) == 0.0
    assert await two.wait_turn(-100777) == 0.0
    with pytest.raises(TimeoutError):  # the third would have to wait most of a minute
        await asyncio.wait_for(one.wait_turn(-100777), 0.5)
    assert await two.wait_turn(-100888) == 0.0, "another group is not held back"


async def test_a_retry_after_on_one_worker_pauses_the_other(redis_client):
    one, two = (FleetRateLimiter(redis_client, BOT_ID) for _ in range(2))
    await one.pause(0.6)
    waited = await two.wait_turn(4242)
    assert waited >= 0.4
    assert metrics.value("haven_telegram_flood_waits_total") >= 1


async def test_a_lone_surrogate_escape_is_queued_and_answered(redis_client, api):
    engine = TurnRecordingEngine(seconds=0.01)
    body = json.dumps(update_from(USER, "PLACEHOLDER")).replace("PLACEHOLDER", "hi \\ud83d")
    async with webhook_workers(redis_client, engine, api, count=1) as (worker,), httpx.AsyncClient() as client:
        response = await client.post(worker + "/tg/hook", content=body,
                                     headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"})
        assert response.status_code == 200
        await wait_for(lambda: any(text.startswith("reply to hi") for text in api.shown(USER)))
