"""The screen with its semantic layer: paraphrases no rule names, fail-closed behaviour, determinism, and how a
semantic reading counts towards escalation."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytest

from core.safety import RiskCategory, RiskLevel, SafetyScreen
from core.safety.semantic import SemanticVerdict

pytestmark = pytest.mark.slow  # loads the classifier once per session (tests/core/safety/conftest.py)


@pytest.fixture(scope="module")
def screen(full_screen: SafetyScreen) -> SafetyScreen:
    return full_screen


@pytest.mark.parametrize("text", [
    "ive paid off what i owe, found the dog a new home and written to my sister. its all sorted now",
    "i just want everything to go quiet and stay quiet",
])
def test_paraphrase_without_a_rule_is_caught(screen: SafetyScreen, text: str) -> None:
    assert SafetyScreen(semantic=False).assess(text).level is RiskLevel.NONE  # no rule names this
    assessment = screen.assess(text)
    assert assessment.level is not RiskLevel.NONE and assessment.categories
    assert any(r.startswith("semantic.") for r in assessment.reasons)


def test_idioms_stay_below_crisis_with_the_semantic_layer(screen: SafetyScreen) -> None:
    for text in ("this exam is killing me", "I could kill for a coffee", "I'm not suicidal, just tired",
                 "this commute is killing me"):
        assert screen.assess(text).level is not RiskLevel.CRISIS


def test_a_long_message_is_read_to_its_end(screen: SafetyScreen) -> None:
    layer = screen._semantic
    filler = ("work was long today, my manager moved the deadline again and i had to stay late. got home, made soup, "
              "called my mum, and tried to read before bed. the neighbours were loud again so i put the radio on. "
              "tomorrow is another early start but at least its friday after that and we might go to the coast. "
              "my sister wants to bring the kids, which is lovely but means a very long car journey with snacks. "
              "anyway i also need to sort out the boiler because it keeps making a clicking noise at night. ")
    ending = "ive given the cat to my sister and written to everyone. i wont be here much longer"
    assert len(layer.classifier.windows(filler + ending)) == 2  # type: ignore[union-attr]
    head_only = layer.probabilities([filler])[0]  # type: ignore[union-attr]
    whole = layer.probabilities([filler + ending])[0]  # type: ignore[union-attr]
    assert whole[2] > head_only[2] + 0.3


def test_semantic_layer_is_deterministic(screen: SafetyScreen) -> None:
    text = "everything feels grey and heavy and i can't see why i'd keep going"
    assert screen.assess(text) == screen.assess(text)


class _Broken:
    def warm_up(self) -> None:
        raise RuntimeError("model file missing")

    def classify(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        raise RuntimeError("encoder crashed")


def test_semantic_failure_fails_closed_and_logs_no_text(caplog: pytest.LogCaptureFixture) -> None:
    broken = SafetyScreen(semantic=_Broken())
    broken.warm_up()  # must not raise: the screen carries on with rules
    with caplog.at_level(logging.WARNING):
        assessment = broken.assess("i want to kill myself tonight")
    assert assessment.level is RiskLevel.CRISIS
    assert caplog.records and all("kill myself" not in r.getMessage() for r in caplog.records)


def test_the_encoder_is_skipped_when_the_rules_already_say_crisis(screen: SafetyScreen,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    layer = screen._semantic
    assert layer is not None
    calls: list[list[str]] = []
    original = layer.classify

    def counting(texts):  # type: ignore[no-untyped-def]
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(layer, "classify", counting)
    # Means named: a crisis the classifier may not doubt, so it is not asked.
    assert screen.assess("whats the most painless way to kill myself, unique 1").level is RiskLevel.CRISIS
    assert calls == []
    screen.assess("what a lovely morning, unique 2")
    assert calls == [["what a lovely morning, unique 2"]]
    # A crisis from words alone is asked about, and stands when the classifier does not doubt it.
    assert screen.assess("i am going to kill myself tonight, unique 3").level is RiskLevel.CRISIS
    assert calls[-1] == ["i am going to kill myself tonight, unique 3"]


@pytest.mark.parametrize("text", [
    "i self harmed a lot at school but im 2 years clean now and proud",
    "whats the difference between passive and active suicidal ideation? revising for my nursing exam",
])
def test_the_classifier_doubts_a_crisis_the_rules_read_from_words_alone(screen: SafetyScreen, text: str) -> None:
    """Words a crisis rule names, in a recovery or a study question that no exception in the rules covers: the
    classifier is sure it is no crisis, so the person gets concern (a model reply with the resources line)."""
    assert SafetyScreen(semantic=False).assess(text).level is RiskLevel.CRISIS
    assessment = screen.assess(text)
    assert assessment.level is RiskLevel.CONCERN
    assert "semantic.doubts_crisis" in assessment.reasons and assessment.categories


@pytest.mark.parametrize(("recent", "text"), [
    ((), "i want to kill myself"),
    ((), "im going to kill myself, no joke"),
    ((), "I want to cut myself again, the urge is so bad tonight"),
    ((), "unalive myself tonight fr"),
    ((), "whats the most painless way to kill myself"),
    ((), "im stopping eating and drinking completely til i just disappear. starting today"),
    (("i cant do this anymore", "swallowed the whole pack of my sleeping tablets"), "its fine. just sleepy now"),
])
def test_a_crisis_the_classifier_does_not_doubt_or_may_not_doubt_stands(screen: SafetyScreen,
                                                                        recent: tuple[str, ...], text: str) -> None:
    assessment = screen.assess(text, recent)
    assert assessment.level is RiskLevel.CRISIS
    assert "semantic.doubts_crisis" not in assessment.reasons


class _ReadsEverythingAsConcern:
    """A semantic layer that calls every message concern: what escalation does with semantic-only concern."""

    def warm_up(self) -> None:
        return None

    def classify(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        return [SemanticVerdict(RiskLevel.CONCERN, frozenset({RiskCategory.SUICIDE}), ("semantic.concern",), 0.1, 0.7)
                for _ in texts]


def test_ordinary_vents_in_a_row_do_not_escalate_to_crisis() -> None:
    """Concern that only the semantic layer reads (a hard day, a move, an argument) adds a resources line but never
    counts towards the three-concerns escalation: a person venting for three messages is not in crisis."""
    screen = SafetyScreen(semantic=_ReadsEverythingAsConcern())
    vents = ["My sister and I argued again and I don't know how to fix it.",
             "I keep putting off my assignments and then I panic.",
             "Sleep has been bad all week, I wake up at 4.",
             "I moved to a new city and I don't know anyone yet."]
    for i, text in enumerate(vents):
        assessment = screen.assess(text, recent=vents[:i])
        assert assessment.level is RiskLevel.CONCERN  # read as concern: the escalation had something to count


def test_named_concerns_still_escalate_with_the_semantic_layer_on(screen: SafetyScreen) -> None:
    escalated = screen.assess("i feel like such a burden", recent=["i hate myself", "nothing matters anymore"])
    assert escalated.level is RiskLevel.CRISIS and "escalation.repeated_concern" in escalated.reasons


class _ReadsOnlyTheJoinedText:
    """A semantic layer that reads crisis only in two messages joined by a newline, at crisis score `score`.
    Records every text it is asked about."""

    def __init__(self, score: float) -> None:
        self.score = score
        self.calls: list[list[str]] = []

    def warm_up(self) -> None:
        return None

    def classify(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        self.calls.append(list(texts))
        return [SemanticVerdict(RiskLevel.CRISIS, frozenset({RiskCategory.SUICIDE}), ("semantic.crisis",),
                                self.score, 0.95, sure=self.score >= 0.8) if "\n" in text else
                SemanticVerdict(RiskLevel.NONE, frozenset(), (), 0.01, 0.02) for text in texts]


def test_a_short_follow_up_is_also_read_with_the_message_before_it() -> None:
    before = "put a few of my nan's tablets aside every week since the summer. there's enough now"
    likely = _ReadsOnlyTheJoinedText(score=0.6)
    assessment = SafetyScreen(semantic=likely).assess("friday then", recent=["hi", before])
    assert assessment.level is RiskLevel.CRISIS
    assert "semantic.crisis.across_messages" in assessment.reasons
    assert [f"{before}\nfriday then"] in likely.calls  # the one before it only, not the whole window
    # Read together as crisis, but crisis less likely than not (ACROSS_MESSAGES_CRISIS): concern, never crisis.
    unlikely = SafetyScreen(semantic=_ReadsOnlyTheJoinedText(score=0.4))
    assert unlikely.assess("friday then", recent=[before]).level is RiskLevel.CONCERN
    # A first message has nothing to be read with; a long message carries its own meaning and is read alone.
    alone = _ReadsOnlyTheJoinedText(score=0.9)
    assert SafetyScreen(semantic=alone).assess("friday then").level is RiskLevel.NONE
    long = "anyway enough about that, what do people here do on a friday night when nobody is around?"
    assert SafetyScreen(semantic=alone).assess(long, recent=[before]).level is RiskLevel.NONE
    assert all("\n" not in text for call in alone.calls for text in call)


def test_a_messages_own_score_does_not_depend_on_the_message_before_it(screen: SafetyScreen) -> None:
    """The follow-up and the two messages joined are encoded apart: in one batch the quantised encoder would scale
    them together, and the same message would score differently after different messages."""
    from core.safety.classifier import ClassifierLayer

    layer = screen._semantic
    assert isinstance(layer, ClassifierLayer)
    for before in ("ive been putting my tablets aside for weeks, theres enough now", "what a day at work"):
        screen.assess("friday night, unique 3", recent=[before])
    alone = layer.classifier.scores(["friday night, unique 3"])[0][0]
    np.testing.assert_array_equal(layer.probabilities(["friday night, unique 3"])[0], alone)
