"""/checkin, /mood and check-in buttons, the same for every adapter: what the person typed (or tapped) becomes
calls on the core's `CheckinService`, and the answer comes back as core `Reply`s for the adapter to render.

Only the command syntax lives here ("on 09:00 weekdays London", "pause 7", "2 tired - a rough day"); what a
schedule or a mood means is the core's business. A low mood is followed by the offer of an exercise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.checkins import CheckinService, checkin_buttons
from core.checkins.admin import admin_command
from core.checkins.mood import parse_mood_command
from core.checkins.service import LOW_MOOD
from core.texts import load_yaml_mapping
from core.tools import suggest_exercise
from core.types import Reply, ReplyKind, UserRef

log = logging.getLogger(__name__)

CHECKIN_ACTION_PREFIXES = ("mood:", "feel:", "checkin:")
ADMIN_COMMAND = "checkins_admin"

_TIME = re.compile(r"^(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm)?$")
_DAY_WORDS = frozenset({"mon", "monday", "tue", "tues", "tuesday", "wed", "wednesday", "thu", "thur", "thurs",
                        "thursday", "fri", "friday", "sat", "saturday", "sun", "sunday"})
_DAY_PHRASES = frozenset({"daily", "everyday", "all", "weekdays", "workdays", "weekends", "weekend"})


def _lines() -> dict[str, Any]:
    return load_yaml_mapping("bots", "checkin_lines.yaml")


def checkin_line(key: str, **values: str) -> str:
    value = str(_lines()[key])
    return value.format(**values) if values else value


def is_checkin_action(action: str) -> bool:
    return action.startswith(CHECKIN_ACTION_PREFIXES)


@dataclass(frozen=True, slots=True)
class MoodAnswer:
    """What /mood shows: the chart (PNG) when asked for one, then the replies in order."""

    replies: tuple[Reply, ...]
    chart_png: bytes | None = None


# ---- /checkin -----------------------------------------------------------------------------------------------

async def checkin_command(service: CheckinService, user: UserRef, arg: str) -> Reply:
    """Everything after /checkin. Forgiving: "on", "start", "yes" all switch on; case and commas don't matter."""
    words = arg.split()
    verb = words[0].lower() if words else ""
    rest = words[1:]
    if verb in {"", "status", "show"}:
        return await service.describe(user)
    if verb in {"on", "start", "yes", "enable"}:
        times, days, zone = split_schedule_words(rest)
        return await service.opt_in(user, times=times, days=days, timezone=zone)
    if verb in {"off", "stop", "no", "disable"}:
        return await service.opt_out(user)
    if verb in {"pause", "break"}:
        count = rest[0].lower().removesuffix("d").removesuffix("days") if rest else "7"
        if not count.isdigit() or not 1 <= int(count) <= 365:
            return _notice(checkin_line("pause_usage"))
        return await service.pause(user, int(count))
    if verb in {"resume", "unpause", "continue"}:
        return await service.resume(user)
    if verb in {"zone", "timezone", "tz", "city"} and rest:
        return await service.update(user, timezone=" ".join(rest))
    if verb in {"times", "time", "at"} and rest:
        return await service.update(user, times=_times(rest))
    if verb in {"days", "day"} and rest:
        return await service.update(user, days=" ".join(rest))
    if verb in {"quiet", "quiet_hours"} and rest:
        return await service.update(user, quiet_hours=" ".join(rest))
    return _notice(checkin_line("checkin_usage"))


def split_schedule_words(words: Iterable[str]) -> tuple[str | None, str | None, str | None]:
    """"09:00,6pm weekdays New York" → ("09:00,18:00", "weekdays", "New York"): times, days and the city or zone
    in any order; None for what was not given. Words that are neither a time nor days are the place."""
    times: list[str] = []
    days: list[str] = []
    place: list[str] = []
    for word in words:
        parts = [p for p in re.split(r"[,;]", word.lower()) if p]
        if parts and all(_TIME.match(p) for p in parts):
            times.extend(parts)
        elif _is_days(word.lower(), parts, days):
            days.append(word.lower())
        else:
            place.append(word)
    return (_times(times) if times else None, " ".join(days).replace(" ", ",").replace("every,day", "daily")
            if days else None, " ".join(place) or None)


def _is_days(word: str, parts: list[str], before: list[str]) -> bool:
    if word in _DAY_PHRASES or word == "every" or (word == "day" and before[-1:] == ["every"]):
        return True
    # Whole day names only: "Montreal" or "Sunderland" is a place, not Monday or Sunday.
    return bool(parts) and all(all(d in _DAY_WORDS for d in p.split("-")) for p in parts)


def _times(words: Iterable[str]) -> str:
    """"9am", "6:30pm", "18h" → "09:00", "18:30", "18"; anything else is passed on for the core to judge."""
    out = []
    for word in (p for w in words for p in re.split(r"[,;]", w.lower()) if p):
        match = _TIME.match(word)
        if match and match.group(3):
            hour = int(match.group(1)) % 12 + (12 if match.group(3) == "pm" else 0)
            out.append(f"{hour:02d}:{match.group(2) or '00'}")
        else:
            out.append(word)
    return ",".join(out)


# ---- /mood ----------------------------------------------------------------------------------------------------

async def mood_command(service: CheckinService, user: UserRef, arg: str, *,
                       locale: str | None = None) -> MoodAnswer:
    """No argument: the chart and the summary, with the 1–5 buttons. "2 tired - a rough day": note it."""
    if not arg.strip():
        chart = await service.mood_chart(user)
        summary = await service.mood_summary(user)
        return MoodAnswer((Reply(ReplyKind.NOTICE, summary),
                           Reply(ReplyKind.NOTICE, checkin_line("mood_ask"), checkin_buttons())), chart)
    parsed = parse_mood_command(arg)
    if parsed is None:
        return MoodAnswer((Reply(ReplyKind.NOTICE, checkin_line("mood_usage"), checkin_buttons()),))
    score, feelings, note = parsed
    reply = await service.record_mood(user, score, feelings, note or None, locale=locale)
    return MoodAnswer(_with_low_mood_offer(reply, score))


async def checkin_action(service: CheckinService, user: UserRef, action: str, *,
                         locale: str | None = None) -> tuple[Reply, ...] | None:
    """A pressed `mood:`, `feel:` or `checkin:` button; None when the core does not know the action."""
    reply = await service.handle_action(user, action, locale=locale)
    if reply is None:
        return None
    kind, _, value = action.partition(":")
    return _with_low_mood_offer(reply, int(value) if kind == "mood" and value.isdigit() else None)


def _with_low_mood_offer(reply: Reply, score: int | None) -> tuple[Reply, ...]:
    # The core answers a low mood with a few kind words and a way to talk; an exercise is one more small step.
    # Never after a crisis reply: that one stands alone.
    if score is not None and score <= LOW_MOOD and reply.kind is not ReplyKind.CRISIS:
        return reply, suggest_exercise(low_mood=True)
    return (reply,)


# ---- admins ---------------------------------------------------------------------------------------------------

async def checkins_admin(client: Any, user: UserRef, admins: Iterable[tuple[str, str]], arg: str) -> Reply:
    """`/checkins_admin …` (counts only); anyone not listed in settings gets a kind no from the core."""
    reply = await admin_command(client, user, admins, arg)
    topic = (arg.split() or ["-"])[0].lower()
    log.info("checkins admin command user=%s topic=%s", user.log_id,
             topic if topic in {"stats", "templates", "campaigns"} else "other")
    return reply


def _notice(words: str) -> Reply:
    return Reply(ReplyKind.NOTICE, words)
