"""`haven safety classify`, `haven safety eval` and `haven safety train`: the safety screen from the command line.

classify: JSON lines on stdin, `{"text": ...}` or `{"messages": [...]}` (a conversation, oldest first, the last
one assessed with the others as recent context); each object comes back on stdout, in order, with `level` and
`categories` added. A line that is not a JSON object gets `{"error": ...}` on its line; the run goes on.

eval: recall and precision per level and a confusion table on the project's labelled sets, each split and then a
group's splits together. The honest figures come from the unseen splits (`--split unseen`, the default), each
written by a separate author who never read the rules or the other splits, never trained on. Which split is which
is kept in one place, core/safety/semantic.py (why each one is there is in its comments and docs/safety.md): the
development splits (`--split development`, DEVELOPMENT_SPLITS) choose the thresholds and the crisis doubts or have
had their errors read; the test splits (`--split test`, TEST_SPLITS) have only ever been scored; a reserve split
(RESERVE_SPLITS, named only on purpose) has never been scored and judges the next change. `--split trained`
(TRAINED_SPLITS): the older splits by separate authors, each scored blind once, then read or used to choose, and
trained on. `tune`, `holdout`, `fresh` and `blind` were written by the sessions that wrote the rules, and the
classifier trains on them. `--help` lists the splits each group holds now.
train: fits the screen's classifier on the training rows (core/safety/train.py).
No command prints message text to logs; classify echoes the caller's own objects back to stdout only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import IO, Any

from core.safety.assess import SafetyScreen
from core.safety.risk import RiskLevel
from core.safety.semantic import DEVELOPMENT_SPLITS, RESERVE_SPLITS, TEST_SPLITS, TRAINED_SPLITS, read_jsonl

LEVEL_ORDER = (RiskLevel.CRISIS, RiskLevel.CONCERN, RiskLevel.NONE)
# The labelled splits (data/eval_<name>.jsonl) and the names that stand for several of them.
# The unseen splits are the ones `training_rows()` keeps out (semantic.UNSEEN_SPLITS). A reserve split is named
# only on purpose (`--split <name>`): no group holds it, so a routine run never scores it.
SPLIT_GROUPS = {"unseen": (*DEVELOPMENT_SPLITS, *TEST_SPLITS), "development": DEVELOPMENT_SPLITS, "test": TEST_SPLITS,
                "trained": TRAINED_SPLITS, "both": ("tune", "holdout"),
                "all": ("tune", "holdout", "fresh", "blind", *TRAINED_SPLITS, *DEVELOPMENT_SPLITS, *TEST_SPLITS)}
SPLITS = (*SPLIT_GROUPS["all"], *RESERVE_SPLITS, *SPLIT_GROUPS)


def _screen(rules_only: bool) -> SafetyScreen:
    screen = SafetyScreen(semantic=False) if rules_only else SafetyScreen()
    screen.warm_up()
    return screen


def classify_lines(lines: Iterable[str], screen: SafetyScreen, out: IO[str]) -> int:
    """Classify each JSON line; returns how many lines were bad. Output keeps input order, one line per line."""
    bad = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            if isinstance(obj.get("messages"), list) and obj["messages"]:
                messages = obj["messages"]
                if not all(isinstance(m, str) for m in messages):
                    raise ValueError('"messages" must be a list of strings')
                text, recent = messages[-1], messages[:-1]
            elif isinstance(obj.get("text"), str):
                text, recent = obj["text"], []
            else:
                raise ValueError('expected "text" (a string) or "messages" (a list of strings)')
            assessment = screen.assess(text, recent)
            obj["level"] = assessment.level.value
            obj["categories"] = sorted(c.value for c in assessment.categories)
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            bad += 1
            out.write(json.dumps({"error": f"line {number}: {exc.__class__.__name__}: {_short(exc)}"}) + "\n")
        out.flush()
    return bad


def _short(exc: Exception) -> str:
    # JSON errors quote positions, not content; our own messages hold no user text either.
    return str(exc).splitlines()[0][:200]


def confusion(rows: Sequence[dict[str, Any]], screen: SafetyScreen) -> Counter[tuple[str, str]]:
    """(gold, predicted) counts over labelled rows."""
    table: Counter[tuple[str, str]] = Counter()
    for row in rows:
        table[(row["level"], _predict(row, screen).value)] += 1
    return table


def _predict(row: dict[str, Any], screen: SafetyScreen) -> RiskLevel:
    """A labelled row's predicted level: a conversation (`messages`) is assessed as its last message in context."""
    messages = row.get("messages")
    if messages:
        return screen.assess(messages[-1], messages[:-1]).level
    return screen.assess(row["text"]).level


