"""The user's side of check-ins and moods: what every adapter calls.

    service = CheckinService(redis, store, screen, clock=clock)
    await service.opt_in(user, times="09:00,18:00", days="weekdays", timezone="London")
    reply = await service.handle_action(user, "mood:2")      # a button the adapter rendered came back
    png = await service.mood_chart(user); text = await service.mood_summary(user)

Opting in writes the schedule under the user's prefix and one member in the global due index; everything else
(when to fire, delivery) belongs to the scheduler and the delivery workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.checkins import keys
from core.checkins.catalog import Catalog
from core.checkins.mood import (
    MAX_NOTE_CHARS,
    MOOD_MAX,
    MOOD_MIN,
    MoodEntry,
    clean_feelings,
    mood_summary_lines,
    render_mood_chart,
)
from core.checkins.schedule import (
    COMMON_TIMEZONES,
    CheckinSchedule,
    ScheduleError,
    Slot,
    describe_days,
    next_fire,
    parse_days,
    parse_quiet_hours,
    parse_times,
    resolve_timezone,
)
from core.checkins.texts import button_label, feeling_words, line, score_label
from core.clock import Clock, SystemClock
from core.errors import StoreError
from core.safety import CrisisAlert, RiskLevel, SafetyScreen, alert_crisis_sent, crisis_reply
from core.store.base import ContextStore
from core.store.redis_store import AlongRead
from core.types import Button, Reply, ReplyKind, UserRef

log = logging.getLogger(__name__)

# Mood entries older than this are dropped when a new one is written.
MOOD_RETENTION_SECONDS = 400 * 86400
# A feeling word or note is added to the latest entry if it came this recently.
ATTACH_WINDOW_SECONDS = 6 * 3600
LOW_MOOD = 2

# Sets last_chat_at only for users who opted in, so chatting never creates check-in data.
_NOTE_CHAT = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_chat_at', ARGV[1]) return 1 end
return 0
"""


@dataclass(frozen=True, slots=True)
class CheckinStatus:
    opted_in: bool
    schedule: CheckinSchedule | None
    next_at: float | None


def checkin_buttons() -> tuple[Button, ...]:
    """The quick answers under every check-in: 1 (very low) to 5 (very good)."""
    return tuple(Button(score_label(n), f"mood:{n}") for n in range(MOOD_MIN, MOOD_MAX + 1))


def feeling_buttons() -> tuple[Button, ...]:
    return tuple(Button(word, f"feel:{word}") for word in feeling_words()[:8])


