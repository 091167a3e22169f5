"""Check-in knobs in one frozen value. `from_settings` reads Haven's settings where the lead has added the
`checkin_*` fields (see the wiring notes in core/checkins/__init__.py) and falls back to these defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class CheckinConfig:
    tick_seconds: float = 30.0  # how often the leader looks for due check-ins
    lock_ttl_seconds: float = 90.0  # a dead leader is replaced within this (plus one tick)
    grace_seconds: float = 30 * 60  # a slot later than this (downtime, backlog) is skipped, not sent
    batch_size: int = 500  # due users read and enqueued per Redis round trip
    max_per_tick: int = 50_000  # a tick stops here and the next tick carries on
    rate_per_second: float = 25.0  # all check-ins of one platform together (Telegram allows ~30/s)
    rate_burst: float = 1.0  # tokens the shared bucket may save up; 1 keeps any 1-s window ≤ rate + 1
    per_chat_interval_seconds: float = 1.0  # Telegram: about one message a second per chat
    max_send_attempts: int = 5  # a retry_after answer is waited out and retried this many times
    delivery_batch: int = 50  # jobs a delivery worker reads at once
    reclaim_idle_seconds: float = 120.0  # a job claimed by a worker that went quiet this long is taken over
    sent_key_ttl_seconds: int = 3 * 86400  # how long the per-slot idempotency key lives

    @classmethod
    def from_settings(cls, settings: Any) -> CheckinConfig:
        values = {f.name: getattr(settings, f"checkin_{f.name}") for f in fields(cls)
                  if hasattr(settings, f"checkin_{f.name}")}
        return cls(**values)
