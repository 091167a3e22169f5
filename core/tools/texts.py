"""The coping tools' words, loaded from `core/tools/data/*.yaml` (each file carries a reviewed date)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def tool_data(name: str) -> dict[str, Any]:
    """One data file (`tools`, `safety_plan`, `exercises`, `journal`), parsed once."""
    raw = resources.files("core.tools").joinpath(f"data/{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(raw)
    if not isinstance(data, dict) or "reviewed" not in data:
        raise ValueError(f"core/tools/data/{name}.yaml must be a mapping with a reviewed date")
    return data


def fill(template: object, **values: object) -> str:
    return str(template).format(**values) if values else str(template)


def line(key: str, **values: object) -> str:
    """A shared line (tools.yaml `lines`)."""
    return fill(tool_data("tools")["lines"][key], **values)


def label(key: str) -> str:
    """A shared button label (tools.yaml `buttons`)."""
    return str(tool_data("tools")["buttons"][key])


def command_description(name: str) -> str:
    """What a tool command does, for the platforms' command menus."""
    return str(tool_data("tools")["commands"][name])
