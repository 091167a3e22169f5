"""Where check-ins and moods live in Redis.

Per-user data sits under the user's prefix (`haven:{platform:id}:`), so /forget and /export cover it:

    checkins            hash: the schedule (tz, times, days, quiet, paused_until, skip_h, campaigns), next, rot,
                        last_chat_at, opted_in_at
    checkin:sent:<ts>   string: the idempotency key of one slot ("claimed" → "delivered"/"skipped"), 3-day TTL
    moods               sorted set: mood entries (JSON) scored by time

Global keys share the `{checkins}` hash tag (one cluster slot, so the scheduler's script can touch them together)
and never hold anything a user said:

    due                 sorted set: member "platform:user_id", score = next firing (unix seconds)
    outbox:<platform>   stream: jobs for that platform's delivery workers (user, slot); deleted once handled
    leader              string: the scheduler leader's token, with a TTL
    rate:<platform>     hash: the shared token bucket; rate:chat:<platform:id> a 1-s per-chat marker
    templates           hash id → text;  templates:next  counter for ids
    campaigns           hash id → JSON (text, time, days)
    defaults            hash: default times/days for a new opt-in
    stats               hash: counters only (sent, delivered, blocked, skipped_*, moods_logged…)
"""

from __future__ import annotations

from core.store.redis_store import user_prefix
from core.types import UserRef

GLOBAL = "haven:{checkins}:"
DUE = GLOBAL + "due"
LEADER = GLOBAL + "leader"
TEMPLATES = GLOBAL + "templates"
TEMPLATE_IDS = GLOBAL + "templates:next"
CAMPAIGNS = GLOBAL + "campaigns"
DEFAULTS = GLOBAL + "defaults"
STATS = GLOBAL + "stats"
DELIVERY_GROUP = "delivery"


def outbox(platform: str) -> str:
    return f"{GLOBAL}outbox:{platform}"


def rate_bucket(platform: str) -> str:
    return f"{GLOBAL}rate:{platform}"


def rate_chat(user: UserRef) -> str:
    return f"{GLOBAL}rate:chat:{user.platform}:{user.user_id}"


def member(user: UserRef) -> str:
    return f"{user.platform}:{user.user_id}"


def user_of(member_name: str) -> UserRef:
    platform, _, user_id = member_name.partition(":")
    return UserRef(platform, user_id)


def schedule_key(user: UserRef) -> str:
    return user_prefix(user) + "checkins"


def moods_key(user: UserRef) -> str:
    return user_prefix(user) + "moods"


def sent_key(user: UserRef, slot_at: float) -> str:
    return user_prefix(user) + f"checkin:sent:{int(slot_at)}"
