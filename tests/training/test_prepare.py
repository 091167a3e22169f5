"""prepare: bad rows reported by file:line, duplicates removed and counted, paraphrases kept on one side, and
examples rendered with core.prompts with the loss mask on the assistant's replies only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import GEMMA_LIKE
from training import prepare


@pytest.fixture
def prepared(prepared_run: tuple[prepare.PrepareReport, Path]) -> tuple[prepare.PrepareReport, Path]:
    return prepared_run


def test_every_bad_row_is_reported_with_its_line(prepared: tuple[prepare.PrepareReport, Path]) -> None:
    report, out = prepared
    by_line = {r.line: r for r in report.removals if r.file.endswith("zz-planted.jsonl")}
    assert by_line[1].reason.startswith("invalid JSON")
    assert "missing field 'answer'" in by_line[2].reason
    assert "personal data: email" in by_line[3].reason
    assert "personal data: phone number" in by_line[4].reason
    assert "empty" in by_line[5].reason
    assert by_line[6].step == "exact-duplicate" and "sleep-001" in by_line[6].reason
    assert by_line[7].step == "near-duplicate" and "sleep-001" in by_line[7].reason
    assert len(report.removals) == 7  # the hand-written rows all survive
    written = json.loads((out / "report.json").read_text())
    assert len(written["removals"]) == 7
    assert "zz-planted.jsonl:4" in (out / "report.md").read_text()


def test_counts_add_up_and_splits_hold_every_kept_row(prepared: tuple[prepare.PrepareReport, Path]) -> None:
    report, out = prepared
    counts = report.counts
    rows = {name: prepare.read_split(out / f"{name}.jsonl") for name in prepare.SPLITS}
    assert counts["rows_read"] == 18 + 5 + 7
    assert sum(len(r) for r in rows.values()) == counts["kept"] == counts["rows_read"] - counts["removed"]
    assert all(rows[name] for name in prepare.SPLITS)
    ids = [(r["kind"], r["id"]) for split in rows.values() for r in split]
    assert len(ids) == len(set(ids))
    # every topic is represented in train, and the held-out splits draw from several topics
    assert {r["stratum"] for r in rows["train"]} == {
        "qa/sleep", "qa/worry", "qa/grief", "dialogue/reflective-listening"}
    assert len({r["stratum"] for r in rows["test"]}) >= 3


def test_paraphrases_never_straddle_splits(prepared: tuple[prepare.PrepareReport, Path]) -> None:
    _, out = prepared
    where = {r["id"]: (name, r["group"]) for name in prepare.SPLITS for r in prepare.read_split(out / f"{name}.jsonl")}
    # "how do i stop worrying all the time" / "what can i do to stop worrying constantly": one group, one split
    assert where["worry-001"] == where["worry-002"]
    groups: dict[int, set[str]] = {}
    for split, group in where.values():
        groups.setdefault(group, set()).add(split)
    assert all(len(splits) == 1 for splits in groups.values())


def test_rendered_text_is_what_core_serves(prepared: tuple[prepare.PrepareReport, Path], tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from core.prompts import render_chat, system_prompt

    _, out = prepared
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = prepare.read_split(out / "train.jsonl")[0]
    assert row["messages"][0] == {"role": "system", "content": system_prompt()}
    assert row["text"] == render_chat(tokenizer, row["messages"], add_generation_prompt=False)


def test_assistant_mask_covers_replies_and_their_end_token(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "Hi, how are you?"}, {"role": "user", "content": "sad"},
                {"role": "assistant", "content": "I'm sorry."}]
    encoded = prepare.tokenize_with_assistant_mask(tokenizer, messages)
    learned = tokenizer.decode([t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m])
    assert learned == "Hi, how are you?<|im_end|>I'm sorry.<|im_end|>"


def test_templates_without_a_system_role_get_it_folded(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tokenizer.chat_template = GEMMA_LIKE
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "Hi there."}]
    encoded = prepare.tokenize_with_assistant_mask(tokenizer, messages)
    assert "<start_of_turn>user\nBe kind.\n\nhello<end_of_turn>" in encoded["text"]
    learned = tokenizer.decode([t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m])
    assert learned == "Hi there.<end_of_turn>"


@pytest.mark.parametrize(("text", "found"), [
    ("mail me: jo.smith+x@mail.co.uk", ["email"]),
    ("my number is +44 7700 900 123", ["phone number"]),
    ("see my blog at www.jo-writes.net", ["url"]),
    ("find me @jo_smith on insta", ["@handle"]),
    ("Hi, my name is Priya and I feel low", ["name"]),
    ("findahelpline.com lists free lines in many countries", []),
    ("try the 5-4-3-2-1 exercise for 10 minutes", []),
    ("I slept 7 hours and walked 3000 steps", []),
])
def test_pii_patterns(text: str, found: list[str]) -> None:
    assert prepare.find_pii(text) == found
