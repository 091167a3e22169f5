"""Telegram rendering rules that need no server: UTF-16-aware splitting, text Telegram accepts, and error logs
that say where without saying what."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bots.telegram.handlers import redacted_traceback
from bots.telegram.render import clean, split_for_telegram, utf16_len


def test_emoji_heavy_text_is_split_by_telegram_length_not_python_length():
    text = "I'm proud of you 🌱🌱 " * 250  # under 4096 code points, over 4096 UTF-16 units
    assert len(text) < 6000 and utf16_len(text) > 4096
    pieces = split_for_telegram(text)
    assert len(pieces) >= 2
    assert all(utf16_len(piece) <= 4096 for piece in pieces)
    assert " ".join(pieces).split() == text.split()


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="a \n.😊é", max_size=9000))
def test_every_piece_fits_and_nothing_is_lost(text):
    pieces = split_for_telegram(text)
    assert pieces and all(0 < utf16_len(piece) <= 4096 for piece in pieces)
    if text.strip():
        assert "".join("".join(pieces).split()) == "".join(text.split())


def test_blank_and_broken_text_still_makes_a_sendable_message():
    assert clean("   ").strip()
    assert clean("half a surrogate \ud83d").encode("utf-8")


def test_error_log_names_the_place_and_type_but_not_the_message():
    def handler():
        try:
            raise KeyError("I feel hopeless about my exams")
        except KeyError as exc:
            raise RuntimeError("while answering: I feel hopeless about my exams") from exc

    try:
        handler()
    except RuntimeError as exc:
        logged = redacted_traceback(exc)
    assert "hopeless" not in logged
    assert "builtins.RuntimeError" in logged and "builtins.KeyError" in logged
    assert "in handler" in logged
