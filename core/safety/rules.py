"""The rules layer of the safety screen: reviewed regex rules from `data/rules.yaml`, applied to normalised text.

Benign spans (idioms, negations) are blanked before risk rules run, so "this exam is killing me" and "I'm not
suicidal" cannot fire. A crisis match is lowered to concern only by the modifiers the data file names: a past,
recovered story; hyperbole about a trivial cause; fiction or news framing (the last two not when the writer says
it is real: "no joke", "its basically me"). Method questions that are harmless
alone ("which bridges are taller than 25 m?") become crisis next to distress in this or recent messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from core.safety.risk import RiskCategory, RiskLevel, max_level
from core.safety.text import normalize

_MACRO = re.compile(r"<<(\w+)>>")
_MASK = " ~ "


# A follow-up answer ("yes", "tonight", "i have pills") is a few words; longer messages are judged on their own.
FOLLOWUP_MAX_WORDS = 12
# How far (in characters of normalised text) either side of a crisis match a trivial cause and a laugh still read as
# hyperbole about it: about a sentence.
HYPERBOLE_REACH = 90


@dataclass(frozen=True, slots=True)
class Rule:
    """One reviewed rule: its id, what kind of signal it gives, and its compiled patterns."""

    id: str
    kind: str  # crisis | concern | method | distress | followup
    categories: frozenset[RiskCategory]
    patterns: tuple[re.Pattern[str], ...]
    past_sensitive: bool = False
    method_strong: bool = False
    # All the patterns as one alternation: whether any matches, in one scan instead of one per pattern (most rules
    # match nothing in most messages; the first pattern that matches, as before, still gives the match).
    any_pattern: re.Pattern[str] | None = None

    def first_match(self, text: str) -> re.Match[str] | None:
        """The match of the first of the rule's patterns that matches `text`, or None."""
        if self.any_pattern is not None and self.any_pattern.search(text) is None:
            return None
        return next((m for p in self.patterns if (m := p.search(text))), None)


# How earlier messages change the reading of a new one: a signal of the new message -> the signals of earlier
# messages that change it. A means question after distress or risk, a short answer after a suicide topic, despair
# after a means question. Any other message reads the same in any context, so the screen can reuse the context-free
# verdict it caches (`reads_in_context`).
CONTEXT_READINGS: dict[str, frozenset[str]] = {
    "method": frozenset({"distress", "risk"}),
    "followup": frozenset({"suicide_topic"}),
    "risk": frozenset({"method"}),
}
# The categories that make a risky message a suicide topic, which a short answer after it is read against.
SUICIDAL = frozenset({RiskCategory.SUICIDE, RiskCategory.SELF_HARM})
# A body in danger: never a figure of speech (the hyperbole modifier leaves it alone) and never a crisis the
# classifier may doubt (RuleVerdict.crisis_from_words): it scored "im stopping eating and drinking completely til i
# just disappear" 0.02.
BODILY = frozenset({RiskCategory.MEDICAL_EMERGENCY, RiskCategory.EATING_DISORDER})
# Rule signals that say the alarming words are not about the writer now: a story, the news, a lesson or someone
# else's care ("framed"); a past told with its recovery, a grief, or an ordinary context such as a medicine question,
# a pet, a game or a kitchen cut ("not_now", see RuleBook._not_now).
NOT_THE_WRITER_NOW = frozenset({"framed", "not_now"})


def reads_in_context(signals: frozenset[str], recent: frozenset[str]) -> bool:
    """Whether a message with `signals` reads differently after earlier messages whose signals are `recent`."""
    return any(CONTEXT_READINGS[signal] & recent for signal in signals & CONTEXT_READINGS.keys())


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """What the rules saw in one message. `signals` lets the escalation step reuse it across turns."""

    level: RiskLevel
    categories: frozenset[RiskCategory]
    reasons: tuple[str, ...]
    masked: bool = False  # a benign span (idiom, negation) was blanked out
    lowered: bool = False  # a crisis match was lowered by a modifier (past, hyperbole, framing)
    # "distress", "method", "followup", "risk", "suicide_topic", "first_person_intent", "framed" (fiction, news, study,
    # helping), "not_now" (see _not_now), "sincere" ("no joke", "i mean it")
    signals: frozenset[str] = field(default_factory=frozenset)
    # The crisis rests only on crisis rules' words in this message: no means named (`method_strong`), no body in
    # danger (BODILY), no means question, nothing read from earlier messages. Only such a crisis may the classifier
    # doubt (assess.fuse).
    crisis_from_words: bool = False


