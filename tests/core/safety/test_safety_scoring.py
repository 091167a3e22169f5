"""The semantic layer's pure parts, without the model: the decision thresholds, and how the fusion step treats a
semantic verdict (it raises; it lowers only a crisis from words alone that it doubts; never crisis over a blanked
idiom or a framed story; the safer level with intent)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.safety.assess import fuse
from core.safety.risk import RiskCategory, RiskLevel
from core.safety.rules import RuleVerdict
from core.safety.semantic import SemanticVerdict, Thresholds, decide


def test_decide_uses_both_thresholds() -> None:
    t = Thresholds(crisis=0.8, concern=0.6, crisis_with_intent=0.5)
    assert decide(0.1, 0.85, t) is RiskLevel.CRISIS
    assert decide(0.3, 0.4, t) is RiskLevel.CONCERN
    assert decide(0.2, 0.3, t) is RiskLevel.NONE


def test_crisis_needs_risk_likelier_than_none() -> None:
    # The other languages' crisis threshold is low; a message the classifier cannot place splits its belief
    # between none and crisis ("mathe bringt mich heute noch ins grab": crisis 0.36, none 0.59).
    t = Thresholds(crisis=0.26, concern=0.65)
    assert decide(0.05, 0.36, t) is RiskLevel.NONE
    assert decide(0.15, 0.36, t) is RiskLevel.CRISIS  # risk 0.51: likelier than none
    assert decide(0.4, 0.2, t) is RiskLevel.NONE  # below both thresholds


def _rules(level: RiskLevel = RiskLevel.NONE, *, masked: bool = False,
           signals: frozenset[str] = frozenset()) -> RuleVerdict:
    return RuleVerdict(level, frozenset(), (), masked=masked, signals=signals)


def _semantic(level: RiskLevel, p_crisis: float, if_intent: bool = False) -> SemanticVerdict:
    return SemanticVerdict(level, frozenset({RiskCategory.SUICIDE}), (f"semantic.{level.value}",), p_crisis, 0.9,
                           if_intent)


def test_unsure_concern_with_first_person_intent_becomes_crisis() -> None:
    unsure = _semantic(RiskLevel.CONCERN, 0.7, if_intent=True)
    assert fuse(_rules(signals=frozenset({"first_person_intent"})), unsure).level is RiskLevel.CRISIS
    assert "semantic.crisis_with_intent" in fuse(_rules(signals=frozenset({"first_person_intent"})), unsure).reasons
    # Without intent, or with a blanked idiom/negation, it stays concern.
    assert fuse(_rules(), unsure).level is RiskLevel.CONCERN
    masked = _rules(masked=True, signals=frozenset({"first_person_intent"}))
    assert fuse(masked, unsure).level is RiskLevel.CONCERN
    # A score under the intent threshold stays concern even with intent.
    low = _semantic(RiskLevel.CONCERN, 0.2, if_intent=False)
    assert fuse(_rules(signals=frozenset({"first_person_intent"})), low).level is RiskLevel.CONCERN


def test_semantic_layer_lowers_only_a_crisis_from_words_alone_that_it_doubts() -> None:
    words = RuleVerdict(RiskLevel.CRISIS, frozenset({RiskCategory.SELF_HARM}), ("self_harm.now",),
                        crisis_from_words=True)
    doubting = replace(_semantic(RiskLevel.NONE, 0.01), doubts_crisis=True)
    fused = fuse(words, doubting)
    assert fused.level is RiskLevel.CONCERN
    assert fused.reasons == ("self_harm.now", "semantic.doubts_crisis")
    assert fused.categories == {RiskCategory.SELF_HARM}
    # A crisis from means named, a means question or earlier messages stands; so does one the writer says is real.
    assert fuse(replace(words, crisis_from_words=False), doubting).level is RiskLevel.CRISIS
    assert fuse(replace(words, signals=frozenset({"sincere"})), doubting).level is RiskLevel.CRISIS
    # A low score that is not below the doubt threshold, or no semantic layer at all (it failed): the rules stand.
    assert fuse(words, _semantic(RiskLevel.NONE, 0.01)).level is RiskLevel.CRISIS
    assert fuse(words, None).level is RiskLevel.CRISIS
    # Nothing below crisis is lowered, and a blanked idiom still gets no more than concern.
    assert fuse(_rules(RiskLevel.CONCERN), doubting).level is RiskLevel.CONCERN
    assert fuse(_rules(masked=True), _semantic(RiskLevel.CRISIS, 0.99)).level is RiskLevel.CONCERN


def test_a_verdict_doubts_a_crisis_only_below_the_doubt_threshold() -> None:
    from core.safety.classifier import ClassifierLayer

    layer = ClassifierLayer(thresholds=Thresholds(crisis=0.3, concern=0.5, crisis_doubt=0.04))
    assert layer._verdict(np.array([0.97, 0.02, 0.01]), np.zeros(7), layer.thresholds).doubts_crisis
    assert not layer._verdict(np.array([0.9, 0.05, 0.05]), np.zeros(7), layer.thresholds).doubts_crisis
    never = Thresholds(crisis=0.3, concern=0.5)  # the default, 0: the classifier doubts no rule
    assert not layer._verdict(np.array([1.0, 0.0, 0.0]), np.zeros(7), never).doubts_crisis


def test_the_other_four_languages_have_a_crisis_doubt_of_their_own() -> None:
    thresholds = Thresholds(crisis_doubt=0.14, crisis_doubt_other_language=0.04)
    assert thresholds.for_language("en").crisis_doubt == 0.14
    assert all(thresholds.for_language(lang).crisis_doubt == 0.04 for lang in ("es", "de", "fr", "pt"))
    assert Thresholds(crisis_doubt=0.14).for_language("es").crisis_doubt == 0.14  # None: the same as English


def test_means_question_with_distress_the_embedding_reads_is_crisis() -> None:
    method = RuleVerdict(RiskLevel.CONCERN, frozenset({RiskCategory.SUICIDE}), ("suicide.method_disguised",),
                         signals=frozenset({"method"}))
    fused = fuse(method, _semantic(RiskLevel.CONCERN, 0.3))
    assert fused.level is RiskLevel.CRISIS
    assert fused.reasons[0] == "suicide.method_disguised" and "semantic.distress_with_method" in fused.reasons
    # The embedding reads no distress: the question alone stays concern. A blanked idiom never gets there.
    assert fuse(method, _semantic(RiskLevel.NONE, 0.1)).level is RiskLevel.CONCERN
    masked = RuleVerdict(RiskLevel.CONCERN, frozenset(), ("suicide.method_disguised",), masked=True,
                         signals=frozenset({"method"}))
    assert fuse(masked, _semantic(RiskLevel.CONCERN, 0.3)).level is RiskLevel.CONCERN


def test_a_message_framed_as_fiction_study_or_helping_gets_concern_not_crisis_from_the_semantic_layer() -> None:
    from core.safety.rules import default_rulebook

    sure = SemanticVerdict(RiskLevel.CRISIS, frozenset({RiskCategory.SUICIDE}), ("semantic.crisis",), 0.99, 1.0)
    rules = default_rulebook()
    for framed in ("as a nurse, what are the first signs of an overdose in a patient",
                   "for my novel: my character writes a goodbye letter before the storm"):
        verdict = rules.assess(framed)
        assert "framed" in verdict.signals and verdict.level is not RiskLevel.CRISIS
        assert fuse(verdict, sure).level is RiskLevel.CONCERN
    # Not when the writer says it is their own, or speaks of now.
    for own in ("for my novel, but honestly its basically me, i have the letter written",
                "i know its like a story in a book but tonight i want to go"):
        verdict = rules.assess(own)
        assert "framed" not in verdict.signals
        assert fuse(verdict, sure).level is RiskLevel.CRISIS


def test_a_sure_semantic_crisis_is_crisis_over_a_blanked_idiom() -> None:
    """"two boxes of ibuprofen. stomach is killing me now": the rules blank the idiom, the classifier is sure."""
    sure = SemanticVerdict(RiskLevel.CRISIS, frozenset({RiskCategory.SUICIDE}), ("semantic.crisis",), 0.95, 0.99,
                           sure=True)
    assert fuse(_rules(masked=True), sure).level is RiskLevel.CRISIS
    lowered = RuleVerdict(RiskLevel.CONCERN, frozenset({RiskCategory.SUICIDE}), ("suicide.kill_self:past",),
                          lowered=True)
    assert fuse(lowered, sure).level is RiskLevel.CRISIS
    # The same score without `sure` (below Thresholds.crisis_sure) stays concern over the blanked idiom.
    assert fuse(_rules(masked=True), _semantic(RiskLevel.CRISIS, 0.95)).level is RiskLevel.CONCERN


def test_a_verdict_is_sure_only_at_or_above_the_sure_threshold() -> None:
    from core.safety.classifier import ClassifierLayer

    layer = ClassifierLayer(thresholds=Thresholds(crisis=0.3, concern=0.5, crisis_sure=0.8))
    verdict = layer._verdict(np.array([0.1, 0.1, 0.8]), np.zeros(7), layer.thresholds)
    assert verdict.level is RiskLevel.CRISIS and verdict.sure
    verdict = layer._verdict(np.array([0.2, 0.1, 0.7]), np.zeros(7), layer.thresholds)
    assert verdict.level is RiskLevel.CRISIS and not verdict.sure


def test_a_message_about_another_time_or_someone_else_gets_concern_not_crisis_from_the_semantic_layer() -> None:
    """A past told with its recovery, a death grieved with acceptance, a party's or a pet's medicine question: the
    classifier's unsure crisis stays concern. Unlike framing, such a context lowers no rule's crisis."""
    from core.safety.rules import default_rulebook

    unsure = _semantic(RiskLevel.CRISIS, 0.45)
    rules = default_rulebook()
    for not_now in ("is ibuprofen ok with a glass of wine? it's my sister's birthday dinner on saturday lol",
                    "mi perro se comió un calcetín entero, tengo que ir al veterinario?",
                    "how do i keep the pills locked away now the grandkids visit every weekend",
                    "mein opa ist letzte woche gestorben. es war eine schöne beerdigung, alle waren zusammen",
                    "five years ago i was in hospital after an attempt. now im a nurse and doing so much better"):
        verdict = rules.assess(not_now)
        assert "not_now" in verdict.signals and verdict.level is not RiskLevel.CRISIS, not_now
        assert fuse(verdict, unsure).level is RiskLevel.CONCERN
    # A rule's crisis is never lowered by it, and a present-time cue or a drink spiked at the party cancels it.
    grief_and_intent = rules.assess("my nan died peacefully last week. i want to kill myself")
    assert grief_and_intent.level is RiskLevel.CRISIS
    for now in ("my gran passed away, beautiful funeral, but tonight i want to take all her pills",
                "someone at the party put something in my drink, my meds are in my bag and i cant move"):
        verdict = rules.assess(now)
        assert "not_now" not in verdict.signals, now
        assert fuse(verdict, unsure).level is RiskLevel.CRISIS


def test_an_ordinary_context_holds_at_any_time_but_a_grief_does_not() -> None:
    """A medicine question, a pet, a game or a kitchen cut is ordinary "this morning" or "tonight" too; a grief told
    with acceptance is not when the message turns to tonight (a note written after the funeral)."""
    from core.safety.rules import default_rulebook

    unsure = _semantic(RiskLevel.CRISIS, 0.45)
    rules = default_rulebook()
    for ordinary in ("forgot my antidepressant this morning, should i take it now or skip till tomorrow",
                     "is it safe to take ibuprofen tonight with my blood pressure tablets?",
                     "sliced my finger chopping onions just now, how long does a cut take to heal",
                     "Mein Hund musste heute eingeschläfert werden. Er war 14."):
        verdict = rules.assess(ordinary)
        assert "not_now" in verdict.signals, ordinary
        assert fuse(verdict, unsure).level is RiskLevel.CONCERN
    for not_ordinary in ("can i take all my sleeping pills with wine tonight",
                         "my grandad died in january, lovely funeral, we were all together. tonight i wrote a note",
                         "cut myself again on purpose, not an accident, chopping onions was the excuse",
                         "lost again in ranked, im done with everything, nobody would miss me",
                         "my nan passed away peacefully, lovely funeral, but im done with everything now"):
        verdict = rules.assess(not_ordinary)
        assert "not_now" not in verdict.signals, not_ordinary
        assert fuse(verdict, unsure).level is RiskLevel.CRISIS


def test_saying_it_is_real_lifts_the_cap_of_a_blanked_idiom() -> None:
    """"i'd murder a pizza rn. also lowkey myself. no seriously": the idiom is blanked, but the writer says it is
    real, so the classifier's crisis stands."""
    from core.safety.rules import default_rulebook

    rules = default_rulebook()
    joke = rules.assess("i'd murder a kebab right now")
    real = rules.assess("i'd murder a kebab right now. and myself honestly. no joke")
    assert joke.masked and "sincere" not in joke.signals
    assert real.masked and "sincere" in real.signals
    unsure = _semantic(RiskLevel.CRISIS, 0.45)
    assert fuse(joke, unsure).level is RiskLevel.CONCERN
    assert fuse(real, unsure).level is RiskLevel.CRISIS
