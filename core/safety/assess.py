"""The safety screen: rules, then the semantic layer (on the message, and on a short follow-up joined to the message
before it), then escalation across the user's recent messages.

`SafetyScreen.assess` is a pure, deterministic function of the new message and the user's previous messages. It
fails closed: if the semantic layer breaks, the rules still decide and a warning (without text) is logged.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from core.safety.risk import RiskAssessment, RiskLevel, max_level
from core.safety.rules import (
    NOT_THE_WRITER_NOW,
    SUICIDAL,
    RuleBook,
    RuleVerdict,
    default_rulebook,
    reads_in_context,
)
from core.safety.semantic import SemanticScorer, SemanticVerdict

log = logging.getLogger(__name__)

# How many of the user's previous messages count, and how many concern-level messages in a row make a crisis.
RECENT_WINDOW = 5
ESCALATION_COUNT = 3
# A message this short is also read together with the one before it (see SafetyScreen.assess).
FOLLOW_UP_CHARS = 60
# The crisis score from which that joined reading counts as crisis. Until stop 23 it had to be sure
# (Thresholds.crisis_sure, 0.8), and "cut my arm an hour ago" then "still coming through. bit lightheaded" (0.5-0.8)
# got concern. On the seven development splits 0.5 catches five more crises and raises no ordinary message.
ACROSS_MESSAGES_CRISIS = 0.5
# Whether a semantic concern-or-crisis reading of the same message counts as the distress that makes a means question
# method-seeking (see fuse).
METHOD_NEEDS_SEMANTIC_DISTRESS = True


def fuse(rules: RuleVerdict, semantic: SemanticVerdict | None) -> RiskAssessment:
    """Combine the two layers for one message. The semantic layer can raise the level; it lowers it only where the
    rules read a crisis from a crisis phrase alone and the classifier is sure there is none (`doubts_crisis`):
    "kms if this wifi drops again", a psychology essay about self-harm, an attempt told years later with its
    recovery, in words no exception in the rules names. Then the level is concern, which still adds the resources
    line. A crisis from means named, a body in danger, a means question or the user's earlier messages stands, as
    does one the writer says is real ("no joke"). Without the semantic layer (it failed) the rules' crisis stands.

    Where the rules blanked an idiom or negation, lowered a match as past, hyperbole or framing, or read the whole
    message as fiction, news, study or helping someone else, or as not now (NOT_THE_WRITER_NOW), the semantic layer
    may add concern but not crisis:
    "this exam is killing me" sits near "I want to die" in embedding space, and a nurse's question about overdose
    signs near a person's own. Unless it is sure (`SemanticVerdict.sure`): "two boxes of ibuprofen. stomach is
    killing me now" is an overdose whatever the idiom.
    """
    level, categories, reasons = rules.level, set(rules.categories), list(rules.reasons)
    if semantic is not None and semantic.doubts_crisis and rules.crisis_from_words and "sincere" not in rules.signals:
        level = RiskLevel.CONCERN
        reasons.append("semantic.doubts_crisis")
    if semantic is not None and semantic.level is not RiskLevel.NONE:
        proposed = semantic.level
        blanked = (rules.masked or rules.lowered or bool(rules.signals & NOT_THE_WRITER_NOW)) \
            and rules.level is not RiskLevel.CRISIS and "sincere" not in rules.signals
        if (
            proposed is RiskLevel.CONCERN
            and semantic.crisis_if_intent
            and "first_person_intent" in rules.signals
            and not blanked
        ):
            # Unsure between concern and crisis, and the person speaks of their own intent: the safer level.
            proposed = RiskLevel.CRISIS
            semantic = replace(semantic, level=proposed, reasons=(*semantic.reasons, "semantic.crisis_with_intent"))
        if proposed is RiskLevel.CRISIS and blanked and not semantic.sure:
            proposed = RiskLevel.CONCERN
        if (
            METHOD_NEEDS_SEMANTIC_DISTRESS
            and "method" in rules.signals
            and rules.level is RiskLevel.CONCERN
            and not blanked
        ):
            # A means question ("is the roof open at night?") next to distress the rules' list does not name ("the
            # bank took the house"): the embedding reads the distress, so it is method-seeking, as with named distress.
            proposed = RiskLevel.CRISIS
            semantic = replace(semantic, level=proposed, reasons=(*semantic.reasons, "semantic.distress_with_method"))
        if proposed.rank > level.rank:
            level = proposed
            reasons.extend(semantic.reasons)
            if not categories:
                categories |= semantic.categories
        elif proposed is not RiskLevel.NONE and not categories:
            categories |= semantic.categories
    return RiskAssessment(level, frozenset(categories), tuple(dict.fromkeys(reasons)))


def _across_messages(semantic: SemanticVerdict) -> SemanticVerdict:
    """The semantic reading of two messages joined, as it may count for the second: crisis only when the classifier
    finds crisis likelier than not (ACROSS_MESSAGES_CRISIS; a crisis earlier in the window already weighs on its
    own), else at most concern; its reasons say where it came from."""
    level = semantic.level
    if level is RiskLevel.CRISIS and semantic.crisis_score < ACROSS_MESSAGES_CRISIS:
        level = RiskLevel.CONCERN
    reasons = tuple(f"{reason}.across_messages" if reason.startswith("semantic.") else reason
                    for reason in semantic.reasons)
    return replace(semantic, level=level, reasons=reasons, crisis_if_intent=False)


def _higher(a: RiskAssessment, b: RiskAssessment) -> RiskAssessment:
    return b if b.level.rank > a.level.rank else a


class SafetyScreen:
    """Screens each user message for crisis risk before the model sees it.

    `SafetyScreen()` uses rules and the trained classifier (it loads on first use or in `warm_up()`);
    `SafetyScreen(semantic=False)` uses the rules only; any other `SemanticScorer` can stand in for the classifier.
    """

    def __init__(self, semantic: bool | SemanticScorer = True, *, rulebook: RuleBook | None = None) -> None:
        self._rules = rulebook or default_rulebook()
        if semantic is True:
            from core.safety.classifier import ClassifierLayer

            self._semantic: SemanticScorer | None = ClassifierLayer()
        elif semantic is False:
            self._semantic = None
        else:
            self._semantic = semantic
        self._rule_cache: OrderedDict[str, RuleVerdict] = OrderedDict()

    @property
    def uses_semantic(self) -> bool:
        return self._semantic is not None

    def warm_up(self) -> None:
        """Load the embedding model and fit the head now (call at start-up, off the event loop).

        If the model cannot load, the screen carries on with rules only and logs a warning.
        """
        if self._semantic is None:
            return
        try:
            self._semantic.warm_up()
        except Exception:
            log.warning("semantic safety layer unavailable; screening with rules only", exc_info=True)

    def assess(self, text: str, recent: Sequence[str] = ()) -> RiskAssessment:
        """Assess `text`, the user's new message; `recent` are their previous messages, oldest first."""
        window = [m for m in list(recent)[-RECENT_WINDOW:] if m and m.strip()]
        recent_rules = [self._rules_for(m) for m in window]
        semantic = self._semantic_for(window) if window else []  # earlier messages: from the embedding cache
        escalating: list[RiskAssessment] = []  # earlier messages that count towards escalation
        recent_signals: list[frozenset[str]] = []
        for i, verdict in enumerate(recent_rules):
            fused = fuse(verdict, semantic[i] if semantic else None)
            if verdict.level is not RiskLevel.NONE or fused.level is RiskLevel.CRISIS:
                escalating.append(fused)  # a concern only the semantic layer read does not count (see _escalate)
            signals = set(verdict.signals)
            if fused.level is not RiskLevel.NONE:
                signals.add("risk")
                # A follow-up ("tonight", "yes") is read against a suicide or self-harm topic that the rules saw,
                # or a crisis: a semantic "concern" alone (a lonely message) does not turn "today" into a plan.
                if verdict.categories & SUICIDAL or fused.level is RiskLevel.CRISIS:
                    signals.add("suicide_topic")
            recent_signals.append(frozenset(signals))

        current_rules = self._rules_for(text)  # cached: the next message's screen reuses it
        if reads_in_context(current_rules.signals, frozenset().union(*recent_signals)):
            current_rules = self._rules.assess(text, recent_signals)  # a means question, a short answer, in context
        # When the rules say crisis the semantic layer can only doubt a crisis read from words alone; for any other
        # crisis (means, a means question, context) skip the encode.
        current = fuse(current_rules, None)
        if current_rules.level is not RiskLevel.CRISIS or current_rules.crisis_from_words:
            current_semantic = self._semantic_for([text])
            if current_semantic:
                current = fuse(current_rules, current_semantic[0])
            # A short follow-up is also read together with the message before it: "i've got my nan's pills saved up
            # now" then "sunday" is a plan that neither message is alone. (A long message carries its own meaning,
            # and a second encode for every message would double the screen's time.) Only after the message's own
            # reading succeeded: if the classifier failed there, the rules decide alone.
            if current_semantic and window and len(text) <= FOLLOW_UP_CHARS:
                across = self._semantic_for([f"{window[-1]}\n{text}"])
                if across:
                    current = _higher(current, fuse(current_rules, _across_messages(across[0])))
        return self._escalate(current, current_rules.level is not RiskLevel.NONE, escalating)

    def _escalate(self, current: RiskAssessment, current_named: bool, escalating: list[RiskAssessment]
                  ) -> RiskAssessment:
        if current.level is not RiskLevel.CONCERN:
            return current
        # Three messages in a row-ish that each show concern are a crisis even if none alone is. Each concern
        # must be one the rules name (a semantic-only concern, such as a long day at work or a lonely evening,
        # does not count), or three ordinary vents in a row would get the crisis reply; a semantic crisis
        # reading still counts.
        if current_named and len(escalating) + 1 >= ESCALATION_COUNT:
            categories = set(current.categories)
            for a in escalating:
                categories |= a.categories
            return RiskAssessment(
                max_level(current.level, RiskLevel.CRISIS),
                frozenset(categories),
                (*current.reasons, "escalation.repeated_concern"),
            )
        return current

    def _rules_for(self, text: str) -> RuleVerdict:
        """Rule verdicts for earlier messages, cached by a hash of the text (the rules are pure)."""
        key = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        found = self._rule_cache.get(key)
        if found is None:
            found = self._rules.assess(text)
            self._rule_cache[key] = found
            if len(self._rule_cache) > 4096:
                self._rule_cache.popitem(last=False)
        return found

    def _semantic_for(self, texts: list[str]) -> list[SemanticVerdict] | None:
        if self._semantic is None:
            return None
        try:
            return self._semantic.classify(texts)
        except Exception:
            # Fail closed: the rules alone still decide. Never log the text.
            log.warning("semantic safety layer failed; using rules only", exc_info=True)
            return None