@dataclass(frozen=True, slots=True)
class RuleBook:
    """All rules, loaded once from the reviewed data file."""

    reviewed: str
    benign: tuple[Rule, ...]
    rules: tuple[Rule, ...]
    distance: tuple[re.Pattern[str], ...]
    recovery: tuple[re.Pattern[str], ...]
    present: tuple[re.Pattern[str], ...]
    trivial: re.Pattern[str]
    softener: re.Pattern[str]
    framing: tuple[re.Pattern[str], ...]
    helping: tuple[re.Pattern[str], ...] = ()
    sincere: tuple[re.Pattern[str], ...] = ()
    first_person_intent: tuple[re.Pattern[str], ...] = ()
    ordinary_context: tuple[re.Pattern[str], ...] = ()
    accepted_loss: tuple[re.Pattern[str], ...] = ()

    def assess(self, text: str, recent_signals: Iterable[frozenset[str]] = ()) -> RuleVerdict:
        """Apply the rules to one message; `recent_signals` are the signals of the user's previous messages."""
        norm = normalize(text)
        masked_text, masked = self._mask_benign(norm)
        recent = frozenset().union(*recent_signals) if recent_signals else frozenset()

        level = RiskLevel.NONE
        categories: set[RiskCategory] = set()
        reasons: list[str] = []
        signals: set[str] = set()
        lowered = False
        firm = False  # a crisis from means named, a body in danger, a means question, or earlier messages
        pending_method: list[Rule] = []
        pending_followup: list[Rule] = []

        for rule in self.rules:
            match = rule.first_match(masked_text)
            if match is None:
                continue
            if rule.kind == "distress":
                signals.add("distress")
                continue
            if rule.kind == "method":
                pending_method.append(rule)
                continue
            if rule.kind == "followup":
                pending_followup.append(rule)
                signals.add("followup")
                continue
            rule_level = RiskLevel.CRISIS if rule.kind == "crisis" else RiskLevel.CONCERN
            reason = rule.id
            if rule_level is RiskLevel.CRISIS and not rule.method_strong:
                modifier = self._lowering_modifier(rule, masked_text, match.span())
                if modifier:
                    rule_level, reason, lowered = RiskLevel.CONCERN, f"{rule.id}:{modifier}", True
            level = max_level(level, rule_level)
            firm = firm or (rule_level is RiskLevel.CRISIS and (rule.method_strong or bool(rule.categories & BODILY)))
            categories |= rule.categories
            reasons.append(reason)
            signals.add("risk")
            if rule.categories & SUICIDAL:
                signals.add("suicide_topic")

        if any(p.search(masked_text) for p in self.first_person_intent):
            signals.add("first_person_intent")
        if self._framed(masked_text):
            signals.add("framed")
        if any(p.search(masked_text) for p in self.sincere):
            signals.add("sincere")  # the writer says it is real: never "not now"
        elif self._not_now(masked_text):
            signals.add("not_now")

        for rule in pending_method:
            signals.add("method")
            # A means question next to distress or any risk, now or in the last few messages, is method-seeking.
            context = (signals | recent) & CONTEXT_READINGS["method"]
            if context:
                level, firm = RiskLevel.CRISIS, True
                reasons.append(f"{rule.id}+context")
            else:
                level = max_level(level, RiskLevel.CONCERN)
                reasons.append(rule.id)
            categories |= rule.categories

        # The other way round: a means question a few messages back, then despair ("does the bridge on the A38 have
        # high railings" ... "nobody would notice anyway"). Not when the despair was lowered, or is told as the past,
        # a story or someone else's (framed, not now).
        if (
            "method" in recent
            and level is RiskLevel.CONCERN
            and not lowered
            and categories & SUICIDAL
            and not signals & NOT_THE_WRITER_NOW
        ):
            level, firm = RiskLevel.CRISIS, True
            reasons.append("method.recent+risk")

        # Short answers ("yes", "tonight", "no" to "are you safe?") only count after a risky message, and only
        # when they are short: "Today was a bit better than yesterday" after a lonely message is not a plan.
        # ...and not when the answer itself says things are better now ("today i got engaged" after an old attempt), or
        # asks how to help someone else.
        # The recovery patterns are searched only when a follow-up could count, off the common path.
        answer_counts = (
            bool(pending_followup)
            and "suicide_topic" in recent
            and len(masked_text.split()) <= FOLLOWUP_MAX_WORDS
            and "framed" not in signals  # "what can i say tomorrow to show i care?" about a friend
            and not any(p.search(masked_text) for p in self.recovery)
        )
        for rule in pending_followup:
            if answer_counts and level is not RiskLevel.CRISIS:
                level, firm = RiskLevel.CRISIS, True
                categories |= rule.categories
                reasons.append(f"{rule.id}+recent")
                signals.add("suicide_topic")

        return RuleVerdict(
            level=level,
            categories=frozenset(categories),
            reasons=tuple(dict.fromkeys(reasons)),
            masked=masked,
            lowered=lowered,
            signals=frozenset(signals),
            crisis_from_words=level is RiskLevel.CRISIS and not firm,
        )

    def _mask_benign(self, norm: str) -> tuple[str, bool]:
        masked = False
        for rule in self.benign:
            for pattern in rule.patterns:
                norm, count = pattern.subn(_MASK, norm)
                masked = masked or count > 0
        return norm, masked

    def _framed(self, text: str) -> bool:
        """Told as fiction, news, study or helping someone else, with no word that it is the writer's own and no
        present-time cue: the same test that lowers a rule's crisis match, applied to the whole message."""
        return (
            any(p.search(text) for p in (*self.framing, *self.helping))
            and not any(p.search(text) for p in self.sincere)
            and not any(p.search(text) for p in self.present)
        )

    def _not_now(self, text: str) -> bool:
        """A whole message whose alarming words belong to another time or to someone else: a past told with its
        recovery or a death grieved with acceptance (`accepted_loss`), with no present-time cue; or an ordinary
        context (`ordinary_context`: a medicine question, a pet, a game, a kitchen cut), which carries its own
        exclusions and holds at any time ("can i take ibuprofen tonight with my blood pressure tablets?"). The caller
        has already ruled out a word that it is real. Unlike framing it lowers no rule's match ("my dog died last
        week. i want to kill myself" stays a crisis); it only keeps the classifier's unsure crisis at concern."""
        if any(p.search(text) for p in self.ordinary_context):
            return True
        if any(p.search(text) for p in self.present):
            return False
        told_as_past = any(p.search(text) for p in self.distance) and any(p.search(text) for p in self.recovery)
        return told_as_past or any(p.search(text) for p in self.accepted_loss)

    def _lowering_modifier(self, rule: Rule, text: str, span: tuple[int, int]) -> str | None:
        distance = any(p.search(text) for p in self.distance)
        recovery = any(p.search(text) for p in self.recovery)
        told_as_past = (distance or recovery) if rule.past_sensitive else (distance and recovery)
        if told_as_past and not any(p.search(text) for p in self.present):
            return "past"
        if any(p.search(text) for p in self.sincere):
            # "no joke", "i mean it", "its basically me": the writer says it is real; neither hyperbole nor framing.
            return None
        # Hyperbole hangs on a trivial cause said close to the alarming words: in a long message, "lol" about a
        # chair in maths class does not make "i took all of them" at the end a joke.
        # A body in danger (blacking out after days without food, pills taken) is never a figure of speech.
        near = text[max(0, span[0] - HYPERBOLE_REACH):span[1] + HYPERBOLE_REACH]
        bodily = rule.categories & BODILY
        if not bodily and self.trivial.search(near) and self.softener.search(near):
            return "hyperbole"
        # Framing lowers only a story told without a present-time cue: "watched a film... tonight i will take them
        # all" is about the writer.
        if self._framed(text):
            # Someone else's body in danger now ("my friend just took all her pills, how do i help her?") is an
            # emergency whoever asks; only fiction, news or study framing lowers it.
            if bodily and not any(p.search(text) for p in self.framing):
                return None
            return "framing"
        return None


