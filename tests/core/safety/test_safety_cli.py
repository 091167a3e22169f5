"""The `haven safety classify` contract: JSON lines in, the same objects with level and categories out, in order;
a bad line gets an error object on its own line. And `eval` prints the figures and a confusion table."""

from __future__ import annotations

import io
import json

import pytest

from core.safety import SafetyScreen
from core.safety.cli import classify_lines, confusion, eval_main, report
from core.safety.semantic import DEVELOPMENT_SPLITS, TEST_SPLITS, TRAINED_SPLITS


@pytest.fixture(scope="module")
def screen() -> SafetyScreen:
    return SafetyScreen(semantic=False)


def test_classify_keeps_order_and_fields(screen: SafetyScreen) -> None:
    lines = [
        json.dumps({"id": 1, "text": "i want to kill myself"}),
        json.dumps({"id": 2, "text": "what should i cook tonight"}),
        json.dumps({"id": 3, "messages": ["i lost my job", "which bridges near me are the tallest"]}),
    ]
    out = io.StringIO()
    assert classify_lines(lines, screen, out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert [r["level"] for r in rows] == ["crisis", "none", "crisis"]
    assert rows[0]["categories"] == ["suicide"] and rows[1]["categories"] == []
    assert rows[2]["messages"] == ["i lost my job", "which bridges near me are the tallest"]


def test_bad_lines_get_an_error_object_and_the_run_goes_on(screen: SafetyScreen) -> None:
    lines = ["{not json", "[1, 2]", json.dumps({"txt": "typo"}), json.dumps({"messages": [1]}),
             json.dumps({"text": "kms"})]
    out = io.StringIO()
    assert classify_lines(lines, screen, out) == 4
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == 5
    assert all("error" in r for r in rows[:4])
    assert rows[4]["level"] == "crisis"
    # The error never echoes the input.
    assert "typo" not in out.getvalue().split("\n")[2]


def test_eval_report_prints_targets_and_confusion(screen: SafetyScreen) -> None:
    rows = [
        {"text": "i want to die", "level": "crisis"},
        {"text": "i hate myself", "level": "concern"},
        {"text": "this exam is killing me", "level": "none"},
        {"text": "what a lovely day", "level": "crisis"},
    ]
    table = confusion(rows, screen)
    out = io.StringIO()
    figures = report("sample", table, out)
    assert figures["crisis_recall"] == 0.5
    assert figures["false_crisis_rate"] == 0.0
    text = out.getvalue()
    assert "confusion" in text and "recall" in text and "precision" in text


def test_eval_blind_split_and_all_includes_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_main(["--split", "blind", "--rules-only"]) == 0
    out = capsys.readouterr().out
    assert "== blind (rules only): " in out and "concern -> crisis" in out
    assert "== tune" not in out
    assert eval_main(["--split", "all", "--rules-only"]) == 0
    out = capsys.readouterr().out
    names = ("tune", "holdout", "fresh", "blind", *TRAINED_SPLITS, *DEVELOPMENT_SPLITS, *TEST_SPLITS)
    assert len(set(names)) == len(names) >= 19
    assert [name for name in names if f"== {name} (rules only)" in out] == list(names)
    # The development splits choose the thresholds; the test split is only scored.
    assert eval_main(["--split", "test", "--rules-only"]) == 0
    out = capsys.readouterr().out
    assert [name for name in names if f"== {name} (rules only)" in out] == list(TEST_SPLITS)
    # ...and then all of them together: each cell of the pooled confusion table is the sum of the splits' cells.
    assert f"== test, all {len(TEST_SPLITS)} together (rules only): " in out
    tables = [section.split("confusion (rows = gold, columns = predicted):\n")[1].splitlines()[1:4]
              for section in out.split("\n== ")[1:]]
    cells = [[[int(n) for n in line.split()[1:]] for line in table] for table in tables]
    assert cells[-1] == [[sum(c[i][j] for c in cells[:-1]) for j in range(3)] for i in range(3)]
    assert eval_main(["--split", "development", "--rules-only"]) == 0
    out = capsys.readouterr().out
    assert [name for name in names if f"== {name} (rules only)" in out] == list(DEVELOPMENT_SPLITS)
    assert set(TEST_SPLITS).isdisjoint(DEVELOPMENT_SPLITS)
    # The older splits by separate authors are trained on now, and no unseen group scores them.
    assert eval_main(["--split", "trained", "--rules-only"]) == 0
    out = capsys.readouterr().out
    assert [name for name in names if f"== {name} (rules only)" in out] == list(TRAINED_SPLITS)
    assert set(TRAINED_SPLITS).isdisjoint((*DEVELOPMENT_SPLITS, *TEST_SPLITS))


def test_the_reserve_split_is_kept_out_of_training_and_out_of_every_group() -> None:
    """The reserve (RESERVE_SPLITS) judges the next change: nothing trains on it, and no routine eval scores it by
    accident."""
    from core.safety.cli import SPLIT_GROUPS, SPLITS
    from core.safety.semantic import RESERVE_SPLITS, UNSEEN_SPLITS

    assert set(RESERVE_SPLITS) <= set(UNSEEN_SPLITS)  # training_rows() keeps unseen texts out
    assert not set(RESERVE_SPLITS) & {split for group in SPLIT_GROUPS.values() for split in group}
    assert set(RESERVE_SPLITS) <= set(SPLITS)  # scored only when named
