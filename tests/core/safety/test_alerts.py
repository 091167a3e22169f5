"""The crisis alert outbox (HAVEN_CRISIS_ALERTS): queues without blocking, one alert per person per cooldown,
bounded, every delivery sees every alert, Redis down never stops an alert, a failed send is logged by type and
not retried, and the alert never carries what the person wrote — checked through a real DialogManager crisis
path on a real Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core import metrics
from core.dialog import DialogManager
from core.safety import SafetyScreen
from core.safety.alerts import AlertDelivery, CrisisAlertNotice, CrisisAlertOutbox, admin_delivery
from core.store import connect_redis
from core.types import IncomingMessage, ReplyKind, UserRef
from tests.fakes import FakeClock, RecordingSink, ScriptedEngine

DISTINCTIVE = "marmalade-zebra-4417"
CRISIS_WORDS = f"i want to kill myself tonight, {DISTINCTIVE}"
PERSON = UserRef("telegram", "sam-99317")


class AdminInbox:
    """The network edge of a platform: what each admin was sent, and optionally a failure for some admins."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.received: list[tuple[str, str]] = []
        self.attempts: list[str] = []
        self.failing = failing

    async def send(self, admin_id: str, text: str) -> None:
        self.attempts.append(admin_id)
        if admin_id in self.failing:
            raise RuntimeError(f"upstream said: {text}")  # a raw error that quotes the payload
        self.received.append((admin_id, text))


def alert(outbox: CrisisAlertOutbox, user: UserRef = PERSON, country: str | None = "GB") -> None:
    outbox(user.platform, user.log_id, country)


async def test_a_crisis_reply_alerts_with_the_hashed_ref_and_never_the_message_text(store) -> None:
    outbox = CrisisAlertOutbox(clock=FakeClock())
    manager = DialogManager(store, ScriptedEngine(), SafetyScreen(semantic=False), clock=FakeClock(),
                            crisis_alert=outbox)
    reader = outbox.reader("telegram")

    reply = await manager.handle(IncomingMessage(PERSON, CRISIS_WORDS, locale="en-GB"), RecordingSink())

    assert reply.kind is ReplyKind.CRISIS
    [notice] = reader.take()
    text = notice.text()
    assert PERSON.log_id in text and "Telegram" in text and "crisis reply was sent" in text
    assert DISTINCTIVE not in text and "kill" not in text and PERSON.user_id not in text
    assert "escalation policy" in text
    assert DISTINCTIVE not in notice.one_line()


async def test_one_alert_per_person_per_cooldown_window() -> None:
    clock = FakeClock()
    outbox = CrisisAlertOutbox(cooldown_seconds=600, clock=clock)
    reader = outbox.reader("discord")
    other = UserRef("discord", "42")
    before = metrics.value("haven_crisis_alerts_total", outcome="cooldown")

    for _ in range(4):  # someone in crisis sending several messages in a row
        alert(outbox)
        clock.advance(60)
    alert(outbox, other)  # someone else in the same minutes is alerted on their own
    assert [n.user_ref for n in reader.take()] == [PERSON.log_id, other.log_id]
    assert metrics.value("haven_crisis_alerts_total", outcome="cooldown") == before + 3

    clock.advance(600)  # past the window since the last alert: a new one
    alert(outbox)
    assert [n.user_ref for n in reader.take()] == [PERSON.log_id]


async def test_calling_the_outbox_never_waits_on_delivery_and_never_raises(store) -> None:
    outbox = CrisisAlertOutbox()
    never = asyncio.Event()

    async def hung_send(admin_id: str, text: str) -> None:
        await never.wait()  # the platform never answers

    running = AlertDelivery(outbox.reader("telegram"), ["1"], hung_send).start("test-alerts")
    manager = DialogManager(store, ScriptedEngine(), SafetyScreen(semantic=False), crisis_alert=outbox)
    try:
        for n in range(3):  # three people: three alerts, the first one stuck in the send
            reply = await asyncio.wait_for(
                manager.handle(IncomingMessage(UserRef("telegram", str(n)), CRISIS_WORDS), RecordingSink()), 10)
            assert reply.kind is ReplyKind.CRISIS
    finally:
        await running.close(wait_seconds=0.1)
    assert running.task.done()

    class BrokenClock:
        def now(self) -> float:
            raise OSError("clock gone")

    broken = CrisisAlertOutbox(clock=BrokenClock())
    before = metrics.value("haven_crisis_alerts_total", outcome="not_queued")
    broken("telegram", PERSON.log_id, None)  # does not raise
    assert metrics.value("haven_crisis_alerts_total", outcome="not_queued") == before + 1


