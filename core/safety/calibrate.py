"""Choose the semantic layer's thresholds by cross-validation on the `tune` split only.

Run: python -m core.safety.calibrate [--folds 5] [--static]   (--static: the default encoder; without it, MiniLM)
Each fold fits the scorer (softmax head + kNN vote) on the exemplars and the other tune folds, scores the held-out
fold, and decides as the screen's fusion step does. The rules were written while reading `tune`, so by default the
semantic layer is calibrated on its own (only the rules' first-person-intent signal is kept): fused with rules that
already know `tune`, any threshold looks unnecessary (`--with-rules` shows it). The thresholds printed are the
ones that, over all folds together, keep false crisis alarms on ordinary tune messages at or under `--max-false-crisis`
and concern-or-higher on them under `--max-false-concern`, and then catch the most crisis and concern messages.
The holdout and fresh splits are never read. Prints figures only, never message text.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.safety.assess import fuse
from core.safety.risk import RiskLevel
from core.safety.rules import RuleVerdict, default_rulebook
from core.safety.semantic import (
    LEVELS,
    Embedder,
    RiskModel,
    SemanticVerdict,
    StaticEmbedder,
    Thresholds,
    cached_training_vectors,
    decide,
    default_cache_dir,
    read_jsonl,
)


def fold_probabilities(exemplars: Sequence[dict[str, Any]], tune: Sequence[dict[str, Any]], folds: int,
                       embedder: Embedder) -> np.ndarray:
    """Out-of-fold (p_none, p_concern, p_crisis) for every tune row; folds are stratified by level, by position."""
    rows = [*exemplars, *tune]
    vectors = cached_training_vectors(embedder, [r["text"] for r in rows], default_cache_dir())
    labels = np.array([LEVELS.index(RiskLevel(r["level"])) for r in rows])
    n_ex = len(exemplars)
    fold_of = np.zeros(len(tune), dtype=int)
    seen: dict[str, int] = {}
    for i, row in enumerate(tune):
        fold_of[i] = seen.get(row["level"], 0) % folds
        seen[row["level"]] = seen.get(row["level"], 0) + 1
    out = np.zeros((len(tune), len(LEVELS)))
    for fold in range(folds):
        train = np.concatenate([np.arange(n_ex), n_ex + np.flatnonzero(fold_of != fold)])
        test = np.flatnonzero(fold_of == fold)
        model = RiskModel(vectors[train], labels[train])
        out[test] = model.probabilities(vectors[n_ex + test])
    return out


def evaluate(tune: Sequence[dict[str, Any]], probs: np.ndarray, rule_verdicts: list[Any],
             thresholds: Thresholds) -> dict[str, float]:
    gold = [row["level"] for row in tune]
    predicted = []
    for (_, p_concern, p_crisis), rules in zip(probs, rule_verdicts, strict=True):
        level = decide(float(p_concern), float(p_crisis), thresholds)
        if_intent = level is RiskLevel.CONCERN and p_crisis >= thresholds.crisis_with_intent
        verdict = SemanticVerdict(level, frozenset(), (), float(p_crisis), float(p_concern + p_crisis), if_intent)
        predicted.append(fuse(rules, verdict).level.value)
    def rate(g: str, ok: set[str]) -> float:
        pairs = [p for gg, p in zip(gold, predicted, strict=True) if gg == g]
        return sum(p in ok for p in pairs) / max(len(pairs), 1)
    return {
        "crisis_recall": rate("crisis", {"crisis"}),
        "concern_or_higher": rate("concern", {"concern", "crisis"}),
        "false_crisis": rate("none", {"crisis"}),
        "false_concern_or_higher": rate("none", {"concern", "crisis"}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-false-crisis", type=float, default=0.0)
    parser.add_argument("--max-false-concern", type=float, default=0.15)
    parser.add_argument("--with-rules", action="store_true", help="fuse with the full rule verdicts (optimistic)")
    parser.add_argument("--static", action="store_true", help="calibrate the static-token encoder instead")
    args = parser.parse_args(argv)

    exemplars, tune = read_jsonl("exemplars.jsonl"), read_jsonl("eval_tune.jsonl")
    embedder = StaticEmbedder(cache_dir=default_cache_dir()) if args.static else Embedder()
    probs = fold_probabilities(exemplars, tune, args.folds, embedder)
    rulebook = default_rulebook()
    rule_verdicts = [rulebook.assess(row["text"]) for row in tune]
    if not args.with_rules:
        rule_verdicts = [
            RuleVerdict(RiskLevel.NONE, frozenset(), (), signals=v.signals & {"first_person_intent"})
            for v in rule_verdicts
        ]
    grid = [round(x, 2) for x in np.arange(0.30, 0.96, 0.05)]
    best: tuple[Any, ...] | None = None
    for crisis, concern, intent in itertools.product(grid, grid, grid):
        if intent > crisis:
            continue
        t = Thresholds(crisis=crisis, concern=concern, crisis_with_intent=intent)
        f = evaluate(tune, probs, rule_verdicts, t)
        if f["false_crisis"] > args.max_false_crisis or f["false_concern_or_higher"] > args.max_false_concern:
            continue
        # Most risk caught (a missed crisis counts twice a missed concern); ties go to the fewest alarms.
        caught = round(2 * f["crisis_recall"] + f["concern_or_higher"], 6)
        key = (caught, -f["false_concern_or_higher"], crisis, intent, concern)
        if best is None or key > best[0]:
            best = (key, t, f)
    if best is None:
        print("no thresholds meet the constraints")
        return 1
    _, t, f = best
    print(f"thresholds: crisis={t.crisis} concern={t.concern} crisis_with_intent={t.crisis_with_intent}")
    print("out-of-fold on tune: " + " ".join(f"{k}={v:.3f}" for k, v in f.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
