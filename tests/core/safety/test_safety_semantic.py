"""The semantic layer on the bundled MiniLM: paraphrases no rule names, fail-closed behaviour, determinism."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from core.safety import RiskLevel, SafetyScreen
from core.safety.semantic import Embedder, SemanticLayer, StaticEmbedder

pytestmark = pytest.mark.slow  # loads MiniLM once per session (tests/core/safety/conftest.py) and fits the scorer


@pytest.fixture(scope="module")
def screen(full_screen: SafetyScreen) -> SafetyScreen:
    return full_screen


def test_paraphrase_without_a_rule_is_caught(screen: SafetyScreen) -> None:
    text = "i just want everything to go quiet and stay quiet"
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


def test_long_message_is_read_as_head_and_tail_windows(embedder: Embedder, minilm_screen: SafetyScreen) -> None:
    filler = "today i went to the shops and then i made some pasta and watched a film with my flatmate. " * 12
    windows = embedder.windows(filler + "i have the pills ready")
    assert len(windows) == 2 and "pills" in windows[1] and "pills" not in windows[0]
    assert embedder.windows("short message") == ["short message"]
    # The risky tail is not diluted away by a long harmless head.
    risky_tail = "i have the pills ready and tonight i will take them all"
    assert minilm_screen.assess(filler + risky_tail).level is RiskLevel.CRISIS


def test_training_embeddings_are_cached_on_disk_by_content(embedder: Embedder, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {"id": "a", "text": "i want to die", "level": "crisis", "categories": ["suicide"]},
        {"id": "b", "text": "i feel so alone", "level": "concern", "categories": ["suicide"]},
        {"id": "c", "text": "what should i cook tonight", "level": "none", "categories": []},
    ]
    first = SemanticLayer(embedder, rows=rows, cache_dir=tmp_path)
    first.warm_up()
    cached = list(tmp_path.glob("exemplar-embeddings-*.npy"))
    assert len(cached) == 1

    def no_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("warm-up encoded the rows although they were cached")

    monkeypatch.setattr(embedder, "encode_uncached", no_encoding)
    second = SemanticLayer(embedder, rows=rows, cache_dir=tmp_path)
    second.warm_up()
    np.testing.assert_allclose(first.probabilities(["hello there"]), second.probabilities(["hello there"]),
                               atol=1e-3)
    monkeypatch.undo()
    # Different texts, different key: the stale file is replaced, not reused.
    third = SemanticLayer(embedder, rows=[*rows, {"id": "d", "text": "nice weather", "level": "none"}],
                          cache_dir=tmp_path)
    third.warm_up()
    assert [p.name for p in tmp_path.glob("exemplar-embeddings-*.npy")] != [p.name for p in cached]
    assert len(list(tmp_path.glob("exemplar-embeddings-*.npy"))) == 1


def test_an_unwritable_cache_folder_does_not_break_warm_up(embedder: Embedder, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    layer = SemanticLayer(embedder, rows=[
        {"id": "a", "text": "i want to die", "level": "crisis", "categories": ["suicide"]},
        {"id": "c", "text": "what should i cook tonight", "level": "none", "categories": []},
    ], cache_dir=blocker / "cache")
    layer.warm_up()
    assert layer.probabilities(["hi"]).shape == (1, 3)


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
    assert screen.assess("i am going to kill myself tonight, unique 1").level is RiskLevel.CRISIS
    assert calls == []
    screen.assess("what a lovely morning, unique 2")
    assert calls == [["what a lovely morning, unique 2"]]


@pytest.mark.parametrize("which", ["full_screen", "minilm_screen"])
def test_both_encoders_catch_a_paraphrase_and_keep_idioms_below_crisis(which: str,
                                                                      request: pytest.FixtureRequest) -> None:
    screen = request.getfixturevalue(which)
    assert screen.assess("i just want everything to go quiet and stay quiet").level is not RiskLevel.NONE
    assert screen.assess("this commute is killing me").level is not RiskLevel.CRISIS


def test_static_encoder_is_fast_and_deterministic(full_screen: SafetyScreen) -> None:
    layer = full_screen._semantic
    assert isinstance(layer, SemanticLayer) and isinstance(layer.embedder, StaticEmbedder)
    a = layer.embedder.encode_uncached(["i feel so alone tonight", "hello"])
    b = layer.embedder.encode_uncached(["i feel so alone tonight", "hello"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_ordinary_vents_in_a_row_do_not_escalate_to_crisis(full_screen: SafetyScreen) -> None:
    """Concern that only the semantic layer reads (a hard day, a move, an argument) adds a resources line but never
    counts towards the three-concerns escalation: a person venting for three messages is not in crisis."""
    vents = ["My sister and I argued again and I don't know how to fix it.",
             "I keep putting off my assignments and then I panic.",
             "Sleep has been bad all week, I wake up at 4.",
             "I moved to a new city and I don't know anyone yet."]
    singles = [full_screen.assess(text) for text in vents]
    # The precondition that makes this test able to fail: the semantic layer reads these as concern on their own.
    assert sum(a.level is RiskLevel.CONCERN for a in singles) >= 3
    for i, text in enumerate(vents):
        assert full_screen.assess(text, recent=vents[:i]).level is not RiskLevel.CRISIS


def test_named_concerns_still_escalate_with_the_semantic_layer_on(full_screen: SafetyScreen) -> None:
    escalated = full_screen.assess("i feel like such a burden", recent=["i hate myself", "nothing matters anymore"])
    assert escalated.level is RiskLevel.CRISIS and "escalation.repeated_concern" in escalated.reasons
