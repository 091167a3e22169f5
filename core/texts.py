"""Haven's fixed lines (welcome, confirmations, fallbacks), loaded from `core/data/texts.yaml`."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def load_data_file(name: str) -> dict[str, Any]:
    """A YAML file from core/data, parsed once."""
    text = resources.files("core.data").joinpath(name).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"core/data/{name} is not a mapping")
    return data


def text(key: str, **values: str) -> str:
    """One fixed line, with `{placeholders}` filled in."""
    line = load_data_file("texts.yaml")[key]
    return str(line).format(**values) if values else str(line)
