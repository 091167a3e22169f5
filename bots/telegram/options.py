"""Tuning knobs of the Telegram adapter that are not deployment settings: defaults follow Telegram's limits;
tests shorten the waits."""

from __future__ import annotations

from dataclasses import dataclass

from bots.rendering import STREAM_EDIT_INTERVAL_SECONDS
from bots.telegram.dedupe import UPDATE_CLAIM_TTL_SECONDS
from bots.telegram.render import TYPING_DELAY_SECONDS, TYPING_REFRESH_SECONDS


@dataclass(frozen=True, slots=True)
class TelegramOptions:
    # At most one edit of a streaming message per interval (Telegram allows about one per second per chat).
    edit_interval_seconds: float = STREAM_EDIT_INTERVAL_SECONDS
    typing_refresh_seconds: float = TYPING_REFRESH_SECONDS
    typing_delay_seconds: float = TYPING_DELAY_SECONDS
    # RetryAfter (429): wait as long as Telegram says, then send again, up to this many times per request.
    flood_retries: int = 5
    # 5xx and refused connections: retry with exponential back-off, a bounded number of times.
    server_error_retries: int = 3
    server_error_backoff_seconds: float = 0.5
    # Updates processed at once (different users; one user's updates run in order). Kept well under redis-py's
    # async pool cap of 100 connections: measured, 256 at once made Redis calls fail with "Too many connections"
    # during a burst of 200 users, and those users lost their welcome and their memory for that turn.
    max_concurrent_updates: int = 48
    update_claim_ttl_seconds: int = UPDATE_CLAIM_TTL_SECONDS
    # Long-poll wait for getUpdates.
    poll_timeout_seconds: int = 30
    # The check-in delivery worker's longest wait for new jobs; a shutdown waits at most about this long for it.
    checkin_poll_seconds: float = 2.0
