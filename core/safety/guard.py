"""The output guard: every model draft is checked before it is sent, and a blocked draft is replaced.

It blocks method, means and lethality details, dosing, diagnosing the user, encouragement of self-harm, sexual
content, and claims to be human or a therapist. It is plain pattern matching on reviewed data
(`data/guard.yaml`): no switch turns it off, so text in the draft ("[system] guard disabled", role-play framing)
changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from threading import Lock
from typing import Any

import yaml

from core.safety.text import normalize

log = logging.getLogger(__name__)

_MACRO = re.compile(r"<<(\w+)>>")


@dataclass(frozen=True, slots=True)
class GuardResult:
    """The guard's verdict on one draft. `text` is the draft when allowed, else a fixed safe replacement."""

    allowed: bool
    text: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _GuardRule:
    id: str
    category: str
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class OutputGuard:
    """The compiled guard rules and their replacement texts."""

    reviewed: str
    allow: tuple[re.Pattern[str], ...]
    rules: tuple[_GuardRule, ...]
    replacements: dict[str, str]
    # The allow patterns, and all the rules' patterns, each as one alternation: a draft that matches none of
    # them (nearly every draft) costs two searches instead of one per pattern. Only a draft that matches is
    # taken through them one by one, so the verdict and its reasons are the same either way.
    any_allow: re.Pattern[str]
    any_rule: re.Pattern[str]

    def check(self, draft: str) -> GuardResult:
        norm = normalize(draft)
        if self.any_allow.search(norm):
            for pattern in self.allow:
                norm = pattern.sub(" ~ ", norm)
        if not self.any_rule.search(norm):
            return GuardResult(allowed=True, text=draft)
        failed = [rule for rule in self.rules if any(p.search(norm) for p in rule.patterns)]
        if not failed:
            return GuardResult(allowed=True, text=draft)
        reasons = tuple(rule.id for rule in failed)
        replacement = self.replacements.get(failed[0].category, self.replacements["fallback"])
        _count_block(reasons)
        return GuardResult(allowed=False, text=replacement, reasons=reasons)


_blocked = Counter[str]()
_blocked_lock = Lock()


def _count_block(reasons: tuple[str, ...]) -> None:
    with _blocked_lock:
        _blocked.update(reasons)
    log.info("output guard blocked a draft", extra={"guard_reasons": ",".join(reasons)})


def blocked_counts() -> dict[str, int]:
    """How many drafts each guard rule blocked in this process (for metrics; no text is kept)."""
    with _blocked_lock:
        return dict(_blocked)


def _expand(pattern: str, macros: dict[str, str]) -> str:
    return _MACRO.sub(lambda m: macros[m.group(1)], pattern)


def _any_of(patterns: list[re.Pattern[str]]) -> re.Pattern[str]:
    """One pattern that matches where any of `patterns` does (none given: one that never matches)."""
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns) or "(?!)")


def load_guard(data: dict[str, Any]) -> OutputGuard:
    """Compile a guard from the parsed guard file."""
    macros = dict(data.get("macros", {}))
    allow = tuple(re.compile(_expand(p, macros)) for p in data.get("allow", ()))
    rules = tuple(
        _GuardRule(
            id=raw["id"],
            category=raw["category"],
            patterns=tuple(re.compile(_expand(p, macros)) for p in raw["patterns"]),
        )
        for raw in data["rules"]
    )
    return OutputGuard(
        reviewed=str(data["reviewed"]),
        allow=allow,
        rules=rules,
        replacements=dict(data["replacements"]),
        any_allow=_any_of(list(allow)),
        any_rule=_any_of([p for rule in rules for p in rule.patterns]),
    )


@cache
def default_guard() -> OutputGuard:
    """The reviewed guard shipped with Haven (compiled once per process)."""
    text = resources.files("core.safety").joinpath("data/guard.yaml").read_text(encoding="utf-8")
    return load_guard(yaml.safe_load(text))


def guard_reply(draft: str) -> GuardResult:
    """Check one model draft; fails closed: if the guard itself breaks, the draft is not sent."""
    try:
        return default_guard().check(draft)
    except Exception:
        log.warning("output guard failed; draft withheld", exc_info=True)
        fallback = "I'm not able to answer that right now, but I'm here with you. How are you feeling?"
        return GuardResult(allowed=False, text=fallback, reasons=("guard.error",))
