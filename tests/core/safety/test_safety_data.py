"""The labelled sets and exemplars are well formed, and the fresh set stays independent of what the screen learns
from (exemplars and tune)."""

from __future__ import annotations

import io
from collections import Counter
from importlib import resources

import pytest

from core.safety import RiskCategory, RiskLevel, SafetyScreen
from core.safety.cli import confusion, report
from core.safety.semantic import (
    HELD_BACK_FILES,
    TRAINED_SPLITS,
    TRAINING_FILES,
    UNSEEN_SPLITS,
    read_jsonl,
    training_rows,
)

LEVELS = {level.value for level in RiskLevel}
CATEGORIES = {category.value for category in RiskCategory}


LABELLED_FILES = sorted({*TRAINING_FILES, *HELD_BACK_FILES, *(f"eval_{split}.jsonl" for split in UNSEEN_SPLITS)})


def test_every_labelled_file_is_trained_on_held_back_or_unseen() -> None:
    """A file in data/ that no list names would be silently ignored by training and by the evaluation."""
    on_disk = {path.name for path in resources.files("core.safety").joinpath("data").iterdir()
               if path.name.endswith(".jsonl")}
    assert on_disk == set(LABELLED_FILES)
    assert not set(TRAINING_FILES) & {f"eval_{split}.jsonl" for split in UNSEEN_SPLITS}


@pytest.mark.parametrize("name", LABELLED_FILES)
def test_rows_are_well_formed(name: str) -> None:
    rows = read_jsonl(name)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        assert row["level"] in LEVELS and isinstance(row["text"], str) and row["text"].strip()
        assert set(row.get("categories", [])) <= CATEGORIES
        assert bool(row.get("categories")) == (row["level"] != "none")
        if "messages" in row:
            assert row["messages"][-1] == row["text"]


def test_fresh_set_is_large_and_varied() -> None:
    rows = read_jsonl("eval_fresh.jsonl")
    assert len(rows) >= 300
    levels = Counter(row["level"] for row in rows)
    assert min(levels.values()) >= 90
    assert sum("messages" in row for row in rows) >= 10  # conversations: method questions after distress


def test_training_rows_hold_no_unseen_split_and_no_conversation() -> None:
    rows = training_rows()
    assert len(rows) >= 2000 and not [row for row in rows if "messages" in row]
    unseen = {(row["id"], row["text"]) for split in UNSEEN_SPLITS for row in read_jsonl(f"eval_{split}.jsonl")}
    assert not [row for row in rows if (row["id"], row["text"]) in unseen]
    # The older splits by separate authors are trained on (since stop 19), their single messages all of them.
    trained = {row["id"] for split in TRAINED_SPLITS for row in read_jsonl(f"eval_{split}.jsonl")
               if "messages" not in row}
    assert trained and trained <= {row["id"] for row in rows}


def test_eval_reads_conversation_rows_in_context() -> None:
    rows = [
        {"text": "which bridges near me are the tallest", "level": "crisis",
         "messages": ["i lost my job and my wife left", "which bridges near me are the tallest"]},
        {"text": "which bridges near me are the tallest", "level": "concern"},
    ]
    table = confusion(rows, SafetyScreen(semantic=False))
    assert table[("crisis", "crisis")] == 1 and table[("concern", "concern")] == 1
    assert report("x", table, io.StringIO())["crisis_recall"] == 1.0


def test_blind_set_covers_every_category() -> None:
    rows = read_jsonl("eval_blind.jsonl")
    assert len(rows) >= 200
    levels = Counter(row["level"] for row in rows)
    assert levels["crisis"] >= 70 and levels["concern"] >= 60 and levels["none"] >= 70
    crisis_categories = {c for row in rows if row["level"] == "crisis" for c in row["categories"]}
    assert crisis_categories >= {"suicide", "self_harm", "harm_to_others", "abuse", "medical_emergency",
                                 "eating_disorder"}


@pytest.mark.parametrize("name", [f"eval_{split}.jsonl" for split in UNSEEN_SPLITS])
def test_unseen_sets_are_large_cover_every_category_and_are_not_trained_on(name: str) -> None:
    rows = read_jsonl(name)
    assert len(rows) >= 300
    levels = Counter(row["level"] for row in rows)
    assert levels["crisis"] >= 100 and levels["concern"] >= 85 and levels["none"] >= 100
    crisis_seen = {c for row in rows if row["level"] == "crisis" for c in row["categories"]}
    concern_seen = {c for row in rows if row["level"] == "concern" for c in row["categories"]}
    assert crisis_seen == CATEGORIES
    assert concern_seen >= CATEGORIES - {"medical_emergency"}  # an emergency is seldom anything but a crisis
    learned = {row["text"].strip().lower() for row in training_rows()}
    assert not [row["id"] for row in rows if row["text"].strip().lower() in learned]
