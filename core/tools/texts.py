"""The coping tools' words, loaded from `core/tools/data/*.yaml` (each file carries a reviewed date)."""

from __future__ import annotations

from typing import Any

from core.texts import load_yaml_mapping


def tool_data(name: str) -> dict[str, Any]:
    """One data file (`tools`, `safety_plan`, `exercises`, `journal`)."""
    return load_yaml_mapping("core.tools", f"data/{name}.yaml")


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
