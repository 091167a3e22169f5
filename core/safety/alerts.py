"""The admin alert outbox behind HAVEN_CRISIS_ALERTS: admins are told that a crisis reply was sent, and nothing
about what was said.

`CrisisAlertOutbox` is the `CrisisAlert` hook the dialog manager and the check-in service call after a crisis
reply; each running adapter opens an `AlertDelivery` on it that sends every alert to that platform's admins.

What an admin receives is fixed text (`CrisisAlertNotice.text`): that a crisis reply was sent, the platform, the
hashed user reference (`UserRef.log_id`), the country code if known, the time, and what the admin can do. The hook
is never given the message text, a username or a chat title, so it cannot leak them.

How it behaves, and why:

- Non-blocking: calling the outbox only appends to memory. It never awaits, never raises and never touches Redis,
  so the person's crisis reply is never held back by an alert, and alerts still go out when Redis is down.
- Bounded: it holds the last `capacity` alerts. A delivery that falls that far behind loses the oldest, counted in
  `haven_crisis_alerts_total{outcome="dropped"}`.
- One alert per person per `cooldown_seconds` (10 minutes): someone in crisis often sends several messages in a
  row, and the admins need to know once, not be paged for each message.
- Every delivery sees every alert: with Telegram and Discord in one process, a Discord admin is also told about a
  crisis reply on Telegram (the alert names the platform).
- Several workers: each process has its own outbox and sends its own alerts. When the delivery is given a Redis
  client, the cooldown is also shared between workers, best effort: `SET NX` on
  `haven:alerts:crisis:<delivery platform>:<user ref>` with the cooldown as TTL (it holds no user data and expires by
  itself). When Redis does not answer within a second the alert is sent anyway; the in-process cooldown still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core import metrics
from core.clock import Clock, SystemClock
from core.safety.crisis import CrisisAlert
from core.types import UserRef

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 200
DEFAULT_COOLDOWN_SECONDS = 600.0
# How long a delivery waits for Redis to say whether another worker already alerted; then it sends anyway.
SHARED_COOLDOWN_WAIT_SECONDS = 1.0
# Longest wait for one admin's message (the platform client's own retries included); then it counts as failed.
SEND_TIMEOUT_SECONDS = 60.0
# People remembered for the cooldown; beyond this the oldest are forgotten (they are past their window anyway).
_REMEMBERED_PEOPLE = 10_000

_ALERTS = "haven_crisis_alerts_total"
_ALERTS_HELP = "Crisis alerts raised, by outcome (queued, cooldown, dropped, not_queued)."
_SENDS = "haven_crisis_alert_sends_total"
_SENDS_HELP = "Crisis alert messages to admins, by platform and outcome (sent, failed, shared_cooldown)."

_PLATFORM_NAMES = {"telegram": "Telegram", "discord": "Discord", "console": "console"}

# Fixed text for admins. Only the values filled in below vary; none of them is anything the person wrote.
_ALERT_TEXT = """\
Haven admin alert: a crisis reply was sent.
Platform: {platform}
Person: {user_ref} (a hashed reference; Haven's logs use the same one)
Country: {country}
Time: {time}

The person has already been given the crisis reply with helplines. Haven shares no message text or names with \
admins, so it cannot show you more than this. Follow your instance's own escalation policy. \
Further crisis replies to this person within {cooldown_minutes} minutes send no new alert."""


@dataclass(frozen=True, slots=True)
class CrisisAlertNotice:
    """One alert: where and when a crisis reply was sent, and to whom as a hashed reference. No text."""

    platform: str
    user_ref: str
    country: str | None
    at: float  # unix seconds
    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS

    @property
    def time_utc(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M UTC")

    def text(self) -> str:
        """The message admins receive."""
        return _ALERT_TEXT.format(platform=_PLATFORM_NAMES.get(self.platform, self.platform), user_ref=self.user_ref,
                                  country=self.country or "not known", time=self.time_utc,
                                  cooldown_minutes=max(1, round(self.cooldown_seconds / 60)))

    def one_line(self) -> str:
        """The same facts on one line, for a local console."""
        return (f"admin alert: a crisis reply was sent (platform {self.platform}, person {self.user_ref}, "
                f"country {self.country or 'not known'}, {self.time_utc}); admins get this, never the message text")


class CrisisAlertOutbox:
    """The in-process outbox: a `CrisisAlert` that queues, and the readers that deliveries drain.

    Call it from the event loop's thread (the dialog manager and the check-in service do); a reader may wait on
    another loop, it is woken thread-safely."""

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY, cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
                 clock: Clock | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.cooldown_seconds = cooldown_seconds
        self.clock = clock or SystemClock()
        self._held: deque[tuple[int, CrisisAlertNotice]] = deque()
        self._next_number = 0
        self._readers: list[AlertReader] = []
        self._last_alert_at: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, platform: str, user_ref: str, country: str | None) -> None:
        """Queue an alert and return at once. Never raises: the person's crisis reply matters more."""
        try:
            self._queue(platform, user_ref, country)
        except Exception as exc:
            metrics.inc(_ALERTS, _ALERTS_HELP, outcome="not_queued")
            log.error("crisis alert not queued error=%s", type(exc).__name__)

    def reader(self, platform: str) -> AlertReader:
        """A cursor over the alerts for one delivery; it starts with what is already held (an alert raised while
        the adapter was still starting is not lost). Close it when the delivery stops."""
        with self._lock:
            start = self._held[0][0] if self._held else self._next_number
            reader = AlertReader(self, platform, start)
            self._readers.append(reader)
        return reader

    def _queue(self, platform: str, user_ref: str, country: str | None) -> None:
        now = self.clock.now()
        with self._lock:
            last = self._last_alert_at.get(user_ref)
            if last is not None and now - last < self.cooldown_seconds:
                metrics.inc(_ALERTS, _ALERTS_HELP, outcome="cooldown")
                return
            self._remember(user_ref, now)
            if len(self._held) >= self.capacity:
                self._drop_oldest()
            notice = CrisisAlertNotice(platform, user_ref, country, now, self.cooldown_seconds)
            self._held.append((self._next_number, notice))
            self._next_number += 1
            readers = list(self._readers)
        metrics.inc(_ALERTS, _ALERTS_HELP, outcome="queued")
        log.info("crisis alert queued user=%s readers=%d", user_ref, len(readers))
        for reader in readers:
            reader.wake()

    def _remember(self, user_ref: str, now: float) -> None:
        self._last_alert_at[user_ref] = now
        self._last_alert_at.move_to_end(user_ref)
        while self._last_alert_at and (len(self._last_alert_at) > _REMEMBERED_PEOPLE
                                       or now - next(iter(self._last_alert_at.values())) >= self.cooldown_seconds):
            self._last_alert_at.popitem(last=False)

    def _drop_oldest(self) -> None:
        number, _ = self._held.popleft()
        for reader in self._readers:
            if reader.cursor <= number:  # this delivery had not sent it yet
                reader.cursor = number + 1
                metrics.inc(_ALERTS, _ALERTS_HELP, outcome="dropped")
                if not reader.behind:  # one line per episode, not one per alert: the counter has the number
                    log.warning("crisis alerts dropped, the outbox is full platform=%s", reader.platform)
                reader.behind = True

    def _take(self, reader: AlertReader) -> list[CrisisAlertNotice]:
        with self._lock:
            found = [notice for number, notice in self._held if number >= reader.cursor]
            reader.cursor = self._next_number
            reader.behind = False
        return found

    def _close(self, reader: AlertReader) -> None:
        with self._lock:
            if reader in self._readers:
                self._readers.remove(reader)


class AlertReader:
    """One delivery's view of the outbox: `take()` what is new now, or `await wait()` for it."""

    def __init__(self, outbox: CrisisAlertOutbox, platform: str, cursor: int) -> None:
        self.outbox = outbox
        self.platform = platform
        self.cursor = cursor  # the number of the next alert this reader has not seen
        self.behind = False  # alerts were dropped since the last take()
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def take(self) -> list[CrisisAlertNotice]:
        return self.outbox._take(self)

    async def wait(self) -> list[CrisisAlertNotice]:
        """The alerts not yet taken, waiting until there is at least one."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._arrived.clear()
            found = self.take()
            if found:
                return found
            await self._arrived.wait()

    def wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody is waiting; the next take() finds it
        try:
            loop.call_soon_threadsafe(self._arrived.set)
        except RuntimeError:  # the loop closed meanwhile
            return

    def close(self) -> None:
        self.outbox._close(self)


def outbox_of(alert: CrisisAlert | None) -> CrisisAlertOutbox | None:
    """The outbox behind a dialog manager's `crisis_alert` (None when HAVEN_CRISIS_ALERTS is off). Adapters find it
    there, so nothing else needs to pass it around."""
    return alert if isinstance(alert, CrisisAlertOutbox) else None


SendToAdmin = Callable[[str, str], Awaitable[object]]  # (the admin's platform id, the alert text)


class AlertDelivery:
    """Sends each alert from one reader to one platform's admins, one attempt per admin: a failed send is logged
    (error type only) and left; the platform client's own bounded retries are all the retrying there is."""

    def __init__(self, reader: AlertReader, admin_ids: Iterable[str], send: SendToAdmin, *,
                 redis: Any = None) -> None:
        self.reader = reader
        self.platform = reader.platform
        self.admin_ids = tuple(sorted(admin_ids))
        self.send = send
        self.redis = redis

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; what is queued by then is still sent."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waiting = asyncio.ensure_future(self.reader.wait())
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not waiting.done():
                    waiting.cancel()  # nothing was taken: the reader's cursor has not moved
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
                    break
                for notice in waiting.result():
                    await self.deliver(notice)
            for notice in self.reader.take():
                await self.deliver(notice)
        finally:
            stopping.cancel()
            self.reader.close()

    async def deliver(self, notice: CrisisAlertNotice) -> int:
        """Send one alert to every admin of this platform; the number of admins it reached."""
        if not await self._first_in_shared_window(notice):
            metrics.inc(_SENDS, _SENDS_HELP, platform=self.platform, outcome="shared_cooldown")
            return 0
        text, reached = notice.text(), 0
        for admin_id in self.admin_ids:
            admin = UserRef(self.platform, admin_id).log_id  # logs never carry a platform id
            try:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):  # one stuck admin must not hold the others
                    await self.send(admin_id, text)
            except Exception as exc:
                metrics.inc(_SENDS, _SENDS_HELP, platform=self.platform, outcome="failed")
                log.warning("crisis alert not sent platform=%s admin=%s error=%s", self.platform, admin,
                            type(exc).__name__)
                continue
            reached += 1
            metrics.inc(_SENDS, _SENDS_HELP, platform=self.platform, outcome="sent")
            log.info("crisis alert sent platform=%s admin=%s user=%s", self.platform, admin, notice.user_ref)
        return reached

    async def _first_in_shared_window(self, notice: CrisisAlertNotice) -> bool:
        """False only when Redis says another worker already alerted this platform's admins about this person
        within the cooldown. Redis failing or slow means True: a missed alert is worse than a second one."""
        if self.redis is None:
            return True
        key = f"haven:alerts:crisis:{self.platform}:{notice.user_ref}"
        try:
            async with asyncio.timeout(SHARED_COOLDOWN_WAIT_SECONDS):
                return bool(await self.redis.set(key, "1", nx=True,
                                                 ex=max(1, math.ceil(notice.cooldown_seconds))))
        except Exception as exc:
            log.warning("crisis alert cooldown not shared (sending anyway) error=%s", type(exc).__name__)
            return True

    def start(self, name: str, *, first: Callable[[], Awaitable[object]] | None = None) -> RunningAlerts:
        """Run in a task; `first` is awaited before anything is sent (e.g. Discord's wait_until_ready). Alerts
        raised meanwhile are held; stopping before `first` finishes sends nothing."""
        stop = asyncio.Event()

        async def run() -> None:
            if first is not None:
                ready, stopping = asyncio.ensure_future(first()), asyncio.ensure_future(stop.wait())
                await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for waiter in (ready, stopping):
                    waiter.cancel()
                if not ready.done() or ready.cancelled() or stop.is_set():
                    self.reader.close()
                    return
            await self.run(stop)

        return RunningAlerts(asyncio.create_task(run(), name=name), stop, self.reader)