def _expand(pattern: str, macros: dict[str, str]) -> str:
    # Macros may use other macros; two passes cover the nesting the data file uses.
    for _ in range(3):
        pattern = _MACRO.sub(lambda m: macros[m.group(1)], pattern)
    return pattern


def _compile_all(patterns: Sequence[str], macros: dict[str, str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(_expand(p, macros)) for p in patterns)


def _rule(raw: dict[str, Any], macros: dict[str, str]) -> Rule:
    patterns = _compile_all(raw["patterns"], macros)
    return Rule(
        id=raw["id"],
        kind=raw.get("kind", "benign"),
        categories=frozenset(RiskCategory(c) for c in raw.get("categories", ())),
        patterns=patterns,
        past_sensitive=bool(raw.get("past_sensitive", False)),
        method_strong=bool(raw.get("method_strong", False)),
        any_pattern=re.compile("|".join(f"(?:{p.pattern})" for p in patterns)) if len(patterns) > 1 else None,
    )


def load_rulebook(data: dict[str, Any]) -> RuleBook:
    """Build a RuleBook from the parsed rules file (a dict), compiling every pattern."""
    macros: dict[str, str] = dict(data.get("macros", {}))
    modifiers = data["modifiers"]
    return RuleBook(
        reviewed=str(data["reviewed"]),
        benign=tuple(_rule(r, macros) for r in data["benign"]),
        rules=tuple(_rule(r, macros) for r in data["rules"]),
        distance=_compile_all(modifiers["past"]["distance"], macros),
        recovery=_compile_all(modifiers["past"]["recovery"], macros),
        present=_compile_all(modifiers["past"]["present"], macros),
        trivial=re.compile(_expand(modifiers["hyperbole"]["trivial"], macros)),
        softener=re.compile(_expand(modifiers["hyperbole"]["softener"], macros)),
        framing=_compile_all(modifiers["framing"]["patterns"], macros),
        helping=_compile_all(modifiers.get("helping", {}).get("patterns", ()), macros),
        sincere=_compile_all(modifiers.get("sincere", {}).get("patterns", ()), macros),
        first_person_intent=_compile_all(modifiers.get("first_person_intent", {}).get("patterns", ()), macros),
        ordinary_context=_compile_all(modifiers.get("ordinary_context", {}).get("patterns", ()), macros),
        accepted_loss=_compile_all(modifiers.get("accepted_loss", {}).get("patterns", ()), macros),
    )


@cache
def default_rulebook() -> RuleBook:
    """The reviewed rules shipped with Haven (loaded and compiled once per process)."""
    text = resources.files("core.safety").joinpath("data/rules.yaml").read_text(encoding="utf-8")
    return load_rulebook(yaml.safe_load(text))
