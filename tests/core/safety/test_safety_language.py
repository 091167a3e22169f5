"""The language guess that picks the classifier's threshold: the five screening languages, and English by default."""

from __future__ import annotations

import pytest

from core.safety.language import guess_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("i cant sleep again and my head wont stop", "en"),
        ("ya no puedo mas con todo esto, estoy muy cansado", "es"),
        ("ich hab heute echt keine kraft mehr, alles ist zu viel", "de"),
        ("j'en peux plus, je suis vraiment à bout ce soir", "fr"),
        ("não aguento mais, tô muito cansada de tudo", "pt"),
        ("Je suis là si tu veux parler", "fr"),
    ],
)
def test_each_screening_language_is_recognised(text: str, language: str) -> None:
    assert guess_language(text) == language


@pytest.mark.parametrize("text", ["ok", "kms", "", "🙂", "up 3 days on coke, crashing", "dogs rehomed. note on table."])
def test_short_or_unclear_messages_count_as_english(text: str) -> None:
    assert guess_language(text) == "en"
