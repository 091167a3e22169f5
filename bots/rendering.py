"""Rendering rules every chat adapter shares: where to split long replies and how often to edit a message
while a reply streams. Platform-specific escaping lives with each adapter; the rules live here."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

TELEGRAM_MAX_CHARS = 4096
DISCORD_MAX_CHARS = 2000

# Telegram allows about one message (or edit) per second in a chat; Discord's edit bucket is similar.
STREAM_EDIT_INTERVAL_SECONDS = 1.2

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_message(text: str, limit: int) -> list[str]:
    """Split `text` into pieces of at most `limit` characters, preferring paragraph breaks, then line
    breaks, then sentence ends, then spaces; a single unbroken run longer than `limit` is cut hard.
    Joining the pieces gives back the text apart from the whitespace at the cuts."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = _last_break(window, limit)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _last_break(window: str, limit: int) -> int:
    floor = limit // 3  # never cut so early that the pieces become tiny
    for pattern in ("\n\n", "\n"):
        at = window.rfind(pattern, floor, limit)
        if at > 0:
            return at + len(pattern)
    sentence_cuts = [m.end() for m in _SENTENCE_END.finditer(window) if floor < m.end() <= limit]
    if sentence_cuts:
        return sentence_cuts[-1]
    at = window.rfind(" ", floor, limit)
    return at + 1 if at > 0 else limit


class EditThrottle:
    """Decides when a streaming message may be edited again: at most once per interval, and only when the
    text changed."""

    def __init__(self, interval_seconds: float = STREAM_EDIT_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._last_at: float | None = None
        self._last_text = ""

    def ready(self, text: str) -> bool:
        if text == self._last_text:
            return False
        now = self.clock()
        return self._last_at is None or now - self._last_at >= self.interval_seconds

    def mark(self, text: str) -> None:
        self._last_at = self.clock()
        self._last_text = text
