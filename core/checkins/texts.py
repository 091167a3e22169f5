"""Check-in and mood lines, loaded from `core/checkins/data/checkins.yaml`."""

from __future__ import annotations

from typing import Any

from core.texts import load_yaml_mapping


def checkin_data() -> dict[str, Any]:
    return load_yaml_mapping("core.checkins", "data/checkins.yaml")


def line(key: str, **values: object) -> str:
    text = str(checkin_data()["lines"][key])
    return text.format(**values) if values else text


def button_label(key: str) -> str:
    return str(checkin_data()["buttons"][key])


def score_label(score: int) -> str:
    return str(checkin_data()["scores"][score])


def feeling_words() -> list[str]:
    return [str(w) for w in checkin_data()["feelings"]]


def default_templates() -> list[str]:
    return [str(t) for t in checkin_data()["templates"]]
