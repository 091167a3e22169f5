"""The semantic layer on the bundled MiniLM: paraphrases no rule names, fail-closed behaviour, determinism."""

from __future__ import annotations

import logging

import pytest

from core.safety import RiskLevel, SafetyScreen
from core.safety.semantic import SemanticLayer

pytestmark = pytest.mark.slow  # loads MiniLM and fits the head once per module (well over 20 s on 2 busy cores)


@pytest.fixture(scope="module")
def screen() -> SafetyScreen:
    screen = SafetyScreen()
    screen.warm_up()
    return screen


def test_paraphrase_without_a_rule_is_caught(screen: SafetyScreen) -> None:
    text = "i have the pills ready"
    assert SafetyScreen(semantic=False).assess(text).level is RiskLevel.NONE  # no rule names this
    assessment = screen.assess(text)
    assert assessment.level is not RiskLevel.NONE
    assert any(r.startswith("semantic.") for r in assessment.reasons)


def test_idioms_stay_below_crisis_with_the_semantic_layer(screen: SafetyScreen) -> None:
    for text in ("this exam is killing me", "I could kill for a coffee", "I'm not suicidal, just tired"):
        assert screen.assess(text).level is not RiskLevel.CRISIS


def test_semantic_layer_is_deterministic(screen: SafetyScreen) -> None:
    text = "everything feels grey and heavy and i can't see why i'd keep going"
    assert screen.assess(text) == screen.assess(text)


class _Broken(SemanticLayer):
    def warm_up(self) -> None:
        raise RuntimeError("model file missing")

    def classify(self, texts):  # type: ignore[no-untyped-def]
        raise RuntimeError("encoder crashed")


def test_semantic_failure_fails_closed_and_logs_no_text(caplog: pytest.LogCaptureFixture) -> None:
    broken = SafetyScreen(semantic=_Broken())
    broken.warm_up()  # must not raise: the screen carries on with rules
    with caplog.at_level(logging.WARNING):
        assessment = broken.assess("i want to kill myself tonight")
    assert assessment.level is RiskLevel.CRISIS
    assert caplog.records and all("kill myself" not in r.getMessage() for r in caplog.records)
