"""Check-in and mood lines, loaded from `core/checkins/data/checkins.yaml`."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def checkin_data() -> dict[str, Any]:
    raw = resources.files("core.checkins").joinpath("data/checkins.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(raw)
    if not isinstance(data, dict) or "reviewed" not in data:
        raise ValueError("core/checkins/data/checkins.yaml must be a mapping with a reviewed date")
    return data


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
