"""The semantic scorer's pure parts, without the model: the kNN vote, the decision thresholds, and how the fusion
step treats a semantic verdict (raise only, never crisis over a blanked idiom, the safer level with intent)."""

from __future__ import annotations

import numpy as np

from core.safety.assess import fuse
from core.safety.risk import RiskCategory, RiskLevel
from core.safety.rules import RuleVerdict
from core.safety.semantic import RiskModel, SemanticVerdict, Thresholds, decide, knn_probabilities


def test_knn_vote_follows_the_nearest_rows() -> None:
    labels = np.array([0, 0, 2, 2, 2])
    sims = np.array([[0.9, 0.8, 0.1, 0.1, 0.1], [0.1, 0.1, 0.9, 0.95, 0.7]])
    probs = knn_probabilities(sims, labels, k=2, classes=3)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] == 1.0 and probs[1, 2] == 1.0


def test_knn_vote_with_no_similar_rows_is_uniform() -> None:
    probs = knn_probabilities(np.array([[-0.2, -0.5]]), np.array([0, 2]), k=2, classes=3)
    np.testing.assert_allclose(probs, [[1 / 3, 1 / 3, 1 / 3]])


def test_risk_model_is_deterministic_and_separates_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16)
    x = np.concatenate([c + 0.05 * rng.standard_normal((20, 16)) for c in centres]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat([0, 1, 2], 20)
    a, b = RiskModel(x, y), RiskModel(x, y)
    probs = a.probabilities(centres.astype(np.float32))
    np.testing.assert_array_equal(probs, b.probabilities(centres.astype(np.float32)))
    assert list(probs.argmax(axis=1)) == [0, 1, 2]


def test_decide_uses_both_thresholds() -> None:
    t = Thresholds(crisis=0.8, concern=0.6, crisis_with_intent=0.5)
    assert decide(0.1, 0.85, t) is RiskLevel.CRISIS
    assert decide(0.3, 0.4, t) is RiskLevel.CONCERN
    assert decide(0.2, 0.3, t) is RiskLevel.NONE


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


def test_semantic_layer_never_lowers_the_rules() -> None:
    assert fuse(_rules(RiskLevel.CRISIS), _semantic(RiskLevel.NONE, 0.0)).level is RiskLevel.CRISIS
    assert fuse(_rules(masked=True), _semantic(RiskLevel.CRISIS, 0.99)).level is RiskLevel.CONCERN


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