class CheckinService:
    def __init__(self, client: Any, store: ContextStore | None, screen: SafetyScreen, *,
                 clock: Clock | None = None, crisis_alert: CrisisAlert | None = None,
                 default_country: str | None = None) -> None:
        self._redis = client
        self.store = store
        self.screen = screen
        self.clock = clock or SystemClock()
        self.crisis_alert = crisis_alert
        self.default_country = default_country
        self.catalog = Catalog(client)
        self._note_chat = client.register_script(_NOTE_CHAT)

    # ---- schedule --------------------------------------------------------------------------------------

    async def status(self, user: UserRef) -> CheckinStatus:
        return (await self._snapshot(user))[0]

    async def _snapshot(self, user: UserRef) -> tuple[CheckinStatus, list[Slot], dict[str, str]]:
        """The user's status, the campaigns and the admin defaults, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.schedule_key(user))
            pipe.zscore(keys.DUE, keys.member(user))
            pipe.hgetall(keys.CAMPAIGNS)
            pipe.hgetall(keys.DEFAULTS)
            raw, score, campaigns, defaults = await pipe.execute()
        slots = [c.slot() for c in Catalog.parse_campaigns(campaigns)]
        if not raw or raw.get("on") != "1":
            return CheckinStatus(False, CheckinSchedule.from_fields(raw) if raw else None, None), slots, defaults
        status = CheckinStatus(True, CheckinSchedule.from_fields(raw), float(score) if score is not None else None)
        return status, slots, defaults

    async def opt_in(self, user: UserRef, *, times: str | Sequence[str] | None = None, days: str | None = None,
                     timezone: str | None = None, quiet_hours: str | None = None,
                     skip_if_chatted_hours: float | None = None) -> Reply:
        """Switch check-ins on (or change them). Unknown zone → UTC for now, and the reply asks where they are."""
        current, campaigns, defaults = await self._snapshot(user)
        try:
            if current.schedule is not None:
                schedule = current.schedule.with_changes(paused_until=0.0)
            else:
                default_times, default_days = Catalog.parse_defaults(defaults)
                schedule = CheckinSchedule(times=default_times, days=default_days,
                                           timezone=await self._profile_timezone(user) or "UTC")
            schedule = self._apply(schedule, times=times, days=days, quiet_hours=quiet_hours,
                                   skip_if_chatted_hours=skip_if_chatted_hours)
        except ScheduleError as exc:
            return Reply(ReplyKind.NOTICE, line("bad_input", problem=str(exc)))
        zone_known = True
        if timezone is not None:
            resolved = resolve_timezone(timezone)
            if resolved is None:
                return self._ask_timezone(timezone)
            schedule = schedule.with_changes(timezone=resolved)
        elif current.schedule is None and schedule.timezone == "UTC":
            zone_known = False
        next_at = await self._save(user, schedule, campaigns, event="opted_in" if not current.opted_in else None)
        log.info("checkins on user=%s", user.log_id)
        reply_text = line("opted_in", times=_times(schedule), days=describe_days(schedule.days),
                          timezone=schedule.timezone)
        if next_at is None:
            reply_text += " " + line("updated", next="none in the coming year (check quiet hours)")
        if not zone_known:
            ask = self._ask_timezone(None)
            return Reply(ReplyKind.NOTICE, reply_text + "\n\n" + ask.text, ask.buttons)
        return Reply(ReplyKind.NOTICE, reply_text)

    async def update(self, user: UserRef, *, times: str | Sequence[str] | None = None, days: str | None = None,
                     timezone: str | None = None, quiet_hours: str | None = None,
                     skip_if_chatted_hours: float | None = None, campaigns: bool | None = None) -> Reply:
        """Change one or more settings of an opted-in user."""
        current, slots, _ = await self._snapshot(user)
        if not current.opted_in or current.schedule is None:
            return self._not_opted_in()
        try:
            schedule = self._apply(current.schedule, times=times, days=days, quiet_hours=quiet_hours,
                                   skip_if_chatted_hours=skip_if_chatted_hours)
        except ScheduleError as exc:
            return Reply(ReplyKind.NOTICE, line("bad_input", problem=str(exc)))
        if timezone is not None:
            resolved = resolve_timezone(timezone)
            if resolved is None:
                return self._ask_timezone(timezone)
            schedule = schedule.with_changes(timezone=resolved)
        if campaigns is not None:
            schedule = schedule.with_changes(campaigns=campaigns)
        next_at = await self._save(user, schedule, slots)
        return Reply(ReplyKind.NOTICE, line("updated", next=self._when(next_at, schedule)))

    async def opt_out(self, user: UserRef) -> Reply:
        key = keys.schedule_key(user)
        await self._redis.zrem(keys.DUE, keys.member(user))
        if await self._redis.exists(key):
            await self._redis.hset(key, "on", "0")
        await self.catalog.count("opted_out")
        log.info("checkins off user=%s", user.log_id)
        return Reply(ReplyKind.NOTICE, line("opted_out"))

    async def pause(self, user: UserRef, days: float) -> Reply:
        current, campaigns, _ = await self._snapshot(user)
        if not current.opted_in or current.schedule is None:
            return self._not_opted_in()
        days = max(0.0, min(float(days), 365.0))
        until = self.clock.now() + days * 86400
        schedule = current.schedule.with_changes(paused_until=until)
        await self._save(user, schedule, campaigns, event="paused")
        return Reply(ReplyKind.NOTICE, line("paused", until=_local(until, schedule.timezone, "%A %d %B")))

    async def resume(self, user: UserRef) -> Reply:
        current, campaigns, _ = await self._snapshot(user)
        if not current.opted_in or current.schedule is None:
            return self._not_opted_in()
        schedule = current.schedule.with_changes(paused_until=0.0)
        next_at = await self._save(user, schedule, campaigns)
        return Reply(ReplyKind.NOTICE, line("resumed", next=self._when(next_at, schedule)))

    async def describe(self, user: UserRef) -> Reply:
        """What /checkin shows: the schedule and the next check-in, or an offer to switch on."""
        current = await self.status(user)
        if not current.opted_in or current.schedule is None:
            return self._not_opted_in()
        s = current.schedule
        quiet = line("status_quiet", quiet=str(s.quiet)) if s.quiet else ""
        paused = (line("status_paused", until=_local(s.paused_until, s.timezone, "%A %d %B"))
                  if s.paused_until > self.clock.now() else "")
        return Reply(ReplyKind.NOTICE, line("status", times=_times(s), days=describe_days(s.days),
                                            timezone=s.timezone, quiet=quiet, paused=paused,
                                            next=self._when(current.next_at, s)),
                     (Button(button_label("pause_week"), "checkin:pause:7"),
                      Button(button_label("stop"), "checkin:stop")))

    async def note_chat(self, user: UserRef) -> None:
        """Record that the user just talked with Haven (for "skip if we talked in the last few hours")."""
        await self._note_chat(keys=[keys.schedule_key(user)], args=[f"{self.clock.now():.0f}"])

    def note_chat_along(self, user: UserRef) -> AlongRead[None]:
        """`note_chat`, sent in the same round trip as the message's context read (see `AlongRead`). Trouble is
        logged, never raised: a check-in hint must never cost the user their reply."""
        key, now = keys.schedule_key(user), f"{self.clock.now():.0f}"

        def answer(replies: list[Any]) -> None:
            if isinstance(replies[0], StoreError):
                log.warning("check-in chat note failed user=%s error=%s", user.log_id, type(replies[0]).__name__)

        return AlongRead(lambda pipe: pipe.eval(_NOTE_CHAT, 1, key, now), answer)

    async def forget_user(self, user: UserRef) -> int:
        """Remove the user from the global due index and delete their check-in and mood keys.

        The context store's forget deletes every key under the user's prefix; this removes what lives outside it.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.DUE, keys.member(user))
            pipe.delete(keys.schedule_key(user), keys.moods_key(user))
            removed, deleted = await pipe.execute()
        return int(removed) + int(deleted)

    async def _save(self, user: UserRef, schedule: CheckinSchedule, campaigns: list[Slot], *,
                    event: str | None = None) -> float | None:
        now = self.clock.now()
        firing = next_fire(schedule, now, campaigns)
        fields = schedule.to_fields() | {"on": "1"}
        if event == "opted_in":
            fields["opted_in_at"] = f"{now:.0f}"
        async with self._redis.pipeline(transaction=True) as pipe:
            if event:
                pipe.hincrby(keys.STATS, event, 1)
            pipe.hset(keys.schedule_key(user), mapping=fields)
            if firing is None:
                pipe.zrem(keys.DUE, keys.member(user))
            else:
                pipe.zadd(keys.DUE, {keys.member(user): int(firing.at)})
            await pipe.execute()
        return firing.at if firing else None

    @staticmethod
    def _apply(schedule: CheckinSchedule, *, times: str | Sequence[str] | None, days: str | None,
               quiet_hours: str | None, skip_if_chatted_hours: float | None) -> CheckinSchedule:
        if times is not None:
            schedule = schedule.with_changes(times=parse_times(times))
        if days is not None:
            schedule = schedule.with_changes(days=parse_days(days))
        if quiet_hours is not None:
            schedule = schedule.with_changes(quiet=parse_quiet_hours(quiet_hours))
        if skip_if_chatted_hours is not None:
            schedule = schedule.with_changes(skip_if_chatted_hours=max(0.0, min(float(skip_if_chatted_hours), 48)))
        return schedule

    async def _profile_timezone(self, user: UserRef) -> str | None:
        if self.store is None:
            return None
        try:
            profile = await self.store.load_profile(user)
        except Exception:
            return None
        return resolve_timezone(profile.timezone) if profile.timezone else None

    def _ask_timezone(self, typed: str | None) -> Reply:
        words = line("timezone_unknown", text=typed.strip()[:40]) if typed else line("ask_timezone")
        return Reply(ReplyKind.NOTICE, words,
                     tuple(Button(zone.rsplit("/", 1)[-1].replace("_", " "), f"checkin:tz:{zone}")
                           for zone in COMMON_TIMEZONES))

    def _not_opted_in(self) -> Reply:
        return Reply(ReplyKind.NOTICE, line("not_opted_in"), (Button("Yes, check in", "checkin:on"),))

    def _when(self, at: float | None, schedule: CheckinSchedule) -> str:
        return "none planned" if at is None else _local(at, schedule.timezone, "%A %d %B, %H:%M")

    # ---- buttons coming back ---------------------------------------------------------------------------

    async def handle_action(self, user: UserRef, action: str, *, locale: str | None = None) -> Reply | None:
        """A button's action from `checkin_buttons()` and the replies here; None if it is not ours."""
        kind, _, rest = action.partition(":")
        if kind == "mood" and rest.isdigit():
            return await self.record_mood(user, int(rest), source="checkin", locale=locale)
        if kind == "feel" and rest:
            return await self.add_to_latest(user, feelings=(rest,), locale=locale)
        if kind != "checkin":
            return None
        if rest == "on":
            return await self.opt_in(user)
        if rest == "stop":
            return await self.opt_out(user)
        if rest.startswith("pause:") and rest[6:].isdigit():
            return await self.pause(user, int(rest[6:]))
        if rest == "resume":
            return await self.resume(user)
        if rest.startswith("tz:"):
            return await self.update(user, timezone=rest[3:])
        if rest == "talk":
            return Reply(ReplyKind.NOTICE, line("talk_prompt"))
        if rest == "skip":
            return Reply(ReplyKind.NOTICE, line("skip_ack"))
        if rest == "resources":
            return Reply(ReplyKind.NOTICE, crisis_reply(await self._country(user), locale))
        return None

    # ---- moods -----------------------------------------------------------------------------------------

    async def record_mood(self, user: UserRef, score: int, feelings: Sequence[str] = (), note: str | None = None,
                          *, source: str = "mood", locale: str | None = None) -> Reply:
        """Store a mood entry. A crisis in the note gets the crisis reply; a low score, a gentle follow-up."""
        if not MOOD_MIN <= score <= MOOD_MAX:
            return Reply(ReplyKind.NOTICE, line("bad_input", problem="a mood is a number from 1 to 5"))
        now = self.clock.now()
        note_text = " ".join((note or "").split())[:MAX_NOTE_CHARS]
        entry = MoodEntry(now, score, clean_feelings(feelings), note_text, source)
        key = keys.moods_key(user)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {entry.to_json(): now})
            pipe.zremrangebyscore(key, "-inf", now - MOOD_RETENTION_SECONDS)
            pipe.hincrby(keys.STATS, f"moods_{source}", 1)
            await pipe.execute()
        log.info("mood noted user=%s source=%s", user.log_id, source)
        screened = await self._screen(user, note_text, locale)
        if screened is not None:
            return screened
        said = line("mood_saved", score=score_label(score).split(" · ")[-1],
                    feelings_part=line("mood_saved_feelings", feelings=", ".join(entry.feelings))
                    if entry.feelings else "")
        if score <= LOW_MOOD or self._concern(note_text):
            return self._low_follow_up(said)
        return Reply(ReplyKind.NOTICE, said + " " + line("ask_feelings"), feeling_buttons())

    async def add_to_latest(self, user: UserRef, *, feelings: Sequence[str] = (), note: str | None = None,
                            locale: str | None = None) -> Reply:
        """Add feeling words or a note to the user's latest mood entry (from the last few hours)."""
        key = keys.moods_key(user)
        latest = await self._redis.zrevrange(key, 0, 0, withscores=True)
        now = self.clock.now()
        if not latest or now - float(latest[0][1]) > ATTACH_WINDOW_SECONDS:
            return Reply(ReplyKind.NOTICE, line("mood_none_recent"), checkin_buttons())
        raw, at = latest[0]
        entry = MoodEntry.from_json(raw)
        note_text = " ".join((note or "").split())[:MAX_NOTE_CHARS]
        merged = MoodEntry(entry.at, entry.score, clean_feelings([*entry.feelings, *feelings]),
                           (entry.note + " " + note_text).strip()[:MAX_NOTE_CHARS] if note_text else entry.note,
                           entry.source)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(key, raw)
            pipe.zadd(key, {merged.to_json(): at})
            await pipe.execute()
        screened = await self._screen(user, note_text, locale)
        if screened is not None:
            return screened
        if self._concern(note_text):
            return self._low_follow_up(line("mood_updated"))
        return Reply(ReplyKind.NOTICE, line("mood_updated"))

    async def mood_entries(self, user: UserRef, days: int = 30) -> list[MoodEntry]:
        now = self.clock.now()
        raw = await self._redis.zrangebyscore(keys.moods_key(user), now - days * 86400, now)
        return [MoodEntry.from_json(item) for item in raw]

    async def mood_chart(self, user: UserRef) -> bytes:
        """The last 30 days as a PNG (drawn off the event loop)."""
        import asyncio

        entries = await self.mood_entries(user)
        zone = await self._user_timezone(user)
        return await asyncio.to_thread(render_mood_chart, entries, self.clock.now(), zone)

    async def mood_summary(self, user: UserRef) -> str:
        first, second = mood_summary_lines(await self.mood_entries(user), self.clock.now())
        return f"{first}\n{second}"

    async def _user_timezone(self, user: UserRef) -> str:
        zone = await self._redis.hget(keys.schedule_key(user), "tz")
        return zone or await self._profile_timezone(user) or "UTC"

    async def _country(self, user: UserRef) -> str | None:
        if self.store is None:
            return self.default_country
        try:
            return (await self.store.load_profile(user)).country or self.default_country
        except Exception:
            return self.default_country

    def _concern(self, note: str) -> bool:
        return bool(note) and self.screen.assess(note).level is RiskLevel.CONCERN

    async def _screen(self, user: UserRef, note: str, locale: str | None) -> Reply | None:
        """Crisis language in a note gets the fixed crisis reply, exactly as in a conversation."""
        if not note or self.screen.assess(note).level is not RiskLevel.CRISIS:
            return None
        country = await self._country(user)
        log.warning("crisis reply sent from a mood note user=%s", user.log_id)
        if self.store is not None:
            try:
                if (await self.store.load_profile(user)).consent:
                    await self.store.update_profile(user, last_crisis_at=self.clock.now())
            except Exception:
                log.warning("crisis time not stored user=%s", user.log_id)
        alert_crisis_sent(self.crisis_alert, user.platform, user.log_id, country)
        return Reply(ReplyKind.CRISIS, crisis_reply(country, None if locale is None else locale))

    def _low_follow_up(self, said: str) -> Reply:
        return Reply(ReplyKind.NOTICE, said + "\n\n" + line("low_follow_up"), (
            Button(button_label("talk"), "checkin:talk"),
            Button(button_label("resources"), "checkin:resources"),
            Button(button_label("skip"), "checkin:skip"),
        ))


def _times(schedule: CheckinSchedule) -> str:
    return ", ".join(f"{t:%H:%M}" for t in schedule.times)


def _local(at: float, zone: str, fmt: str) -> str:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(at, ZoneInfo(zone)).strftime(fmt)