async def test_the_outbox_is_bounded_and_counts_what_a_slow_delivery_lost(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.safety.alerts")
    outbox = CrisisAlertOutbox(capacity=3)
    reader = outbox.reader("telegram")
    before = metrics.value("haven_crisis_alerts_total", outcome="dropped")
    people = [UserRef("telegram", str(n)) for n in range(5)]
    for person in people:
        alert(outbox, person)
    assert [n.user_ref for n in reader.take()] == [p.log_id for p in people[2:]]  # the newest three
    assert metrics.value("haven_crisis_alerts_total", outcome="dropped") == before + 2
    assert caplog.text.count("crisis alerts dropped") == 1  # one line for the episode, the counter has the number
    assert reader.take() == []


async def test_every_delivery_sees_every_alert_and_a_late_one_gets_what_is_held() -> None:
    outbox = CrisisAlertOutbox()
    telegram = outbox.reader("telegram")
    alert(outbox)  # raised while the Discord adapter was still starting
    discord = outbox.reader("discord")
    assert [n.user_ref for n in telegram.take()] == [PERSON.log_id]
    assert [n.user_ref for n in discord.take()] == [PERSON.log_id]


async def test_a_running_delivery_sends_to_each_admin_once_and_logs_a_failure_by_type_only(
        caplog: pytest.LogCaptureFixture) -> None:
    outbox = CrisisAlertOutbox()
    inbox = AdminInbox(failing=frozenset({"666"}))
    delivery = admin_delivery(outbox, "telegram", {("telegram", "666"), ("telegram", "1001"), ("discord", "5")},
                             inbox.send)
    assert delivery is not None and delivery.admin_ids == ("1001", "666")
    task = delivery.start("test-alerts")
    caplog.set_level(logging.INFO, logger="core.safety.alerts")

    alert(outbox)
    for _ in range(500):
        if len(inbox.attempts) == 2:
            break
        await asyncio.sleep(0.01)
    await task.close()

    assert inbox.attempts == ["1001", "666"]  # one attempt each: the failure is not retried
    assert [admin for admin, _ in inbox.received] == ["1001"]
    assert "crisis alert not sent" in caplog.text and "error=RuntimeError" in caplog.text
    assert "upstream said" not in caplog.text and "666" not in caplog.text  # neither the error text nor the id


async def test_what_is_queued_when_the_delivery_stops_is_still_sent() -> None:
    outbox = CrisisAlertOutbox()
    inbox = AdminInbox()
    delivery = AlertDelivery(outbox.reader("discord"), ["7"], inbox.send)
    stop = asyncio.Event()
    alert(outbox)
    stop.set()
    await delivery.run(stop)
    assert len(inbox.received) == 1


async def test_workers_share_the_cooldown_through_redis_and_redis_down_still_alerts(redis_client, tmp_path) -> None:
    # Two workers, each with its own outbox, both answering the same person's crisis messages.
    inboxes = [AdminInbox(), AdminInbox()]
    deliveries = [AlertDelivery(CrisisAlertOutbox().reader("telegram"), ["1001"], inbox.send, redis=redis_client)
                  for inbox in inboxes]
    notice = CrisisAlertNotice("telegram", PERSON.log_id, "GB", 1_800_000_000.0)
    assert [await delivery.deliver(notice) for delivery in deliveries] == [1, 0]
    assert await redis_client.ttl(f"haven:alerts:crisis:telegram:{PERSON.log_id}") > 590

    dead = connect_redis(unix_socket_path=str(tmp_path / "nobody-listens.sock"))
    inbox = AdminInbox()
    try:
        assert await AlertDelivery(CrisisAlertOutbox().reader("telegram"), ["1001"], inbox.send,
                                   redis=dead).deliver(notice) == 1
    finally:
        await dead.aclose()
    assert len(inbox.received) == 1


async def test_no_delivery_when_alerts_are_off_and_a_warning_when_a_platform_has_no_admin(
        caplog: pytest.LogCaptureFixture) -> None:
    inbox = AdminInbox()
    assert admin_delivery(None, "telegram", {("telegram", "1")}, inbox.send) is None
    caplog.set_level(logging.WARNING, logger="core.safety.alerts")
    assert admin_delivery(CrisisAlertOutbox(), "discord", {("telegram", "1")}, inbox.send) is None
    assert [r.getMessage() for r in caplog.records] == [
        "crisis alerts are on but HAVEN_ADMIN_IDS names no discord admin: none are sent on discord"]


def test_the_alert_text_is_fixed_and_plain() -> None:
    text = CrisisAlertNotice("discord", "0123456789ab", None, 1_800_000_000.0).text()
    assert text.splitlines()[:5] == [
        "Haven admin alert: a crisis reply was sent.",
        "Platform: Discord",
        "Person: 0123456789ab (a hashed reference; Haven's logs use the same one)",
        "Country: not known",
        "Time: 2027-01-15 08:00 UTC",
    ]
    assert "within 10 minutes" in text
    assert not any(mark in text for mark in ("*", "_", "`", "<", "@"))  # nothing a parse mode or a ping reads