def report(name: str, table: Counter[tuple[str, str]], out: IO[str]) -> dict[str, float]:
    """Print recall/precision per level, the issue's three targets, and the confusion table."""
    levels = [level.value for level in LEVEL_ORDER]
    total = sum(table.values())
    out.write(f"\n== {name}: {total} messages ==\n")
    out.write(f"{'level':<9}{'n':>5}{'recall':>9}{'precision':>11}\n")
    for level in levels:
        gold = sum(v for (g, _), v in table.items() if g == level)
        predicted = sum(v for (_, p), v in table.items() if p == level)
        hit = table[(level, level)]
        recall = hit / gold if gold else float("nan")
        precision = hit / predicted if predicted else float("nan")
        out.write(f"{level:<9}{gold:>5}{recall:>9.3f}{precision:>11.3f}\n")
    crisis_n = sum(v for (g, _), v in table.items() if g == "crisis")
    concern_n = sum(v for (g, _), v in table.items() if g == "concern")
    none_n = sum(v for (g, _), v in table.items() if g == "none")
    figures = {
        "crisis_recall": table[("crisis", "crisis")] / crisis_n if crisis_n else float("nan"),
        "concern_or_higher_recall": (table[("concern", "concern")] + table[("concern", "crisis")]) / concern_n
        if concern_n
        else float("nan"),
        "false_crisis_rate": table[("none", "crisis")] / none_n if none_n else float("nan"),
        # Not a target, but watched: a risky concern message given the crisis reply is acceptable, yet each one
        # is a person shown emergency numbers they may not need.
        "concern_to_crisis_rate": table[("concern", "crisis")] / concern_n if concern_n else float("nan"),
    }
    out.write(
        f"targets: crisis recall {figures['crisis_recall']:.3f} (>= 0.98) | concern-or-higher recall on concern "
        f"{figures['concern_or_higher_recall']:.3f} (>= 0.90) | false crisis on none "
        f"{figures['false_crisis_rate']:.3f} (<= 0.02) | concern -> crisis {figures['concern_to_crisis_rate']:.3f}\n"
    )
    out.write("confusion (rows = gold, columns = predicted):\n")
    out.write(f"{'':<9}" + "".join(f"{p:>9}" for p in levels) + "\n")
    for g in levels:
        out.write(f"{g:<9}" + "".join(f"{table[(g, p)]:>9}" for p in levels) + "\n")
    return figures


def classify_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="haven safety classify", description=__doc__.split("\n\n")[1])
    parser.add_argument("--rules-only", action="store_true", help="skip the embedding layer (fast, weaker)")
    args = parser.parse_args(argv)
    screen = _screen(args.rules_only)
    classify_lines(sys.stdin, screen, sys.stdout)
    return 0


def eval_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="haven safety eval", description="Evaluate the screen on the labelled set.")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="unseen",
        help="unseen = the splits by separate authors, never trained on (the default): development = "
        f"{' + '.join(DEVELOPMENT_SPLITS)} (choose the thresholds), test = {' + '.join(TEST_SPLITS)} (only "
        f"scored); trained = {' + '.join(TRAINED_SPLITS)} (by separate authors, trained on since stop 19 or later); "
        "both = tune + holdout; all = every split but the reserve, which is never scored until the next change to "
        "the screen is judged",
    )
    parser.add_argument("--rules-only", action="store_true", help="evaluate the rules layer alone")
    parser.add_argument("--errors", action="store_true", help="also list misclassified row ids (ids only)")
    args = parser.parse_args(argv)
    screen = _screen(args.rules_only)
    splits = SPLIT_GROUPS.get(args.split, (args.split,))
    label = " (rules only)" if args.rules_only else " (rules + classifier)"
    together: Counter[tuple[str, str]] = Counter()
    for split in splits:
        rows = read_jsonl(f"eval_{split}.jsonl")
        table = confusion(rows, screen)
        together += table
        report(f"{split}{label}", table, sys.stdout)
        if args.errors:
            for row in rows:
                predicted = _predict(row, screen).value
                if predicted != row["level"]:
                    sys.stdout.write(f"  {row['id']}: gold {row['level']} -> {predicted}\n")
    if len(splits) > 1:  # one split's figures move by a point or two; the group's together are steadier
        report(f"{args.split}, all {len(splits)} together{label}", together, sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`haven safety <classify|eval> ...`"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("classify", "eval", "train"):
        sys.stderr.write("usage: haven safety {classify,eval,train} [options]\n")
        return 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from core.safety.train import main as train_main  # torch and peft: only when training

        return train_main(rest)
    return classify_main(rest) if command == "classify" else eval_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
