"""A user's check-in schedule and the pure arithmetic of when it next fires, in the user's own time zone.

Times are wall-clock times in an IANA zone (zoneinfo), so 09:00 Europe/London stays 09:00 local across DST.
A local time that does not exist on a spring-forward day fires at the shifted instant (PEP 495, fold=0: 01:30
becomes 02:30 summer time); a time that happens twice on a fall-back day fires once, at its first occurrence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVERY_DAY = frozenset(range(7))
# How far ahead next_fire looks before giving up (a schedule whose every time sits in quiet hours never fires).
_SEARCH_DAYS = 400
_TIME = re.compile(r"^\s*([01]?\d|2[0-3])[:.h]?([0-5]\d)?\s*$")


class ScheduleError(ValueError):
    """A time, day list, quiet-hours window or time zone that cannot be understood."""


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily local window in which nothing is sent; it may cross midnight (22:00–07:00)."""

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Slot:
    """A recurring local time on some weekdays; `campaign` names the admin campaign it belongs to, if any."""

    at: time
    days: frozenset[int] = EVERY_DAY
    campaign: str = ""


@dataclass(frozen=True, slots=True)
class CheckinSchedule:
    """What a user chose. Stored as a small Redis hash under the user's prefix (see `to_fields`)."""

    timezone: str = "UTC"
    times: tuple[time, ...] = (time(9, 0),)
    days: frozenset[int] = EVERY_DAY
    quiet: QuietHours | None = None
    paused_until: float = 0.0
    skip_if_chatted_hours: float = 3.0
    campaigns: bool = True  # receive admin campaigns (e.g. the weekly reflection)
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def slots(self) -> list[Slot]:
        return [Slot(at, self.days) for at in self.times]

    def to_fields(self) -> dict[str, str]:
        return {
            "tz": self.timezone,
            "times": ",".join(f"{t:%H:%M}" for t in self.times),
            "days": "".join(str(d) for d in sorted(self.days)),
            "quiet": str(self.quiet) if self.quiet else "",
            "paused_until": _num(self.paused_until),
            "skip_h": _num(self.skip_if_chatted_hours),
            "campaigns": "1" if self.campaigns else "0",
        }

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> CheckinSchedule:
        return cls(
            timezone=raw.get("tz") or "UTC",
            times=parse_times(raw.get("times") or "09:00"),
            days=frozenset(int(c) for c in raw.get("days", "0123456") if c.isdigit()) or EVERY_DAY,
            quiet=parse_quiet_hours(raw["quiet"]) if raw.get("quiet") else None,
            paused_until=float(raw.get("paused_until") or 0),
            skip_if_chatted_hours=float(raw.get("skip_h") or 0),
            campaigns=raw.get("campaigns", "1") == "1",
        )

    def with_changes(self, **changes: object) -> CheckinSchedule:
        return replace(self, **changes)  # type: ignore[arg-type]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


# ---- parsing what people type ----------------------------------------------------------------------------

def parse_time(text: str) -> time:
    """"9", "09:00", "9.30", "18h15" → a time; raises ScheduleError."""
    match = _TIME.match(text)
    if not match:
        raise ScheduleError(f"not a time of day: {text.strip()[:16]!r} (try 09:00)")
    return time(int(match.group(1)), int(match.group(2) or 0))


def parse_times(text: str | Iterable[str]) -> tuple[time, ...]:
    parts = re.split(r"[,\s]+", text.strip()) if isinstance(text, str) else list(text)
    found = sorted({parse_time(p) for p in parts if p.strip()})
    if not found:
        raise ScheduleError("no time given (try 09:00 or 09:00,18:00)")
    if len(found) > 6:
        raise ScheduleError("at most six check-ins a day")
    return tuple(found)


def parse_days(text: str) -> frozenset[int]:
    """"every day", "weekdays", "weekends", "mon,wed,fri", "mon-fri" → weekday numbers (Monday = 0)."""
    words = text.strip().lower()
    if words in {"", "daily", "every day", "everyday", "all"}:
        return EVERY_DAY
    if words in {"weekdays", "workdays"}:
        return frozenset(range(5))
    if words in {"weekends", "weekend"}:
        return frozenset({5, 6})
    days: set[int] = set()
    for part in re.split(r"[,\s]+", words):
        if not part:
            continue
        first, _, last = part.partition("-")
        start = _day(first)
        end = _day(last) if last else start
        day = start
        while True:
            days.add(day)
            if day == end:
                break
            day = (day + 1) % 7
    return frozenset(days)


def _day(word: str) -> int:
    key = word.strip()[:3]
    if key not in DAY_NAMES:
        raise ScheduleError(f"not a day: {word[:12]!r} (try mon,wed,fri or weekdays)")
    return DAY_NAMES.index(key)