@dataclass(slots=True)
class RunningAlerts:
    """A delivery task and the event that stops it."""

    task: asyncio.Task[None]
    stop: asyncio.Event
    reader: AlertReader

    async def close(self, wait_seconds: float = 5.0) -> None:
        """Let the delivery send what is queued (bounded by `wait_seconds`), then make sure the task is gone."""
        self.stop.set()
        if not self.task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), wait_seconds)
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.reader.close()
        if not self.task.cancelled() and self.task.exception() is not None:
            log.error("crisis alert delivery stopped with error=%s", type(self.task.exception()).__name__)


def admin_delivery(alert: CrisisAlert | None, platform: str, admins: Iterable[tuple[str, str]],
                   send: SendToAdmin, *, redis: Any = None) -> AlertDelivery | None:
    """The delivery for one platform's admins, or None when alerts are off, or on with no admin there (then one
    warning says so, at start-up)."""
    outbox = outbox_of(alert)
    if outbox is None:
        return None
    admin_ids = [admin_id for admin_platform, admin_id in admins if admin_platform == platform]
    if not admin_ids:
        log.warning("crisis alerts are on but HAVEN_ADMIN_IDS names no %s admin: none are sent on %s",
                    platform, platform)
        return None
    log.info("crisis alerts on platform=%s admins=%d", platform, len(admin_ids))
    return AlertDelivery(outbox.reader(platform), admin_ids, send, redis=redis)


async def stop_alerts(running: RunningAlerts | None, wait_seconds: float = 5.0) -> None:
    """Stop a delivery started by an adapter; nothing to do when alerts were off."""
    if running is not None:
        await running.close(wait_seconds)
