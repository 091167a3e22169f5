"""The small flow engine under the coping tools: which tool a user is in the middle of, kept in Redis.

While a flow is active, the user's next plain message (after the safety screen) goes to that flow instead of
the language model. The pointer has a sliding TTL: someone who wanders off and comes back tomorrow is talking
to Haven again, not answering a form. What a flow has collected lives in the tool's own key (the safety plan
for good, a thought record's draft for some days), so /safetyplan or /reframe picks it up after the TTL.

Keys, all under the user's prefix so /forget and /export cover them:

    tools:flow       string (JSON): the active flow {"tool": ..., "step": ..., "mode": ...}, sliding TTL
    tools:breathing  string: the id of the breathing run in progress (cross-process cancel), TTL
    tools:reframe    hash: a thought record's draft, 7-day TTL
    safety_plan      hash: the plan, one JSON list per step, plus progress and updated_at; no TTL
    journal          hash: entry id → JSON {id, at, date, prompt, text}; no TTL
    journal:seq      string: the last journal entry id
"""

from __future__ import annotations

import json
from typing import Any

from core.store.redis_store import guarded, user_prefix
from core.types import UserRef

# How long an unanswered flow keeps capturing the user's next message.
FLOW_TTL_SECONDS = 30 * 60


def flow_key(user: UserRef) -> str:
    return user_prefix(user) + "tools:flow"


def breathing_key(user: UserRef) -> str:
    return user_prefix(user) + "tools:breathing"


def reframe_key(user: UserRef) -> str:
    return user_prefix(user) + "tools:reframe"


def plan_key(user: UserRef) -> str:
    return user_prefix(user) + "safety_plan"


def journal_key(user: UserRef) -> str:
    return user_prefix(user) + "journal"


def journal_seq_key(user: UserRef) -> str:
    return user_prefix(user) + "journal:seq"


def flow_state(raw: str | None) -> dict[str, Any] | None:
    """The flow pointer as stored, read back (None when there is none, or it is not a flow's state)."""
    if not raw:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    return state if isinstance(state, dict) and "tool" in state else None


class Flows:
    """The active-flow pointer of each user."""

    def __init__(self, client: Any, *, ttl_seconds: int = FLOW_TTL_SECONDS) -> None:
        self.redis = client
        self.ttl_seconds = ttl_seconds

    async def get(self, user: UserRef) -> dict[str, Any] | None:
        return flow_state(await guarded(lambda: self.redis.get(flow_key(user))))

    async def set(self, user: UserRef, **state: Any) -> None:
        await guarded(lambda: self.redis.set(flow_key(user), json.dumps(state), ex=self.ttl_seconds))

    async def clear(self, user: UserRef) -> bool:
        return bool(await guarded(lambda: self.redis.delete(flow_key(user))))