def parse_quiet_hours(text: str) -> QuietHours | None:
    """"22:00-07:00" → QuietHours; "" or "off" → None."""
    words = text.strip().lower()
    if words in {"", "off", "none", "no"}:
        return None
    start, sep, end = words.replace("–", "-").partition("-")
    if not sep:
        raise ScheduleError("quiet hours look like 22:00-07:00")
    return QuietHours(parse_time(start), parse_time(end))


def _fold_name(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[\s_\-']+", "", plain).lower()


@cache
def _zone_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for name in sorted(available_timezones()):
        if name.startswith(("Etc/", "SystemV/")) or "/" not in name:
            continue
        lookup.setdefault(_fold_name(name.rsplit("/", 1)[-1]), name)
        lookup.setdefault(_fold_name(name), name)
    # Cities people name that are not zone names.
    for city, zone in {"delhi": "Asia/Kolkata", "newdelhi": "Asia/Kolkata", "mumbai": "Asia/Kolkata",
                       "bangalore": "Asia/Kolkata", "bengaluru": "Asia/Kolkata", "rio": "America/Sao_Paulo",
                       "riodejaneiro": "America/Sao_Paulo", "sanfrancisco": "America/Los_Angeles",
                       "seattle": "America/Los_Angeles", "boston": "America/New_York",
                       "washington": "America/New_York", "edinburgh": "Europe/London",
                       "manchester": "Europe/London", "cork": "Europe/Dublin", "beijing": "Asia/Shanghai",
                       "sydneyaustralia": "Australia/Sydney", "melbourneaustralia": "Australia/Melbourne"}.items():
        lookup.setdefault(city, zone)
    return lookup


def resolve_timezone(text: str) -> str | None:
    """An IANA zone from what a user typed: "Europe/London", "london", "São Paulo", "Kolkata"; None if unknown."""
    words = text.strip()
    if not words:
        return None
    if words.upper() in {"UTC", "GMT"}:
        return "UTC"
    try:
        ZoneInfo(words)
    except (ZoneInfoNotFoundError, ValueError):
        return _zone_lookup().get(_fold_name(words))
    return words if "/" in words or words == "UTC" else _zone_lookup().get(_fold_name(words), words)


# Offered as buttons when a user is asked where they are (one per common region).
COMMON_TIMEZONES = ("Europe/London", "Europe/Berlin", "America/New_York", "America/Chicago",
                    "America/Los_Angeles", "America/Sao_Paulo", "Asia/Kolkata", "Asia/Singapore",
                    "Australia/Sydney", "Africa/Lagos")


# ---- when it next fires --------------------------------------------------------------------------------

def local_instant(day: date, at: time, zone: ZoneInfo) -> float:
    """Unix time of wall-clock `at` on `day` in `zone` (fold=0: first occurrence; a gap shifts forward)."""
    return datetime.combine(day, at, tzinfo=zone).timestamp()


@dataclass(frozen=True, slots=True)
class Firing:
    at: float  # unix seconds
    campaign: str = ""


def next_fire(schedule: CheckinSchedule, after: float, campaigns: Sequence[Slot] = ()) -> Firing | None:
    """The first firing strictly after `after` (unix seconds), honouring days, quiet hours and a pause.

    Campaign slots (admin-wide, in each user's local time) join the user's own unless they opted out of them;
    where a campaign and an own slot coincide, the campaign wins and only one check-in goes out.
    """
    zone = schedule.zone
    not_before = max(after, schedule.paused_until - 1e-6)
    slots = schedule.slots() + (list(campaigns) if schedule.campaigns else [])
    if not slots:
        return None
    start_day = datetime.fromtimestamp(not_before, zone).date() - timedelta(days=1)
    for offset in range(_SEARCH_DAYS):
        day = start_day + timedelta(days=offset)
        best: Firing | None = None
        for slot in slots:
            if day.weekday() not in slot.days:
                continue
            if schedule.quiet is not None and schedule.quiet.contains(slot.at):
                continue
            instant = local_instant(day, slot.at, zone)
            if instant <= not_before:
                continue
            if best is None or instant < best.at or (instant == best.at and slot.campaign and not best.campaign):
                best = Firing(instant, slot.campaign)
        if best is not None:
            return best
    return None


def describe_days(days: frozenset[int]) -> str:
    if days == EVERY_DAY:
        return "every day"
    if days == frozenset(range(5)):
        return "weekdays"
    if days == frozenset({5, 6}):
        return "weekends"
    return ", ".join(DAY_NAMES[d].capitalize() for d in sorted(days))
