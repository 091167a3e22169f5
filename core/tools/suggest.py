"""Offering an exercise: a fixed rule on the person's own words (never the model's judgement), and the offer a
check-in makes after a low mood."""

from __future__ import annotations

import re
from functools import cache

from core.tools.texts import label, line, tool_data
from core.types import Button, Reply, ReplyKind

_ENTRY_ACTIONS = {"breathe": "tool:breathe", "ground": "tool:ground", "reframe": "tool:reframe"}


@cache
def _patterns() -> dict[str, re.Pattern[str]]:
    words = tool_data("exercises")["suggest"]
    return {tool: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in phrases) + r")\b", re.IGNORECASE)
            for tool, phrases in words.items()}


def exercise_buttons_for(words: str) -> tuple[Button, ...]:
    """The exercise buttons that fit a message: breathing for panic and a racing body, grounding for feeling
    overwhelmed or unreal; nothing for anything else."""
    plain = words.replace("’", "'")
    return tuple(Button(label(tool), _ENTRY_ACTIONS[tool]) for tool, pattern in _patterns().items()
                 if pattern.search(plain))


def suggest_exercise(*, low_mood: bool = False) -> Reply:
    """An offer of the three exercises, with buttons every adapter routes to the tools (actions `tool:…`).
    Check-ins call this after a low mood (`low_mood=True` words it for that moment)."""
    return Reply(ReplyKind.NOTICE, line("offer_low_mood" if low_mood else "offer"), tuple(
        Button(label(tool), action) for tool, action in _ENTRY_ACTIONS.items()))
