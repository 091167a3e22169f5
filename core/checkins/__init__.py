"""Scheduled check-ins and mood tracking: opt-in, in the user's own time zone, never twice, never lost.

    CheckinService      the user's side (opt in/out, times, pause, moods, chart, summary); adapters call it
    CheckinScheduler    the leader's tick (APScheduler 3.11 + a Redis lock): who is due → the outbox
    CheckinDelivery     a per-platform worker: outbox → Notifier, with SET NX per (user, slot) and a shared limit
    Catalog             admin data: templates in rotation, campaigns, default times, counters (counts only)
    Notifier            the protocol each adapter implements: send_checkin(user, text, buttons) -> DeliveryResult

Key layout: core/checkins/keys.py. Knobs: core/checkins/config.py.
"""

from core.checkins.catalog import Campaign, Catalog
from core.checkins.config import CheckinConfig
from core.checkins.delivery import CheckinDelivery, DeliveryOutcome, DeliveryResult, Notifier, SharedRateLimit
from core.checkins.mood import MoodEntry, mood_summary_lines, render_mood_chart
from core.checkins.schedule import (
    COMMON_TIMEZONES,
    CheckinSchedule,
    QuietHours,
    ScheduleError,
    next_fire,
    resolve_timezone,
)
from core.checkins.scheduler import CheckinScheduler, LeaderLock, TickReport
from core.checkins.service import CheckinService, checkin_buttons, feeling_buttons

__all__ = [
    "COMMON_TIMEZONES",
    "Campaign",
    "Catalog",
    "CheckinConfig",
    "CheckinDelivery",
    "CheckinSchedule",
    "CheckinScheduler",
    "CheckinService",
    "DeliveryOutcome",
    "DeliveryResult",
    "LeaderLock",
    "MoodEntry",
    "Notifier",
    "QuietHours",
    "ScheduleError",
    "SharedRateLimit",
    "TickReport",
    "checkin_buttons",
    "feeling_buttons",
    "mood_summary_lines",
    "next_fire",
    "render_mood_chart",
    "resolve_timezone",
]
